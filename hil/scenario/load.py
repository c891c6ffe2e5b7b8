"""Scenario files (TOML) to validated `Scenario` objects.

Every mistake raises `ScenarioError` naming the file, the key path (`[setup].altitude`,
`[[expect]][2].kind`, with 1-based indices) and what is allowed. Nothing is evaluated.
A mode is a scenario word (hil.profiles.vocabulary) or one firmware's own mode name;
whether a board's firmware has it is decided at run time (`Scenario.needs`), not here.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from hil.errors import ScenarioError
from hil.profiles import firmware_mode_names, profile_names
from hil.profiles.vocabulary import ARMING_CHECK_WORDS, MODE_WORDS
from hil.scenario.model import (
    BATTERY_PARAMS,
    BOARD_CLASSES,
    EXPECTATION_CLASSES,
    INJECTION_FIXED_KEYS,
    LIMIT_NAMES,
    LINK_MEASURES,
    REQUIRED,
    SETUP_MODES,
    WIND_PARAMS,
    BatteryConfig,
    BoardTime,
    Expectation,
    Injection,
    Limit,
    ParamInvalid,
    ParamSpec,
    Scenario,
    Setup,
    Wind,
    injection_kinds,
)

__all__ = ["MAX_DURATION_S", "load_scenario", "parse_scenario"]

_TOP_KEYS = ("scenario", "setup", "injection", "expect", "limits")
_SCENARIO_KEYS = ("name", "description", "applies_to", "duration", "seed", "arming_checks")
_SETUP_KEYS = ("mode", "altitude", "fly_to", "armed", "params", "wind", "battery")
_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PARAM_NAME_RE = re.compile(r"[A-Z][A-Z0-9_]{0,15}")
_EPS = 1e-9
_BOARD_TIME_RE = re.compile(
    r"(?:(?P<scale>\d+(?:\.\d+)?)\s*\*\s*)?(?P<name>[A-Za-z][A-Za-z0-9_]{0,31})"
    r"(?:\s*(?P<sign>[+-])\s*(?P<offset>\d+(?:\.\d+)?))?"
)

# Keys of each expectation kind: TOML key -> (dataclass field, spec). `after` is special.
_TIME = ParamSpec(float, min=0.0)
_POSITIVE = ParamSpec(float, min=0.0, min_exclusive=True)
#: The longest scenario: an hour of vehicle time. A longer one is a typo (1e9) or a soak
#: test, which belongs in `hil bench --soak`; either way the run must end.
MAX_DURATION_S = 3600.0
#: A mode an expectation names: a scenario word, or a firmware's own name (checked apart).
_MODE = ParamSpec(str)
_EXPECT_KEYS: dict[str, dict[str, tuple[str, ParamSpec]]] = {
    "mode": {
        "mode": ("mode", _MODE),
        "within": ("within", _POSITIVE),
        "not_before": ("not_before", _TIME),
    },
    "statustext": {
        "contains": ("contains", ParamSpec(str)),
        "within": ("within", _POSITIVE),
    },
    "disarmed": {"within": ("within", _POSITIVE), "not_before": ("not_before", _TIME)},
    "landed_near_home": {"radius": ("radius", _POSITIVE)},
    "near_home": {"radius": ("radius", _POSITIVE), "within": ("within", _POSITIVE)},
    "altitude": {
        "min": ("min", ParamSpec(float)),
        "max": ("max", ParamSpec(float)),
        "delay": ("delay", ParamSpec(float, default=0.0, min=0.0)),
        "for": ("duration", _POSITIVE),
    },
    "hold_position": {
        "radius": ("radius", _POSITIVE),
        "delay": ("delay", ParamSpec(float, default=0.0, min=0.0)),
        "for": ("duration", _POSITIVE),
    },
    "never_mode": {
        "mode": ("mode", _MODE),
        "for": ("duration", _POSITIVE),
    },
    "armed_throughout": {"for": ("duration", _POSITIVE)},
    "armed": {"within": ("within", _POSITIVE), "not_before": ("not_before", _TIME)},
    "disarmed_throughout": {"for": ("duration", _POSITIVE)},
    "link_quality": {
        "min": ("min", ParamSpec(float, default=0.0, min=0.0, max=100.0)),
        "max": ("max", ParamSpec(float, default=100.0, min=0.0, max=100.0)),
        "measure": ("measure", ParamSpec(str, default="lq", choices=LINK_MEASURES)),
        "delay": ("delay", ParamSpec(float, default=0.0, min=0.0)),
        "for": ("duration", _POSITIVE),
    },
}
# Kinds whose `for` may be left out (the window then runs to the end of the recording).
_OPTIONAL_FOR = {"never_mode", "armed_throughout", "disarmed_throughout"}


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; raise `ScenarioError` on any problem."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except IsADirectoryError:
        raise ScenarioError(f"{p}: is a directory, expected a scenario file (.toml)") from None
    except FileNotFoundError:
        raise ScenarioError(f"{p}: no such file") from None
    except OSError as exc:
        raise ScenarioError(f"{p}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ScenarioError(f"{p}: not UTF-8 text (bad byte at line {line})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{p}: TOML syntax error: {exc}") from None
    return parse_scenario(data, p)


def parse_scenario(data: Mapping[str, Any], path: str | Path | None = None) -> Scenario:
    """Validate a dict shaped like a parsed scenario file (see `load_scenario`).

    `path` is used in messages and for the default name (the file stem); without a path
    `[scenario].name` is required.
    """
    return _Parser(path).scenario(data)


def _show(value: Any) -> str:
    """A value as the file would write it, for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    return f"a {type(value).__name__}"


