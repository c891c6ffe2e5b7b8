"""Several boards at once: `hil run -n 2` on a rig of two virtual boards (pytest-xdist).

Each worker flies on a board of its own; the controller writes one JUnit XML, one
summary.json and one report.html holding every scenario exactly once, and prints one
results table; a verdict does not depend on how many boards flew the suite.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hil.errors import BoardUnavailable, ConfigError
from hil.pytest_plugin import workers
from hil.pytest_plugin.options import STATE

ROOT = Path(__file__).resolve().parent.parent
RIG = "fixtures/two-boards.toml"
#: Quick scenarios, one of which fails on purpose (its failsafe is switched off).
SCENARIOS = (
    "scenarios/rc_glitch_no_failsafe.toml",
    "scenarios/rc_jammed_bursts_no_failsafe.toml",
    "scenarios/rc_loss_land.toml",
    "tests/data/broken_failsafe.toml",
)
NAMES = {
    "rc-glitch-no-failsafe",
    "rc-jammed-bursts-no-failsafe",
    "rc-loss-land",
    "rc-loss-failsafe-disabled",
}

def _have_xdist() -> bool:
    try:
        import xdist  # noqa: F401
    except ImportError:
        return False
    return True


needs_xdist = pytest.mark.skipif(not _have_xdist(), reason="pytest-xdist is not installed (hil's dev extra)")


def _run(tmp: Path, *extra: str) -> tuple[subprocess.CompletedProcess, Path]:
    report = tmp / "report"
    proc = subprocess.run(
        [
            sys.executable, "-m", "hil.cli", "run", *SCENARIOS, "--rig", RIG,
            "--report", str(report), "--state-dir", str(tmp / "state"), *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc, report


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("two-workers"), "-n", "2")


@pytest.fixture(scope="module")
def one(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("one-worker"))


def _summary(report: Path) -> dict:
    return json.loads((report / "summary.json").read_text(encoding="utf-8"))


def _verdicts(report: Path) -> dict[str, tuple]:
    """Per scenario: its outcome and each expectation's kind, verdict and message."""
    return {
        s["name"]: (s["outcome"], [(e["kind"], e["passed"], e["message"]) for e in s["expectations"]])
        for s in _summary(report)["scenarios"]
    }


def _no_verdict(scenario: dict) -> str | None:
    """`name: error` for a scenario that ended in a harness error with nothing judged."""
    if scenario["error"] and not scenario["expectations"]:
        return f"{scenario['name']}: {scenario['error']}"
    return None


@needs_xdist
def test_two_workers_fly_on_both_boards_and_merge_one_summary(two):
    proc, report = two
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the broken scenario's FAIL, nothing else
    summary = _summary(report)
    names = [s["name"] for s in summary["scenarios"]]
    assert sorted(names) == sorted(NAMES)  # every scenario, exactly once
    assert {s["board"] for s in summary["scenarios"]} == {"copter1", "copter2"}
    assert set(summary["boards"]) == {"copter1", "copter2"}
    assert summary["exit_status"] == 1
    # in the order the scenarios were collected, as a single process lists them
    assert names == [
        "rc-glitch-no-failsafe",
        "rc-jammed-bursts-no-failsafe",
        "rc-loss-land",
        "rc-loss-failsafe-disabled",
    ]
    for s in summary["scenarios"]:
        assert (report / s["artifacts"]["tlog"]).is_file(), s["name"]


@needs_xdist
def test_two_workers_merge_one_junit_and_one_report(two):
    proc, report = two
    cases = list(ET.parse(report / "junit.xml").getroot().iter("testcase"))
    assert sorted(c.get("name") for c in cases) == sorted(NAMES)
    boards = {c.get("name"): {p.get("name"): p.get("value") for p in c.iter("property")}["board"] for c in cases}
    summary = {s["name"]: s["board"] for s in _summary(report)["scenarios"]}
    assert boards == summary  # JUnit and the summary agree on who flew what
    html = (report / "report.html").read_text(encoding="utf-8")
    assert html.count('<section class="scenario') == len(NAMES)
    for name in NAMES:
        assert html.count(f"{name} (seed") == 2  # the overview row and the section
    assert "copter1" in html and "copter2" in html


