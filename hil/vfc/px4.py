"""The virtual board's PX4 personality: PX4's names, numbers, defaults and wording.

The flight software underneath is the same (hil.vfc.copter); what a ground station and
a scenario see of it changes:

- HEARTBEAT says MAV_AUTOPILOT_PX4 and carries PX4's custom_mode (main mode in byte 2,
  sub mode in byte 3; hil.profiles.px4); MAV_CMD_DO_SET_MODE takes the main mode in
  param2 and the sub mode in param3, as PX4's Commander reads it.
- Parameters are PX4's, with PX4's defaults (PX4 ``src/modules/commander/
  commander_params.yaml``): NAV_RCL_ACT 2 (Return) after COM_RC_LOSS_T 0.5 s,
  NAV_DLL_ACT 0 (off) after COM_DL_LOSS_T 10 s, COM_FAIL_ACT_T 5 s of Hold before a
  failsafe action, COM_DISARM_LAND 2 s. The board's own tuning is not exposed (it reads
  its built-in defaults).
- Failsafe actions as PX4 takes them (NAV_RCL_ACT / NAV_DLL_ACT: 1 Hold, 2 Return,
  3 Land, 5 Terminate, 6 Disarm); a lost position in Hold or Return lands (PX4's
  mode fallback for auto modes).
- STATUSTEXT as PX4 words it (``Commander.cpp``, ``failsafe/framework.cpp``): "Manual
  control lost", "Connection to ground station lost", then "Failsafe activated" or
  "Failsafe activated, entering Hold for N seconds"; mode changes are not announced.
- ARM/DISARM param2 21196 forces both ways.
- Its simulator is reached as PX4 SITL reaches one: a TCP client to the harness's port
  (hil.vfc.px4_server), HIL_SENSOR / HIL_GPS / RC_CHANNELS in, HIL_ACTUATOR_CONTROLS out.

What is not PX4 here: the control loops, estimator and mode logic are ArduCopter-like
(hil.vfc.copter); no battery is simulated (PX4 SITL's battery_simulator is not
modelled, so the battery failsafe never trips); RTL climbs to ArduCopter's 15 m, not
PX4's RTL_RETURN_ALT of 60 m.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hil.firmware.paramdefs import ParamDef
from hil.profiles.px4 import FORCE_MAGIC, MAIN_SUB_MODES, encode_custom_mode
from hil.vfc import failsafe as fs
from hil.vfc.modes import ALT_HOLD, GUIDED, LAND, LOITER, RTL, STABILIZE
from hil.vfc.params import ParamStore

NAME = "px4"

#: The board's modes as PX4 (main, sub) modes, and back.
MODE_TO_PX4: dict[int, tuple[int, int]] = {
    STABILIZE: MAIN_SUB_MODES["STABILIZED"],
    ALT_HOLD: MAIN_SUB_MODES["ALTCTL"],
    GUIDED: MAIN_SUB_MODES["OFFBOARD"],
    LOITER: MAIN_SUB_MODES["AUTO_LOITER"],
    RTL: MAIN_SUB_MODES["AUTO_RTL"],
    LAND: MAIN_SUB_MODES["AUTO_LAND"],
}
PX4_TO_MODE: dict[tuple[int, int], int] = {pair: mode for mode, pair in MODE_TO_PX4.items()}


def custom_mode(mode: int) -> int:
    """HEARTBEAT custom_mode of a board mode."""
    return encode_custom_mode(*MODE_TO_PX4[mode])


#: The parameters the PX4 personality exposes, with PX4's defaults and ranges.
PARAM_DEFS: tuple[ParamDef, ...] = (
    ParamDef("COM_RC_LOSS_T", 0.5, "float", 0.0, 35.0, "Manual control loss timeout, s."),
    ParamDef("NAV_RCL_ACT", 2.0, "int", 0.0, 6.0, "Manual control loss action: 1 Hold, 2 Return, 3 Land, 5 Terminate, "
        "6 Disarm (0 Disabled, up to v1.13).",
    ),
    ParamDef("COM_DL_LOSS_T", 10.0, "int", 5.0, 300.0, "GCS connection loss timeout, s."),
    ParamDef("NAV_DLL_ACT", 0.0, "int", 0.0, 6.0, "GCS connection loss action: 0 Disabled, 1 Hold, 2 Return, 3 Land, "
        "5 Terminate, 6 Disarm.",
    ),
    ParamDef("COM_FAIL_ACT_T", 5.0, "float", 0.0, 25.0, "Hold this long before a failsafe action, s (0: at once)."),
    ParamDef("COM_LOW_BAT_ACT", 0.0, "int", 0.0, 3.0, "Battery failsafe: 0 Warning, 2 Land, 3 Return then Land."),
    ParamDef("COM_POSCTL_NAVL", 0.0, "int", 0.0, 1.0, "Position mode without position: 0 Altitude, 1 Land."),
    ParamDef("COM_DISARM_LAND", 2.0, "float", -1.0, 20.0, "Disarm this long after landing, s (<= 0: never)."),
    ParamDef("COM_RC_STICK_OV", 30.0, "float", 5.0, 80.0, "Stick override threshold, %."),
)

#: NAV_RCL_ACT / NAV_DLL_ACT values -> what the board does.
_LOSS_ACTION = {0: fs.NONE, 1: fs.HOLD, 2: fs.RTL, 3: fs.LAND, 5: fs.DISARM, 6: fs.DISARM}


class Px4ParamStore(ParamStore):
    """PX4's parameters; the flight software's ArduPilot-named reads are answered from
    them where PX4 has a counterpart, and otherwise from the built-in defaults."""

    DERIVED: dict[str, Callable[[Px4ParamStore], float]] = {
        "FS_THR_ENABLE": lambda s: 1.0 if s.get("NAV_RCL_ACT") else 0.0,
        "RC_FS_TIMEOUT": lambda s: max(0.1, s.get("COM_RC_LOSS_T")),
        "FS_THR_VALUE": lambda s: 910.0,  # PX4 has no throttle failsafe by default
        "FS_GCS_ENABLE": lambda s: 1.0 if s.get("NAV_DLL_ACT") else 0.0,
        "FS_GCS_TIMEOUT": lambda s: s.get("COM_DL_LOSS_T"),
        "FS_EKF_ACTION": lambda s: 1.0,  # auto modes land without a position
        "DISARM_DELAY": lambda s: max(0.0, s.get("COM_DISARM_LAND")),
        "BATT_LOW_VOLT": lambda s: 0.0,  # no battery simulated
    }

    def __init__(self, path: Any = None) -> None:
        super().__init__(PARAM_DEFS, path=path)

    def get(self, name: str) -> float:
        derive = self.DERIVED.get(name)
        if derive is not None:
            return derive(self)
        return super().get(name)


class Px4Personality:
    """What the flight software asks of its personality (see hil.vfc.copter)."""

    name = NAME
    #: PX4's own arming rule for a position mode without GPS is not modelled: the flight
    #: software's "Need Position Estimate" refusal stands for it (PX4 commander's
    #: checks not read here), not ArduCopter's "GPS 1: Bad fix".
    gps_arming_check = False
    #: An arming refusal keeps the pre-arm wording ("PreArm: " -> "Preflight Fail: ").
    prearm_wording_at_arming = True
    #: PX4 refuses a mode that needs a position without one, armed or not.
    mode_checks_when_disarmed = True

    @staticmethod
    def failsafe_action(failsafe: str, p: Callable[[str], float]) -> str:
        if failsafe == "radio":
            return _LOSS_ACTION.get(int(p("NAV_RCL_ACT")), fs.RTL)
        if failsafe == "gcs":
            return _LOSS_ACTION.get(int(p("NAV_DLL_ACT")), fs.NONE)
        if failsafe == "ekf":
            return fs.LAND
        return fs.NONE

    @staticmethod
    def action_delay(p: Callable[[str], float]) -> float:
        return max(0.0, p("COM_FAIL_ACT_T"))

    @staticmethod
    def failsafe_texts(failsafe: str, hold_s: float) -> list[str]:
        lines = {
            "radio": ["Manual control lost"],
            "gcs": ["Connection to ground station lost"],
        }.get(failsafe, [])
        if hold_s > 0:
            lines.append(f"Failsafe activated, entering Hold for {round(hold_s)} seconds")
        else:
            lines.append("Failsafe activated")
        return lines

    @staticmethod
    def text(text: str) -> str | None:
        """PX4's wording of one of the flight software's messages (None: PX4 says nothing)."""
        if text.startswith("PreArm: "):
            return "Preflight Fail: " + text.removeprefix("PreArm: ")
        if text.startswith("Mode ") or text.startswith("GPS Glitch"):
            return None
        return _TEXTS.get(text, text)


_TEXTS: dict[str, str | None] = {
    "Arming motors": "Armed by external command",
    "Disarming motors": "Disarmed by external command",
    "Land complete": "Landing detected",
    "Radio Failsafe Cleared": "Manual control regained",
    "GCS Failsafe Cleared": "Data link regained",
    "EKF Failsafe Cleared": None,
}


def decode_set_mode(param2: float, param3: float) -> int | None:
    """The board mode a DO_SET_MODE (param2 main mode, param3 sub mode) asks for, or None."""
    try:
        pair = (int(param2), int(param3))
    except (ValueError, OverflowError):
        return None
    return PX4_TO_MODE.get(pair)


def decode_custom_mode_field(custom_mode_value: int) -> int | None:
    """The board mode a SET_MODE custom_mode asks for, or None."""
    main = (custom_mode_value >> 16) & 0xFF
    sub = (custom_mode_value >> 24) & 0xFF
    return PX4_TO_MODE.get((main, sub))


FORCE = int(FORCE_MAGIC)

