"""PX4 multicopter: SITL, HITL and real boards running PX4.

PX4 packs its mode into HEARTBEAT custom_mode as a little-endian union
(src/modules/commander/px4_custom_mode.h, `union px4_custom_mode`): bytes 0-1 reserved,
byte 2 the main mode, byte 3 the sub mode. A sub mode only means something under AUTO
(`PX4_CUSTOM_SUB_MODE_AUTO`) and POSCTL (`PX4_CUSTOM_SUB_MODE_POSCTL`); elsewhere it is 0.

Other sources (PX4/PX4-Autopilot):
- src/modules/commander/Commander.cpp: COMPONENT_ARM_DISARM with param2 = 21196 forces
  arming and disarming alike; PREFLIGHT_REBOOT_SHUTDOWN param1 3 reboots into the
  bootloader.
- src/modules/commander/commander_params.yaml: NAV_RCL_ACT, NAV_DLL_ACT and their timeouts
  (value 0 "Disabled" of NAV_RCL_ACT exists only up to v1.13), COM_FAIL_ACT_T.
- MAV_CMD_DO_SET_MODE: param2 is the main mode, param3 the sub mode (Commander.cpp).
"""

from __future__ import annotations

from hil.profiles.model import (
    MAV_CMD_PREFLIGHT_REBOOT_SHUTDOWN,
    Arming,
    Command,
    Failsafe,
    FirmwareProfile,
)

#: PX4_CUSTOM_MAIN_MODE.
MAIN_MODES: dict[str, int] = {
    "MANUAL": 1,
    "ALTCTL": 2,
    "POSCTL": 3,
    "AUTO": 4,
    "ACRO": 5,
    "OFFBOARD": 6,
    "STABILIZED": 7,
}

#: The harness's names for PX4's (main mode, sub mode) pairs.
MAIN_SUB_MODES: dict[str, tuple[int, int]] = {
    "MANUAL": (1, 0),
    "ALTCTL": (2, 0),
    "POSCTL": (3, 0),
    "POSCTL_ORBIT": (3, 1),
    "AUTO_READY": (4, 1),
    "AUTO_TAKEOFF": (4, 2),
    "AUTO_LOITER": (4, 3),  # QGroundControl's "Hold"
    "AUTO_MISSION": (4, 4),
    "AUTO_RTL": (4, 5),
    "AUTO_LAND": (4, 6),
    # 7 was AUTO_RTGS, removed in 2020 and reserved since.
    "AUTO_FOLLOW_TARGET": (4, 8),
    "AUTO_PRECLAND": (4, 9),
    "AUTO_VTOL_TAKEOFF": (4, 10),
    "ACRO": (5, 0),
    "OFFBOARD": (6, 0),
    "STABILIZED": (7, 0),
}

#: COMPONENT_ARM_DISARM param2 that skips the checks, both ways.
FORCE_MAGIC = 21196.0


def encode_custom_mode(main_mode: int, sub_mode: int = 0) -> int:
    """HEARTBEAT / DO_SET_MODE custom_mode for a main and sub mode."""
    if not (0 <= main_mode <= 0xFF and 0 <= sub_mode <= 0xFF):
        raise ValueError(f"PX4 main and sub modes are bytes; got {main_mode}, {sub_mode}")
    return (main_mode << 16) | (sub_mode << 24)


def decode_custom_mode(custom_mode: int) -> tuple[int, int]:
    """(main mode, sub mode) of a custom_mode."""
    return (custom_mode >> 16) & 0xFF, (custom_mode >> 24) & 0xFF


PX4_MODES: dict[str, int] = {
    name: encode_custom_mode(*pair) for name, pair in MAIN_SUB_MODES.items()
}

_WORDS = {
    "ACRO": "ACRO",
    "STABILIZE": "STABILIZED",
    "ANGLE": "STABILIZED",
    "ALT_HOLD": "ALTCTL",
    "HOLD": "AUTO_LOITER",
    "LOITER": "AUTO_LOITER",
    "POSHOLD": "POSCTL",
    "GUIDED": "OFFBOARD",
    "OFFBOARD": "OFFBOARD",
    "AUTO": "AUTO_MISSION",
    "TAKEOFF": "AUTO_TAKEOFF",
    "RTL": "AUTO_RTL",
    "LAND": "AUTO_LAND",
}

