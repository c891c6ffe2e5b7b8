"""Timing limits in scenario files: parsed strictly, measured with uncertainty, judged."""

from __future__ import annotations

import pytest

from hil.errors import ScenarioError
from hil.scenario.limits import failsafe_latency, judge
from hil.scenario.load import parse_scenario
from hil.scenario.runner import ScenarioResult
from hil.scenario.timeline import Timeline
from hil.sim.simlink import AnswerLog


def _scenario(limits: dict):
    return parse_scenario({
        "scenario": {"name": "s", "duration": 10.0},
        "setup": {"mode": "LOITER", "altitude": 5.0},
        "injection": [{"kind": "rc_loss", "id": "rc", "start": 2.0}],
        "expect": [{"kind": "disarmed", "after": "rc.start", "within": 5.0}],
        "limits": limits,
    })


def test_limits_are_read_with_their_units():
    sc = _scenario({"loop_rate_hz": {"min": 390.0}, "failsafe_latency_s": {"max": 1.5}})
    assert {(lim.name, lim.minimum, lim.maximum, lim.unit) for lim in sc.limits} == {
        ("loop_rate_hz", 390.0, None, "Hz"), ("failsafe_latency_s", None, 1.5, "s"),
    }


@pytest.mark.parametrize(
    "limits, message",
    [
        ({"loop_speed": {"max": 1.0}}, "loop_speed"),
        ({"loop_rate_hz": {}}, "give min, max or both"),
        ({"loop_rate_hz": {"min": 10.0, "max": 5.0}}, "must be <= max"),
        ({"loop_rate_hz": {"min": "fast"}}, "a number"),
        ({"loop_rate_hz": 400}, "loop_rate_hz"),
    ],
)
def test_bad_limits_are_refused_with_the_key(limits, message):
    with pytest.raises(ScenarioError, match=message):
        _scenario(limits)


class _Loop:
    def __init__(self, stamps, rate):
        log = AnswerLog()
        for s in stamps:
            log.add(s)
        self._log = log
        self.config = type("C", (), {"rate_hz": rate})()

    def answer_stamps(self):
        return self._log.stamps()


def _result(sc, events):
    tl = Timeline()
    for t in (0.0, 0.1, 0.2, 0.3, 2.0, 2.1, 3.0, 3.1):
        tl.add_state(t, True, "LOITER", 5.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    for t, kind, text in events:
        tl.add_event(t, kind, text)
    result = ScenarioResult(sc, "b")
    result.timeline = tl
    return result


def test_limits_become_verdicts_with_measurements_recorded_either_way():
    sc = _scenario({"loop_rate_hz": {"min": 390.0}, "failsafe_latency_s": {"max": 1.0}})
    result = _result(sc, [(0.0, "mode", "LOITER"), (3.2, "mode", "RTL")])
    loop = _Loop(list(range(0, 2_500_000, 2500)), 400.0)  # exactly 400 Hz
    measured = {m.name: m for m in judge(sc, result, loop)}
    assert measured["loop_rate_hz"].value == pytest.approx(400.0)
    assert measured["loop_jitter_p99_us"].value == pytest.approx(0.0, abs=1.0)
    assert measured["failsafe_latency_s"].value == pytest.approx(1.2)
    assert measured["failsafe_latency_s"].uncertainty > 0
    verdicts = {v.expectation.limit.name: v for v in result.verdicts}
    assert verdicts["loop_rate_hz"].passed
    assert not verdicts["failsafe_latency_s"].passed
    assert "failsafe_latency_s" in verdicts["failsafe_latency_s"].message


def test_a_limit_that_cannot_be_measured_fails_and_says_so():
    sc = _scenario({"failsafe_latency_s": {"max": 1.0}})
    result = _result(sc, [(0.0, "mode", "LOITER")])  # nothing happened after the injection
    assert failsafe_latency(sc, result) is None
    judge(sc, result, None)
    assert not result.verdicts[-1].passed
    assert "could not measure" in result.verdicts[-1].message


def test_loop_stamps_come_from_the_loops_public_timing():
    from types import SimpleNamespace

    import numpy as np

    from hil.scenario.limits import loop_stamps_us

    config = SimpleNamespace(rate_hz=400.0)
    # A MAVLink closed loop: the board's own stamps, in us.
    log = AnswerLog()
    for s in (0, 2500, 5000, 7500):
        log.add(s)
    mavlink = SimpleNamespace(config=config, answer_stamps=log.stamps)
    stamps, rate, resolution = loop_stamps_us(mavlink)
    assert list(stamps) == [0, 2500, 5000, 7500] and rate == 400.0 and resolution == 1.0
    # A real-time loop without them (Betaflight SITL): its motor packets' arrival, in ns.
    arrivals = np.array([1_000_000, 3_500_000, 6_000_000], dtype=np.int64)
    realtime = SimpleNamespace(config=config, answer_stamps=lambda: None, motor_times_ns=lambda: arrivals)
    stamps, rate, resolution = loop_stamps_us(realtime)
    assert list(stamps) == [1000.0, 3500.0, 6000.0] and resolution == 0.001
    short = SimpleNamespace(config=config, answer_stamps=lambda: None, motor_times_ns=lambda: arrivals[:2])
    assert loop_stamps_us(short) is None
