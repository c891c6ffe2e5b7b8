"""Rig files: which boards a test fixture (the jig) holds and how the harness reaches them.

A rig file is TOML:

    [rig]
    name = "virtual"

    [[board]]
    name = "copter1"
    type = "virtual"          # a board type registered below: virtual, mavlink
    usb_serial = "HILVFC0001"

Board types differ by data and by the class registered for them, never by branches
spread through the harness.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import tomllib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hil.errors import ConfigError, HilError, PortNotFound
from hil.links import registry
from hil.links.ports import find_port
from hil.mavlink.dialect import VFC_BOARD_ID

DEFAULT_RIG = Path(__file__).resolve().parent / "data" / "virtual.toml"


@dataclass(frozen=True)
class BoardStatus:
    """One line of `hil boards`."""

    name: str
    type: str
    state: str
    port: str
    usb_serial: str
    firmware: str


class Board(ABC):
    """One flight controller on the rig."""

    type_name: str = ""
    board_class: str = "mavlink"

    def __init__(self, name: str, spec: Mapping[str, Any], rig: Rig) -> None:
        self.name = name
        self.spec = spec
        self.rig = rig

    @property
    def lockstep(self) -> bool:
        """True when the board follows the simulator's clock."""
        return False

    @property
    def simulated(self) -> bool:
        """True when the harness flies the vehicle (closed loop) for this board."""
        return True

    @property
    def usb_serial(self) -> str:
        return str(self.spec.get("usb_serial", ""))

    @abstractmethod
    def start(self) -> None:
        """Power the board up (or launch it) and wait until its port exists."""

    @abstractmethod
    def stop(self) -> None:
        """Power it down; idempotent, bounded."""

    @abstractmethod
    def url(self, timeout: float = 10.0) -> str:
        """The pyserial URL of its control link now (it can change after a reboot)."""

    @property
    def state(self) -> str:
        return "unknown"

    @property
    def lock_dir(self) -> Path | None:
        """Where this board's ownership lock lives (None: the machine-wide lock directory)."""
        return None

    @property
    def uart_protocols(self) -> dict[str, str]:
        """Receiver UARTs (GPS, RC) the harness drives for this board, name -> protocol."""
        return {}

    def uart_paths(self) -> dict[str, str]:
        """Where the harness opens each receiver UART."""
        return {}

    def flasher(self, method: str, progress=None):
        """A flasher for this board over `method` ("serial" or "dfu")."""
        from hil.flash.dfu_flasher import DfuFlasher
        from hil.flash.serial_flasher import SerialFlasher

        if not self.usb_serial:
            raise ConfigError(f"{self.rig.path}: board {self.name!r} needs a usb_serial to be flashed")
        if method == "serial":
            return SerialFlasher(self.usb_serial, registry_dir=self._flash_registry(), progress=progress)
        if method == "dfu":
            return DfuFlasher(self.usb_serial, progress=progress, **self._dfu_options())
        raise ConfigError(f"flashing method {method!r} is not one of: serial, dfu")

    def _flash_registry(self) -> Path | None:
        return None

    def _dfu_options(self) -> dict[str, Any]:
        return {}


BOARD_TYPES: dict[str, Callable[[str, Mapping[str, Any], Rig], Board]] = {}


def register_board_type(name: str, factory: Callable[[str, Mapping[str, Any], Rig], Board]) -> None:
    BOARD_TYPES[name] = factory


