"""The run's report for a person: one self-contained HTML file (`report.html`).

Everything it shows is inside the file: styles inline, figures as base64 PNG data URIs,
no scripts and nothing fetched, so it opens the same from a CI artifact, an e-mail or a
file share. Links to the tlogs and raw logs are relative to the report directory.

Layout: a header naming the rig, the boards with their USB serials and firmware
(version, sha256 of a flashed image), the host and the time; a table of the scenarios
with verdict and times; then per scenario its verdicts with their messages, the failure
explanation with its timeline excerpt, notes and measurements, the flight plot and the
loop-period histogram.
"""

from __future__ import annotations

import base64
import html
import time
from pathlib import Path
from typing import Any

from hil.report.summary import RunInfo, measurement_details

_CSS = """
body { font: 14px/1.45 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 0; color: #212121; background: #fafafa; }
header { background: #263238; color: #eceff1; padding: 16px 28px; }
header h1 { margin: 0 0 6px 0; font-size: 22px; }
header table td { padding: 1px 14px 1px 0; vertical-align: top; }
header .k { color: #b0bec5; }
main { padding: 8px 28px 40px 28px; }
h2 { margin-top: 30px; border-bottom: 2px solid #cfd8dc; padding-bottom: 4px; }
h3 { margin: 18px 0 6px 0; font-size: 15px; }
table.grid { border-collapse: collapse; margin: 6px 0 12px 0; }
table.grid th, table.grid td { border: 1px solid #cfd8dc; padding: 3px 8px; text-align: left; }
table.grid th { background: #eceff1; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pass { color: #1b5e20; font-weight: bold; }
.fail { color: #b71c1c; font-weight: bold; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 3px; color: white; font-weight: bold; }
.badge.pass { background: #2e7d32; } .badge.fail { background: #c62828; }
section.scenario { background: white; border: 1px solid #e0e0e0; border-radius: 4px;
                   padding: 4px 18px 14px 18px; margin-top: 22px; }
section.scenario.failed { border-left: 6px solid #c62828; }
section.scenario.passed { border-left: 6px solid #2e7d32; }
ul.verdicts { list-style: none; padding-left: 0; margin: 4px 0; }
ul.verdicts li { margin: 2px 0; }
pre { background: #f5f5f5; border: 1px solid #e0e0e0; padding: 8px 10px; overflow-x: auto;
      font: 12px/1.35 "DejaVu Sans Mono", Menlo, Consolas, monospace; }
.explain { border-left: 4px solid #c62828; padding-left: 12px; margin: 8px 0; }
img.plot { max-width: 100%; border: 1px solid #e0e0e0; margin: 6px 0; }
.muted { color: #757575; }
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _img(path: Any, alt: str) -> str:
    if not path:
        return ""
    p = Path(path)
    try:
        data = base64.b64encode(p.read_bytes()).decode("ascii")
    except OSError as exc:
        return f'<p class="muted">({_e(alt)} not available: {_e(exc)})</p>'
    return f'<img class="plot" alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _rel(path: Any, base: Path) -> str:
    p = Path(path)
    try:
        return p.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return p.as_uri() if p.is_absolute() else p.as_posix()


def _anchor(index: int, result: Any) -> str:
    return f"s{index}-{''.join(c if c.isalnum() else '-' for c in result.scenario.name)}"


def _header(run: RunInfo, results: list[Any]) -> str:
    passed = sum(1 for r in results if r.passed)
    failed = len(results) - passed
    rows = [
        ("rig", run.rig),
        ("host", run.host),
        ("started", time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(run.started))),
    ]
    if run.finished:
        rows.append(("wall time", f"{run.finished - run.started:.1f} s"))
    for name, info in run.boards.items():
        what = f"{name} ({info.get('type', '?')}), USB serial {info.get('usb_serial') or '-'}"
        rows.append(("board", what))
        rows.append(("firmware", run.firmware_line(name)))
    verdict = (
        f'<span class="badge pass">{passed} passed</span> '
        + (f'<span class="badge fail">{failed} failed</span>' if failed else "")
    )
    body = "".join(f'<tr><td class="k">{_e(k)}</td><td>{_e(v)}</td></tr>' for k, v in rows)
    return (
        f"<header><h1>hil run report</h1><table>{body}"
        f'<tr><td class="k">scenarios</td><td>{verdict}</td></tr></table></header>'
    )


def _overview(results: list[Any]) -> str:
    rows = []
    for i, r in enumerate(results):
        cls = "pass" if r.passed else "fail"
        loop = f"{r.loop_speed:.1f}x" if r.loop_speed and r.loop_speed != 1.0 else "real time"
        rows.append(
            f'<tr><td><a href="#{_anchor(i, r)}">{_e(_title(r))}</a></td><td>{_e(r.board)}</td>'
            f'<td class="{cls}">{_outcome(r)}</td>'
            f'<td class="num">{r.sim_seconds:.1f}</td><td class="num">{r.wall_seconds:.2f}</td>'
            f'<td class="num">{_e(loop)}</td></tr>'
        )
    return (
        '<table class="grid"><tr><th>scenario</th><th>board</th><th>result</th>'
        "<th>simulated s</th><th>wall s</th><th>loop</th></tr>" + "".join(rows) + "</table>"
    )


def _verdicts(result: Any) -> str:
    if not result.verdicts:
        return '<p class="muted">no expectations were judged</p>'
    items = []
    for v in result.verdicts:
        mark = '<span class="pass">&#10003;</span>' if v.passed else '<span class="fail">&#10007;</span>'
        when = f" <span class='muted'>(t={v.t:.2f} s)</span>" if v.t is not None else ""
        items.append(f"<li>{mark} <b>{_e(v.expectation.kind)}</b>: {_e(v.message)}{when}</li>")
    return '<ul class="verdicts">' + "".join(items) + "</ul>"


def _explanation(result: Any) -> str:
    if result.passed:
        return ""
    parts = ['<h3 class="fail">Why it failed</h3>']
    if result.error:
        parts.append(f'<div class="explain"><p><b>error:</b> {_e(result.error)}</p></div>')
    for v in result.verdicts:
        if v.passed:
            continue
        parts.append(f'<div class="explain"><p>{_e(v.message)}</p>')
        if v.excerpt:
            parts.append(f"<pre>{_e(v.excerpt)}</pre>")
        parts.append("</div>")
    if result.error and result.timeline is not None and all(v.passed for v in result.verdicts):
        excerpt = result.timeline.excerpt(result.timeline_end, 10.0, 1.0)
        parts.append(f'<div class="explain"><pre>{_e(excerpt)}</pre></div>')
    return "".join(parts)


def _measurements(result: Any) -> str:
    details = measurement_details(result)
    if not details:
        return ""
    rows = []
    for m in details:
        unc = f"&plusmn; {m['uncertainty']:.3g}" if m["uncertainty"] is not None else ""
        limits = []
        if m["minimum"] is not None:
            limits.append(f"&ge; {m['minimum']:g}")
        if m["maximum"] is not None:
            limits.append(f"&le; {m['maximum']:g}")
        verdict = m["verdict"] or ""
        cls = {"pass": "pass", "fail": "fail"}.get(verdict, "")
        rows.append(
            f"<tr><td>{_e(m['name'])}</td><td class='num'>{m['value']:.6g}</td><td class='num'>{unc}</td>"
            f"<td>{_e(m['unit'])}</td><td>{' and '.join(limits)}</td><td class='{cls}'>{_e(verdict)}</td></tr>"
        )
    return (
        "<h3>Measurements</h3><table class='grid'><tr><th>figure</th><th>value</th>"
        "<th>uncertainty (95 %)</th><th>unit</th><th>limit</th><th>verdict</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _files(result: Any, report_dir: Path) -> str:
    shown = {k: v for k, v in (result.artifacts or {}).items() if not str(v).endswith(".png")}
    if not shown:
        return ""
    links = [f'<a href="{_e(_rel(path, report_dir))}">{_e(what)}</a>' for what, path in shown.items()]
    return "<p><b>files:</b> " + " &middot; ".join(links) + "</p>"


def _scenario(index: int, result: Any, run: RunInfo, report_dir: Path) -> str:
    cls = "passed" if result.passed else "failed"
    badge = f'<span class="badge {"pass" if result.passed else "fail"}">{_outcome(result)}</span>'
    desc = getattr(result.scenario, "description", "") or ""
    parts = [
        f'<section class="scenario {cls}" id="{_anchor(index, result)}">',
        f"<h2>{badge} {_e(_title(result))} <span class='muted'>on {_e(result.board)}</span></h2>",
    ]
    if desc:
        parts.append(f"<p>{_e(desc)}</p>")
    parts.append(
        f"<p class='muted'>{result.sim_seconds:.1f} s simulated in {result.wall_seconds:.2f} s wall; "
        f"firmware {_e(run.firmware_line(result.board))}"
        + (f"; file {_e(result.scenario.path)}" if result.scenario.path else "")
        + "</p>"
    )
    parts.append("<h3>Expectations</h3>" + _verdicts(result))
    parts.append(_explanation(result))
    parts.append(_img(result.artifacts.get("plot"), f"{result.scenario.name}: flight plot"))
    parts.append(_img(result.artifacts.get("loop histogram"), f"{result.scenario.name}: loop periods"))
    parts.append(_measurements(result))
    if result.notes:
        parts.append("<h3>Notes</h3><ul>" + "".join(f"<li>{_e(n)}</li>" for n in result.notes) + "</ul>")
    parts.append(_files(result, report_dir))
    parts.append("</section>")
    return "".join(parts)


def render(run: RunInfo, results: list[Any], report_dir: str | Path) -> str:
    """The report as one HTML document."""
    base = Path(report_dir)
    sections = "".join(_scenario(i, r, run, base) for i, r in enumerate(results))
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>hil run report: {_e(run.rig)}</title><style>{_CSS}</style></head><body>"
        + _header(run, results)
        + "<main><h2>Scenarios</h2>"
        + _overview(results)
        + sections
        + "</main></body></html>\n"
    )


def write_report(path: str | Path, run: RunInfo, results: list[Any]) -> Path:
    """Write the report to `path` (its directory is the base of the relative links)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(run, results, out.parent), encoding="utf-8")
    return out


def _outcome(result: Any) -> str:
    """PASS, FAIL (the firmware's) or ERROR (the board stopped answering: no verdict)."""
    outcome = getattr(result, "outcome", None)
    return outcome if isinstance(outcome, str) else ("PASS" if result.passed else "FAIL")


def _title(result: Any) -> str:
    """The scenario's name and the seed it flew with."""
    return f"{result.scenario.name} (seed {getattr(result.scenario, 'seed', 0)})"
