"""Pilot models: the hands on the sticks when a firmware flies the way a pilot does."""

from __future__ import annotations

from typing import Any


class AltitudePilot:
    """A pilot on the throttle stick who holds an altitude by eye (true altitude).

    Angle mode levels the craft; height is the pilot's job. A PI on altitude error with
    a feed-forward of the hover stick, limited in rate, is how a steady human flies it.
    """

    def __init__(self, target_m: float, hover_us: float) -> None:
        self.target_m = target_m
        self.hover_us = hover_us
        self._integral = 0.0

    @staticmethod
    def hover_stick(vehicle: Any) -> float:
        """Throttle stick (us) at which `vehicle` hovers, for the feed-forward."""
        return 1000.0 + 1000.0 * vehicle.params.hover_command

    def throttle(self, alt_m: float, climb_mps: float, dt: float) -> int:
        err = self.target_m - alt_m
        climb_target = max(-1.5, min(2.0, 0.8 * err))
        verr = climb_target - climb_mps
        self._integral = max(-150.0, min(150.0, self._integral + 40.0 * verr * dt))
        us = self.hover_us + 80.0 * verr + self._integral
        return int(max(1000.0, min(1850.0, us)))
