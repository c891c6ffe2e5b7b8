"""The serial link over RFC 2217, as a labgrid exporter serves a port (ser2net on a pty).

Needs ser2net (Debian package `ser2net`); skipped without it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import tty
from pathlib import Path

import pytest

from hil.links.serial_link import SerialLink, rfc2217_url

SER2NET = shutil.which("ser2net") or ("/usr/sbin/ser2net" if Path("/usr/sbin/ser2net").exists() else None)


def test_ign_set_control_is_added_once():
    assert rfc2217_url("rfc2217://h:1") == "rfc2217://h:1?ign_set_control"
    assert rfc2217_url("rfc2217://h:1?timeout=3") == "rfc2217://h:1?timeout=3&ign_set_control"
    assert rfc2217_url("rfc2217://h:1?ign_set_control") == "rfc2217://h:1?ign_set_control"


@pytest.fixture
def served_pty(tmp_path):
    """A pty whose slave ser2net serves over RFC 2217 on 127.0.0.1; yields (master fd, url)."""
    if SER2NET is None:
        pytest.skip("ser2net is not installed (apt-get install ser2net)")
    master, slave = os.openpty()
    tty.setraw(slave)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [SER2NET, "-d", "-n",
         "-Y", f"connection: &c#  accepter: telnet(rfc2217,mode=server),tcp,127.0.0.1,{port}",
         "-Y", f"  connector: serialdev(nouucplock=true),{os.ttyname(slave)},115200n81,local"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("ser2net did not listen within 10 s")
                time.sleep(0.05)
        os.set_blocking(master, False)
        yield master, f"rfc2217://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        os.close(master)
        os.close(slave)


def _drain(master: int, want: int, within: float = 5.0) -> bytes:
    got = b""
    deadline = time.monotonic() + within
    while len(got) < want and time.monotonic() < deadline:
        try:
            got += os.read(master, 4096)
        except BlockingIOError:
            time.sleep(0.005)
    return got


def test_every_byte_value_crosses_both_ways_in_few_reads(served_pty):
    master, url = served_pty
    data = bytes(range(256)) * 8 + b"\xff\xff\r\x00\r\n"
    link = SerialLink(url, 420000).open()  # a write timeout is set: no NotImplementedError
    try:
        assert link.fileno() is None or link.network
        link.write(data)
        assert _drain(master, len(data)) == data
        os.write(master, data)
        got, reads = b"", 0
        deadline = time.monotonic() + 5.0
        while len(got) < len(data) and time.monotonic() < deadline:
            chunk = link.read(0.5)
            if chunk is not None:
                got += chunk.data
                reads += 1
        assert got == data
        # pyserial queues the bytes one by one; a read takes all that has arrived, not one.
        assert reads < len(data) // 16, f"{reads} reads for {len(data)} bytes"
    finally:
        link.close()


def test_a_read_with_nothing_to_read_returns_none(served_pty):
    _, url = served_pty
    with SerialLink(url).open() as link:
        assert link.read(0.1) is None
