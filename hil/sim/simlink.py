"""Simulator links: how the plant's state reaches a firmware and its outputs come back.

The closed loop owns the plant (vehicle, sensors, weather, battery, GNSS sky, radio and
telemetry links, and the threats set on them) and moves it in time; a simulator link is
the wire between that plant and one firmware's simulator interface. Each link is one
small class, registered here by name:

- ``mavlink_hil``: PX4's HIL_* messages over the board's MAVLink port (the virtual board);
- ``betaflight_udp``: Betaflight SITL's FDM state packets and motor packets over UDP;
- ``bench``: no physics at all, only the radio (a real board on a bench);
- ``ardupilot_json``: ArduPilot SITL's JSON interface (servo packets in, a JSON state out);
- ``px4_tcp``: PX4 SITL's ``simulator_mavlink`` connecting to us as a TCP client.

The loop (`hil.sim.loop.ClosedLoop`) calls ``open`` when it starts and ``close`` when
it stops (a MAVLink link hands the port back to the adapter's reader there; a socket
link may open and close its sockets).

A step of the loop is: ``send(t_us, plant)`` the state sampled at ``t_us``, then
``outputs(t_us, timeout)`` for the firmware's answer, then integrate the plant with it.
A lockstep link's ``outputs`` blocks until the answer to the sample stamped ``t_us``
(raising `hil.errors.BoardNotAnswering` when ``timeout`` wall seconds pass without it); a
real-time link's ``outputs`` is called with ``timeout=0`` and gives the newest answer or
None. Motor outputs are four floats 0..1 in the vehicle's numbering (quad X in
ArduPilot's order: front-right, rear-left, front-left, rear-right), all zero when the
firmware is disarmed.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from hil.sim.plant import Plant

Motors = tuple[float, float, float, float]

#: Answers an `AnswerLog` keeps (~80 min at 400 Hz): bounded memory in long runs.
MAX_ANSWERS = 2_000_000


@dataclass(frozen=True)
class AnswerStamps:
    """A copy of what a link stamped on the answers it took, oldest first.

    ``board_us``: the firmware's own time stamp of each answer (us; for a lockstep link,
    the sample time it answered). ``sent_ns`` and ``read_ns``: for each answer that could
    be paired with its sample, when the sample was sent and when the answer was read
    (host monotonic ns), index by index.
    """

    board_us: np.ndarray
    sent_ns: np.ndarray
    read_ns: np.ndarray


class AnswerLog:
    """The per-answer stamps of a link whose answers name the sample they answer.

    Appends are cheap (a list and two ``array('q')``); `stamps` copies at once, so a
    reader never holds a view of arrays the loop is still growing.
    """

    def __init__(self, limit: int = MAX_ANSWERS) -> None:
        self.limit = limit
        self.board_us: list[int] = []
        self.sent_ns = array("q")
        self.read_ns = array("q")
        #: Send times of samples not answered yet, by their time stamp (a few at most).
        self._pending: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.board_us)

    def add(self, board_us: int, sent_ns: int = 0, read_ns: int = 0) -> None:
        """One answer; ``sent_ns`` 0 when its sample's send time is not known."""
        if len(self.board_us) >= self.limit:
            return
        self.board_us.append(board_us)
        if sent_ns:
            self.sent_ns.append(sent_ns)
            self.read_ns.append(read_ns)

    def sample_sent(self, sample_us: int, ns: int) -> None:
        """The sample stamped ``sample_us`` went out at host ``ns``; its answer pairs with it
        (`answered`). Samples never answered (a drain, a restart) do not pile up."""
        pending = self._pending
        if len(pending) > 8:
            pending.clear()
        pending[sample_us] = ns

    def answered(self, board_us: int, sample_us: int | None, read_ns: int) -> None:
        """An answer stamped ``board_us`` by the board, to the sample ``sample_us`` (None:
        not known), read at host ``read_ns``."""
        sent = self._pending.pop(sample_us, 0) if sample_us is not None else 0
        self.add(board_us, sent, read_ns)

    def read_times_ns(self) -> np.ndarray:
        """When each paired answer was read (host monotonic ns), a copy."""
        return np.array(self.read_ns, dtype=np.int64)

    def stamps(self) -> AnswerStamps:
        n = min(len(self.sent_ns), len(self.read_ns))
        return AnswerStamps(
            board_us=np.array(self.board_us, dtype=np.int64),
            sent_ns=np.array(self.sent_ns[:n], dtype=np.int64),
            read_ns=np.array(self.read_ns[:n], dtype=np.int64),
        )


@runtime_checkable
class SimulatorLink(Protocol):
    """One firmware's simulator interface, seen from the closed loop."""

    #: The link's registered name (``mavlink_hil``, ``betaflight_udp``, ...).
    name: ClassVar[str]
    #: True when the link carries the vehicle's state to the firmware (False: ``bench``).
    physics: ClassVar[bool]
    #: True when the firmware steps on our samples; False when it keeps its own clock.
    lockstep: bool
    #: True when the loop may send the next sample before the answer to the last one
    #: arrived (the firmware queues samples); False for request/answer interfaces.
    pipeline: ClassVar[bool]
    #: Injection kinds that can act on this firmware through this link (None: all).
    supported_injections: ClassVar[frozenset[str] | None]
    #: The transmitter's channels at rest (us), in the firmware's channel order; the loop
    #: puts them on ``plant.rc_channels``, which the link sends as the radio's frames.
    rc_idle: ClassVar[tuple[int, ...]]
    #: Set by the loop: called with (kind, text) for what the link sees happen.
    on_event: Callable[[str, str], None] | None

    def open(self) -> None:
        """Open sockets and ports; bounded, raising `hil.errors.LinkError` with what failed."""

    def send(self, t_us: int, plant: Plant) -> None:
        """Send the firmware the plant's state at simulation time ``t_us``."""

    def outputs(self, t_us: int, timeout: float) -> Motors | None:
        """The firmware's motor outputs answering the sample at ``t_us`` (see module doc)."""

    def close(self) -> None:
        """Close everything ``open`` opened; safe to call twice."""

    def motor_times_ns(self) -> Any:
        """Host monotonic ns at which each answer arrived, oldest first (numpy int64)."""

    def answer_stamps(self) -> AnswerStamps | None:
        """The stamps of every answer so far (see `AnswerStamps`); None for a link whose
        answers do not name the sample they answer (real-time links, the bench)."""


#: Link classes by name; a link module registers its class with `register`.
LINKS: dict[str, Callable[..., SimulatorLink]] = {}


def register(cls):
    """Class decorator: make a link class known by its ``name``."""
    LINKS[cls.name] = cls
    return cls
