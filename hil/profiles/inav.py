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

Reboots (src/main/fc/fc_msp.c `mspFcRebootCommand`, src/main/fc/cli.c): MSP_REBOOT is
refused while armed; with no payload (or a 0 byte) it reboots the firmware, with one
non-zero byte into the ROM DFU bootloader (INAV 9; older releases reject a payload). The
CLI's `dfu` does the same on every release.

Arming (src/main/fc/fc_core.c, src/main/fc/runtime_config.h): the ARM box's switch
moving from off to on arms when no bit of `ARMING_DISABLED_ALL_FLAGS` is set in
`armingFlags`; MSP2_INAV_STATUS sends that word whole (`hil.codecs.inav_msp`).

HITL (simulator link `inav_msp_simulator`, `hil.sim.inav_link`; MSP_SIMULATOR handling
in fc_msp.c): what a board needs, found by running the INAV 9.1 SITL in HITL:

- an MSP port for the link besides the one the harness's MSP client uses;
- HITL switched on only after the board's boot-time gyro calibration
  (CALIBRATING_GYRO_TIME_MS, 2 s, src/main/sensors/sensors.h): in HITL `gyroUpdate`
  returns before calibrating, so a board switched over sooner stays at
  SENSORS_CALIBRATING and never arms;
- RC over the link: `receiver_type = SIM (SITL)` (every target has USE_RX_SIM);
- GPS over the link: `feature GPS` *and* a serial port with the GPS function, because
  `gpsInit` clears the GPS feature at boot when no port has it (io/gps.c);
- a motor mixer (`mmix`): without rules MSP_MOTOR reads 0 and nothing flies.
"""

from __future__ import annotations

from hil.profiles.model import MSP_REBOOT, Arming, ArmingCheck, Command, Failsafe, FirmwareProfile

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
    "GIMBAL LEVEL TILT": 65,
    "GIMBAL LEVEL ROLL": 66,
    "GIMBAL CENTER": 67,
    "GIMBAL HEADTRACKER": 68,
}

#: The simulator link an INAV board takes its simulated vehicle through (HITL).
HITL_LINK = "inav_msp_simulator"
#: CLI lines that make a fresh INAV 9 board ready for HITL with the harness's plant:
#: RC and GPS over the link, GPS on UART3, ARM on AUX1 high and ANGLE on AUX2 high
#: (1700..2100 us), and the
#: Quad X motor mixer (motor 1 rear right, 2 front right, 3 rear left, 4 front left;
#: the rows of INAV's Quad X preset). `save` then reboots the board.
HITL_SETUP_CLI = (
    "feature GPS",
    "serial 2 2 115200 115200 0 115200",
    "set receiver_type = SIM (SITL)",
    "aux 0 0 0 1700 2100 0 0",
    "aux 1 1 1 1700 2100 0 0",
    "mmix reset",
    "mmix 0 1.0 -1.0 1.0 -1.0",
    "mmix 1 1.0 -1.0 -1.0 1.0",
    "mmix 2 1.0 1.0 1.0 1.0",
    "mmix 3 1.0 1.0 -1.0 -1.0",
)
#: Seconds from boot before HITL may be switched on (the gyro calibrates for 2 s at boot).
HITL_START_AFTER_BOOT_S = 5.0

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
            "no arming blocker set in armingFlags (MSP2_INAV_STATUS; the CLI's `status` "
            "lists them by name); with nav_extra_arming_safety, no navigation mode on and a "
            "GPS fix where one is needed",
            "the ARM switch moves from off to on",
        ),
        checks={
            # navigation/navigation.c navigationIsBlockingArming(): when a navigation mode
            # has a mode range (fc/rc_modes.c isUsingNavigationModes: NAV POSHOLD, NAV RTH,
            # NAV WP, ...) or a failsafe procedure is RTH (flight/failsafe.c
            # failsafeMayRequireNavigationMode: failsafe_procedure or
            # failsafe_min_distance_procedure), and the position estimate is not healthy
            # (navigationPositionEstimateIsHealthy: position and altitude estimates usable
            # and a home fixed from GPS, GPS_FIX_HOME), fc/fc_core.c updateArmingStatus()
            # sets ARMING_DISABLED_NAVIGATION_UNSAFE (fc/runtime_config.h bit 11, "NAV" in
            # armingDisableFlagNames). nav_extra_arming_safety (fc/settings.yaml) is ON or
            # ALLOW_BYPASS (the default): the latter lets a switch arming with the yaw stick
            # held high go through, and the bypass then holds for later armings. Checked
            # while disarmed, at every arming.
            "gps_fix": ArmingCheck(
                flag="NAV",
                capability="nav_modes",
                when="with a navigation mode on a switch (NAV POSHOLD, NAV RTH, NAV WP...) "
                "or failsafe_procedure = RTH",
                note="the position estimate healthy with a home from a GPS fix; "
                "nav_extra_arming_safety = ALLOW_BYPASS (default) lets yaw-high switch arming "
                "through (navigation/navigation.c navigationIsBlockingArming, fc/fc_core.c "
                "updateArmingStatus, fc/runtime_config.h ARMING_DISABLED_NAVIGATION_UNSAFE)",
            ),
        },
    ),
    reboot=Command("msp", MSP_REBOOT, note="refused while armed"),
    bootloader=(
        Command("msp", MSP_REBOOT, payload=b"\x01", note="ROM (DFU) bootloader, INAV 9 and later"),
        Command("cli", "dfu", note="ROM (DFU) bootloader"),
    ),
    rom_dfu=(
        Command("msp", MSP_REBOOT, payload=b"\x01", note="ROM (DFU) bootloader, INAV 9 and later"),
        Command("cli", "dfu", note="ROM (DFU) bootloader, every release"),
    ),
    sources=(
        "INAV src/main/fc/fc_msp_box.c",
        "INAV src/main/fc/rc_modes.h",
        "INAV src/main/fc/settings.yaml",
        "INAV src/main/fc/fc_msp.c",
        "INAV src/main/fc/cli.c",
        "INAV src/main/fc/runtime_config.h",
        "INAV src/main/fc/fc_core.c",
        "INAV src/main/navigation/navigation.c",
        "INAV src/main/flight/failsafe.c",
    ),
)
