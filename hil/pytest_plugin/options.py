"""The plugin's options, rig path resolution, and its per-session state (`HilState`):
the rig, the board under test, its lock, what was flashed, and the results so far."""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hil.errors import (
    EXIT_USAGE,
    BoardNotAnswering,
    BoardUnavailable,
    ConfigError,
    HilError,
    LinkError,
)
from hil.lifecycle import BoardState
from hil.locks import BoardBusy, BoardLock, claim_first_free
from hil.rig import DEFAULT_RIG, Board, Rig, parse_tag_filter

#: Where the session's HilState lives: `config.stash[STATE]`.
STATE = pytest.StashKey["HilState"]()
_SIGTERM_UNDO = pytest.StashKey[Callable[[], None]]()


class HilState:
    """Per-session state of the plugin: the rig, which is started once, and the results."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.rig_path = _resolve_rig(config)
        self.board_name: str | None = config.getoption("hil_board")
        self._tag_options: list[str] = list(config.getoption("hil_board_tags") or [])
        self.firmware: str | None = config.getoption("hil_firmware")
        report = config.getoption("hil_report")
        self.report_dir = Path(report) if report else None
        state_dir = config.getoption("hil_state_dir")
        self.state_dir = Path(state_dir) if state_dir else None
        self.flash_method: str | None = config.getoption("hil_flash_method")
        self.lock_wait: float = config.getoption("hil_lock_wait")
        self._rig: Rig | None = None
        self._locks: dict[str, BoardLock] = {}
        #: The board this session claimed among several (no --board given).
        self._claimed: str | None = None
        self.flashed: dict[str, object] = {}
        self.results: list = []
        #: Per board name: whether it runs in lockstep with the simulator (Board.lockstep);
        #: the results table reports a board that does not as a real-time loop.
        self.lockstep: dict[str, bool] = {}
        #: Per board name: type, USB serial and firmware (version, sha256 when flashed).
        self.board_info: dict[str, dict[str, str]] = {}
        self.started_unix = time.time()
        #: time.monotonic() when the session started (pytest_sessionstart).
        self.started: float | None = None
        self._scenario_dirs: set[str] = set()
        #: Boards found missing, busy or stopped answering, name -> the first such error:
        #: every later use of the board fails at once with it (labgrid's never_retry).
        self.unavailable: dict[str, BoardUnavailable] = {}

    @property
    def claimed_board(self) -> str | None:
        """The board this session claimed among several of the rig (no --board), if any."""
        return self._claimed

    @property
    def board_tags(self) -> dict[str, str]:
        """--board-tag KEY=VALUE: the tags a board must carry to be chosen."""
        return parse_tag_filter(self._tag_options)

    def check(self) -> None:
        """Load the rig and find the board under test, before any test runs: a mistake
        there is one usage error for the session, not one traceback per scenario."""
        try:
            if self._rig is None:
                self._rig = Rig.load(self.rig_path, work_dir=self.state_dir)
            self._rig.select(self.board_name, self.board_tags)
        except ConfigError as exc:
            raise pytest.UsageError(str(exc)) from None

    def rig(self) -> Rig:
        if self._rig is None:
            try:
                self._rig = Rig.load(self.rig_path, work_dir=self.state_dir)
            except ConfigError as exc:
                pytest.exit(str(exc), returncode=EXIT_USAGE)
        return self._rig

    def board(self) -> Board:
        """The board under test: locked for this session, flashed with --firmware once, running.

        A board that cannot be reached raises BoardUnavailable, here and from then on.
        """
        rig = self.rig()
        try:
            tags = self.board_tags
            candidates = rig.matching(tags)
        except ConfigError as exc:
            pytest.exit(str(exc), returncode=EXIT_USAGE)
        if not self.board_name and len(candidates) > 1 and self._claimed is None:
            # No --board and several boards (of the rig, or carrying --board-tag's tags):
            # this session (an xdist worker, or one of two runs at once) takes the first
            # free one in the rig's order, never one another session holds.
            try:
                index, lock = claim_first_free(
                    [(b.usb_serial or b.name, b.lock_dir) for b in candidates], wait=self.lock_wait
                )
            except BoardBusy as exc:
                raise self.lost(candidates[0], str(exc)) from None
            self._claimed = candidates[index].name
            self._locks[self._claimed] = lock
        try:
            board = rig.select(self._claimed or self.board_name, tags)
        except ConfigError as exc:
            pytest.exit(str(exc), returncode=EXIT_USAGE)
        known = self.unavailable.get(board.name)
        if known is not None:
            raise BoardUnavailable(str(known))
        try:
            if board.name not in self._locks:
                lock = BoardLock(board.usb_serial or board.name, board.lock_dir, wait=self.lock_wait)
                lock.acquire()
                self._locks[board.name] = lock
            board.reserve(self.lock_wait)  # beyond this host (a labgrid place), as long as --lock-wait
            board.lifecycle.reach(BoardState.APP, "the test session")
        except (BoardNotAnswering, LinkError, BoardBusy) as exc:
            raise self.lost(board, str(exc)) from None
        except ConfigError as exc:  # e.g. Betaflight SITL not installed: input, not bench
            raise self.lost(board, str(exc), exit_code=EXIT_USAGE) from None
        if self.firmware and board.name not in self.flashed:
            self.flashed[board.name] = self._flash(board)
        return board

    def lost(self, board: Board, reason: str, exit_code: int | None = None) -> BoardUnavailable:
        """Mark `board` unavailable for the rest of the session; returns the error to raise."""
        if board.name not in self.unavailable:
            if not reason.startswith(f"board {board.name}"):
                reason = f"board {board.name}: {reason}"
            error = BoardUnavailable(reason)
            if exit_code is not None:
                error.exit_code = exit_code
            self.unavailable[board.name] = error
        return BoardUnavailable(str(self.unavailable[board.name]))

    def _flash(self, board: Board):
        from hil.firmware.image import ImageError, load_image

        try:
            image = load_image(self.firmware)
        except ImageError as exc:
            raise pytest.UsageError(f"--firmware: {exc}") from None
        method = self.flash_method or board.flash_method
        return board.lifecycle.flash(lambda: board.flasher(method).flash(image))

    def firmware_info(self, board: Board, session) -> dict[str, str]:
        """The board's firmware for the report: the image flashed with --firmware (its
        sha256), else what the board says (identify); asked once per board and session."""
        info = self.board_info.get(board.name)
        if info is not None:
            return info
        info = {"type": board.type_name, "usb_serial": board.usb_serial or ""}
        flashed = self.flashed.get(board.name)
        if flashed is not None:
            # The sha256 of the binary the board holds (the same for .apj, .hex and .dfu of
            # one build), and of the file it came in.
            info["firmware_sha256"] = str(getattr(flashed, "image_sha256", "") or "")
            info["firmware_image"] = str(self.firmware)
            with contextlib.suppress(OSError):
                info["firmware_file_sha256"] = hashlib.sha256(Path(str(self.firmware)).read_bytes()).hexdigest()
            info["firmware_source"] = f"flashed from {Path(str(self.firmware)).name}"
            if getattr(flashed, "new_version", None):
                info["firmware_version"] = str(flashed.new_version)
        try:
            ident = session.autopilot.identify()
        except (HilError, AttributeError) as exc:
            info.setdefault("firmware_version", "unknown")
            info.setdefault("firmware_source", f"not identified: {exc}")
        else:
            version = getattr(ident, "firmware_version", None) or getattr(ident, "firmware", None)
            maker = getattr(ident, "autopilot", None) or getattr(ident, "variant", None)
            info["firmware_version"] = str(version)
            if maker:
                info["autopilot"] = str(maker)
            info.setdefault("firmware_source", "reported by the board")
        self.board_info[board.name] = info
        return info

    def capture_for(self, scenario, label: str | None = None):
        """A recorder into <report>/<label or scenario>/ when the run writes a report, else None."""
        if self.report_dir is None:
            return None
        from hil.report import ScenarioCapture, scenario_dir

        name = label or scenario.name
        where = scenario_dir(self.report_dir, name, self._scenario_dirs)
        if getattr(self.config, "workerinput", None) is not None:
            # xdist workers share the report directory: a folder another worker made
            # first (two scenario files of one name) is theirs; take the next free one.
            while True:
                try:
                    where.mkdir(parents=True, exist_ok=False)
                    break
                except FileExistsError:
                    where = scenario_dir(self.report_dir, name, self._scenario_dirs)
        return ScenarioCapture(where)

    def close(self) -> None:
        try:
            if self._rig is not None:
                self._rig.stop()
                self._rig = None
        finally:
            for lock in self._locks.values():
                lock.release()
            self._locks.clear()


def _distributing(config: pytest.Config) -> bool:
    """True in the session that hands tests to pytest-xdist workers (not in a worker)."""
    if getattr(config, "workerinput", None) is not None:
        return False
    dist = getattr(config.option, "dist", "no")
    return dist != "no" and bool(getattr(config.option, "tx", None))


def _resolve_rig(config: pytest.Config) -> Path:
    return resolve_rig_path(config.getoption("hil_rig"), Path(str(config.rootpath)))


def resolve_rig_path(given: str | None, root: Path | None = None) -> Path:
    """The rig file to use: the one given, else fixtures/virtual.toml, else the packaged one."""
    if given:
        return Path(given)
    local = (root or Path.cwd()) / "fixtures" / "virtual.toml"
    return local if local.exists() else DEFAULT_RIG


# -- hooks -------------------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hil", "hardware-in-the-loop harness")
    group.addoption("--rig", dest="hil_rig", default=None, help="rig file (default: fixtures/virtual.toml)")
    group.addoption("--board", dest="hil_board", default=None, help="board of the rig to test (name or USB serial)")
    group.addoption(
        "--board-tag", dest="hil_board_tags", action="append", default=[], metavar="KEY=VALUE",
        help="test only boards whose rig tags include KEY=VALUE (repeatable; a free one first)",
    )
    group.addoption("--firmware", dest="hil_firmware", default=None, help="firmware image to flash before the tests")
    group.addoption("--hil-report", dest="hil_report", default=None, help="directory for the run's report files")
    group.addoption(
        "--hil-state-dir", dest="hil_state_dir", default=None,
        help="where virtual boards keep flash and parameters (default: a temporary directory)",
    )
    group.addoption(
        "--flash-method", dest="hil_flash_method", default=None, choices=("serial", "dfu"),
        help="how --firmware is flashed (default: the board type's: serial bootloader, DFU for betaflight)",
    )
    group.addoption(
        "--lock-wait", dest="hil_lock_wait", type=float, default=60.0,
        help="seconds to wait for a board another process holds (default 60)",
    )
    group.addoption("--run-slow", action="store_true", default=False, help="also run tests marked slow")
    group.addoption(
        "--seeds", dest="hil_seeds", default=None,
        help="fly every scenario once per seed, e.g. 0-19 or 0,3,7 (default: each file's own seed)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    report = config.getoption("hil_report")
    if report and not getattr(config.option, "xmlpath", None):
        # Before the junitxml plugin configures itself: the report directory gets JUnit XML.
        Path(report).mkdir(parents=True, exist_ok=True)
        config.option.xmlpath = str(Path(report) / "junit.xml")
    config.addinivalue_line("markers", "slow: long-running test, run only with --run-slow")
    config.addinivalue_line("markers", "board_class(*classes): the board classes a test applies to")
    config.stash[STATE] = state = HilState(config)
    if _distributing(config):
        # The xdist controller collects nothing, so the rig and --board are checked here,
        # once: a mistake is one usage error, not a crash of every worker.
        state.check()
    from hil import sigterm

    # SIGTERM (timeout, a CI cancel) tears the session down like Ctrl-C: fixtures, boards, locks.
    config.stash[_SIGTERM_UNDO] = sigterm.install()


def pytest_unconfigure(config: pytest.Config) -> None:
    undo = config.stash.get(_SIGTERM_UNDO, None)
    if undo is not None:
        undo()
    state = config.stash.get(STATE, None)
    if state is not None:
        state.close()
