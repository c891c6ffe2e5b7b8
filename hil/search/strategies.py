"""Hypothesis strategies for injection timelines, and scenarios built from them.

Times are drawn as whole steps of a grid (0.05 s by default), so a shrunk example reads
as round numbers (`start = 1.0`, `stop = 2.05`). Windows are drawn as (gap, length)
pairs laid end to end: shrinking deletes windows, pulls them towards the start and
makes them shorter, which is what a person wants from a minimal failing timeline.

`scenario_from_timeline` turns RC-loss windows into a `Scenario` (with expectations
derived from the radio-failsafe property), and `scenario_toml` prints any scenario as a
file `hil run` accepts and `load_scenario` reads back to the same scenario.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hypothesis import strategies as st

from hil.scenario.load import parse_scenario
from hil.scenario.model import (
    INJECTION_FIXED_KEYS,
    BoardTime,
    Expectation,
    ParamSpec,
    Scenario,
    injection_kinds,
)

__all__ = [
    "GRID",
    "Window",
    "injection_timelines",
    "rc_loss_patterns",
    "rc_failsafe_expectations",
    "scenario_from_timeline",
    "scenario_to_dict",
    "scenario_toml",
]

GRID = 0.05
"""s: the time grid of generated timelines."""

Window = tuple[float, float]
"""(start, stop) in s on the scenario's timeline; the injection acts in [start, stop)."""

DEFAULT_RC_FS_TIMEOUT = 1.0  # the board's default RC_FS_TIMEOUT, s
DEFAULT_TOLERANCE = 0.5  # s
DEFAULT_LATENCY = 0.1  # s: RC frame period and link (see hil.search.properties.check_rc_failsafe)


def _units(seconds: float, grid: float) -> int:
    return int(round(seconds / grid))


def _time(units: int, grid: float) -> float:
    # round() so 3 * 0.05 prints as 0.15, not 0.15000000000000002
    return round(units * grid, 6)


