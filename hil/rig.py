"""Rig files: which boards a test fixture (the jig) holds and how the harness reaches them.

A rig file is TOML:

    [rig]
    name = "virtual"

    [[board]]
    name = "copter1"
    type = "virtual"          # a board type: virtual, mavlink, betaflight-sitl, or a plugin's
    usb_serial = "HILVFC0001"

Board types register by entry point, in the `hil.boards` group, so a firmware can be added
from another package: `[project.entry-points."hil.boards"] my-board = "pkg.mod:MyBoard"`.
The built-in types (hil.boards: `virtual`, `mavlink`, `betaflight`; hil.sitl:
`betaflight-sitl`) are listed there too, and found from a source tree without package
metadata. This module holds what every type shares (`Board`, `RigKey`, the registry of
types) and imports none of them. Each type names its firmware profile (`profile_name`, see hil.profiles), where
its mode names, failsafe facts and arming procedure live. Board types differ by data and
by the class registered for them, never by branches spread through the harness. Each
type declares its keys (`KEYS`, key -> `RigKey`), so a value of the wrong type is refused
when the file is loaded, naming the file, the key and what is allowed, not later by a
crash when the board starts. Board names and USB serial numbers become directory names
under the rig's state directory: they are restricted to `SAFE_NAME` (no path separators,
no leading dot).
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
import time
import tomllib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from hil.errors import ConfigError, HilError, PortNotFound
from hil.lifecycle import BoardState, Lifecycle
from hil.names import SAFE_NAME, SAFE_NAME_RULE
from hil.profiles import FirmwareProfile, profile, profile_names
from hil.receivers import Receiver, parse_receivers, receiver_device

DEFAULT_RIG = Path(__file__).resolve().parent / "data" / "virtual.toml"

_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,31}")
_MAX_TEXT = 4096


@dataclass(frozen=True)
class RigKey:
    """What one key of a `[[board]]` table accepts.

    `kind` is one of: name (SAFE_NAME), version, text, path (a file path, relative to the
    rig file), integer, number, boolean, choice, tables (an array of tables, each checked
    by its own parser: `[[board.receiver]]`, hil.receivers), table (one table, checked by
    the board type: `[board.stand_in]`).
    """

    kind: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    unit: str = ""

    def allowed(self) -> str:
        """What is allowed, in words."""
        unit = f" ({self.unit})" if self.unit else ""
        if self.kind == "name":
            return f"must be a string of {SAFE_NAME_RULE}"
        if self.kind == "version":
            return "must be a version string such as \"1.2.3\" (letters, digits, . + _ -; at most 32)"
        if self.kind == "text":
            return "must be a non-empty string without control characters"
        if self.kind == "path":
            return "must be a file path (a string; relative paths start at the rig file's folder)"
        if self.kind == "boolean":
            return "must be true or false (a TOML boolean, without quotes)"
        if self.kind == "choice":
            return "must be one of: " + ", ".join(self.choices)
        if self.kind == "tables":
            return "must be an array of tables ([[board.receiver]] under its [[board]])"
        if self.kind == "table":
            return "must be a table ([board.stand_in] under its [[board]], or { key = value, ... })"
        noun = "a whole number" if self.kind == "integer" else "a number"
        return f"must be {noun} from {_num(self.min)} to {_num(self.max)}{unit}"

    def accepts(self, value: Any) -> bool:
        kind = self.kind
        if kind == "boolean":
            return isinstance(value, bool)
        if kind == "tables":
            return isinstance(value, list) and all(isinstance(item, dict) for item in value)
        if kind == "table":
            return isinstance(value, dict)
        if kind in ("integer", "number"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                return False
            if kind == "integer" and not isinstance(value, int):
                return False
            if isinstance(value, float) and not math.isfinite(value):
                return False
            return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)
        if not isinstance(value, str):
            return False
        if kind == "name":
            return SAFE_NAME.fullmatch(value) is not None
        if kind == "version":
            return _VERSION.fullmatch(value) is not None
        if kind == "choice":
            return value in self.choices
        if not value or len(value) > _MAX_TEXT or any(ord(c) < 32 or ord(c) == 127 for c in value):
            return False
        if kind == "path":
            if any(len(part.encode("utf-8", "replace")) > 255 for part in value.split("/")):
                return False  # longer than any file system's name limit
            try:
                Path(value).expanduser()
            except RuntimeError:  # ~user that this machine does not know
                return False
        return True


def _num(x: float | None) -> str:
    return "any" if x is None else f"{x:g}"


def show_value(value: Any) -> str:
    """A value as the file spelled it, on one line and not too long."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
    #: The firmware profile (hil.profiles) of the firmware this board type runs; every
    #: board type names one.
    profile_name: str = ""

    def __init__(self, name: str, spec: Mapping[str, Any], rig: Rig) -> None:
        self.name = name
        self.spec = spec
        self.rig = rig

    @property
    def profile(self) -> FirmwareProfile:
        """What the firmware on this board is: modes, failsafe facts, arming, reboots."""
        return profile(self.profile_name)

    #: The session (`hil.session`) a test opens on this board, as "module:Class": how it
    #: connects, gets ready and flies a scenario. MAVLink boards by default.
    session_type: str = "hil.session:BoardSession"
    #: What the board can do beyond the firmware profile's words, for scenarios that need
    #: it (hil.scenario.model.Needs): "physics" (the harness flies the vehicle),
    #: "arm_switch" (armed by an RC switch the harness holds), "rc_receiver" (RC through
    #: a receiver UART), "link_statistics" (the receiver reports RSSI/LQ to the firmware),
    #: "gnss" (its GPS is fed from the plant's GNSS sky), "failsafe_mode" (stage 2 of its
    #: failsafe shows as the FAILSAFE mode; not so where it flies home instead),
    #: "gps_rescue" (its failsafe flies home by GPS: Betaflight then refuses arming
    #: without a fix, the profile's "gps_fix" arming check).
    capabilities: frozenset[str] = frozenset({"physics", "gnss", "failsafe_mode"})
    #: True when a session asks the firmware for its telemetry streams on connect (the
    #: profile's `telemetry_streams`): a real ArduPilot sends only HEARTBEAT unasked.
    asks_for_streams: bool = False

    @property
    def lockstep(self) -> bool:
        """True when the board follows the simulator's clock."""
        return False

    @property
    def lifecycle(self) -> Lifecycle:
        """Where the board is (off, bootloader, app, armable, flying) and the way between:
        callers go through it (`lifecycle.reach(BoardState.APP)`) rather than `start()`."""
        found = self.__dict__.get("_lifecycle")
        if found is None:
            found = self.__dict__["_lifecycle"] = Lifecycle(self)
        return found

    def reset_configuration(self) -> bool:
        """Put the board's configuration back to what tests start from; True if it changed
        (the board may have rebooted). Board types that can do so override this."""
        return False

    def wiring_note(self, receiver: Receiver) -> str | None:
        """Why a receiver's device may rightly be unreachable before a run (a stand-in
        opens a UART only once it is configured), for `hil doctor`; None: it must be."""
        return None

    def power_cycle(self) -> None:
        """Cut and restore the board's power (or restart its process)."""
        raise HilError(f"board {self.name} cannot be power-cycled by the harness (no power switch in the rig)")

    def runtime(self) -> dict[str, str]:
        """How the firmware runs on this board (scheduler, host), for measurements."""
        return {}

    @property
    def simulated(self) -> bool:
        """True when the harness flies the vehicle (closed loop) for this board."""
        return True

    def mavlink_loop(self, autopilot: Any, config: Any, uart_links: dict[str, Any] | None = None) -> Any:
        """The closed loop a MAVLink session flies this board with: by default the
        `mavlink_hil` link on its MAVLink port (a board type whose firmware takes its
        simulator elsewhere, PX4's TCP connection, returns its own)."""
        from hil.sim.loop import mavlink_loop

        return mavlink_loop(autopilot, config, uart_links=uart_links)

    def physics_refusal(self) -> str | None:
        """Why the harness cannot be this board's physics although the rig asks for it
        (None: it can, or the rig does not ask)."""
        return None

    @property
    def usb_serial(self) -> str:
        return str(self.spec.get("usb_serial", ""))

    @property
    def tags(self) -> dict[str, str]:
        """The board's `tags = { key = "value", ... }` from the rig (any board type), by
        which `--board-tag key=value` chooses among the rig's boards; checked at load."""
        return {str(k): str(v) for k, v in dict(self.spec.get("tags") or {}).items()}

    def has_tags(self, wanted: Mapping[str, str]) -> bool:
        """True when the board carries every one of `wanted`'s key = value pairs."""
        mine = self.tags
        return all(mine.get(k) == v for k, v in wanted.items())

    @property
    def baud(self) -> int:
        """Baud rate of the control link (ignored by pty, socket and USB CDC links)."""
        return 115200

    def rig_path(self, value: str) -> Path:
        """A path from the rig file: `~` expanded, relative to the rig file's folder."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.rig.path.parent / path

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

    def reserve(self, wait: float) -> None:
        """Claim the board beyond this host, waiting up to `wait` s, once this host's lock
        is held (a labgrid place: reserve and acquire it). Nothing to do for a board only
        this host reaches."""
        return None

    @property
    def wall_factor(self) -> float:
        """How many wall seconds a second of vehicle time may take in this board's waits
        (a lockstep board behind a network round trip runs well below real time)."""
        return 1.0

    @property
    def fixed_url(self) -> bool:
        """True when a reboot keeps the board's URL (a network port): a session then
        reconnects to it instead of waiting for a new port."""
        return False

    @property
    def receivers(self) -> tuple[Receiver, ...]:
        """The receivers (GPS, RC) wired to this board's UARTs: its `[[board.receiver]]`
        tables, checked when the rig is loaded (hil.receivers)."""
        cached = self.__dict__.get("_receivers")
        if cached is None:
            cached = self._receivers_from_spec()
            self.__dict__["_receivers"] = cached
        return cached

    def _receivers_from_spec(self) -> tuple[Receiver, ...]:
        return parse_receivers(f"{self.rig.path}: board {self.name!r}", self.spec.get("receiver"), virtual=False)

    @property
    def uart_protocols(self) -> dict[str, str]:
        """Receiver UARTs (GPS, RC) the harness drives for this board, role -> protocol."""
        return {r.role: r.protocol for r in self.receivers}

    def uart_paths(self) -> dict[str, str]:
        """Where the harness opens each receiver UART now, role -> device (an adapter
        named by USB serial is looked up; PortNotFound when it is absent or no adapter)."""
        return {r.role: receiver_device(r) for r in self.receivers}

    #: How `hil flash` flashes this board when not told (`--method`).
    flash_method: str = "serial"

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


BoardFactory = Callable[[str, Mapping[str, Any], "Rig"], Board]

#: The entry-point group board types register in.
BOARD_GROUP = "hil.boards"
#: The built-in board types, as pyproject.toml lists them in BOARD_GROUP: used for any of
#: them the package metadata does not list (a source tree that was never installed).
BUILTIN_BOARD_TYPES: Mapping[str, str] = {
    "virtual": "hil.boards.virtual:VirtualBoard",
    "mavlink": "hil.boards.mavlink:MavlinkBoard",
    "betaflight-sitl": "hil.sitl.board:BetaflightSitlBoard",
    "betaflight": "hil.boards.betaflight:BetaflightBoard",
    "px4-sitl": "hil.boards.px4_sitl:Px4SitlBoard",
    "labgrid": "hil.labgrid.board:LabgridBoard",
    "ardupilot-sitl": "hil.boards.ardupilot_sitl:ArduPilotSitlBoard",
}


class BoardTypes(Mapping[str, BoardFactory]):
    """Board types by name: those registered in code first, then the `hil.boards` entry
    points, then the built-ins. Listing names loads nothing; a type is imported when it is
    looked up, so a plugin that fails to load breaks only the rigs that use it."""

    def __init__(self) -> None:
        self._registered: dict[str, BoardFactory] = {}

    def register(self, name: str, factory: BoardFactory) -> None:
        self._registered[name] = factory

    def entry_points(self) -> dict[str, EntryPoint]:
        """The entry point of every type not registered in code, by name."""
        found: dict[str, EntryPoint] = {}
        for ep in entry_points(group=BOARD_GROUP):
            found.setdefault(ep.name, ep)
        for name, value in BUILTIN_BOARD_TYPES.items():
            found.setdefault(name, EntryPoint(name=name, value=value, group=BOARD_GROUP))
        return found

    def load(self, name: str) -> BoardFactory:
        """The factory of board type `name`; ConfigError if it is unknown or will not load."""
        if name in self._registered:
            return self._registered[name]
        ep = self.entry_points().get(name)
        if ep is None:
            raise ConfigError(f"board type {name!r} is not one of: {', '.join(self)}")
        try:
            factory = ep.load()
        except Exception as exc:  # whatever the plugin's import raised
            package = f" (package {ep.dist.name})" if getattr(ep, "dist", None) else ""
            raise ConfigError(
                f"board type {name!r} comes from entry point {ep.value!r} in group "
                f"{BOARD_GROUP}{package}, which failed to load: {type(exc).__name__}: {exc}; "
                "is the package that provides it installed and importable?"
            ) from None
        if not callable(factory):
            raise ConfigError(
                f"board type {name!r}: entry point {ep.value!r} in group {BOARD_GROUP} is "
                f"{type(factory).__name__}, not a board class"
            )
        return factory

    def __getitem__(self, name: str) -> BoardFactory:
        if name not in self._registered and name not in self.entry_points():
            raise KeyError(name)
        return self.load(name)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted({*self._registered, *self.entry_points()}))

    def __len__(self) -> int:
        return len({*self._registered, *self.entry_points()})

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._registered or name in self.entry_points())


BOARD_TYPES = BoardTypes()


def register_board_type(name: str, factory: BoardFactory) -> None:
    """Register a board type in code (it takes precedence over an entry point of that name)."""
    BOARD_TYPES.register(name, factory)


class Rig:
    """A loaded rig file: its boards and a runtime directory for them."""

    def __init__(self, path: Path, name: str, boards_spec: list[Mapping[str, Any]], work_dir: Path | None = None) -> None:
        self.path = path
        self.name = name
        self._own_work = work_dir is None
        try:
            self.work_dir = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="hil-rig-"))
            self.registry_dir = self.work_dir / "registry"
            self.registry_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"{path}: cannot create the rig's state directory {work_dir}: {exc.strerror or exc}; "
                "give a writable --state-dir"
            ) from None
        self.boards: list[Board] = []
        try:
            for index, spec in enumerate(boards_spec):
                self.boards.append(_make_board(path, index, spec, self))
            _check_unique(path, self.boards)
        except ConfigError:
            if self._own_work:
                _remove_later(self.work_dir)
            raise

    @classmethod
    def load(cls, path: Path | str, work_dir: Path | None = None) -> Rig:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"rig file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"rig file {path} is not valid TOML: {exc}") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: a NUL in the path
            raise ConfigError(f"rig file {path} cannot be read: {exc}") from None
        unknown = set(data) - {"rig", "board"}
        if unknown:
            raise ConfigError(f"{path}: unknown top-level keys {sorted(unknown)}; allowed: [rig], [[board]]")
        rig = data.get("rig", {})
        if not isinstance(rig, dict) or set(rig) - {"name", "description"}:
            raise ConfigError(f"{path}: [rig] takes only name and description")
        for key in ("name", "description"):
            if key in rig and not isinstance(rig[key], str):
                raise ConfigError(f"{path}: [rig].{key} = {show_value(rig[key])}: must be a string")
        boards = data.get("board")
        if not isinstance(boards, list) or not boards:
            raise ConfigError(f"{path}: a rig needs at least one [[board]] table")
        return cls(path, str(rig.get("name", path.stem)), boards, work_dir)

    def select(self, which: str | None, tags: Mapping[str, str] | None = None) -> Board:
        """The board named `which` (name or USB serial), or the first one; with `tags`,
        the board must carry them (the first one that does, when none is named)."""
        candidates = self.matching(tags)
        if not which:
            return candidates[0]
        for board in self.boards:
            if which in (board.name, board.usb_serial):
                if board not in candidates:
                    raise ConfigError(
                        f"{self.path}: board {board.name} does not carry the tags {show_tags(tags or {})}; "
                        f"it has {show_tags(board.tags) or 'none'}"
                    )
                return board
        names = ", ".join(f"{b.name} ({b.usb_serial or 'no serial'})" for b in self.boards)
        raise ConfigError(f"{self.path}: no board {which!r} on this rig; boards: {names}")

    def matching(self, tags: Mapping[str, str] | None) -> list[Board]:
        """The rig's boards that carry every tag of `tags`, in the rig's order (all of
        them when no tags are asked for); ConfigError naming each board's tags when none do."""
        if not tags:
            return list(self.boards)
        found = [b for b in self.boards if b.has_tags(tags)]
        if not found:
            have = "; ".join(f"{b.name}: {show_tags(b.tags) or 'no tags'}" for b in self.boards)
            raise ConfigError(f"{self.path}: no board carries the tags {show_tags(tags)}; boards: {have}")
        return found

    def stop(self) -> None:
        errors = []
        for board in self.boards:
            try:
                board.lifecycle.reach(BoardState.OFF, "the rig stopped")
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


