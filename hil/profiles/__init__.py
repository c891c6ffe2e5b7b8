"""Firmware profiles: what differs between ArduPilot, PX4, Betaflight and INAV, as data.

A profile holds a firmware's mode names and numbers, the scenario words it honours
(RTL, LAND, HOLD, ...), its failsafe settings and what their values mean, how it arms
and how it reboots (into its bootloader too). The harness reads these instead of
branching on the firmware: a new firmware is a new profile.

    >>> from hil.profiles import profile
    >>> profile("px4").mode_number("RTL") == profile("px4").modes["AUTO_RTL"]
    True
"""

from __future__ import annotations

from hil.profiles.ardupilot import ARDUCOPTER
from hil.profiles.betaflight import BETAFLIGHT
from hil.profiles.inav import INAV
from hil.profiles.model import (
    Arming,
    ArmingCheck,
    Command,
    Failsafe,
    FirmwareProfile,
    ProfileLacks,
    UnknownProfile,
)
from hil.profiles.px4 import PX4_MULTICOPTER
from hil.profiles.registry import (
    DEFAULT_PROFILE,
    firmware_mode_names,
    profile,
    profile_names,
    register_profile,
)
from hil.profiles.vocabulary import ACTION_WORDS, FAILSAFE_KINDS, MODE_WORDS

__all__ = [
    "ACTION_WORDS",
    "ARDUCOPTER",
    "BETAFLIGHT",
    "DEFAULT_PROFILE",
    "FAILSAFE_KINDS",
    "INAV",
    "MODE_WORDS",
    "PX4_MULTICOPTER",
    "Arming",
    "ArmingCheck",
    "Command",
    "Failsafe",
    "FirmwareProfile",
    "ProfileLacks",
    "UnknownProfile",
    "firmware_mode_names",
    "profile",
    "profile_names",
    "register_profile",
]
