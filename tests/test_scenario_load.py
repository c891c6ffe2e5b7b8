"""Scenario files to objects: a valid file, defaults, every class of mistake, fuzzing."""

from __future__ import annotations

import copy
import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hil.errors import ScenarioError
from hil.profiles import MODE_WORDS
from hil.scenario import (
    SETUP_MODES,
    BatteryConfig,
    ExpectAltitude,
    ExpectArmedThroughout,
    ExpectDisarmed,
    ExpectHoldPosition,
    ExpectLandedNearHome,
    ExpectMode,
    ExpectNeverMode,
    ExpectStatustext,
    Injection,
    ParamSpec,
    Setup,
    Wind,
    injection_kinds,
    load_scenario,
    parse_scenario,
    register_injection_kind,
    unregister_injection_kind,
)

DATA = Path(__file__).parent / "data" / "scenarios"
FILE = "scenarios/x.toml"


def base() -> dict[str, Any]:
    """A small valid scenario as a parsed-TOML dict."""
    return {
        "scenario": {"name": "x", "duration": 60.0},
        "setup": {"mode": "LOITER", "altitude": 10.0},
        "injection": [{"kind": "rc_loss", "id": "rc", "start": 10.0, "duration": 20.0}],
        "expect": [{"kind": "mode", "mode": "RTL", "after": "rc.start", "within": 1.5}],
    }


def edit(data: dict[str, Any], path: str, value: Any = ..., delete: bool = False) -> dict:
    """Return a copy of `data` with the key at dotted `path` (ints index arrays) set or
    deleted."""
    out = copy.deepcopy(data)
    parts = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = out
    for p in parts[:-1]:
        node = node[p]
    if delete:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    return out


# --- valid files -------------------------------------------------------------------------


def test_full_file_parses_to_the_right_objects() -> None:
    sc = load_scenario(DATA / "full.toml")
    assert sc.name == "rc-loss-loiter-rtl"
    assert sc.description.startswith("Radio link lost")
    assert sc.path == DATA / "full.toml"
    assert sc.applies_to == ("mavlink", "msp")
    assert sc.duration == 120.0 and sc.seed == 1
    assert sc.setup == Setup(
        mode="LOITER",
        altitude=10.0,
        fly_to=(20.0, 0.0),
        params={"FS_THR_ENABLE": 1.0, "FS_THR_VALUE": 975.5},
        wind=Wind(3.0, 270.0, 1.0),
        battery=BatteryConfig(3, 5000.0),
        armed=True,
    )
    assert sc.injections == (
        Injection("rc", "rc_loss", 10.0, 30.0, {}),
        Injection("battery_sag", "battery_sag", 5.0, 50.0, {"volts": 0.8}),
        Injection("gusts", "wind", 40.0, None, {"speed": 6.0, "direction": 0.0, "gust": 0.0}),
    )
    assert sc.expectations == (
        ExpectMode(mode="RTL", within=1.5, after="rc.start", not_before=0.5),
        ExpectStatustext(contains="Radio Failsafe", within=2.0, after="rc.start"),
        ExpectDisarmed(within=90.0, after="rc.start"),
        ExpectLandedNearHome(radius=3.0),
        ExpectAltitude(min=8.0, max=12.0, duration=20.0, after="start", delay=0.0),
        ExpectHoldPosition(radius=2.0, duration=9.0, after="start"),
        ExpectNeverMode(mode="LAND", after="rc.stop", duration=None),
        ExpectArmedThroughout(after="start", duration=30.0),
    )


def test_defaults_fill_in(tmp_path: Path) -> None:
    f = tmp_path / "hover-check.toml"
    f.write_text(
        '[scenario]\nduration = 30\n[setup]\nmode = "ALT_HOLD"\naltitude = 5\n'
        '[[injection]]\nkind = "gps_loss"\nstart = 0\n'
        '[[expect]]\nkind = "armed_throughout"\n'
    )
    sc = load_scenario(f)
    assert (sc.name, sc.description, sc.applies_to, sc.seed) == ("hover-check", "", ("mavlink",), 0)
    assert sc.setup.armed is True and sc.setup.fly_to is None and dict(sc.setup.params) == {}
    assert sc.setup.wind is None and sc.setup.battery is None
    assert sc.injections == (Injection("gps_loss", "gps_loss", 0.0, None, {}),)
    assert sc.expectations == (ExpectArmedThroughout(after="start", duration=None),)


