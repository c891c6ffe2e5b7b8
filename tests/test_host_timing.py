"""Host-clock latencies of a MAVLink run (hil.scenario.host_timing) and the message rate a
limit asks of the board: unit cases, then runs on the virtual board through the public API."""

from __future__ import annotations

import time

import numpy as np
import pytest

from hil.mavlink.dialect import mavlink
from hil.scenario.host_timing import HostTiming, heartbeat_rate_for
from hil.scenario.limits import failsafe_latency, judge
from hil.scenario.load import load_scenario
from hil.scenario.runner import ScenarioResult, run_scenario
from hil.scenario.timeline import RecorderBase, Timeline
from hil.sim.loop import SimConfig, mavlink_loop
from hil.sim.simlink import AnswerStamps
from hil.timeout import Deadline
from tests.test_scenario_limits import _scenario


@pytest.mark.parametrize(
    ("limits", "rate"),
    [
        ({}, None),
        ({"loop_rate_hz": {"min": 390.0}}, None),
        ({"failsafe_latency_s": {"max": 20.0}}, None),  # 1 Hz resolves 20 s to 5 %
        ({"failsafe_latency_s": {"max": 1.5}}, 7.0),  # 0.15 s spacing at most
        ({"failsafe_latency_s": {"max": 0.05}}, 50.0),  # capped
        ({"failsafe_latency_s": {"min": 0.5}}, None),  # a lower bound alone needs nothing
    ],
)
def test_heartbeat_rate_resolves_a_failsafe_limit_to_a_tenth(limits, rate):
    assert heartbeat_rate_for(_scenario(limits)) == rate


def test_a_change_is_known_to_the_gap_before_its_report():
    rec = RecorderBase()
    for t, mode in ((10.0, "LOITER"), (11.0, "LOITER"), (11.4, "RTL"), (12.4, "RTL")):
        rec.track(t, mode, True)
    assert rec.change_gaps == [(11.4, pytest.approx(0.4))]


def test_failsafe_latency_takes_the_reporting_gap_as_its_uncertainty():
    sc = _scenario({"failsafe_latency_s": {"max": 1.5}})
    tl = Timeline()
    for t in (0.0, 0.1, 0.2, 3.0):
        tl.add_state(t, True, "LOITER", 5.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    tl.add_event(0.0, "mode", "LOITER")
    tl.add_event(3.2, "mode", "RTL")
    result = ScenarioResult(sc, "b")
    result.timeline = tl
    result.change_gaps = [(3.2, 0.9)]
    m = failsafe_latency(sc, result)
    assert m.value == pytest.approx(1.2) and m.uncertainty == pytest.approx(0.9)
    result.change_gaps = []  # no report gap known: the state spacing, as before
    assert failsafe_latency(sc, result).uncertainty == pytest.approx(0.1)


class _Ap:
    def __init__(self, log):
        self.command_log = log


class _Loop:
    def __init__(self, sent, read, stamps):
        self._stamps = AnswerStamps(
            board_us=np.array(stamps, dtype=np.int64),
            sent_ns=np.array(sent, dtype=np.int64),
            read_ns=np.array(read, dtype=np.int64),
        )

    def answer_stamps(self):
        return self._stamps


def test_host_latencies_from_logged_commands_and_answered_samples():
    ap = _Ap([(400, 1_000_000, 1_800_000, 0), (176, 5_000_000, 8_000_000, 0)])
    sent = [k * 2_500_000 for k in range(200)]
    read = [s + 300_000 + (k % 10) * 10_000 for k, s in enumerate(sent)]
    host = HostTiming(ap, _Loop(sent, read, []))
    figures = {m.name: m for m in host.measurements()}
    assert figures["command_ack_latency_ms"].value == pytest.approx(3.0)  # the slowest
    assert figures["sensor_actuator_latency_us"].value == pytest.approx(390.0, abs=1.0)
    assert figures["sensor_actuator_latency_us"].uncertainty > 0
    # A limit on a host figure is judged like any other.
    sc = _scenario({"command_ack_latency_ms": {"max": 2.0}, "sensor_actuator_latency_us": {"max": 500}})
    result = ScenarioResult(sc, "b")
    result.timeline = Timeline()
    judge(sc, result, None, host.measurements())
    verdicts = {v.expectation.limit.name: v.passed for v in result.verdicts}
    assert verdicts == {"command_ack_latency_ms": False, "sensor_actuator_latency_us": True}


def test_a_lockstep_run_measures_host_latencies_and_asks_for_a_finer_heartbeat(board_session):
    scenario = load_scenario("scenarios/rc_loss_rtl.toml")
    assert heartbeat_rate_for(scenario) == 7.0
    result = run_scenario(scenario, board_session)
    assert result.passed, result.failure_text()
    assert any("HEARTBEAT requested at 7 Hz" in n for n in result.notes), result.notes
    m = result.measurements
    assert m["command_ack_latency_ms"] > 0 and m["sensor_actuator_latency_us"] > 0
    assert m["timesync"]["n_used"] >= 3  # the quickest of the exchanges at both ends
    # Mode changes were reported at 7 Hz or faster: the latency is known to 1/7 s.
    latency = next(x for x in result.timing if x.name == "failsafe_latency_s")
    assert 0 < latency.uncertainty <= 1 / 7 + 1e-6
    # The board was given its default HEARTBEAT rate back (1 Hz).
    ap = board_session.autopilot
    since = ap.mark()
    ap.command(mavlink.MAV_CMD_GET_MESSAGE_INTERVAL, mavlink.MAVLINK_MSG_ID_HEARTBEAT)
    reply = ap.wait_for(
        "MESSAGE_INTERVAL for HEARTBEAT",
        lambda msg: msg.get_type() == "MESSAGE_INTERVAL" and msg.message_id == mavlink.MAVLINK_MSG_ID_HEARTBEAT,
        within=5.0,
        since=since,
        vehicle_time=False,
    )
    assert reply.interval_us == 1_000_000


def test_a_real_time_board_clock_is_aligned_and_its_answers_placed_on_the_host_clock(board_session):
    ap = board_session.autopilot
    loop = mavlink_loop(ap, SimConfig(lockstep=False, seed=3))
    host = HostTiming(ap, loop)
    loop.start()
    try:
        deadline = Deadline(10.0)
        while len(loop.link.answer_log) < 200:
            assert loop.error is None, loop.error
            assert not deadline.expired, "no 200 answers from the virtual board in real time within 10 s"
            time.sleep(0.05)
        host.start()
        time.sleep(1.0)
        host.finish()
    finally:
        loop.stop()
    fit = host.alignment
    assert fit is not None, host.notes
    # Real time (a loaded host may miss a few periods), not the lockstep's many times faster.
    assert 0.8 < fit.rate < 1.05
    assert fit.uncertainty_us > 0
