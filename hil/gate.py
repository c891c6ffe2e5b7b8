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

On a SITL board that runs an executable with parameter files (``ardupilot-sitl``) each
side is a `Build`: an executable, defaults (.parm) files, or both. A defaults-only
candidate runs the baseline's executable (or the rig's) with its files; SITL starts
afresh for every run with its storage wiped, so nothing of the other side's parameters
carries over. The parameters the two sides' files name are theirs to decide: a
scenario's own ``[setup] params`` does not overwrite them (said in the notes), and each
run reads them back from the board into the evidence.

The verdict is SHIP or DO NOT SHIP with the reasons; the evidence (both images or
executables and every defaults file by sha256, the parameters that differ, every
sample) goes to ``gate.json`` and ``gate.txt`` in the report directory.
"""

from __future__ import annotations

import itertools
import json
import math
import os
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
    #: Parameters the gated defaults files name, as the board reported them in this run.
    params: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Build:
    """One side of the gate: an image to flash or a SITL executable (None: the one the
    rig names, or the baseline's for the candidate), and parameter files SITL starts with
    after the rig's (``ardupilot-sitl`` boards only)."""

    image: Path | None = None
    defaults: tuple[Path, ...] = ()

    def describe(self) -> str:
        parts = [str(self.image) if self.image is not None else "the rig's executable"]
        parts += [f"defaults {d}" for d in self.defaults]
        return " + ".join(parts)


def _as_build(value: Build | Path | str) -> Build:
    return value if isinstance(value, Build) else Build(image=Path(value))


def merged_params(files: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The values a list of defaults-file records (`load_onto`'s) sets, later files winning."""
    out: dict[str, float] = {}
    for record in files:
        out.update(record["params"])
    return out


def parameter_differences(baseline: dict[str, Any], candidate: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Parameters whose value the two sides' defaults files set differently (None: the
    side's files do not set it; the firmware's default holds)."""
    a = merged_params(baseline.get("defaults", []))
    b = merged_params(candidate.get("defaults", []))
    return {
        name: {"baseline": a.get(name), "candidate": b.get(name)}
        for name in sorted(set(a) | set(b))
        if a.get(name) != b.get(name)
    }


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

    def read_back(self, role: str, name: str) -> list[float]:
        """The values of parameter ``name`` the board reported in ``role``'s runs."""
        return [r.params[name] for r in self.runs.get(role, []) if name in r.params]

    def differences(self) -> dict[str, dict[str, Any]]:
        """`parameter_differences`, with the values read back from the board in the runs."""
        out: dict[str, dict[str, Any]] = {}
        for name, sides in parameter_differences(self.baseline, self.candidate).items():
            read = {role: sorted(set(self.read_back(role, name))) for role in ("baseline", "candidate")}
            out[name] = {**sides, "read_back": read}
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "verdict": "ship" if self.ship else "do not ship",
            "reasons": self.reasons,
            "notes": self.notes,
            "baseline": self.baseline,
            "candidate": self.candidate,
            "parameter_differences": self.differences(),
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
        for role, info in (("baseline", self.baseline), ("candidate", self.candidate)):
            lines.append(f"{role:9} {info['path']} sha256 {info['sha256']}")
            for record in info.get("defaults", []):
                lines.append(f"{'':10}+ defaults {record['path']} sha256 {record['sha256']}")
        differences = self.differences()
        if differences:
            lines.append("parameters the defaults files set differently (baseline -> candidate):")
            for name, d in differences.items():
                line = f"  {name}: {_value(d['baseline'])} -> {_value(d['candidate'])}"
                read = d["read_back"]
                if read["baseline"] or read["candidate"]:
                    line += (
                        f" (read back from the board: {_values(read['baseline'])} -> {_values(read['candidate'])})"
                    )
                lines.append(line)
        elif self.baseline.get("defaults") or self.candidate.get("defaults"):
            lines.append("the two sides' defaults files set the same values")
        lines.append("")
        if self.ship:
            lines.append("verdict: SHIP (no verdict regressed, no measurement got significantly worse)")
        else:
            lines.append("verdict: DO NOT SHIP")
            lines.extend(f"  - {reason}" for reason in self.reasons)
        for note in self.notes:
            lines.append(f"note: {note}")
        return "\n".join(lines)


def _value(v: float | None) -> str:
    return "firmware default" if v is None else f"{v:g}"


def _values(vs: Sequence[float]) -> str:
    return "not read" if not vs else "/".join(f"{v:g}" for v in vs)


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
    watch: Sequence[str] = (),
) -> list[RunRecord]:
    """Fly every scenario ``repeats`` times (seeds seed, seed+1, ...) on ``board``;
    the parameters named in ``watch`` are read back from the board in each run."""
    from hil.scenario.runner import run_scenario
    from hil.session import session_for

    records = []
    for scenario in scenarios:
        for k in range(repeats):
            sc = replace(scenario, seed=scenario.seed + k)
            t0 = time.monotonic()
            with session_for(board) as session:
                params = _read_params(session, watch)
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
                params=params,
            )
            records.append(record)
            progress(
                f"  {scenario.name} seed {sc.seed}: {'pass' if record.passed else 'FAIL'} "
                f"({time.monotonic() - t0:.1f} s)"
            )
    return records


def _read_params(session, names: Sequence[str]) -> dict[str, float]:
    """The board's values of ``names`` at the start of a session (before a scenario's
    setup writes any): from its parameter snapshot, else asked one by one."""
    if not names:
        return {}
    snapshot = getattr(session, "param_snapshot", None) or {}
    out: dict[str, float] = {}
    for name in names:
        if name in snapshot:
            out[name] = float(snapshot[name])
            continue
        try:
            out[name] = float(session.autopilot.get_param(name))
        except (HilError, AttributeError):
            pass
    return out


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _defaults_record(path: Path) -> dict[str, Any]:
    from hil.profiles.ardupilot import read_param_file

    return {"path": str(path), "sha256": _sha256(path), "params": read_param_file(path)}


def load_onto(board, image: Build | Path, method: str | None = None) -> dict[str, Any]:
    """Put the build on the board (flash the image; for a SITL board run that executable,
    with the build's defaults files where the board takes them)."""
    build = _as_build(image)
    use_build = getattr(board, "use_build", None)  # a SITL board with parameter files
    if use_build is not None:
        use_build(build.image, build.defaults)
        exe = Path(board.executable)
        files = [_defaults_record(Path(d)) for d in build.defaults]
        how = "executable" + (f" with {len(files)} defaults file{'s' if len(files) > 1 else ''}" if files else "")
        return {"path": str(exe), "sha256": _sha256(exe), "version": "?", "how": how, "defaults": files}
    if build.defaults:
        raise ConfigError(_no_defaults(board))
    if build.image is None:
        raise ConfigError(f"board {board.name} ({board.type_name}): name the image to put on it")
    image_path = build.image
    use_executable = getattr(board, "use_executable", None)  # a SITL board runs the image
    if use_executable is not None:
        use_executable(image_path)
        return {"path": str(image_path), "sha256": _sha256(image_path), "version": "?", "how": "executable"}
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


def _no_defaults(board) -> str:
    return (
        f"board {board.name} ({board.type_name}) takes no defaults files: --baseline-defaults and "
        f"--candidate-defaults are for boards that start from parameter files (ardupilot-sitl)"
    )


def check_builds(board, baseline: Build, candidate: Build) -> tuple[Build, Build]:
    """Both sides checked before anything runs (files there, defaults files readable line
    by line, a board that takes them); the candidate without an image gets the baseline's.
    ConfigError names what is wrong."""
    from hil.profiles.ardupilot import read_param_file

    takes_builds = getattr(board, "use_build", None) is not None
    runs_executables = takes_builds or getattr(board, "use_executable", None) is not None
    for role, build in (("baseline", baseline), ("candidate", candidate)):
        if build.image is not None and not Path(build.image).is_file():
            raise ConfigError(f"{role}: image {build.image} does not exist")
        if build.image is not None and runs_executables and not os.access(build.image, os.X_OK):
            raise ConfigError(f"{role}: {build.image} is not executable (a SITL board runs the build)")
        if build.defaults and not takes_builds:
            raise ConfigError(_no_defaults(board))
        for path in build.defaults:
            if not Path(path).is_file():
                raise ConfigError(f"{role}: defaults file {path} does not exist")
            read_param_file(Path(path))
    if baseline.image is None and not takes_builds:
        raise ConfigError(f"--baseline: board {board.name} ({board.type_name}) is flashed; name the image in service")
    if candidate.image is None:
        candidate = replace(candidate, image=baseline.image)
    return baseline, candidate


def _leave_gated_params(scenario: Scenario, names: set[str]) -> tuple[Scenario, str | None]:
    """The scenario without the setup parameters the gated defaults files decide."""
    taken = sorted(n for n in scenario.setup.params if n.upper() in names)
    if not taken:
        return scenario, None
    params = {k: v for k, v in scenario.setup.params.items() if k not in taken}
    note = (
        f"{scenario.name}: its setup's "
        + ", ".join(f"{n} = {scenario.setup.params[n]:g}" for n in taken)
        + " not written: the defaults files under test decide it"
    )
    return replace(scenario, setup=replace(scenario.setup, params=params)), note


def run_gate(
    rig,
    board_name: str | None,
    baseline: Build | Path,
    candidate: Build | Path,
    scenarios: Sequence[Scenario],
    *,
    repeats: int = 5,
    alpha: float = 0.05,
    min_latency_s: float = 0.1,
    min_figure_rel: float = 0.2,
    method: str | None = None,
    progress: Callable[[str], None] = lambda s: None,
) -> GateResult:
    """Fly ``scenarios`` with both builds and compare them (see the module doc)."""
    if repeats < 2:
        raise ConfigError(f"--repeats {repeats}: a two-sample comparison needs at least 2 runs per image")
    baseline, candidate = _as_build(baseline), _as_build(candidate)
    for build in (baseline, candidate):
        if build.image is not None and not Path(build.image).is_file():
            raise ConfigError(f"image {build.image} does not exist")
    board = rig.select(board_name)
    baseline, candidate = check_builds(board, baseline, candidate)
    applicable = [s for s in scenarios if board.board_class in s.applies_to]
    skipped = [s.name for s in scenarios if board.board_class not in s.applies_to]
    lacked = {s.name: why for s in applicable if (why := s.lacked_by(board.profile, board.capabilities)) is not None}
    applicable = [s for s in applicable if s.name not in lacked]
    if not applicable:
        why = "".join(f"; {name}: {reason}" for name, reason in lacked.items())
        raise ConfigError(
            f"none of the scenarios applies to board {board.name} ({board.board_class}){why}"
        )
    from hil.profiles.ardupilot import read_param_file

    gated = sorted({name for b in (baseline, candidate) for d in b.defaults for name in read_param_file(Path(d))})
    setup_notes = []
    for i, scenario in enumerate(applicable):
        applicable[i], note = _leave_gated_params(scenario, set(gated))
        if note:
            setup_notes.append(note)
    images: dict[str, dict[str, Any]] = {}
    runs: dict[str, list[RunRecord]] = {}
    for role, build in (("baseline", baseline), ("candidate", candidate)):
        progress(f"{role}: {build.describe()}")
        images[role] = load_onto(board, build, method)
        progress(f"  {images[role]['how']}, sha256 {images[role]['sha256'][:16]}..., version {images[role]['version']}")
        runs[role] = fly(board, applicable, repeats, progress, watch=gated)

    reasons: list[str] = []
    notes = [f"skipped (not for {board.board_class} boards): {', '.join(skipped)}"] if skipped else []
    notes.extend(setup_notes)
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
    gate.add_argument(
        "--baseline", metavar="IMAGE|EXE",
        help="the image in service (.apj, .hex, .dfu) or SITL executable; on a SITL board it may be left "
        "out: the rig's executable",
    )
    gate.add_argument(
        "--baseline-defaults", action="append", default=[], metavar="PARM",
        help="a parameter file the baseline starts with (ardupilot-sitl; repeatable, in order, after "
        "the rig's)",
    )
    gate.add_argument(
        "--candidate", metavar="IMAGE|EXE",
        help="the field patch to judge; left out with --candidate-defaults: the baseline's executable",
    )
    gate.add_argument(
        "--candidate-defaults", action="append", default=[], metavar="PARM",
        help="a parameter file the candidate starts with (ardupilot-sitl; repeatable). A side is an "
        "executable, defaults files, or both: e.g. --candidate new/arducopter --candidate-defaults "
        "fs.parm. The parameters these files name are not overwritten by a scenario's setup",
    )
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
    gate.epilog = (
        "ArduPilot SITL: hil gate scenarios/rc_loss_rtl.toml --rig my-ap.toml --candidate-defaults "
        "rc-fs-3s.parm --repeats 2 (the rig's arducopter with and without the file). A verdict "
        "regression needs 2 runs per side; a latency or figure that got worse within the "
        "scenario's limits needs at least 3 (the exact permutation test's smallest p-value is "
        "1/20 with 3 + 3 runs)."
    )
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


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _cmd_gate(args) -> int:
    import sys

    from hil.pytest_plugin.options import resolve_rig_path
    from hil.rig import Rig, state_dir
    from hil.scenario.load import load_scenario

    if args.candidate is None and not args.candidate_defaults:
        raise ConfigError("give the candidate: --candidate IMAGE|EXE, --candidate-defaults PARM, or both")
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
            rig, args.board,
            Build(_path(args.baseline), tuple(Path(d) for d in args.baseline_defaults)),
            Build(_path(args.candidate), tuple(Path(d) for d in args.candidate_defaults)),
            scenarios,
            repeats=args.repeats, alpha=args.alpha, min_latency_s=args.min_latency,
            method=args.method, progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
    finally:
        rig.stop()
    write_evidence(result, report)
    print(result.table())
    print(f"evidence: {report}/ (gate.json, gate.txt)")
    return 0 if result.ship else 1
