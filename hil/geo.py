"""Geodesy and atmosphere: where home is and what the air and the earth's field are there.

Flat-earth conversion between the local NED frame (origin at home, on the ground) and
latitude/longitude/altitude, the ISA standard atmosphere (troposphere) for the
barometer, and the earth's magnetic field at home for the magnetometer. Flat earth is
accurate to well under a metre within a few km of home, which is all a test flight
needs, and it is cheap and exactly invertible.

Facts of the world, not of the simulator: the simulator (hil.sim), the threat models
(hil.threats) and the virtual flight controller (hil.vfc) all use them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

GRAVITY = 9.80665
"""Standard gravity, m/s^2."""

EARTH_RADIUS_M = 6378137.0
"""WGS84 equatorial radius, used as the flat-earth scale."""


@dataclass(frozen=True)
class Home:
    """The origin of the NED frame: a point on the ground."""

    lat_deg: float = -35.363261
    lon_deg: float = 149.165230
    alt_m: float = 584.0


HOME = Home()
"""ArduPilot's default SITL location (Canberra model aircraft field)."""


def ned_to_lla(
    north: float, east: float, down: float, home: Home = HOME
) -> tuple[float, float, float]:
    """NED metres from ``home`` to (latitude deg, longitude deg, altitude m AMSL)."""
    lat = home.lat_deg + math.degrees(north / EARTH_RADIUS_M)
    lon = home.lon_deg + math.degrees(
        east / (EARTH_RADIUS_M * math.cos(math.radians(home.lat_deg)))
    )
    return lat, lon, home.alt_m - down


def lla_to_ned(
    lat_deg: float, lon_deg: float, alt_m: float, home: Home = HOME
) -> tuple[float, float, float]:
    """(latitude deg, longitude deg, altitude m AMSL) to NED metres from ``home``."""
    north = math.radians(lat_deg - home.lat_deg) * EARTH_RADIUS_M
    east = (
        math.radians(lon_deg - home.lon_deg) * EARTH_RADIUS_M * math.cos(math.radians(home.lat_deg))
    )
    return north, east, home.alt_m - alt_m


# ISA troposphere (valid to 11 km).
_P0_HPA = 1013.25
_T0_K = 288.15
_LAPSE_K_PER_M = 0.0065
_R_AIR = 8.31446261815324 / 0.0289644  # J/(kg K), specific gas constant of dry air
_EXPONENT = GRAVITY / (_R_AIR * _LAPSE_K_PER_M)  # ~5.2559


def pressure_hpa(alt_m_amsl: float) -> float:
    """ISA static pressure (hPa) at a geopotential altitude (m AMSL)."""
    return _P0_HPA * (1.0 - _LAPSE_K_PER_M * alt_m_amsl / _T0_K) ** _EXPONENT


def altitude_m(pressure_hpa: float) -> float:
    """ISA altitude (m AMSL) for a static pressure (hPa): inverse of ``pressure_hpa``."""
    return _T0_K / _LAPSE_K_PER_M * (1.0 - (pressure_hpa / _P0_HPA) ** (1.0 / _EXPONENT))


def temperature_c(alt_m_amsl: float) -> float:
    """ISA air temperature (deg C) at an altitude (m AMSL)."""
    return _T0_K - _LAPSE_K_PER_M * alt_m_amsl - 273.15


def _field_ned(
    total_g: float, inclination_deg: float, declination_deg: float
) -> tuple[float, float, float]:
    horizontal = total_g * math.cos(math.radians(inclination_deg))
    return (
        horizontal * math.cos(math.radians(declination_deg)),
        horizontal * math.sin(math.radians(declination_deg)),
        total_g * math.sin(math.radians(inclination_deg)),
    )


EARTH_FIELD_NED: tuple[float, float, float] = _field_ned(0.58, -66.0, 12.0)
"""Earth's magnetic field at home, gauss, NED: about (0.231, 0.049, -0.530)."""
