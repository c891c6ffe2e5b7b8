"""What a test does with an autopilot, whatever its protocol: the FlightController verbs.

Two implementations: `hil.autopilot.mavlink.MavlinkAutopilot` (ArduPilot, PX4, the
virtual board) and `hil.autopilot.msp.MspAutopilot` (Betaflight, INAV). What differs
between firmwares (mode names, failsafe settings, arming, reboots) is in the adapter's
`profile` (`hil.profiles`); a verb a firmware cannot do raises `CommandRefused` or
`ProfileLacks` saying why, never does something else. `tests/test_flight_controller_contract.py`
runs the same checks over every board kind.

Mode arguments are scenario words (RTL, LAND, ANGLE, ...) or the firmware's own names;
`ControllerState.mode` is the firmware's name for the mode it reports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from hil.profiles import FirmwareProfile


@dataclass(frozen=True)
class ControllerIdentity:
    """Who the board says it is, in the same words for every protocol."""

    firmware: str  # "ArduPilot", "PX4", "BTFL", "INAV"
    version: str  # "4.6.0"
    board: str  # a board id or name, "7701", "SITL"


@dataclass(frozen=True)
class ControllerState:
    """Armed, and the flight mode it reports (the firmware's name)."""

    armed: bool
    mode: str


@runtime_checkable
class FlightController(Protocol):
    profile: FirmwareProfile

    def describe(self) -> ControllerIdentity: ...

    def state(self) -> ControllerState: ...

    def get_param(self, name: str) -> float | str: ...

    def set_param(self, name: str, value: Any) -> Any: ...

    def snapshot_params(self, names: Iterable[str] | None = None) -> dict[str, Any]: ...

    def restore_params(self, snapshot: Mapping[str, Any]) -> list[str]: ...

    def arm(self, *, force: bool = False) -> None: ...

    def disarm(self, *, force: bool = False) -> None: ...

    def set_mode(self, mode: str) -> None: ...

    def wait_mode(self, mode: str, *, within: float) -> Any: ...

    def wait_armed(self, armed: bool = True, *, within: float) -> Any: ...

    def reboot(self) -> None:
        """Restart the firmware; return once the rebooted firmware answers on this same
        adapter (a MAVLink board found again where it came back, an MSP port reopened)."""

    def close(self) -> None: ...
