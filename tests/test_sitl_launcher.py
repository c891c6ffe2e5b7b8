"""Betaflight SITL launcher: scratch directory, namespace, restart on exit, clean stop."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest
import serial

from hil.codecs import msp
from hil.errors import ConfigError
from hil.sitl import netns
from hil.sitl.betaflight import BetaflightSitl, find_executable
from tests.sitl_support import require_sitl


def _request(url: str, cmd: int, timeout: float = 3.0) -> msp.MspFrame:
    parser = msp.MspParser()
    with serial.serial_for_url(url, timeout=0.05) as port:
        port.write(msp.encode_request(cmd))
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for frame in parser.feed(port.read(256)):
                if frame.cmd == cmd:
                    return frame
    raise AssertionError(f"no reply to MSP command {cmd} from {url} within {timeout} s")


@pytest.fixture
def sitl(tmp_path):
    require_sitl()
    s = BetaflightSitl(tmp_path / "bf")
    s.start()
    yield s
    s.stop()


def test_sitl_runs_in_its_own_directory_and_answers_msp(sitl, tmp_path):
    assert (tmp_path / "bf" / "eeprom.bin").exists()  # the firmware wrote its config here
    assert _request(sitl.msp_url, msp.MspCommand.FC_VARIANT).payload == b"BTFL"
    assert sitl.scheduler.startswith(("SCHED_FIFO", "SCHED_OTHER"))


def test_isolated_instances_do_not_share_ports(sitl, tmp_path):
    if not sitl.isolated:
        pytest.skip("no network namespaces here: instances are serialised by the board lock instead")
    with BetaflightSitl(tmp_path / "bf2") as other:
        assert other.fc_ip != sitl.fc_ip
        assert _request(other.msp_url, msp.MspCommand.FC_VARIANT).payload == b"BTFL"
        assert _request(sitl.msp_url, msp.MspCommand.FC_VARIANT).payload == b"BTFL"
    # Nothing listens on the host's own loopback: the firmware's 0.0.0.0 is its namespace's.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", 5761), timeout=0.5).close()


def test_a_stray_reboot_byte_restarts_the_firmware(sitl):
    gen = sitl.generation
    with serial.serial_for_url(sitl.msp_url, timeout=0.1) as port:
        port.write(b"R")  # the reboot character outside an MSP frame: the process exits
        time.sleep(0.2)
    sitl.wait_restarted(gen, timeout=15.0)
    assert sitl.restarts >= 1 and sitl.exit_codes[-1] == 0
    assert _request(sitl.msp_url, msp.MspCommand.FC_VARIANT).payload == b"BTFL"


def test_stop_ends_the_process_and_removes_the_namespace(tmp_path):
    require_sitl()
    s = BetaflightSitl(tmp_path / "bf")
    s.start()
    pid = s.proc.pid
    ns = s.netns.name if s.netns else None
    s.stop()
    assert s.proc.poll() is not None
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(pid, 0)
    if ns:
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert ns not in names
    s.stop()  # idempotent


def test_missing_executable_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist or is not executable"):
        find_executable(tmp_path / "nope")


def test_bad_options_are_refused(tmp_path):
    require_sitl()
    with pytest.raises(ConfigError, match="isolation"):
        BetaflightSitl(tmp_path, isolation="docker")
    with pytest.raises(ConfigError, match="scheduler"):
        BetaflightSitl(tmp_path, scheduler="rr")


def test_stale_namespaces_of_dead_processes_are_removed():
    if not netns.namespaces_available():
        pytest.skip("no network namespaces here")
    dead = subprocess.Popen(["true"])
    dead.wait()
    name = f"hil-{dead.pid}-1"
    subprocess.run(["ip", "netns", "add", name], check=True)
    assert name in netns.remove_stale()
