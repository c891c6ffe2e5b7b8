"""INAV multirotor: real MSP boards (and INAV SITL) running INAV.

Like Betaflight, INAV's modes are boxes with permanent ids (src/main/fc/fc_msp_box.c,
`boxes[]`; the internal order is `boxId_e` in src/main/fc/rc_modes.h, and differs). The
navigation boxes (NAV ALTHOLD, NAV POSHOLD, NAV RTH, NAV WP) appear only when the sensors
they need are configured.

Failsafe (src/main/fc/settings.yaml, table `failsafe_procedure`; docs/Failsafe.md): stage 1
lasts `failsafe_delay` x 0.1 s, then `failsafe_procedure` runs: LAND (an emergency
landing; the value was called SET-THR in older INAV), DROP (disarm), RTH, or NONE (carry
on). `failsafe_off_delay` x 0.1 s bounds the landing; `failsafe_recovery_delay` x 0.1 s of
good RC ends the failsafe.

Reboots (src/main/fc/fc_msp.c, src/main/fc/cli.c): MSP_REBOOT reboots the firmware (not
while armed) and takes no bootloader option; the CLI's `dfu` reboots into the ROM DFU
bootloader.
"""

from __future__ import annotations

from hil.profiles.model import MSP_REBOOT, Arming, Command, Failsafe, FirmwareProfile

#: Box name -> permanent id (fc_msp_box.c).
BOXES: dict[str, int] = {
    "ARM": 0,
    "ANGLE": 1,
    "HORIZON": 2,
    "NAV ALTHOLD": 3,
    "HEADING HOLD": 5,
    "HEADFREE": 6,
    "HEADADJ": 7,
    "CAMSTAB": 8,
    "NAV RTH": 10,
    "NAV POSHOLD": 11,
    "MANUAL": 12,
    "BEEPER": 13,
    "LEDS OFF": 15,
    "LIGHTS": 16,
    "OSD OFF": 19,
    "TELEMETRY": 20,
    "AUTO TUNE": 21,
    "BLACKBOX": 26,
    "FAILSAFE": 27,
    "NAV WP": 28,
    "AIR MODE": 29,
    "HOME RESET": 30,
    "GCS NAV": 31,
    "FPV ANGLE MIX": 32,
    "SURFACE": 33,
    "FLAPERON": 34,
    "TURN ASSIST": 35,
    "NAV LAUNCH": 36,
    "SERVO AUTOTRIM": 37,
    "CAMERA CONTROL 1": 39,
    "CAMERA CONTROL 2": 40,
    "CAMERA CONTROL 3": 41,
    "OSD ALT 1": 42,
    "OSD ALT 2": 43,
    "OSD ALT 3": 44,
    "NAV COURSE HOLD": 45,
    "MC BRAKING": 46,
    "USER1": 47,
    "USER2": 48,
    "LOITER CHANGE": 49,
    "MSP RC OVERRIDE": 50,
    "PREARM": 51,
    "TURTLE": 52,
    "NAV CRUISE": 53,
    "AUTO LEVEL TRIM": 54,
    "WP PLANNER": 55,
    "SOARING": 56,
    "USER3": 57,
    "USER4": 58,
    "MISSION CHANGE": 59,
    "BEEPER MUTE": 60,
    "MULTI FUNCTION": 61,
    "MIXER PROFILE 2": 62,
    "MIXER TRANSITION": 63,
    "ANGLE HOLD": 64,
}

INAV = FirmwareProfile(
    name="inav",
    family="INAV",
    vehicle="copter",
    protocol="msp",
    modes=BOXES,
    vocabulary={
        "ACRO": "ACRO",
        "STABILIZE": "ANGLE",
        "ANGLE": "ANGLE",
        "HORIZON": "HORIZON",
        "ALT_HOLD": "NAV ALTHOLD",
        "HOLD": "NAV POSHOLD",
        "LOITER": "NAV POSHOLD",
        "POSHOLD": "NAV POSHOLD",
        "RTL": "NAV RTH",
        "AUTO": "NAV WP",
        # GCS NAV lets the ground station move the held position (waypoint 255).
        "GUIDED": "GCS NAV",
        "FAILSAFE": "FAILSAFE",
    },
    idle_mode="ACRO",
    failsafes=(
        Failsafe(
            "rc_loss",
            "failsafe_procedure",
            {0: ("LAND",), 1: ("DISARM",), 2: ("RTL",), 3: ("CONTINUE",)},
            choices=("LAND", "DROP", "RTH", "NONE"),
            timeout_setting="failsafe_delay",
            timeout_scale=0.1,
            note="failsafe_min_distance / failsafe_min_distance_procedure choose another "
            "procedure close to home; failsafe_throttle_low_delay disarms a craft that "
            "sat with the throttle low.",
        ),
    ),
    arming=Arming(
        method="RC switch (the ARM box on an AUX channel)",
        steps=(
            "a mode activation condition puts the ARM box on an AUX channel range",
            "throttle low",
            "no arming-blocker active (the CLI's `status` lists them); with "
            "nav_extra_arming_safety, no navigation mode on and a GPS fix where one is needed",
            "the ARM switch moves from off to on",
        ),
    ),
    reboot=Command("msp", MSP_REBOOT, note="refused while armed"),
    bootloader=(Command("cli", "dfu", note="ROM (DFU) bootloader"),),
    rom_dfu=(Command("cli", "dfu", note="ROM (DFU) bootloader"),),
    sources=(
        "INAV src/main/fc/fc_msp_box.c",
        "INAV src/main/fc/rc_modes.h",
        "INAV src/main/fc/settings.yaml",
        "INAV src/main/fc/fc_msp.c",
        "INAV src/main/fc/cli.c",
    ),
)