def test_disarmed_setup_needs_no_mode_or_altitude() -> None:
    data = base()
    data["setup"] = {"armed": False}
    data["expect"] = [{"kind": "never_mode", "mode": "LOITER"}]
    sc = parse_scenario(data, FILE)
    assert (sc.setup.armed, sc.setup.mode, sc.setup.altitude) == (False, "STABILIZE", 0.0)


def test_windows_exactly_at_the_duration_are_allowed() -> None:
    data = edit(base(), "injection.0.duration", 50.0)  # 10 + 50 = 60 = duration
    data["expect"].append({"kind": "altitude", "min": 1, "max": 2, "delay": 10, "for": 50})
    sc = parse_scenario(data, FILE)
    assert sc.injections[0].stop == 60.0
    assert sc.expectations[1] == ExpectAltitude(1.0, 2.0, 50.0, "start", 10.0)


def test_two_injections_of_one_kind_with_ids() -> None:
    data = base()
    data["injection"].append({"kind": "rc_loss", "id": "rc2", "start": 40.0, "stop": 45.0})
    sc = parse_scenario(data, FILE)
    assert [i.id for i in sc.injections] == ["rc", "rc2"]
    assert sc.nominal_anchors() == {"start": 0.0, "rc.start": 10.0, "rc.stop": 30.0,
                                    "rc2.start": 40.0, "rc2.stop": 45.0}


def test_objects_are_immutable() -> None:
    sc = parse_scenario(base(), FILE)
    with pytest.raises(AttributeError):
        sc.duration = 5.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        sc.injections[0].params["x"] = 1  # type: ignore[index]


# --- mistakes ------------------------------------------------------------------------------

EXPECT_KINDS = (
    "altitude, armed, armed_throughout, disarmed, disarmed_throughout, hold_position,"
    " landed_near_home, link_quality, mode, near_home, never_mode, statustext"
)

