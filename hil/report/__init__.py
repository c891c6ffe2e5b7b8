"""What a run leaves behind in its report directory.

    <report>/junit.xml                 pytest's JUnit XML, with board, firmware and rig properties
    <report>/summary.json              the versioned summary (`hil.report.summary`)
    <report>/report.html               the report for a person (`hil.report.html`)
    <report>/<scenario>/flight.tlog    MAVLink boards: what the board sent (`hil.report.tlog`)
    <report>/<scenario>/links/*.log    raw bytes of every serial link (`hil.report.rawlog`)
    <report>/<scenario>/flight.png     the flight plot (`hil.report.plots`)
    <report>/<scenario>/loop_periods.png  the loop-period histogram, when loops were timed

`ScenarioCapture` records during the run; `finish_scenario` writes a scenario's files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hil.report.capture import ScenarioCapture, safe_name

__all__ = ["ScenarioCapture", "finish_scenario", "safe_name", "scenario_dir"]


def scenario_dir(report_dir: str | Path, name: str, taken: set[str] | None = None) -> Path:
    """`<report>/<name>/`, with -2, -3... when a scenario ran more than once in the run."""
    base = safe_name(name)
    chosen, n = base, 1
    while taken is not None and chosen in taken:
        n += 1
        chosen = f"{base}-{n}"
    if taken is not None:
        taken.add(chosen)
    return Path(report_dir) / chosen


def finish_scenario(result: Any, capture: ScenarioCapture) -> dict[str, Path]:
    """Write the scenario's tlog, raw logs and figures; note them in `result.artifacts`.

    A figure that cannot be drawn costs a note on the result, never the run.
    """
    from hil.report.plots import flight_plot, loop_histogram

    files = dict(capture.write())
    for what, name, draw in (
        ("plot", "flight.png", flight_plot),
        ("loop histogram", "loop_periods.png", loop_histogram),
    ):
        try:
            png = draw(result)
        except Exception as exc:  # noqa: BLE001 - a broken figure must not fail the scenario
            result.notes.append(f"report: the {what} could not be drawn: {type(exc).__name__}: {exc}")
            continue
        if png:
            path = capture.dir / name
            path.write_bytes(png)
            files[what] = path
    result.artifacts.update(files)
    return files
