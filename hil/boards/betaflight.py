"""A Betaflight flight controller on a bench, as a rig board (type ``betaflight``).

MSP and the CLI over the board's USB port; RC from our receiver emulator into the UART
its receiver would be wired to (CRSF or SBUS, through a USB-UART adapter); no physics:
the board's own sensors sit on the bench (the ``bench`` simulator link,
`hil.sim.bench_link`). Nothing here is specific to SITL; a rig that has no board gives
it a stand-in (`hil.sitl.bench_stand`) that the board starts and stops with itself.

    [[board]]
    name = "bf-f405"
    type = "betaflight"
    url = "/dev/ttyACM0"            # or usb_serial = "..." (found by `hil doctor`), or
                                    # "socket://host:port" through a network serial server
    arm_aux = 1                     # the arm switch's AUX channel (1 = AUX1), default 1

    [[board.receiver]]              # exactly one RC receiver, and where it is wired
    role = "rc"
    protocol = "crsf"               # or "sbus"
    device = "/dev/ttyUSB0"         # the adapter (or usb_serial = "...")
    fc_port = "UART2"               # the FC's UART it is wired to

    [board.stand_in]                # only without hardware: see hil.sitl.bench_stand
    kind = "betaflight-sitl"        # or "virtual-msp" (hil.boards.virtual_msp), to flash

Behind a labgrid place on another host (docs/labs.md), the board's ports are the place's
NetworkSerialPorts over RFC 2217: `place = "NAME"` (and `coordinator`), no url or
stand_in, and receiver tables without a device (the place's port named after the role,
or `uarts = { rc = "RESOURCE" }`). The place is reserved and acquired when the board
starts and released when it stops; `power = true` switches the place's power resource;
`control` names the MSP port's resource (default "control").

On first use the harness applies its bench configuration to the board (serial RX on
``fc_port`` with the receiver's protocol, the arm switch, ANGLE, link statistics in the
debug channels) and keeps the board's configuration from before (``diff all``) in the
board's state directory as ``original-diff.txt``, which the CLI takes back line by line.
A test that changes a setting marks the board dirty; the next session then puts the bench
configuration back (``defaults nosave``, the saved bench ``diff all``, ``save``).

`hil flash IMAGE` flashes it through its ROM DFU bootloader, entered over MSP
(`hil.flash.msp_dfu`): the image must name the board's MCU target and board name
(``check_board_name = false`` accepts a build for the same MCU without this board's
name); ``dfu_serial`` overrides the DFU device's serial computed from the chip's id.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hil.errors import ConfigError, HilError
from hil.receivers import Receiver
from hil.rig import Board, Rig, RigKey

log = logging.getLogger(__name__)

#: Written by the harness: the board's own configuration before the bench one.
ORIGINAL_DIFF = "original-diff.txt"
#: The bench configuration as `diff all` printed it once applied; replayed to reset.
BENCH_DIFF = "bench-diff.txt"
#: What the board last said over MSP (target, board, unique id), for a flash that finds it in DFU.
MSP_FACTS = "msp-facts.json"
#: Lines of `diff all` that are not settings to replay.
_SKIP_PREFIXES = ("#", "batch", "defaults", "save", "board_name", "manufacturer_id", "mcu_id", "signature")


class BetaflightBoard(Board):
    type_name = "betaflight"
    board_class = "msp"
    profile_name = "betaflight"
    session_type = "hil.session:MspBoardSession"
    capabilities = frozenset({"rc_receiver", "link_statistics", "arm_switch", "failsafe_mode"})
    KEYS: Mapping[str, RigKey] = {
        "name": RigKey("name"),
        "type": RigKey("text"),
        "usb_serial": RigKey("name"),
        "url": RigKey("text"),
        "baud": RigKey("integer", 9600, 4_000_000, unit="bits per second"),
        "arm_aux": RigKey("integer", 1, 12),
        "receiver": RigKey("tables"),
        "stand_in": RigKey("table"),
        "dfu_serial": RigKey("name"),
        "check_board_name": RigKey("boolean"),
        "place": RigKey("text"),
        "coordinator": RigKey("text"),
        "control": RigKey("text"),
        "uarts": RigKey("table"),
        "power": RigKey("boolean"),
        "wait": RigKey("number", 0.0, 86400.0, unit="seconds"),
        "dfu": RigKey("text"),
        "dfu_wait": RigKey("number", 0.0, 600.0, unit="seconds"),
    }
    flash_method = "dfu"

    def __init__(self, name: str, spec: Mapping[str, Any], rig: Rig) -> None:
        super().__init__(name, spec, rig)
        where = f"{rig.path}: board {name!r}"
        self.agent = None  # the place agent (hil.labgrid.place), for a board behind a place
        self._uarts: dict[str, str] = {}
        if spec.get("place"):
            from hil.labgrid.board import place_uarts
            from hil.labgrid.place import PlaceAgent

            if spec.get("url") or spec.get("stand_in") is not None:
                raise ConfigError(
                    f"{where}: a board behind a labgrid place is reached through the place's ports; "
                    "leave url and stand_in out"
                )
            self._uarts = place_uarts(where, spec)
            self.agent = PlaceAgent(
                coordinator=str(spec["coordinator"]) if spec.get("coordinator") else None,
                place=str(spec["place"]),
                label=f"{spec['place']} (board {name})",
            )
        elif any(key in spec for key in ("coordinator", "control", "uarts", "power", "wait", "dfu", "dfu_wait")):
            raise ConfigError(
                f"{where}: coordinator, control, uarts, power, wait, dfu and dfu_wait go with place = \"NAME\""
            )
        if not spec.get("url") and not self.usb_serial and self.agent is None:
            raise ConfigError(
                f"{where}: give url (\"/dev/ttyACM0\", \"socket://host:port\") or usb_serial (`hil doctor` lists them)"
            )
        rc = [r for r in self.receivers if r.role == "rc"]
        if len(rc) != 1:
            raise ConfigError(
                f"{where}: a betaflight board needs exactly one [[board.receiver]] with role = \"rc\" "
                f"(the harness is its radio), found {len(rc)}"
            )
        if not rc[0].fc_port:
            raise ConfigError(
                f"{where}: its rc receiver needs fc_port, the board's UART it is wired to (e.g. \"UART2\"), "
                "so the harness can set serial RX on that port"
            )
        self.rc_receiver: Receiver = rc[0]
        self.dirty = False
        self.stand_in = None
        self.virtual_msp = None  # the stand-in for flashing (hil.boards.virtual_msp), if any
        stand_in = spec.get("stand_in")
        if isinstance(stand_in, Mapping) and stand_in.get("kind") == "virtual-msp":
            from hil.boards.virtual_msp import VirtualMspStandIn

            self.stand_in = self.virtual_msp = VirtualMspStandIn.from_spec(
                f"{where}: stand_in", stand_in, self.work_dir, self.usb_serial
            )
        elif stand_in is not None:
            from hil.sitl.bench_stand import BetaflightBenchStandIn

            self.stand_in = BetaflightBenchStandIn.from_spec(
                f"{where}: stand_in", stand_in, self.work_dir, rig.path.parent, self.lock_dir
            )

    # -- what the rig knows ----------------------------------------------------------

    @property
    def work_dir(self) -> Path:
        return self.rig.work_dir / self.name

    @property
    def baud(self) -> int:
        return int(self.spec.get("baud", 115200))

    @property
    def arm_aux_channel(self) -> int:
        """0-based AUX index of the arm switch (AUX1 = 0)."""
        return int(self.spec.get("arm_aux", 1)) - 1

    @property
    def simulated(self) -> bool:
        return False

    # -- behind a labgrid place -----------------------------------------------------------

    def _receivers_from_spec(self) -> tuple[Receiver, ...]:
        if self.agent is None:
            return super()._receivers_from_spec()
        from hil.labgrid.board import placed_receivers

        return placed_receivers(f"{self.rig.path}: board {self.name!r}", self.spec.get("receiver"), self._uarts)

    @property
    def fixed_url(self) -> bool:
        """Behind a place a reboot keeps the exporter's port."""
        return self.agent is not None

    @property
    def power_switch(self) -> bool:
        return self.agent is not None and self.spec.get("power", False) is True

    def reserve(self, wait: float) -> None:
        if self.agent is not None and not self.agent.held:
            self.agent.acquire(wait)

    def _place_url(self, resource: str) -> str:
        from hil.labgrid.place import PlaceError

        if not self.agent.held:
            raise PlaceError(f"board {self.name}: place {self.agent.label} is not acquired")
        return self.agent.serial_url(resource)

    def uart_paths(self) -> dict[str, str]:
        if self.agent is None:
            return super().uart_paths()
        return {r.role: self._place_url(self._uarts.get(r.role, r.role)) for r in self.receivers}

    def _rc_device(self) -> str:
        from hil.receivers import receiver_device

        if self.agent is None:
            return receiver_device(self.rc_receiver)
        return self._place_url(self._uarts.get("rc", "rc"))

    def runtime(self) -> dict[str, str]:
        if self.agent is None:
            return {}
        return {"host": f"labgrid place {self.agent.acquired or self.agent.label}", "link": "rfc2217"}

    @property
    def state(self) -> str:
        if self.agent is not None:
            return f"acquired ({self.agent.acquired})" if self.agent.held else "not acquired"
        if self.stand_in is not None:
            return "running" if self.stand_in.alive else "off"
        try:
            self.url(timeout=0.0)
        except HilError:
            return "absent"
        return "present"

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> None:
        """A real board is the user's to power; a stand-in is started here; a place is
        acquired (waiting up to `wait` s) and, with power = true, switched on."""
        if self.agent is not None:
            self.reserve(float(self.spec.get("wait", 60.0)))
            if self.power_switch:
                self.agent.power("on")
        if self.stand_in is not None:
            self.stand_in.start()

    def stop(self) -> None:
        if self.agent is not None:
            try:
                if self.power_switch and self.agent.held:
                    self.agent.power("off")
            finally:
                self.agent.release()
        if self.stand_in is not None:
            self.stand_in.stop()

    def power_cycle(self) -> None:
        if self.power_switch:
            self.agent.power("cycle")
            return
        if self.stand_in is None:
            raise HilError(
                f"board {self.name} cannot be power-cycled by the harness (no power switch in the rig); "
                "unplug and replug it"
            )
        self.stand_in.restart()

    def url(self, timeout: float = 10.0) -> str:
        if self.agent is not None:
            return self._place_url(str(self.spec.get("control", "control")))
        url = self.spec.get("url")
        if url:
            text = str(url)
            return "socket://" + text[4:] if text.startswith("tcp:") else text
        if self.virtual_msp is not None:
            return self.virtual_msp.url(timeout)
        from hil.links.ports import find_port

        return find_port(self.usb_serial, None, timeout=timeout).device

    def wiring_note(self, receiver: Receiver) -> str | None:
        if self.agent is not None:
            return "a serial port of the labgrid place, reached once a run has acquired it"
        if self.stand_in is None:
            return None
        if self.virtual_msp is not None:
            return "the virtual-msp stand-in only flashes: it has no receiver UARTs"
        return (
            "the stand-in SITL listens on a UART only once serial RX is configured on it, "
            "which a run does first (`hil run`)"
        )

    def log_path(self) -> Path | None:
        return self.stand_in.log_path if self.stand_in is not None else None

    def open_autopilot(self, connect_timeout: float = 10.0):
        """An MSP adapter on the board's port: reopened after a reboot by finding the port
        again (by USB serial when the rig gives one), or through the stand-in."""
        from hil.autopilot.msp import MspAutopilot

        reconnect = None
        if not self.spec.get("url"):
            def reconnect() -> str:
                return self.url(timeout=1.0)

        return MspAutopilot(
            self.url(timeout=connect_timeout),
            sitl=self.stand_in if self.virtual_msp is None else None,
            reconnect=reconnect,
            baudrate=self.baud,
            connect_timeout=connect_timeout,
            profile=self.profile,
        )

    # -- flashing ----------------------------------------------------------------------

    def flasher(self, method: str, progress=None):
        """MSP into the ROM DFU bootloader, DfuSe, back to the VCP (hil.flash.msp_dfu);
        behind a place, DfuSe through labgrid's DFU driver on the exporter host."""
        from hil.flash.msp_dfu import MspDfuFlasher

        if method != "dfu":
            raise ConfigError(
                f"board {self.name} (Betaflight) is flashed through its ROM DFU bootloader, entered over "
                f"MSP: use --method dfu, not {method!r}"
            )
        if self.agent is not None:
            return self._place_flasher(progress)
        if self.stand_in is not None and self.virtual_msp is None:
            raise ConfigError(
                f"board {self.name} has a SITL stand-in, which has no bootloader to flash; flash the real "
                "board, or give it the stand-in kind \"virtual-msp\""
            )
        registry_dir = backend = None
        if self.virtual_msp is not None:
            from hil.boards.virtual_usb import VirtualBackend

            registry_dir = self.virtual_msp.registry_dir
            backend = VirtualBackend(registry_dir)
        return MspDfuFlasher(
            self.usb_serial or self.name,
            self._vcp_url,
            open_msp=lambda url, timeout: self._open_msp(url, timeout),
            registry_dir=registry_dir,
            backend=backend,
            progress=progress,
            dfu_serial=self.spec.get("dfu_serial"),
            require_board_name=bool(self.spec.get("check_board_name", True)),
            memory=self.work_dir / MSP_FACTS,
        )

    def _place_flasher(self, progress=None):
        """hil.labgrid.dfu with MSP around it: the image checked against what the board
        says over MSP, MSP_REBOOT into the ROM bootloader through the place's control
        port, and the version read back over MSP once it runs again."""
        from hil.flash.msp_dfu import check_against_board, read_facts, reboot_to_rom_dfu
        from hil.labgrid.dfu import PlaceDfuFlasher
        from hil.labgrid.place import PlaceError

        if not self.agent.held:
            raise PlaceError(f"board {self.name}: place {self.agent.label} is not acquired")
        where = f"board {self.name} (place {self.agent.acquired})"

        def check(image) -> None:
            from hil.firmware.betaflight_info import read_strings

            url = self.url()
            with self._open_msp(url, 5.0) as ap:
                facts = read_facts(ap)
            check_against_board(
                image, read_strings(image), facts, where,
                require_board_name=bool(self.spec.get("check_board_name", True)),
            )

        def enter() -> None:
            url = self.url()
            ap = self._open_msp(url, 5.0)
            try:
                reboot_to_rom_dfu(ap, where, url)
            finally:
                try:
                    ap.close()
                except Exception:  # noqa: BLE001 - the board went into its bootloader
                    pass

        def confirm(timeout: float) -> str | None:
            with self._open_msp(self.url(), timeout) as ap:
                return read_facts(ap).version

        return PlaceDfuFlasher(
            self, progress=progress, check=check, enter=enter, confirm=confirm,
            resource=str(self.spec["dfu"]) if self.spec.get("dfu") else None,
            find_timeout=float(self.spec.get("dfu_wait", 15.0)),
        )

    def _vcp_url(self, timeout: float) -> str:
        """The VCP now; a real board without a url is found again by serial, or by its USB
        location when its serial names nothing (Betaflight F4: "0x8000000")."""
        if self.spec.get("url") or self.virtual_msp is not None:
            return self.url(timeout)
        from hil.links.ports import find_port, find_port_again

        last = self.__dict__.get("_last_vcp")
        port = (
            find_port_again(last, timeout=timeout, state="app")
            if last is not None
            else find_port(self.usb_serial, None, timeout=timeout, state="app")
        )
        self.__dict__["_last_vcp"] = port
        return port.device

    def _open_msp(self, url: str, timeout: float):
        from hil.autopilot.msp import MspAutopilot

        return MspAutopilot(url, baudrate=self.baud, connect_timeout=timeout, profile=self.profile)

    # -- configuration -----------------------------------------------------------------

    def reset_configuration(self) -> bool:
        """Apply the bench configuration if the board lacks it or a test changed a setting;
        True if the board was changed (it rebooted)."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        with self.open_autopilot() as ap:
            bench = self.work_dir / BENCH_DIFF
            if self.dirty and bench.is_file():
                self._replay(ap, bench.read_text().splitlines())
                self.dirty = False
                return True
            original = self.work_dir / ORIGINAL_DIFF
            if not original.exists():
                original.write_text(ap.cli("diff all", timeout=10.0) + "\n")
                log.info("board %s: its configuration before the bench one is kept in %s", self.name, original)
            changed = ap.configure_for_harness(
                rc_uart=None,
                serial_rx=(self.rc_receiver.fc_port, self.rc_receiver.protocol),
                arm_aux_channel=self.arm_aux_channel,
                debug_mode="CRSF_LINK_STATISTICS_UPLINK" if self.rc_receiver.protocol == "crsf" else "RX_TIMING",
            )
            if changed or not bench.exists():
                bench.write_text(ap.cli("diff all", timeout=10.0) + "\n")
            self.dirty = False
            if changed:
                log.info("board %s: bench configuration applied (%s)", self.name, ", ".join(changed))
            return bool(changed)

    def _replay(self, ap, lines: list[str]) -> None:
        """``defaults nosave``, then every setting line, then ``save`` (which reboots)."""
        ap.cli_enter()
        try:
            ap.cli("defaults nosave", timeout=10.0)
            for line in lines:
                text = line.strip()
                if not text or text.startswith(_SKIP_PREFIXES):
                    continue
                ap.cli(text, timeout=5.0)
        except BaseException:
            ap.cli_exit(reboot=True)  # unsaved: the board reboots into what it had
            raise
        ap.save(reboot=True)

    # -- the closed loop -----------------------------------------------------------------

    def simulator_link(self, config: Any = None):
        """The bench link: our receiver on the board's receiver UART, no physics."""
        from hil.sim.bench_link import bench_loop

        seed = int(getattr(config, "seed", 0) or 0)
        return bench_loop(self.rc_receiver, self._rc_device(), seed=seed)
