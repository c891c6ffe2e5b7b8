"""What a firmware profile holds: its modes, the scenario words it honours, its failsafes,
how it arms and how it reboots. Profiles are data; the code that talks to a board reads
them instead of branching on the firmware's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from types import MappingProxyType
from typing import Any

from hil.errors import ConfigError, HilError
from hil.profiles.vocabulary import ACTION_WORDS, ARMING_CHECK_WORDS, FAILSAFE_KINDS, MODE_WORDS

PROTOCOLS = ("mavlink", "msp")

#: MAVLink command ids the profiles name (common.xml), kept here so profiles stay pure data.
MAV_CMD_PREFLIGHT_REBOOT_SHUTDOWN = 246
MAV_CMD_COMPONENT_ARM_DISARM = 400
#: MSP command id (msp_protocol.h).
MSP_REBOOT = 68


class UnknownProfile(ConfigError):
    """No firmware profile has the requested name."""


class ProfileLacks(HilError):
    """The firmware has nothing for a scenario word: a test that needs it is skipped."""

    def __init__(self, profile: str, word: str, reason: str) -> None:
        super().__init__(reason)
        self.profile = profile
        self.word = word
        self.reason = reason


def _frozen(mapping: Mapping[Any, Any]) -> Mapping[Any, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class Command:
    """One way to make a board do something: a MAVLink command, an MSP request or a CLI line.

    `kind` is "mavlink" (COMMAND_LONG `code` with `params`), "msp" (request `code` with
    `payload` bytes) or "cli" (the line `code`, typed in the firmware's CLI).
    """

    kind: str
    code: int | str
    params: tuple[float, ...] = ()
    payload: bytes = b""
    note: str = ""


@dataclass(frozen=True)
class Failsafe:
    """One failsafe of a firmware: what trips it, which settings govern it, what they mean.

    `actions` maps each value of `action_setting` to what the vehicle does, as scenario
    words in order of preference (the first it can do): ("SMART_RTL", "RTL") means Smart
    RTL, else RTL. `choices` names the values of an MSP firmware's CLI setting in the
    order of their numbers (MSP carries the number, the CLI the name). A timeout reads in
    seconds as `setting value x timeout_scale`.
    """

    kind: str
    action_setting: str | None
    actions: Mapping[Any, tuple[str, ...]]
    choices: tuple[str, ...] = ()
    timeout_setting: str | None = None
    timeout_scale: float = 1.0
    threshold_setting: str | None = None
    threshold_unit: str = ""
    note: str = ""
    #: The firmware's own defaults of its action and timeout settings (what a scenario
    #: written for it means when it sets nothing; see `hil.profiles.translate`).
    defaults: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in FAILSAFE_KINDS:
            raise ValueError(f"failsafe kind {self.kind!r} is not one of {sorted(FAILSAFE_KINDS)}")
        object.__setattr__(self, "actions", _frozen(self.actions))
        object.__setattr__(self, "defaults", _frozen(self.defaults))

    def action(self, value: Any) -> tuple[str, ...]:
        """What the vehicle does for a value of the action setting (a number or a CLI name)."""
        if isinstance(value, str) and value in self.choices:
            value = self.choices.index(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        try:
            return self.actions[value]
        except KeyError:
            known = ", ".join(map(str, self.actions))
            raise ConfigError(
                f"{self.action_setting} = {value!r} is not a value this profile knows; known: {known}"
            ) from None


@dataclass(frozen=True)
class ArmingCheck:
    """One condition the firmware checks before it lets the vehicle arm.

    `flag`: how the firmware reports the refusal (an MSP arming-disable flag name, or
    the text of a pre-arm message). `capability`: what the board must have (see
    `hil.rig.Board.capabilities`) for the firmware to make the check at all (None:
    always). `until_first_arm`: the check is made only until the vehicle has armed once
    since boot, so a scenario relying on it needs a freshly booted firmware. `when`:
    the condition that `capability` stands for, in words ("with GPS Rescue
    configured"); `note`: the rest, with the settings that govern it and the source.
    """

    flag: str
    capability: str | None = None
    until_first_arm: bool = False
    when: str = ""
    note: str = ""


@dataclass(frozen=True)
class Arming:
    """How the firmware is armed and disarmed.

    `force_arm` / `force_disarm`: the COMPONENT_ARM_DISARM param2 that skips the checks
    (None where there is no such thing). `steps` are what a pilot does, in order.
    `checks`: arming checks a scenario may rely on, by their word in
    `hil.profiles.vocabulary.ARMING_CHECK_WORDS` (a word missing: the firmware does not
    refuse arming for that reason, or the profile does not know it does).
    """

    method: str
    steps: tuple[str, ...]
    force_arm: float | None = None
    force_disarm: float | None = None
    checks_setting: str | None = None
    checks: Mapping[str, ArmingCheck] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.checks) - set(ARMING_CHECK_WORDS))
        if unknown:
            raise ValueError(f"arming checks {unknown} are not words of {sorted(ARMING_CHECK_WORDS)}")
        object.__setattr__(self, "checks", _frozen(self.checks))


@dataclass(frozen=True, eq=False)
class FirmwareProfile:
    """One firmware as the harness sees it.

    `modes` maps the firmware's own mode names to the number it puts on the wire
    (HEARTBEAT custom_mode for MAVLink, the permanent box id for MSP). `vocabulary`
    maps scenario words to those names. `idle_mode` is the mode an MSP firmware is in
    when no flight-mode box is active (Betaflight's and INAV's rate mode).
    """

    name: str
    family: str
    vehicle: str
    protocol: str
    modes: Mapping[str, int]
    vocabulary: Mapping[str, str]
    failsafes: tuple[Failsafe, ...]
    arming: Arming
    reboot: Command
    bootloader: tuple[Command, ...]
    idle_mode: str | None = None
    #: Of `bootloader`, the commands that reboot into the MCU's ROM DFU bootloader, in the
    #: order a flasher tries them (hil.flash.msp_dfu).
    rom_dfu: tuple[Command, ...] = ()
    failsafe_phases: tuple[str, ...] = ()
    #: Parameter names (fnmatch patterns) a snapshot skips and a restore never writes:
    #: calibrations the board measures itself, device ids, counters, read-only facts.
    unrestorable: tuple[str, ...] = ()
    #: Messages a harness asks the board to stream on connect, name -> Hz (empty: the
    #: board streams what it needs unasked).
    telemetry_streams: Mapping[str, float] = field(default_factory=dict)
    sources: tuple[str, ...] = ()
    #: How MAV_CMD_DO_SET_MODE names a mode: "custom_mode" (param2 is HEARTBEAT's
    #: custom_mode, ArduPilot) or "main_sub" (param2 the main mode, param3 the sub mode:
    #: bytes 2 and 3 of custom_mode, PX4's Commander).
    set_mode_form: str = "custom_mode"
    #: Scenario parameters written in ArduCopter's names (the library's), as this
    #: firmware's settings; see `hil.profiles.translate`.
    setting_words: Mapping[str, str] = field(default_factory=dict)
    #: What a STATUSTEXT expectation written in ArduCopter's words looks for on this
    #: firmware (ArduCopter's text -> this firmware's).
    statustexts: Mapping[str, str] = field(default_factory=dict)
    #: Settings that make a failsafe act when its timeout runs out, as ArduPilot's do
    #: (PX4: COM_FAIL_ACT_T = 0, no Hold before the action); added to a translated setup.
    act_at_timeout: Mapping[str, float] = field(default_factory=dict)
    _names: Mapping[int, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(
                f"profile {self.name}: protocol {self.protocol!r} is not one of {PROTOCOLS}"
            )
        names: dict[int, str] = {}
        for mode, number in self.modes.items():
            if number in names:
                raise ValueError(
                    f"profile {self.name}: modes {names[number]} and {mode} share the number {number}"
                )
            names[number] = mode
        for word, mode in self.vocabulary.items():
            if word not in MODE_WORDS and word not in self.modes:
                raise ValueError(
                    f"profile {self.name}: {word!r} is neither a scenario word nor a mode"
                )
            if mode not in self.modes and mode != self.idle_mode:
                raise ValueError(
                    f"profile {self.name}: {word} maps to {mode!r}, which is not a mode"
                )
        kinds = [f.kind for f in self.failsafes]
        if len(kinds) != len(set(kinds)):
            raise ValueError(f"profile {self.name}: a failsafe kind is described twice")
        for fs in self.failsafes:
            for value, outcome in fs.actions.items():
                for word in outcome:
                    if (
                        word not in MODE_WORDS
                        and word not in ACTION_WORDS
                        and word not in self.modes
                    ):
                        raise ValueError(
                            f"profile {self.name}: failsafe {fs.kind} value {value!r}: {word!r} is "
                            "neither a scenario word nor one of its modes"
                        )
        object.__setattr__(self, "telemetry_streams", _frozen(self.telemetry_streams))
        object.__setattr__(self, "modes", _frozen(self.modes))
        object.__setattr__(self, "vocabulary", _frozen(self.vocabulary))
        if self.set_mode_form not in ("custom_mode", "main_sub"):
            raise ValueError(f"profile {self.name}: set_mode_form {self.set_mode_form!r} is not custom_mode or main_sub")
        for name in ("setting_words", "statustexts", "act_at_timeout"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        object.__setattr__(self, "_names", _frozen(names))

    def restorable(self, name: str) -> bool:
        """False for a parameter a snapshot must leave alone (`unrestorable`)."""
        return not any(fnmatchcase(name, pattern) for pattern in self.unrestorable)

    # -- modes ----------------------------------------------------------------------------
    def set_mode_params(self, number: int) -> tuple[float, float, float]:
        """MAV_CMD_DO_SET_MODE param1..3 for a mode number (see `set_mode_form`)."""
        custom = 1.0  # MAV_MODE_FLAG_CUSTOM_MODE_ENABLED
        if self.set_mode_form == "main_sub":
            return custom, float((number >> 16) & 0xFF), float((number >> 24) & 0xFF)
        return custom, float(number), 0.0

    def resolve(self, word: str) -> str:
        """The firmware's mode name for a scenario word or one of its own mode names."""
        key = word.strip().upper()
        if key in self.vocabulary:
            return self.vocabulary[key]
        if key in self.modes or (self.idle_mode is not None and key == self.idle_mode):
            return key
        raise ProfileLacks(self.name, key, self.lacks(key) or "")

    def supports(self, word: str) -> bool:
        """True if the firmware has a mode for `word`."""
        return self.lacks(word) is None

    def lacks(self, word: str) -> str | None:
        """Why the firmware cannot honour `word` (None when it can): the reason a skip gives."""
        key = word.strip().upper()
        if key in self.vocabulary or key in self.modes or key == self.idle_mode:
            return None
        if key in MODE_WORDS:
            return f"{self.family} ({self.name}) has no {key} mode ({MODE_WORDS[key]})"
        return (
            f"{key!r} is not a scenario mode word nor a {self.family} mode; words: "
            f"{', '.join(MODE_WORDS)}; {self.name} modes: {', '.join(self.modes)}"
        )

    def mode_number(self, word: str) -> int:
        """The number on the wire for a scenario word or a mode name."""
        mode = self.resolve(word)
        if mode not in self.modes:
            raise ProfileLacks(
                self.name, word, f"{self.family} {mode} is not a mode it can be put in"
            )
        return self.modes[mode]

    def mode_name(self, number: int) -> str:
        """The firmware's name for a mode number, or `MODE(n)` when unknown."""
        return self._names.get(number, f"MODE({number})")

    def lacks_arming_check(self, word: str, capabilities: frozenset[str] | None = None) -> str | None:
        """Why a board with this firmware (that can do `capabilities`; None: not asked)
        will not refuse arming for the reason `word` (None: it will)."""
        what = ARMING_CHECK_WORDS.get(word, word)
        check = self.arming.checks.get(word)
        if check is None:
            return f"{self.family} ({self.name}) has no arming check of the kind '{word}' ({what}) in its profile"
        if capabilities is not None and check.capability is not None and check.capability not in capabilities:
            return f"{self.family} makes the '{word}' arming check only {check.when or 'on some boards'}, and this board is not one ({check.capability!r} is not among its capabilities)"
        return None

    # -- failsafes --------------------------------------------------------------------
    def failsafe(self, kind: str) -> Failsafe | None:
        """The failsafe of this kind (None: the firmware has none)."""
        if kind not in FAILSAFE_KINDS:
            raise ValueError(f"failsafe kind {kind!r} is not one of {sorted(FAILSAFE_KINDS)}")
        for fs in self.failsafes:
            if fs.kind == kind:
                return fs
        return None