#: NAV_RCL_ACT and NAV_DLL_ACT: 5 Terminate and 6 Disarm (Lockdown before v1.14) both stop
#: the motors.
_LOSS_ACTIONS = {
    0: ("OFF",),
    1: ("HOLD",),
    2: ("RTL",),
    3: ("LAND",),
    5: ("DISARM",),
    6: ("DISARM",),
}

PX4_MULTICOPTER = FirmwareProfile(
    name="px4",
    family="PX4",
    vehicle="copter",
    protocol="mavlink",
    modes=PX4_MODES,
    vocabulary=_WORDS,
    failsafes=(
        Failsafe(
            "rc_loss",
            "NAV_RCL_ACT",
            _LOSS_ACTIONS,
            timeout_setting="COM_RC_LOSS_T",
            note="COM_FAIL_ACT_T holds the vehicle that many seconds before the action "
            "(v1.14+); COM_RCL_EXCEPT lists modes in which RC loss is ignored.",
        ),
        Failsafe(
            "gcs_loss",
            "NAV_DLL_ACT",
            _LOSS_ACTIONS,
            timeout_setting="COM_DL_LOSS_T",
            note="COM_DLL_EXCEPT lists modes in which the data-link loss is ignored.",
        ),
        Failsafe(
            "position_loss",
            "COM_POSCTL_NAVL",
            {1: ("LAND",)},
            note="Auto modes (Hold, where the scenario word LOITER maps, Return) land, or "
            "descend without any position (failsafe.cpp, checkModeFallback). COM_POSCTL_NAVL "
            "governs Position mode only: 0 falls back to Altitude, 1 to Land; 0 is left out "
            "here because no scenario word flies Position mode.",
        ),
        Failsafe(
            "battery",
            "COM_LOW_BAT_ACT",
            {0: ("WARN",), 2: ("LAND",), 3: ("RTL", "LAND")},
            threshold_setting="BAT_CRIT_THR",
            threshold_unit="fraction of capacity (BAT_LOW_THR warns, BAT_EMERGEN_THR lands)",
            note="3: return at the critical level, land at the emergency level.",
        ),
    ),
    arming=Arming(
        method="MAVLink COMPONENT_ARM_DISARM, stick gesture or an arm switch",
        steps=(
            "throttle stick low",
            "COMPONENT_ARM_DISARM param1 = 1, or yaw right with throttle down, or the arm "
            "switch (RC_MAP_ARM_SW)",
            "the preflight checks (COM_ARM_*) pass, unless forced with param2 = 21196",
        ),
        force_arm=FORCE_MAGIC,
        force_disarm=FORCE_MAGIC,
    ),
    reboot=Command("mavlink", MAV_CMD_PREFLIGHT_REBOOT_SHUTDOWN, (1.0,)),
    bootloader=(Command("mavlink", MAV_CMD_PREFLIGHT_REBOOT_SHUTDOWN, (3.0,)),),
    set_mode_form="main_sub",
    # What PX4 says (Commander.cpp; failsafe/framework.cpp notifyUser): the loss itself,
    # then "Failsafe activated" (", entering Hold for N seconds" with COM_FAIL_ACT_T).
    statustexts={
        "Radio Failsafe": "Manual control lost",
        "GCS Failsafe": "Connection to ground station lost",
        "EKF Failsafe": "Failsafe activated",
        "Battery 1 is low": "Low battery level",
    },
    # ArduPilot acts when a failsafe's timeout runs out; PX4 first holds COM_FAIL_ACT_T
    # (5 s) in Hold. A scenario written for the former gets no hold.
    act_at_timeout={"COM_FAIL_ACT_T": 0.0},
    sources=(
        "PX4 src/modules/commander/px4_custom_mode.h",
        "PX4 src/modules/commander/Commander.cpp",
        "PX4 src/modules/commander/commander_params.yaml",
        "PX4 src/modules/commander/failsafe/framework.cpp",
    ),
)
