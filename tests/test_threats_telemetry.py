"""The telemetry link model, the MAVLink UDP proxy, and the model in the lockstep loop."""

from __future__ import annotations

import math
import os
import socket
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hil.errors import HilError
from hil.mavlink.dialect import mavlink, new_codec
from hil.scenario.model import injection_kinds
from hil.sim.loop import ClosedLoop, SimConfig, mavlink_loop
from hil.threats.telemetry import (
    MavlinkProxy,
    TelemetryLinkModel,
    count_mavlink_frames,
    parse_udp_address,
)
from hil.vfc.failsafe import GcsMonitor

# --- the link model ------------------------------------------------------------------

times = st.lists(st.floats(0.0, 5.0, allow_nan=False), min_size=0, max_size=60).map(
    lambda steps: list(np.cumsum(steps)) if steps else []
)


@given(times=times, seed=st.integers(0, 2**32 - 1))
def test_a_clean_link_passes_everything_at_once_and_in_order(times, seed):
    link = TelemetryLinkModel(seed=seed)
    out = []
    for k, t in enumerate(times):
        assert link.offer(t, k)
        out.extend(link.due(t))
    assert out == list(range(len(times)))
    stats = link.stats()
    assert (stats.lost, stats.delayed, stats.pending, stats.released) == (0, 0, 0, len(times))


