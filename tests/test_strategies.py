"""Strategies for injection timelines, scenarios built from them, scenario files printed."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from hil.scenario.load import load_scenario, parse_scenario
from hil.scenario.model import injection_kinds
from hil.search.strategies import (
    injection_timelines,
    rc_loss_patterns,
    scenario_from_timeline,
    scenario_to_dict,
    scenario_toml,
)

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
FAST = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])

BASE = {
    "scenario": {"name": "search", "duration": 15.0},
    "setup": {"mode": "LOITER", "altitude": 5.0, "params": {"FS_THR_ENABLE": 1, "RC_FS_TIMEOUT": 1.0}},
}


def on_grid(t: float, grid: float = 0.05) -> bool:
    return abs(round(t / grid) * grid - t) < 1e-9 and repr(t) == repr(round(t, 6))


@FAST
@given(rc_loss_patterns(duration=15.0, max_windows=4, min_gap=0.5, max_window=6.0))
def test_patterns_are_ordered_separate_on_the_grid_and_in_range(windows) -> None:
    assert len(windows) <= 4
    for start, stop in windows:
        assert 1.0 <= start < stop <= 15.0
        assert 0.05 - 1e-9 <= stop - start <= 6.0 + 1e-9
        assert on_grid(start) and on_grid(stop)
    for (_, stop), (start, _) in zip(windows, windows[1:], strict=False):
        assert start - stop >= 0.5 - 1e-9


@FAST
@given(rc_loss_patterns(duration=4.0, max_windows=5, min_gap=0.2, max_window=2.0,
                        min_window=1.0, start_after=0.0, grid=0.1))
def test_patterns_respect_every_option(windows) -> None:
    for start, stop in windows:
        assert 0.0 <= start and stop <= 4.0 and 1.0 - 1e-9 <= stop - start <= 2.0 + 1e-9
        assert on_grid(start, 0.1) and on_grid(stop, 0.1)


def test_shrinking_gives_round_numbers() -> None:
    found = find(
        rc_loss_patterns(),
        lambda ws: any(b - a >= 1.0 for a, b in ws),
        settings=settings(database=None, max_examples=200),
    )
    assert found == [(1.0, 2.0)]
    found = find(
        rc_loss_patterns(),
        lambda ws: len(ws) >= 2,
        settings=settings(database=None, max_examples=200),
    )
    assert found == [(1.0, 1.05), (1.55, 1.6)]


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="min_window"):
        rc_loss_patterns(min_window=3.0, max_window=2.0)
    with pytest.raises(ValueError, match="unknown injection kind"):
        injection_timelines(kinds=["rc_loss", "meteor"])


@FAST
# arm_attempt wants a setup on the ground (armed = false); BASE flies.
@given(injection_timelines(kinds=sorted(set(injection_kinds()) - {"arm_attempt"}), duration=20.0, max_per_kind=2))
def test_injection_timelines_parse_as_scenario_injections(items) -> None:
    data = {**BASE, "scenario": {"name": "t", "duration": 20.0}, "injection": items,
            "expect": [{"kind": "never_mode", "mode": "FLIP"}]}
    scenario = parse_scenario(data)
    assert len(scenario.injections) == len(items)
    assert [i["start"] for i in items] == sorted(i["start"] for i in items)
    by_kind: dict[str, list] = {}
    for inj in scenario.injections:
        by_kind.setdefault(inj.kind, []).append((inj.start, inj.stop))
        assert inj.id.startswith(inj.kind)
    for windows in by_kind.values():
        windows.sort()
        for (_, stop), (start, _) in zip(windows, windows[1:], strict=False):
            assert start >= stop  # one kind never overlaps itself


def test_injection_timelines_take_parameter_strategies() -> None:
    strategy = injection_timelines(kinds=["battery_sag"], params={"battery_sag": {"volts": st.just(1.5)}})
    found = find(strategy, lambda items: len(items) >= 1, settings=settings(database=None))
    assert found == [{"kind": "battery_sag", "id": "battery_sag1", "start": 1.0, "stop": 1.05, "volts": 1.5}]


def test_scenario_from_timeline_adds_windows_and_the_property_as_expectations() -> None:
    scenario = scenario_from_timeline(BASE, [(3.0, 3.4), (5.0, 7.5)])
    assert [(i.id, i.kind, i.start, i.stop) for i in scenario.injections] == [
        ("rc1", "rc_loss", 3.0, 3.4), ("rc2", "rc_loss", 5.0, 7.5)]
    kinds = {e.kind: e for e in scenario.expectations}
    assert kinds["statustext"].after == "rc2.start"
    assert kinds["statustext"].within == 1.5
    assert kinds["never_mode"].mode == "RTL" and kinds["never_mode"].duration == 5.5
    # only short losses: never RTL, to the end
    short = scenario_from_timeline(BASE, [(3.0, 3.4)])
    assert [(e.kind, e.duration) for e in short.expectations] == [("never_mode", None)]
    assert BASE["setup"]["params"] == {"FS_THR_ENABLE": 1, "RC_FS_TIMEOUT": 1.0}  # not mutated


def test_scenario_from_timeline_keeps_the_base_and_needs_an_expectation() -> None:
    land = {**BASE, "setup": {**BASE["setup"], "params": {"FS_THR_ENABLE": 3, "RC_FS_TIMEOUT": 2.0}},
            "expect": [{"kind": "landed_near_home", "radius": 3.0}]}
    scenario = scenario_from_timeline(land, [(1.0, 4.0)])
    assert [e.kind for e in scenario.expectations] == ["landed_near_home", "statustext", "never_mode"]
    assert scenario.expectations[1].within == 2.5 and scenario.expectations[2].mode == "LAND"
    off = {**BASE, "setup": {**BASE["setup"], "params": {"FS_THR_ENABLE": 0}}}
    with pytest.raises(ValueError, match="no \\[\\[expect\\]\\]"):
        scenario_from_timeline(off, [(1.0, 4.0)])


def _same(a, b) -> None:
    assert dataclasses.replace(a, path=None) == dataclasses.replace(b, path=None)


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.toml")), ids=lambda p: p.stem)
def test_every_scenario_file_prints_and_loads_back_the_same(path: Path, tmp_path: Path) -> None:
    scenario = load_scenario(path)
    text = scenario_toml(scenario)
    out = tmp_path / "again.toml"
    out.write_text(text, encoding="utf-8")
    _same(load_scenario(out), scenario)


@FAST
@given(rc_loss_patterns(max_windows=4), st.text(max_size=30), st.booleans())
def test_generated_scenarios_print_and_load_back_the_same(windows, description, extras) -> None:
    base = {**BASE, "scenario": {**BASE["scenario"], "description": description, "seed": 7}}
    if extras:
        base["setup"] = {**base["setup"], "fly_to": [12.5, -3.0],
                         "wind": {"speed": 4.0, "direction": 270.0},
                         "battery": {"cells": 4, "capacity_mah": 2200.0}}
    scenario = scenario_from_timeline(base, windows)
    text = scenario_toml(scenario)
    _same(parse_scenario(tomllib.loads(text)), scenario)
    assert scenario_toml(scenario_to_dict(scenario)) == text


def test_the_printed_file_loads_with_load_scenario(tmp_path: Path) -> None:
    scenario = scenario_from_timeline(BASE, [(1.0, 2.15)], name='found "by" search')
    path = tmp_path / "found.toml"
    path.write_text(scenario_toml(scenario), encoding="utf-8")
    _same(load_scenario(path), scenario)
    text = path.read_text()
    assert "start = 1.0\nstop = 2.15\n" in text
    assert 'name = "found \\"by\\" search"' in text
