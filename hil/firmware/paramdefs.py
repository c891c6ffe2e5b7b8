"""Every parameter the virtual flight controller reads: ArduPilot names, defaults, units.

Names and meanings follow ArduPilot Copter so that a scenario that sets a parameter runs
unchanged against either board. Controller gains keep ArduPilot's names but their
defaults are tuned for the simulated airframe (hil.sim.vehicle), and the rate
controller outputs are in mixer units (a fraction of full motor command).

The table lives here, beside the application image format, because both sides use it:
the virtual board reads its parameters by it (hil.vfc), and an image's parameter
defaults are checked against it when the image is built or booted
(hil.firmware.app_image).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ParamDef:
    """One parameter: name, default, 'int' or 'float', accepted range, what it means."""

    name: str
    default: float
    kind: str
    minimum: float
    maximum: float
    doc: str


def _i(name: str, default: float, lo: float, hi: float, doc: str) -> ParamDef:
    return ParamDef(name, float(default), "int", float(lo), float(hi), doc)


def _f(name: str, default: float, lo: float, hi: float, doc: str) -> ParamDef:
    return ParamDef(name, float(default), "float", float(lo), float(hi), doc)


PARAM_DEFS: tuple[ParamDef, ...] = (
    # Scheduler and arming.
    _i("SCHED_LOOP_RATE", 400, 50, 2000, "Main loop rate, Hz: one control loop per IMU sample."),
    _i("ARMING_CHECK", 1, 0, 1, "Pre-arm checks: 1 all, 0 none (arming always allowed)."),
    _i("DISARM_DELAY", 10, 0, 127, "Seconds landed with throttle low before auto-disarm (0 off)."),
    # Loop-time model (hil.vfc.looptime): ground truth for loop-timing measurements.
    _f("SIM_LOOP_JIT", 0.0, 0.0, 100000.0, "Modelled loop period jitter, us: each period is "
       "nominal + uniform(-JIT, +JIT), at most 45 % of the period (0 with SIM_LOOP_OVR 0: off)."),
    _f("SIM_LOOP_OVR", 0.0, 0.0, 1.0, "Modelled probability that a loop overruns and misses "
       "the next tick (its period is one nominal period longer)."),
    _i("SIM_LOOP_SEED", 0, 0, 65535, "Seed of the loop-time model's draws."),
    _f("SIM_LOOP_US", 0.0, 0.0, 100000.0, "Modelled compute time of one loop, us: SYS_STATUS."
       "load reports it against the loop period (0: the measured host time)."),
    # Radio failsafe.
    _i("FS_THR_ENABLE", 1, 0, 7, "Radio failsafe: 0 off, 1 RTL, 3 Land, 4 SmartRTL/RTL, "
       "5 SmartRTL/Land, 6 DO_LAND_START/RTL, 7 Brake/Land (SmartRTL, Brake: RTL, Land here)."),
    _i("FS_THR_VALUE", 975, 910, 1100, "Throttle PWM below which the radio failsafe trips, us."),
    _f("RC_FS_TIMEOUT", 1.0, 0.1, 10.0, "No valid RC input this long trips the radio failsafe, s."),
    # GCS failsafe.
    _i("FS_GCS_ENABLE", 0, 0, 7, "GCS failsafe: 0 off, 1 RTL, 5 Land, others RTL (7 Brake/Land)."),
    _f("FS_GCS_TIMEOUT", 5.0, 2.0, 120.0, "No GCS heartbeat this long trips the GCS failsafe, s."),
    # Failsafe options (ArduCopter Parameters.cpp; hil.vfc.failsafe.apply_fs_options).
    _i("FS_OPTIONS", 16, 0, 63, "Failsafe options bitmask: 4 radio failsafe continues in "
       "GUIDED, 8 any failsafe continues a landing, 16 GCS failsafe continues in pilot-flown "
       "modes (1, 2 continue in AUTO and 32 releases the gripper: accepted, not modelled)."),
    # EKF failsafe.
    _i("FS_EKF_ACTION", 1, 0, 3, "EKF failsafe: 1 Land, 2 AltHold, 3 Land even in manual modes."),
    _f("FS_EKF_THRESH", 0.8, 0.0, 1.0, "EKF test ratio above which a variance counts as bad "
       "(0 disables the EKF failsafe)."),
    # Battery failsafe.
    _f("BATT_LOW_VOLT", 10.5, 0.0, 120.0, "Battery low voltage, V (0 disables)."),
    _f("BATT_LOW_TIMER", 10.0, 0.0, 120.0, "Seconds continuously below BATT_LOW_VOLT before "
       "the low battery failsafe."),
    _i("BATT_FS_LOW_ACT", 0, 0, 5, "Low battery action: 0 warn, 1 Land, 2 RTL, 3 SmartRTL or "
       "RTL, 4 SmartRTL or Land, 5 Terminate (disarm)."),
    _f("BATT_CAPACITY", 5000.0, 0.0, 1e6, "Battery capacity, mAh (0: remaining % unknown)."),
    # Navigation speeds and altitudes.
    _f("RTL_ALT", 1500.0, 200.0, 300000.0, "RTL return altitude above home, cm (0: current)."),
    _f("RTL_LOIT_TIME", 5000.0, 0.0, 60000.0, "Loiter time above home before landing, ms."),
    _f("RTL_SPEED", 0.0, 0.0, 2000.0, "RTL horizontal speed, cm/s (0: WPNAV_SPEED)."),
    _f("WPNAV_SPEED", 500.0, 20.0, 2000.0, "Horizontal speed in GUIDED and RTL, cm/s."),
    _f("WPNAV_ACCEL", 250.0, 50.0, 500.0, "Horizontal acceleration in GUIDED and RTL, cm/s^2."),
    _f("WPNAV_SPEED_UP", 250.0, 10.0, 1000.0, "Climb speed in GUIDED and RTL, cm/s."),
    _f("WPNAV_SPEED_DN", 150.0, 10.0, 500.0, "Descent speed in GUIDED and RTL, cm/s."),
    _f("LAND_SPEED", 50.0, 30.0, 200.0, "Final descent speed below LAND_ALT_LOW, cm/s."),
    _f("LAND_ALT_LOW", 1000.0, 100.0, 10000.0, "Altitude where the descent slows to LAND_SPEED, cm."),
    _f("PILOT_SPEED_UP", 250.0, 50.0, 500.0, "Max pilot climb rate, cm/s."),
    _f("PILOT_SPEED_DN", 150.0, 50.0, 500.0, "Max pilot descent rate, cm/s."),
    _f("PILOT_Y_RATE", 202.5, 1.0, 360.0, "Max pilot yaw rate, deg/s."),
    _f("LOIT_SPEED", 1250.0, 20.0, 3500.0, "Max horizontal speed in LOITER, cm/s."),
    _f("ANGLE_MAX", 3000.0, 1000.0, 8000.0, "Max lean angle, centidegrees."),
    _i("THR_DZ", 100, 0, 300, "Throttle stick deadband around mid-stick in ALT_HOLD/LOITER, PWM."),
    _f("COMPASS_DEC", 0.20944, -3.142, 3.142, "Magnetic declination, rad (12 deg at home)."),
    _i("COMPASS_USE", 1, 0, 1, "Use the compass for yaw."),
    # Motors.
    _f("MOT_THST_HOVER", 0.35, 0.125, 0.6875, "Hover throttle (learned in flight), 0..1."),
    _i("MOT_HOVER_LEARN", 2, 0, 2, "Hover throttle learning: 0 off, 1 learn, 2 learn and keep."),
    _f("MOT_SPIN_ARM", 0.10, 0.0, 0.2, "Motor output when armed and idle on the ground, 0..1."),
    _f("MOT_SPIN_MIN", 0.15, 0.0, 0.3, "Lowest motor output in flight, 0..1."),
    _f("MOT_SPIN_MAX", 0.95, 0.9, 1.0, "Highest motor output, 0..1."),
    # Rate controllers (output in mixer units per rad/s).
    _f("ATC_RAT_RLL_P", 0.09, 0.0, 0.5, "Roll rate P."),
    _f("ATC_RAT_RLL_I", 0.09, 0.0, 2.0, "Roll rate I."),
    _f("ATC_RAT_RLL_D", 0.0025, 0.0, 0.05, "Roll rate D."),
    _f("ATC_RAT_RLL_IMAX", 0.3, 0.0, 1.0, "Roll rate integrator limit."),
    _f("ATC_RAT_PIT_P", 0.09, 0.0, 0.5, "Pitch rate P."),
    _f("ATC_RAT_PIT_I", 0.09, 0.0, 2.0, "Pitch rate I."),
    _f("ATC_RAT_PIT_D", 0.0025, 0.0, 0.05, "Pitch rate D."),
    _f("ATC_RAT_PIT_IMAX", 0.3, 0.0, 1.0, "Pitch rate integrator limit."),
    _f("ATC_RAT_YAW_P", 0.2, 0.0, 2.5, "Yaw rate P."),
    _f("ATC_RAT_YAW_I", 0.02, 0.0, 1.0, "Yaw rate I."),
    _f("ATC_RAT_YAW_D", 0.0, 0.0, 0.02, "Yaw rate D."),
    _f("ATC_RAT_YAW_IMAX", 0.3, 0.0, 1.0, "Yaw rate integrator limit."),
    _f("ATC_RAT_FLTD", 40.0, 1.0, 200.0, "Rate D-term low-pass cutoff, Hz."),
    # Attitude controllers.
    _f("ATC_ANG_RLL_P", 6.0, 3.0, 12.0, "Roll angle P, (rad/s)/rad."),
    _f("ATC_ANG_PIT_P", 6.0, 3.0, 12.0, "Pitch angle P, (rad/s)/rad."),
    _f("ATC_ANG_YAW_P", 4.5, 3.0, 12.0, "Yaw angle P, (rad/s)/rad."),
    _f("ATC_RATE_RP_MAX", 180.0, 0.0, 1080.0, "Max commanded roll/pitch rate, deg/s."),
    _f("ATC_RATE_Y_MAX", 90.0, 0.0, 1080.0, "Max commanded yaw rate, deg/s."),
    # Position controller.
    _f("PSC_POSXY_P", 1.0, 0.5, 2.0, "Horizontal position P, (m/s)/m."),
    _f("PSC_VELXY_P", 2.0, 0.1, 6.0, "Horizontal velocity P, (m/s^2)/(m/s)."),
    _f("PSC_VELXY_I", 1.0, 0.02, 1.0, "Horizontal velocity I."),
    _f("PSC_VELXY_D", 0.0, 0.0, 1.0, "Horizontal velocity D."),
    _f("PSC_VELXY_IMAX", 1000.0, 0.0, 4500.0, "Horizontal velocity I limit, cm/s^2."),
    _f("PSC_POSZ_P", 1.0, 1.0, 3.0, "Vertical position P, (m/s)/m."),
    _f("PSC_VELZ_P", 5.0, 1.0, 8.0, "Vertical velocity P, (m/s^2)/(m/s)."),
    _f("PSC_ACCZ_P", 0.5, 0.2, 1.5, "Vertical acceleration P, throttle per 1000 cm/s^2."),
    _f("PSC_ACCZ_I", 1.0, 0.0, 3.0, "Vertical acceleration I, throttle per 1000 cm/s^2 s."),
    _f("PSC_ACCZ_IMAX", 800.0, 0.0, 1000.0, "Vertical acceleration I limit, 1/1000 throttle."),
    _f("PSC_ACCZ_FILT", 20.0, 1.0, 100.0, "Vertical acceleration error filter, Hz."),
)

DEFAULTS: dict[str, float] = {p.name: p.default for p in PARAM_DEFS}
"""Name -> default, for stubs and tests."""


def read_param(params, name: str) -> float:
    """``params.get(name)`` as a finite float; the default if the store fails or lies.

    The flight software must keep flying whatever the parameter store returns.
    """
    try:
        v = float(params.get(name))
    except Exception:  # noqa: BLE001 - any failure of the store means "use the default"
        return DEFAULTS.get(name, 0.0)
    return v if math.isfinite(v) else DEFAULTS.get(name, 0.0)
