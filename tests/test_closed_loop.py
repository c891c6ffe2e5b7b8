"""The closed loop against the virtual board: lockstep flight, injections, real time."""

from __future__ import annotations

import time

import pytest

from hil.errors import CommandRefused
from hil.sim.loop import SimConfig


def _alt(msg):
    return msg.relative_alt * 1e-3 if msg.get_type() == "GLOBAL_POSITION_INT" else None


def _until_accepted(autopilot, action, within=60.0):
    end = autopilot.vehicle_time + within
    while True:
        try:
            return action()
        except CommandRefused:
            if autopilot.vehicle_time > end:
                raise
            target = autopilot.vehicle_time + 1.0
            autopilot.wait_for("a second", lambda m, target=target: autopilot.vehicle_time >= target, within=2.0)


def test_lockstep_takeoff_reaches_and_holds_the_commanded_altitude(autopilot, sim):
    _until_accepted(autopilot, lambda: autopilot.set_mode("GUIDED"))
    _until_accepted(autopilot, autopilot.arm)
    autopilot.takeoff(5.0)
    autopilot.wait_and_maintain("altitude 4.5..5.5 m", _alt, lambda a: 4.5 <= a <= 5.5, hold=5.0, within=20.0)
    # The vehicle really is there (simulation truth), not just reported there.
    assert abs(-sim.vehicle.pos[2] - 5.0) < 0.7
    autopilot.set_mode("LAND")
    autopilot.wait_armed(False, within=40.0)
    assert sim.vehicle.on_ground and not sim.vehicle.crashed
    print(f"lockstep speed {sim.speed:.1f}x at {sim.config.rate_hz:.0f} Hz")


def test_injection_starts_at_its_exact_simulation_time(autopilot, sim):
    t0 = sim.time  # the sim fixture hands the loop over once the vehicle is ready to fly
    sim.schedule("rc_loss", start=t0 + 0.5, stop=t0 + 0.8, ident="rc")
    target = t0 + 1.0
    autopilot.wait_for("t0 + 1 s", lambda m: sim.time >= target, within=5.0)
    starts = [(t, text) for t, kind, text in sim.events if kind == "injection_start"]
    stops = [(t, text) for t, kind, text in sim.events if kind == "injection_stop"]
    assert starts == [(pytest.approx(t0 + 0.5, abs=1e-9), "rc")]
    assert stops == [(pytest.approx(t0 + 0.8, abs=1e-9), "rc")]
    assert sim.plant.rc_enabled


def test_same_seed_gives_the_same_sensor_stream(board_session):
    a = board_session.make_sim(SimConfig(seed=7))
    stream_a = [a.plant.imu.sample(a.plant.vehicle) for _ in range(5)]
    b = board_session.make_sim(SimConfig(seed=7))
    stream_b = [b.plant.imu.sample(b.plant.vehicle) for _ in range(5)]
    assert stream_a == stream_b


def test_real_time_mode_paces_itself_by_the_wall_clock(board_session):
    loop = board_session.make_sim()
    loop.link.lockstep = False
    rate = loop.config.rate_hz
    start = time.monotonic()
    loop.start()
    time.sleep(1.0)
    loop.stop()
    wall = time.monotonic() - start
    assert loop.error is None
    # Paced, not free-running: a lockstep loop would do thousands of steps in a second.
    assert 50 <= loop.steps <= rate * wall * 1.2
    assert board_session.autopilot.vehicle_time > 0.2


def test_answer_log_pairs_only_answers_whose_sample_time_is_known_and_stops_at_its_limit():
    from hil.sim.simlink import AnswerLog

    log = AnswerLog(limit=3)
    log.add(100, sent_ns=10, read_ns=15)
    log.add(200)  # its sample's send time unknown: a board stamp, no pair
    log.add(300, sent_ns=30, read_ns=38)
    log.add(400, sent_ns=40, read_ns=44)  # over the limit: dropped
    stamps = log.stamps()
    assert stamps.board_us.tolist() == [100, 200, 300]
    assert stamps.sent_ns.tolist() == [10, 30] and stamps.read_ns.tolist() == [15, 38]
    assert log.read_times_ns().tolist() == [15, 38]
    # A copy: what a reader holds does not move when the log grows.
    log.limit = 10
    log.add(500, sent_ns=50, read_ns=51)
    assert stamps.board_us.tolist() == [100, 200, 300] and len(log) == 4
