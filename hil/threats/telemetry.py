"""Telemetry (MAVLink) link under jamming: loss, bursts, delay and jitter, and a UDP proxy.

`TelemetryLinkModel` is pure and seeded: no clock of its own and no I/O. The caller says
what time it is on every call, so the same model runs in simulation time (the lockstep
closed loop puts the ground station's heartbeats through it) and in wall time
(`MavlinkProxy` puts real datagrams between a ground station and a board through two of
them, one per direction).

Loss
----
`loss` is the long-run share of items lost. With `burst_ms` = 0 every item is lost on
its own draw, independently of the others. With `burst_ms` > 0 the jammer is a
continuous-time Gilbert-Elliott channel: a two-state Markov process, good (everything
gets through) and bad (everything is lost), whose bad spells last `burst_ms` on average
and whose stationary share of bad time is `loss`. In rates per second, with
B = burst_ms / 1000 and L = loss:

* leaving the bad state happens at rate mu = 1 / B;
* entering it at rate lambda = mu L / (1 - L), so good spells last B (1 - L) / L;
* after dt seconds the chance of being bad, starting from state s (1 bad, 0 good), is
  L + (s - L) exp(-dt / (B (1 - L))).

Because it runs in time rather than per item, the bursts keep their length in seconds
whatever the message rate, and items arriving at any times see the stationary loss
share L in the long run. The state is drawn from the stationary distribution at the
first item (and when a clean link becomes lossy), so the statistics hold from the start.

Delay
-----
Every item that survives is held for `delay_ms`, plus, with `jitter_ms` > 0, an extra
uniform draw in [0, jitter_ms]. Without jitter the link is first in, first out: an item
is never released before one offered earlier, even when the delay is shortened while
items are in flight. With jitter items may overtake each other, as on a path whose
latency wanders. Nothing is ever released before its offer time plus `delay_ms`.

Randomness: each offered item consumes two uniform draws (the channel state and the
jitter) whatever the parameters, so the same seed and the same calls give the same
result, and changing a parameter mid-run changes only what the draws mean.
"""

from __future__ import annotations

import heapq
import itertools
import math
import numbers
import select
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastcrc import crc16

from hil.errors import LinkError
from hil.mavlink.dialect import mavlink

_BLOCK = 512


def _finite_at_least_zero(name: str, value: Any, *, at_most: float | None = None) -> float:
    """`value` as a float, or ValueError naming the parameter and what it must be."""
    need = f"a number between 0 and {at_most:g}" if at_most is not None else "a finite number >= 0"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be {need}, got {value!r}")
    x = float(value)
    if not math.isfinite(x) or x < 0.0 or (at_most is not None and x > at_most):
        raise ValueError(f"{name} must be {need}, got {value!r}")
    return x


@dataclass(frozen=True)
class TelemetryLinkStats:
    """What a link model has done with its items so far."""

    offered: int
    lost: int
    """Lost by the channel (loss and bursts)."""
    overflowed: int
    """Refused because `capacity` items were already in flight."""
    delayed: int
    """Held for some time (delay or jitter above zero) before release."""
    released: int
    pending: int

    @property
    def dropped(self) -> int:
        """Items that will never come out: lost plus overflowed."""
        return self.lost + self.overflowed


