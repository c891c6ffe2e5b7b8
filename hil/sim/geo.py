"""The geodesy of hil.geo under its old name, for the modules that still import it here.

hil.scenario.runner and hil.sim.betaflight_loop import `hil.sim.geo`; everything else
imports hil.geo. This module goes when those two do too.
"""

from __future__ import annotations

from hil.geo import (
    EARTH_FIELD_NED,
    EARTH_RADIUS_M,
    GRAVITY,
    HOME,
    Home,
    altitude_m,
    lla_to_ned,
    ned_to_lla,
    pressure_hpa,
    temperature_c,
)

__all__ = [
    "EARTH_FIELD_NED",
    "EARTH_RADIUS_M",
    "GRAVITY",
    "HOME",
    "Home",
    "altitude_m",
    "lla_to_ned",
    "ned_to_lla",
    "pressure_hpa",
    "temperature_c",
]
