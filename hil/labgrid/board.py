"""Board type `labgrid`: a MAVLink flight controller on another host, reached through a
labgrid place.

    [[board]]
    name = "fc-bench-a"
    type = "labgrid"
    place = "bench-a-fc1"           # or: tags = { board = "matek-h743" } (any free place
                                     # carrying them); else $LG_PLACE
    coordinator = "lab.example:20408"  # else $LG_COORDINATOR, else 127.0.0.1:20408
    profile = "arducopter"           # what the firmware is (as for type mavlink)
    control = "control"              # the place's NetworkSerialPort of the MAVLink link
    power = true                     # switch the place's power resource at start/stop
    dfu = "rom-dfu"                  # the place's NetworkDFUDevice to flash through
                                     # (default: its only one); dfu_alt = 0;
                                     # dfu_wait = 15 (s for it to appear)

    [[board.receiver]]               # served by the place's port named after the role
    role = "gps"                     # (or by uarts = { gps = "gps-uart" })
    protocol = "ubx"

Why a type of its own and not a "location" wrapped around another type: the harness
reaches a board through exactly the methods a type implements (start and stop, its
URL, its receiver UARTs, its power, its lock), and every one of them changes when the
board sits behind a place: acquiring is starting, releasing is stopping, the URL is the
exporter's ser2net port, power is labgrid's power driver. What a wrapped type would
still contribute is what the firmware is, and that is data here, as for type `mavlink`:
`profile`, `lockstep` and `simulate`. Types that run something on this host (a virtual
board's process, a SITL) have no meaning on the exporter's host; export their ports
instead (hil.labgrid.virtual_host does it for virtual boards).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from hil.errors import ConfigError, HilError
from hil.labgrid.place import PlaceAgent, PlaceError
from hil.profiles import DEFAULT_PROFILE, profile_names
from hil.receivers import Receiver, parse_receivers
from hil.rig import Board, Rig, RigKey, show_value


class LabgridBoard(Board):
    type_name = "labgrid"
    profile_name = DEFAULT_PROFILE
    KEYS: Mapping[str, RigKey] = {
        "name": RigKey("name"),
        "type": RigKey("text"),
        "usb_serial": RigKey("name"),
        "place": RigKey("text"),
        "tags": RigKey("table"),
        "coordinator": RigKey("text"),
        "control": RigKey("text"),
        "uarts": RigKey("table"),
        "power": RigKey("boolean"),
        "wait": RigKey("number", 0.0, 86400.0, unit="seconds"),
        "slowdown": RigKey("number", 1.0, 1000.0, unit="wall seconds per vehicle second"),
        "profile": RigKey("text"),
        "baud": RigKey("integer", 50, 20_000_000, unit="bits per second"),
        "lockstep": RigKey("boolean"),
        "simulate": RigKey("boolean"),
        "receiver": RigKey("tables"),
        "dfu": RigKey("text"),
        "dfu_alt": RigKey("integer", 0, 255),
        "dfu_wait": RigKey("number", 0.0, 600.0, unit="seconds"),
    }

    def __init__(self, name: str, spec: Mapping[str, Any], rig: Rig) -> None:
        super().__init__(name, spec, rig)
        where = f"{rig.path}: board {name!r}"
        chosen = str(spec.get("profile", DEFAULT_PROFILE)).lower()
        if chosen not in profile_names("mavlink"):
            raise ConfigError(
                f"{where}: profile = {show_value(spec.get('profile'))} is not a MAVLink firmware "
                f"profile; one of: {', '.join(profile_names('mavlink'))}"
            )
        self.profile_name = chosen
        # The board's tags (checked by the rig loader, chosen by --board-tag) also choose
        # its place when no place is named: any free place carrying them all.
        tags = self.tags
        place = spec.get("place") or (None if tags else os.environ.get("LG_PLACE"))
        if not place and not tags:
            raise ConfigError(f"{where}: a labgrid board needs place = \"NAME\" or tags = {{ ... }} (or $LG_PLACE)")
        self._uarts = place_uarts(where, spec)
        self.agent = PlaceAgent(
            coordinator=str(spec["coordinator"]) if spec.get("coordinator") else None,
            place=str(place) if place else None,
            tags={} if place else tags,
            label=f"{place or tags} (board {name})",
        )

    # -- what the firmware is ----------------------------------------------------------
    @property
    def lockstep(self) -> bool:
        return self.spec.get("lockstep", False) is True

    @property
    def simulated(self) -> bool:
        return self.spec.get("simulate", False) is True or self.lockstep

    @property
    def baud(self) -> int:
        return int(self.spec.get("baud", 115200))

    @property
    def wall_factor(self) -> float:
        """Wall seconds a vehicle second may take in waits: rig key `slowdown`, else 10
        for a lockstep board (every step crosses the network: 2.5x real time in flight
        through ser2net on loopback, but a slow link or a loaded exporter can fall far
        below real time, docs/labs.md), else 1."""
        given = self.spec.get("slowdown")
        if given is not None:
            return float(given)
        return 10.0 if self.lockstep else 1.0

    # -- where it is -----------------------------------------------------------------------
    @property
    def fixed_url(self) -> bool:
        """A reboot keeps the exporter's port: the session reconnects to the same URL."""
        return True

    @property
    def power_switch(self) -> bool:
        return self.spec.get("power", False) is True

    @property
    def wait(self) -> float:
        return float(self.spec.get("wait", 60.0))

    def reserve(self, wait: float) -> None:
        """Reserve and acquire the place, waiting up to `wait` s (the session's --lock-wait)."""
        if not self.agent.held:
            self.agent.acquire(wait)

    def start(self) -> None:
        self.reserve(self.wait)
        if self.power_switch:
            self.agent.power("on")

    def stop(self) -> None:
        if not self.agent.held:
            self.agent.release()  # an agent that died: reap it
            return
        try:
            if self.power_switch:
                self.agent.power("off")
        finally:
            self.agent.release()

    def power_cycle(self) -> None:
        if not self.power_switch:
            raise HilError(
                f"board {self.name}: the rig does not let the harness switch place {self.agent.acquired}'s "
                "power (power = true, with a power resource in the place)"
            )
        self.agent.power("cycle")

    @property
    def state(self) -> str:
        if self.agent.held:
            return f"acquired ({self.agent.acquired})"
        return "not acquired"

    def runtime(self) -> dict[str, str]:
        return {"host": f"labgrid place {self.agent.acquired or self.agent.label}", "link": "rfc2217"}

    def url(self, timeout: float = 10.0) -> str:
        if not self.agent.held:
            raise PlaceError(f"board {self.name}: place {self.agent.label} is not acquired")
        name = self._control_name()
        resource = self.agent.resources.get(name)
        if resource is None or not resource.avail or not resource.params.get("port"):
            self.agent.refresh(max(1.0, timeout))
        return self.agent.serial_url(name)

    def _control_name(self) -> str:
        given = self.spec.get("control")
        if given:
            return str(given)
        ports = [r.name for r in self.agent.resources.values() if r.cls == "NetworkSerialPort"]
        if "control" in ports or len(ports) != 1:
            return "control"
        return ports[0]

    def _receivers_from_spec(self) -> tuple[Receiver, ...]:
        return placed_receivers(f"{self.rig.path}: board {self.name!r}", self.spec.get("receiver"), self._uarts)

    def uart_paths(self) -> dict[str, str]:
        if not self.agent.held:
            raise PlaceError(f"board {self.name}: place {self.agent.label} is not acquired")
        return {r.role: self.agent.serial_url(self._uarts.get(r.role, r.role)) for r in self.receivers}

    def wiring_note(self, receiver: Receiver) -> str | None:
        return "a serial port of the labgrid place, reached once a run has acquired it"

    #: Through the place's DFU device with labgrid's DFU driver (hil.labgrid.dfu).
    flash_method = "dfu"

    def flasher(self, method: str, progress=None):
        """labgrid's DFUDriver on the place's NetworkDFUDevice: dfu-util on the exporter
        host (hil.labgrid.dfu says what it needs and does)."""
        from hil.labgrid.dfu import PlaceDfuFlasher

        if method != "dfu":
            raise ConfigError(
                f"board {self.name}: a board behind a labgrid place is flashed over DFU with labgrid's DFU "
                f"driver on the exporter host: use --method dfu, not {method!r}"
            )
        if not self.agent.held:
            raise PlaceError(f"board {self.name}: place {self.agent.label} is not acquired")
        return PlaceDfuFlasher(
            self,
            progress=progress,
            alt=int(self.spec.get("dfu_alt", 0)),
            resource=str(self.spec["dfu"]) if self.spec.get("dfu") else None,
            find_timeout=float(self.spec.get("dfu_wait", 15.0)),
        )


