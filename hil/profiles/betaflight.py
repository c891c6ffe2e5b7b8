"""Betaflight (4.x, and its 2025.x releases): SITL and real MSP boards.

Betaflight's modes are boxes, switched on by AUX channel ranges. Each has a permanent id
that MSP_BOXIDS and MSP_MODE_RANGES carry and that never changes meaning
(src/main/msp/msp_box.c, `boxes[]`); the internal `boxId_e` order (src/main/fc/rc_modes.h)
differs between releases and is not used here. A board reports only the boxes its build
and configuration enable: ALTHOLD (3) needs USE_ALT_HOLD_MODE, POS HOLD (11) the
2025.12 position hold, GPS RESCUE (46) the GPS feature.

With no flight-mode box on, Betaflight flies in rate mode: the harness calls it ACRO.

Failsafe (src/main/flight/failsafe.h and failsafe.c): when the link is lost, stage 1 holds
the channels' fallback values for `failsafe_delay` x 0.1 s; stage 2 then runs
`failsafe_procedure` (AUTO-LAND: level, `failsafe_throttle` for `failsafe_landing_time`
seconds, then disarm; DROP: disarm; GPS-RESCUE: fly home). The FAILSAFE box is on during
stage 2. `failsafe_recovery_delay` x 0.1 s of good RC ends it. Betaflight has no
ground-station or position-loss failsafe and only warns on a low battery.

Reboots (src/main/msp/msp.c, MSP_REBOOT; src/main/cli/cli.c): MSP_REBOOT with no payload or
0 reboots the firmware, 1 into the MCU's ROM (DFU) bootloader, 4 into the flash
bootloader on builds that have one; the CLI's `bl rom` and `bl flash` do the same (4.6
has no `dfu` command; a bare `bl` is the flash bootloader where the build has one, else
the ROM's).
"""

from __future__ import annotations

from hil.profiles.model import MSP_REBOOT, Arming, ArmingCheck, Command, Failsafe, FirmwareProfile

#: Box name -> permanent id (msp_box.c). Ids 9, 10, 14, 16, 18, 21, 22 and 38 belonged to
#: boxes since removed and are never reused.
BOXES: dict[str, int] = {
    "ARM": 0,
    "ANGLE": 1,
    "HORIZON": 2,
    "ALTHOLD": 3,
    "ANTI GRAVITY": 4,
    "MAG": 5,
    "HEADFREE": 6,
    "HEADADJ": 7,
    "CAMSTAB": 8,
    "POS HOLD": 11,
    "PASSTHRU": 12,
    "BEEPER": 13,
    "LEDLOW": 15,
    "CALIB": 17,
    "OSD DISABLE": 19,
    "TELEMETRY": 20,
    "SERVO1": 23,
    "SERVO2": 24,
    "SERVO3": 25,
    "BLACKBOX": 26,
    "FAILSAFE": 27,
    "AIR MODE": 28,
    "3D DISABLE / SWITCH": 29,
    "FPV ANGLE MIX": 30,
    "BLACKBOX ERASE": 31,
    "CAMERA CONTROL 1": 32,
    "CAMERA CONTROL 2": 33,
    "CAMERA CONTROL 3": 34,
    "FLIP OVER AFTER CRASH": 35,
    "PREARM": 36,
    "GPS BEEP SATELLITE COUNT": 37,
    "VTX PIT MODE": 39,
    "USER1": 40,
    "USER2": 41,
    "USER3": 42,
    "USER4": 43,
    "PID AUDIO": 44,
    "PARALYZE": 45,
    "GPS RESCUE": 46,
    "ACRO TRAINER": 47,
    "VTX CONTROL DISABLE": 48,
    "LAUNCH CONTROL": 49,
    "MSP OVERRIDE": 50,
    "STICK COMMANDS DISABLE": 51,
    "BEEPER MUTE": 52,
    "READY": 53,
    "LAP TIMER RESET": 54,
}

#: failsafePhase_e, in the firmware's numbering.
FAILSAFE_PHASES = (
    "IDLE",
    "RX_LOSS_DETECTED",
    "LANDING",
    "LANDED",
    "RX_LOSS_MONITORING",
    "RX_LOSS_RECOVERED",
    "GPS_RESCUE",
)
#: failsafe_switch_mode: what the FAILSAFE box does when switched on.
FAILSAFE_SWITCH_MODES = ("STAGE1", "KILL", "STAGE2")
#: MSP_REBOOT's mode byte (msp.c).
REBOOT_FIRMWARE, REBOOT_BOOTLOADER_ROM, REBOOT_MSC, REBOOT_MSC_UTC, REBOOT_BOOTLOADER_FLASH = range(
    5
)

