"""ArduCopter: the firmware the virtual board behaves as, and ArduPilot SITL and real boards.

Sources (ArduPilot/ardupilot):
- ArduCopter/mode.h, `enum class Mode::Number`: the custom_mode numbers.
- libraries/GCS_MAVLink/GCS.h and GCS_Common.cpp (handle_command_component_arm_disarm):
  arming skips its checks only when param2 is 2989 (`magic_force_arm_value`); 21196
  (`magic_force_arm_disarm_value`) forces a disarm, and on an arm request it is an
  ordinary, checked arm.
- GCS_Common.cpp (handle_preflight_reboot): MAV_CMD_PREFLIGHT_REBOOT_SHUTDOWN param1 1
  reboots, 3 reboots into the bootloader; both are refused while armed.
- ArduCopter/Parameters.cpp, events.cpp, ekf_check.cpp and AP_BattMonitor: the
  failsafe parameters and their values (the virtual board's hil/firmware/paramdefs.py
  implements the same).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hil.errors import ConfigError
from hil.profiles.model import (
    MAV_CMD_PREFLIGHT_REBOOT_SHUTDOWN,
    Arming,
    ArmingCheck,
    Command,
    Failsafe,
    FirmwareProfile,
)

#: ArduCopter's custom_mode numbers (mode.h). 8, 10 and 12 were never used; 29 and 30
#: are reserved upstream and left out.
COPTER_MODES: dict[str, int] = {
    "STABILIZE": 0,
    "ACRO": 1,
    "ALT_HOLD": 2,
    "AUTO": 3,
    "GUIDED": 4,
    "LOITER": 5,
    "RTL": 6,
    "CIRCLE": 7,
    "LAND": 9,
    "DRIFT": 11,
    "SPORT": 13,
    "FLIP": 14,
    "AUTOTUNE": 15,
    "POSHOLD": 16,
    "BRAKE": 17,
    "THROW": 18,
    "AVOID_ADSB": 19,
    "GUIDED_NOGPS": 20,
    "SMART_RTL": 21,
    "FLOWHOLD": 22,
    "FOLLOW": 23,
    "ZIGZAG": 24,
    "SYSTEMID": 25,
    "AUTOROTATE": 26,
    "AUTO_RTL": 27,
    "TURTLE": 28,
}

#: COMPONENT_ARM_DISARM param2 values (GCS.h).
FORCE_ARM = 2989.0
FORCE_DISARM = 21196.0

#: Scenario words beyond ArduCopter's own mode names (which all stand for themselves).
_WORDS = {"HOLD": "LOITER", "ANGLE": "STABILIZE", "OFFBOARD": "GUIDED"}

#: FS_THR_ENABLE and FS_GCS_ENABLE share their meanings where their values overlap.
_RC_ACTIONS = {
    0: ("OFF",),
    1: ("RTL",),
    2: ("RTL",),  # "continue the mission in AUTO": removed in 4.0, behaves as 1
    3: ("LAND",),
    4: ("SMART_RTL", "RTL"),
    5: ("SMART_RTL", "LAND"),
    6: ("AUTO", "RTL"),  # AUTO from the mission's DO_LAND_START
    7: ("BRAKE", "LAND"),
}
_GCS_ACTIONS = {
    0: ("OFF",),
    1: ("RTL",),
    2: ("RTL",),  # "continue the mission in AUTO" (deprecated)
    3: ("SMART_RTL", "RTL"),
    4: ("SMART_RTL", "LAND"),
    5: ("LAND",),
    6: ("AUTO", "RTL"),
    7: ("BRAKE", "LAND"),
}

#: ArduCopter's failsafe options bitmask (Parameters.cpp FS_OPTIONS, default 16; the bits
#: in Copter.h FailsafeOption, read in events.cpp): bit -> (the failsafe kinds it changes,
#: what it does). The virtual board models bits 2, 3 and 4 (hil.vfc.failsafe).
FS_OPTIONS = "FS_OPTIONS"
FS_OPTIONS_DEFAULT = 16
FS_OPTIONS_BITS: dict[int, tuple[tuple[str, ...], str]] = {
    0: (("rc_loss",), "the radio failsafe carries on with a mission in AUTO"),
    1: (("gcs_loss",), "the GCS failsafe carries on with a mission in AUTO"),
    2: (("rc_loss",), "the radio failsafe carries on in GUIDED"),
    3: (("rc_loss", "gcs_loss", "battery"), "radio, GCS and battery failsafes carry on landing"),
    4: (("gcs_loss",), "the GCS failsafe carries on in modes the pilot flies"),
    5: ((), "a failsafe releases the gripper"),
}

#: Parameters a snapshot leaves out and a restore never writes: calibrations the board
#: measures itself at boot (BARO1_GND_PRESS: "Param write denied" on a write), its
#: sensors' device ids, counters and read-only facts (AP_Baro, AP_Compass,
#: AP_InertialSensor, AP_Stats, AP_Param's FORMAT_VERSION and SYSID_SW_*).
UNRESTORABLE = (
    "BARO*_GND_PRESS",
    "BARO_GND_PRESS",
    "GND_ABS_PRESS*",
    "BARO*_DEVID",
    "COMPASS_DEV_ID*",
    "COMPASS_PRIO*_ID",
    "INS_ACC*_ID",
    "INS_GYR*_ID",
    "STAT_*",
    "FORMAT_VERSION",
    "SYSID_SW_*",
    "STAT_BOOTCNT",
)

#: Messages a harness needs streamed, Hz (ArduPilot sends only HEARTBEAT until asked:
#: SET_MESSAGE_INTERVAL, handled in GCS_Common.cpp handle_command_set_message_interval).
TELEMETRY_STREAMS: dict[str, float] = {
    "SYS_STATUS": 2.0,
    "SYSTEM_TIME": 2.0,
    "GPS_RAW_INT": 5.0,
    "ATTITUDE": 10.0,
    "GLOBAL_POSITION_INT": 10.0,
    "LOCAL_POSITION_NED": 10.0,
    "RC_CHANNELS": 5.0,
    "VFR_HUD": 5.0,
    "BATTERY_STATUS": 2.0,
    "EKF_STATUS_REPORT": 2.0,
}

ARDUCOPTER = FirmwareProfile(
    name="arducopter",
    family="ArduPilot",
    vehicle="copter",
    protocol="mavlink",
    modes=COPTER_MODES,
    vocabulary={**{mode: mode for mode in COPTER_MODES}, **_WORDS},
    failsafes=(
        Failsafe(
            "rc_loss",
            "FS_THR_ENABLE",
            _RC_ACTIONS,
            timeout_setting="RC_FS_TIMEOUT",
            threshold_setting="FS_THR_VALUE",
            threshold_unit="us (throttle PWM below it counts as lost)",
            defaults={"FS_THR_ENABLE": 1, "RC_FS_TIMEOUT": 1.0},
            note="No valid RC for RC_FS_TIMEOUT seconds, or three throttle frames in a row "
            "below FS_THR_VALUE. FS_OPTIONS can let AUTO and GUIDED carry on.",
        ),
        Failsafe(
            "gcs_loss",
            "FS_GCS_ENABLE",
            _GCS_ACTIONS,
            timeout_setting="FS_GCS_TIMEOUT",
            defaults={"FS_GCS_ENABLE": 0, "FS_GCS_TIMEOUT": 5.0, FS_OPTIONS: FS_OPTIONS_DEFAULT},
            note="No heartbeat from the ground station (SYSID_MYGCS) for FS_GCS_TIMEOUT seconds. "
            "At FS_OPTIONS' default (16) it only announces itself in modes the pilot flies "
            "(STABILIZE, ALT_HOLD, LOITER...); it acts in GUIDED, AUTO, RTL and LAND.",
        ),
        Failsafe(
            "position_loss",
            "FS_EKF_ACTION",
            {1: ("LAND",), 2: ("ALT_HOLD",), 3: ("LAND",)},
            threshold_setting="FS_EKF_THRESH",
            threshold_unit="EKF variance test ratio (0 disables)",
            defaults={"FS_EKF_ACTION": 1},
            note="Two EKF variances above FS_EKF_THRESH for about 1 s (ekf_check.cpp). "
            "1 and 2 act only in modes that need a position; 3 lands even in STABILIZE.",
        ),
        Failsafe(
            "battery",
            "BATT_FS_LOW_ACT",
            {
                0: ("WARN",),
                1: ("LAND",),
                2: ("RTL",),
                3: ("SMART_RTL", "RTL"),
                4: ("SMART_RTL", "LAND"),
                5: ("DISARM",),
            },
            timeout_setting="BATT_LOW_TIMER",
            defaults={"BATT_FS_LOW_ACT": 0},
            threshold_setting="BATT_LOW_VOLT",
            threshold_unit="V (0 disables)",
            note="Below BATT_LOW_VOLT for BATT_LOW_TIMER seconds; BATT_CRT_VOLT and "
            "BATT_FS_CRT_ACT form a second, critical stage. 5 is Terminate.",
        ),
    ),
    arming=Arming(
        method="MAVLink COMPONENT_ARM_DISARM, rudder stick or an RC switch",
        steps=(
            "the flight-mode channel (FLTMODE_CH, channel 5 by default) selects a mode that "
            "allows arming (STABILIZE, ALT_HOLD, LOITER, GUIDED...; not RTL, LAND or AUTO)",
            "throttle stick low",
            "COMPONENT_ARM_DISARM param1 = 1, or yaw stick right for 2 s (ARMING_RUDDER), "
            "or an RC switch whose RCx_OPTION is 153 (arm/disarm)",
            "the pre-arm checks (ARMING_CHECK) pass, unless forced with param2 = 2989",
        ),
        force_arm=FORCE_ARM,
        force_disarm=FORCE_DISARM,
        checks_setting="ARMING_CHECK",
        checks={
            # ArduCopter/AP_Arming_Copter.cpp gps_checks(): when the flight mode requires
            # GPS (Mode::requires_GPS(): LOITER, POSHOLD, GUIDED, AUTO, RTL, ...), a circle
            # or polygon fence is enabled, or SUPER SIMPLE is on, the common
            # AP_Arming::gps_checks() (libraries/AP_Arming/AP_Arming.cpp) runs with
            # ARMING_CHECK's GPS bit: below a 3D fix "GPS 1: Bad fix" (PreArm: prefixed),
            # then copter.position_ok() ("Need Position Estimate" when the EKF has none).
            # STABILIZE, ACRO and ALT_HOLD arm without a fix. Made at every arming.
            "gps_fix": ArmingCheck(
                flag="Bad fix",
                capability="gnss",
                when="in a flight mode that needs GPS (LOITER, POSHOLD, GUIDED, AUTO, RTL...) "
                "or with a circle or polygon fence",
                note="ARMING_CHECK with the GPS bit (1 = all, the default); the message is "
                "'Arm: GPS 1: Bad fix' when asked to arm ('PreArm:' in the periodic pre-arm "
                "report), then 'Need Position Estimate' "
                "(ArduCopter/AP_Arming_Copter.cpp gps_checks, libraries/AP_Arming/AP_Arming.cpp)",
            ),
        },
    ),
    reboot=Command("mavlink", MAV_CMD_PREFLIGHT_REBOOT_SHUTDOWN, (1.0,)),
    bootloader=(
        Command(
            "mavlink",
            MAV_CMD_PREFLIGHT_REBOOT_SHUTDOWN,
            (3.0,),
            note="ACK first, then the bootloader about 200 ms later; refused while armed",
        ),
    ),
    unrestorable=UNRESTORABLE,
    telemetry_streams=TELEMETRY_STREAMS,
    sources=(
        "ArduPilot ArduCopter/mode.h",
        "ArduPilot libraries/GCS_MAVLink/GCS_Common.cpp",
        "ArduPilot ArduCopter/Parameters.cpp",
        "ArduPilot ArduCopter/AP_Arming_Copter.cpp",
        "ArduPilot libraries/AP_Arming/AP_Arming.cpp",
    ),
)


# -- RC as ArduCopter reads it ---------------------------------------------------------------

#: ArduCopter's defaults for what RcSemantics reads (ArduCopter/Parameters.cpp,
#: config.h FLIGHT_MODE_n, libraries/RC_Channel RCn_MIN/MAX, AP_RCMapper).
RC_DEFAULTS: dict[str, float] = {
    "RCMAP_ROLL": 1, "RCMAP_PITCH": 2, "RCMAP_THROTTLE": 3, "RCMAP_YAW": 4,
    "FLTMODE_CH": 5, "INITIAL_MODE": 0, "FS_THR_VALUE": 975,
    **{f"FLTMODE{i}": 0 for i in range(1, 7)},
}  # fmt: skip
#: The PWM in the middle of each flight-mode switch position (RC_Channel.cpp
#: read_6pos_switch: positions end at 1230, 1360, 1490, 1620, 1749).
MODE_SWITCH_PWM = (1165, 1295, 1425, 1555, 1685, 1815)
#: Modes a harness may leave a switch in when none selects the boot mode: they neither
#: fly off on their own nor refuse to arm.
_HARMLESS = ("STABILIZE", "ALT_HOLD", "LOITER", "POSHOLD", "GUIDED")
RC_CHANNELS = 16


@dataclass(frozen=True)
class RcSemantics:
    """The sticks and switches as an ArduCopter reads them (0-based channel indexes).

    ArduCopter arms only with the throttle low, and in LOITER and ALT_HOLD holds its
    altitude with the throttle in the middle; a change of the flight-mode channel's
    position changes the mode, so the harness leaves it at `mode_pwm`, a position that
    selects the mode the board boots in (`note` says when none does).
    """

    roll: int = 0
    pitch: int = 1
    throttle: int = 2
    yaw: int = 3
    mode_channel: int | None = 4
    mode_pwm: int = MODE_SWITCH_PWM[0]
    throttle_low: int = 1100
    throttle_mid: int = 1500
    centre: tuple[int, ...] = (1500,) * RC_CHANNELS
    note: str = ""

    def channels(self, *, armed: bool) -> list[int]:
        ch = list(self.centre)
        ch[self.throttle] = self.throttle_mid if armed else self.throttle_low
        if self.mode_channel is not None:
            ch[self.mode_channel] = self.mode_pwm
        return ch


def _int(params: Mapping[str, float], name: str) -> int:
    value = params.get(name, RC_DEFAULTS.get(name, 0))
    return int(value) if math.isfinite(value) else int(RC_DEFAULTS.get(name, 0))


def rc_semantics(params: Mapping[str, float]) -> RcSemantics:
    """RcSemantics from a board's parameters (missing ones at ArduCopter's defaults)."""

    def channel(name: str, default: int) -> int:
        n = _int(params, name)
        return n - 1 if 1 <= n <= RC_CHANNELS else default

    roll, pitch, throttle, yaw = (
        channel("RCMAP_ROLL", 0), channel("RCMAP_PITCH", 1),
        channel("RCMAP_THROTTLE", 2), channel("RCMAP_YAW", 3),
    )  # fmt: skip
    centre = []
    for i in range(RC_CHANNELS):
        lo = params.get(f"RC{i + 1}_MIN", 1100.0)
        hi = params.get(f"RC{i + 1}_MAX", 1900.0)
        trim = params.get(f"RC{i + 1}_TRIM", 1500.0)
        centre.append(int(trim) if lo <= trim <= hi else int((lo + hi) / 2))
    lo = params.get(f"RC{throttle + 1}_MIN", 1100.0)
    hi = params.get(f"RC{throttle + 1}_MAX", 1900.0)
    low = int(max(lo, params.get("FS_THR_VALUE", 975.0) + 10))
    mode_ch = _int(params, "FLTMODE_CH")
    mode_channel = mode_ch - 1 if 1 <= mode_ch <= RC_CHANNELS else None
    note = ""
    position = 0
    if mode_channel is not None:
        modes = [_int(params, f"FLTMODE{i}") for i in range(1, 7)]
        boot = _int(params, "INITIAL_MODE")
        if boot in modes:
            position = modes.index(boot)
        else:
            names = [COPTER_NAMES.get(m, f"MODE({m})") for m in modes]
            harmless = [i for i, name in enumerate(names) if name in _HARMLESS]
            position = harmless[0] if harmless else 0
            note = (
                f"no flight-mode switch position selects the boot mode "
                f"{COPTER_NAMES.get(boot, boot)}; the switch stays at position {position + 1} "
                f"({names[position]}), which the board enters when RC first arrives"
            )
    return RcSemantics(
        roll, pitch, throttle, yaw, mode_channel, MODE_SWITCH_PWM[position],
        low, int((lo + hi) / 2), tuple(centre), note,
    )  # fmt: skip


COPTER_NAMES = {number: name for name, number in COPTER_MODES.items()}


#: Longest parameter name ArduPilot knows (libraries/AP_Param/AP_Param.h, AP_MAX_NAME_SIZE).
PARAM_NAME_MAX = 16
_PARAM_SEPARATORS = re.compile(r"[,= \t]+")
_PARAM_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


def read_param_file(path: Path) -> dict[str, float]:
    """A defaults file the user hands us, checked line by line: ConfigError (one line,
    naming the file and the line) for anything ArduPilot would skip or misread.

    ArduPilot's reader (AP_Param::parse_param_line) takes a name and a value per line,
    separated by commas, spaces, tabs or '=', ignores lines starting with '#' and
    names longer than 16 characters, and reads an unparseable value as 0; a third
    field may be ``@READONLY``. Silently skipping or zeroing would gate a parameter
    set other than the one the user meant, so here each of those is an error.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"defaults file {path}: cannot read it ({exc})") from None
    out: dict[str, float] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = [f for f in _PARAM_SEPARATORS.split(line) if f]
        shown = raw.strip()[:60]
        if len(fields) < 2 or len(fields) > 3 or (len(fields) == 3 and fields[2] != "@READONLY"):
            raise ConfigError(f"defaults file {path} line {number}: {shown!r} is not 'NAME VALUE'")
        name, value_text = fields[0], fields[1]
        if not _PARAM_NAME.fullmatch(name) or len(name) > PARAM_NAME_MAX:
            raise ConfigError(
                f"defaults file {path} line {number}: {name[:40]!r} is not an ArduPilot parameter name "
                f"(capitals, digits and _, at most {PARAM_NAME_MAX} characters)"
            )
        try:
            value = float(value_text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ConfigError(f"defaults file {path} line {number}: {name} = {value_text[:40]!r} is not a number")
        out[name] = value
    if not out:
        raise ConfigError(f"defaults file {path}: no 'NAME VALUE' line in it")
    return out


def parse_param_file(text: str) -> dict[str, float]:
    """An ArduPilot parameter file ("NAME value" or "NAME,value" per line, # comments);
    lines that are not a name and a number are skipped, as ArduPilot skips them."""
    out: dict[str, float] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.replace(",", " ").split()
        if len(parts) < 2:
            continue
        try:
            value = float(parts[1])
        except ValueError:
            continue
        if math.isfinite(value) and parts[0].replace("_", "").isalnum():
            out[parts[0].upper()] = value
    return out
