"""UDP links: the transport of SITLs that are not on a tty."""

from __future__ import annotations

import threading

import pytest

from hil.autopilot.mavlink import MavlinkAutopilot
from hil.errors import LinkError
from hil.links.serial_link import SerialLink
from hil.links.udp_link import UdpLink, open_link
from hil.mavlink.connection import MavConnection


def test_udpout_reaches_udpin_and_udpin_answers_the_sender():
    with UdpLink("udpin:127.0.0.1:0") as server:
        port = server.local_address[1]
        with UdpLink(f"udpout:127.0.0.1:{port}") as client:
            client.write(b"ping")
            chunk = server.read(2.0)
            assert chunk is not None and chunk.data == b"ping"
            server.write(b"pong")
            reply = client.read(2.0)
            assert reply is not None and reply.data == b"pong"


def test_read_times_out_with_none():
    with UdpLink("udpin:127.0.0.1:0") as link:
        assert link.read(0.05) is None


def test_udpin_before_anyone_spoke_drops_writes():
    with UdpLink("udpin:127.0.0.1:0") as link:
        link.write(b"nobody")
        assert link.bytes_out == 0


@pytest.mark.parametrize("url", ["udpin:127.0.0.1:notaport", "udp-ish:1:2"])
def test_bad_udp_urls_are_link_errors(url):
    with pytest.raises(LinkError):
        UdpLink(url)


def _bridge(tty_url: str, udp: UdpLink, stop: threading.Event) -> None:
    """Carry bytes between the board's tty and a UDP socket, as a SITL's UDP port would."""
    tty = SerialLink(tty_url).open()
    try:
        while not stop.is_set():
            chunk = udp.read(0.005)
            if chunk is not None:
                tty.write(chunk.data)
            chunk = tty.read(0.005)
            if chunk is not None:
                udp.write(chunk.data)
    finally:
        tty.close()


def test_the_adapter_identifies_a_board_reached_over_udp(board):
    board_side = UdpLink("udpin:127.0.0.1:0").open()
    stop = threading.Event()
    thread = threading.Thread(target=_bridge, args=(board.url(), board_side, stop), daemon=True)
    thread.start()
    conn = MavConnection(open_link(f"udpout:127.0.0.1:{board_side.local_address[1]}"))
    autopilot = MavlinkAutopilot(conn)
    conn.idle_callbacks.append(conn.gcs_heartbeat)
    conn.start_reader()
    try:
        conn.gcs_heartbeat()  # the first datagram tells the board side where we are
        autopilot.ping(5.0)
        ident = autopilot.identify()
        assert ident.autopilot == "ArduPilot" and ident.board_id == 7701
    finally:
        conn.close()
        stop.set()
        thread.join(2.0)
        board_side.close()
