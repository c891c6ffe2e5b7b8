"""The GPS feed (hil.sim.gps_feed) against a fake UART: what a real-time loop's GPS wire
does step by step, without a firmware. The same feed against Betaflight's own driver is
in tests/test_betaflight_gps.py."""

from __future__ import annotations

import io
import socket
import time

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from pyubx2 import UBXReader

from hil.injectors.ublox_config import frame
from hil.sim.gps_feed import GPS_INJECTIONS, GpsFeed, TcpUart
from hil.threats.gnss import GnssEnvironment, Truth

MON_VER_POLL = frame(0x0A, 0x04)
#: Betaflight's PUBX,41 for 115200 baud (gps.c gpsInitData).
PUBX_115200 = b"$PUBX,41,1,0003,0001,115200,0*1E\r\n"


class FakeUart:
    """The FC's side of the wire: what it wrote waits in `to_gps`, what it read in `got`."""

    def __init__(self) -> None:
        self.to_gps = bytearray()
        self.got = bytearray()
        self.bauds: list[int] = []
        self.reads = 0
        self.closed = False

    def read_nowait(self) -> bytes:
        self.reads += 1
        data, self.to_gps[:] = bytes(self.to_gps), b""
        return data

    def write(self, data: bytes) -> None:
        self.got += data

    def set_baudrate(self, baud: int) -> None:
        self.bauds.append(baud)

    def close(self) -> None:
        self.closed = True


class StillPlant:
    """A plant whose vehicle sits at home, and the GNSS sky over it."""

    def __init__(self, seed: int = 0) -> None:
        self.gnss = GnssEnvironment(np.random.default_rng(seed))
        self.asked: list[float] = []
        self.js_db: float | None = None  # a jammer, as hil.sim.plant sets it under gps_jamming

    def gnss_observation(self, t: float):
        self.asked.append(t)
        self.gnss.jammer_js_db = self.js_db
        return self.gnss.step(t, Truth((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)))


def messages(data: bytes) -> list[str]:
    out = []
    for _raw, parsed in UBXReader(io.BytesIO(data), protfilter=2):
        out.append(parsed.identity)
    return out


def run(feed: GpsFeed, plant: StillPlant, until: float, dt: float = 0.001, start: float = 0.0) -> None:
    for k in range(int(round((until - start) / dt))):
        feed.step(start + (k + 1) * dt, plant)


def test_solutions_at_the_receivers_rate_and_observations_only_when_due():
    uart, plant = FakeUart(), StillPlant()
    feed = GpsFeed.ublox(uart, rate_hz=5.0)
    run(feed, plant, 2.0)
    # 5 Hz for 2 s: the first at once, then every 0.2 s (10 or 11 by where the edge falls).
    assert 10 <= feed.solutions <= 11
    assert len(plant.asked) == feed.solutions  # the sky is computed only for a solution
    assert messages(bytes(uart.got)).count("NAV-PVT") == feed.solutions
    # The port is looked at every READ_PERIOD_S, not every loop step.
    assert uart.reads < 2000 / 3


def test_a_poll_is_answered_within_one_read_period_not_at_the_next_solution():
    uart, plant = FakeUart(), StillPlant()
    feed = GpsFeed.ublox(uart, rate_hz=1.0)
    run(feed, plant, 0.1)
    uart.got.clear()
    uart.to_gps += MON_VER_POLL
    run(feed, plant, 0.11, start=0.1)
    assert messages(bytes(uart.got)) == ["MON-VER"]
    assert feed.bytes_in == len(MON_VER_POLL)


def test_the_receiver_moves_to_the_baud_the_firmware_asks_for_and_the_port_follows():
    uart, plant = FakeUart(), StillPlant()
    events = []
    feed = GpsFeed.ublox(uart, baud=38400, on_event=lambda kind, text: events.append(text))
    run(feed, plant, 0.05)
    uart.to_gps += PUBX_115200
    run(feed, plant, 0.1, start=0.05)
    assert feed.emulator.baud == 115200
    assert uart.bauds == [115200] and feed.baud_changes == [115200]
    assert any("115200 baud" in e for e in events)
    assert any("talks to its GPS receiver" in e for e in events)


def test_jamming_on_the_plant_takes_the_fix_away_in_the_stream():
    uart, plant = FakeUart(), StillPlant()
    feed = GpsFeed.ublox(uart, rate_hz=5.0)
    run(feed, plant, 20.0, dt=0.01)

    def last_fix() -> tuple[int, int]:
        pvt = [p for _r, p in UBXReader(io.BytesIO(bytes(uart.got)), protfilter=2) if p.identity == "NAV-PVT"]
        return pvt[-1].fixType, pvt[-1].numSV

    assert last_fix()[0] == 3
    plant.js_db = 60.0
    uart.got.clear()
    run(feed, plant, 30.0, dt=0.01, start=20.0)
    fix, sats = last_fix()
    assert fix < 3 and sats < 4
    assert {"gps_jamming", "gps_loss", "gps_spoofing"} == GPS_INJECTIONS


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=20))
def test_garbage_from_the_firmware_never_stops_the_feed(chunks):
    uart, plant = FakeUart(), StillPlant()
    feed = GpsFeed.ublox(uart, rate_hz=10.0)
    t = 0.0
    for chunk in chunks:
        uart.to_gps += chunk
        t += 0.01
        feed.step(t, plant)
    feed.step(t + 1.0, plant)
    assert feed.solutions >= 1
    assert "NAV-PVT" in messages(bytes(uart.got))


def test_tcp_uart_connects_in_the_background_and_comes_back_after_the_peer_restarts():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    uart = TcpUart(f"socket://127.0.0.1:{port}", retry_s=0.05)
    try:
        peer, _ = server.accept()
        deadline = time.monotonic() + 5.0
        while not uart.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        assert uart.connected
        uart.write(b"\xb5\x62fix")
        peer.settimeout(2.0)
        assert peer.recv(16) == b"\xb5\x62fix"
        peer.sendall(b"poll")
        got = b""
        while not got and time.monotonic() < deadline:
            got = uart.read_nowait()
            time.sleep(0.01)
        assert got == b"poll"
        peer.close()  # the firmware restarted
        deadline = time.monotonic() + 5.0
        while uart.read_nowait() == b"" and uart.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        peer2, _ = server.accept()  # it connects again by itself
        while uart.connects < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert uart.connects == 2
        peer2.close()
    finally:
        uart.close()
        server.close()
