"""A board's life cycle as an explicit state machine: off, bootloader, app, armable, flying.

Like a labgrid strategy, `Lifecycle.reach(state)` takes the board from where it is to
where a caller needs it, by the board type's own actions (`start`, `stop`,
`power_cycle`, `reset_configuration`), and refuses a step the table does not allow with
the path it would have needed. States a session observes rather than causes (the
vehicle became armable, it armed, it was flashed through its bootloader) are recorded
with `mark`, checked against the same table. Every change is kept in `history` with
its reason, for a report or an error message.

    off --start--> app --(session: loop running, nothing blocks arming)--> armable
     ^              |  ^                                                   |   ^
     |              |  '--------(session ends, disarmed)--------------------'   |
     '----stop------'                                            armed | disarmed
                    app <--> bootloader (flashing)                     v   |
                                                                      flying
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from hil.errors import HilError

T = TypeVar("T")


class BoardState(StrEnum):
    OFF = "off"
    BOOTLOADER = "bootloader"
    APP = "app"
    ARMABLE = "armable"
    FLYING = "flying"


#: Which state may follow which. APP -> APP is a reboot; any state may go OFF.
TRANSITIONS: dict[BoardState, frozenset[BoardState]] = {
    BoardState.OFF: frozenset({BoardState.OFF, BoardState.APP, BoardState.BOOTLOADER}),
    BoardState.BOOTLOADER: frozenset({BoardState.OFF, BoardState.BOOTLOADER, BoardState.APP}),
    BoardState.APP: frozenset({BoardState.OFF, BoardState.APP, BoardState.BOOTLOADER, BoardState.ARMABLE}),
    BoardState.ARMABLE: frozenset({BoardState.OFF, BoardState.APP, BoardState.ARMABLE, BoardState.FLYING}),
    BoardState.FLYING: frozenset({BoardState.OFF, BoardState.APP, BoardState.ARMABLE, BoardState.FLYING}),
}


class LifecycleError(HilError):
    """A step the board's life cycle does not allow (a bug in the caller, or a board
    that is not where the harness thinks)."""


@dataclass(frozen=True)
class Change:
    monotonic: float
    before: BoardState
    after: BoardState
    why: str


class Lifecycle:
    """The life cycle of one board (`board` is a `hil.rig.Board`)."""

    def __init__(self, board: Any) -> None:
        self.board = board
        self.state = BoardState.OFF
        self.history: list[Change] = []

    def _set(self, state: BoardState, why: str) -> None:
        if state not in TRANSITIONS[self.state]:
            raise LifecycleError(
                f"board {self.board.name}: cannot go from {self.state.value} to {state.value} ({why}); "
                f"from {self.state.value} it can go to "
                + ", ".join(sorted(s.value for s in TRANSITIONS[self.state]))
            )
        self.history.append(Change(time.monotonic(), self.state, state, why))
        self.state = state

    def mark(self, state: BoardState, why: str) -> None:
        """Record a state the caller observed (armable, flying, flashed through the
        bootloader); LifecycleError if the table does not allow it from here."""
        self._set(state, why)

    def reach(self, state: BoardState, why: str = "") -> None:
        """Take the board to `state` by its own actions: OFF stops it, APP starts it (a
        board already running is left as it is, and one armable or flying is let down to
        APP: the session that made it so has ended). ARMABLE, FLYING and BOOTLOADER are
        reached by a session or a flasher, which `mark` them."""
        if state is BoardState.OFF:
            self.board.stop()  # idempotent for every board type, and a board started outside
            if self.state is not BoardState.OFF:  # the life cycle is stopped all the same
                self._set(BoardState.OFF, why or "stopped")
            return
        if state is BoardState.APP:
            self.board.start()  # idempotent for every board type: a running board stays as it is
            if self.state is not BoardState.APP:
                self._set(BoardState.APP, why or "started")
            return
        raise LifecycleError(
            f"board {self.board.name}: {state.value} is reached by a session or a flasher, not by "
            f"the board alone (it is {self.state.value})"
        )

    def flash(self, write: Callable[[], T]) -> T:
        """Run `write` (a flasher's `flash`), which takes the board through its bootloader
        and back. Afterwards the board is started and in APP; if `write` fails the board
        stays marked BOOTLOADER (where a failed flash leaves it), so nothing takes it for
        a running application."""
        self.reach(BoardState.APP, "to be flashed")
        self._set(BoardState.BOOTLOADER, "flashing")
        result = write()
        self.board.start()  # a DFU flash power-cycles the board; make sure it runs
        self._set(BoardState.APP, "flashed")
        return result

    def power_cycle(self, why: str = "power cycled") -> None:
        """Cut and restore power (or restart the process): back in APP, whatever it was."""
        self.board.power_cycle()
        self._set(BoardState.APP, why)

    def reset_configuration(self) -> bool:
        """Put the configuration tests start from back (a board in APP only: never under a
        running loop or armed). True if the board changed (and may have rebooted)."""
        if self.state is not BoardState.APP:
            raise LifecycleError(
                f"board {self.board.name}: its configuration is reset in app state, not {self.state.value}"
            )
        changed = bool(self.board.reset_configuration())
        if changed:
            self._set(BoardState.APP, "configuration reset")
        return changed

    def describe(self, last: int = 6) -> str:
        """The last few changes, for an error message."""
        rows = self.history[-last:]
        return "; ".join(f"{c.before.value}->{c.after.value} ({c.why})" for c in rows) or "no changes"
