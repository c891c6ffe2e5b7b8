"""The virtual flight controller's height estimate without GPS: the baro alone must hold it.

After GPS is lost (EKF failsafe, LAND) the barometer is the only height reference. The
third-order height filter must learn a vertical accelerometer bias from it and keep the
climb-rate estimate honest; if it does not, LAND commands a descent the vehicle reads
as a descent while it is really climbing away.
"""

from __future__ import annotations

from vfc_sim import VfcSim

from hil.vfc.estimator import GRAVITY, Estimator
from hil.vfc.modes import LAND, LOITER

RATE_HZ = 400
DT = 1.0 / RATE_HZ
GROUND_HPA = 1013.25


def _hold_still(est: Estimator, seconds: float, accel_bias_down: float) -> None:
    """Level and motionless at the baro reference, IMU reading ``accel_bias_down`` too much down."""
    az = -GRAVITY + accel_bias_down
    for i in range(int(seconds * RATE_HZ)):
        est.predict(DT, 0.0, 0.0, az, 0.0, 0.0, 0.0)
        est.on_baro(i * DT, GROUND_HPA, DT)


def test_baro_removes_a_vertical_accel_bias_from_climb_rate_and_height() -> None:
    est = Estimator()
    _hold_still(est, 60.0, accel_bias_down=0.3)
    assert abs(est.vd) < 0.05, f"climb-rate estimate {est.vd:+.2f} m/s while standing still"
    assert abs(est.pd) < 0.2, f"height estimate {-est.pd:+.2f} m while on the reference"
    assert abs(est.acc_d) < 0.05, f"down acceleration {est.acc_d:+.2f} m/s^2 still biased"


def test_gps_loss_land_descends_and_disarms_on_a_seed_that_used_to_climb_away() -> None:
    # Seed 2 climbed past 60 m when the height filter's bias state had the wrong sign.
    s = VfcSim(seed=2)
    s.boot()
    s.takeoff(10.0)
    ok, why = s.copter.set_mode(LOITER)
    assert ok, why
    s.run(0.5)
    s.gps.available = False
    assert s.run(8.0, lambda s: s.copter.mode == LAND), "no EKF failsafe LAND"
    assert s.run(40.0, lambda s: not s.copter.armed), (
        f"still armed in LAND at {s.altitude():.1f} m (estimate {-s.copter.pos_d():.1f} m, "
        f"climb-rate estimate {-s.copter.est.vd:+.2f} m/s)"
    )
    assert s.altitude() < 0.3
