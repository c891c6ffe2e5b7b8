"""Scenario objects (frozen dataclasses) and the registry of injection kinds.

The loader (`hil.scenario.load`) turns a TOML file into these objects; Python tests can
build them through `parse_scenario` from a dict. Nothing here is ever evaluated as code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from hil.profiles.translate import statustext_for, translate_settings

if TYPE_CHECKING:
    from hil.profiles import FirmwareProfile

# Board classes a scenario can apply to.
BOARD_CLASSES: tuple[str, ...] = ("mavlink", "msp")

# Flight modes a scenario's setup can put the vehicle in (scenario words, see
# hil.profiles.vocabulary). ANGLE is an MSP board's self-levelling mode, flown by the
# harness's pilot model on the throttle; HOLD is LOITER in any firmware's terms.
SETUP_MODES: tuple[str, ...] = (
    "STABILIZE", "ALT_HOLD", "LOITER", "GUIDED", "RTL", "LAND", "ANGLE", "HOLD",
)

# Modes an MSP board (Betaflight) reports, from its mode bits; FAILSAFE is its stage 2.
MSP_MODES: tuple[str, ...] = ("ACRO", "ANGLE", "HORIZON", "FAILSAFE")

# ArduCopter's mode names and the MSP ones: what an expectation could name before the
# scenario vocabulary. The loader now takes the words of MODE_WORDS and any registered
# firmware's own mode names (hil.profiles.firmware_mode_names); kept for older callers.
COPTER_MODES: tuple[str, ...] = tuple(
    sorted(
        {
            *SETUP_MODES,
            *MSP_MODES,
            "ACRO", "AUTO", "AUTOTUNE", "AUTO_RTL", "AUTOROTATE", "BRAKE", "CIRCLE", "DRIFT",
            "FLIP", "FLOWHOLD", "FOLLOW", "GUIDED_NOGPS", "POSHOLD", "SMART_RTL", "SPORT",
            "SYSTEMID", "THROW", "TURTLE", "ZIGZAG",
        }
    )
)

@dataclass(frozen=True)
class BoardTime:
    """A time read from the board's own configuration when the scenario runs.

    Written in a scenario as ``"failsafe_delay"``, ``"failsafe_delay + 0.5"`` or
    ``"2 * RC_FS_TIMEOUT"``: the name is a setting of the board (an MSP board's failsafe
    timings in seconds, a MAVLink board's parameters), so a scenario states the
    firmware's documented behaviour without hard-coding one configuration of it.
    """

    name: str
    scale: float = 1.0
    offset: float = 0.0

    def resolve(self, facts: Mapping[str, float]) -> float:
        if self.name not in facts:
            known = ", ".join(sorted(facts)) or "none"
            raise KeyError(f"{self.name!r} is not a setting this board reports (it reports: {known})")
        return self.scale * float(facts[self.name]) + self.offset

    def __str__(self) -> str:
        text = self.name if self.scale == 1.0 else f"{self.scale:g} * {self.name}"
        if self.offset:
            text += f" {'+' if self.offset > 0 else '-'} {abs(self.offset):g}"
        return text


# Keys of an [[injection]] table that are not parameters of the kind.
INJECTION_FIXED_KEYS: tuple[str, ...] = ("kind", "id", "start", "stop", "duration")


class _Required:
    """Marker for a parameter without a default."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


class ParamInvalid(ValueError):
    """A value does not satisfy a `ParamSpec`; the message is the requirement."""


@dataclass(frozen=True)
class ParamSpec:
    """Declares one parameter: its type, default, bounds and a one-line doc."""

    type: type  # float, int, bool or str
    default: Any = REQUIRED
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False
    choices: tuple[str, ...] | None = None
    doc: str = ""

    def __post_init__(self) -> None:
        if self.type not in (float, int, bool, str):
            raise TypeError(f"ParamSpec.type must be float, int, bool or str, got {self.type!r}")
        if self.default is not REQUIRED:
            self.convert(self.default)  # a bad default is a programming error

    @property
    def required(self) -> bool:
        """True when the parameter has no default."""
        return self.default is REQUIRED

    def requirement(self) -> str:
        """What is allowed, in words: 'a number between 0 and 360'."""
        if self.type is bool:
            return "true or false"
        if self.type is str:
            if self.choices:
                return "one of: " + ", ".join(self.choices)
            return "a string"
        noun = "an integer" if self.type is int else "a number"
        lo, hi = self.min, self.max
        if lo is not None and hi is not None and not self.min_exclusive and not self.max_exclusive:
            return f"{noun} between {_num(lo)} and {_num(hi)}"
        parts = []
        if lo is not None:
            parts.append(f"{'>' if self.min_exclusive else '>='} {_num(lo)}")
        if hi is not None:
            parts.append(f"{'<' if self.max_exclusive else '<='} {_num(hi)}")
        return noun + (" " + " and ".join(parts) if parts else "")

    def convert(self, value: Any) -> Any:
        """Return `value` normalised to the declared type, or raise `ParamInvalid`."""
        if self.type is bool:
            if not isinstance(value, bool):
                raise ParamInvalid(self.requirement())
            return value
        if self.type is str:
            if not isinstance(value, str) or (self.choices and value not in self.choices):
                raise ParamInvalid(self.requirement())
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParamInvalid(self.requirement())
        if self.type is int and not isinstance(value, int):
            raise ParamInvalid(self.requirement())
        if isinstance(value, float) and not math.isfinite(value):
            raise ParamInvalid(self.requirement())
        if self.min is not None and (value <= self.min if self.min_exclusive else value < self.min):
            raise ParamInvalid(self.requirement())
        if self.max is not None and (value >= self.max if self.max_exclusive else value > self.max):
            raise ParamInvalid(self.requirement())
        return float(value) if self.type is float else value


def _num(x: float) -> str:
    """A bound as written by a person: 100, 0.5."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


@dataclass(frozen=True)
class InjectionKind:
    """A registered injection kind: its name, parameters and a one-line doc."""

    name: str
    params: Mapping[str, ParamSpec]
    doc: str = ""


_INJECTION_KINDS: dict[str, InjectionKind] = {}


def register_injection_kind(
    name: str, params: Mapping[str, ParamSpec], doc: str = "", *, replace: bool = False
) -> InjectionKind:
    """Add an injection kind the loader accepts as `[[injection]] kind = name`.

    Parameters are written flat in the injection's table (`volts = 1.5`), so their names
    cannot be one of `INJECTION_FIXED_KEYS`.
    """
    if not isinstance(name, str) or not name.isidentifier() or not name.islower():
        raise ValueError(f"injection kind name must be a lowercase identifier, got {name!r}")
    if name in _INJECTION_KINDS and not replace:
        raise ValueError(f"injection kind {name!r} is already registered")
    for pname, spec in params.items():
        if not isinstance(pname, str) or not pname.isidentifier():
            raise ValueError(f"parameter name must be an identifier, got {pname!r}")
        if pname in INJECTION_FIXED_KEYS:
            raise ValueError(f"parameter name {pname!r} clashes with an injection key")
        if not isinstance(spec, ParamSpec):
            raise TypeError(f"parameter {pname!r}: expected a ParamSpec, got {spec!r}")
    kind = InjectionKind(name, MappingProxyType(dict(params)), doc)
    _INJECTION_KINDS[name] = kind
    return kind


def unregister_injection_kind(name: str) -> None:
    """Remove a registered kind (for tests that register temporary kinds)."""
    _INJECTION_KINDS.pop(name, None)


def injection_kinds() -> Mapping[str, InjectionKind]:
    """The registered injection kinds by name (read-only view)."""
    return MappingProxyType(_INJECTION_KINDS)


WIND_PARAMS: Mapping[str, ParamSpec] = MappingProxyType(
    {
        "speed": ParamSpec(float, min=0.0, doc="mean wind speed, m/s"),
        "direction": ParamSpec(
            float, default=0.0, min=0.0, max=360.0, doc="where the wind blows from, deg (0 = north)"
        ),
        "gust": ParamSpec(float, default=0.0, min=0.0, doc="gust amplitude, m/s"),
    }
)

BATTERY_PARAMS: Mapping[str, ParamSpec] = MappingProxyType(
    {
        "cells": ParamSpec(int, min=1, max=14, doc="cells in series"),
        "capacity_mah": ParamSpec(float, min=0.0, min_exclusive=True, doc="capacity, mAh"),
    }
)

register_injection_kind("rc_loss", {}, "the radio link is gone")
register_injection_kind("gcs_loss", {}, "the ground station's heartbeats stop")
register_injection_kind("gps_loss", {}, "the GPS receiver has no fix")
register_injection_kind(
    "battery_sag",
    {"volts": ParamSpec(float, min=0.0, min_exclusive=True, doc="extra voltage drop, V")},
    "the battery voltage drops by `volts`",
)
register_injection_kind("wind", WIND_PARAMS, "wind (on top of the setup's wind)")
register_injection_kind(
    "arm_switch", {}, "the pilot holds the arm switch on (from start to stop; off before and after)"
)
register_injection_kind(
    "arm_attempt",
    {},
    "the ground station asks the board to arm over MAVLink (COMPONENT_ARM_DISARM) at start,"
    " then once a second until it is armed or the stop comes (no stop: once)",
)

# Threats modelled physically (they act through the receivers' serial links when the
# board is wired that way, or through the HIL path otherwise).
register_injection_kind(
    "gps_jamming",
    {
        "js_db": ParamSpec(float, min=0.0, max=90.0, doc="jammer-to-signal ratio at full power, dB"),
        "ramp": ParamSpec(float, default=0.0, min=0.0, doc="seconds to rise from 0 dB to js_db"),
    },
    "a GNSS jammer: C/N0 falls, satellites drop, the fix degrades to none",
)
register_injection_kind(
    "gps_spoofing",
    {
        "rate": ParamSpec(float, min=0.0, max=50.0, doc="speed of the false position's walk, m/s"),
        "bearing": ParamSpec(float, default=0.0, min=0.0, max=360.0, doc="direction of the walk, deg"),
        "clock_offset": ParamSpec(float, default=0.0, doc="false time offset, s"),
    },
    "a GNSS spoofer: a healthy-looking fix that walks away from the truth",
)
register_injection_kind(
    "rc_jamming",
    {
        "loss": ParamSpec(float, min=0.0, max=1.0, doc="mean share of RC frames lost (1 = total)"),
        "burst_ms": ParamSpec(float, default=100.0, min=0.0, min_exclusive=True, doc="mean loss burst, ms"),
    },
    "bursty RC link loss (Gilbert-Elliott); LQ and RSSI follow",
)
register_injection_kind(
    "telemetry_jamming",
    {
        "loss": ParamSpec(
            float, default=0.0, min=0.0, max=1.0, doc="share of ground-station heartbeats lost"
        ),
        "burst_ms": ParamSpec(
            float, default=0.0, min=0.0, doc="mean loss burst, ms (0: independent losses)"
        ),
        "delay_ms": ParamSpec(float, default=0.0, min=0.0, doc="fixed extra latency, ms"),
        "jitter_ms": ParamSpec(
            float, default=0.0, min=0.0, doc="extra random latency, 0..jitter_ms, ms"
        ),
    },
    "loss (optionally in bursts), delay and jitter on the MAVLink telemetry link: "
    "ground-station heartbeats go missing or arrive late",
)
register_injection_kind(
    "imu_noise",
    {"scale": ParamSpec(float, min=0.0, max=100.0, doc="multiplier of the IMU noise")},
    "vibration: IMU noise grows by `scale`",
)
register_injection_kind(
    "imu_stuck",
    {"axis": ParamSpec(int, min=0, max=5, doc="0-2 accel x/y/z, 3-5 gyro x/y/z")},
    "one IMU axis repeats its last value",
)
register_injection_kind(
    "imu_clip",
    {"limit": ParamSpec(float, min=1.0, max=160.0, doc="accelerometer range, m/s^2")},
    "the accelerometer saturates at `limit` (vibration or a low range setting)",
)
register_injection_kind(
    "baro_drift",
    {"rate": ParamSpec(float, min=-10.0, max=10.0, doc="altitude error growth, m/s")},
    "the barometer drifts",
)
register_injection_kind(
    "compass_interference",
    {
        "gauss": ParamSpec(float, min=0.0, max=5.0, doc="strength of the interfering field, gauss"),
        "direction": ParamSpec(float, default=90.0, min=0.0, max=360.0, doc="its direction in the body frame, deg"),
    },
    "a magnetic field from the airframe (power lines, motors) bends the compass",
)


# --- scenario objects ---------------------------------------------------------------


@dataclass(frozen=True)
class Wind:
    """Steady wind with gusts; `direction` is where it blows from, deg, 0 = north."""

    speed: float
    direction: float = 0.0
    gust: float = 0.0

    def apply_to(self, config) -> None:
        """Set a loop configuration's weather (``wind_speed``, ``wind_direction``,
        ``wind_gust``: every plant configuration has them) to this wind."""
        config.wind_speed = self.speed
        config.wind_direction = self.direction
        config.wind_gust = self.gust


@dataclass(frozen=True)
class BatteryConfig:
    """The simulated battery pack."""

    cells: int
    capacity_mah: float


@dataclass(frozen=True)
class Setup:
    """How the vehicle is prepared before the timeline starts (t < 0)."""

    mode: str
    altitude: float
    fly_to: tuple[float, float] | None = None
    params: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    wind: Wind | None = None
    battery: BatteryConfig | None = None
    armed: bool = True


@dataclass(frozen=True)
class Injection:
    """A threat applied in [start, stop) s on the timeline; stop None = until the end."""

    id: str
    kind: str
    start: float
    stop: float | None
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Expectation:
    """Base of the expectation kinds; `kind` is the TOML `kind`."""

    kind: ClassVar[str] = ""

    def anchors(self) -> tuple[str, ...]:
        """Anchor names this expectation refers to."""
        after = getattr(self, "after", None)
        return (after,) if after is not None else ()

    def describe(self) -> str:
        """A one-line statement of what is expected."""
        raise NotImplementedError


def _s(x: float | BoardTime) -> str:
    return f"({x}) s" if isinstance(x, BoardTime) else f"{x:.2f} s"


@dataclass(frozen=True)
class ExpectMode(Expectation):
    """The vehicle enters `mode` within `within` s after `after`, not before `not_before`."""

    kind: ClassVar[str] = "mode"
    mode: str
    within: float
    after: str = "start"
    not_before: float | None = None

    def describe(self) -> str:
        text = f"mode {self.mode} within {_s(self.within)} after {self.after}"
        if self.not_before is not None:
            text += f", not before {_s(self.not_before)}"
        return text


@dataclass(frozen=True)
class ExpectStatustext(Expectation):
    """A STATUSTEXT containing `contains` (case-insensitive) within `within` s after `after`."""

    kind: ClassVar[str] = "statustext"
    contains: str
    within: float
    after: str = "start"

    def describe(self) -> str:
        return f'STATUSTEXT containing "{self.contains}" within {_s(self.within)} after {self.after}'


@dataclass(frozen=True)
class ExpectDisarmed(Expectation):
    """Disarmed within `within` s after `after` (not before `not_before`), and stays disarmed."""

    kind: ClassVar[str] = "disarmed"
    within: float
    after: str = "start"
    not_before: float | None = None

    def describe(self) -> str:
        text = f"disarmed within {_s(self.within)} after {self.after}"
        if self.not_before is not None:
            text += f", not before {_s(self.not_before)}"
        return text


@dataclass(frozen=True)
class ExpectArmed(Expectation):
    """Armed within `within` s after `after` (not before `not_before`), and stays armed."""

    kind: ClassVar[str] = "armed"
    within: float
    after: str = "start"
    not_before: float | None = None

    def describe(self) -> str:
        text = f"armed within {_s(self.within)} after {self.after}"
        if self.not_before is not None:
            text += f", not before {_s(self.not_before)}"
        return text


@dataclass(frozen=True)
class ExpectDisarmedThroughout(Expectation):
    """The vehicle stays disarmed in [after, after + duration] (None: to the end): an
    arming refused."""

    kind: ClassVar[str] = "disarmed_throughout"
    after: str = "start"
    duration: float | None = None

    def describe(self) -> str:
        span = "to the end" if self.duration is None else f"for {_s(self.duration)}"
        return f"disarmed from {self.after} {span}"


#: What a `link_quality` expectation reads: the firmware's own view of the RC link, in %.
LINK_MEASURES: tuple[str, ...] = ("lq", "rssi")


@dataclass(frozen=True)
class ExpectLinkQuality(Expectation):
    """The RC link quality (or RSSI) the firmware reports stays in [min, max] % for
    `duration` s (TOML `for`) from `after` + `delay`."""

    kind: ClassVar[str] = "link_quality"
    min: float
    max: float
    duration: float
    measure: str = "lq"
    after: str = "start"
    delay: float = 0.0

    def describe(self) -> str:
        return (
            f"firmware {self.measure.upper()} between {self.min:g} and {self.max:g} % for {_s(self.duration)}"
            f" from {self.after} + {_s(self.delay)}"
        )


@dataclass(frozen=True)
class ExpectLandedNearHome(Expectation):
    """When it disarms after having flown, it is within `radius` m of home."""

    kind: ClassVar[str] = "landed_near_home"
    radius: float

    def describe(self) -> str:
        return f"landed and disarmed within {self.radius:.2f} m of home"


@dataclass(frozen=True)
class ExpectNearHome(Expectation):
    """Within `radius` m of home (horizontally) within `within` s of `after`: it came home."""

    kind: ClassVar[str] = "near_home"
    radius: float
    within: float | BoardTime
    after: str = "start"

    def describe(self) -> str:
        return f"within {self.radius:.2f} m of home within {_s(self.within)} of {self.after}"


@dataclass(frozen=True)
class ExpectAltitude(Expectation):
    """Altitude above home in [min, max] for `duration` s (TOML `for`) from `after` + `delay`."""

    kind: ClassVar[str] = "altitude"
    min: float
    max: float
    duration: float
    after: str = "start"
    delay: float = 0.0

    def describe(self) -> str:
        return (
            f"altitude between {self.min:.2f} and {self.max:.2f} m for {_s(self.duration)}"
            f" from {self.after} + {_s(self.delay)}"
        )


@dataclass(frozen=True)
class ExpectHoldPosition(Expectation):
    """Within `radius` m of the position at `after` + `delay` for `duration` s (TOML `for`)."""

    kind: ClassVar[str] = "hold_position"
    radius: float
    duration: float
    after: str = "start"
    delay: float = 0.0

    def describe(self) -> str:
        return (
            f"position held within {self.radius:.2f} m for {_s(self.duration)}"
            f" from {self.after} + {_s(self.delay)}"
        )


@dataclass(frozen=True)
class ExpectNeverMode(Expectation):
    """The vehicle is never in `mode` in [after, after + duration] (None: to the end)."""

    kind: ClassVar[str] = "never_mode"
    mode: str
    after: str = "start"
    duration: float | None = None

    def describe(self) -> str:
        span = "to the end" if self.duration is None else f"for {_s(self.duration)}"
        return f"never in mode {self.mode} from {self.after} {span}"


@dataclass(frozen=True)
class ExpectArmedThroughout(Expectation):
    """The vehicle stays armed in [after, after + duration] (None: to the end)."""

    kind: ClassVar[str] = "armed_throughout"
    after: str = "start"
    duration: float | None = None

    def describe(self) -> str:
        span = "to the end" if self.duration is None else f"for {_s(self.duration)}"
        return f"armed from {self.after} {span}"


EXPECTATION_CLASSES: Mapping[str, type[Expectation]] = MappingProxyType(
    {
        cls.kind: cls
        for cls in (
            ExpectAltitude,
            ExpectArmedThroughout,
            ExpectArmed,
            ExpectDisarmedThroughout,
            ExpectLinkQuality,
            ExpectDisarmed,
            ExpectHoldPosition,
            ExpectLandedNearHome,
            ExpectNearHome,
            ExpectMode,
            ExpectNeverMode,
            ExpectStatustext,
        )
    }
)


#: Timing figures a scenario can put limits on, name -> unit.
LIMIT_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "loop_rate_hz": "Hz",
        "loop_jitter_p99_us": "us",
        "loop_overruns": "",
        "failsafe_latency_s": "s",
        "command_ack_latency_ms": "ms",
        "sensor_actuator_latency_us": "us",
    }
)


@dataclass(frozen=True)
class Limit:
    """A bound on a measured timing figure (``[limits]`` in a scenario file)."""

    name: str
    minimum: float | None = None
    maximum: float | None = None

    @property
    def unit(self) -> str:
        return LIMIT_NAMES[self.name]

    def describe(self) -> str:
        parts = []
        if self.minimum is not None:
            parts.append(f">= {self.minimum:g}")
        if self.maximum is not None:
            parts.append(f"<= {self.maximum:g}")
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.name} {' and '.join(parts)}{unit}"


@dataclass(frozen=True)
class ExpectLimit(Expectation):
    """A timing limit judged as a verdict (made from ``[limits]``, not ``[[expect]]``)."""

    kind: ClassVar[str] = "limit"
    limit: Limit

    def describe(self) -> str:
        return self.limit.describe()


@dataclass(frozen=True)
class Needs:
    """What a scenario needs of a board, derived from its file.

    `modes`: the mode words the run starts in (the setup's) or must reach (`mode`
    expectations), in the order the file names them. A `never_mode` word is not a need:
    a firmware without that mode honours "never in it" by having none. `injections`:
    the injection kinds on its timeline, in order, each once.
    """

    modes: tuple[str, ...]
    injections: tuple[str, ...]
    #: What the board must be able to do (see `hil.rig.Board.capabilities`): "physics"
    #: when the vehicle flies or the plant is acted on, "arm_switch", "link_statistics",
    #: "gnss" (a GPS fed from the plant's GNSS sky: GPS threats, RTL), "failsafe_mode"
    #: (stage 2 of the failsafe shows as the FAILSAFE mode).
    capabilities: tuple[str, ...] = ()
    #: The setup's settings, in ArduCopter's names (see `hil.profiles.translate`).
    settings: tuple[tuple[str, float], ...] = ()
    #: Arming checks the scenario relies on (words of
    #: `hil.profiles.vocabulary.ARMING_CHECK_WORDS`, the file's `[scenario].arming_checks`).
    arming_checks: tuple[str, ...] = ()

    def lacking(self, profile: FirmwareProfile, capabilities: frozenset[str] | None = None) -> list[str]:
        """Why the firmware of `profile` (on a board that can do `capabilities`; None: do
        not ask) cannot run the scenario: one reason per word, setting or capability it lacks."""
        reasons = [reason for word in self.modes if (reason := profile.lacks(word)) is not None]
        reasons += translate_settings(dict(self.settings), profile, self.injections)[1]
        if capabilities is not None:
            reasons += [CAPABILITY_REASONS[c] for c in self.capabilities if c not in capabilities]
        reasons += [r for w in self.arming_checks if (r := profile.lacks_arming_check(w, capabilities)) is not None]
        if "arm_attempt" in self.injections and profile.protocol != "mavlink":
            reasons.append(
                f"the scenario asks the board to arm over MAVLink (arm_attempt), and {profile.family} is not armed that way"
            )
        return reasons


#: Injection kinds that act on the radio link or the pilot's hands, not on the plant: a
#: board without physics (on a bench) can take them.
LINK_ONLY_KINDS: frozenset[str] = frozenset(
    {"rc_loss", "rc_jamming", "arm_switch", "arm_attempt", "gcs_loss", "telemetry_jamming"}
)
#: Injection kinds the harness's ground station acts out itself (the scenario's `Flight`,
#: `schedule_action`), not the closed loop: a command to the board.
GCS_ACTION_KINDS: frozenset[str] = frozenset({"arm_attempt"})
CAPABILITY_REASONS: Mapping[str, str] = MappingProxyType(
    {
        "physics": "the scenario flies or acts on the vehicle, and this board has no physics (it sits on a bench)",
        "arm_switch": "the scenario flips the arm switch, and this board is not armed by an RC switch the harness holds",
        "link_statistics": "the scenario reads the RC link quality, and no receiver on this board reports it",
        "gnss": "the scenario needs a GPS whose sky is the harness's GNSS model (GPS threats, flying home), and this board has none",
        "failsafe_mode": "the scenario expects the FAILSAFE mode (a failsafe procedure that lands or drops), and this board's procedure is another (GPS Rescue)",
        "gps_rescue": "the scenario needs a board whose failsafe procedure is GPS Rescue, and this board's is another",
    }
)


@dataclass(frozen=True)
class Scenario:
    """A validated scenario: setup, injections on a timeline, expectations."""

    name: str
    description: str
    path: Path | None
    applies_to: tuple[str, ...]
    duration: float
    seed: int
    setup: Setup
    injections: tuple[Injection, ...]
    expectations: tuple[Expectation, ...]
    limits: tuple[Limit, ...] = ()
    #: Arming checks of the firmware the scenario relies on (see `Needs.arming_checks`).
    arming_checks: tuple[str, ...] = ()

    def injection(self, injection_id: str) -> Injection:
        """The injection with that id (KeyError if none)."""
        for inj in self.injections:
            if inj.id == injection_id:
                return inj
        raise KeyError(injection_id)

    def needs(self) -> Needs:
        """The mode words and injection kinds this scenario needs (see `Needs`)."""
        modes = [self.setup.mode]
        modes.extend(exp.mode for exp in self.expectations if isinstance(exp, ExpectMode))
        kinds = [inj.kind for inj in self.injections]
        caps = []
        if (self.setup.armed and self.setup.altitude > 0) or any(k not in LINK_ONLY_KINDS for k in kinds):
            caps.append("physics")
        if "arm_switch" in kinds:
            caps.append("arm_switch")
        if any(isinstance(exp, ExpectLinkQuality) for exp in self.expectations):
            caps.append("link_statistics")
        if any(k.startswith("gps_") for k in kinds) or "RTL" in modes:
            caps.append("gnss")
        if "FAILSAFE" in modes[1:]:  # an expected mode, not the setup's
            caps.append("failsafe_mode")
        settings = tuple((str(k), float(v)) for k, v in self.setup.params.items())
        return Needs(tuple(dict.fromkeys(modes)), tuple(dict.fromkeys(kinds)), tuple(caps), settings, self.arming_checks)

    def lacked_by(self, profile: FirmwareProfile, capabilities: frozenset[str] | None = None) -> str | None:
        """Why a board whose firmware is `profile` (and that can do `capabilities`, see
        `hil.rig.Board.capabilities`; None: not asked) must skip this scenario (None: it need not)."""
        reasons = self.needs().lacking(profile, capabilities)
        return "; ".join(reasons) if reasons else None

    def for_firmware(self, profile: FirmwareProfile) -> Scenario:
        """This scenario with its expectations' mode words in the firmware's own mode names,
        the names a board reports (RTL -> AUTO_RTL on PX4, GPS RESCUE on Betaflight).

        A `never_mode` word the firmware lacks stays as written: the board never reports
        it. Raises `hil.profiles.ProfileLacks` for a `mode` expectation it lacks (a
        scenario `lacked_by` the profile is skipped before it runs).
        """
        out = []
        for exp in self.expectations:
            if isinstance(exp, ExpectMode):
                exp = replace(exp, mode=profile.resolve(exp.mode))
            elif isinstance(exp, ExpectNeverMode) and profile.supports(exp.mode):
                exp = replace(exp, mode=profile.resolve(exp.mode))
            elif isinstance(exp, ExpectStatustext):
                exp = replace(exp, contains=statustext_for(profile, exp.contains))
            out.append(exp)
        settings, _ = translate_settings(self.setup.params, profile, [inj.kind for inj in self.injections])
        setup = replace(self.setup, params=MappingProxyType(settings)) if settings != dict(self.setup.params) else self.setup
        return replace(self, expectations=tuple(out), setup=setup)

    def board_names(self) -> set[str]:
        """Board settings the expectations refer to (see `BoardTime`)."""
        return {
            v.name for exp in self.expectations for v in vars(exp).values() if isinstance(v, BoardTime)
        }

    def with_board_times(self, facts: Mapping[str, float]) -> Scenario:
        """This scenario with every `BoardTime` replaced by its value on the board.

        Raises KeyError naming the setting when the board does not report it.
        """
        out = []
        for exp in self.expectations:
            values = {k: v.resolve(facts) for k, v in vars(exp).items() if isinstance(v, BoardTime)}
            out.append(replace(exp, **values) if values else exp)
        return replace(self, expectations=tuple(out))

    def nominal_anchors(self) -> dict[str, float]:
        """Anchor times as planned in the file ('<id>.stop' only for injections that stop)."""
        anchors = {"start": 0.0}
        for inj in self.injections:
            anchors[f"{inj.id}.start"] = inj.start
            if inj.stop is not None:
                anchors[f"{inj.id}.stop"] = inj.stop
        return anchors