@needs_xdist
def test_two_workers_print_one_results_table_and_say_which_board_runs_what(two):
    proc, _ = two
    out = proc.stdout
    assert out.count("hil scenarios") == 1
    rows = [line for line in out.splitlines() if line.split(" ", 1)[0] in NAMES]
    assert sorted(line.split()[0] for line in rows) == sorted(NAMES)
    assert any(" copter1 " in line for line in rows) and any(" copter2 " in line for line in rows)
    assert "2 boards at once: copter" in out
    assert out.count("lockstep speed:") == 1
    # progress: each worker names itself and its board, from start to verdict
    for name in NAMES:
        started = [ln for ln in proc.stderr.splitlines() if ln.startswith("hil: [gw") and f"{name} on copter" in ln]
        assert any(ln.endswith(": started") for ln in started), proc.stderr
        assert any(": PASS" in ln or ": FAIL" in ln for ln in started), proc.stderr


@needs_xdist
def test_a_verdict_on_two_boards_is_the_verdict_on_one(one, two):
    proc1, report1 = one
    proc2, report2 = two
    assert proc1.returncode == proc2.returncode == 1
    assert {s["board"] for s in _summary(report1)["scenarios"]} == {"copter1"}
    one_, two_ = _verdicts(report1), _verdicts(report2)
    assert set(one_) == set(two_) == NAMES
    # A harness error before any expectation was judged (a command unanswered in wall
    # time on a host loaded far past its cores) is no verdict to compare.
    errors = [e for r in (report1, report2) for s in _summary(r)["scenarios"] if (e := _no_verdict(s))]
    differ = {name for name in NAMES if one_[name] != two_[name]}
    if differ and errors and all(any(name in e for e in errors) for name in differ):
        pytest.skip(f"no verdict to compare for {sorted(differ)}: {'; '.join(errors)}")
    assert two_ == one_
    assert _verdicts(report1)["rc-loss-failsafe-disabled"][0] == "FAIL"


@needs_xdist
@pytest.mark.parametrize("problem", ["rig", "board"])
def test_pytest_n_with_a_bad_rig_or_board_is_one_usage_error(tmp_path, problem):
    rig = tmp_path / "bad.toml"
    rig.write_text('[[board]]\nname = "x"\ntype = "nope"\n')
    given = ["--rig", str(rig)] if problem == "rig" else ["--rig", RIG, "--board", "nope"]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider", *given,
         "--hil-state-dir", str(tmp_path / "s"), "scenarios/hover_hold.toml"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "INTERNALERROR" not in proc.stdout + proc.stderr
    assert ("'nope' is not one of" if problem == "rig" else "no board 'nope'") in proc.stderr


# -- the pieces, without a run ---------------------------------------------------------------
def test_a_scenario_result_travels_whole_read_only_mappings_and_all():
    from hil.scenario.expect import Verdict
    from hil.scenario.load import load_scenario
    from hil.scenario.result import ScenarioResult

    scenario = load_scenario(ROOT / "scenarios" / "rc_loss_land.toml")
    expectation = scenario.expectations[0]
    result = ScenarioResult(
        scenario=scenario,
        board="copter2",
        verdicts=[Verdict(expectation, False, "it did not", 3.5, "t=3.5 RTL")],
        sim_seconds=12.0,
        wall_seconds=2.0,
        measurements={"loop_rate_hz": 400.0},
    )
    record = workers.unpack(workers.pack(result, True, {"type": "virtual"}))
    back = record["result"]
    assert back.scenario == scenario
    assert back.outcome == "FAIL" and back.board == "copter2"
    assert back.verdicts[0].message == "it did not" and back.verdicts[0].excerpt == "t=3.5 RTL"
    assert record["lockstep"] is True and record["board_info"] == {"type": "virtual"}


