"""Timing limits of a scenario, measured after the run and judged as verdicts.

- ``loop_rate_hz``, ``loop_jitter_p99_us``, ``loop_overruns``: from the board's own
  per-loop stamps. On a MAVLink board that is the time_usec of every
  HIL_ACTUATOR_CONTROLS (its sample time in plain lockstep, its loop clock when it
  has a loop-time model); on Betaflight SITL the kernel arrival stamps of its motor
  packets, one per control loop that answered a state packet.
- ``failsafe_latency_s``: from the first injection's start to the first change of mode
  or arming after it, in vehicle time; its uncertainty is the gap between the report
  that showed the change and the report before it (HEARTBEAT on MAVLink, the status poll
  on MSP): the change happened somewhere in that gap.
- ``command_ack_latency_ms``, ``sensor_actuator_latency_us``: on the host clock, MAVLink
  runs only (`hil.scenario.host_timing`).

Each figure is a `hil.timing.Measurement` with its uncertainty, recorded whether it
passes or not.
"""

from __future__ import annotations

import numpy as np

from hil.scenario.expect import Verdict
from hil.scenario.model import LIMIT_NAMES, ExpectLimit, Scenario
from hil.timing import Measurement, loop_stats


def loop_stamps_us(loop) -> tuple[np.ndarray, float, float] | None:
    """(per-loop stamps in us, nominal rate Hz, stamp resolution us) from a closed loop."""
    stamps = loop.answer_stamps()
    if stamps is not None:
        if stamps.board_us.size < 3:
            return None
        return stamps.board_us.astype(np.float64), float(loop.config.rate_hz), 1.0
    motor = loop.motor_times_ns()
    if len(motor) >= 3:
        return np.asarray(motor, dtype=np.float64) / 1000.0, float(loop.config.rate_hz), 0.001
    return None


def failsafe_latency(scenario: Scenario, result) -> Measurement | None:
    timeline = result.timeline
    if timeline is None or not scenario.injections:
        return None
    t0 = min(inj.start for inj in scenario.injections)
    events = timeline.events
    mode_before = None
    for e in events:
        if e.kind == "mode" and e.t <= t0:
            mode_before = e.text
    first = next(
        (
            e for e in events
            if e.t >= t0 and (e.kind == "disarmed" or (e.kind == "mode" and e.text != mode_before))
        ),
        None,
    )
    if first is None:
        return None
    gap = _gap_before(getattr(result, "change_gaps", ()), first.t)
    if gap is None:
        t = np.asarray(timeline.states().get("t", []), dtype=float)
        gap = float(np.median(np.diff(t))) if t.size > 2 else 0.1
    return Measurement("failsafe_latency_s", first.t - t0, "s", uncertainty=gap)


def _gap_before(gaps, t: float) -> float | None:
    """The reporting gap recorded for the change at timeline time ``t``."""
    for when, gap in gaps:
        if abs(when - t) < 1e-6:
            return float(gap)
    return None


def measure(scenario: Scenario, result, loop) -> list[Measurement]:
    """Every timing figure this run can give (limits or not)."""
    out: list[Measurement] = []
    stamps = loop_stamps_us(loop) if loop is not None else None
    if stamps is not None:
        values, nominal, resolution = stamps
        try:
            stats = loop_stats(values, nominal_hz=nominal, resolution_us=resolution)
        except ValueError:
            stats = None
        if stats is not None:
            out.append(Measurement("loop_rate_hz", stats.rate.value, "Hz", stats.rate.uncertainty))
            out.append(
                Measurement("loop_jitter_p99_us", stats.jitter_p99.value, "us", stats.jitter_p99.uncertainty)
            )
            out.append(Measurement("loop_overruns", stats.overruns.value, "", stats.overruns.uncertainty))
    latency = failsafe_latency(scenario, result)
    if latency is not None:
        out.append(latency)
    return out


def judge(scenario: Scenario, result, loop, extra: list[Measurement] | tuple = ()) -> list[Measurement]:
    """Measure, apply the scenario's limits, add a verdict per limit to ``result``.

    `extra` are figures the runner measured itself (host-clock latencies)."""
    measured = {m.name: m for m in measure(scenario, result, loop)}
    for m in extra:
        measured.setdefault(m.name, m)
    judged = []
    for limit in scenario.limits:
        exp = ExpectLimit(limit=limit)
        m = measured.get(limit.name)
        if m is None:
            result.verdicts.append(
                Verdict(exp, False, f"{limit.describe()}: this run could not measure {limit.name}", None)
            )
            continue
        m = m.within(limit.minimum, limit.maximum)
        measured[limit.name] = m
        result.verdicts.append(Verdict(exp, m.passed, str(m), None))
    judged = list(measured.values())
    result.limit_timing = judged
    for m in judged:
        result.measurements.setdefault(m.name, m.value)
    return judged


__all__ = ["LIMIT_NAMES", "judge", "measure"]
