"""The serial link: pyserial URLs, arrival stamps, bounded reads and writes."""

from __future__ import annotations

import os
import socket
import threading
import time
import tty

import pytest

from hil.errors import LinkError
from hil.links.serial_link import SerialLink


@pytest.fixture
def pty_pair():
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    yield master, path
    for fd in (master, slave):
        try:
            os.close(fd)
        except OSError:
            pass


def test_chunk_is_stamped_at_arrival(pty_pair):
    master, path = pty_pair
    with SerialLink(path) as link:
        before = time.monotonic_ns()
        os.write(master, b"hello")
        chunk = link.read(1.0)
        after = time.monotonic_ns()
    assert chunk is not None
    assert chunk.data == b"hello"
    assert before <= chunk.t_ns <= after


def test_read_returns_none_after_its_timeout(pty_pair):
    _, path = pty_pair
    with SerialLink(path) as link:
        start = time.monotonic()
        assert link.read(0.1) is None
        assert 0.09 <= time.monotonic() - start < 1.0


def test_written_bytes_reach_the_other_side(pty_pair):
    master, path = pty_pair
    with SerialLink(path) as link:
        link.write(b"\xfd\x01\x02")
        time.sleep(0.05)
        assert os.read(master, 100) == b"\xfd\x01\x02"
        assert link.bytes_out == 3


def test_opening_a_missing_port_names_it():
    with pytest.raises(LinkError, match="/dev/ttyNOPE"):
        SerialLink("/dev/ttyNOPE").open()


def test_reading_a_closed_link_is_a_link_error(pty_pair):
    _, path = pty_pair
    link = SerialLink(path).open()
    link.close()
    with pytest.raises(LinkError, match="not open"):
        link.read(0.01)


def test_socket_url_works_like_a_tty():
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    def serve():
        conn, _ = server.accept()
        conn.recv(10)  # pyserial discards input that arrives while it opens: answer, then send
        conn.sendall(b"abc")
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        received = b""
        with SerialLink(f"socket://127.0.0.1:{port}") as link:
            link.write(b"x")
            deadline = time.monotonic() + 2.0
            while len(received) < 3 and time.monotonic() < deadline:
                chunk = link.read(0.2)
                if chunk is not None:
                    received += chunk.data
        assert received == b"abc"
    finally:
        thread.join(2.0)
        server.close()