class TelemetryLinkModel:
    """Loss (optionally in bursts), delay and jitter on a message link; see the module doc.

    `offer(t_s, item)` hands an item to the link at time `t_s`; `due(t_s)` returns, in
    release order, the items that have arrived by `t_s`. Times are seconds on any clock
    the caller keeps, and must not go backwards. `configure` changes parameters mid-run
    (an injection starting or stopping); items already in flight keep their release times.
    The methods are safe to call from several threads.
    """

    def __init__(
        self,
        *,
        loss: float = 0.0,
        burst_ms: float = 0.0,
        delay_ms: float = 0.0,
        jitter_ms: float = 0.0,
        capacity: int | None = None,
        seed: int | np.random.SeedSequence | None = 0,
    ) -> None:
        self._lock = threading.Lock()
        self._rng = np.random.default_rng(seed)
        self._draws = np.empty((0, 2))
        self._i = 0
        self._queue: list[tuple[float, int, Any]] = []
        self._seq = itertools.count()
        self._bad = False
        self._t_state: float | None = None  # time of the channel state; None: draw afresh
        self._t_last: float | None = None
        self._last_release = -math.inf
        self._offered = self._lost = self._overflowed = self._delayed = self._released = 0
        self.loss = 0.0
        self.burst_ms = 0.0
        self.delay_ms = 0.0
        self.jitter_ms = 0.0
        self.capacity: int | None = None
        self.configure(
            loss=loss, burst_ms=burst_ms, delay_ms=delay_ms, jitter_ms=jitter_ms, capacity=capacity
        )

    # ------------------------------------------------------------------ parameters

    def configure(
        self,
        *,
        loss: float | None = None,
        burst_ms: float | None = None,
        delay_ms: float | None = None,
        jitter_ms: float | None = None,
        capacity: int | None | bool = False,
    ) -> None:
        """Change parameters; those not given keep their values.

        `capacity`: the most items in flight at once (None: no limit); left out, it stays.
        All values are checked before any is applied, so a bad call changes nothing.
        """
        new_loss = self.loss if loss is None else _finite_at_least_zero("loss", loss, at_most=1.0)
        new_burst = (
            self.burst_ms if burst_ms is None else _finite_at_least_zero("burst_ms", burst_ms)
        )
        new_delay = (
            self.delay_ms if delay_ms is None else _finite_at_least_zero("delay_ms", delay_ms)
        )
        new_jitter = (
            self.jitter_ms if jitter_ms is None else _finite_at_least_zero("jitter_ms", jitter_ms)
        )
        new_capacity = self.capacity
        if capacity is not False:
            if capacity is not None and (
                isinstance(capacity, bool)
                or not isinstance(capacity, numbers.Integral)
                or capacity < 1
            ):
                raise ValueError(f"capacity must be None or an integer >= 1, got {capacity!r}")
            new_capacity = None if capacity is None else int(capacity)
        with self._lock:
            was_clean = self.loss == 0.0
            self.loss, self.burst_ms = new_loss, new_burst
            self.delay_ms, self.jitter_ms, self.capacity = new_delay, new_jitter, new_capacity
            if new_loss == 0.0:
                self._bad = False
            elif was_clean:
                self._t_state = None  # the next item finds the channel in a stationary state

    @property
    def expected_loss(self) -> float:
        """Long-run share of items lost by the channel."""
        return self.loss

    # ------------------------------------------------------------------ items

    @property
    def pending(self) -> int:
        """Items in flight: offered, not lost, not yet released."""
        return len(self._queue)

    @property
    def next_release(self) -> float | None:
        """When the next item in flight comes out (seconds), or None when none is."""
        try:
            return self._queue[0][0]
        except IndexError:
            return None

    def _draw(self) -> tuple[float, float]:
        if self._i >= len(self._draws):
            self._draws = self._rng.random((_BLOCK, 2))
            self._i = 0
        u = self._draws[self._i]
        self._i += 1
        return float(u[0]), float(u[1])

    def _channel_lost(self, t: float, u: float) -> bool:
        loss = self.loss
        if loss <= 0.0:
            return False
        if loss >= 1.0:
            self._bad = True
            self._t_state = t
            return True
        if self.burst_ms <= 0.0:
            return u < loss
        if self._t_state is None:
            p_bad = loss
        else:
            tau = self.burst_ms * 1e-3 * (1.0 - loss)  # correlation time of the chain
            memory = math.exp(-(t - self._t_state) / tau)
            p_bad = loss + ((1.0 if self._bad else 0.0) - loss) * memory
        self._bad = u < p_bad
        self._t_state = t
        return self._bad

    def offer(self, t_s: float, item: Any) -> bool:
        """Hand `item` to the link at time `t_s` (s); False when it will never arrive."""
        t = float(t_s)
        if not math.isfinite(t):
            raise ValueError(f"t_s must be a finite time in seconds, got {t_s!r}")
        with self._lock:
            if self._t_last is not None and t < self._t_last:
                raise ValueError(
                    f"time went backwards: offer at {t} s after one at {self._t_last} s"
                )
            self._t_last = t
            self._offered += 1
            u_state, u_jitter = self._draw()
            if self._channel_lost(t, u_state):
                self._lost += 1
                return False
            if self.capacity is not None and len(self._queue) >= self.capacity:
                self._overflowed += 1
                return False
            release = t + self.delay_ms * 1e-3
            if self.jitter_ms > 0.0:
                release += self.jitter_ms * 1e-3 * u_jitter
            elif release < self._last_release:
                release = self._last_release  # first in, first out
            self._last_release = max(self._last_release, release)
            if release > t:
                self._delayed += 1
            heapq.heappush(self._queue, (release, next(self._seq), item))
            return True

    def due(self, t_s: float) -> list[Any]:
        """The items that have arrived by time `t_s`, in the order they arrive."""
        queue = self._queue
        try:
            if queue[0][0] > t_s:  # the common case, checked without the lock
                return []
        except IndexError:
            return []
        out = []
        with self._lock:
            while queue and queue[0][0] <= t_s:
                out.append(heapq.heappop(queue)[2])
            self._released += len(out)
        return out

    def clear(self) -> int:
        """Discard the items in flight; return how many there were."""
        with self._lock:
            n = len(self._queue)
            self._queue.clear()
            self._last_release = -math.inf
            return n

    def stats(self) -> TelemetryLinkStats:
        with self._lock:
            return TelemetryLinkStats(
                self._offered,
                self._lost,
                self._overflowed,
                self._delayed,
                self._released,
                len(self._queue),
            )

    def __repr__(self) -> str:
        return (
            f"TelemetryLinkModel(loss={self.loss:g}, burst_ms={self.burst_ms:g}, "
            f"delay_ms={self.delay_ms:g}, jitter_ms={self.jitter_ms:g})"
        )


