"""The pytest plugin: options, fixtures, scenario files as test items, the results table.

Registered through the `pytest11` entry point, so any project that installs `hil` gets
the fixtures `rig`, `board`, `board_session`, `autopilot` and `sim`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from hil.errors import (
    EXIT_USAGE,
    BoardNotAnswering,
    BoardUnavailable,
    ConfigError,
    HilError,
    LinkError,
    ScenarioError,
)
from hil.locks import BoardBusy, BoardLock
from hil.rig import DEFAULT_RIG, Board, Rig
from hil.session import BoardSession, session_for
from hil.sim.loop import ClosedLoop

_STATE = pytest.StashKey["HilState"]()
_SIGTERM_UNDO = pytest.StashKey["Callable[[], None]"]()


class HilState:
    """Per-session state of the plugin: the rig, which is started once, and the results."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.rig_path = _resolve_rig(config)
        self.board_name: str | None = config.getoption("hil_board")
        self.firmware: str | None = config.getoption("hil_firmware")
        report = config.getoption("hil_report")
        self.report_dir = Path(report) if report else None
        state_dir = config.getoption("hil_state_dir")
        self.state_dir = Path(state_dir) if state_dir else None
        self.flash_method: str = config.getoption("hil_flash_method")
        self.lock_wait: float = config.getoption("hil_lock_wait")
        self._rig: Rig | None = None
        self._locks: dict[str, BoardLock] = {}
        self.flashed: dict[str, object] = {}
        self.results: list = []
        #: Per board name: type, USB serial and firmware (version, sha256 when flashed).
        self.board_info: dict[str, dict[str, str]] = {}
        self.started_unix = time.time()
        self._scenario_dirs: set[str] = set()
        #: Boards found missing, busy or stopped answering, name -> the first such error:
        #: every later use of the board fails at once with it (labgrid's never_retry).
        self.unavailable: dict[str, BoardUnavailable] = {}

    def check(self) -> None:
        """Load the rig and find the board under test, before any test runs: a mistake
        there is one usage error for the session, not one traceback per scenario."""
        try:
            if self._rig is None:
                self._rig = Rig.load(self.rig_path, work_dir=self.state_dir)
            self._rig.select(self.board_name)
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
        try:
            board = self.rig().select(self.board_name)
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
            board.start()
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
        result = board.flasher(self.flash_method).flash(image)
        board.start()  # a DFU flash power-cycles the board; make sure it runs
        return result

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
        return ScenarioCapture(scenario_dir(self.report_dir, name, self._scenario_dirs))

    def close(self) -> None:
        try:
            if self._rig is not None:
                self._rig.stop()
                self._rig = None
        finally:
            for lock in self._locks.values():
                lock.release()
            self._locks.clear()


def _resolve_rig(config: pytest.Config) -> Path:
    return _resolve_rig_path(config.getoption("hil_rig"), Path(str(config.rootpath)))