@settings(max_examples=25, deadline=None)
@given(
    loss=st.floats(0.0, 1.0),
    burst_ms=st.one_of(st.just(0.0), st.floats(1.0, 500.0)),
    interval=st.floats(0.02, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_long_run_loss_share_matches_the_configured_loss(loss, burst_ms, interval, seed):
    n = 10_000
    link = TelemetryLinkModel(loss=loss, burst_ms=burst_ms, seed=seed)
    lost = sum(not link.offer(k * interval, k) for k in range(n))
    assert link.stats().lost == lost
    if loss in (0.0, 1.0):
        assert lost == loss * n
        return
    # Sampled every `interval`, the channel keeps memory lam = exp(-interval / tau); the
    # variance of the loss share grows by (1 + lam) / (1 - lam) over independent draws.
    lam = 0.0 if burst_ms == 0 else math.exp(-interval / (burst_ms * 1e-3 * (1 - loss)))
    se = math.sqrt(loss * (1 - loss) * (1 + lam) / (1 - lam) / n)
    assert abs(lost / n - loss) <= 6 * se + 1e-3


def test_bursts_last_burst_ms_on_average():
    link = TelemetryLinkModel(loss=0.3, burst_ms=100.0, seed=5)
    dt = 0.002
    lost = np.array([not link.offer(k * dt, k) for k in range(200_000)])
    edges = np.diff(np.r_[0, lost.astype(np.int8), 0])
    runs = (np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)) * dt
    assert runs.mean() == pytest.approx(0.100, rel=0.1)
    assert lost.mean() == pytest.approx(0.3, abs=0.03)


@given(
    offers=st.lists(
        st.tuples(st.floats(0.0, 0.5), st.floats(0.0, 300.0), st.booleans()),
        min_size=1,
        max_size=40,
    ),
    jitter_ms=st.one_of(st.just(0.0), st.floats(0.1, 400.0)),
    probes=st.lists(st.floats(0.0, 0.3), min_size=1, max_size=40),
    seed=st.integers(0, 1000),
)
def test_nothing_arrives_before_its_delay_and_order_holds_without_jitter(
    offers, jitter_ms, probes, seed
):
    """Delays change between offers; due() is asked at arbitrary later times."""
    link = TelemetryLinkModel(jitter_ms=jitter_ms, seed=seed)
    t = 0.0
    sent: dict[int, tuple[float, float]] = {}  # item: (offer time, delay in force)
    arrivals: list[tuple[float, int]] = []
    probe = iter(probes)
    for k, (step, delay_ms, ask) in enumerate(offers):
        t += step
        link.configure(delay_ms=delay_ms)
        assert link.offer(t, k)
        sent[k] = (t, delay_ms * 1e-3)
        if ask:
            q = t + next(probe, 0.0)
            arrivals.extend((q, item) for item in link.due(q))
    end = t + 1.0  # beyond every delay (0.3 s) and jitter (0.4 s)
    arrivals.extend((end, item) for item in link.due(end))
    assert sorted(item for _, item in arrivals) == list(range(len(offers)))  # all, once
    for q, item in arrivals:
        t_offer, delay = sent[item]
        assert q >= t_offer + delay - 1e-9
    if jitter_ms == 0.0:
        assert [item for _, item in arrivals] == list(range(len(offers)))
    assert link.pending == 0


def test_jitter_stays_within_its_bound_and_can_reorder():
    link = TelemetryLinkModel(delay_ms=100.0, jitter_ms=500.0, seed=1)
    for k in range(200):
        link.offer(k * 0.01, k)
    assert link.next_release is not None and link.next_release >= 0.1
    assert link.due(0.0999) == []
    out = link.due(0.01 * 199 + 0.6 + 1e-9)
    assert sorted(out) == list(range(200))
    assert out != list(range(200))  # 500 ms of jitter on 10 ms spacing reorders


def test_same_seed_same_fate():
    def run(seed):
        link = TelemetryLinkModel(loss=0.4, burst_ms=50.0, delay_ms=20.0, jitter_ms=30.0, seed=seed)
        for k in range(500):
            link.offer(k * 0.013, k)
        return link.due(100.0)

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_capacity_drops_what_does_not_fit():
    link = TelemetryLinkModel(delay_ms=1000.0, capacity=3)
    assert [link.offer(0.1 * k, k) for k in range(5)] == [True, True, True, False, False]
    stats = link.stats()
    assert (stats.overflowed, stats.dropped, stats.pending) == (2, 2, 3)
    assert link.due(10.0) == [0, 1, 2]


def test_time_must_not_go_backwards():
    link = TelemetryLinkModel()
    link.offer(2.0, "a")
    with pytest.raises(ValueError, match="backwards"):
        link.offer(1.0, "b")
    with pytest.raises(ValueError, match="finite"):
        link.offer(math.nan, "c")


garbage = st.one_of(
    st.floats(max_value=-1e-9),
    st.just(math.nan),
    st.just(math.inf),
    st.just(-math.inf),
    st.booleans(),
    st.text(max_size=5),
    st.none().map(lambda _: [0.1]),
)


@given(
    name=st.sampled_from(["loss", "burst_ms", "delay_ms", "jitter_ms"]),
    value=garbage,
)
def test_garbage_parameters_are_refused_by_name(name, value):
    with pytest.raises(ValueError, match=name):
        TelemetryLinkModel(**{name: value})
    link = TelemetryLinkModel(loss=0.25, delay_ms=10.0)
    with pytest.raises(ValueError, match=name):
        link.configure(**{name: value})
    assert (link.loss, link.delay_ms) == (0.25, 10.0)  # a refused change changes nothing


@given(loss=st.floats(min_value=1.0, exclude_min=True))
def test_loss_above_one_is_refused(loss):
    with pytest.raises(ValueError, match="loss must be a number between 0 and 1"):
        TelemetryLinkModel(loss=loss)


@pytest.mark.parametrize("capacity", [0, -1, 2.5, True, "3"])
def test_bad_capacity_is_refused(capacity):
    with pytest.raises(ValueError, match="capacity"):
        TelemetryLinkModel(capacity=capacity)


# --- frame counting and addresses ---------------------------------------------------


def _heartbeat(seq: int = 0) -> bytes:
    codec = new_codec(255, 190)
    codec.seq = seq
    return mavlink.MAVLink_heartbeat_message(6, 8, 0, 0, 4, 3).pack(codec)


def test_frames_are_counted_only_when_whole_and_checksummed():
    hb = _heartbeat()
    assert count_mavlink_frames(hb) == 1
    assert count_mavlink_frames(b"\x00junk" + hb + hb + b"\xfd\xfe") == 2
    assert count_mavlink_frames(hb[:-1]) == 0
    broken = bytearray(hb)
    broken[12] ^= 0xFF
    assert count_mavlink_frames(bytes(broken)) == 0


@given(st.binary(max_size=300))
def test_frame_counting_never_raises(data):
    assert count_mavlink_frames(data) >= 0


def test_udp_addresses():
    assert parse_udp_address("udp:10.0.0.2:14555") == ("10.0.0.2", 14555)
    assert parse_udp_address("127.0.0.1:5760") == ("127.0.0.1", 5760)
    assert parse_udp_address(":14550") == ("127.0.0.1", 14550)
    for bad in ("nohost", "udp:host:port", "1.2.3.4:70000", ("x",), 14550):
        with pytest.raises(ValueError):
            parse_udp_address(bad)


# --- the proxy ------------------------------------------------------------------------

WAIT = 5.0  # generous ceiling for a datagram to show up; never a bound being tested


def _udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(WAIT)
    return sock


@pytest.fixture
def ends():
    gcs, board = _udp(), _udp()
    yield gcs, board
    gcs.close()
    board.close()


def _recv(sock: socket.socket) -> tuple[bytes, tuple[str, int]]:
    return sock.recvfrom(65535)


def test_proxy_relays_both_ways_in_order(ends):
    gcs, board = ends
    with MavlinkProxy(board.getsockname()) as proxy:
        host_port = proxy.listen_address
        assert host_port[0] == "127.0.0.1"
        for k in range(50):
            gcs.sendto(b"up%d" % k, host_port)
        got = [_recv(board) for _ in range(50)]
        assert [d for d, _ in got] == [b"up%d" % k for k in range(50)]
        proxy_side = got[0][1]
        for k in range(50):
            board.sendto(b"down%d" % k, proxy_side)
        assert [_recv(gcs)[0] for _ in range(50)] == [b"down%d" % k for k in range(50)]
        assert proxy.gcs_peer == gcs.getsockname()
        stats = proxy.stats()
    for name in ("uplink", "downlink"):
        s = stats[name]
        assert (s.received, s.forwarded, s.dropped, s.delayed, s.send_errors) == (50, 50, 0, 0, 0)
    assert not proxy.running


def test_proxy_forwards_garbage_untouched_and_counts_mavlink_frames(ends):
    gcs, board = ends
    hb = _heartbeat()
    payloads = [b"", b"\xfd", os.urandom(1000), hb, b"\xfe\xff" * 40, hb + hb, os.urandom(60_000)]
    with MavlinkProxy(board.getsockname()) as proxy:
        for data in payloads:
            gcs.sendto(data, proxy.listen_address)
        assert [_recv(board)[0] for _ in payloads] == payloads
        assert proxy.running and proxy.error is None
        stats = proxy.stats()["uplink"]
    assert stats.forwarded == len(payloads)
    assert stats.mavlink_frames >= 3  # random bytes may hold a frame by chance, rarely
    assert stats.bytes_out == sum(len(p) for p in payloads)


def test_proxy_total_loss_then_recovery(ends):
    """Lost datagrams never come: a marker sent after the link recovers is the first in."""
    gcs, board = ends
    with MavlinkProxy(board.getsockname(), uplink=TelemetryLinkModel(loss=1.0)) as proxy:
        for k in range(20):
            gcs.sendto(b"lost%d" % k, proxy.listen_address)
        # Wait until the proxy has taken all 20 in (a count, not a time).
        deadline = time.monotonic() + WAIT
        while proxy.stats()["uplink"].received < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        proxy.uplink.configure(loss=0.0)
        gcs.sendto(b"marker", proxy.listen_address)
        assert _recv(board)[0] == b"marker"
        stats = proxy.stats()["uplink"]
    assert (stats.received, stats.dropped, stats.forwarded) == (21, 20, 1)


def test_proxy_partial_loss_counts_add_up_and_order_holds(ends):
    gcs, board = ends
    # Independent losses: which datagrams go depends on the seed only, not on timing.
    uplink = TelemetryLinkModel(loss=0.5, seed=9)
    twin = TelemetryLinkModel(loss=0.5, seed=9)
    expected = [k for k in range(200) if twin.offer(0.0, k)]
    with MavlinkProxy(board.getsockname(), uplink=uplink) as proxy:
        for k in range(200):
            gcs.sendto(b"%03d" % k, proxy.listen_address)
        deadline = time.monotonic() + WAIT
        while proxy.stats()["uplink"].received < 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        proxy.uplink.configure(loss=0.0)
        gcs.sendto(b"end", proxy.listen_address)
        got = []
        while not got or got[-1] != b"end":
            got.append(_recv(board)[0])
        stats = proxy.stats()["uplink"]
    assert [int(d) for d in got[:-1]] == expected
    assert stats.received == 201
    assert stats.forwarded == len(got) and stats.dropped == 201 - len(got)
    assert 0 < stats.dropped < 200


def test_proxy_delay_is_a_lower_bound(ends):
    gcs, board = ends
    downlink = TelemetryLinkModel(delay_ms=200.0)
    uplink = TelemetryLinkModel(delay_ms=200.0)
    with MavlinkProxy(board.getsockname(), uplink=uplink, downlink=downlink) as proxy:
        sent = time.monotonic()
        gcs.sendto(b"ping", proxy.listen_address)
        data, proxy_side = _recv(board)
        assert data == b"ping" and time.monotonic() - sent >= 0.2
        sent = time.monotonic()
        board.sendto(b"pong", proxy_side)
        assert _recv(gcs)[0] == b"pong" and time.monotonic() - sent >= 0.2
        stats = proxy.stats()
    assert stats["uplink"].delayed == 1 and stats["downlink"].delayed == 1


def test_a_given_gcs_address_is_used_until_a_ground_station_speaks(ends):
    gcs, board = ends
    with MavlinkProxy(board.getsockname(), gcs=gcs.getsockname()) as proxy:
        assert proxy.gcs_peer == gcs.getsockname()
        gcs.sendto(b"hello", proxy.listen_address)
        _, proxy_side = _recv(board)
        board.sendto(b"status", proxy_side)
        assert _recv(gcs)[0] == b"status"
    assert proxy.stats()["downlink"].unroutable == 0


def test_proxy_stops_cleanly_and_twice():
    proxy = MavlinkProxy("udp:127.0.0.1:9").start()
    address = proxy.listen_address
    proxy.stop()
    proxy.stop()
    assert not proxy.running
    # The port is free again.
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.close()


def test_proxy_refuses_bad_addresses():
    with pytest.raises(ValueError, match="board"):
        MavlinkProxy("no-port")
    with pytest.raises(ValueError, match="port 0"):
        MavlinkProxy("127.0.0.1:0")


# --- in the lockstep loop ---------------------------------------------------------------


class _Conn:
    def __init__(self) -> None:
        self.gcs = new_codec(255, 190)
        self.sim = new_codec(255, 25)
        self.loop: ClosedLoop | None = None
        self.heartbeats: list[tuple[float, int]] = []  # (sim time it reached the wire, seq)
        self._parser = new_codec(1, 1)

    def send_bytes(self, data: bytes) -> None:
        for msg in self._parser.parse_buffer(data) or ():
            if msg.get_type() == "HEARTBEAT":
                self.heartbeats.append((self.loop.time, msg.get_seq()))


class _Autopilot:
    target_system = 1
    target_component = 1

    def __init__(self) -> None:
        self.conn = _Conn()


def _run_loop(seconds: float, *schedule) -> list[tuple[float, int]]:
    """Heartbeats on the wire of a board-free loop, with injections scheduled."""
    ap = _Autopilot()
    loop = mavlink_loop(ap, SimConfig(rate_hz=50.0))
    ap.conn.loop = loop
    for kind, start, stop, params in schedule:
        loop.schedule(kind, start, stop, params)
    while loop.time < seconds:
        loop.link.send(loop.t_us, loop.plant)
        loop.t_us += loop.dt_us
        if loop._schedule and loop._schedule[0].t_us <= loop.t_us:
            loop._apply_due()
    return ap.conn.heartbeats


def _failsafe_times(heartbeats, end: float, timeout: float = 5.0) -> list[float]:
    """When the board's GCS monitor would trip, fed these arrivals at 50 Hz."""
    monitor = GcsMonitor()
    arrivals = iter(heartbeats)
    nxt = next(arrivals, None)
    trips = []
    for k in range(int(end * 50)):
        now = k / 50
        while nxt is not None and nxt[0] <= now:
            monitor.heartbeat(nxt[0])
            nxt = next(arrivals, None)
        if monitor.check(now, True, True, timeout) == "on":
            trips.append(now)
    return trips


def test_telemetry_jamming_declares_its_parameters():
    params = injection_kinds()["telemetry_jamming"].params
    assert set(params) == {"loss", "burst_ms", "delay_ms", "jitter_ms"}
    assert all(spec.default == 0.0 for spec in params.values())


def test_heartbeats_are_delayed_in_simulation_time_and_keep_their_order():
    clean = _run_loop(20.0)
    late = _run_loop(20.0, ("telemetry_jamming", 5.0, 12.0, {"delay_ms": 1500.0}))
    assert [round(t, 6) for t, _ in clean] == [float(k) for k in range(20)]
    seqs = [s for _, s in late]
    assert seqs == sorted(seqs)
    arrive = [t for t, _ in late]
    assert arrive[:5] == [t for t, _ in clean[:5]]
    during = [t for t in arrive if 6.0 < t < 12.9]
    # Sent at 5..11 s, they arrive 1.5 s late; the one sent at 12 s, when the delay has
    # ended, waits behind the last delayed one (first in, first out).
    assert during == pytest.approx([k + 1.5 for k in range(5, 12)] + [12.5], abs=0.021)
    # Delayed but never 5 s apart: no failsafe. A delay beyond the timeout trips it.
    assert max(np.diff(arrive)) < 5.0 and not _failsafe_times(late, 20.0)
    slow = _run_loop(20.0, ("telemetry_jamming", 5.0, None, {"delay_ms": 6000.0}))
    assert _failsafe_times(slow, 20.0)


def test_heartbeat_loss_bursts_and_recovery_in_the_loop():
    beats = _run_loop(30.0, ("telemetry_jamming", 5.0, 15.0, {"loss": 1.0}))
    arrive = [t for t, _ in beats]
    assert not [t for t in arrive if 5.0 <= t < 15.0]
    assert [t for t in arrive if t >= 15.0]
    assert _failsafe_times(beats, 30.0)
    some = _run_loop(60.0, ("telemetry_jamming", 0.0, None, {"loss": 0.5, "burst_ms": 2000.0}))
    assert 10 <= len(some) <= 50


def test_gcs_loss_probability_is_the_links_loss():
    loop = mavlink_loop(_Autopilot(), SimConfig())
    loop.plant.gcs_loss_probability = 0.3
    assert loop.plant.telemetry_link.loss == 0.3
    with pytest.raises(ValueError):
        loop.plant.gcs_loss_probability = 2.0


def test_bad_telemetry_jamming_from_python_is_a_hil_error():
    loop = mavlink_loop(_Autopilot(), SimConfig())
    loop.schedule("telemetry_jamming", 0.0, None, {"delay_ms": -5.0})
    with pytest.raises(HilError, match="delay_ms"):
        loop._apply_due()


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 100))
def test_loop_heartbeats_are_repeatable(seed):
    def run():
        ap = _Autopilot()
        loop = mavlink_loop(ap, SimConfig(rate_hz=20.0, seed=seed))
        ap.conn.loop = loop
        loop.schedule("telemetry_jamming", 0.0, None, {"loss": 0.4, "jitter_ms": 300.0})
        while loop.time < 30.0:
            loop.link.send(loop.t_us, loop.plant)
            loop.t_us += loop.dt_us
            if loop._schedule:
                loop._apply_due()
        return ap.conn.heartbeats

    assert run() == run()