def test_a_result_that_will_not_pickle_travels_without_its_timeline():
    from hil.scenario.load import load_scenario
    from hil.scenario.result import ScenarioResult

    scenario = load_scenario(ROOT / "scenarios" / "rc_loss_land.toml")
    result = ScenarioResult(scenario=scenario, board="copter1", timeline=lambda: None)  # not picklable
    back = workers.unpack(workers.pack(result, True, {}))["result"]
    assert back.timeline is None
    assert any("timeline and loop periods left on the worker" in n for n in back.notes)


class _Node:
    def __init__(self, config, gateway_id: str, output: dict) -> None:
        self.config = config
        self.gateway = types.SimpleNamespace(id=gateway_id)
        self.workeroutput = output


class _State:
    def __init__(self) -> None:
        self.unavailable: dict = {}


def test_the_controller_keeps_a_board_a_worker_found_unavailable():
    config = types.SimpleNamespace(stash=pytest.Stash())
    state = config.stash[STATE] = _State()
    lost = BoardUnavailable("board copter2: not answering")
    lost.exit_code = 4
    facts = workers.worker_facts(types.SimpleNamespace(claimed_board="copter2", unavailable={"copter2": lost}))
    workers.pytest_testnodedown(_Node(config, "gw1", {"hil": facts}), None)
    workers.pytest_testnodedown(_Node(config, "gw0", {"hil": {"board": "copter1", "unavailable": {}}}), None)
    workers.pytest_testnodedown(_Node(config, "gw2", {}), "crashed")  # a worker that died says nothing
    assert str(state.unavailable["copter2"]) == "board copter2: not answering"
    assert state.unavailable["copter2"].exit_code == 4
    assert workers.worker_boards(config) == {"gw0": "copter1", "gw1": "copter2"}


def test_merged_results_list_in_collection_order_once_each():
    gathered = workers.Merged()
    gathered.order = ["a.toml::a", "b.toml::b", "c.toml::c"]
    for nodeid in ("c.toml::c", "a.toml::a", "c.toml::c"):
        gathered.flown[nodeid] = {"result": nodeid}
    assert gathered.results() == ["a.toml::a", "c.toml::c"]


@pytest.mark.parametrize(
    ("wanted", "board", "expected", "note"),
    [
        (None, None, 1, False),
        (2, None, 2, False),
        (3, None, 2, True),
        (2, "copter1", 1, True),
    ],
)
def test_hil_run_gives_at_most_one_worker_per_board(capsys, wanted, board, expected, note):
    from hil.cli import _workers

    args = types.SimpleNamespace(workers=wanted, board=board)
    if expected > 1 and not _have_xdist():
        pytest.skip("pytest-xdist is not installed")
    assert _workers(args, 2) == expected
    assert ("one per board" in capsys.readouterr().err) is note


def test_hil_run_without_pytest_xdist_says_what_to_install(monkeypatch):
    from hil.cli import _workers

    monkeypatch.setitem(sys.modules, "xdist", None)  # import xdist fails
    with pytest.raises(ConfigError, match="pytest-xdist"):
        _workers(types.SimpleNamespace(workers=2, board=None), 2)
    with pytest.raises(ConfigError, match="at least 1"):
        _workers(types.SimpleNamespace(workers=0, board=None), 2)


# -- hil bench --boards ----------------------------------------------------------------------
def test_makespan_models_boards_on_hosts_of_their_own():
    from hil.bench import makespan

    assert makespan([4.0, 3.0, 3.0, 2.0], 1) == 12.0
    assert makespan([4.0, 3.0, 3.0, 2.0], 2) == 6.0  # 4+2 and 3+3
    assert makespan([4.0, 3.0, 3.0, 2.0], 8) == 4.0  # never below the longest scenario


