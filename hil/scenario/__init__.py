"""Scenarios: TOML files to validated objects, a recorded `Timeline`, and expectations
evaluated over it."""

from __future__ import annotations

from hil.scenario.expect import Verdict, evaluate
from hil.scenario.load import load_scenario, parse_scenario
from hil.scenario.model import (
    BOARD_CLASSES,
    COPTER_MODES,
    EXPECTATION_CLASSES,
    REQUIRED,
    SETUP_MODES,
    BatteryConfig,
    ExpectAltitude,
    ExpectArmedThroughout,
    Expectation,
    ExpectDisarmed,
    ExpectHoldPosition,
    ExpectLandedNearHome,
    ExpectMode,
    ExpectNeverMode,
    ExpectStatustext,
    Injection,
    InjectionKind,
    ParamSpec,
    Scenario,
    Setup,
    Wind,
    injection_kinds,
    register_injection_kind,
    unregister_injection_kind,
)
from hil.scenario.timeline import EVENT_KINDS, Event, Timeline

__all__ = [
    "BOARD_CLASSES",
    "COPTER_MODES",
    "EVENT_KINDS",
    "EXPECTATION_CLASSES",
    "REQUIRED",
    "SETUP_MODES",
    "BatteryConfig",
    "Event",
    "ExpectAltitude",
    "ExpectArmedThroughout",
    "ExpectDisarmed",
    "ExpectHoldPosition",
    "ExpectLandedNearHome",
    "ExpectMode",
    "ExpectNeverMode",
    "ExpectStatustext",
    "Expectation",
    "Injection",
    "InjectionKind",
    "ParamSpec",
    "Scenario",
    "Setup",
    "Timeline",
    "Verdict",
    "Wind",
    "evaluate",
    "injection_kinds",
    "load_scenario",
    "parse_scenario",
    "register_injection_kind",
    "unregister_injection_kind",
]
