"""The field-patch gate: is the candidate image at least as safe as the baseline?

``hil gate --baseline A --candidate B`` flashes each image onto the same board, flies the
same scenarios several times with different seeds (wind, sensor noise and RC phase
change from run to run), and compares:

- verdicts: a scenario that passes every baseline run but fails a candidate run is a
  regression, whatever the numbers say;
- measurements: for every expectation that times an event (a failsafe mode change, a
  disarm, a STATUSTEXT) the latency after its anchor, and the loop figures a run
  reports. Baseline and candidate samples are compared with an exact one-sided
  permutation test on the means; a difference counts when it is significant
  (p <= alpha) and larger than the practical threshold (``min_effect``, seconds or
  relative), so run-to-run noise never blocks a ship and one lucky run never passes one.

The verdict is SHIP or DO NOT SHIP with the reasons; the evidence (both images by
sha256, every sample) goes to ``gate.json`` and ``gate.txt`` in the report directory.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from hil.errors import ConfigError, HilError
from hil.scenario.model import Scenario

SCHEMA = "hil-gate/1"


@dataclass
class RunRecord:
    """One flight of one scenario with one image and one seed."""

    scenario: str
    seed: int
    passed: bool
    failures: list[str] = field(default_factory=list)
    #: Latency of each timed expectation after its anchor, s (key: what it measured).
    latencies: dict[str, float] = field(default_factory=dict)
    #: Other figures the run reported (loop rate, jitter), name -> value.
    figures: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class Comparison:
    """Baseline and candidate samples of one measurement, and what the test says."""

    scenario: str
    name: str
    baseline: tuple[float, ...]
    candidate: tuple[float, ...]
    difference: float
    p_value: float
    regression: bool
    improvement: bool

    def describe(self) -> str:
        b = np.mean(self.baseline)
        c = np.mean(self.candidate)
        return (
            f"{self.scenario}: {self.name} {b:.3f} -> {c:.3f} ({self.difference:+.3f}, "
            f"p = {self.p_value:.3f}, n = {len(self.baseline)}/{len(self.candidate)})"
        )


def permutation_p_value(baseline: Sequence[float], candidate: Sequence[float], *, samples: int = 20000, seed: int = 0) -> float:
    """One-sided p-value that the candidate's mean exceeds the baseline's by chance.

    Exact over all relabellings when there are at most ``samples`` of them, else a
    seeded Monte Carlo estimate. Raises ValueError on empty or non-finite samples.
    """
    a = np.asarray(baseline, dtype=float)
    b = np.asarray(candidate, dtype=float)
    if a.size == 0 or b.size == 0:
        raise ValueError("both samples need at least one value")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("samples must be finite numbers")
    pooled = np.concatenate([a, b])
    n, m = a.size, b.size
    observed = b.mean() - a.mean()
    total = pooled.sum()
    eps = 1e-12 * max(1.0, float(np.abs(pooled).max()))
    combos = math.comb(n + m, m)
    if combos <= samples:
        count = 0
        for idx in itertools.combinations(range(n + m), m):
            cand_sum = pooled[list(idx)].sum()
            diff = cand_sum / m - (total - cand_sum) / n
            count += diff >= observed - eps
        return float(count) / combos
    rng = np.random.default_rng(seed)
    count = 0
    for _ in range(samples):
        perm = rng.permutation(pooled)
        diff = perm[n:].mean() - perm[:n].mean()
        count += diff >= observed - eps
    return float(count + 1) / (samples + 1)


def compare(
    scenario: str,
    name: str,
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    alpha: float = 0.05,
    min_effect: float = 0.1,
    relative: bool = False,
    higher_is_worse: bool = True,
) -> Comparison:
    """Compare one measurement; a regression is significant and larger than ``min_effect``."""
    a = np.asarray(baseline, dtype=float)
    b = np.asarray(candidate, dtype=float)
    diff = float(b.mean() - a.mean())
    threshold = min_effect * abs(float(a.mean())) if relative else min_effect
    worse_p = permutation_p_value(a, b) if higher_is_worse else permutation_p_value(b, a)
    better_p = permutation_p_value(b, a) if higher_is_worse else permutation_p_value(a, b)
    worse = diff > threshold if higher_is_worse else -diff > threshold
    better = -diff > threshold if higher_is_worse else diff > threshold
    return Comparison(
        scenario=scenario,
        name=name,
        baseline=tuple(float(x) for x in a),
        candidate=tuple(float(x) for x in b),
        difference=diff,
        p_value=float(worse_p if worse else better_p if better else min(worse_p, better_p)),
        regression=bool(worse and worse_p <= alpha),
        improvement=bool(better and better_p <= alpha),
    )


@dataclass
class GateResult:
    baseline: dict[str, Any]
    candidate: dict[str, Any]
    runs: dict[str, list[RunRecord]]
    comparisons: list[Comparison]
    reasons: list[str]
    notes: list[str]

    @property
    def ship(self) -> bool:
        return not self.reasons

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "verdict": "ship" if self.ship else "do not ship",
            "reasons": self.reasons,
            "notes": self.notes,
            "baseline": self.baseline,
            "candidate": self.candidate,
            "runs": {k: [vars(r) for r in v] for k, v in self.runs.items()},
            "comparisons": [
                {**vars(c), "baseline": list(c.baseline), "candidate": list(c.candidate)}
                for c in self.comparisons
            ],
        }

    def table(self) -> str:
        lines = []
        names = sorted({r.scenario for runs in self.runs.values() for r in runs})
        w = max([len(n) for n in names] + [8])
        lines.append(f"{'scenario':{w}}  baseline  candidate  verdict")
        lines.append("-" * (w + 38))
        for name in names:
            b = [r for r in self.runs["baseline"] if r.scenario == name]
            c = [r for r in self.runs["candidate"] if r.scenario == name]
            bp = f"{sum(r.passed for r in b)}/{len(b)} pass"
            cp = f"{sum(r.passed for r in c)}/{len(c)} pass"
            bad = any(reason.startswith(name + ":") for reason in self.reasons)
            lines.append(f"{name:{w}}  {bp:9} {cp:10} {'REGRESSION' if bad else 'ok'}")
        lines.append("")
        lines.append(f"baseline  {self.baseline['path']} sha256 {self.baseline['sha256']}")
        lines.append(f"candidate {self.candidate['path']} sha256 {self.candidate['sha256']}")
        lines.append("")
        if self.ship:
            lines.append("verdict: SHIP (no verdict regressed, no measurement got significantly worse)")
        else:
            lines.append("verdict: DO NOT SHIP")
            lines.extend(f"  - {reason}" for reason in self.reasons)
        for note in self.notes:
            lines.append(f"note: {note}")
        return "\n".join(lines)


def _latencies(result) -> dict[str, float]:
    """Event latencies of the timed expectations of one scenario result."""
    anchors = {"start": 0.0}
    for inj in result.scenario.injections:
        anchors[f"{inj.id}.start"] = inj.start
        if inj.stop is not None:
            anchors[f"{inj.id}.stop"] = inj.stop
    out = {}
    for i, verdict in enumerate(result.verdicts):
        exp = verdict.expectation
        if exp.kind not in ("mode", "disarmed", "statustext") or verdict.t is None:
            continue
        after = getattr(exp, "after", "start")
        what = getattr(exp, "mode", None) or getattr(exp, "contains", None) or exp.kind
        out[f"#{i + 1} {exp.kind} {what} after {after} (s)"] = float(verdict.t) - anchors.get(after, 0.0)
    return out


def _figures(result) -> dict[str, float]:
    """The run's numeric figures the gate compares. Host-clock figures of a lockstep run
    measure how busy the host was, not the firmware, so they are left out."""
    from hil.scenario.host_timing import HOST_CLOCK_FIGURES, ran_in_real_time

    skip = set() if ran_in_real_time(result.measurements) else HOST_CLOCK_FIGURES
    return {
        k: float(v)
        for k, v in result.measurements.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and k not in skip
    }


def fly(
    board,
    scenarios: Sequence[Scenario],
    repeats: int,
    progress: Callable[[str], None] = lambda s: None,
) -> list[RunRecord]:
    """Fly every scenario ``repeats`` times (seeds seed, seed+1, ...) on ``board``."""
    from hil.scenario.runner import run_scenario
    from hil.session import session_for

    records = []
    for scenario in scenarios:
        for k in range(repeats):
            sc = replace(scenario, seed=scenario.seed + k)
            t0 = time.monotonic()
            with session_for(board) as session:
                result = run_scenario(sc, session)
            problems = list(session.problems)
            failures = [v.message for v in result.verdicts if not v.passed] + problems
            record = RunRecord(
                scenario=scenario.name,
                seed=sc.seed,
                passed=result.passed and not problems,
                failures=failures,
                latencies=_latencies(result) if result.error is None else {},
                figures=_figures(result),
                error=result.error,
            )
            records.append(record)
            progress(
                f"  {scenario.name} seed {sc.seed}: {'pass' if record.passed else 'FAIL'} "
                f"({time.monotonic() - t0:.1f} s)"
            )
    return records


def load_onto(board, image_path: Path, method: str | None = None) -> dict[str, Any]:
    """Put the image on the board (flash it, or for a SITL board run that executable)."""
    use_executable = getattr(board, "use_executable", None)  # a SITL board runs the image
    if use_executable is not None:
        import hashlib

        use_executable(image_path)
        digest = hashlib.sha256(image_path.read_bytes()).hexdigest()
        return {"path": str(image_path), "sha256": digest, "version": "?", "how": "executable"}
    from hil.firmware.image import ImageError, load_image

    try:
        image = load_image(image_path)
    except ImageError as exc:
        raise ConfigError(f"{image_path}: {exc}") from None
    how = method or board.flash_method
    result = board.lifecycle.flash(lambda: board.flasher(how).flash(image))
    return {
        "path": str(image_path),
        "sha256": image.sha256,
        "version": result.new_version or "?",
        "how": "already on the board" if result.skipped else f"flashed over {result.method}",
    }


def run_gate(
    rig,
    board_name: str | None,
    baseline: Path,
    candidate: Path,
    scenarios: Sequence[Scenario],
    *,
    repeats: int = 5,
    alpha: float = 0.05,
    min_latency_s: float = 0.1,
    min_figure_rel: float = 0.2,
    method: str | None = None,
    progress: Callable[[str], None] = lambda s: None,
) -> GateResult:
    """Fly ``scenarios`` with both images and compare them (see the module doc)."""
    if repeats < 2:
        raise ConfigError(f"--repeats {repeats}: a two-sample comparison needs at least 2 runs per image")
    for path in (baseline, candidate):
        if not Path(path).is_file():
            raise ConfigError(f"image {path} does not exist")
    board = rig.select(board_name)
    applicable = [s for s in scenarios if board.board_class in s.applies_to]
    skipped = [s.name for s in scenarios if board.board_class not in s.applies_to]
    lacked = {s.name: why for s in applicable if (why := s.lacked_by(board.profile, board.capabilities)) is not None}
    applicable = [s for s in applicable if s.name not in lacked]
    if not applicable:
        why = "".join(f"; {name}: {reason}" for name, reason in lacked.items())
        raise ConfigError(
            f"none of the scenarios applies to board {board.name} ({board.board_class}){why}"
        )
    images: dict[str, dict[str, Any]] = {}
    runs: dict[str, list[RunRecord]] = {}
    for role, path in (("baseline", baseline), ("candidate", candidate)):
        progress(f"{role}: {path}")
        images[role] = load_onto(board, Path(path), method)
        progress(f"  {images[role]['how']}, sha256 {images[role]['sha256'][:16]}..., version {images[role]['version']}")
        runs[role] = fly(board, applicable, repeats, progress)

    reasons: list[str] = []
    notes = [f"skipped (not for {board.board_class} boards): {', '.join(skipped)}"] if skipped else []
    notes.extend(f"skipped {name}: {reason}" for name, reason in lacked.items())
    comparisons: list[Comparison] = []
    for scenario in applicable:
        b = [r for r in runs["baseline"] if r.scenario == scenario.name]
        c = [r for r in runs["candidate"] if r.scenario == scenario.name]
        if all(r.passed for r in b) and not all(r.passed for r in c):
            failed = next(r for r in c if not r.passed)
            why = failed.error or (failed.failures[0] if failed.failures else "failed")
            reasons.append(
                f"{scenario.name}: passes on the baseline ({len(b)}/{len(b)}) but fails on the "
                f"candidate ({sum(not r.passed for r in c)}/{len(c)} runs): {why}"
            )
        elif not all(r.passed for r in b):
            notes.append(f"{scenario.name}: fails on the baseline too; its verdict cannot gate")
        for kind, key_sets, effect, relative in (
            ("latency", [set(r.latencies) for r in b + c], min_latency_s, False),
            ("figure", [set(r.figures) for r in b + c], min_figure_rel, True),
        ):
            common = set.intersection(*key_sets) if key_sets else set()
            for key in sorted(common):
                get = (lambda r, k=key: r.latencies[k]) if kind == "latency" else (lambda r, k=key: r.figures[k])
                higher_is_worse = not (kind == "figure" and key.endswith("rate_hz"))
                try:
                    comp = compare(
                        scenario.name, key, [get(r) for r in b], [get(r) for r in c],
                        alpha=alpha, min_effect=effect, relative=relative, higher_is_worse=higher_is_worse,
                    )
                except ValueError:
                    continue
                comparisons.append(comp)
                if comp.regression:
                    reasons.append(f"{comp.describe()}: significantly worse")
                elif comp.improvement:
                    notes.append(f"{comp.describe()}: better")
    return GateResult(images["baseline"], images["candidate"], runs, comparisons, reasons, notes)


def write_evidence(result: GateResult, report_dir: Path) -> None:
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "gate.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    lines = [result.table(), "", "measurements (baseline -> candidate):"]
    lines.extend(f"  {c.describe()}" for c in result.comparisons)
    lines.append("")
    lines.append("runs:")
    for role, records in result.runs.items():
        for r in records:
            state = "pass" if r.passed else f"FAIL: {r.error or '; '.join(r.failures)}"
            lines.append(f"  {role} {r.scenario} seed {r.seed}: {state}")
    (report_dir / "gate.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


class GateError(HilError):
    """The gate could not run (not a verdict)."""


def add_command(sub) -> None:
    """Register `hil gate` on the CLI's subparsers."""
    gate = sub.add_parser(
        "gate",
        help="fly the scenarios with a baseline and a candidate image; ship or do not ship",
    )
    gate.add_argument("scenarios", nargs="*", help="scenario files or directories (default: scenarios/)")
    gate.add_argument("--baseline", required=True, help="the image in service (.apj, .hex, .dfu; a SITL executable)")
    gate.add_argument("--candidate", required=True, help="the field patch to judge")
    gate.add_argument("--rig", help="rig file (default: fixtures/virtual.toml)")
    gate.add_argument("--board", help="board of the rig (name or USB serial)")
    gate.add_argument("--repeats", type=int, default=5, help="runs per scenario and image, seeds differ (default 5)")
    gate.add_argument("--alpha", type=float, default=0.05, help="significance level of the comparisons (default 0.05)")
    gate.add_argument(
        "--min-latency", type=float, default=0.1, metavar="S",
        help="smallest latency change that matters, s (default 0.1)",
    )
    gate.add_argument("-k", dest="keyword", help="only scenarios whose name contains this text")
    gate.add_argument(
        "--method", choices=("serial", "dfu"), default=None, help="how to flash (default: the board type's)"
    )
    gate.add_argument("--report", help="directory for gate.json and gate.txt (default: hil-runs/gate-<time>)")
    gate.add_argument("--state-dir", help="where virtual boards keep flash and parameters (default: .hil/rigs/<rig>)")
    gate.set_defaults(func=_cmd_gate)