@needs_xdist
def test_bench_times_the_scenarios_on_one_board_and_on_two(tmp_path):
    from hil import bench

    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    for i in range(2):
        (scenarios / f"idle{i}.toml").write_text(
            f'[scenario]\nname = "bench-idle-{i}"\nduration = 1.0\n\n'
            '[setup]\nmode = "STABILIZE"\narmed = false\n\n'
            '[[expect]]\nkind = "disarmed"\nafter = "start"\nwithin = 1.0\n'
        )
    one, two, speedup = bench.boards_wall_time(boards=2, runs=1, scenarios=scenarios, log=lambda _: None)
    assert one.runs and two.runs and speedup.runs, speedup.detail
    assert speedup.runs[0] == pytest.approx(one.runs[0] / two.runs[0])
    assert speedup.extra["exit_codes"] == {"1": [0], "2": [0]}, speedup.detail
    assert speedup.extra["boards_used"] == ["copter1", "copter2"]
    assert speedup.extra["same_verdicts"] is True
    assert len(speedup.extra["scenario_walls_1_board"]) == 2
    assert set(speedup.extra["modelled_speedup"]) == {"2", "4", "8"}
    assert "Modelled" in speedup.detail and "verdicts the same" in speedup.detail


def test_bench_boards_is_opt_in_and_refuses_fewer_than_two():
    from hil import bench
    from hil.cli import main

    figures = bench.boards_wall_time(boards=1, log=lambda _: None)
    assert all(not f.runs and "at least 2" in f.detail for f in figures)
    assert main(["bench", "--boards", "1"]) == 4


# -- boards chosen by tags ---------------------------------------------------------------------
_TAGGED_RIG = """[rig]
name = "tagged"
[[board]]
name = "copter1"
usb_serial = "HILTAGX1"
tags = {{ frame = "quad", site = "a" }}
[[board]]
name = "copter2"
usb_serial = "HILTAGX2"
tags = {{ frame = "hexa" }}
[[board]]
name = "copter3"
usb_serial = "HILTAGX3"
tags = {{ frame = "quad", site = "b" }}
"""
_GROUND = "tests/data/labgrid/ground_rc_glitch.toml"


def _tagged_run(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess, Path]:
    rig = tmp_path / "tagged.toml"
    rig.write_text(_TAGGED_RIG.format())
    report = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "hil.cli", "run", "--rig", str(rig), "--report", str(report),
         "--state-dir", str(tmp_path / "state"), *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    return proc, report


def _boards_flown(report: Path) -> set[str]:
    return {s["board"] for s in _summary(report)["scenarios"]}


@needs_xdist
@pytest.mark.slow  # about 35 s here: three workers' sessions start, four ground runs
def test_two_workers_fly_only_on_the_boards_carrying_the_tag(tmp_path):
    proc, report = _tagged_run(
        tmp_path, "-n", "3", "--board-tag", "frame=quad", "--seeds", "0-3", _GROUND,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    # Two boards carry frame=quad: -n 3 becomes two workers, one on each; copter2 never flies.
    assert "the rig has 2 board(s) carrying frame=quad, so 2 worker(s)" in proc.stderr
    assert _boards_flown(report) == {"copter1", "copter3"}


def test_a_tag_picks_the_free_board_among_those_carrying_it(tmp_path):
    from hil.locks import BoardLock

    # A virtual board's lock lives in its rig's state directory (VirtualBoard.lock_dir).
    held = BoardLock("HILTAGX1", tmp_path / "state" / "locks", wait=0.0).acquire()  # someone flies copter1
    try:
        proc, report = _tagged_run(tmp_path, "--board-tag", "frame=quad", _GROUND)
    finally:
        held.release()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert _boards_flown(report) == {"copter3"}


def test_workers_are_counted_among_the_boards_carrying_the_tag(capsys):
    from hil.cli import _workers

    if not _have_xdist():
        pytest.skip("pytest-xdist is not installed")
    args = types.SimpleNamespace(workers=3, board=None, board_tags=["frame=quad"])
    assert _workers(args, 2) == 2
    assert "the rig has 2 board(s) carrying frame=quad, so 2 worker(s)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--board-tag", "frame=octo"), "no board carries the tags frame=octo; boards: copter1: frame=quad,site=a; copter2: frame=hexa"),
        (("--board-tag", "frame"), "--board-tag 'frame': give KEY=VALUE"),
        (("--board", "copter2", "--board-tag", "frame=quad"), "board copter2 does not carry the tags frame=quad; it has frame=hexa"),
    ],
)
def test_hil_run_with_a_tag_no_board_carries_is_one_usage_error(tmp_path, extra, message):
    proc, _ = _tagged_run(tmp_path, *extra, _GROUND)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
