"""Board type `virtual`: the virtual flight controller (hil.vfc), run as a process here.

The virtual flight controller is the device under test. In the harness this board type
is the one way to it (with hil.boards.virtual_usb, its USB backend): it starts and stops
the board's process, programs a new board's flash as a factory would, and says where
the board's ports and receiver UARTs are (the board announces them in the rig's
registry, hil.links.registry). What a benchmark needs to know of the device (its DFU
transfer size and programming time, its loop-time model's ground truth) is asked here
too, so nothing else in the harness imports hil.vfc.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hil.boards.virtual_usb import VirtualBackend
from hil.errors import ConfigError, HilError
from hil.firmware.build import release_image_path
from hil.firmware.image import ImageError, load_image
from hil.firmware.layout import APP_BASE
from hil.links import registry
from hil.links.ports import find_port
from hil.mavlink.dialect import VFC_BOARD_ID
from hil.receivers import Receiver, parse_receivers, virtual_receiver
from hil.rig import Board, Rig, RigKey
from hil.sim.px4_link import Px4SimListener, px4_loop
from hil.vfc.dfu_device import TRANSFER_SIZE, DfuTiming
from hil.vfc.flash import Flash, FlashError
from hil.vfc.looptime import LoopTimeModel
from hil.vfc.process import VirtualBoardProcess


class VirtualBoard(Board):
    """The built-in virtual flight controller: a process with a pty, in lockstep.

    Its flash file (`flash.bin` in its work directory) keeps what was flashed across
    power cycles. A board whose flash file does not exist yet comes "factory
    programmed" with `firmware` (default: the release image in `firmware_images/`).
    """

    type_name = "virtual"
    profile_name = "arducopter"  # the virtual board behaves as ArduCopter (or PX4: `personality`)
    #: Whose firmware the board presents: ArduCopter's, or PX4's (hil.vfc.px4), which
    #: takes its simulator over PX4's TCP connection (hil.sim.px4_link) instead of HIL_*
    #: messages on its MAVLink port.
    PERSONALITIES = {"ardupilot": "arducopter", "px4": "px4"}
    #: How the harness feeds a virtual board: GPS over HIL_GPS or a receiver UART, RC over
    #: RC_CHANNELS_OVERRIDE or a receiver UART.
    GPS_INPUTS = ("hil", "uart:ubx", "uart:nmea")
    RC_INPUTS = ("mavlink", "uart:crsf", "uart:sbus")
    KEYS: Mapping[str, RigKey] = {
        "name": RigKey("name"),
        "type": RigKey("text"),
        "usb_serial": RigKey("name"),
        "board_id": RigKey("integer", 0, 2**32 - 1),
        "firmware_version": RigKey("version"),
        "firmware": RigKey("path"),
        "sector_erase_s": RigKey("number", 0.0, 10.0, unit="seconds"),
        "gps": RigKey("choice", choices=GPS_INPUTS),
        "rc": RigKey("choice", choices=RC_INPUTS),
        "receiver": RigKey("tables"),
        "personality": RigKey("choice", choices=tuple(PERSONALITIES)),
        "sim_port": RigKey("integer", 0, 65535),
    }

    def __init__(self, name: str, spec: Mapping[str, Any], rig: Rig) -> None:
        super().__init__(name, spec, rig)
        if not self.usb_serial:
            raise ConfigError(f"{rig.path}: board {name!r}: a virtual board needs a usb_serial")
        self.personality = str(spec.get("personality", "ardupilot"))
        self.profile_name = self.PERSONALITIES[self.personality]
        if self.personality == "px4" and (self.uart_protocols or spec.get("receiver")):
            raise ConfigError(
                f"{rig.path}: board {name!r}: the PX4 personality takes GPS and RC over its "
                "simulator connection, as PX4 SITL does; leave out gps/rc = \"uart:...\" and "
                "[[board.receiver]]"
            )
        if self.personality != "px4" and "sim_port" in spec:
            raise ConfigError(
                f"{rig.path}: board {name!r}: sim_port is the PX4 personality's simulator port; "
                "add personality = \"px4\" or leave it out"
            )
        self._process = None
        self._sim_listener: Px4SimListener | None = None

    @property
    def board_id(self) -> int:
        """The board id its bootloader reports (images for another id are refused)."""
        return int(self.spec.get("board_id", VFC_BOARD_ID))

    @property
    def firmware_version(self) -> str:
        return str(self.spec.get("firmware_version", "1.0.0"))

    @property
    def sector_erase_s(self) -> float | None:
        erase = self.spec.get("sector_erase_s")
        return float(erase) if erase is not None else None

    def _receivers_from_spec(self) -> tuple[Receiver, ...]:
        """`gps = "uart:ubx"` and `rc = "uart:crsf"` are receivers on the board's own ptys,
        as a `[[board.receiver]]` table without a device is."""
        where = f"{self.rig.path}: board {self.name!r}"
        tables = parse_receivers(where, self.spec.get("receiver"), virtual=True)
        keyed = []
        for role in ("gps", "rc"):
            value = str(self.spec.get(role, ""))
            if not value.startswith("uart:"):
                continue
            if any(r.role == role for r in tables):
                raise ConfigError(
                    f"{where}: {role} = {value!r} and a [[board.receiver]] with role {role!r} both wire "
                    f"the {role} UART; keep one"
                )
            keyed.append(virtual_receiver(role, value.removeprefix("uart:")))
        return (*keyed, *tables)

    def uart_paths(self) -> dict[str, str]:
        """Where the harness opens each receiver UART (the board announces them)."""
        entry = registry.find_entry(self.rig.registry_dir, self.usb_serial) or {}
        return dict(entry.get("uarts") or {})

    @property
    def lockstep(self) -> bool:
        return True

    @property
    def state(self) -> str:
        if self._process is None:
            return "off"
        return "running" if self._process.alive else "stopped"

    def start(self, boot0: bool = False) -> None:
        if self._process is not None and self._process.alive:
            return
        work = self.rig.work_dir / self.usb_serial
        work.mkdir(parents=True, exist_ok=True)
        if not self.flash_path.exists():
            self.factory_program()
        sim_tcp = None
        if self.personality == "px4":
            # Listening before the board starts, as a PX4 simulator must (PX4 connects).
            if self._sim_listener is None:
                self._sim_listener = Px4SimListener(int(self.spec.get("sim_port", 0)))
            self._sim_listener.open()
            sim_tcp = f"{self._sim_listener.host}:{self._sim_listener.port}"
        self._process = VirtualBoardProcess(
            self.usb_serial,
            work / "storage.bin",
            self.rig.registry_dir,
            board_id=self.board_id,
            firmware_version=self.firmware_version,
            log_path=work / "board.log",
            flash_path=self.flash_path,
            sector_erase_s=self.sector_erase_s,
            boot0=boot0,
            uarts=self.uart_protocols,
            personality=self.personality if self.personality != "ardupilot" else None,
            sim_tcp=sim_tcp,
        )
        self._process.start()

    @property
    def flash_path(self) -> Path:
        """The board's flash file."""
        return self.rig.work_dir / self.usb_serial / "flash.bin"

    @property
    def factory_image(self) -> Path:
        """The image a new board is programmed with (rig key `firmware`, else the release)."""
        firmware = self.spec.get("firmware")
        if not firmware:
            return release_image_path()
        return self.rig_path(str(firmware))

    def factory_program(self) -> None:
        """Write the factory image into a fresh (erased) flash file, as the factory does."""
        source = self.factory_image
        try:
            image = load_image(source, base_address=APP_BASE)
            with Flash(self.flash_path) as flash:
                for segment in image.segments:
                    flash.write(segment.address, segment.data)
                flash.flush()
        except (ImageError, FlashError) as exc:
            self.flash_path.unlink(missing_ok=True)
            raise ConfigError(
                f"{self.rig.path}: board {self.name!r}: cannot factory-program {source}: {exc}"
            ) from None

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
        if self._sim_listener is not None:
            self._sim_listener.close()

    def mavlink_loop(self, autopilot: Any, config: Any, uart_links: dict[str, Any] | None = None) -> Any:
        """PX4's personality flies through its simulator connection (`px4_tcp`); the
        default one through HIL_* messages on its MAVLink port."""
        if self._sim_listener is None:
            return super().mavlink_loop(autopilot, config, uart_links)
        return px4_loop(autopilot, self._sim_listener, config, accept_timeout=10.0)

    def url(self, timeout: float = 10.0) -> str:
        if self._process is None or not self._process.alive:
            raise HilError(f"virtual board {self.name} ({self.usb_serial}) is not running")
        return find_port(self.usb_serial, self.rig.registry_dir, timeout=timeout, state="app").device

    @property
    def process(self) -> Any:
        """The running VirtualBoardProcess (None before start)."""
        return self._process

    @property
    def lock_dir(self) -> Path | None:
        # A virtual board exists only inside its rig's work directory.
        return self.rig.work_dir / "locks"

    def enter_dfu(self) -> None:
        """Power-cycle the board with BOOT0 held: it comes up as the ROM DFU device."""
        self.stop()
        self.start(boot0=True)

    def _flash_registry(self) -> Path | None:
        return self.rig.registry_dir

    def _dfu_options(self) -> dict[str, Any]:
        return {
            "registry_dir": self.rig.registry_dir,
            "backend": VirtualBackend(self.rig.registry_dir),
            "enter_dfu": self.enter_dfu,
            "board_id": self.board_id,
        }

    @property
    def log_path(self) -> Path | None:
        return self.rig.work_dir / self.usb_serial / "board.log"