MISTAKES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("unknown top-level table", edit(base(), "expectation", {}),
     ['top level: unknown key "expectation"', "allowed keys: expect, injection, limits, scenario, setup"]),
    ("no [scenario]", edit(base(), "scenario", delete=True), ["[scenario]: missing"]),
    ("no duration", edit(base(), "scenario.duration", delete=True),
     ["[scenario].duration: missing; must be a number > 0"]),
    ("duration zero", edit(base(), "scenario.duration", 0),
     ["[scenario].duration: must be a number > 0, got 0"]),
    ("duration infinite", edit(base(), "scenario.duration", float("inf")),
     ["[scenario].duration: must be a number > 0, got inf"]),
    ("duration a string", edit(base(), "scenario.duration", "60"),
     ['[scenario].duration: must be a number > 0, got "60"']),
    ("unknown scenario key", edit(base(), "scenario.durration", 3),
     ['[scenario]: unknown key "durration"',
      "allowed keys: applies_to, arming_checks, description, duration, name, seed"]),
    ("seed negative", edit(base(), "scenario.seed", -1),
     ["[scenario].seed: must be an integer >= 0, got -1"]),
    ("seed float", edit(base(), "scenario.seed", 1.5),
     ["[scenario].seed: must be an integer >= 0, got 1.5"]),
    ("board class", edit(base(), "scenario.applies_to", ["mavlink", "px4"]),
     ['[scenario].applies_to[2]: "px4" is not one of: mavlink, msp']),
    ("board classes empty", edit(base(), "scenario.applies_to", []),
     ["[scenario].applies_to: must be a non-empty array of board classes (mavlink, msp)"]),
    ("name empty", edit(base(), "scenario.name", ""), ["[scenario].name: must be a non-empty"]),
    ("description a number", edit(base(), "scenario.description", 3),
     ["[scenario].description: must be a string, got 3"]),
    ("no [setup]", edit(base(), "setup", delete=True), ["[setup]: missing"]),
    ("setup an array", edit(base(), "setup", [1]), ["[setup]: must be a table, got an array"]),
    ("setup mode", edit(base(), "setup.mode", "POSHOLD"),
     ['[setup].mode: "POSHOLD" is not one of: STABILIZE, ALT_HOLD, LOITER, GUIDED, RTL, LAND']),
    ("setup mode missing", edit(base(), "setup.mode", delete=True),
     ["[setup].mode: missing; must be one of: STABILIZE"]),
    ("altitude a word", edit(base(), "setup.altitude", "ten"),
     ['[setup].altitude: must be a number between 0 and 100, got "ten"']),
    ("altitude too high", edit(base(), "setup.altitude", 100.5),
     ["[setup].altitude: must be a number between 0 and 100, got 100.5"]),
    ("altitude a bool", edit(base(), "setup.altitude", True),
     ["[setup].altitude: must be a number between 0 and 100, got true"]),
    ("altitude nan", edit(base(), "setup.altitude", float("nan")),
     ["[setup].altitude: must be a number between 0 and 100, got nan"]),
    ("armed a string", edit(base(), "setup.armed", "yes"),
     ['[setup].armed: must be true or false, got "yes"']),
    ("altitude while disarmed", edit(base(), "setup.armed", False),
     ["[setup].altitude: only allowed with armed = true"]),
    ("fly_to one number", edit(base(), "setup.fly_to", [20.0]),
     ["[setup].fly_to: must be [north, east], two numbers in m from home, got an array"]),
    ("fly_to strings", edit(base(), "setup.fly_to", ["20", 0]), ["[setup].fly_to: must be"]),
    ("unknown setup key", edit(base(), "setup.alt", 3),
     ['[setup]: unknown key "alt"',
      "allowed keys: altitude, armed, battery, fly_to, mode, params, wind"]),
    ("param lowercase", edit(base(), "setup.params", {"fs_thr_enable": 1}),
     ['[setup].params: parameter name "fs_thr_enable" must be 1 to 16 characters A-Z, 0-9, _']),
    ("param too long", edit(base(), "setup.params", {"A" * 17: 1}),
     ["[setup].params: parameter name", "1 to 16 characters"]),
    ("param value a string", edit(base(), "setup.params", {"FS_THR_ENABLE": "1"}),
     ['[setup].params.FS_THR_ENABLE: must be a number, got "1"']),
    ("params an array", edit(base(), "setup.params", [1]),
     ["[setup].params: must be a table of NAME = number, got an array"]),
    ("wind negative", edit(base(), "setup.wind", {"speed": -1.0}),
     ["[setup].wind.speed: must be a number >= 0, got -1.0"]),
    ("wind direction", edit(base(), "setup.wind", {"speed": 1.0, "direction": 361}),
     ["[setup].wind.direction: must be a number between 0 and 360, got 361"]),
    ("wind without speed", edit(base(), "setup.wind", {"gust": 1.0}),
     ["[setup].wind.speed: missing; must be a number >= 0"]),
    ("wind unknown key", edit(base(), "setup.wind", {"speed": 1.0, "dir": 3}),
     ['[setup].wind: unknown key "dir"; allowed keys: direction, gust, speed']),
    ("battery cells", edit(base(), "setup.battery", {"cells": 3.0, "capacity_mah": 5000}),
     ["[setup].battery.cells: must be an integer between 1 and 14, got 3.0"]),
    ("battery capacity", edit(base(), "setup.battery", {"cells": 3, "capacity_mah": 0}),
     ["[setup].battery.capacity_mah: must be a number > 0, got 0"]),
    ("injection a table", edit(base(), "injection", {"kind": "rc_loss"}),
     ["[[injection]]: must be an array of tables, written [[injection]], got a table"]),
    ("injection kind", edit(base(), "injection.0.kind", "rc_lost"),
     ['[[injection]][1].kind: "rc_lost" is not one of: ', "gcs_loss, gps_jamming, gps_loss"]),
    ("injection kind missing", edit(base(), "injection.0.kind", delete=True),
     ["[[injection]][1].kind: missing; must be one of: arm_attempt, arm_switch, baro_drift, battery_sag"]),
    ("injection start missing", edit(base(), "injection.0.start", delete=True),
     ["[[injection]][1].start: missing; must be a number >= 0 and < 60"]),
    ("injection start negative", edit(base(), "injection.0.start", -1),
     ["[[injection]][1].start: must be a number >= 0 and < 60, got -1"]),
    ("injection start at the end", edit(base(), "injection.0.start", 60.0),
     ["[[injection]][1].start: must be a number >= 0 and < 60, got 60.0"]),
    ("injection beyond duration", edit(base(), "injection.0.duration", 50.5),
     ["[[injection]][1].duration: the injection would end at t=60.5 s", "duration 60 s"]),
    ("injection stop before start",
     edit(edit(base(), "injection.0.duration", delete=True), "injection.0.stop", 5.0),
     ["[[injection]][1].stop: must be a number > 10 and <= 60, got 5.0"]),
    ("injection stop and duration", edit(base(), "injection.0.stop", 20.0),
     ["[[injection]][1]: give either stop or duration, not both"]),
    ("injection unknown key", edit(base(), "injection.0.volts", 1.0),
     ['[[injection]][1]: unknown key "volts"; allowed keys: duration, id, kind, start, stop']),
    ("injection id with a dot", edit(base(), "injection.0.id", "rc.1"),
     ['[[injection]][1].id: must be 1 to 64 characters A-Z, a-z, 0-9, _ or -, got "rc.1"']),
    ("injection param missing", edit(base(), "injection.0", {"kind": "battery_sag", "start": 1}),
     ["[[injection]][1].volts: missing; must be a number > 0"]),
    ("injection param out of range",
     edit(base(), "injection.0", {"kind": "battery_sag", "start": 1, "volts": 0}),
     ["[[injection]][1].volts: must be a number > 0, got 0"]),
    ("duplicate injection id",
     edit(base(), "injection", [{"kind": "rc_loss", "start": 1}, {"kind": "rc_loss", "start": 5}]),
     ['[[injection]][2].id: "rc_loss" is already used by [[injection]][1]']),
    ("no expectations", edit(base(), "expect", delete=True),
     ["[[expect]]: missing; a scenario needs at least one expectation"]),
    ("expect kind typo", edit(base(), "expect.0.kind", "moed"),
     [f'[[expect]][1].kind: "moed" is not one of: {EXPECT_KINDS}']),
    ("expect kind missing", edit(base(), "expect.0.kind", delete=True),
     [f"[[expect]][1].kind: missing; must be one of: {EXPECT_KINDS}"]),
    ("expect unknown key", edit(base(), "expect.0.whithin", 2),
     ['[[expect]][1]: unknown key "whithin"; allowed keys: after, kind, mode, not_before, within']),
    ("expect mode name", edit(base(), "expect.0.mode", "RLT"),
     ['[[expect]][1].mode: "RLT" is not one of: ACRO, ALT_HOLD',
      "nor a mode name of a known firmware (arducopter, betaflight, inav, px4)"]),
    ("expect mode in lower case", edit(base(), "expect.0.mode", "rtl"),
     ['[[expect]][1].mode: "rtl" is not one of: ACRO, ALT_HOLD, ANGLE, AUTO, FAILSAFE, GUIDED,'
      " HOLD, HORIZON, LAND, LOITER, OFFBOARD, POSHOLD, RTL, STABILIZE, TAKEOFF; nor"]),
    ("never_mode name", edit(base(), "expect.0", {"kind": "never_mode", "mode": "LOITRE"}),
     ['[[expect]][1].mode: "LOITRE" is not one of: ACRO,']),
    ("setup mode a firmware's own name", edit(base(), "setup.mode", "AUTO_LOITER"),
     ['[setup].mode: "AUTO_LOITER" is not one of: STABILIZE, ALT_HOLD, LOITER, GUIDED, RTL,'
      " LAND, ANGLE, HOLD"]),
    ("expect within missing", edit(base(), "expect.0.within", delete=True),
     ["[[expect]][1].within: missing; must be a number > 0"]),
    ("expect within zero", edit(base(), "expect.0.within", 0),
     ["[[expect]][1].within: must be a number > 0, got 0"]),
    ("anchor unknown", edit(base(), "expect.0.after", "radio.start"),
     ['[[expect]][1].after: "radio.start" is not a valid anchor; valid: start, rc.start, rc.stop']),
    ("anchor not a string", edit(base(), "expect.0.after", 3),
     ["[[expect]][1].after: 3 is not a valid anchor; valid: start, rc.start, rc.stop"]),
    ("anchor stop of open injection",
     edit(edit(base(), "injection.0.duration", delete=True), "expect.0.after", "rc.stop"),
     ['[[expect]][1].after: "rc.stop" is not a valid anchor (injection "rc" has no stop or',
      "valid: start, rc.start"]),
    ("not_before >= within", edit(base(), "expect.0.not_before", 1.5),
     ["[[expect]][1].not_before: must be less than within (1.5), got 1.5"]),
    ("expect window beyond duration", edit(base(), "expect.0.within", 51),
     ["[[expect]][1].within: the window would end at t=61 s (rc.start at 10 s + within 51)",
      "after the scenario's duration 60 s"]),
    ("altitude window beyond duration",
     edit(base(), "expect.0", {"kind": "altitude", "min": 1, "max": 5, "delay": 20, "for": 41}),
     ["[[expect]][1].for: the window would end at t=61 s (start at 0 s + delay 20 + for 41)"]),
    ("altitude min > max",
     edit(base(), "expect.0", {"kind": "altitude", "min": 6, "max": 5, "for": 4}),
     ["[[expect]][1].min: must be <= max (5), got 6"]),
    ("altitude without for", edit(base(), "expect.0", {"kind": "altitude", "min": 1, "max": 5}),
     ["[[expect]][1].for: missing; must be a number > 0"]),
    ("landed_near_home takes no after",
     edit(base(), "expect.0", {"kind": "landed_near_home", "radius": 3, "after": "start"}),
     ['[[expect]][1]: unknown key "after"; allowed keys: kind, radius']),
    ("hold_position radius", edit(base(), "expect.0", {"kind": "hold_position", "radius": -2,
                                                       "for": 3}),
     ["[[expect]][1].radius: must be a number > 0, got -2"]),
    ("statustext contains a number",
     edit(base(), "expect.0", {"kind": "statustext", "contains": 5, "within": 3}),
     ["[[expect]][1].contains: must be a string, got 5"]),
    ("never_mode for beyond duration",
     edit(base(), "expect.0", {"kind": "never_mode", "mode": "LAND", "after": "rc.stop",
                               "for": 31}),
     ["[[expect]][1].for: the window would end at t=61 s"]),
    ("expect a table", edit(base(), "expect", {"kind": "mode"}),
     ["[[expect]]: must be an array of tables, written [[expect]], got a table"]),
]


