"""Safety properties over hand-made timelines: a passing and a failing case for each."""

from __future__ import annotations

import pytest

from hil.scenario.load import parse_scenario
from hil.scenario.timeline import Timeline
from hil.search.properties import (
    Violation,
    check_all,
    check_bounds,
    check_no_disarm_in_air,
    check_rc_failsafe,
    failsafe_engagements,
    rc_loss_intervals,
)


def make_timeline(
    events: list[tuple[float, str, str]] = (),
    *,
    end: float = 15.0,
    alt: float = 5.0,
    path: list[tuple[float, float, float, float]] | None = None,
) -> Timeline:
    """States at 10 Hz from t=0 to `end` (hovering at `alt` over home, or following
    `path`: (t, alt, north, east) breakpoints, held until the next) plus `events`."""
    tl = Timeline()
    points = sorted(path or [(0.0, alt, 0.0, 0.0)])
    n = int(round(end * 10))
    for i in range(n + 1):
        t = i / 10
        current = [p for p in points if p[0] <= t + 1e-9]
        _, a, north, east = current[-1] if current else points[0]
        tl.add_state(t, True, "LOITER", a, north, east, 0.0, 0.0, 0.0)
    for t, kind, text in events:
        tl.add_event(t, kind, text)
    return tl


def loss(start: float, stop: float | None, ident: str = "rc1") -> list[tuple[float, str, str]]:
    out = [(start, "injection_start", ident)]
    if stop is not None:
        out.append((stop, "injection_stop", ident))
    return out


def failsafe(t: float, mode: str = "RTL") -> list[tuple[float, str, str]]:
    return [(t, "statustext", "Radio Failsafe"), (t, "statustext", f"Mode {mode}"), (t, "mode", mode)]


# --- (1) radio failsafe -------------------------------------------------------------------


def test_failsafe_on_time_passes() -> None:
    tl = make_timeline(loss(1.0, 3.0) + failsafe(2.0) + [(3.02, "statustext", "Radio Failsafe Cleared")])
    assert check_rc_failsafe(tl, timeout=1.0) == []


def test_no_failsafe_in_a_long_loss_is_a_violation() -> None:
    tl = make_timeline(loss(1.0, 3.0))
    [v] = check_rc_failsafe(tl, timeout=1.0)
    assert v.prop == "rc_failsafe"
    assert v.t == pytest.approx(2.5)
    assert "RC lost at t=1.00 s for 2.00 s" in v.message
    assert "never engaged" in v.message
    assert str(v).startswith("[rc_failsafe] t=2.50 s:")


def test_late_failsafe_is_a_violation_naming_the_delay() -> None:
    tl = make_timeline(loss(1.0, 8.0) + failsafe(4.5))
    [v] = check_rc_failsafe(tl, timeout=1.0, tolerance=0.5)
    assert "engaged only at t=4.50 s, 3.50 s after the loss" in v.message


def test_short_losses_without_failsafe_pass() -> None:
    tl = make_timeline(loss(1.0, 1.4, "rc1") + loss(3.0, 3.45, "rc2"))
    assert check_rc_failsafe(tl, timeout=1.0) == []


def test_failsafe_after_a_short_loss_is_a_violation() -> None:
    tl = make_timeline(loss(1.0, 1.4) + failsafe(1.3))
    [v] = check_rc_failsafe(tl, timeout=1.0)
    assert v.t == pytest.approx(1.3)
    assert "lost only 0.30 s" in v.message


def test_failsafe_with_the_rc_present_is_a_violation() -> None:
    tl = make_timeline(failsafe(4.0))
    [v] = check_rc_failsafe(tl, timeout=1.0)
    assert "while the RC was present" in v.message


def test_losses_between_the_limits_may_go_either_way() -> None:
    # 0.8 s: shorter than the timeout, longer than timeout - tolerance
    assert check_rc_failsafe(make_timeline(loss(1.0, 1.8)), timeout=1.0) == []
    assert check_rc_failsafe(make_timeline(loss(1.0, 1.8) + failsafe(1.75)), timeout=1.0) == []
    # exactly the timeout races the RC's return (latency): not required either
    assert check_rc_failsafe(make_timeline(loss(1.0, 2.0)), timeout=1.0) == []
    # engaged just after the RC came back, within the latency: counts as during the loss
    assert check_rc_failsafe(make_timeline(loss(2.05, 3.05) + failsafe(3.0575)), timeout=1.0) == []


def test_only_the_first_long_loss_must_trip_it() -> None:
    tl = make_timeline(loss(1.0, 1.3, "rc1") + loss(2.0, 4.0, "rc2") + failsafe(3.0) + loss(6.0, 9.0, "rc3"))
    assert check_rc_failsafe(tl, timeout=1.0) == []
    tl = make_timeline(loss(1.0, 1.3, "rc1") + loss(2.0, 4.0, "rc2") + loss(6.0, 9.0, "rc3") + failsafe(7.0))
    [v] = check_rc_failsafe(tl, timeout=1.0)
    assert "RC lost at t=2.00 s" in v.message


def test_open_loss_runs_to_the_end_and_an_unfinished_recording_is_not_judged() -> None:
    [v] = check_rc_failsafe(make_timeline(loss(10.0, None)), timeout=1.0)
    assert "to the end of the recording" in v.message
    assert check_rc_failsafe(make_timeline(loss(14.2, None)), timeout=1.0) == []


