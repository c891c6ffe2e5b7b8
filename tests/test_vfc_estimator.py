"""The virtual flight controller's height estimate without GPS: the baro alone must hold it.

After GPS is lost (EKF failsafe, LAND) the barometer is the only height reference. The
third-order height filter must learn a vertical accelerometer bias from it and keep the
climb-rate estimate honest; if it does not, LAND commands a descent the vehicle reads
as a descent while it is really climbing away.
"""

from __future__ import annotations

import math

from vfc_sim import VfcSim

from hil.vfc.control import euler_to_quat
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


def _body(q: tuple[float, float, float, float], v: tuple[float, float, float]) -> tuple[float, ...]:
    """An earth-frame (NED) vector in body axes: R(q)^T v."""
    w, x, y, z = q
    r = ((1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)),
         (2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)),
         (2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)))
    return tuple(sum(r[i][j] * v[i] for i in range(3)) for j in range(3))


def test_a_heading_error_does_not_tilt_the_attitude_estimate_while_accelerating() -> None:
    # A bent compass has the heading 60 degrees off while the vehicle, truly heading north,
    # leans 10 degrees forward and accelerates north. GPS sees the acceleration due north,
    # the IMU (turned by the wrong heading) sees it 60 degrees off: a heading error, not
    # a tilt error. Read as tilt, it leaned the estimate sideways, the controller levelled
    # the wrong attitude and, past 90 degrees of heading error, the vehicle flipped.
    heading_error = math.radians(60.0)
    lean = math.radians(10.0)
    earth_field = (0.25, 0.0, 0.5)  # gauss, NED, declination 0
    est = Estimator()
    lat0, lon0 = -35.0, 149.0
    t = 0.0
    pn = vn = 0.0
    pitch = 0.0
    n = 0
    while t < 14.0:
        # 0-4 s level and still; 4-5 s pitch down to the lean; then hold it and accelerate.
        q_rate = -lean if 4.0 <= t < 5.0 else 0.0
        pitch += q_rate * DT
        accel_n = GRAVITY * math.tan(-pitch)
        truth = euler_to_quat(0.0, pitch, 0.0)
        ax, ay, az = _body(truth, (accel_n, 0.0, -GRAVITY))
        est.predict(DT, ax, ay, az, 0.0, q_rate, 0.0)
        t += DT
        pn += (vn + 0.5 * accel_n * DT) * DT
        vn += accel_n * DT
        n += 1
        if n % 4 == 0:
            seen = euler_to_quat(0.0, pitch, heading_error)  # what the bent compass implies
            est.correct_attitude(4 * DT, ax, ay, az, _body(seen, earth_field))
        if n % 80 == 0:  # 5 Hz GPS, exact
            lat = lat0 + math.degrees(pn / 6378137.0)
            est.on_gps(t, lat, lon0, 100.0, vn, 0.0, 0.0, 0.5)
    roll, est_pitch, yaw = est.euler()
    assert abs(yaw) > math.radians(30.0), "the test needs the heading to be wrong"
    # Before the heading was taken out of the GPS tilt reference this read -7.5 degrees; a
    # residual remains (the tilt's own sideways leak skews the heading seen), under 3.
    assert abs(roll) < math.radians(3.0), f"roll estimate {math.degrees(roll):+.1f} deg, truly level"
    assert abs(est_pitch - pitch) < math.radians(2.0), (
        f"pitch estimate {math.degrees(est_pitch):+.1f} deg, truly {math.degrees(pitch):+.1f} deg"
    )
    # GPS saw the heading far off, so the compass test fails the bent compass.
    assert abs(est.gps_yaw_error) > math.radians(30.0)
    assert est.mag_ratio > 1.0


def test_a_bent_compass_is_gated_and_loiter_holds_without_an_ekf_failsafe() -> None:
    # A 0.3 gauss field from the airframe (body right) appears while loitering. As in
    # ArduCopter's EKF3, every sample now fails the compass innovation gate (3 sigma of
    # 0.05 gauss): none is fused, the heading stays where the gyros hold it, and the
    # compass test ratio reports the failure (ArduCopter SITL showed 1.3-2.0 here) while
    # velocity and position stay consistent, so the EKF check (two of three) stays quiet.
    s = VfcSim(seed=1)
    s.boot()
    s.takeoff(10.0)
    ok, why = s.copter.set_mode(LOITER)
    assert ok, why
    s.run(2.0)
    n0, e0 = s.vehicle.pos[0], s.vehicle.pos[1]
    yaw0 = s.copter.est.euler()[2]
    assert s.copter.est.mag_ratio < 0.5, "the compass must pass its gate before the field"
    s.mag.interference = (0.0, 0.3, 0.0)
    worst = 0.0
    for _ in range(40):
        s.run(1.0)
        worst = max(worst, s.horizontal_distance(n0, e0))
        assert s.copter.mode == LOITER, f"left LOITER at {s.t:.1f} s (EKF failsafe?)"
        assert s.copter.armed
    est = s.copter.est
    assert est.mag_rejected, "the bent compass was still being fused"
    assert est.mag_ratio > 1.0, f"compass test ratio {est.mag_ratio:.2f} does not show the failure"
    assert est.vel_ratio < 0.8 and est.pos_ratio < 0.8
    assert abs(est.euler()[2] - yaw0) < math.radians(5.0), "the heading followed the bent compass"
    assert worst < 2.0, f"wandered {worst:.1f} m from the loiter spot"
