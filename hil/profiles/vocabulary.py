"""The words scenario files use for flight modes and failsafe actions, and what they mean.

A scenario names what it needs in these words; each firmware profile maps the words it
can honour onto its own modes. A word a profile does not map is a capability the
firmware lacks, and a scenario that needs it is skipped on that board with the reason.
A profile may also accept its firmware's own mode names (ArduCopter's LOITER, PX4's
AUTO_LOITER), so a scenario written for one firmware can still be precise.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

#: Flight-mode words, each with what a vehicle in that mode does.
MODE_WORDS: Mapping[str, str] = MappingProxyType(
    {
        "ACRO": "rate mode: the sticks command rotation rates, the throttle is manual",
        "STABILIZE": "self-levelling: the sticks command lean angles, the throttle is manual",
        "ANGLE": "self-levelling, as MSP firmwares name it (the same as STABILIZE)",
        "HORIZON": "self-levelling near centre stick, rate mode at full deflection",
        "ALT_HOLD": "self-levelling with the altitude held by the autopilot",
        "HOLD": "position and altitude held (GPS or another position source)",
        "LOITER": "position hold as ArduCopter names it (the same as HOLD)",
        "POSHOLD": "position hold that the pilot's sticks can override",
        "GUIDED": "flown by commands from the ground station or a companion computer",
        "OFFBOARD": "flown by an external computer, as PX4 names it (the same as GUIDED)",
        "AUTO": "flying a stored mission",
        "TAKEOFF": "an automatic climb to the take-off altitude",
        "RTL": "return to launch (home) and land there",
        "LAND": "descend and land where it is",
        "FAILSAFE": "the firmware's own failsafe mode (Betaflight and INAV report it as a mode)",
    }
)

#: What a failsafe does, besides switching to a mode word above.
ACTION_WORDS: Mapping[str, str] = MappingProxyType(
    {
        "OFF": "the failsafe is disabled",
        "WARN": "a warning only; the vehicle carries on",
        "CONTINUE": "nothing happens; the vehicle carries on with what it was doing",
        "DISARM": "the motors stop at once (drop, terminate, lockdown)",
    }
)

#: Arming checks a scenario may rely on (a profile says which its firmware makes, and
#: when: `hil.profiles.model.ArmingCheck`).
ARMING_CHECK_WORDS: Mapping[str, str] = MappingProxyType(
    {
        "gps_fix": "arming is refused without a GPS fix with enough satellites",
    }
)

#: Kinds of failsafe a profile describes.
FAILSAFE_KINDS: Mapping[str, str] = MappingProxyType(
    {
        "rc_loss": "the RC link is lost (no valid frames, or the receiver's own failsafe)",
        "gcs_loss": "the ground station link is lost (no heartbeats)",
        "position_loss": "the position estimate is lost or becomes unreliable",
        "battery": "the battery falls below a threshold",
    }
)


def is_word(word: str) -> bool:
    """True if `word` is part of the scenario vocabulary (mode or action)."""
    return word in MODE_WORDS or word in ACTION_WORDS