@pytest.mark.parametrize(
    ("data", "needles"), [(d, n) for _, d, n in MISTAKES], ids=[m[0] for m in MISTAKES]
)
def test_mistake_names_file_key_and_allowed(data: dict[str, Any], needles: list[str]) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data, FILE)
    message = str(info.value)
    assert message.startswith(f"{FILE}: ")
    for needle in needles:
        assert needle in message


def test_the_base_scenario_is_valid() -> None:
    parse_scenario(base(), FILE)  # the mistakes above are each one edit away from this


@pytest.mark.parametrize("word", sorted(MODE_WORDS))
def test_an_expectation_may_name_every_scenario_mode_word(word: str) -> None:
    sc = parse_scenario(edit(base(), "expect.0.mode", word), FILE)
    assert sc.expectations[0].mode == word


@pytest.mark.parametrize("name", ["SMART_RTL", "AUTO_LOITER", "GPS RESCUE", "NAV RTH"])
def test_an_expectation_may_name_one_firmware_s_own_mode(name: str) -> None:
    sc = parse_scenario(edit(base(), "expect.0", {"kind": "never_mode", "mode": name}), FILE)
    assert sc.expectations[0].mode == name


def test_every_setup_mode_is_a_scenario_word() -> None:
    assert set(SETUP_MODES) <= set(MODE_WORDS)
    sc = parse_scenario(edit(base(), "setup.mode", "HOLD"), FILE)
    assert sc.setup.mode == "HOLD"