# ---------------------------------------------------------------------------------------
# MAVLink frames in a datagram (counted, never required)

_STX_V2 = 0xFD
_STX_V1 = 0xFE


_CRC_EXTRA: dict[int, int] = {msg_id: cls.crc_extra for msg_id, cls in mavlink.mavlink_map.items()}


def count_mavlink_frames(data: bytes) -> int:
    """How many whole MAVLink 1 or 2 frames with a good checksum `data` holds.

    Bytes between frames are skipped; frames of messages the dialect does not know
    cannot be checked and are not counted. Never raises on any input.
    """
    extras = _CRC_EXTRA
    n = len(data)
    i = 0
    frames = 0
    while i < n:
        stx = data[i]
        if stx == _STX_V2 and i + 10 <= n:
            length, incompat = data[i + 1], data[i + 2]
            body = 10 + length
            total = body + 2 + (13 if incompat & 0x01 else 0)
            msg_id = data[i + 7] | data[i + 8] << 8 | data[i + 9] << 16
        elif stx == _STX_V1 and i + 6 <= n:
            length = data[i + 1]
            body = 6 + length
            total = body + 2
            msg_id = data[i + 5]
        else:
            i += 1
            continue
        extra = extras.get(msg_id)
        if extra is not None and i + total <= n:
            crc = crc16.mcrf4xx(bytes(data[i + 1 : i + body]) + bytes((extra,)))
            if crc == data[i + body] | data[i + body + 1] << 8:
                frames += 1
                i += total
                continue
        i += 1
    return frames


# ---------------------------------------------------------------------------------------
# The real-time proxy


def parse_udp_address(address: str | tuple[str, int], what: str = "address") -> tuple[str, int]:
    """`"host:port"`, `"udp:host:port"` (also `udpin:`/`udpout:`) or a tuple, as a tuple."""
    if isinstance(address, tuple):
        if len(address) == 2 and isinstance(address[0], str) and isinstance(address[1], int):
            host, port = address
        else:
            raise ValueError(f"{what} must be (host, port), got {address!r}")
    elif isinstance(address, str):
        rest = address
        for scheme in ("udpin:", "udpout:", "udp:"):
            if rest.startswith(scheme):
                rest = rest[len(scheme) :]
                break
        host, sep, port_text = rest.rpartition(":")
        try:
            port = int(port_text)
        except ValueError:
            port = -1
        if not sep or port < 0:
            raise ValueError(
                f"{what} must look like udp:HOST:PORT, e.g. udp:127.0.0.1:14555; got {address!r}"
            )
        host = host or "127.0.0.1"
    else:
        raise ValueError(
            f"{what} must be a 'host:port' string or a (host, port) tuple, got {address!r}"
        )
    if not 0 <= port <= 65535:
        raise ValueError(f"{what}: port {port} is outside 0..65535")
    return host, port