def _resolve_rig_path(given: str | None, root: Path | None = None) -> Path:
    """The rig file to use: the one given, else fixtures/virtual.toml, else the packaged one."""
    if given:
        return Path(given)
    local = (root or Path.cwd()) / "fixtures" / "virtual.toml"
    return local if local.exists() else DEFAULT_RIG


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hil", "hardware-in-the-loop harness")
    group.addoption("--rig", dest="hil_rig", default=None, help="rig file (default: fixtures/virtual.toml)")
    group.addoption("--board", dest="hil_board", default=None, help="board of the rig to test (name or USB serial)")
    group.addoption("--firmware", dest="hil_firmware", default=None, help="firmware image to flash before the tests")
    group.addoption("--hil-report", dest="hil_report", default=None, help="directory for the run's report files")
    group.addoption(
        "--hil-state-dir", dest="hil_state_dir", default=None,
        help="where virtual boards keep flash and parameters (default: a temporary directory)",
    )
    group.addoption(
        "--flash-method", dest="hil_flash_method", default="serial", choices=("serial", "dfu"),
        help="how --firmware is flashed (default: serial bootloader)",
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
    config.stash[_STATE] = HilState(config)
    from hil import sigterm

    # SIGTERM (timeout, a CI cancel) tears the session down like Ctrl-C: fixtures, boards, locks.
    config.stash[_SIGTERM_UNDO] = sigterm.install()


def pytest_unconfigure(config: pytest.Config) -> None:
    undo = config.stash.get(_SIGTERM_UNDO, None)
    if undo is not None:
        undo()
    state = config.stash.get(_STATE, None)
    if state is not None:
        state.close()


#: The fixtures that need the rig's board.
_BOARD_FIXTURES = frozenset({"rig", "board", "board_session", "autopilot", "sim", "flashed_firmware"})


def pytest_collection_finish(session: pytest.Session) -> None:
    """A broken rig file or an unknown --board ends the session here, once, before any
    test runs (pytest's exit code 4), when a collected test needs the board."""
    needs_board = any(
        isinstance(item, ScenarioItem) or _BOARD_FIXTURES & set(getattr(item, "fixturenames", ()))
        for item in session.items
    )
    if needs_board:
        session.config.stash[_STATE].check()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A board that cannot be reached is reported in one line (its reason), not with the
    harness's traceback; so is any harness error of a scenario's setup."""
    report = yield
    error = call.excinfo.value if call.excinfo is not None else None
    if report.failed and (
        isinstance(error, BoardUnavailable) or (isinstance(item, ScenarioItem) and isinstance(error, HilError))
    ):
        report.longrepr = f"{type(error).__name__}: {error}"
    return report


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


# -- scenario files as test items --------------------------------------------------------
def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    """A .toml file is a scenario when it lies under the project's scenarios/, when it is
    named on the command line, or when it lies under a folder named there and has a
    [scenario] table (so `hil run my_scenarios/` works, and `pytest .` leaves
    pyproject.toml alone)."""
    if file_path.suffix != ".toml":
        return None
    config = parent.config
    root = Path(str(config.rootpath))
    if root / "scenarios" in file_path.parents:
        return ScenarioFile.from_parent(parent, path=file_path)
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        return None  # testpaths or the current directory: only scenarios/
    where = Path(config.invocation_params.dir)
    given = [(where / arg.split("::")[0]).resolve() for arg in config.args]
    path = file_path.resolve()
    if path in given or (any(d in path.parents for d in given) and declares_scenario(path)):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


def declares_scenario(path: Path) -> bool:
    """True for a TOML file with a [scenario] table, and for one too broken to tell: its
    error is then reported, not silently skipped."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return True
    return "scenario" in data


def scenario_paths(targets: Iterable[str]) -> list[Path]:
    """The scenario files `hil run TARGET...` runs: files as given, and under each folder
    the .toml files that declare a [scenario]. Raises ConfigError for a target that does
    not exist."""
    out: list[Path] = []
    for target in targets:
        path = Path(target.split("::")[0])
        if path.is_dir():
            out += [p for p in sorted(path.rglob("*.toml")) if declares_scenario(p)]
        elif path.is_file():
            out.append(path)
        else:
            raise ConfigError(f"{path} does not exist (give scenario files or folders of them)")
    return out


class ScenarioFile(pytest.File):
    """One scenario file: one item, or with `--seeds` one item per seed (`name[seed=N]`)."""

    def collect(self):
        from dataclasses import replace

        from hil.scenario.load import load_scenario, parse_seeds

        try:
            scenario = load_scenario(self.path)
            seeds = self.config.getoption("hil_seeds")
            if seeds is None:
                yield ScenarioItem.from_parent(self, name=scenario.name, scenario=scenario)
                return
            for seed in parse_seeds(seeds):
                yield ScenarioItem.from_parent(
                    self, name=f"{scenario.name}[seed={seed}]", scenario=replace(scenario, seed=seed)
                )
        except ScenarioError as exc:
            raise _ScenarioCollectError(str(exc)) from None


class _ScenarioCollectError(pytest.Collector.CollectError):
    pass


class ScenarioFailed(Exception):
    """A scenario's expectations did not hold; the message is the technician's report."""


class ScenarioItem(pytest.Item):
    """One scenario file on the board under test.

    Setup flies the scenario: whatever keeps the board from answering (missing, busy,
    frozen) is raised there, so pytest reports an ERROR of the bench, never a verdict.
    The call judges the recording: a FAIL there is the firmware's.
    """

    def __init__(self, *, scenario, **kwargs) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self._result = None
        self._problems: list[str] = []

    def setup(self) -> None:
        from hil.scenario.runner import run_scenario

        state: HilState = self.config.stash[_STATE]
        board = state.board()
        if board.board_class not in self.scenario.applies_to:
            pytest.skip(
                f"scenario applies to {', '.join(self.scenario.applies_to)} boards; "
                f"{board.name} is a {board.board_class} board"
            )
        lacks = self.scenario.lacked_by(board.profile)
        if lacks is not None:
            pytest.skip(f"board {board.name}: {lacks}")
        session = session_for(board)
        try:
            session.__enter__()
        except (BoardNotAnswering, LinkError) as exc:
            with contextlib.suppress(HilError):
                session.__exit__(None, None, None)
            raise state.lost(board, str(exc)) from None
        capture = state.capture_for(self.scenario, self.name)
        progress = _Progress(self.config, self.scenario.name, board.name)
        try:
            firmware = state.firmware_info(board, session)
            progress.start(session)
            try:
                result = run_scenario(self.scenario, session, capture=capture)
            finally:
                progress.stop()
        finally:
            session.__exit__(None, None, None)
        progress.done(result)
        if capture is not None:
            from hil.report import finish_scenario

            try:
                finish_scenario(result, capture)
            except OSError as exc:
                result.notes.append(f"report files for this scenario not written: {exc}")
        state.results.append(result)
        self.user_properties.extend(
            [
                ("board", board.name),
                ("usb_serial", board.usb_serial),
                ("rig", str(state.rig_path)),
                ("firmware_version", firmware.get("firmware_version", "unknown")),
            ]
        )
        for key in ("firmware_sha256", "firmware_file_sha256", "autopilot", "firmware_source"):
            if firmware.get(key):
                self.user_properties.append((key, firmware[key]))
        self.user_properties.extend(
            [
                ("sim_seconds", f"{result.sim_seconds:.2f}"),
                ("wall_seconds", f"{result.wall_seconds:.2f}"),
                ("lockstep_speed", f"{result.loop_speed:.1f}"),
                ("overall_speed", f"{result.speed:.1f}"),
            ]
        )
        if capture is not None:
            self.user_properties.append(("report_dir", str(capture.dir)))
        if result.board_error is not None:
            raise state.lost(board, result.board_error)
        self._result = result
        self._problems = list(session.problems)

    def runtest(self) -> None:
        result = self._result
        assert result is not None, "setup flies the scenario"
        problems = self._problems
        if not result.passed:
            text = result.failure_text()
            if problems:
                text += "\n  after the test: " + "; ".join(problems)
            raise ScenarioFailed(text)
        if problems:
            raise ScenarioFailed("after the test: " + "; ".join(problems))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ScenarioFailed | HilError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, 0, f"scenario {self.scenario.name}"


# -- fixtures ----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def rig(request: pytest.FixtureRequest) -> Rig:
    """The rig from --rig (default: the virtual rig), started on first use."""
    return request.config.stash[_STATE].rig()


@pytest.fixture(scope="session")
def flashed_firmware(request: pytest.FixtureRequest):
    """The FlashResult of flashing --firmware onto the board (done once per session), or None."""
    state: HilState = request.config.stash[_STATE]
    board = state.board()
    return state.flashed.get(board.name)


@pytest.fixture
def board(request: pytest.FixtureRequest) -> Board:
    """The board under test (--board, else the rig's first board), running."""
    return request.config.stash[_STATE].board()


@pytest.fixture
def board_session(request: pytest.FixtureRequest, board: Board) -> Iterator[BoardSession]:
    """A connected, freshly started board; after the test it must be disarmed and answering."""
    session = session_for(board)
    try:
        session.__enter__()
    except (BoardNotAnswering, LinkError) as exc:
        with contextlib.suppress(HilError):
            session.__exit__(None, None, None)
        raise request.config.stash[_STATE].lost(board, str(exc)) from None
    yield session
    problems = session.cleanup()
    if problems:
        pytest.fail("after the test: " + "; ".join(problems), pytrace=False)


@pytest.fixture
def autopilot(board_session: BoardSession):
    """The adapter connected to the board under test (MAVLink, or MSP for an MSP board)."""
    return board_session.autopilot


@pytest.fixture
def sim(board_session: BoardSession) -> Iterator[ClosedLoop]:
    """The closed loop flying the board's vehicle, running in the background
    (lockstep MAVLink, or real time over UDP for Betaflight SITL)."""
    loop = board_session.make_sim()
    loop.start()
    yield loop
    loop.stop()


# -- the results table -------------------------------------------------------------------
def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is None or not state.results:
        return
    tr = terminalreporter
    tr.section("hil scenarios")
    header = f"{'scenario':34} {'board':10} {'result':7} {'sim s':>7} {'wall s':>7} {'loop':>7} {'overall':>8}"
    tr.write_line(header)
    tr.write_line("-" * len(header))
    sim_total = wall_total = loop_wall = 0.0
    realtime = []
    sweep = config.getoption("hil_seeds", None)
    for r in state.results:
        verdict = r.outcome
        real = "loop_scheduler" in r.measurements  # a real-time loop (Betaflight SITL)
        loop_col = f"{r.loop_speed:6.1f}x" if not real else "   real"
        name = r.scenario.name if sweep is None else f"{r.scenario.name}[seed={r.scenario.seed}]"
        tr.write_line(
            f"{name[:34]:34} {r.board[:10]:10} {verdict:7} {r.sim_seconds:7.1f} "
            f"{r.wall_seconds:7.2f} {loop_col} {r.speed:7.1f}x"
        )
        if real:
            realtime.append(r)
            continue
        sim_total += r.sim_seconds
        wall_total += r.wall_seconds
        if r.loop_speed > 0:
            loop_wall += r.sim_seconds / r.loop_speed
    for r in realtime:
        tr.write_line(f"{r.scenario.name} on {r.board}, real-time loop timing:")
        for note in r.notes:
            tr.write_line(f"  {note}")
    limited = [(r, m) for r in state.results for m in getattr(r, "limit_timing", []) if m.minimum is not None or m.maximum is not None]
    if limited:
        tr.write_line("timing limits:")
        for r, m in limited:
            tr.write_line(f"  {r.scenario.name}: {m}")
    if wall_total > 0:
        loop = f"{sim_total / loop_wall:.1f}x in the closed loop, " if loop_wall > 0 else ""
        tr.write_line(
            f"lockstep speed: {loop}{sim_total / wall_total:.1f}x overall "
            f"({sim_total:.0f} simulated s in {wall_total:.1f} wall s, setup and teardown included)"
        )


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_STATE].started = time.monotonic()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config.stash.get(_STATE, None)
    if state is not None and state.unavailable and exitstatus in (
        pytest.ExitCode.OK,
        pytest.ExitCode.TESTS_FAILED,
    ):
        # No verdict could be reached on some board: that is the run's outcome (3, or 4
        # when the rig asks for something this host lacks), ahead of any failed test.
        session.exitstatus = next(iter(state.unavailable.values())).exit_code
        exitstatus = session.exitstatus
    if state is None or state.report_dir is None or not state.results:
        return
    from hil.report.html import write_report
    from hil.report.summary import RunInfo, summary

    state.report_dir.mkdir(parents=True, exist_ok=True)
    run = RunInfo(
        rig=str(state.rig_path),
        started=state.started_unix,
        finished=time.time(),
        exit_status=int(exitstatus),
        boards=state.board_info,
    )
    document = summary(run, state.results, state.report_dir)
    (state.report_dir / "summary.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    write_report(state.report_dir / "report.html", run, state.results)


# -- progress while it runs ----------------------------------------------------------------
class _Progress:
    """One line when a scenario starts, one every `every` wall seconds while it runs (with
    the vehicle time reached), one when it ends; on the terminal, past output capture."""

    def __init__(self, config: pytest.Config, scenario: str, board: str, every: float = 10.0) -> None:
        self.config = config
        self.scenario = scenario
        self.board = board
        self.every = every
        self.enabled = config.getoption("verbose", 0) > -2
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wall0 = time.monotonic()

    def _write(self, text: str) -> None:
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is None or not self.enabled:
            return
        capman = self.config.pluginmanager.get_plugin("capturemanager")
        quiet = capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext()
        with quiet:
            tw = getattr(tr, "_tw", None)
            if tw is not None and getattr(tw, "width_of_current_line", 0):
                tr.write("\n")  # after the progress dots of -q
            tr.write_line(f"hil: {text}")

    def start(self, session) -> None:
        self._wall0 = time.monotonic()
        self._write(f"{self.scenario} on {self.board}: started")
        if not self.enabled:
            return
        autopilot = session.autopilot
        t0 = getattr(autopilot, "vehicle_time", None)

        def tick() -> None:
            while not self._stop.wait(self.every):
                wall = time.monotonic() - self._wall0
                t = getattr(autopilot, "vehicle_time", None)
                sim = f"{t - t0:.1f} s vehicle time, " if isinstance(t, float) and t0 is not None else ""
                self._write(f"{self.scenario}: running, {sim}{wall:.0f} s wall")

        self._thread = threading.Thread(target=tick, name="hil-progress", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None

    def done(self, result) -> None:
        verdict = result.outcome
        self._write(
            f"{self.scenario}: {verdict}, {result.sim_seconds:.1f} s simulated in "
            f"{result.wall_seconds:.1f} s wall ({result.speed:.1f}x)"
        )
