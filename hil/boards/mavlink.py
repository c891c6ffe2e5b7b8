"""Board type `mavlink`: a board the user points at, reached over MAVLink.

Real hardware is found by USB serial number (hil.links.ports), a SITL or a telemetry
bridge by URL. Which firmware it runs is the rig key `profile` (hil.profiles).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hil.errors import ConfigError, HilError, PortNotFound
from hil.links.ports import find_port
from hil.profiles import DEFAULT_PROFILE, profile_names
from hil.rig import Board, Rig, RigKey, show_value


class MavlinkBoard(Board):
    """A board the user points at: real hardware by USB serial, or a SITL by URL."""

    type_name = "mavlink"
    profile_name = DEFAULT_PROFILE  # the rig key `profile` names another (px4)
    asks_for_streams = True  # a real ArduPilot streams nothing but HEARTBEAT unasked
    KEYS: Mapping[str, RigKey] = {
        "name": RigKey("name"),
        "type": RigKey("text"),
        "usb_serial": RigKey("name"),
        "profile": RigKey("text"),
        "url": RigKey("text"),
        "baud": RigKey("integer", 50, 20_000_000, unit="bits per second"),
        "lockstep": RigKey("boolean"),
        "simulate": RigKey("boolean"),
        "receiver": RigKey("tables"),
    }

    def __init__(self, name: str, spec: Mapping[str, Any], rig: Rig) -> None:
        super().__init__(name, spec, rig)
        if not spec.get("url") and not self.usb_serial:
            raise ConfigError(
                f"{rig.path}: board {name!r}: give either url (e.g. \"socket://127.0.0.1:5760\", "
                f"\"/dev/ttyACM0\") or usb_serial"
            )
        chosen = spec.get("profile", DEFAULT_PROFILE)
        allowed = profile_names("mavlink")
        if str(chosen).lower() not in allowed:
            raise ConfigError(
                f"{rig.path}: board {name!r}: profile = {show_value(chosen)} is not a MAVLink "
                f"firmware profile; one of: {', '.join(allowed)}"
            )
        self.profile_name = str(chosen).lower()

    @property
    def lockstep(self) -> bool:
        return self.spec.get("lockstep", False) is True

    @property
    def simulated(self) -> bool:
        return self.spec.get("simulate", False) is True and self.physics_refusal() is None

    def physics_refusal(self) -> str | None:
        """ArduPilot reads no sensors over MAVLink HIL (it has no HIL_SENSOR input), so
        `simulate = true` cannot make the harness its physics; the closed loop's RC
        override would still reach it and switch its modes."""
        if self.spec.get("simulate", False) is not True or self.profile.family != "ArduPilot":
            return None
        return (
            f"board {self.name} runs ArduPilot, which takes no sensors over MAVLink HIL: "
            "simulate = true cannot make the harness its physics (for ArduPilot SITL use "
            'type = "ardupilot-sitl", which flies it over its JSON interface)'
        )

    @property
    def baud(self) -> int:
        return int(self.spec.get("baud", 115200))

    def start(self) -> None:
        """Nothing to power: the board is the user's. Connecting finds its port within
        the connection's own timeout (a missing board is reported once, there)."""

    def stop(self) -> None:
        pass

    @property
    def state(self) -> str:
        try:
            self.url(timeout=0.0)
        except (PortNotFound, HilError):
            return "absent"
        return "present"

    def url(self, timeout: float = 10.0) -> str:
        url = self.spec.get("url")
        if url:
            return _normalise_url(str(url))
        return find_port(self.usb_serial, self.rig.registry_dir, timeout=timeout).device


def _normalise_url(url: str) -> str:
    """Accept MAVProxy-style `tcp:host:port` as well as pyserial URLs."""
    if url.startswith("tcp:"):
        return "socket://" + url[4:]
    return url


__all__ = ["MavlinkBoard"]
