"""Scenario files as test items (`ScenarioFile`, `ScenarioItem`), and the collection
hooks: which .toml files are scenarios, the board check before any test runs, the
--run-slow skip, and one-line reports for a board that cannot be reached."""

from __future__ import annotations

import contextlib
import tomllib
from collections.abc import Iterable
from pathlib import Path

import pytest

from hil.errors import (
    BoardNotAnswering,
    BoardUnavailable,
    ConfigError,
    HilError,
    LinkError,
    ScenarioError,
)
from hil.pytest_plugin.options import STATE, HilState
from hil.pytest_plugin.reporting import Progress
from hil.pytest_plugin.workers import RESULT_ATTR, pack, worker_id
from hil.session import session_for

#: The fixtures that need the rig's board.
_BOARD_FIXTURES = frozenset({"rig", "board", "board_session", "autopilot", "sim", "flashed_firmware"})


# -- collection hooks --------------------------------------------------------------------
def pytest_collection_finish(session: pytest.Session) -> None:
    """A broken rig file or an unknown --board ends the session here, once, before any
    test runs (pytest's exit code 4), when a collected test needs the board."""
    needs_board = any(
        isinstance(item, ScenarioItem) or _BOARD_FIXTURES & set(getattr(item, "fixturenames", ()))
        for item in session.items
    )
    if needs_board:
        session.config.stash[STATE].check()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A board that cannot be reached is reported in one line (its reason), not with the
    harness's traceback; so is any harness error of a scenario's setup."""
    report = yield
    flown = getattr(item, "flown", None)
    if call.when == "setup" and flown is not None and worker_id(item.config) is not None:
        # An xdist worker: the controller merges this flight into the run's table,
        # summary.json and report.html (hil.pytest_plugin.workers).
        packed = pack(*flown)
        if packed is not None:
            setattr(report, RESULT_ATTR, packed)
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


# -- which files are scenarios -----------------------------------------------------------
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


# -- the items ---------------------------------------------------------------------------
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

    #: A scenario asks for no fixtures. Other plugins read `item.fixturenames` of every
    #: item as if each were a pytest.Function (labgrid's pytest_runtest_setup does).
    fixturenames: tuple[str, ...] = ()

    def __init__(self, *, scenario, **kwargs) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self._result = None
        self._problems: list[str] = []
        self.flown: tuple | None = None

    def setup(self) -> None:
        from hil.scenario.runner import run_scenario

        state: HilState = self.config.stash[STATE]
        board = state.board()
        if board.board_class not in self.scenario.applies_to:
            pytest.skip(
                f"scenario applies to {', '.join(self.scenario.applies_to)} boards; "
                f"{board.name} is a {board.board_class} board"
            )
        lacks = self.scenario.lacked_by(board.profile, board.capabilities)
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
        progress = Progress(self.config, self.scenario.name, board.name)
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
        state.lockstep[board.name] = board.lockstep
        state.results.append(result)
        #: What this item flew, for an xdist controller: (result, lockstep, firmware facts).
        self.flown = (result, board.lockstep, firmware)
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