def test_no_path_needs_a_name() -> None:
    with pytest.raises(ScenarioError, match=r"<scenario>: \[scenario\].name: missing"):
        parse_scenario(edit(base(), "scenario.name", delete=True))


def test_top_level_not_a_table() -> None:
    with pytest.raises(ScenarioError, match="top level: must be a table, got an array"):
        parse_scenario([1, 2], FILE)  # type: ignore[arg-type]


# --- file problems ---------------------------------------------------------------------------


def test_toml_syntax_error_gives_file_line_and_column(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text('[scenario]\nduration = 60\nname = "unterminated\n')
    with pytest.raises(ScenarioError) as info:
        load_scenario(f)
    assert str(info.value).startswith(f"{f}: TOML syntax error: ")
    assert "line 3" in str(info.value) and "column" in str(info.value)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="is a directory"):
        load_scenario(tmp_path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="no such file"):
        load_scenario(tmp_path / "nope.toml")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(tmp_path: Path) -> None:
    f = tmp_path / "secret.toml"
    f.write_text("[scenario]\n")
    f.chmod(0)
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(f)


def test_non_utf8_bytes(tmp_path: Path) -> None:
    f = tmp_path / "latin1.toml"
    f.write_bytes(b'[scenario]\ndescription = "caf\xe9"\n')
    with pytest.raises(ScenarioError, match=r"not UTF-8 text \(bad byte at line 2\)"):
        load_scenario(f)