def _sorted_keys(keys: Any) -> str:
    return ", ".join(sorted(keys))


class _Parser:
    """Validation with the file name carried along for messages."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self.label = str(path) if path is not None else "<scenario>"

    def error(self, where: str, message: str) -> ScenarioError:
        return ScenarioError(f"{self.label}: {where}: {message}")

    # --- generic helpers ---------------------------------------------------------

    def table(self, value: Any, where: str, allowed: Any) -> Mapping[str, Any]:
        """Check `value` is a table holding only `allowed` keys."""
        if not isinstance(value, Mapping):
            raise self.error(where, f"must be a table, got {_show(value)}")
        unknown = [k for k in value if k not in allowed]
        if unknown:
            names = ", ".join(_show(str(k)) for k in unknown)
            word = "key" if len(unknown) == 1 else "keys"
            raise self.error(where, f"unknown {word} {names}; allowed keys: {_sorted_keys(allowed)}")
        return value

    def value(self, tbl: Mapping[str, Any], key: str, where: str, spec: ParamSpec) -> Any:
        """Validate `tbl[key]` against `spec` (default when missing and allowed)."""
        path = f"{where}.{key}"
        if key not in tbl:
            if spec.required:
                raise self.error(path, f"missing; must be {spec.requirement()}")
            return spec.default
        raw = tbl[key]
        try:
            return spec.convert(raw)
        except ParamInvalid as exc:
            if spec.type is str and spec.choices and isinstance(raw, str):
                raise self.error(path, f"{_show(raw)} is not {exc}") from None
            raise self.error(path, f"must be {exc}, got {_show(raw)}") from None

    def array_of_tables(self, data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
        if key not in data:
            return []
        value = data[key]
        if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
            raise self.error(
                f"[[{key}]]", f"must be an array of tables, written [[{key}]], got {_show(value)}"
            )
        return value

    # --- sections ------------------------------------------------------------------

    def scenario(self, data: Any) -> Scenario:
        top = self.table(data, "top level", _TOP_KEYS)
        if "scenario" not in top:
            raise self.error("[scenario]", "missing; it needs at least duration")
        head = self.table(top["scenario"], "[scenario]", _SCENARIO_KEYS)
        name = self.name(head)
        description = self.value(head, "description", "[scenario]", ParamSpec(str, default=""))
        applies_to = self.applies_to(head)
        raw = head.get("duration")
        too_long = isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw)
        if too_long and raw > MAX_DURATION_S:
            raise self.error(
                "[scenario].duration",
                f"{_show(raw)} s is longer than a scenario may run ({MAX_DURATION_S:g} s, an hour);"
                " split it, or measure long runs with `hil bench --soak`",
            )
        duration = self.value(head, "duration", "[scenario]", _POSITIVE)
        seed = self.value(head, "seed", "[scenario]", ParamSpec(int, default=0, min=0))
        arming_checks = self.arming_checks(head)

        if "setup" not in top:
            raise self.error("[setup]", "missing; it needs at least mode and altitude")
        setup = self.setup(top["setup"])

        injections = tuple(
            self.injection(raw, f"[[injection]][{i}]", duration)
            for i, raw in enumerate(self.array_of_tables(top, "injection"), start=1)
        )
        seen: dict[str, str] = {}
        for i, inj in enumerate(injections, start=1):
            if inj.id in seen:
                raise self.error(
                    f"[[injection]][{i}].id",
                    f"{_show(inj.id)} is already used by {seen[inj.id]}; give each injection"
                    " of the same kind its own id",
                )
            seen[inj.id] = f"[[injection]][{i}]"
            if inj.kind == "arm_attempt" and setup.armed:
                raise self.error(
                    f"[[injection]][{i}].kind",
                    "arm_attempt needs a vehicle on the ground: set [setup] armed = false",
                )

        anchors: dict[str, float] = {"start": 0.0}
        open_ended: list[str] = []
        for inj in injections:
            anchors[f"{inj.id}.start"] = inj.start
            if inj.stop is not None:
                anchors[f"{inj.id}.stop"] = inj.stop
            else:
                open_ended.append(inj.id)

        raw_expects = self.array_of_tables(top, "expect")
        if not raw_expects:
            raise self.error("[[expect]]", "missing; a scenario needs at least one expectation")
        expectations = tuple(
            self.expectation(raw, f"[[expect]][{i}]", anchors, open_ended, duration)
            for i, raw in enumerate(raw_expects, start=1)
        )
        limits = self.limits(top["limits"]) if "limits" in top else ()
        return Scenario(
            name=name,
            description=description,
            path=self.path,
            applies_to=applies_to,
            duration=duration,
            seed=seed,
            setup=setup,
            injections=injections,
            expectations=expectations,
            limits=limits,
            arming_checks=arming_checks,
        )

    def limits(self, raw: Any) -> tuple[Limit, ...]:
        """``[limits]``: name = { min = x, max = y } for the figures in LIMIT_NAMES."""
        tbl = self.table(raw, "[limits]", tuple(LIMIT_NAMES))
        out = []
        for name, bounds in tbl.items():
            where = f"[limits].{name}"
            b = self.table(bounds, where, ("min", "max"))
            if not b:
                raise self.error(where, "give min, max or both, e.g. { max = 200.0 }")
            lo = self.value(b, "min", where, ParamSpec(float)) if "min" in b else None
            hi = self.value(b, "max", where, ParamSpec(float)) if "max" in b else None
            if lo is not None and hi is not None and lo > hi:
                raise self.error(f"{where}.min", f"must be <= max ({hi:g}), got {lo:g}")
            out.append(Limit(name, lo, hi))
        return tuple(out)

    def name(self, head: Mapping[str, Any]) -> str:
        if "name" not in head:
            if self.path is None or not self.path.stem:
                raise self.error("[scenario].name", "missing; must be a non-empty string")
            return self.path.stem
        name = head["name"]
        if not isinstance(name, str) or not name.strip() or not name.isprintable():
            raise self.error(
                "[scenario].name", f"must be a non-empty single-line string, got {_show(name)}"
            )
        return name

    def board_time(self, value: str, where: str) -> BoardTime:
        """Parse ``"name"``, ``"name + 0.5"``, ``"name - 0.2"`` or ``"2 * name"``."""
        m = _BOARD_TIME_RE.fullmatch(value.strip())
        if m is None:
            raise self.error(
                where,
                f"{_show(value)} is neither a number of seconds nor a board setting expression "
                '("failsafe_delay", "failsafe_delay + 0.5", "2 * RC_FS_TIMEOUT")',
            )
        scale = float(m.group("scale")) if m.group("scale") else 1.0
        offset = float(m.group("offset")) if m.group("offset") else 0.0
        if m.group("sign") == "-":
            offset = -offset
        if not (math.isfinite(scale) and math.isfinite(offset)) or scale <= 0:
            raise self.error(where, f"{_show(value)}: the factor must be a positive finite number")
        return BoardTime(m.group("name"), scale, offset)

    def arming_checks(self, head: Mapping[str, Any]) -> tuple[str, ...]:
        """``[scenario].arming_checks``: the firmware's arming checks the scenario relies on."""
        where = "[scenario].arming_checks"
        value = head.get("arming_checks", [])
        allowed = ", ".join(ARMING_CHECK_WORDS)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(where, f"must be a list of arming check words ({allowed}), got {_show(value)}")
        for word in value:
            if word not in ARMING_CHECK_WORDS:
                raise self.error(where, f"{_show(word)} is not an arming check word; words: {allowed}")
        return tuple(dict.fromkeys(value))

    def applies_to(self, head: Mapping[str, Any]) -> tuple[str, ...]:
        where = "[scenario].applies_to"
        allowed = ", ".join(BOARD_CLASSES)
        if "applies_to" not in head:
            return ("mavlink",)
        value = head["applies_to"]
        if not isinstance(value, list) or not value:
            raise self.error(
                where, f"must be a non-empty array of board classes ({allowed}), got {_show(value)}"
            )
        for i, item in enumerate(value, start=1):
            if item not in BOARD_CLASSES or not isinstance(item, str):
                raise self.error(f"{where}[{i}]", f"{_show(item)} is not one of: {allowed}")
        if len(set(value)) != len(value):
            raise self.error(where, "lists a board class twice")
        return tuple(value)

    def mode_word(self, mode: str, where: str) -> None:
        """A mode must be a scenario word, or one firmware's own name for a mode of its own."""
        if mode in MODE_WORDS or mode in firmware_mode_names():
            return
        raise self.error(
            where,
            f"{_show(mode)} is not one of: {_sorted_keys(MODE_WORDS)}; nor a mode name of a"
            f" known firmware ({', '.join(profile_names())})",
        )

    def setup(self, raw: Any) -> Setup:
        where = "[setup]"
        tbl = self.table(raw, where, _SETUP_KEYS)
        armed = self.value(tbl, "armed", where, ParamSpec(bool, default=True))
        # On the ground (armed = false) the mode is optional: the board's default, STABILIZE.
        mode_default = REQUIRED if armed else "STABILIZE"
        mode = self.value(tbl, "mode", where, ParamSpec(str, choices=SETUP_MODES, default=mode_default))
        if armed:
            # 0: armed on the ground, motors idle (a board on a bench); else a hover height.
            altitude = self.value(tbl, "altitude", where, ParamSpec(float, min=0.0, max=100.0))
            if 0.0 < altitude < 1.0:
                raise self.error(
                    f"{where}.altitude", f"must be 0 (armed on the ground) or from 1 to 100 m, got {altitude:g}"
                )
            if altitude == 0.0 and "fly_to" in tbl:
                raise self.error(f"{where}.fly_to", "needs a hover altitude (altitude = 0 stays on the ground)")
        else:
            for key in ("altitude", "fly_to"):
                if key in tbl:
                    raise self.error(
                        f"{where}.{key}", "only allowed with armed = true (the vehicle stays on"
                        " the ground)"
                    )
            altitude = 0.0
        fly_to = self.fly_to(tbl, where) if "fly_to" in tbl else None
        params = self.board_params(tbl, where) if "params" in tbl else MappingProxyType({})
        wind = None
        if "wind" in tbl:
            wind = Wind(**self.params(tbl["wind"], f"{where}.wind", WIND_PARAMS))
        battery = None
        if "battery" in tbl:
            battery = BatteryConfig(**self.params(tbl["battery"], f"{where}.battery", BATTERY_PARAMS))
        return Setup(
            mode=mode,
            altitude=altitude,
            fly_to=fly_to,
            params=params,
            wind=wind,
            battery=battery,
            armed=armed,
        )

    def fly_to(self, tbl: Mapping[str, Any], where: str) -> tuple[float, float]:
        value = tbl["fly_to"]
        ok = (
            isinstance(value, list)
            and len(value) == 2
            and all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in value
            )
        )
        if not ok:
            raise self.error(
                f"{where}.fly_to",
                f"must be [north, east], two numbers in m from home, got {_show(value)}",
            )
        return (float(value[0]), float(value[1]))

    def board_params(self, tbl: Mapping[str, Any], where: str) -> Mapping[str, float]:
        value = tbl["params"]
        path = f"{where}.params"
        if not isinstance(value, Mapping):
            raise self.error(path, f"must be a table of NAME = number, got {_show(value)}")
        out: dict[str, float] = {}
        number = ParamSpec(float)
        for name in value:
            if not isinstance(name, str) or not _PARAM_NAME_RE.fullmatch(name):
                raise self.error(
                    path,
                    f"parameter name {_show(str(name))} must be 1 to 16 characters A-Z, 0-9, _"
                    " starting with a letter",
                )
            out[name] = self.value(value, name, path, number)
        return MappingProxyType(out)

    def params(self, raw: Any, where: str, specs: Mapping[str, ParamSpec]) -> dict[str, Any]:
        """A table whose keys are exactly `specs` (defaults filled in)."""
        tbl = self.table(raw, where, specs)
        return {key: self.value(tbl, key, where, spec) for key, spec in specs.items()}

    def injection(self, raw: Mapping[str, Any], where: str, duration: float) -> Injection:
        kinds = injection_kinds()
        if "kind" not in raw:
            raise self.error(f"{where}.kind", f"missing; must be one of: {_sorted_keys(kinds)}")
        kind_name = raw["kind"]
        if not isinstance(kind_name, str) or kind_name not in kinds:
            raise self.error(
                f"{where}.kind", f"{_show(kind_name)} is not one of: {_sorted_keys(kinds)}"
            )
        kind = kinds[kind_name]
        tbl = self.table(raw, where, (*INJECTION_FIXED_KEYS, *kind.params))
        inj_id = tbl.get("id", kind_name)
        if not isinstance(inj_id, str) or not _ID_RE.fullmatch(inj_id):
            raise self.error(
                f"{where}.id",
                f"must be 1 to 64 characters A-Z, a-z, 0-9, _ or -, got {_show(inj_id)}",
            )
        start = self.value(
            tbl, "start", where, ParamSpec(float, min=0.0, max=duration, max_exclusive=True)
        )
        if "stop" in tbl and "duration" in tbl:
            raise self.error(where, "give either stop or duration, not both")
        stop: float | None = None
        if "stop" in tbl:
            stop = self.value(
                tbl, "stop", where, ParamSpec(float, min=start, min_exclusive=True, max=duration)
            )
        elif "duration" in tbl:
            length = self.value(tbl, "duration", where, _POSITIVE)
            stop = start + length
            if stop > duration + _EPS:
                raise self.error(
                    f"{where}.duration",
                    f"the injection would end at t={stop:g} s (start {start:g} + {length:g}),"
                    f" after the scenario's duration {duration:g} s",
                )
        params = {key: self.value(tbl, key, where, spec) for key, spec in kind.params.items()}
        return Injection(
            id=inj_id, kind=kind_name, start=start, stop=stop, params=MappingProxyType(params)
        )

    def expectation(
        self,
        raw: Mapping[str, Any],
        where: str,
        anchors: Mapping[str, float],
        open_ended: list[str],
        duration: float,
    ) -> Expectation:
        kinds = _sorted_keys(EXPECTATION_CLASSES)
        if "kind" not in raw:
            raise self.error(f"{where}.kind", f"missing; must be one of: {kinds}")
        kind = raw["kind"]
        if not isinstance(kind, str) or kind not in EXPECTATION_CLASSES:
            raise self.error(f"{where}.kind", f"{_show(kind)} is not one of: {kinds}")
        keys = _EXPECT_KEYS[kind]
        has_after = kind != "landed_near_home"
        allowed = ("kind", *keys, *(("after",) if has_after else ()))
        tbl = self.table(raw, where, allowed)

        fields: dict[str, Any] = {}
        for key, (fname, spec) in keys.items():
            optional = key in ("not_before", "delay") or (key == "for" and kind in _OPTIONAL_FOR)
            if optional and key not in tbl:
                continue
            if key in ("within", "not_before") and isinstance(tbl.get(key), str):
                fields[fname] = self.board_time(tbl[key], f"{where}.{key}")
                continue
            fields[fname] = self.value(tbl, key, where, spec)
            if spec is _MODE:
                self.mode_word(fields[fname], f"{where}.{key}")
        timed = any(isinstance(v, BoardTime) for v in fields.values())

        anchor_t = 0.0
        if has_after:
            after = tbl.get("after", "start")
            if not isinstance(after, str) or after not in anchors:
                valid = ", ".join(anchors)
                hint = ""
                if isinstance(after, str) and after.endswith(".stop") and after[:-5] in open_ended:
                    hint = f" (injection {_show(after[:-5])} has no stop or duration)"
                raise self.error(
                    f"{where}.after", f"{_show(after)} is not a valid anchor{hint}; valid: {valid}"
                )
            fields["after"] = after
            anchor_t = anchors[after]

        if kind in ("altitude", "link_quality") and fields["min"] > fields["max"]:
            raise self.error(
                f"{where}.min", f"must be <= max ({fields['max']:g}), got {fields['min']:g}"
            )
        if kind == "mode" and not timed and "not_before" in fields and fields["not_before"] >= fields["within"]:
            raise self.error(
                f"{where}.not_before",
                f"must be less than within ({fields['within']:g}), got {fields['not_before']:g}",
            )

        # The window the expectation looks at must end within the scenario's duration.
        span_key = {"mode": "within", "statustext": "within", "disarmed": "within", "armed": "within", "near_home": "within"}.get(kind, "for")
        span_field = keys[span_key][0] if span_key in keys else None
        if span_field is not None and span_field in fields and not timed:
            end = anchor_t + fields.get("delay", 0.0) + fields[span_field]
            if end > duration + _EPS:
                delay = f" + delay {fields['delay']:g}" if fields.get("delay") else ""
                raise self.error(
                    f"{where}.{span_key}",
                    f"the window would end at t={end:g} s ({fields['after']} at {anchor_t:g} s"
                    f"{delay} + {span_key} {fields[span_field]:g}), after the scenario's"
                    f" duration {duration:g} s",
                )
        return EXPECTATION_CLASSES[kind](**fields)


MAX_SEEDS = 1000
"""How many seeds one `--seeds` may name (a sweep of 0-19 is the usual)."""


def parse_seeds(text: str) -> list[int]:
    """`0-19`, `3` or `0,4,9-11` -> the seeds in order, each once; ScenarioError naming
    what is wrong (seeds are whole numbers >= 0, at most MAX_SEEDS of them)."""
    seeds: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        low, dash, high = part.partition("-")
        try:
            first = int(low)
            last = int(high) if dash else first
        except ValueError:
            raise ScenarioError(
                f"--seeds {text!r}: {part!r} is not a seed or a range (give e.g. 0-19 or 0,3,7)"
            ) from None
        if first < 0 or last < first:
            raise ScenarioError(f"--seeds {text!r}: {part!r} is not a range of seeds >= 0, low to high")
        if last - first + 1 + len(seeds) > MAX_SEEDS:
            raise ScenarioError(f"--seeds {text!r}: more than {MAX_SEEDS} seeds")
        seeds.extend(s for s in range(first, last + 1) if s not in seeds)
    return seeds
