"""Expectations over hand-built timelines: pass, fail (with messages), limits, excerpts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

from hil.scenario import Scenario, Timeline, Verdict, evaluate, parse_scenario

Fn = Callable[[float], float]
ANCHORS = {"start": 0.0, "rc.start": 10.0, "rc.stop": 30.0}


def scenario(*expects: dict[str, Any], duration: float = 60.0) -> Scenario:
    """A scenario with an rc_loss injection 'rc' from 10 s to 30 s and these expectations."""
    return parse_scenario(
        {
            "scenario": {"name": "t", "duration": duration},
            "setup": {"mode": "LOITER", "altitude": 10.0},
            "injection": [{"kind": "rc_loss", "id": "rc", "start": 10.0, "stop": 30.0}],
            "expect": list(expects),
        },
        "t.toml",
    )


def _const(x: float) -> Fn:
    return lambda t: x


TEN, ZERO = _const(10.0), _const(0.0)


def flight(
    *,
    end: float = 60.0,
    modes: Sequence[tuple[float, str]] = ((-5.0, "LOITER"),),
    armed: Sequence[tuple[float, bool]] = ((-5.0, True),),
    alt: Fn = TEN,
    north: Fn = ZERO,
    east: Fn = ZERO,
    events: Sequence[tuple[float, str, str]] = ((10.0, "injection_start", "rc"),
                                                (30.0, "injection_stop", "rc")),
    start: float = -5.0,
    mode_events: bool = True,
    skip: Callable[[float], bool] = lambda t: False,
) -> Timeline:
    """A 10 Hz timeline from `start` to `end`; modes and armed change at the given times
    (also recorded as events after the first, as the runner does)."""
    tl = Timeline(capacity=16)

    def value_at(steps: Sequence[tuple[float, Any]], t: float) -> Any:
        return [v for ts, v in steps if ts <= t + 1e-9][-1]

    for k in range(round((end - start) * 10) + 1):
        t = round(start + k * 0.1, 6)
        if skip(t):
            continue
        tl.add_state(t, value_at(armed, t), value_at(modes, t), alt(t), north(t), east(t),
                     0.0, 0.0, 0.0)
    if mode_events:
        for t, m in modes[1:]:
            tl.add_event(t, "mode", m)
        for t, a in armed[1:]:
            tl.add_event(t, "armed" if a else "disarmed", "")
    for t, kind, text in events:
        tl.add_event(t, kind, text)
    return tl


def judge(expect: dict[str, Any], tl: Timeline, anchors: dict[str, float] | None = None,
          duration: float = 60.0) -> Verdict:
    [verdict] = evaluate(scenario(expect, duration=duration), tl, ANCHORS if anchors is None
                         else anchors)
    return verdict


MODE_RTL = {"kind": "mode", "mode": "RTL", "after": "rc.start", "within": 1.5}


# --- mode -------------------------------------------------------------------------------------


def test_mode_reached_in_time_passes() -> None:
    v = judge(MODE_RTL, flight(modes=[(-5, "LOITER"), (11.2, "RTL")]))
    assert v.passed and v.t == pytest.approx(11.2) and v.excerpt == ""
    assert v.message == "mode RTL reached at t=11.20 s, 1.20 s after rc.start (t=10.00 s) (limit 1.50 s)"


def test_mode_reached_exactly_at_the_limit_passes() -> None:
    assert judge(MODE_RTL, flight(modes=[(-5, "LOITER"), (11.5, "RTL")])).passed


def test_mode_reached_late_fails_with_times_and_excerpt() -> None:
    tl = flight(modes=[(-5, "LOITER"), (12.31, "RTL")],
                events=[(10.0, "injection_start", "rc"), (12.31, "statustext", "Radio Failsafe")])
    v = judge(MODE_RTL, tl)
    assert not v.passed and v.t == pytest.approx(12.31)
    assert v.message == (
        "expected mode RTL within 1.50 s after rc.start (t=10.00 s); mode RTL reached at"
        " t=12.31 s, 2.31 s after rc.start (t=10.00 s), too late (limit 1.50 s)"
    )
    assert "10.00  injection_start rc" in v.excerpt
    assert "12.31  mode RTL" in v.excerpt
    assert "12.31  statustext Radio Failsafe" in v.excerpt


def test_mode_just_over_the_limit_fails() -> None:
    assert not judge(MODE_RTL, flight(modes=[(-5, "LOITER"), (11.51, "RTL")])).passed


def test_mode_never_reached_says_where_it_stayed() -> None:
    v = judge(MODE_RTL, flight())
    assert not v.passed and v.t is None
    assert v.message == (
        "expected mode RTL within 1.50 s after rc.start (t=10.00 s); the vehicle stayed in"
        " LOITER until the end (t=60.00 s)"
    )
    assert "injection_start rc" in v.excerpt and "LOITER" in v.excerpt


def test_mode_never_reached_lists_other_modes() -> None:
    v = judge(MODE_RTL, flight(modes=[(-5, "LOITER"), (11.0, "LAND")]))
    assert not v.passed
    assert "the vehicle went through LAND but never RTL until the end" in v.message


def test_mode_before_not_before_fails() -> None:
    v = judge({**MODE_RTL, "not_before": 0.5}, flight(modes=[(-5, "LOITER"), (10.2, "RTL")]))
    assert not v.passed
    assert v.message.startswith("expected mode RTL no sooner than 0.50 s after rc.start"
                                " (t=10.00 s); mode RTL reached at t=10.20 s, 0.20 s after")
    assert "too early" in v.message


def test_mode_exactly_at_not_before_passes() -> None:
    v = judge({**MODE_RTL, "not_before": 0.5}, flight(modes=[(-5, "LOITER"), (10.5, "RTL")]))
    assert v.passed


def test_mode_already_in_mode_at_the_anchor_passes() -> None:
    v = judge(MODE_RTL, flight(modes=[(-5, "RTL")]))
    assert v.passed and v.t == 10.0 and "already in RTL at rc.start" in v.message


def test_mode_from_states_when_no_mode_events() -> None:
    v = judge(MODE_RTL, flight(modes=[(-5, "LOITER"), (11.25, "RTL")], mode_events=False))
    assert v.passed and v.t == pytest.approx(11.3)  # first sample showing RTL


def test_mode_events_give_exact_times_between_samples() -> None:
    v = judge(MODE_RTL, flight(modes=[(-5, "LOITER"), (11.25, "RTL")]))
    assert v.t == pytest.approx(11.25)


def test_missing_anchor_fails_without_raising() -> None:
    v = judge(MODE_RTL, flight(), anchors={"start": 0.0})
    assert not v.passed and v.t is None
    assert "injection 'rc' never started (no rc.start time" in v.message
    assert v.message.startswith("expected mode RTL within 1.50 s after rc.start;")


# --- statustext ---------------------------------------------------------------------------------

TEXT = {"kind": "statustext", "contains": "radio failsafe", "after": "rc.start", "within": 2.0}


def _texts(*items: tuple[float, str]) -> Timeline:
    return flight(events=[(10.0, "injection_start", "rc")]
                  + [(t, "statustext", s) for t, s in items])


def test_statustext_found_case_insensitive() -> None:
    v = judge(TEXT, _texts((11.0, "PreArm: x"), (11.5, "Radio Failsafe - Returning")))
    assert v.passed and v.t == 11.5
    assert v.message == ('STATUSTEXT "Radio Failsafe - Returning" at t=11.50 s, 1.50 s after'
                         " rc.start (t=10.00 s) (limit 2.00 s)")


def test_statustext_exactly_at_the_limit_passes() -> None:
    assert judge(TEXT, _texts((12.0, "Radio Failsafe"))).passed


def test_statustext_late_fails() -> None:
    v = judge(TEXT, _texts((12.5, "Radio Failsafe")))
    assert not v.passed and v.t == 12.5
    assert v.message == (
        'expected a STATUSTEXT containing "radio failsafe" within 2.00 s after rc.start'
        ' (t=10.00 s); "Radio Failsafe" came at t=12.50 s, 2.50 s after, too late'
    )
    assert "12.50  statustext Radio Failsafe" in v.excerpt


def test_statustext_missing_lists_what_came_instead() -> None:
    v = judge(TEXT, _texts((9.0, "Radio Failsafe"), (11.0, "GCS Failsafe")))
    assert not v.passed
    assert "none arrived (one came before, at t=9.00 s)" in v.message
    assert 'other STATUSTEXTs in the window: "GCS Failsafe"' in v.message
    assert "11.00  statustext GCS Failsafe" in v.excerpt
    assert "10.00  injection_start rc" in v.excerpt


def test_statustext_missing_with_no_text_at_all() -> None:
    v = judge(TEXT, _texts())
    assert not v.passed and "no STATUSTEXT at all in the window" in v.message


# --- disarmed -----------------------------------------------------------------------------------

DISARMED = {"kind": "disarmed", "after": "rc.start", "within": 40.0}


def test_disarmed_in_time_passes() -> None:
    v = judge(DISARMED, flight(armed=[(-5, True), (45.0, False)]))
    assert v.passed and v.t == 45.0
    assert v.message == "disarmed at t=45.00 s, 35.00 s after rc.start (t=10.00 s) (limit 40.00 s)"


def test_disarmed_exactly_at_the_limit_passes() -> None:
    assert judge(DISARMED, flight(armed=[(-5, True), (50.0, False)])).passed


def test_disarmed_late_fails() -> None:
    v = judge(DISARMED, flight(armed=[(-5, True), (52.0, False)]))
    assert not v.passed and v.t == 52.0
    assert v.message == (
        "expected the vehicle to disarm within 40.00 s after rc.start (t=10.00 s); disarmed at"
        " t=52.00 s, 42.00 s after rc.start (t=10.00 s), too late"
    )
    assert "52.00  disarmed" in v.excerpt


def test_disarmed_never_says_the_state_at_the_end() -> None:
    v = judge(DISARMED, flight(modes=[(-5, "LOITER"), (11, "RTL")], alt=_const(4.0),
                               north=_const(6.0), east=_const(8.0)))
    assert not v.passed
    assert v.message.endswith("it was still armed at the end (t=60.00 s), in RTL at 4.0 m,"
                              " 10.0 m from home")


def test_disarmed_then_armed_again_fails() -> None:
    v = judge(DISARMED, flight(armed=[(-5, True), (40.0, False), (45.0, True)]))
    assert not v.passed and v.t == 45.0
    assert "disarmed at t=40.00 s, 30.00 s after rc.start (t=10.00 s) but armed again at" \
           " t=45.00 s" in v.message
    assert "45.00  armed" in v.excerpt


# --- landed_near_home ---------------------------------------------------------------------------

LANDED = {"kind": "landed_near_home", "radius": 5.0}


def _landing(north: float, east: float, disarm: float | None = 40.0) -> Timeline:
    armed = [(-5.0, True)] + ([(disarm, False)] if disarm is not None else [])
    return flight(
        armed=armed,
        alt=lambda t: 10.0 if t < 20 else max(0.0, 10.0 - (t - 20.0)),
        north=lambda t: 20.0 if t < 10 else north,
        east=lambda t: east,
    )


def test_landed_near_home_passes() -> None:
    v = judge(LANDED, _landing(1.0, 1.0))
    assert v.passed and v.t == 40.0
    assert v.message == ("disarmed at t=40.00 s 1.41 m from home (north 1.00, east 1.00)"
                         " (limit 5.00 m)")


def test_landed_exactly_at_the_radius_passes() -> None:
    assert judge(LANDED, _landing(3.0, 4.0)).passed


def test_landed_too_far_fails() -> None:
    v = judge(LANDED, _landing(6.0, 8.0))
    assert not v.passed
    assert v.message == ("expected to land and disarm within 5.00 m of home; disarmed at"
                         " t=40.00 s 10.00 m from home (north 6.00, east 8.00), too far")
    assert "40.00  disarmed" in v.excerpt


def test_landed_never_flew_fails() -> None:
    v = judge(LANDED, flight(alt=_const(0.0), armed=[(-5, True), (5.0, False)]))
    assert not v.passed and "the vehicle never flew (highest altitude 0.0 m" in v.message


def test_landed_never_disarmed_fails() -> None:
    v = judge(LANDED, _landing(1.0, 1.0, disarm=None))
    assert not v.passed
    assert "it was still armed at the end (t=60.00 s), in LOITER at 0.0 m, 1.4 m from home" \
        in v.message


def test_landed_ignores_a_disarm_before_flying() -> None:
    tl = flight(armed=[(-5, False), (-4, True), (40.0, False)],
                alt=lambda t: 0.0 if t < 0 else (10.0 if t < 30 else 0.0),
                north=lambda t: 0.0 if t < 35 else 9.0)
    v = judge(LANDED, tl)
    assert not v.passed and v.t == 40.0  # judged at the landing, not at t=-5


def test_a_disarm_in_the_air_is_not_a_landing() -> None:
    # A GPS Rescue that aborts (a sanity check) disarms wherever the craft is: it falls.
    v = judge(LANDED, _landing(1.0, 1.0, disarm=15.0))
    assert not v.passed
    assert v.message.endswith("but 10.0 m up: not landed")


# --- near_home ------------------------------------------------------------------------------------

NEAR = {"kind": "near_home", "radius": 5.0, "within": 20.0}


def _coming_home(speed: float) -> Timeline:
    return flight(north=lambda t: max(0.0, 40.0 - speed * max(0.0, t - 10.0)))


def test_near_home_passes_when_it_comes_back_in_time() -> None:
    v = judge(NEAR, _coming_home(4.0))
    assert v.passed and abs(v.t - 18.75) < 0.2
    assert "from 40.00 m" in v.message


def test_near_home_fails_when_it_comes_too_slowly_saying_how_near() -> None:
    v = judge(NEAR, _coming_home(1.0))
    assert not v.passed
    assert "the nearest it came was 30.00 m" in v.message


# --- altitude -----------------------------------------------------------------------------------

ALT = {"kind": "altitude", "min": 8.0, "max": 12.0, "after": "rc.start", "delay": 2.0, "for": 20.0}


def test_altitude_within_band_passes() -> None:
    v = judge(ALT, flight(alt=lambda t: 10.0 + np.sin(t)))
    assert v.passed
    assert v.message.startswith("altitude stayed between 8.00 and 12.00 m from t=12.00 s to"
                                " t=32.00 s (rc.start + 2.00 s, for 20.00 s)")


def test_altitude_exactly_at_the_bounds_passes() -> None:
    assert judge(ALT, flight(alt=lambda t: 8.0 if int(t) % 2 else 12.0)).passed


def test_altitude_outside_the_window_is_ignored() -> None:
    # 30 m before 12 s (anchor + delay) and after 32 s: not judged.
    assert judge(ALT, flight(alt=lambda t: 10.0 if 11.95 < t < 32.05 else 30.0)).passed


def test_altitude_below_fails_with_first_time_and_worst() -> None:
    def alt(t: float) -> float:
        if t == 20.5:
            return 6.5
        return 7.0 if 20.0 <= t <= 21.0 else 10.0

    v = judge(ALT, flight(alt=alt))
    assert not v.passed and v.t == pytest.approx(20.0)
    assert v.message == (
        "expected altitude between 8.00 and 12.00 m from t=12.00 s to t=32.00 s (rc.start +"
        " 2.00 s, for 20.00 s); at t=20.00 s it was 7.00 m, below the minimum; 11 of 201"
        " samples out of range, the worst 6.50 m at t=20.50 s"
    )
    assert "20.00" in v.excerpt and "7.0" in v.excerpt


def test_altitude_above_fails() -> None:
    v = judge(ALT, flight(alt=lambda t: 12.5 if t > 31.0 else 10.0))
    assert not v.passed and "it was 12.50 m, above the maximum" in v.message


def test_altitude_recording_ended_early_fails() -> None:
    v = judge(ALT, flight(end=25.0))
    assert not v.passed
    assert v.message.endswith("the recording ended at t=25.00 s, before the window closed")


def test_altitude_gap_in_samples_fails() -> None:
    v = judge(ALT, flight(skip=lambda t: 15.0 < t < 18.0))
    assert not v.passed
    assert "no state samples from t=15.00 s to t=18.00 s (gap 3.00 s)" in v.message


# --- hold_position -------------------------------------------------------------------------------

HOLD = {"kind": "hold_position", "radius": 5.0, "after": "rc.start", "delay": 1.0, "for": 10.0}


def test_hold_position_passes_relative_to_the_start_position() -> None:
    # far from home, but steady from 11 s on
    v = judge(HOLD, flight(north=lambda t: 100.0 if t >= 11.0 else 0.0, east=_const(50.0)))
    assert v.passed
    assert "of (north 100.00, east 50.00)" in v.message


def test_hold_position_exactly_at_the_radius_passes() -> None:
    tl = flight(north=lambda t: 3.0 if t > 15 else 0.0, east=lambda t: 4.0 if t > 15 else 0.0)
    assert judge(HOLD, tl).passed


def test_hold_position_drift_fails() -> None:
    tl = flight(north=lambda t: max(0.0, t - 11.0))  # drifts north at 1 m/s from 11 s
    v = judge(HOLD, tl)
    assert not v.passed and v.t == pytest.approx(16.1)
    assert v.message == (
        "expected to stay within 5.00 m of its position at t=11.00 s from t=11.00 s to"
        " t=21.00 s (rc.start + 1.00 s, for 10.00 s) (north 0.00, east 0.00); at t=16.10 s it"
        " was 5.10 m away; the farthest 10.00 m at t=21.00 s"
    )
    assert "16.10" in v.excerpt


# --- never_mode ------------------------------------------------------------------------------------

NEVER = {"kind": "never_mode", "mode": "LAND", "after": "rc.start"}


def test_never_mode_passes() -> None:
    v = judge(NEVER, flight(modes=[(-5, "LOITER"), (11, "RTL")]))
    assert v.passed
    assert v.message == "never in LAND from t=10.00 s to t=60.00 s (modes seen: LOITER, RTL)"


def test_never_mode_entered_fails() -> None:
    v = judge(NEVER, flight(modes=[(-5, "LOITER"), (11, "RTL"), (25.5, "LAND")]))
    assert not v.passed and v.t == 25.5
    assert v.message == (
        "expected the vehicle never to enter LAND from rc.start (t=10.00 s) to the end;"
        " it entered LAND at t=25.50 s, 15.50 s after rc.start"
    )
    assert "25.50  mode LAND" in v.excerpt


def test_never_mode_already_in_mode_fails() -> None:
    v = judge(NEVER, flight(modes=[(-5, "LAND")]))
    assert not v.passed and "it was already in LAND at rc.start" in v.message


def test_never_mode_at_the_window_end_fails() -> None:
    v = judge({**NEVER, "for": 10.0}, flight(modes=[(-5, "LOITER"), (20.0, "LAND")]))
    assert not v.passed


def test_never_mode_after_the_window_passes() -> None:
    assert judge({**NEVER, "for": 10.0}, flight(modes=[(-5, "LOITER"), (20.1, "LAND")])).passed


def test_never_mode_before_the_anchor_is_ignored() -> None:
    assert judge(NEVER, flight(modes=[(-5, "LAND"), (5, "LOITER")])).passed


# --- armed_throughout ------------------------------------------------------------------------------

ARMED = {"kind": "armed_throughout", "after": "start", "for": 30.0}


def test_armed_throughout_passes() -> None:
    v = judge(ARMED, flight(armed=[(-5, True), (30.1, False)]))
    assert v.passed and v.message == "armed from t=0.00 s to t=30.00 s"


def test_armed_throughout_disarm_at_the_window_end_fails() -> None:
    assert not judge(ARMED, flight(armed=[(-5, True), (30.0, False)])).passed


def test_armed_throughout_disarm_in_the_air_fails() -> None:
    v = judge(ARMED, flight(armed=[(-5, True), (12.0, False)], modes=[(-5, "LOITER"), (11, "RTL")],
                            alt=_const(6.0)))
    assert not v.passed and v.t == 12.0
    assert v.message == (
        "expected the vehicle to stay armed from start (t=0.00 s) to t=30.00 s; it disarmed at"
        " t=12.00 s, in RTL at 6.0 m, 0.0 m from home"
    )
    assert "12.00  disarmed" in v.excerpt and "11.00  mode RTL" in v.excerpt


def test_armed_throughout_not_armed_at_start_fails() -> None:
    v = judge(ARMED, flight(armed=[(-5, False)]))
    assert not v.passed and "it was not armed at start" in v.message


def test_armed_throughout_to_the_end() -> None:
    assert judge({"kind": "armed_throughout"}, flight()).passed
    assert not judge({"kind": "armed_throughout"}, flight(armed=[(-5, True), (59, False)])).passed


# --- evaluate ------------------------------------------------------------------------------------


def test_evaluate_returns_one_verdict_per_expectation_in_order() -> None:
    sc = scenario(MODE_RTL, NEVER, ARMED)
    verdicts = evaluate(sc, flight(modes=[(-5, "LOITER"), (11, "RTL")]), ANCHORS)
    assert [v.expectation for v in verdicts] == list(sc.expectations)
    assert [v.passed for v in verdicts] == [True, True, True]


def test_start_anchor_defaults_to_zero() -> None:
    verdicts = evaluate(scenario(ARMED), flight(), {})
    assert verdicts[0].passed


# --- timeline -------------------------------------------------------------------------------------


def test_timeline_states_are_numpy_columns_and_grow() -> None:
    tl = Timeline(capacity=16)
    for k in range(100):
        tl.add_state(k * 0.1, k < 50, "LOITER" if k < 70 else "RTL", 1.0 * k, 3.0, 4.0,
                     2.0, 0.1, -0.1)
    s = tl.states()
    assert len(tl) == 100
    assert set(s) == {"t", "armed", "mode", "alt", "north", "east", "groundspeed", "roll",
                      "pitch", "dist"}
    assert all(isinstance(col, np.ndarray) and len(col) == 100 for col in s.values())
    assert s["armed"].dtype == bool and s["armed"].sum() == 50
    assert s["mode"][69] == "LOITER" and s["mode"][70] == "RTL"
    assert s["alt"][99] == 99.0 and s["dist"][0] == 5.0


def test_timeline_refuses_time_going_backwards() -> None:
    tl = Timeline()
    tl.add_state(1.0, True, "LOITER", 0, 0, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="backwards"):
        tl.add_state(0.5, True, "LOITER", 0, 0, 0, 0, 0, 0)


def test_timeline_events_are_sorted_and_kinds_checked() -> None:
    tl = Timeline()
    tl.add_event(2.0, "mode", "RTL")
    tl.add_event(1.0, "note", "a")
    tl.add_event(2.0, "statustext", "b")
    assert [(e.t, e.kind) for e in tl.events] == [(1.0, "note"), (2.0, "mode"), (2.0, "statustext")]
    with pytest.raises(ValueError, match="is not one of"):
        tl.add_event(3.0, "landed", "")


def test_timeline_excerpt_shows_events_and_state_rows() -> None:
    tl = flight(modes=[(-5, "LOITER"), (13.02, "RTL")], north=_const(20.0),
                events=[(12.0, "injection_start", "rc_loss"), (13.02, "statustext",
                                                               "Radio Failsafe"),
                        (40.0, "note", "far away")])
    text = tl.excerpt(12.0, before=2.0, after=3.0)
    lines = text.splitlines()
    assert "   t(s)  event" in lines
    assert "  12.00  injection_start rc_loss" in lines
    assert "  13.02  mode RTL" in lines and "  13.02  statustext Radio Failsafe" in lines
    assert "far away" not in text
    rows = [line for line in lines if "LOITER" in line or "RTL  " in line]
    assert 3 <= len(rows) <= 12
    assert any(line.startswith("  12.00  LOITER      yes      10.0     20.0") for line in lines)


def test_timeline_excerpt_of_an_empty_window() -> None:
    text = Timeline().excerpt(0.0)
    assert "(no events)" in text and "(no state samples)" in text
