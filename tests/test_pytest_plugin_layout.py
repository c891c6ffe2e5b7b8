"""The plugin package: pytest loads every hook and fixture of its submodules through the
one entry module, and the fixtures' names and the real-time column stay what they were."""

from __future__ import annotations

import importlib
import inspect
import types

import pytest
from _pytest.fixtures import getfixturemarker

import hil.pytest_plugin as plugin
from hil.pytest_plugin import reporting

SUBMODULES = ("options", "fixtures", "items", "reporting", "workers")
FIXTURES = {"rig", "flashed_firmware", "board", "board_session", "autopilot", "sim"}


def _defined_in(module: types.ModuleType):
    for name, obj in vars(module).items():
        if getattr(obj, "__module__", None) == module.__name__ or (
            getfixturemarker(obj) is not None and inspect.getmodule(obj) is module
        ):
            yield name, obj


def test_the_entry_point_names_the_package():
    from importlib.metadata import entry_points

    (ep,) = [ep for ep in entry_points(group="pytest11") if ep.name == "hil"]
    assert ep.value == "hil.pytest_plugin"


def test_pytest_registers_the_package_as_the_hil_plugin(pytestconfig):
    assert pytestconfig.pluginmanager.get_plugin("hil") is plugin


@pytest.mark.parametrize("submodule", SUBMODULES)
def test_every_hook_of_a_submodule_is_registered(pytestconfig, submodule):
    module = importlib.import_module(f"hil.pytest_plugin.{submodule}")
    pm = pytestconfig.pluginmanager
    registered = {
        impl.function
        for caller in pm.get_hookcallers(plugin) or ()
        for impl in caller.get_hookimpls()
        if impl.plugin is plugin
    }
    hooks = {name: obj for name, obj in _defined_in(module) if name.startswith("pytest_")}
    for name, obj in hooks.items():
        assert getattr(plugin, name, None) is obj, f"{submodule}.{name} is not exported by hil.pytest_plugin"
        assert obj in registered, f"{submodule}.{name} is not registered with pytest"


def test_every_fixture_is_exported_by_the_entry_module():
    from hil.pytest_plugin import fixtures

    found = {name for name, obj in _defined_in(fixtures) if getfixturemarker(obj) is not None}
    assert found == FIXTURES
    for submodule in SUBMODULES:
        module = importlib.import_module(f"hil.pytest_plugin.{submodule}")
        for name, obj in _defined_in(module):
            if getfixturemarker(obj) is not None:
                assert getattr(plugin, name) is obj, f"fixture {name} is not exported"


def test_pytest_sees_the_fixtures(pytester):
    result = pytester.runpytest("--fixtures", "-p", "no:cacheprovider")
    out = result.stdout.str()
    for name in FIXTURES:
        assert f"\n{name}" in out, name


# -- the results table tells a real-time board by the board's lockstep -------------------
class _Scenario:
    def __init__(self, name: str) -> None:
        self.name = name
        self.seed = 0


class _Result:
    def __init__(self, name: str, board: str, measurements=None, notes=()) -> None:
        self.scenario = _Scenario(name)
        self.board = board
        self.outcome = "PASS"
        self.sim_seconds = 40.0
        self.wall_seconds = 4.0
        self.loop_speed = 20.0
        self.speed = 10.0
        self.measurements = dict(measurements or {})
        self.notes = list(notes)
        self.limit_timing = []


class _Terminal:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def section(self, title: str) -> None:
        self.lines.append(f"== {title}")

    def write_line(self, line: str) -> None:
        self.lines.append(line)


class _State:
    def __init__(self, results, lockstep) -> None:
        self.results = results
        self.lockstep = lockstep


class _Config:
    def __init__(self, state) -> None:
        from hil.pytest_plugin.options import STATE

        self.stash = pytest.Stash()
        self.stash[STATE] = state

    def getoption(self, name, default=None):
        return default


def _table(results, lockstep) -> list[str]:
    tr = _Terminal()
    reporting.pytest_terminal_summary(tr, 0, _Config(_State(results, lockstep)))
    return tr.lines


def test_a_lockstep_board_shows_its_loop_speed_whatever_it_measured():
    lines = _table([_Result("hover", "virt", {"loop_scheduler": "fifo"})], {"virt": True})
    assert any(line.startswith("hover") and "  20.0x" in line for line in lines)
    assert not any("real-time loop timing" in line for line in lines)
    assert any(line.startswith("lockstep speed: 20.0x in the closed loop, 10.0x overall") for line in lines)


def test_a_board_not_in_lockstep_is_a_real_time_loop_whatever_it_measured():
    lines = _table([_Result("hover", "sitl", {}, notes=["loop 1000 Hz"])], {"sitl": False})
    assert any(line.startswith("hover") and "   real" in line for line in lines)
    assert "hover on sitl, real-time loop timing:" in lines
    assert "  loop 1000 Hz" in lines
    assert not any(line.startswith("lockstep speed") for line in lines)


# -- the sim fixture on a board that cannot give one --------------------------------------
_FAKE_SESSIONS = '''
import pytest


class FakeBoard:
    name = "bench1"
    type_name = "{type_name}"
    board_class = "{board_class}"
    simulated = {simulated}


class FakeSession:
    board = FakeBoard()

    def make_sim(self):
        {make_sim}


@pytest.fixture
def board_session():
    return FakeSession()
'''


def _run_sim_test(pytester, **kw):
    pytester.makeconftest(_FAKE_SESSIONS.format(**kw))
    pytester.makepyfile("def test_flies(sim):\n    pass\n")
    return pytester.runpytest("-rs", "-p", "no:cacheprovider")


def test_sim_on_a_board_that_flies_its_own_physics_is_skipped_with_the_reason(pytester):
    result = _run_sim_test(
        pytester, type_name="mavlink", board_class="mavlink", simulated=False,
        make_sim="raise AssertionError('not called')",
    )
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*board bench1 (mavlink) flies on its own sensors*sim fixture needs a board*"])


def test_sim_on_an_msp_board_without_a_simulator_link_is_skipped_with_the_reason(pytester):
    result = _run_sim_test(
        pytester, type_name="msp-uart", board_class="msp", simulated=True,
        make_sim="return self.board.sitl.fc_ip",
    )
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*board bench1 (msp-uart) cannot give the sim fixture a closed loop*'sitl'*"])


def test_an_attribute_error_inside_the_loop_stays_an_error(pytester):
    result = _run_sim_test(
        pytester, type_name="virtual", board_class="mavlink", simulated=True,
        make_sim="return object().start_loop",
    )
    result.assert_outcomes(errors=1)
