"""Firmware profiles by name: the built-in ones, and any a board type registers in code."""

from __future__ import annotations

from hil.profiles.ardupilot import ARDUCOPTER
from hil.profiles.betaflight import BETAFLIGHT
from hil.profiles.inav import INAV
from hil.profiles.model import FirmwareProfile, UnknownProfile
from hil.profiles.px4 import PX4_MULTICOPTER

#: The profile a MAVLink board gets when none is named: the virtual board behaves as it.
DEFAULT_PROFILE = ARDUCOPTER.name

_PROFILES: dict[str, FirmwareProfile] = {
    p.name: p for p in (ARDUCOPTER, PX4_MULTICOPTER, BETAFLIGHT, INAV)
}


def register_profile(profile: FirmwareProfile) -> None:
    """Make `profile` available by name (a firmware added from outside this package)."""
    known = _PROFILES.get(profile.name)
    if known is not None and known is not profile:
        raise ValueError(f"a firmware profile named {profile.name!r} is already registered")
    _PROFILES[profile.name] = profile


def profile(name: str | FirmwareProfile) -> FirmwareProfile:
    """The profile called `name` (case-insensitive); a profile passes through."""
    if isinstance(name, FirmwareProfile):
        return name
    found = _PROFILES.get(str(name).strip().lower())
    if found is None:
        raise UnknownProfile(
            f"unknown firmware profile {name!r}; known profiles: {', '.join(profile_names())}"
        )
    return found


def profile_names(protocol: str | None = None) -> list[str]:
    """Names of the registered profiles, sorted (only those speaking `protocol` if given)."""
    return sorted(n for n, p in _PROFILES.items() if protocol is None or p.protocol == protocol)


def firmware_mode_names() -> frozenset[str]:
    """Every registered firmware's own mode names (idle modes too): the names a scenario may
    use besides the scenario words, when it means one firmware's mode precisely."""
    names: set[str] = set()
    for found in _PROFILES.values():
        names.update(found.modes)
        if found.idle_mode is not None:
            names.add(found.idle_mode)
    return frozenset(names)