def test_semantic_error_from_a_file_names_the_file(tmp_path: Path) -> None:
    f = tmp_path / "x.toml"
    f.write_text('[scenario]\nduration = 60\n[setup]\nmode = "LOITER"\naltitude = "ten"\n')
    with pytest.raises(ScenarioError) as info:
        load_scenario(f)
    assert str(info.value) == (
        f'{f}: [setup].altitude: must be a number between 0 and 100, got "ten"'
    )


# --- registered injection kinds ------------------------------------------------------------------


@pytest.fixture
def gps_jam() -> Any:
    register_injection_kind(
        "gps_jam",
        {
            "js_db": ParamSpec(float, min=0.0, max=60.0, doc="jammer-to-signal ratio, dB"),
            "ramp": ParamSpec(float, default=0.0, min=0.0, doc="s to reach js_db"),
            "profile": ParamSpec(str, default="step", choices=("step", "ramp")),
            "bursts": ParamSpec(int, default=1, min=1, doc="number of bursts"),
        },
        "GPS jamming",
    )
    yield "gps_jam"
    unregister_injection_kind("gps_jam")


def _with_injection(inj: dict[str, Any]) -> dict[str, Any]:
    return edit(base(), "injection", [inj])


def test_custom_kind_parses_with_defaults(gps_jam: str) -> None:
    sc = parse_scenario(_with_injection({"kind": gps_jam, "id": "rc", "start": 5, "js_db": 30}),
                        FILE)
    assert dict(sc.injections[0].params) == {
        "js_db": 30.0, "ramp": 0.0, "profile": "step", "bursts": 1
    }


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"js_db": 61}, "[[injection]][1].js_db: must be a number between 0 and 60, got 61"),
        ({}, "[[injection]][1].js_db: missing; must be a number between 0 and 60"),
        ({"js_db": 1, "profile": "sine"}, '[[injection]][1].profile: "sine" is not one of: '
                                          "step, ramp"),
        ({"js_db": 1, "bursts": 0}, "[[injection]][1].bursts: must be an integer >= 1, got 0"),
        ({"js_db": 1, "jsdb": 1}, 'unknown key "jsdb"; allowed keys: bursts, duration, id, '
                                  "js_db, kind, profile, ramp, start, stop"),
    ],
)
def test_custom_kind_validates_its_params(gps_jam: str, extra: dict[str, Any], needle: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(_with_injection({"kind": gps_jam, "id": "rc", "start": 5, **extra}), FILE)
    assert needle in str(info.value)


def test_unregistered_kind_is_rejected_after_removal(gps_jam: str) -> None:
    unregister_injection_kind(gps_jam)
    assert gps_jam not in injection_kinds()
    with pytest.raises(ScenarioError, match="is not one of"):
        parse_scenario(_with_injection({"kind": gps_jam, "start": 5, "js_db": 3}), FILE)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("rc_loss", {}),  # already registered
        ("Jam", {}),  # not lowercase
        ("jam2", {"start": ParamSpec(float)}),  # clashes with an injection key
        ("jam3", {"x": 1.0}),  # not a ParamSpec
    ],
)
def test_bad_registrations_are_refused(name: str, params: dict[str, Any]) -> None:
    with pytest.raises((ValueError, TypeError)):
        register_injection_kind(name, params)
    assert name == "rc_loss" or name not in injection_kinds()


def test_paramspec_with_a_bad_default_is_refused() -> None:
    with pytest.raises(ValueError):
        ParamSpec(float, default=-1.0, min=0.0)


def test_builtin_kinds_are_registered() -> None:
    kinds = injection_kinds()
    assert {"rc_loss", "gcs_loss", "gps_loss", "battery_sag", "wind"} <= set(kinds)
    assert set(kinds["wind"].params) == {"speed", "direction", "gust"}
    assert kinds["battery_sag"].params["volts"].requirement() == "a number > 0"