def test_overlapping_rc_injections_are_one_continuous_loss() -> None:
    events = loss(1.0, 1.6, "rc1") + loss(1.5, 2.5, "rc2")
    tl = make_timeline(events)
    assert rc_loss_intervals(tl) == [(1.0, 2.5, True)]
    assert len(check_rc_failsafe(tl, timeout=1.0)) == 1
    assert check_rc_failsafe(make_timeline(events + failsafe(2.0)), timeout=1.0) == []


def test_other_injections_are_not_rc_losses() -> None:
    tl = make_timeline(loss(1.0, 5.0, "gcs") + loss(1.0, 1.2, "rc"))
    assert rc_loss_intervals(tl) == [(1.0, 1.2, True)]
    assert rc_loss_intervals(tl, {"gcs"}) == [(1.0, 5.0, True)]
    assert check_rc_failsafe(tl, timeout=1.0) == []


def test_cleared_text_is_not_an_engagement_and_modes_are_the_fallback() -> None:
    tl = make_timeline(loss(1.0, 3.0) + [(3.0, "statustext", "Radio Failsafe Cleared")])
    assert failsafe_engagements(tl) == []
    # no STATUSTEXT at all: the RTL during the loss is the failsafe
    tl = make_timeline(loss(1.0, 3.0) + [(2.0, "mode", "RTL"), (8.0, "mode", "LAND")])
    assert failsafe_engagements(tl) == [2.0]
    assert check_rc_failsafe(tl, timeout=1.0) == []


# --- (2) bounds ---------------------------------------------------------------------------


def test_inside_the_bounds_passes() -> None:
    tl = make_timeline(path=[(0.0, 5.0, 0.0, 0.0), (3.0, 12.0, 30.0, 30.0)])
    assert check_bounds(tl, radius=50.0, ceiling=30.0) == []


def test_each_excursion_is_one_violation() -> None:
    tl = make_timeline(
        path=[(0.0, 5.0, 0.0, 0.0), (2.0, 5.0, 60.0, 0.0), (3.0, 5.0, 70.0, 0.0), (4.0, 5.0, 0.0, 0.0),
              (6.0, 5.0, 0.0, 55.0), (7.0, 5.0, 0.0, 0.0)]
    )
    v1, v2 = check_bounds(tl, radius=50.0)
    assert (v1.prop, v1.t) == ("bounds", pytest.approx(2.0))
    assert "60.0 m from home" in v1.message and "farthest 70.0 m at t=3.00 s" in v1.message
    assert "until t=4.00 s" in v1.message
    assert v2.t == pytest.approx(6.0)


def test_over_the_ceiling_is_a_violation() -> None:
    tl = make_timeline(path=[(0.0, 5.0, 0.0, 0.0), (5.0, 35.0, 0.0, 0.0)])
    [v] = check_bounds(tl, ceiling=30.0)
    assert v.prop == "ceiling" and v.t == pytest.approx(5.0)
    assert "to the end of the recording" in v.message


# --- (3) no disarm in the air -----------------------------------------------------------


def test_disarm_on_the_ground_passes() -> None:
    tl = make_timeline(
        [(9.0, "statustext", "Disarming motors"), (9.0, "disarmed", "")],
        path=[(0.0, 5.0, 0.0, 0.0), (8.0, 0.05, 0.0, 0.0)],
    )
    assert check_no_disarm_in_air(tl) == []


def test_disarm_in_the_air_is_a_violation() -> None:
    tl = make_timeline([(4.0, "statustext", "Disarming motors"), (4.0, "disarmed", "")], alt=5.0)
    [v] = check_no_disarm_in_air(tl, airborne_alt=1.0)
    assert v.prop == "disarm_in_air" and v.t == 4.0
    assert "disarmed at 5.0 m above home" in v.message and "Disarming motors" in v.message


# --- check_all ----------------------------------------------------------------------------


def _scenario(enable: int = 1, timeout: float = 1.0):
    return parse_scenario(
        {
            "scenario": {"name": "t", "duration": 15.0},
            "setup": {"mode": "LOITER", "altitude": 5.0,
                      "params": {"FS_THR_ENABLE": enable, "RC_FS_TIMEOUT": timeout}},
            "injection": [{"kind": "rc_loss", "id": "radio", "start": 1.0, "stop": 4.0}],
            "expect": [{"kind": "never_mode", "mode": "LAND"}],
        }
    )


def test_check_all_sorts_every_property_and_reads_the_scenario() -> None:
    events = loss(1.0, 4.0, "radio") + [(3.0, "disarmed", "")]
    tl = make_timeline(events, path=[(0.0, 5.0, 0.0, 0.0), (6.0, 40.0, 80.0, 0.0)])
    props = [v.prop for v in check_all(tl, scenario=_scenario())]
    assert props == ["rc_failsafe", "disarm_in_air", "bounds", "ceiling"]
    assert all(isinstance(v, Violation) for v in check_all(tl, scenario=_scenario()))
    # RC_FS_TIMEOUT from the scenario: 3 s of loss is not enough for a 5 s timeout
    assert [v.prop for v in check_all(tl, scenario=_scenario(timeout=5.0))][0] == "disarm_in_air"
    # radio failsafe disabled: that property is not checked
    assert "rc_failsafe" not in [v.prop for v in check_all(tl, scenario=_scenario(enable=0))]


def test_check_all_passes_a_clean_run() -> None:
    tl = make_timeline(loss(1.0, 4.0, "radio") + failsafe(2.0))
    assert check_all(tl, scenario=_scenario()) == []