class VirtualBoard(Board):
    """The built-in virtual flight controller: a process with a pty, in lockstep.

    Its flash file (`flash.bin` in its work directory) keeps what was flashed across
    power cycles. A board whose flash file does not exist yet comes "factory
    programmed" with `firmware` (default: the release image in `firmware_images/`).
    """

    type_name = "virtual"
    KEYS = {
        "name", "type", "usb_serial", "board_id", "firmware_version", "firmware", "sector_erase_s",
        "gps", "rc",
    }
    #: How the harness feeds a virtual board: GPS over HIL_GPS or a receiver UART, RC over
    #: RC_CHANNELS_OVERRIDE or a receiver UART.
    GPS_INPUTS = ("hil", "uart:ubx", "uart:nmea")
    RC_INPUTS = ("mavlink", "uart:crsf", "uart:sbus")

    def __init__(self, name: str, spec: Mapping[str, Any], rig: Rig) -> None:
        super().__init__(name, spec, rig)
        if not self.usb_serial:
            raise ConfigError(f"{rig.path}: board {name!r}: a virtual board needs a usb_serial")
        for key, allowed in (("gps", self.GPS_INPUTS), ("rc", self.RC_INPUTS)):
            value = spec.get(key, allowed[0])
            if value not in allowed:
                raise ConfigError(
                    f"{rig.path}: board {name!r}: {key} = {value!r} is not one of: {', '.join(allowed)}"
                )
        self._process = None

    @property
    def uart_protocols(self) -> dict[str, str]:
        """Receiver UARTs this board is wired with, name -> protocol."""
        out = {}
        for key in ("gps", "rc"):
            value = str(self.spec.get(key, ""))
            if value.startswith("uart:"):
                out[key] = value.removeprefix("uart:")
        return out

    def uart_paths(self) -> dict[str, str]:
        """Where the harness opens each receiver UART (the board announces them)."""
        from hil.links import registry

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
        from hil.vfc.process import VirtualBoardProcess

        if self._process is not None and self._process.alive:
            return
        work = self.rig.work_dir / self.usb_serial
        work.mkdir(parents=True, exist_ok=True)
        if not self.flash_path.exists():
            self.factory_program()
        erase = self.spec.get("sector_erase_s")
        self._process = VirtualBoardProcess(
            self.usb_serial,
            work / "storage.bin",
            self.rig.registry_dir,
            board_id=int(self.spec.get("board_id", VFC_BOARD_ID)),
            firmware_version=str(self.spec.get("firmware_version", "1.0.0")),
            log_path=work / "board.log",
            flash_path=self.flash_path,
            sector_erase_s=float(erase) if erase is not None else None,
            boot0=boot0,
            uarts=self.uart_protocols,
        )
        self._process.start()

    @property
    def flash_path(self) -> Path:
        """The board's flash file."""
        return self.rig.work_dir / self.usb_serial / "flash.bin"

    @property
    def factory_image(self) -> Path:
        """The image a new board is programmed with (rig key `firmware`, else the release)."""
        from hil.firmware.build import release_image_path

        firmware = self.spec.get("firmware")
        if not firmware:
            return release_image_path()
        path = Path(str(firmware)).expanduser()
        return path if path.is_absolute() else (self.rig.path.parent / path)

    def factory_program(self) -> None:
        """Write the factory image into a fresh (erased) flash file, as the factory does."""
        from hil.firmware.image import ImageError, load_image
        from hil.vfc.flash import APP_BASE, Flash, FlashError

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
        from hil.usb.virtual_backend import VirtualBackend

        return {
            "registry_dir": self.rig.registry_dir,
            "backend": VirtualBackend(self.rig.registry_dir),
            "enter_dfu": self.enter_dfu,
            "board_id": int(self.spec.get("board_id", VFC_BOARD_ID)),
        }

    @property
    def log_path(self) -> Path | None:
        return self.rig.work_dir / self.usb_serial / "board.log"


class MavlinkBoard(Board):
    """A board the user points at: real hardware by USB serial, or a SITL by URL."""

    type_name = "mavlink"
    KEYS = {"name", "type", "usb_serial", "url", "baud", "lockstep", "simulate"}

    def __init__(self, name: str, spec: Mapping[str, Any], rig: Rig) -> None:
        super().__init__(name, spec, rig)
        if not spec.get("url") and not self.usb_serial:
            raise ConfigError(
                f"{rig.path}: board {name!r}: give either url (e.g. \"socket://127.0.0.1:5760\", "
                f"\"/dev/ttyACM0\") or usb_serial"
            )

    @property
    def lockstep(self) -> bool:
        return bool(self.spec.get("lockstep", False))

    @property
    def simulated(self) -> bool:
        return bool(self.spec.get("simulate", False))

    def start(self) -> None:
        self.url()

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


