"""The board life cycle: the table of allowed steps, the board's own actions, the
states sessions record, on a fake board and on the virtual board."""

from __future__ import annotations

from pathlib import Path

import pytest

from hil.lifecycle import TRANSITIONS, BoardState, Lifecycle, LifecycleError
from hil.rig import Rig
from hil.session import session_for

ROOT = Path(__file__).resolve().parent.parent


class FakeBoard:
    name = "fake"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.changed = False

    def start(self) -> None:
        self.calls.append("start")

    def stop(self) -> None:
        self.calls.append("stop")

    def power_cycle(self) -> None:
        self.calls.append("power_cycle")

    def reset_configuration(self) -> bool:
        self.calls.append("reset")
        return self.changed


def test_reach_app_starts_and_off_stops():
    board = FakeBoard()
    life = Lifecycle(board)
    assert life.state is BoardState.OFF
    life.reach(BoardState.APP)
    life.reach(BoardState.APP)  # already there: start() again is harmless, no new change
    assert board.calls == ["start", "start"] and len(life.history) == 1
    life.reach(BoardState.OFF)
    assert board.calls[-1] == "stop" and life.state is BoardState.OFF
    changes = len(life.history)
    life.reach(BoardState.OFF)  # stop() is idempotent: a board started behind its back goes off too
    assert board.calls.count("stop") == 2 and len(life.history) == changes


def test_a_flash_goes_through_the_bootloader_and_a_failed_one_stays_there():
    board = FakeBoard()
    life = Lifecycle(board)
    assert life.flash(lambda: "flashed") == "flashed"
    assert [(c.before.value, c.after.value) for c in life.history] == [
        ("off", "app"), ("app", "bootloader"), ("bootloader", "app"),
    ]

    def broken():
        raise OSError("USB gone")

    with pytest.raises(OSError):
        life.flash(broken)
    assert life.state is BoardState.BOOTLOADER
    with pytest.raises(LifecycleError):
        life.mark(BoardState.ARMABLE, "a session on a board without its application")


def test_flying_needs_armable_first_and_says_the_way():
    life = Lifecycle(FakeBoard())
    life.reach(BoardState.APP)
    with pytest.raises(LifecycleError, match="cannot go from app to flying") as err:
        life.mark(BoardState.FLYING, "armed")
    assert "armable" in str(err.value)
    life.mark(BoardState.ARMABLE, "loop running")
    life.mark(BoardState.FLYING, "armed")
    assert "armable->flying (armed)" in life.describe()


def test_a_board_is_not_reset_under_a_running_loop():
    board = FakeBoard()
    life = Lifecycle(board)
    life.reach(BoardState.APP)
    life.mark(BoardState.ARMABLE, "loop running")
    with pytest.raises(LifecycleError, match="reset in app state"):
        life.reset_configuration()
    life.mark(BoardState.APP, "session ended")
    board.changed = True
    assert life.reset_configuration() is True and board.calls[-1] == "reset"


def test_armable_flying_and_bootloader_are_not_reached_by_the_board_alone():
    life = Lifecycle(FakeBoard())
    for state in (BoardState.ARMABLE, BoardState.FLYING, BoardState.BOOTLOADER):
        with pytest.raises(LifecycleError, match="session or a flasher"):
            life.reach(state)


def test_every_state_can_be_switched_off():
    assert all(BoardState.OFF in allowed for allowed in TRANSITIONS.values())
    assert set(TRANSITIONS) == set(BoardState)


def test_a_session_takes_the_virtual_board_through_its_states(tmp_path):
    rig = Rig.load(ROOT / "fixtures" / "virtual.toml", work_dir=tmp_path)
    board = rig.select(None)
    try:
        with session_for(board) as session:
            assert board.lifecycle.state is BoardState.APP
            session.make_sim().start()
        assert board.lifecycle.state is BoardState.APP
        steps = [(c.before, c.after) for c in board.lifecycle.history]
        assert steps[0] == (BoardState.OFF, BoardState.APP)
    finally:
        rig.stop()
    assert board.lifecycle.state is BoardState.OFF
