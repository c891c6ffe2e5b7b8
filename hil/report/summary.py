"""The run's JSON summary (`summary.json`), schema "hil-summary/2".

Top level: ``schema``, ``rig``, ``exit_status`` (as in version 1), then ``run`` (when it
started and ended, the host, the hil version) and ``boards`` (per board of the run: type,
USB serial, firmware version, and the image's sha256 when the run flashed one).

Per scenario, the version 1 keys are kept as they were (``name``, ``path``, ``board``,
``passed``, ``error``, ``sim_seconds``, ``wall_seconds``, ``lockstep_speed``,
``overall_speed``, ``expectations``, ``notes``, ``measurements`` as name -> value), and:

- each expectation also carries ``spec``: its fields from the scenario file (the limits:
  ``within``, ``radius``, ``min``/``max``, ``duration``, ...);
- ``measurement_details``: every numeric figure as ``{name, value, unit, uncertainty,
  minimum, maximum, verdict}``; ``uncertainty`` (about 95 %) and the limits are null
  where unknown, ``verdict`` is "pass", "fail", "marginal" or null without limits;
- ``artifacts``: the run's files, relative to the report directory.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = "hil-summary/2"

_UNIT_SUFFIXES = (
    ("_hz", "Hz"),
    ("_us", "us"),
    ("_ms", "ms"),
    ("_seconds", "s"),
    ("_s", "s"),
    ("_m", "m"),
    ("_pct", "%"),
)


@dataclass
class RunInfo:
    """What the report says about the run as a whole."""

    rig: str
    started: float = field(default_factory=time.time)
    finished: float | None = None
    exit_status: int | None = None
    #: Per board name: type, usb_serial, firmware_version, firmware_sha256, firmware_source...
    boards: dict[str, dict[str, Any]] = field(default_factory=dict)
    host: str = field(default_factory=platform.node)

    def firmware_line(self, board: str) -> str:
        info = self.boards.get(board, {})
        parts = []
        if info.get("firmware_version"):
            parts.append(str(info["firmware_version"]))
        if info.get("firmware_sha256"):
            parts.append(f"sha256 {info['firmware_sha256']}")
        if info.get("firmware_source"):
            parts.append(f"({info['firmware_source']})")
        return " ".join(parts) or "unknown"


def unit_of(name: str) -> str:
    """The unit a measurement's name implies (``motor_rate_hz`` -> Hz), else ''."""
    for suffix, unit in _UNIT_SUFFIXES:
        if name.endswith(suffix):
            return unit
    return ""


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def measurement_details(result: Any) -> list[dict[str, Any]]:
    """Every numeric figure of a run with unit, uncertainty and limits where known."""
    out: list[dict[str, Any]] = []
    for m in getattr(result, "timing", ()) or ():
        out.append(
            {
                "name": m.name,
                "value": float(m.value),
                "unit": m.unit,
                "uncertainty": float(m.uncertainty),
                "minimum": m.minimum,
                "maximum": m.maximum,
                "verdict": m.verdict if (m.minimum is not None or m.maximum is not None) else None,
            }
        )
    for name, value in (result.measurements or {}).items():
        number = _number(value)
        if number is None:
            continue
        out.append(
            {
                "name": name,
                "value": number,
                "unit": unit_of(name),
                "uncertainty": None,
                "minimum": None,
                "maximum": None,
                "verdict": None,
            }
        )
    return out


def expectation_spec(expectation: Any) -> dict[str, Any]:
    """An expectation's fields as in the scenario file (its limits among them)."""
    if not dataclasses.is_dataclass(expectation):
        return {}
    spec = {"kind": expectation.kind}
    for f in dataclasses.fields(expectation):
        spec[f.name] = _plain(getattr(expectation, f.name))
    return spec


def _plain(value: Any) -> Any:
    """JSON-ready: numpy scalars as numbers, paths and other objects as text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):  # numpy scalar
        return _plain(value.item())
    if hasattr(value, "items"):  # read-only mappings
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def _relative(path: Any, base: Path | None) -> str:
    p = Path(path)
    if base is not None:
        try:
            return p.resolve().relative_to(base.resolve()).as_posix()
        except ValueError:
            pass
    return str(p)


def scenario_record(result: Any, report_dir: Path | None = None) -> dict[str, Any]:
    """One scenario of the summary (the version 1 keys first)."""
    return {
        "name": result.scenario.name,
        "path": str(result.scenario.path) if result.scenario.path else None,
        "board": result.board,
        "passed": result.passed,
        "outcome": _outcome(result),
        "seed": getattr(result.scenario, "seed", 0),
        "error": result.error,
        "sim_seconds": round(result.sim_seconds, 3),
        "wall_seconds": round(result.wall_seconds, 3),
        "lockstep_speed": round(result.loop_speed, 2),
        "overall_speed": round(result.speed, 2),
        "expectations": [
            {
                "kind": v.expectation.kind,
                "passed": v.passed,
                "message": v.message,
                "t": v.t,
                "spec": expectation_spec(v.expectation),
            }
            for v in result.verdicts
        ],
        "notes": list(result.notes),
        "measurements": _plain(dict(result.measurements)),
        "measurement_details": measurement_details(result),
        "artifacts": {
            what: _relative(path, report_dir) for what, path in (result.artifacts or {}).items()
        },
    }


def summary(run: RunInfo, results: list[Any], report_dir: Path | None = None) -> dict[str, Any]:
    """The whole summary document."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        hil_version = version("hil")
    except PackageNotFoundError:
        hil_version = None
    return {
        "schema": SCHEMA,
        "rig": run.rig,
        "exit_status": run.exit_status,
        "run": {
            "started": _iso(run.started),
            "finished": _iso(run.finished) if run.finished else None,
            "host": run.host,
            "hil_version": hil_version,
        },
        "boards": _plain(run.boards),
        "scenarios": [scenario_record(r, report_dir) for r in results],
    }


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t))


def _outcome(result: Any) -> str:
    """PASS, FAIL (a verdict on the firmware) or ERROR (the board stopped answering)."""
    outcome = getattr(result, "outcome", None)
    if isinstance(outcome, str):
        return outcome
    return "PASS" if result.passed else "FAIL"