def state_dir(rig_path: Path | str, given: Path | str | None = None) -> Path:
    """Where a rig's virtual boards keep their flash and parameters between commands:
    `given` (a command's --state-dir), else .hil/rigs/<the rig file's name>."""
    if given:
        return Path(given)
    return Path(".hil") / "rigs" / Path(rig_path).stem


def _make_board(path: Path, index: int, spec: Any, rig: Rig) -> Board:
    where = f"{path}: [[board]][{index}]"
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: must be a table")
    kind = spec.get("type", "virtual")
    if not isinstance(kind, str) or kind not in BOARD_TYPES:
        raise ConfigError(f"{where}.type: {show_value(kind)} is not one of: {', '.join(BOARD_TYPES)}")
    try:
        factory = BOARD_TYPES.load(kind)
    except ConfigError as exc:
        raise ConfigError(f"{where}.type: {exc}") from None
    allowed = getattr(factory, "KEYS", None)
    if allowed is not None:
        unknown = set(spec) - set(allowed) - set(_COMMON_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; allowed for type {kind}: {sorted(allowed)}")
    rules = {**(allowed if isinstance(allowed, Mapping) else {}), **_COMMON_KEYS}
    for key, rule in rules.items():
        if key in spec and not rule.accepts(spec[key]):
            raise ConfigError(f"{where}.{key} = {show_value(spec[key])}: {rule.allowed()}")
    _check_tags(where, spec.get("tags"))
    board = factory(spec.get("name", f"board{index}"), spec, rig)
    if not isinstance(board, Board):
        raise ConfigError(f"{where}.type: board type {kind!r} made a {type(board).__name__}, not a Board")
    if not board.profile_name:
        raise ConfigError(
            f"{where}.type: board type {kind!r} names no firmware profile (its profile_name); "
            f"known profiles: {', '.join(profile_names())}"
        )
    try:
        board.profile  # noqa: B018 - a type naming no known profile is refused here
    except ConfigError as exc:
        raise ConfigError(f"{where}.type: board type {kind!r}: {exc}") from None
    board.receivers  # noqa: B018 - receiver tables are checked at load, not when a run opens them
    return board


#: Keys every board type shares: name and usb_serial name directories and lock files,
#: tags choose boards (`--board-tag`).
_COMMON_KEYS: Mapping[str, RigKey] = {
    "name": RigKey("name"),
    "usb_serial": RigKey("name"),
    "tags": RigKey("table"),
}

#: A tag's key; its value is any short string without control characters or commas.
_TAG_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
_TAG_VALUE_MAX = 128


def _tag_value_ok(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= _TAG_VALUE_MAX
        and "," not in value
        and not any(ord(c) < 32 or ord(c) == 127 for c in value)
    )


def _check_tags(where: str, tags: Any) -> None:
    """`tags = { board = "h743", firmware = "arducopter" }`: keys are identifiers, values
    short strings (a comma would not survive `--board-tag a=b,c=d`)."""
    if tags is None:
        return
    if not isinstance(tags, dict):
        raise ConfigError(f"{where}.tags = {show_value(tags)}: must be a table, e.g. tags = {{ board = \"h743\" }}")
    for key, value in tags.items():
        if not _TAG_KEY.fullmatch(key):
            raise ConfigError(
                f"{where}.tags: key {key!r}: must be 1 to 64 characters from A-Z a-z 0-9 _ . -, starting with a letter or _"
            )
        if not _tag_value_ok(value):
            raise ConfigError(
                f"{where}.tags.{key} = {show_value(value)}: must be a string of 1 to {_TAG_VALUE_MAX} "
                "characters without commas or control characters (quote numbers: \"4\")"
            )


def parse_tag_filter(given: Any) -> dict[str, str]:
    """`--board-tag` values (each KEY=VALUE, or several joined by commas) as one mapping;
    ConfigError in one line for a malformed one or a key given twice with two values."""
    out: dict[str, str] = {}
    for item in given or ():
        for pair in str(item).split(","):
            key, sep, value = pair.strip().partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not _TAG_KEY.fullmatch(key) or not _tag_value_ok(value):
                raise ConfigError(f"--board-tag {item!r}: give KEY=VALUE (e.g. --board-tag board=h743)")
            if out.get(key, value) != value:
                raise ConfigError(f"--board-tag: {key} given as both {out[key]!r} and {value!r}")
            out[key] = value
    return out


def show_tags(tags: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(tags.items()))


def _check_unique(path: Path, boards: list[Board]) -> None:
    """Two boards with one name or one USB serial would share their state and lock."""
    for what in ("name", "usb_serial"):
        seen: dict[str, int] = {}
        for index, board in enumerate(boards):
            value = getattr(board, what)
            if not value:
                continue
            if value in seen:
                label = "name" if what == "name" else "USB serial"
                raise ConfigError(
                    f"{path}: [[board]][{seen[value]}] and [[board]][{index}] have the same {label} "
                    f"{value!r}; each board needs its own (its state and lock are kept under it)"
                )
            seen[value] = index


def _remove_later(path: Path) -> None:
    for _ in range(3):
        try:
            shutil.rmtree(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)


__all__ = [
    "BOARD_GROUP",
    "BOARD_TYPES",
    "BUILTIN_BOARD_TYPES",
    "SAFE_NAME",
    "Board",
    "BoardStatus",
    "Rig",
    "RigKey",
    "parse_tag_filter",
    "register_board_type",
    "show_tags",
    "show_value",
    "state_dir",
]