register_board_type("virtual", VirtualBoard)
register_board_type("mavlink", MavlinkBoard)


class Rig:
    """A loaded rig file: its boards and a runtime directory for them."""

    def __init__(self, path: Path, name: str, boards_spec: list[Mapping[str, Any]], work_dir: Path | None = None) -> None:
        self.path = path
        self.name = name
        self._own_work = work_dir is None
        self.work_dir = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="hil-rig-"))
        self.registry_dir = self.work_dir / "registry"
        self.registry_dir.mkdir(parents=True, exist_ok=True)
        self.boards: list[Board] = []
        for index, spec in enumerate(boards_spec):
            self.boards.append(_make_board(path, index, spec, self))

    @classmethod
    def load(cls, path: Path | str, work_dir: Path | None = None) -> Rig:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"rig file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"rig file {path} cannot be read: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"rig file {path} is not valid TOML: {exc}") from None
        unknown = set(data) - {"rig", "board"}
        if unknown:
            raise ConfigError(f"{path}: unknown top-level keys {sorted(unknown)}; allowed: [rig], [[board]]")
        rig = data.get("rig", {})
        if not isinstance(rig, dict) or set(rig) - {"name", "description"}:
            raise ConfigError(f"{path}: [rig] takes only name and description")
        boards = data.get("board")
        if not isinstance(boards, list) or not boards:
            raise ConfigError(f"{path}: a rig needs at least one [[board]] table")
        return cls(path, str(rig.get("name", path.stem)), boards, work_dir)

    def select(self, which: str | None) -> Board:
        """The board named `which` (name or USB serial), or the first one."""
        if not which:
            return self.boards[0]
        for board in self.boards:
            if which in (board.name, board.usb_serial):
                return board
        names = ", ".join(f"{b.name} ({b.usb_serial or 'no serial'})" for b in self.boards)
        raise ConfigError(f"{self.path}: no board {which!r} on this rig; boards: {names}")

    def stop(self) -> None:
        errors = []
        for board in self.boards:
            try:
                board.stop()
            except Exception as exc:  # keep stopping the others
                errors.append(f"{board.name}: {exc}")
        if self._own_work:
            _remove_later(self.work_dir)
        if errors:
            raise HilError("could not stop every board: " + "; ".join(errors))

    def statuses(self, identify: Callable[[Board], str] | None = None) -> list[BoardStatus]:
        out = []
        for board in self.boards:
            firmware = identify(board) if identify else "-"
            try:
                port = board.url(timeout=0.0)
            except (HilError, PortNotFound):
                port = "-"
            out.append(BoardStatus(board.name, board.type_name, board.state, port, board.usb_serial or "-", firmware))
        return out


def _make_board(path: Path, index: int, spec: Any, rig: Rig) -> Board:
    where = f"{path}: [[board]][{index}]"
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: must be a table")
    kind = spec.get("type", "virtual")
    factory = BOARD_TYPES.get(kind)
    if factory is None:
        raise ConfigError(f"{where}.type: {kind!r} is not one of: {', '.join(sorted(BOARD_TYPES))}")
    allowed = getattr(factory, "KEYS", None)
    if allowed is not None:
        unknown = set(spec) - set(allowed)
        if unknown:
            raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; allowed for type {kind}: {sorted(allowed)}")
    name = spec.get("name", f"board{index}")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}.name: must be a non-empty string")
    return factory(name, spec, rig)


def _remove_later(path: Path) -> None:
    for _ in range(3):
        try:
            shutil.rmtree(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)


# Board types that live in their own packages register themselves on import.
import hil.sitl.board  # noqa: E402,F401

__all__ = ["Board", "BoardStatus", "MavlinkBoard", "Rig", "VirtualBoard", "register_board_type", "registry"]
