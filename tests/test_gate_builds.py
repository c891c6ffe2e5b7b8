"""`hil gate` with builds: an executable, defaults (.parm) files, or both per side
(ardupilot-sitl), without the firmware. The CLI and the defaults files' checks, the
evidence (executable and every defaults file by sha256, the parameters that differ and
their values read back from the board), the scenario's setup leaving the gated
parameters alone, and a restart of a stand-in SITL with the other side's files. Flying
the gate on real ArduCopter SITL: tests/test_gate_ardupilot.py."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil import gate as gate_module
from hil.cli import main
from hil.errors import ConfigError
from hil.gate import Build, RunRecord, check_builds, run_gate, write_evidence
from hil.profiles.ardupilot import read_param_file
from hil.rig import Rig
from hil.scenario.load import load_scenario

ROOT = Path(__file__).resolve().parent.parent
RC_LOSS_RTL = ROOT / "scenarios" / "rc_loss_rtl.toml"
RELEASE = ROOT / "firmware_images" / "hilcopter-1.0.0.apj"
FAKE_SITL = Path(__file__).with_name("fake_arducopter.py")


def _exe(tmp_path: Path, name: str = "arducopter") -> Path:
    exe = tmp_path / name
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} {FAKE_SITL} \"$@\"\n")
    exe.chmod(0o755)
    return exe


def _parm(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _ap_rig(tmp_path: Path, exe: Path, instance: int = 42) -> Rig:
    path = tmp_path / "ap.toml"
    path.write_text(f'[[board]]\nname = "ap"\ntype = "ardupilot-sitl"\nexecutable = "{exe}"\ninstance = {instance}\n')
    return Rig.load(path, work_dir=tmp_path / "state")


# -- defaults files ---------------------------------------------------------------------


def test_a_defaults_file_is_read_as_ardupilot_reads_it(tmp_path):
    path = _parm(
        tmp_path, "a.parm",
        "# comment\n\nRC_FS_TIMEOUT 3\nFS_THR_ENABLE,1\nFS_GCS_TIMEOUT=5  # trailing\nBATT_CAPACITY\t3300\n"
        "SYSID_THISMAV 2 @READONLY\n",
    )
    assert read_param_file(path) == {
        "RC_FS_TIMEOUT": 3.0, "FS_THR_ENABLE": 1.0, "FS_GCS_TIMEOUT": 5.0, "BATT_CAPACITY": 3300.0,
        "SYSID_THISMAV": 2.0,
    }


@pytest.mark.parametrize(
    "text, message",
    [
        ("RC_FS_TIMEOUT 3\nthis is garbage\n", "line 2: 'this is garbage' is not 'NAME VALUE'"),
        ("RC_FS_TIMEOUT\n", "line 1"),
        ("RC_FS_TIMEOUT three\n", "'three' is not a number"),
        ("RC_FS_TIMEOUT nan\n", "is not a number"),
        ("rc_fs_timeout 3\n", "not an ArduPilot parameter name"),
        ("A_NAME_LONGER_THAN_16 1\n", "at most 16 characters"),
        ("# only a comment\n", "no 'NAME VALUE' line"),
        ("\x00\x01\x02 \x03\n", "line 1"),
    ],
)
def test_garbage_in_a_defaults_file_is_one_line_naming_the_line(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as err:
        read_param_file(_parm(tmp_path, "bad.parm", text))
    assert "\n" not in str(err.value)


def test_an_unreadable_defaults_file_is_a_config_error(tmp_path):
    path = tmp_path / "bin.parm"
    path.write_bytes(b"\xff\xfe\x00RC")
    with pytest.raises(ConfigError, match="cannot read it"):
        read_param_file(path)


names = st.from_regex(r"[A-Z][A-Z0-9_]{0,15}", fullmatch=True)
values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(lambda v: float(f"{v:g}"))


@given(st.dictionaries(names, values, min_size=1, max_size=8), st.sampled_from([" ", ",", "=", "\t"]))
@settings(max_examples=60, deadline=None)
def test_defaults_files_round_trip(params, sep):
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "p.parm"
        path.write_text("".join(f"{k}{sep}{v:g}\n" for k, v in params.items()))
        assert read_param_file(path) == params


@given(st.binary(max_size=200))
@settings(max_examples=80, deadline=None)
def test_defaults_files_never_crash(data):
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "g.parm"
        path.write_bytes(data)
        try:
            out = read_param_file(path)
        except ConfigError:
            return
        assert out and all(isinstance(v, float) for v in out.values())


# -- the CLI ------------------------------------------------------------------------------


def _gate_cli(tmp_path: Path, *args: str) -> int:
    return main([
        "gate", str(RC_LOSS_RTL), *args, "--repeats", "2", "--report", str(tmp_path / "r"),
        "--state-dir", str(tmp_path / "state"),
    ])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--baseline", "{release}"], "give the candidate: --candidate IMAGE|EXE, --candidate-defaults PARM, or both"),
        (["--baseline", "{release}", "--candidate-defaults", "{parm}"], "board copter1 (virtual) takes no defaults files"),
        (["--candidate", "{release}"], "--baseline: board copter1 (virtual) is flashed; name the image in service"),
        (["--baseline", "{release}", "--candidate", "{tmp}/missing.apj"], "does not exist"),
    ],
)
def test_gate_cli_errors_are_one_line(tmp_path, capsys, args, message):
    parm = _parm(tmp_path, "p.parm", "RC_FS_TIMEOUT 3\n")
    args = [a.format(release=RELEASE, parm=parm, tmp=tmp_path) for a in args]
    code = _gate_cli(tmp_path, *args)
    err = capsys.readouterr().err
    assert code not in (0, 1)  # an error, not a verdict
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "which, text, message",
    [
        ("missing", None, "candidate: defaults file {path} does not exist"),
        ("garbage", "RC_FS_TIMEOUT 3\n%%% not a parameter\n", "defaults file {path} line 2"),
    ],
)
def test_bad_defaults_on_an_ardupilot_board_are_one_line(tmp_path, capsys, which, text, message):
    exe = _exe(tmp_path)
    rig = _ap_rig(tmp_path, exe)
    path = tmp_path / f"{which}.parm"
    if text is not None:
        path.write_text(text)
    code = _gate_cli(tmp_path, "--rig", str(rig.path), "--candidate-defaults", str(path))
    err = capsys.readouterr().err
    assert code not in (0, 1)
    assert message.format(path=path) in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "state" / "ap" / "sitl.log").exists()  # refused before SITL started


def test_a_candidate_that_is_not_executable_is_refused_before_anything_flies(tmp_path, capsys):
    rig = _ap_rig(tmp_path, _exe(tmp_path))
    code = _gate_cli(tmp_path, "--rig", str(rig.path), "--candidate", str(RELEASE))
    err = capsys.readouterr().err
    assert code not in (0, 1)
    assert f"candidate: {RELEASE} is not executable" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "state" / "ap" / "sitl.log").exists()


def test_the_help_says_how_to_give_both(capsys):
    with pytest.raises(SystemExit):
        main(["gate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for text in ("--baseline-defaults", "--candidate-defaults", "executable, defaults files, or both",
                 "needs 2 runs per side", "at least 3"):
        assert text in out


def test_a_candidate_of_defaults_only_runs_the_baseline_executable(tmp_path):
    exe = _exe(tmp_path)
    board = _ap_rig(tmp_path, exe).boards[0]
    other = _exe(tmp_path, "other-arducopter")
    parm = _parm(tmp_path, "p.parm", "RC_FS_TIMEOUT 3\n")
    base, cand = check_builds(board, Build(other), Build(None, (parm,)))
    assert cand == Build(other, (parm,))
    base, cand = check_builds(board, Build(), Build(None, (parm,)))
    assert base.image is None and cand.image is None  # both: the rig's executable


# -- evidence, with the flights stood in for ----------------------------------------------


def _records(scenario, role: str, repeats: int, params: dict[str, float]) -> list[RunRecord]:
    late = role == "candidate" and params.get("RC_FS_TIMEOUT") == 3.0
    key = "#1 mode RTL after rc.start (s)"
    return [
        RunRecord(
            scenario=scenario.name, seed=scenario.seed + k, passed=not late,
            failures=["mode RTL not seen within 1.5 s after rc.start"] if late else [],
            latencies={key: (3.0 if late else 1.0) + 0.01 * k}, params=dict(params),
        )
        for k in range(repeats)
    ]


def test_the_evidence_names_executable_defaults_and_what_differs(tmp_path, monkeypatch):
    exe = _exe(tmp_path)
    rig = _ap_rig(tmp_path, exe)
    parm = _parm(tmp_path, "rc-fs-3s.parm", "# later radio failsafe\nRC_FS_TIMEOUT 3\n")
    flown: list = []

    def fake_fly(board_, scenarios, repeats, progress=lambda s: None, watch=()):
        flown.append((board_.executable, list(board_.extra_defaults), scenarios, tuple(watch)))
        value = 3.0 if board_.extra_defaults else 1.0  # what the board would report
        return [r for s in scenarios for r in _records(s, "candidate" if board_.extra_defaults else "baseline", repeats, {"RC_FS_TIMEOUT": value})]

    monkeypatch.setattr(gate_module, "fly", fake_fly)
    result = run_gate(rig, None, Build(), Build(None, (parm,)), [load_scenario(RC_LOSS_RTL)], repeats=3)
    write_evidence(result, tmp_path / "report")

    # The candidate ran the rig's executable with the file; both sides the same executable.
    assert [f[0] for f in flown] == [exe, exe]
    assert [f[1] for f in flown] == [[], [parm]]
    assert all(f[3] == ("RC_FS_TIMEOUT",) for f in flown)
    # The scenario's own RC_FS_TIMEOUT = 1 would hide the parameter set under test.
    setup = flown[1][2][0].setup.params
    assert "RC_FS_TIMEOUT" not in setup and setup["FS_THR_ENABLE"] == 1
    assert any("RC_FS_TIMEOUT = 1 not written" in n for n in result.notes)

    evidence = json.loads((tmp_path / "report" / "gate.json").read_text())
    assert evidence["verdict"] == "do not ship"
    assert any(r.startswith("rc-loss-rtl: passes on the baseline (3/3) but fails") for r in evidence["reasons"])
    assert any("mode RTL after rc.start" in r and "significantly worse" in r for r in evidence["reasons"])
    sha = hashlib.sha256(exe.read_bytes()).hexdigest()
    assert evidence["baseline"]["sha256"] == evidence["candidate"]["sha256"] == sha
    assert evidence["baseline"]["defaults"] == []
    [record] = evidence["candidate"]["defaults"]
    assert record == {
        "path": str(parm), "sha256": hashlib.sha256(parm.read_bytes()).hexdigest(), "params": {"RC_FS_TIMEOUT": 3.0},
    }
    assert evidence["parameter_differences"] == {
        "RC_FS_TIMEOUT": {"baseline": None, "candidate": 3.0, "read_back": {"baseline": [1.0], "candidate": [3.0]}},
    }
    assert [r["params"] for r in evidence["runs"]["candidate"]] == [{"RC_FS_TIMEOUT": 3.0}] * 3
    text = (tmp_path / "report" / "gate.txt").read_text()
    assert f"+ defaults {parm} sha256 {record['sha256']}" in text
    assert "RC_FS_TIMEOUT: firmware default -> 3 (read back from the board: 1 -> 3)" in text
    assert "DO NOT SHIP" in text


def test_a_build_against_itself_ships(tmp_path, monkeypatch):
    exe = _exe(tmp_path)
    rig = _ap_rig(tmp_path, exe)
    parm = _parm(tmp_path, "same.parm", "RC_FS_TIMEOUT 1\n")

    def fake_fly(board_, scenarios, repeats, progress=lambda s: None, watch=()):
        return [r for s in scenarios for r in _records(s, "baseline", repeats, {"RC_FS_TIMEOUT": 1.0})]

    monkeypatch.setattr(gate_module, "fly", fake_fly)
    result = run_gate(rig, None, Build(exe, (parm,)), Build(exe, (parm,)), [load_scenario(RC_LOSS_RTL)], repeats=2)
    assert result.ship, result.reasons
    assert result.differences() == {}
    assert "the two sides' defaults files set the same values" in result.table()


# -- the restart between the sides, on a stand-in SITL ------------------------------------


def test_each_build_restarts_sitl_with_its_own_files_and_nothing_carries_over(tmp_path, monkeypatch):
    from hil.session import session_for

    monkeypatch.delenv("HIL_ARDUPILOT_SITL", raising=False)
    exe = _exe(tmp_path)
    board = _ap_rig(tmp_path, exe).boards[0]
    parm = _parm(tmp_path, "rc-fs-3s.parm", "RC_FS_TIMEOUT 3\n")
    try:
        board.use_build(None, [parm])
        with session_for(board) as session:
            assert session.param_snapshot["RC_FS_TIMEOUT"] == 3.0
            first = board.sitl.proc.pid
            argv = board.sitl.argv()
            assert "-w" in argv and str(parm.resolve()) in argv[argv.index("--defaults") + 1]
        board.use_build(None, [])
        assert board.sitl is None  # stopped: the next session starts the other build
        with session_for(board) as session:
            assert session.param_snapshot["RC_FS_TIMEOUT"] == 1.0  # the firmware default again
            assert board.sitl.proc.pid != first
            assert str(parm.resolve()) not in " ".join(board.sitl.argv())
    finally:
        board.stop()
