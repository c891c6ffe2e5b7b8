"""Scenario settings written in ArduCopter's names, as another MAVLink firmware's.

The scenario library was written against ArduCopter: its setups set FS_THR_ENABLE,
RC_FS_TIMEOUT, FS_GCS_ENABLE, ... A setting that governs a failsafe means something
every firmware with that failsafe can say in its own words: "on radio loss, RTL" is
ArduCopter's FS_THR_ENABLE = 1 and PX4's NAV_RCL_ACT = 2. This module reads an
ArduCopter setting through ArduCopter's failsafe facts (hil.profiles.ardupilot) into
scenario words, and writes the words back through the other firmware's facts. What has
no counterpart (a threshold in volts where the other firmware counts a fraction of
capacity, an action it does not have) is a reason: the scenario is skipped on that
firmware with it, never flown with a setting quietly dropped.

A scenario that sets nothing still means ArduCopter's defaults for the failsafes its
injections exercise (rc-loss-land expects LAND no sooner than 0.9 s after the radio
goes: ArduCopter's RC_FS_TIMEOUT of 1 s). So those defaults are translated too, under
whatever the scenario sets. A scenario written for the other firmware names that
firmware's own settings, which pass as written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from hil.errors import ConfigError
from hil.profiles.ardupilot import ARDUCOPTER, FS_OPTIONS, FS_OPTIONS_BITS
from hil.profiles.model import Failsafe, FirmwareProfile

#: The firmware whose names the scenario library uses.
SOURCE = ARDUCOPTER
#: The failsafe each injection kind exercises.
EXERCISES: Mapping[str, str] = {
    "rc_loss": "rc_loss",
    "rc_jamming": "rc_loss",
    "gcs_loss": "gcs_loss",
    "telemetry_jamming": "gcs_loss",
    "gps_loss": "position_loss",
    "gps_jamming": "position_loss",
    "gps_spoofing": "position_loss",
    "compass_interference": "position_loss",
    "battery_sag": "battery",
}


def _own_settings(profile: FirmwareProfile) -> set[str]:
    names = set(profile.setting_words.values()) | set(profile.act_at_timeout)
    for fs in profile.failsafes:
        names.update(n for n in (fs.action_setting, fs.timeout_setting, fs.threshold_setting) if n)
    return names


def _same_action(words: tuple[str, ...], target: Failsafe) -> object | None:
    """The value of `target`'s action setting that does what `words` say (exactly, or
    what the source does when its first choice is missing: its last word)."""
    for value, outcome in target.actions.items():
        if outcome == words:
            return value
    for value, outcome in target.actions.items():
        if outcome == words[-1:]:
            return value
    return None


def translate_settings(
    params: Mapping[str, float], profile: FirmwareProfile, injections: Iterable[str] = ()
) -> tuple[dict[str, float], list[str]]:
    """(the settings for `profile`, why some cannot be made) for scenario settings in
    ArduCopter's names, with ArduCopter's defaults for the failsafes the `injections`
    (kinds) exercise beneath them. ArduCopter itself, and firmwares that do not speak
    MAVLink, take the settings as written."""
    if profile is SOURCE or profile.protocol != "mavlink":
        return dict(params), []
    kinds = {EXERCISES[k] for k in injections if k in EXERCISES}
    implied: dict[str, float] = {}
    for fs in SOURCE.failsafes:
        if fs.kind in kinds:
            implied.update(fs.defaults)
    params = {**implied, **params}
    if not params:
        return {}, []
    out: dict[str, float] = {}
    reasons: list[str] = []
    acted = False
    own = _own_settings(profile)
    for name, value in params.items():
        if name in own:
            out[name] = float(value)
            continue
        if name == FS_OPTIONS and name not in profile.setting_words:
            reasons.extend(_fs_options_reasons(value, params, kinds, profile))
            continue
        if name in profile.setting_words:
            out[profile.setting_words[name]] = float(value)
            continue
        done = False
        for fs in SOURCE.failsafes:
            target = profile.failsafe(fs.kind)
            if name == fs.action_setting:
                done = True
                try:
                    words = fs.action(value)
                except ConfigError as exc:
                    reasons.append(str(exc))
                    break
                chosen = None if target is None or target.action_setting is None else _same_action(words, target)
                if chosen is None:
                    does = " then ".join(words)
                    reasons.append(
                        f"{name} = {value:g} ({fs.kind}: {does}) has no {profile.family} counterpart"
                        + (f" ({target.action_setting}: {_choices(target)})" if target is not None else "")
                    )
                else:
                    out[str(target.action_setting)] = float(chosen)  # type: ignore[arg-type]
                    acted = True
                break
            if name == fs.timeout_setting:
                done = True
                if target is None or target.timeout_setting is None:
                    reasons.append(f"{name} ({fs.kind} timeout) has no {profile.family} counterpart")
                else:
                    seconds = float(value) * fs.timeout_scale
                    out[target.timeout_setting] = seconds / target.timeout_scale
                break
            if name == fs.threshold_setting:
                done = True
                unit = f"; {profile.family}'s {target.threshold_setting} is in {target.threshold_unit}" if (
                    target is not None and target.threshold_setting
                ) else ""
                reasons.append(f"{name} ({fs.kind} threshold, {fs.threshold_unit}) cannot be said in {profile.family}'s terms{unit}")
                break
        if not done:
            reasons.append(f"{name} is an ArduCopter setting with no {profile.family} counterpart the {profile.name} profile knows")
    if acted:
        for name, value in profile.act_at_timeout.items():
            out.setdefault(name, float(value))
    return out, reasons


def _fs_options_reasons(value: object, params: Mapping[str, float], kinds: set[str],
                        profile: FirmwareProfile) -> list[str]:
    """Why ArduCopter's FS_OPTIONS cannot be said on `profile` (nothing: it writes nothing).

    The other firmware's failsafes act in every mode, as with FS_OPTIONS 0; a bit matters
    only for a failsafe the scenario exercises and turns on (its action setting not 0).
    """
    try:
        bits = int(value)  # type: ignore[call-overload]
        if bits != value or bits < 0:
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        return [f"{FS_OPTIONS} = {value!r} is not a bitmask"]
    reasons = []
    for bit, (changes, does) in FS_OPTIONS_BITS.items():
        if not bits & (1 << bit):
            continue
        acting = [
            fs.kind for fs in SOURCE.failsafes
            if fs.kind in changes and fs.kind in kinds and fs.action_setting
            and params.get(fs.action_setting, fs.defaults.get(fs.action_setting, 0)) != 0
        ]
        if acting:
            reasons.append(
                f"{FS_OPTIONS} bit {bit} ({does}) has no {profile.family} counterpart: "
                f"its {', '.join(acting)} failsafe acts in every mode (set {FS_OPTIONS} = 0 "
                "for a scenario that means the action)"
            )
    return reasons


def _choices(fs: Failsafe) -> str:
    return ", ".join(f"{v} {'/'.join(w)}" for v, w in fs.actions.items())


def statustext_for(profile: FirmwareProfile, contains: str) -> str:
    """What a STATUSTEXT expectation written in ArduCopter's words looks for on `profile`."""
    for source, said in profile.statustexts.items():
        if source.lower() == contains.lower():
            return said
    return contains