@dataclass(frozen=True)
class ProxyDirectionStats:
    """Datagram counts of one direction of a `MavlinkProxy`."""

    received: int
    forwarded: int
    dropped: int
    """Lost by the link model (loss, bursts, overflow)."""
    delayed: int
    """Held by the link model for some time before being forwarded."""
    unroutable: int
    """Released with nowhere to go (board to GCS before any ground station spoke)."""
    send_errors: int
    mavlink_frames: int
    """Checksummed MAVLink frames seen in the received datagrams."""
    bytes_in: int
    bytes_out: int


class _Direction:
    def __init__(self, model: TelemetryLinkModel) -> None:
        self.model = model
        self.received = self.forwarded = self.unroutable = self.send_errors = 0
        self.frames = self.bytes_in = self.bytes_out = 0

    def snapshot(self) -> ProxyDirectionStats:
        s = self.model.stats()
        return ProxyDirectionStats(
            self.received,
            self.forwarded,
            s.dropped,
            s.delayed,
            self.unroutable,
            self.send_errors,
            self.frames,
            self.bytes_in,
            self.bytes_out,
        )


class MavlinkProxy:
    """A UDP relay between a ground station and a board, each way through a link model.

    The proxy binds `listen` (127.0.0.1, an ephemeral port by default: see
    `listen_address`) for the ground station, which talks to it as it would to the
    board (MAVProxy `--master=udpout:127.0.0.1:PORT`, a QGroundControl UDP link with
    that target). Datagrams from the ground station go out of a second socket to
    `board`; whatever arrives on that socket goes back to the ground station that spoke
    last (or to `gcs` when given, until one speaks). `uplink` (ground station to board)
    and `downlink` (board to ground station) are the link models; None gives a clean
    link. Both can be reconfigured while the proxy runs (`proxy.uplink.configure(...)`).

    Datagrams are relayed as they are: the proxy never parses them beyond counting the
    MAVLink frames inside, so any bytes at all pass (or are lost) unharmed. It runs in
    its own thread between `start()` and `stop()`, or as a context manager; time is
    `time.monotonic()`.
    """

    def __init__(
        self,
        board: str | tuple[str, int],
        *,
        listen: str | tuple[str, int] = ("127.0.0.1", 0),
        gcs: str | tuple[str, int] | None = None,
        uplink: TelemetryLinkModel | None = None,
        downlink: TelemetryLinkModel | None = None,
        capacity: int = 4096,
    ) -> None:
        self.board_address = parse_udp_address(board, "board")
        self.listen = parse_udp_address(listen, "listen")
        self.gcs_address = parse_udp_address(gcs, "gcs") if gcs is not None else None
        if self.board_address[1] == 0:
            raise ValueError("board: port 0 is not an address to send to")
        self.uplink = (
            uplink if uplink is not None else TelemetryLinkModel(capacity=capacity, seed=1)
        )
        self.downlink = (
            downlink if downlink is not None else TelemetryLinkModel(capacity=capacity, seed=2)
        )
        self._up = _Direction(self.uplink)
        self._down = _Direction(self.downlink)
        self._gcs_peer: tuple[str, int] | None = self.gcs_address
        self._gcs_sock: socket.socket | None = None
        self._board_sock: socket.socket | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._count_lock = threading.Lock()
        self.error: BaseException | None = None

    # -- life cycle ----------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def listen_address(self) -> tuple[str, int]:
        """Where the ground station should send (the bound port, when 0 was asked for)."""
        if self._gcs_sock is None:
            raise LinkError("the MAVLink proxy is not running")
        return self._gcs_sock.getsockname()[:2]

    def start(self) -> MavlinkProxy:
        """Bind the sockets and relay in a background thread until `stop()`."""
        if self.running:
            return self
        gcs_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        board_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            gcs_sock.bind(self.listen)
            board_host = self.board_address[0]
            board_sock.bind(
                (
                    "127.0.0.1"
                    if board_host.startswith("127.") or board_host == "localhost"
                    else "",
                    0,
                )
            )
        except OSError as exc:
            gcs_sock.close()
            board_sock.close()
            raise LinkError(
                f"MAVLink proxy cannot listen on UDP {self.listen[0]}:{self.listen[1]}: {exc}"
            ) from exc
        for sock in (gcs_sock, board_sock):
            sock.setblocking(False)
        self._gcs_sock, self._board_sock = gcs_sock, board_sock
        self._wake = socket.socketpair()
        self._wake[0].setblocking(False)
        self._stop.clear()
        self.error = None
        self._thread = threading.Thread(target=self._run, name="mavlink-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop relaying and close the sockets; datagrams still in flight are discarded."""
        thread = self._thread
        if thread is not None:
            self._stop.set()
            if self._wake is not None:
                try:
                    self._wake[1].send(b"\0")
                except OSError:
                    pass
            thread.join(timeout)
            if thread.is_alive():
                raise LinkError(f"MAVLink proxy thread did not stop within {timeout} s")
            self._thread = None
        for sock in (self._gcs_sock, self._board_sock, *(self._wake or ())):
            if sock is not None:
                sock.close()
        self._gcs_sock = self._board_sock = None
        self._wake = None
        self.uplink.clear()
        self.downlink.clear()

    def __enter__(self) -> MavlinkProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- counters ------------------------------------------------------------------------
    def stats(self) -> dict[str, ProxyDirectionStats]:
        """Counters by direction: "uplink" (GCS to board) and "downlink" (board to GCS)."""
        with self._count_lock:
            return {"uplink": self._up.snapshot(), "downlink": self._down.snapshot()}

    @property
    def gcs_peer(self) -> tuple[str, int] | None:
        """The ground station's address as last seen (or as given), None before that."""
        return self._gcs_peer

    # -- the relay thread ----------------------------------------------------------------
    def _run(self) -> None:
        gcs_sock, board_sock = self._gcs_sock, self._board_sock
        assert gcs_sock is not None and board_sock is not None and self._wake is not None
        wake = self._wake[0]
        readers = [gcs_sock, board_sock, wake]
        try:
            while not self._stop.is_set():
                timeout = self._timeout()
                ready = select.select(readers, [], [], timeout)[0]
                if self._stop.is_set():
                    break
                if gcs_sock in ready:
                    self._receive(gcs_sock, self._up, self._down, from_gcs=True)
                if board_sock in ready:
                    self._receive(board_sock, self._down, self._up, from_gcs=False)
                now = time.monotonic()
                self._release(now, self._up, board_sock, self.board_address)
                self._release(now, self._down, gcs_sock, None)
        except Exception as exc:  # keep the reason; the thread must not die silently
            self.error = exc
            raise

    def _timeout(self) -> float:
        releases = [
            r for r in (self.uplink.next_release, self.downlink.next_release) if r is not None
        ]
        if not releases:
            return 1.0
        return min(1.0, max(0.0, min(releases) - time.monotonic()))

    def _receive(
        self, sock: socket.socket, direction: _Direction, other: _Direction, *, from_gcs: bool
    ) -> None:
        for _ in range(256):  # bounded, so one busy side cannot starve the other
            try:
                data, peer = sock.recvfrom(65535)
            except BlockingIOError:
                return
            except OSError:
                # ICMP "port unreachable" for an earlier datagram sent out of this socket
                # (by the other direction), which Linux reports on the next receive.
                with self._count_lock:
                    other.send_errors += 1
                continue
            frames = count_mavlink_frames(data)
            with self._count_lock:
                if from_gcs:
                    self._gcs_peer = peer
                direction.model.offer(time.monotonic(), data)
                direction.received += 1
                direction.bytes_in += len(data)
                direction.frames += frames

    def _release(
        self, now: float, direction: _Direction, sock: socket.socket, to: tuple[str, int] | None
    ) -> None:
        for data in direction.model.due(now):
            target = to if to is not None else self._gcs_peer
            # Counted under the lock with the send, so a reader who has seen a datagram
            # arrive also sees it counted.
            with self._count_lock:
                if target is None:
                    direction.unroutable += 1
                    continue
                try:
                    sock.sendto(data, target)
                except OSError:
                    direction.send_errors += 1
                    continue
                direction.forwarded += 1
                direction.bytes_out += len(data)

    def __repr__(self) -> str:
        host, port = self.board_address
        return (
            f"MavlinkProxy(board={host}:{port}, uplink={self.uplink!r}, downlink={self.downlink!r})"
        )
