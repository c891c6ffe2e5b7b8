"""Property-based search on the virtual rig, in lockstep.

The release firmware keeps the radio-failsafe property for generated RC-loss patterns;
a board factory-programmed with the field patch (its radio failsafe engages 2.5 s late:
behaviour knob `rc_failsafe_extra_delay_s`) is caught, the failing pattern shrinks to one
loss window about RC_FS_TIMEOUT long, and the printed scenario file replays the failure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.firmware.build import release_image_path
from hil.rig import Board, Rig
from hil.scenario.load import load_scenario
from hil.search import default_base, run_example, search
from hil.session import BoardSession

FIELD_PATCH = Path(__file__).resolve().parent.parent / "firmware_images" / "hilcopter-1.0.1-fieldpatch.apj"
RC_FS_TIMEOUT = 1.0


def _rig(tmp: Path, serial: str, firmware: Path) -> Rig:
    rig_file = tmp / "rig.toml"
    rig_file.write_text(
        f'[rig]\nname = "search"\n\n[[board]]\nname = "copter1"\ntype = "virtual"\n'
        f'usb_serial = "{serial}"\nfirmware = "{firmware}"\n',
        encoding="utf-8",
    )
    return Rig.load(rig_file, work_dir=tmp / "work")


@pytest.fixture(scope="module")
def release_board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Board]:
    rig = _rig(tmp_path_factory.mktemp("release"), "HILSRCH001", release_image_path())
    try:
        yield rig.boards[0]
    finally:
        rig.stop()


@pytest.fixture(scope="module")
def patched_board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Board]:
    rig = _rig(tmp_path_factory.mktemp("patch"), "HILSRCH002", FIELD_PATCH)
    try:
        yield rig.boards[0]
    finally:
        rig.stop()


def sessions(board: Board):
    return lambda: BoardSession(board)


def test_release_failsafe_at_the_limits(release_board: Board) -> None:
    # a loss just over RC_FS_TIMEOUT trips it in time; one under timeout - tolerance never does
    tripped = run_example(sessions(release_board), default_base(), [(1.0, 2.1)])
    assert tripped.violations == [], tripped.result.failure_text()
    texts = [e.t for e in tripped.result.timeline.events if e.text == "Radio Failsafe"]
    assert texts and 0.9 <= texts[0] - 1.0 <= 1.1
    quiet = run_example(sessions(release_board), default_base(), [(1.0, 1.45), (2.0, 2.45)])
    assert quiet.violations == [], quiet.result.failure_text()
    assert not any(e.text == "Radio Failsafe" for e in quiet.result.timeline.events)
    assert quiet.result.passed and tripped.result.passed  # the derived [[expect]]s agree


def test_release_keeps_the_property_for_generated_patterns(release_board: Board) -> None:
    log: list[str] = []
    found = search(sessions(release_board), max_examples=4, seed=1, log=log.append)
    assert found is None, found.report() if found else ""
    assert len(log) == 4 and all(line.endswith(": ok") for line in log)


def test_planted_failsafe_delay_is_found_shrunk_and_replayed(patched_board: Board, tmp_path: Path) -> None:
    found = search(sessions(patched_board), max_examples=6, seed=0, time_budget=70.0)
    assert found is not None, "the field patch's late radio failsafe was not found"
    report = found.report()
    # shrunk to one loss window about RC_FS_TIMEOUT long
    assert len(found.windows) == 1, report
    (start, stop), = found.windows
    assert RC_FS_TIMEOUT <= stop - start <= RC_FS_TIMEOUT + 3.0, report
    assert start == 1.0 or found.exhausted, report
    assert {v.prop for v in found.violations} == {"rc_failsafe"}, report
    assert found.failing_runs >= 1 and found.runs <= 40

    # the printed scenario file parses back to the same scenario ...
    path = tmp_path / "found.toml"
    path.write_text(found.toml, encoding="utf-8")
    loaded = load_scenario(path)
    assert dataclasses.replace(loaded, path=None) == dataclasses.replace(found.scenario, path=None)
    assert not found.result.passed  # its [[expect]]s state the property

    # ... and, rerun from the file, fails the same way
    again = run_example(sessions(patched_board), {}, found.windows, scenario=loaded)
    assert [v.prop for v in again.violations] == [v.prop for v in found.violations]
    assert [round(v.t, 1) for v in again.violations] == [round(v.t, 1) for v in found.violations]
    assert not again.result.passed
    failed = [v.message for v in again.result.verdicts if not v.passed]
    assert any("Radio Failsafe" in m for m in failed), again.result.failure_text()


@pytest.mark.slow
def test_release_keeps_the_property_for_many_patterns(release_board: Board) -> None:
    found = search(sessions(release_board), max_examples=40, max_windows=4, seed=None)
    assert found is None, found.report() if found else ""


@pytest.mark.slow
def test_planted_failsafe_delay_shrinks_fully_from_random_starts(patched_board: Board) -> None:
    found = search(sessions(patched_board), max_examples=20, max_windows=4, seed=None)
    assert found is not None and not found.exhausted
    (start, stop), = found.windows
    assert start == 1.0 and RC_FS_TIMEOUT + 0.1 - 1e-9 <= stop - start <= RC_FS_TIMEOUT + 0.2, found.report()