# --- fuzzing ----------------------------------------------------------------------------------

toml_scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["start", "rc.start", "rc.stop", "LOITER", "RTL", "rc_loss", "mode",
                     "altitude", "mavlink"]),
    st.datetimes(),
    st.dates(),
    st.times(),
)
KEYS = ["scenario", "setup", "injection", "expect", "kind", "name", "duration", "mode",
        "altitude", "start", "stop", "within", "after", "for", "min", "max", "radius", "id",
        "params", "wind", "battery", "speed", "fly_to", "applies_to", "seed", "armed"]
toml_keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=8))
toml_values = st.recursive(
    toml_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(toml_keys, children, max_size=5),
    ),
    max_leaves=30,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(toml_keys, toml_values, max_size=6))
def test_arbitrary_dicts_raise_only_scenario_error(data: dict[str, Any]) -> None:
    try:
        parse_scenario(data, FILE)
    except ScenarioError:
        pass


def _leaf_paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    if isinstance(node, dict):
        out = [prefix + (k,) for k in node]
        for k, v in node.items():
            out += _leaf_paths(v, prefix + (k,))
        return out
    if isinstance(node, list):
        out = [prefix + (i,) for i in range(len(node))]
        for i, v in enumerate(node):
            out += _leaf_paths(v, prefix + (i,))
        return out
    return []


def _rich_base() -> dict[str, Any]:
    data = base()
    data["scenario"]["applies_to"] = ["mavlink"]
    data["setup"].update(fly_to=[1.0, 2.0], params={"A": 1}, wind={"speed": 1.0},
                         battery={"cells": 3, "capacity_mah": 1000.0})
    data["injection"].append({"kind": "battery_sag", "start": 1.0, "volts": 0.5})
    data["expect"] += [
        {"kind": "altitude", "min": 1, "max": 5, "for": 3, "delay": 1},
        {"kind": "hold_position", "radius": 1, "for": 3, "after": "rc.stop"},
        {"kind": "never_mode", "mode": "LAND", "for": 3},
        {"kind": "statustext", "contains": "x", "within": 3},
    ]
    return data


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_near_valid_dicts_raise_only_scenario_error(data: st.DataObject) -> None:
    doc = _rich_base()
    paths = _leaf_paths(doc)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        node: Any = doc
        try:
            for p in path[:-1]:
                node = node[p]
            if data.draw(st.booleans()) and isinstance(node, dict):
                node.pop(path[-1], None)
            else:
                node[path[-1]] = data.draw(toml_values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit changed the shape under this path
    try:
        parse_scenario(doc, FILE)
    except ScenarioError:
        pass


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_scenario_error(tmp_path_factory: Any, raw: bytes) -> None:
    f = tmp_path_factory.mktemp("fuzz") / "x.toml"
    f.write_bytes(raw)
    try:
        load_scenario(f)
    except ScenarioError:
        pass


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(toml_keys, toml_values, max_size=6))
def test_arbitrary_toml_files_raise_only_scenario_error(tmp_path: Path, data: dict) -> None:
    tomli_w = pytest.importorskip("tomli_w")
    try:
        text = tomli_w.dumps(data)
    except (TypeError, ValueError):
        return  # not representable in TOML (tomli_w refuses some shapes)
    f = tmp_path / "x.toml"
    f.write_text(text, encoding="utf-8")
    try:
        load_scenario(f)
    except ScenarioError:
        pass


def test_dates_and_times_are_rejected_as_numbers() -> None:
    with pytest.raises(ScenarioError, match="got a datetime"):
        parse_scenario(edit(base(), "scenario.duration", dt.datetime(2024, 1, 1)), FILE)


@pytest.mark.parametrize(
    ("text", "seeds"),
    [("0-19", list(range(20))), ("7", [7]), ("0,4,9-11", [0, 4, 9, 10, 11]), ("3,3,2-4", [3, 2, 4])],
)
def test_seed_lists_read_as_a_technician_writes_them(text, seeds):
    from hil.scenario.load import parse_seeds

    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "x", "1-", "-3", "5-2", "0-5000", "1.5"])
def test_a_bad_seed_list_is_one_scenario_error(text):
    from hil.errors import ScenarioError
    from hil.scenario.load import parse_seeds

    with pytest.raises(ScenarioError, match=r"^--seeds "):
        parse_seeds(text)