# -- what a benchmark asks of the device (hil.bench) -----------------------------------

#: The virtual ROM DFU device's wTransferSize: the bytes of one DNLOAD block.
DFU_TRANSFER_SIZE = TRANSFER_SIZE
#: The pollTimeout, in seconds, the virtual DFU device asks for after each block.
DFU_BLOCK_PROGRAM_S = DfuTiming().program_ms / 1000.0


def bare_process(work: Path, usb_serial: str, *, boot0: bool) -> VirtualBoardProcess:
    """A virtual board process outside any rig, with its files in `work` (flash.bin,
    storage.bin, board.log, registry/) and sectors erased at once.

    With no flash.bin (or an erased one) it waits in its serial bootloader; with
    `boot0` it comes up as the ROM DFU device. Start and stop it yourself.
    """
    return VirtualBoardProcess(
        usb_serial,
        work / "storage.bin",
        work / "registry",
        flash_path=work / "flash.bin",
        log_path=work / "board.log",
        boot0=boot0,
        sector_erase_s=0.0,
    )


def loop_time_truth(
    rate_hz: float, jitter_us: float, overrun_probability: float, seed: int
) -> tuple[float, float]:
    """(loop rate in Hz, p99 loop jitter in us) of the board's loop-time model with these
    parameters (SCHED_LOOP_RATE, SIM_LOOP_JIT, SIM_LOOP_OVR, SIM_LOOP_SEED): the ground
    truth a loop-timing measurement is checked against."""
    model = LoopTimeModel(rate_hz, jitter_us, overrun_probability, seed)
    return model.expected_rate_hz, model.expected_jitter_us()


__all__ = [
    "DFU_BLOCK_PROGRAM_S",
    "DFU_TRANSFER_SIZE",
    "VirtualBoard",
    "bare_process",
    "loop_time_truth",
]
