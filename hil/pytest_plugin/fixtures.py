"""The fixtures: `rig`, `flashed_firmware`, `board`, `board_session`, `autopilot`, `sim`.

What `board_session`, `autopilot` and `sim` give depends on the board's class: a MAVLink
board gets a `BoardSession`, a `MavlinkAutopilot` and a lockstep `ClosedLoop`; an MSP
board (Betaflight) an `MspBoardSession`, an `MspAutopilot` and a real-time
`ClosedLoop`. The names only annotations need are imported for type checkers only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from hil.errors import BoardNotAnswering, HilError, LinkError
from hil.pytest_plugin.options import STATE, HilState
from hil.rig import Board, Rig
from hil.session import session_for

#: Vehicle seconds the sim fixture waits for a fresh vehicle to be ready to fly (the
#: virtual board takes about 3; ArduPilot SITL's EKF takes tens on our GPS).
READY_WITHIN_S = 90.0

if TYPE_CHECKING:
    from hil.autopilot.mavlink import MavlinkAutopilot
    from hil.autopilot.msp import MspAutopilot
    from hil.session import BoardSession, MspBoardSession
    from hil.sim.loop import ClosedLoop


@pytest.fixture(scope="session")
def rig(request: pytest.FixtureRequest) -> Rig:
    """The rig from --rig (default: the virtual rig), started on first use."""
    return request.config.stash[STATE].rig()


@pytest.fixture(scope="session")
def flashed_firmware(request: pytest.FixtureRequest):
    """The FlashResult of flashing --firmware onto the board (done once per session), or None."""
    state: HilState = request.config.stash[STATE]
    board = state.board()
    return state.flashed.get(board.name)


@pytest.fixture
def board(request: pytest.FixtureRequest) -> Board:
    """The board under test (--board, else the rig's first board), running."""
    return request.config.stash[STATE].board()


@pytest.fixture
def board_session(
    request: pytest.FixtureRequest, board: Board
) -> Iterator[BoardSession | MspBoardSession]:
    """A connected, freshly started board; after the test it must be disarmed and answering.
    A BoardSession for a MAVLink board, an MspBoardSession for an MSP board."""
    session = session_for(board)
    try:
        session.__enter__()
    except (BoardNotAnswering, LinkError) as exc:
        with contextlib.suppress(HilError):
            session.__exit__(None, None, None)
        raise request.config.stash[STATE].lost(board, str(exc)) from None
    yield session
    problems = session.cleanup()
    if problems:
        pytest.fail("after the test: " + "; ".join(problems), pytrace=False)


@pytest.fixture
def autopilot(board_session: BoardSession | MspBoardSession) -> MavlinkAutopilot | MspAutopilot:
    """The adapter connected to the board under test (MAVLink, or MSP for an MSP board)."""
    return board_session.autopilot


@pytest.fixture
def sim(board_session: BoardSession | MspBoardSession) -> Iterator[ClosedLoop]:
    """The closed loop flying the board's vehicle, running in the background
    (lockstep MAVLink, or real time over UDP for Betaflight SITL). On a MAVLink board it
    is handed over once the vehicle is ready to fly (`MavlinkAutopilot.wait_ready`).

    A test asking for it on a board the harness does not fly is skipped, with the reason.
    """
    board = board_session.board
    if not board.simulated:
        refusal = getattr(board, "physics_refusal", None)  # a Board's; duck-typed boards may lack it
        pytest.skip(
            (refusal() if refusal is not None else None)
            or f"board {board.name} ({board.type_name or board.board_class}) flies on its own "
            f"sensors, not in the harness's simulation: the sim fixture needs a board the "
            f"harness flies in a closed loop"
        )
    try:
        loop = board_session.make_sim()
    except AttributeError as exc:
        # Only what the board itself lacks (e.g. an MSP board that is no Betaflight SITL
        # has no `sitl`); any other AttributeError is a bug and stays one.
        if getattr(exc, "obj", None) is not board:
            raise
        pytest.skip(
            f"board {board.name} ({board.type_name or board.board_class}) cannot give the sim "
            f"fixture a closed loop: a {board.board_class} board needs {exc.name!r}, which this "
            f"board type does not have"
        )
    loop.start()
    # A fresh vehicle on the ground: the test gets it once it could take off (pre-arm
    # checks passing, a position), as a pilot waits for "ready to arm" before the first
    # command; the README's example sets GUIDED and arms at once.
    wait_ready = getattr(board_session.autopilot, "wait_ready", None)
    if wait_ready is not None:
        try:
            wait_ready(within=READY_WITHIN_S)
        except HilError as exc:
            loop.stop()
            pytest.fail(f"sim: board {board.name} was not ready to fly: {exc}", pytrace=False)
    yield loop
    loop.stop()