@st.composite
def _windows(
    draw,
    *,
    duration: float,
    max_windows: int,
    min_windows: int,
    min_gap: float,
    min_window: float,
    max_window: float,
    start_after: float,
    max_gap: float | None,
    grid: float,
) -> list[Window]:
    end = _units(duration, grid)
    first = _units(start_after, grid)
    gap0 = _units(min_gap, grid)
    lo = max(1, _units(min_window, grid))
    hi = max(lo, _units(max_window, grid))
    span = max(0, end - first)
    gap_hi = _units(max_gap, grid) if max_gap is not None else max(1, span // 2)
    pairs = draw(
        st.lists(
            st.tuples(st.integers(0, gap_hi), st.integers(lo, hi)),
            min_size=min_windows,
            max_size=max_windows,
        )
    )
    out: list[Window] = []
    t = first
    for i, (gap, length) in enumerate(pairs):
        start = t + gap + (gap0 if i else 0)
        stop = min(start + length, end)
        if stop - start < lo:
            break  # no room left before the end of the scenario
        out.append((_time(start, grid), _time(stop, grid)))
        t = stop
    return out


def rc_loss_patterns(
    duration: float = 15.0,
    max_windows: int = 3,
    min_gap: float = 0.5,
    max_window: float = 6.0,
    *,
    min_window: float = GRID,
    min_windows: int = 0,
    start_after: float = 1.0,
    max_gap: float | None = None,
    grid: float = GRID,
) -> st.SearchStrategy[list[Window]]:
    """Lists of non-overlapping RC-loss windows `(start, stop)`, in time order.

    Every time is a multiple of `grid`; windows start at `start_after` or later, are
    `min_window`..`max_window` s long, are at least `min_gap` s apart and end by
    `duration`. At most `max_windows` (fewer when they do not fit, so `min_windows` is
    a request, not a promise). Shrinks towards fewer, earlier and shorter windows.
    """
    if duration <= 0 or grid <= 0:
        raise ValueError("duration and grid must be positive")
    if min_window > max_window:
        raise ValueError(f"min_window {min_window:g} > max_window {max_window:g}")
    if min_windows > max_windows:
        raise ValueError(f"min_windows {min_windows} > max_windows {max_windows}")
    return _windows(
        duration=duration,
        max_windows=max_windows,
        min_windows=min_windows,
        min_gap=min_gap,
        min_window=min_window,
        max_window=max_window,
        start_after=start_after,
        max_gap=max_gap,
        grid=grid,
    )


# Caps for parameters the kind leaves unbounded above (values a person would try).
_PARAM_CAPS = {"speed": 15.0, "gust": 5.0, "volts": 3.0, "capacity_mah": 10000.0, "cells": 6}


def _param_strategy(name: str, spec: ParamSpec, grid_step: float = 0.05) -> st.SearchStrategy:
    if spec.type is bool:
        return st.booleans()
    if spec.type is str:
        if spec.choices:
            return st.sampled_from(spec.choices)
        raise ValueError(f"no strategy for free-text parameter {name!r}; pass one in params=")
    lo = spec.min if spec.min is not None else 0.0
    hi = spec.max if spec.max is not None else max(lo, _PARAM_CAPS.get(name, lo + 10.0))
    if spec.type is int:
        ilo = int(math.ceil(lo)) + (1 if spec.min_exclusive and float(lo).is_integer() else 0)
        ihi = int(math.floor(hi)) - (1 if spec.max_exclusive and float(hi).is_integer() else 0)
        return st.integers(ilo, max(ilo, ihi))
    # floats on a grid too, so they shrink to round numbers
    ulo = int(math.ceil(lo / grid_step)) + (1 if spec.min_exclusive else 0)
    uhi = int(math.floor(hi / grid_step)) - (1 if spec.max_exclusive else 0)
    return st.integers(ulo, max(ulo, uhi)).map(lambda u: round(u * grid_step, 6))


@st.composite
def _timelines(
    draw,
    *,
    kinds: Sequence[str],
    duration: float,
    max_per_kind: int,
    min_gap: float,
    min_window: float,
    max_window: float,
    start_after: float,
    grid: float,
    params: Mapping[str, Mapping[str, st.SearchStrategy]],
) -> list[dict[str, Any]]:
    registered = injection_kinds()
    out: list[dict[str, Any]] = []
    for kind in kinds:
        spec = registered[kind]
        windows = draw(
            rc_loss_patterns(
                duration,
                max_per_kind,
                min_gap,
                max_window,
                min_window=min_window,
                start_after=start_after,
                grid=grid,
            ),
            label=kind,
        )
        overrides = params.get(kind, {})
        for i, (start, stop) in enumerate(windows, start=1):
            item: dict[str, Any] = {"kind": kind, "id": f"{kind}{i}", "start": start, "stop": stop}
            for pname, pspec in spec.params.items():
                strategy = overrides.get(pname)
                if strategy is None:
                    if not pspec.required and pname not in overrides:
                        # optional parameters: the default or a drawn value
                        strategy = st.one_of(st.just(pspec.default), _param_strategy(pname, pspec))
                    else:
                        strategy = _param_strategy(pname, pspec)
                item[pname] = draw(strategy)
            out.append(item)
    out.sort(key=lambda d: (d["start"], d["kind"]))
    return out


def injection_timelines(
    kinds: Iterable[str] = ("rc_loss",),
    *,
    duration: float = 15.0,
    max_per_kind: int = 2,
    min_gap: float = 0.5,
    min_window: float = GRID,
    max_window: float = 6.0,
    start_after: float = 1.0,
    grid: float = GRID,
    params: Mapping[str, Mapping[str, st.SearchStrategy]] | None = None,
) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Lists of `[[injection]]` tables (dicts: kind, id, start, stop and the kind's
    parameters) for any registered injection kinds, sorted by start.

    Windows of one kind never overlap (each is its own id: `<kind><n>`); different kinds
    may. Parameters are drawn within their `ParamSpec` bounds (on a 0.05 grid for
    floats), or from `params[kind][name]` when given.
    """
    kinds = tuple(kinds)
    registered = injection_kinds()
    unknown = [k for k in kinds if k not in registered]
    if unknown:
        raise ValueError(
            f"unknown injection kind(s) {', '.join(unknown)}; known: {', '.join(sorted(registered))}"
        )
    if not kinds:
        raise ValueError("kinds must name at least one injection kind")
    return _timelines(
        kinds=kinds,
        duration=duration,
        max_per_kind=max_per_kind,
        min_gap=min_gap,
        min_window=min_window,
        max_window=max_window,
        start_after=start_after,
        grid=grid,
        params=params or {},
    )


# --- scenarios from windows ---------------------------------------------------------------


def _radio_settings(base: Mapping[str, Any]) -> tuple[float, int]:
    params = base.get("setup", {}).get("params", {}) or {}
    timeout = float(params.get("RC_FS_TIMEOUT", DEFAULT_RC_FS_TIMEOUT))
    enable = int(params.get("FS_THR_ENABLE", 1))
    return timeout, enable


def rc_failsafe_expectations(
    windows: Sequence[Window],
    *,
    duration: float,
    timeout: float = DEFAULT_RC_FS_TIMEOUT,
    tolerance: float = DEFAULT_TOLERANCE,
    latency: float = DEFAULT_LATENCY,
    action_mode: str | None = "RTL",
    id_prefix: str = "rc",
) -> list[dict[str, Any]]:
    """`[[expect]]` tables stating the radio-failsafe property for these windows (ids
    `<id_prefix>1`...): a "Radio Failsafe" STATUSTEXT within `timeout + tolerance` of the
    first window at least `timeout + latency` long, and never `action_mode` before any
    window has lasted `timeout - tolerance` (as `hil.search.properties.check_rc_failsafe`)."""
    out: list[dict[str, Any]] = []
    windows = sorted(windows)
    for i, (start, stop) in enumerate(windows, start=1):
        if stop - start >= timeout + latency - 1e-9:
            within = round(timeout + tolerance, 6)
            if start + within <= duration:
                out.append(
                    {"kind": "statustext", "contains": "Radio Failsafe",
                     "after": f"{id_prefix}{i}.start", "within": within}
                )
            break
    if action_mode:
        quiet_until: float | None = None
        for start, stop in windows:
            if stop - start >= timeout - tolerance:
                quiet_until = round(start + max(timeout - tolerance, 0.0), 6)
                break
        if quiet_until is None:
            out.append({"kind": "never_mode", "mode": action_mode, "after": "start"})
        elif quiet_until > 0:
            out.append(
                {"kind": "never_mode", "mode": action_mode, "after": "start", "for": quiet_until}
            )
    return out


def scenario_from_timeline(
    base: Mapping[str, Any],
    windows: Sequence[Window],
    *,
    id_prefix: str = "rc",
    expectations: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
    latency: float = DEFAULT_LATENCY,
    name: str | None = None,
) -> Scenario:
    """The scenario `base` (a dict shaped like a scenario file) with one `rc_loss`
    injection per window (ids `<id_prefix>1`, ...), validated by `parse_scenario`.

    With `expectations`, the radio-failsafe property for these windows is added as
    `[[expect]]` tables (see `rc_failsafe_expectations`; RC_FS_TIMEOUT and FS_THR_ENABLE
    come from the base's `[setup].params`), so the scenario file fails under `hil run`
    exactly when the property does. The base's own injections and expectations are kept.
    """
    return parse_scenario(
        timeline_dict(
            base, windows, id_prefix=id_prefix, expectations=expectations,
            tolerance=tolerance, latency=latency, name=name,
        )
    )


def timeline_dict(
    base: Mapping[str, Any],
    windows: Sequence[Window],
    *,
    id_prefix: str = "rc",
    expectations: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
    latency: float = DEFAULT_LATENCY,
    name: str | None = None,
) -> dict[str, Any]:
    """The dict `scenario_from_timeline` parses (for callers that edit it further)."""
    data: dict[str, Any] = copy.deepcopy(dict(base))
    head = data.setdefault("scenario", {})
    if name is not None:
        head["name"] = name
    head.setdefault("name", "rc-loss-search")
    windows = sorted((float(a), float(b)) for a, b in windows)
    listed = ", ".join(f"[{a:g}, {b:g})" for a, b in windows) or "none"
    head.setdefault("description", f"RC lost in {listed} s")
    injections = list(data.get("injection", []))
    for i, (start, stop) in enumerate(windows, start=1):
        injections.append({"kind": "rc_loss", "id": f"{id_prefix}{i}", "start": start, "stop": stop})
    if injections:
        data["injection"] = injections
    expects = list(data.get("expect", []))
    if expectations:
        timeout, enable = _radio_settings(data)
        if enable != 0:
            mode = {3: "LAND", 5: "LAND", 7: "LAND"}.get(enable, "RTL")
            setup_mode = str(data.get("setup", {}).get("mode", "")).upper()
            expects += rc_failsafe_expectations(
                windows,
                duration=float(head.get("duration", 0.0)),
                timeout=timeout,
                tolerance=tolerance,
                latency=latency,
                action_mode=None if setup_mode == mode else mode,
                id_prefix=id_prefix,
            )
    if not expects:
        raise ValueError(
            "the scenario has no [[expect]]: give the base one (the radio failsafe is off, so"
            " none is derived from the windows)"
        )
    data["expect"] = expects
    return data


# --- printing scenario files ----------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
# Expectation dataclass field -> TOML key, where they differ.
_EXPECT_KEY = {"duration": "for"}


def scenario_to_dict(scenario: Scenario) -> dict[str, Any]:
    """A scenario as the dict its file would parse to (`parse_scenario` inverts it)."""
    head: dict[str, Any] = {"name": scenario.name}
    if scenario.description:
        head["description"] = scenario.description
    if tuple(scenario.applies_to) != ("mavlink",):
        head["applies_to"] = list(scenario.applies_to)
    head["duration"] = scenario.duration
    if scenario.seed:
        head["seed"] = scenario.seed
    if scenario.arming_checks:
        head["arming_checks"] = list(scenario.arming_checks)
    s = scenario.setup
    setup: dict[str, Any] = {}
    if not s.armed:
        setup["armed"] = False
    setup["mode"] = s.mode
    if s.armed:
        setup["altitude"] = s.altitude
        if s.fly_to is not None:
            setup["fly_to"] = list(s.fly_to)
    if s.params:
        setup["params"] = dict(s.params)
    if s.wind is not None:
        setup["wind"] = dataclasses.asdict(s.wind)
    if s.battery is not None:
        setup["battery"] = dataclasses.asdict(s.battery)
    out: dict[str, Any] = {"scenario": head, "setup": setup}
    injections = []
    for inj in scenario.injections:
        item: dict[str, Any] = {"kind": inj.kind, "id": inj.id, "start": inj.start}
        if inj.stop is not None:
            item["stop"] = inj.stop
        item.update(inj.params)
        injections.append(item)
    if injections:
        out["injection"] = injections
    out["expect"] = [_expectation_dict(e) for e in scenario.expectations]
    if scenario.limits:
        out["limits"] = {
            lim.name: {k: v for k, v in (("min", lim.minimum), ("max", lim.maximum)) if v is not None}
            for lim in scenario.limits
        }
    return out


def _expectation_dict(exp: Expectation) -> dict[str, Any]:
    item: dict[str, Any] = {"kind": exp.kind}
    for f in dataclasses.fields(exp):
        value = getattr(exp, f.name)
        if value is None:
            continue  # optional keys left out (not_before, an open-ended `for`)
        item[_EXPECT_KEY.get(f.name, f.name)] = value
    return item


def scenario_toml(scenario: Scenario | Mapping[str, Any]) -> str:
    """A scenario file's text for `scenario` (a `Scenario` or a scenario-shaped dict).

    `load_scenario` on the saved text gives back the same scenario (its `path` aside).
    """
    data = scenario_to_dict(scenario) if isinstance(scenario, Scenario) else scenario
    lines: list[str] = []
    for section in ("scenario", "setup"):
        if section in data:
            _table(lines, section, data[section])
    for section in ("injection", "expect"):
        for item in data.get(section, []):
            lines.append("")
            lines.append(f"[[{section}]]")
            _pairs(lines, item, order=("kind", *INJECTION_FIXED_KEYS))
    if "limits" in data:
        _table(lines, "limits", data["limits"])
    unknown = set(data) - {"scenario", "setup", "injection", "expect", "limits"}
    for key in sorted(unknown):  # let the loader name the mistake
        _table(lines, key, data[key])
    return "\n".join(lines).lstrip("\n") + "\n"


def _table(lines: list[str], name: str, table: Any) -> None:
    if not isinstance(table, Mapping):
        lines.append(f"{_key(name)} = {toml_value(table)}")
        return
    lines.append("")
    lines.append(f"[{name}]")
    subtables = {k: v for k, v in table.items() if isinstance(v, Mapping) and k in ("wind", "battery")}
    _pairs(lines, {k: v for k, v in table.items() if k not in subtables})
    for key, sub in subtables.items():
        _table(lines, f"{name}.{_key(key)}", sub)


def _pairs(lines: list[str], table: Mapping[str, Any], order: Sequence[str] = ()) -> None:
    keys = [k for k in order if k in table] + [k for k in table if k not in order]
    seen = set()
    for key in keys:
        if key in seen:
            continue
        seen.add(key)
        lines.append(f"{_key(key)} = {toml_value(table[key])}")


def _key(key: Any) -> str:
    key = str(key)
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _string(text: str) -> str:
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    """One value in TOML's inline syntax, read back by tomllib as the same value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)  # shortest text that reads back to the same float
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, BoardTime):
        return _string(str(value))  # read back by the loader as the same expression
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as TOML")