def _scenario_files(targets: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for target in targets:
        path = Path(target)
        if path.is_dir():
            files.extend(sorted(path.glob("*.toml")))
        elif path.is_file():
            files.append(path)
        else:
            raise ConfigError(f"scenario {target} does not exist")
    return files


def _cmd_gate(args) -> int:
    import sys

    from hil.pytest_plugin.options import resolve_rig_path
    from hil.rig import Rig, state_dir
    from hil.scenario.load import load_scenario

    targets = list(args.scenarios) or ["scenarios"]
    scenarios = [load_scenario(p) for p in _scenario_files(targets)]
    if args.keyword:
        scenarios = [s for s in scenarios if args.keyword in s.name]
    if not scenarios:
        raise ConfigError("no scenarios to fly (check the paths and -k)")
    if not 0.0 < args.alpha < 1.0:
        raise ConfigError(f"--alpha {args.alpha}: give a level between 0 and 1")
    report = Path(args.report or f"hil-runs/gate-{time.strftime('%Y%m%d-%H%M%S')}")
    rig_path = resolve_rig_path(args.rig)
    rig = Rig.load(rig_path, work_dir=state_dir(rig_path, args.state_dir))
    try:
        result = run_gate(
            rig, args.board, Path(args.baseline), Path(args.candidate), scenarios,
            repeats=args.repeats, alpha=args.alpha, min_latency_s=args.min_latency,
            method=args.method, progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
    finally:
        rig.stop()
    write_evidence(result, report)
    print(result.table())
    print(f"evidence: {report}/ (gate.json, gate.txt)")
    return 0 if result.ship else 1
