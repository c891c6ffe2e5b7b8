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

from hil.profiles.model import (
    MAV_CMD_PREFLIGHT_REBOOT_SHUTDOWN,
    Arming,
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
            defaults={"FS_GCS_ENABLE": 0, "FS_GCS_TIMEOUT": 5.0},
            note="No heartbeat from the ground station (SYSID_MYGCS) for FS_GCS_TIMEOUT seconds.",
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
    sources=(
        "ArduPilot ArduCopter/mode.h",
        "ArduPilot libraries/GCS_MAVLink/GCS_Common.cpp",
        "ArduPilot ArduCopter/Parameters.cpp",
    ),
)