BETAFLIGHT = FirmwareProfile(
    name="betaflight",
    family="Betaflight",
    vehicle="copter",
    protocol="msp",
    modes=BOXES,
    vocabulary={
        "ACRO": "ACRO",
        "STABILIZE": "ANGLE",
        "ANGLE": "ANGLE",
        "HORIZON": "HORIZON",
        "ALT_HOLD": "ALTHOLD",
        "HOLD": "POS HOLD",
        "LOITER": "POS HOLD",
        "POSHOLD": "POS HOLD",
        "RTL": "GPS RESCUE",
        "FAILSAFE": "FAILSAFE",
    },
    idle_mode="ACRO",
    failsafes=(
        Failsafe(
            "rc_loss",
            "failsafe_procedure",
            {0: ("LAND",), 1: ("DISARM",), 2: ("RTL",)},
            choices=("AUTO-LAND", "DROP", "GPS-RESCUE"),
            timeout_setting="failsafe_delay",
            timeout_scale=0.1,
            note="failsafe_delay is stage 1 (fallback channel values); stage 2 runs the "
            "procedure with the FAILSAFE box on. AUTO-LAND holds failsafe_throttle for "
            "failsafe_landing_time seconds, then disarms.",
        ),
        Failsafe(
            "battery",
            None,
            {None: ("WARN",)},
            threshold_setting="vbat_warning_cell_voltage",
            threshold_unit="0.01 V per cell",
            note="Beeper and OSD warnings only; no failsafe action.",
        ),
    ),
    arming=Arming(
        method="RC switch (the ARM box on an AUX channel)",
        steps=(
            "a mode activation condition puts the ARM box on an AUX channel range",
            "throttle below min_check",
            "no arming-disable flag set (RXLOSS, BOOTGRACE, ANGLE, CLI, MSP, ...: "
            "MSP_STATUS_EX lists them)",
            "the ARM switch moves from off to on (a switch already on at boot sets "
            "ARM_SWITCH and does not arm)",
        ),
        checks={
            # fc/core.c updateArmingStatus(): while disarmed and gpsRescueIsConfigured()
            # (flight/gps_rescue_multirotor.c: failsafe_procedure = GPS-RESCUE, or a mode
            # range for the GPS RESCUE box), ARMING_DISABLED_GPS (MSP name "GPS",
            # fc/runtime_config.h bit 18) is set unless gps_rescue_allow_arming_without_fix
            # is ON (default OFF), or there is a fix with at least gps_rescue_min_sats
            # satellites (default 8, pg/gps_rescue_multirotor.c), or the craft has armed
            # once since boot (WAS_EVER_ARMED), or the crash-flip box is on.
            "gps_fix": ArmingCheck(
                flag="GPS",
                capability="gps_rescue",
                until_first_arm=True,
                when="with GPS Rescue configured (failsafe_procedure = GPS-RESCUE or a GPS RESCUE mode range)",
                note="a fix with gps_rescue_min_sats (8) satellites, unless "
                "gps_rescue_allow_arming_without_fix = ON; only until the first arming since boot "
                "(fc/core.c updateArmingStatus, flight/gps_rescue_multirotor.c gpsRescueIsConfigured)",
            ),
        },
    ),
    reboot=Command(
        "msp",
        MSP_REBOOT,
        payload=bytes([REBOOT_FIRMWARE]),
        note="the mode byte 0 or none: the same",
    ),
    bootloader=(
        Command(
            "msp", MSP_REBOOT, payload=bytes([REBOOT_BOOTLOADER_ROM]), note="ROM (DFU) bootloader"
        ),
        Command(
            "msp",
            MSP_REBOOT,
            payload=bytes([REBOOT_BOOTLOADER_FLASH]),
            note="flash bootloader, on builds that have one",
        ),
        Command("cli", "bl rom", note="ROM (DFU) bootloader"),
        Command("cli", "bl flash", note="flash bootloader, on builds that have one"),
    ),
    rom_dfu=(
        Command("msp", MSP_REBOOT, payload=bytes([REBOOT_BOOTLOADER_ROM]), note="ROM (DFU) bootloader"),
        Command("cli", "bl rom", note="ROM (DFU) bootloader"),
    ),
    failsafe_phases=FAILSAFE_PHASES,
    sources=(
        "Betaflight src/main/msp/msp_box.c",
        "Betaflight src/main/fc/rc_modes.h",
        "Betaflight src/main/flight/failsafe.h",
        "Betaflight src/main/msp/msp.c",
        "Betaflight src/main/cli/cli.c",
        "Betaflight src/main/fc/core.c",
        "Betaflight src/main/flight/gps_rescue_multirotor.c",
        "Betaflight src/main/pg/gps_rescue_multirotor.c",
    ),
)
