"""Align a MAVLink board's clock with the host's by TIMESYNC (message 111).

The harness sends TIMESYNC with tc1 = 0 and ts1 = its monotonic clock in ns; the board
answers with tc1 = its own clock in ns and ts1 echoed (PROTOCOLS.md section 8). One
exchange gives one sample: the board's reading against the midpoint of the round trip,
good to half the round trip. `sync_clock` takes several, keeps the quickest and fits a
`hil.timing.ClockAlignment` (offset and rate) through them.

Only the adapter's public side is used: `conn.send`, `mark` and `wait_for`, so the
exchange works whoever pumps the link (the reader thread or the closed loop). A reply's
arrival time is the stamp the connection puts on every message when its bytes are read
(`_t_ns`), which leaves the waiting thread's wake-up delay out of the round trip.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hil.errors import BoardNotAnswering, HilError, WaitTimeout
from hil.mavlink.dialect import mavlink
from hil.mavlink.framing import arrival_ns
from hil.timing import MAX_RTT_NS, ClockAlignment


class TimesyncPeer(Protocol):
    """What the exchange needs from an adapter (MavlinkAutopilot has it)."""

    conn: Any

    def mark(self) -> int: ...

    def wait_for(self, what: str, predicate: Callable[[object], bool], **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class TimesyncSample:
    """One exchange: host send and receive times (ns) and the board's clock reading (ns)."""

    sent_ns: int
    received_ns: int
    board_ns: int

    @property
    def rtt_ns(self) -> int:
        return self.received_ns - self.sent_ns

    @property
    def host_ns(self) -> float:
        """The host time the board reading is taken to belong to: the round trip's midpoint."""
        return (self.sent_ns + self.received_ns) / 2

    @property
    def board_us(self) -> float:
        return self.board_ns / 1000

    @property
    def offset_ns(self) -> float:
        """Board minus host clock from this sample alone: tc1 - (ts1 + now) / 2."""
        return self.board_ns - self.host_ns


def _url(peer: TimesyncPeer) -> str:
    link = getattr(peer.conn, "link", None)
    return str(getattr(link, "url", "the link"))


def exchange(
    peer: TimesyncPeer, *, timeout: float = 1.0, clock: Callable[[], int] = time.monotonic_ns
) -> TimesyncSample:
    """One TIMESYNC round trip; BoardNotAnswering if no reply comes within `timeout` s.

    `clock` is the host clock of ts1; it must be the clock the link stamps arrivals with
    (time.monotonic_ns for every link of the harness).
    """
    since = peer.mark()
    sent = clock()
    peer.conn.send(mavlink.MAVLink_timesync_message(0, sent))
    try:
        reply = peer.wait_for(
            f"TIMESYNC reply to ts1={sent}",
            lambda m: m.get_type() == "TIMESYNC" and m.tc1 != 0 and m.ts1 == sent,
            within=timeout,
            since=since,
            vehicle_time=False,
        )
    except WaitTimeout:
        raise BoardNotAnswering(
            f"board on {_url(peer)} did not answer TIMESYNC within {timeout:.2f} s"
        ) from None
    received = arrival_ns(reply)
    if not isinstance(received, int) or received < sent:
        received = clock()
    return TimesyncSample(sent, received, int(reply.tc1))


def collect(
    peer: TimesyncPeer,
    count: int = 16,
    *,
    timeout: float = 1.0,
    interval: float = 0.01,
    clock: Callable[[], int] = time.monotonic_ns,
    sleep: Callable[[float], None] = time.sleep,
) -> list[TimesyncSample]:
    """`count` exchanges `interval` s apart; lost replies are skipped, but at least half
    must come back (else BoardNotAnswering). Bounded by count x (timeout + interval)."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    samples: list[TimesyncSample] = []
    lost = 0
    for i in range(count):
        if i and interval > 0:
            sleep(interval)
        try:
            samples.append(exchange(peer, timeout=timeout, clock=clock))
        except BoardNotAnswering:
            lost += 1
    if len(samples) * 2 < count or not samples:
        raise BoardNotAnswering(
            f"board on {_url(peer)} answered only {len(samples)} of {count} TIMESYNC requests "
            f"(each waited {timeout:.2f} s)"
        )
    return samples


def alignment_from(
    samples: Sequence[TimesyncSample], *, max_rtt_ns: float = MAX_RTT_NS, keep: float = 0.5
) -> ClockAlignment:
    """Fit a ClockAlignment to TIMESYNC samples, keeping the quickest round trips."""
    if not samples:
        raise ValueError("no TIMESYNC samples to align clocks with")
    try:
        return ClockAlignment.fit(
            [s.host_ns for s in samples],
            [s.board_us for s in samples],
            [s.rtt_ns for s in samples],
            max_rtt_ns=max_rtt_ns,
            keep=keep,
        )
    except ValueError as exc:
        raise HilError(f"cannot align clocks from {len(samples)} TIMESYNC samples: {exc}") from None


def sync_clock(
    peer: TimesyncPeer,
    count: int = 16,
    *,
    timeout: float = 1.0,
    interval: float = 0.01,
    max_rtt_ns: float = MAX_RTT_NS,
    keep: float = 0.5,
    clock: Callable[[], int] = time.monotonic_ns,
    sleep: Callable[[float], None] = time.sleep,
) -> ClockAlignment:
    """Exchange `count` TIMESYNCs with the board and fit its clock against the host's.

    Round trips above `max_rtt_ns` (10 ms, PROTOCOLS.md) are dropped, the quickest
    fraction `keep` of the rest is fitted. A lockstep board's clock runs at simulation
    speed (and stands still while no simulator steps it): the fitted rate says so.
    """
    samples = collect(
        peer, count, timeout=timeout, interval=interval, clock=clock, sleep=sleep
    )
    return alignment_from(samples, max_rtt_ns=max_rtt_ns, keep=keep)