def placed_receivers(where: str, tables: Any, uarts: Mapping[str, str]) -> tuple[Receiver, ...]:
    """Receiver tables of a board behind a place name no device: the place's serial port
    named after the role (or in `uarts`) is it, shown as device "labgrid:RESOURCE". The
    wiring on the exporter's side is checked as for a real board (framing, inversion)."""
    if tables is None:
        return ()
    if not isinstance(tables, list):
        raise ConfigError(f"{where}: receiver must be an array of tables ([[board.receiver]])")
    placed = []
    for index, table in enumerate(tables):
        if isinstance(table, dict) and ("device" in table or "usb_serial" in table):
            raise ConfigError(
                f"{where}: [[board.receiver]][{index}]: the receiver of a board behind a labgrid place is a "
                "serial port of its place; leave device and usb_serial out (uarts = { ROLE = \"RESOURCE\" } names it)"
            )
        placed.append({**table, "device": "/labgrid"} if isinstance(table, dict) else table)
    parsed = parse_receivers(where, placed, virtual=False)
    return tuple(dataclasses.replace(r, device=f"labgrid:{uarts.get(r.role, r.role)}") for r in parsed)


def place_uarts(where: str, spec: Mapping[str, Any]) -> dict[str, str]:
    """The rig's `uarts = { ROLE = "RESOURCE" }`, checked."""
    uarts = spec.get("uarts") or {}
    if not all(isinstance(v, str) and v for v in uarts.values()):
        raise ConfigError(f"{where}: uarts = {show_value(uarts)}: must map roles to resource names")
    return {str(k): str(v) for k, v in uarts.items()}


__all__ = ["LabgridBoard", "place_uarts", "placed_receivers"]
