"""`hil doctor`: the default rig is ready, a missing board is named with its fix, and
each check says what it found and how to fix it, from facts made up for the test."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from hil.cli import main
from hil.doctor import (
    Check,
    HostFacts,
    check_clocksource,
    check_cpus,
    check_dfu_util,
    check_libusb,
    check_modem_manager,
    check_receiver,
    check_sched_fifo,
    check_serial_access,
    exit_status,
    host_checks,
)
from hil.receivers import Receiver
from hil.usb.discovery import UsbPortDescription

REPO = Path(__file__).resolve().parent.parent

#: A user at a plain desktop: not root, in dialout, nothing wrong.
GOOD = HostFacts(
    euid=1000,
    user="tech",
    groups=frozenset({"tech", "dialout"}),
    serial_devices=(("/dev/ttyACM0", True),),
    modem_manager=False,
    libusb=True,
    dfu_util="/usr/bin/dfu-util",
    sched_fifo=None,
    rtprio=50,
    cpus=4,
    clocksource="tsc",
)


# ----------------------------------------------------------------- whole runs


@pytest.mark.parametrize("rig", ["fixtures/virtual.toml", "hil/data/virtual.toml"])
def test_the_default_rigs_are_ready(rig, capsys):
    assert main(["doctor", "--rig", str(REPO / rig)]) == 0
    out = capsys.readouterr().out
    assert "OK       board copter1" in out and out.rstrip().endswith("ready")
    assert "PROBLEM" not in out


def test_an_absent_mavlink_board_is_named_with_its_fix(tmp_path, capsys):
    rig = tmp_path / "rig.toml"
    rig.write_text('[[board]]\nname = "fc1"\ntype = "mavlink"\nusb_serial = "NOSUCHBOARD"\n')
    assert main(["doctor", "--rig", str(rig), "--timeout", "0.1"]) == 3
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("PROBLEM  board fc1"))
    assert "NOSUCHBOARD" in line and "fix: plug it in and power it" in line
    assert "not ready" in out


def test_a_broken_rig_file_is_bad_input(tmp_path, capsys):
    rig = tmp_path / "rig.toml"
    rig.write_text('[[board]]\nname = "fc1"\ntype = "mavlink"\nusb_serial = "X"\n[[board.receiver]]\nrole = "rc"\n')
    assert main(["doctor", "--rig", str(rig)]) == 4
    assert "protocol" in capsys.readouterr().err


# ----------------------------------------------------------------- exit status


def test_warnings_do_not_fail_and_a_missing_board_outranks_a_host_problem():
    warning = Check("x", False, "t", "f", needed=False)
    host = Check("y", False, "t", "f")
    board = Check("z", False, "t", "f", exit_code=3)
    assert exit_status([warning, Check("ok", True, "t")]) == 0
    assert exit_status([warning, host]) == 2
    assert exit_status([host, board]) == 3
    assert warning.line().startswith("WARNING ") and "; fix: f" in warning.line()


def test_a_rig_without_hardware_needs_no_usb_or_serial_setup():
    bad = replace(GOOD, euid=1000, groups=frozenset(), serial_devices=(), modem_manager=True, libusb=False)
    assert exit_status(host_checks(bad, hardware=False)) == 0
    assert exit_status(host_checks(bad, hardware=True)) == 2


def test_real_time_facts_never_fail_a_rig():
    slow = replace(GOOD, sched_fifo="Operation not permitted", rtprio=0, cpus=1, clocksource="jiffies", dfu_util=None)
    assert exit_status(host_checks(slow, hardware=True)) == 0


# ----------------------------------------------------------------- each check


def test_serial_access_as_root():
    assert check_serial_access(replace(GOOD, euid=0, groups=frozenset()), needed=True).ok


def test_serial_access_by_group():
    check = check_serial_access(GOOD, needed=True)
    assert check.ok and "dialout" in check.text


def test_serial_access_refused_names_the_device_and_both_fixes():
    facts = replace(GOOD, groups=frozenset({"tech"}), serial_devices=(("/dev/ttyUSB0", False),))
    check = check_serial_access(facts, needed=True)
    assert check.failed and "/dev/ttyUSB0" in check.text
    assert "usermod -aG dialout tech" in check.fix and "udev" in check.fix


def test_serial_access_without_devices_or_group():
    check = check_serial_access(replace(GOOD, groups=frozenset({"tech"}), serial_devices=()), needed=True)
    assert check.failed and "dialout, uucp" in check.text


def test_modem_manager_running_says_how_to_stop_or_mask_it():
    assert check_modem_manager(GOOD, needed=True).ok
    check = check_modem_manager(replace(GOOD, modem_manager=True), needed=True)
    assert check.failed and "systemctl mask ModemManager" in check.fix and "ID_MM_DEVICE_IGNORE" in check.fix


def test_libusb_missing_names_libusb_package():
    check = check_libusb(replace(GOOD, libusb=False), needed=True)
    assert check.failed and "libusb-package" in check.fix


def test_dfu_util_missing_is_a_warning():
    assert check_dfu_util(GOOD).ok
    check = check_dfu_util(replace(GOOD, dfu_util=None))
    assert not check.ok and not check.needed and "apt install dfu-util" in check.fix


def test_sched_fifo_refused_names_the_limit_and_the_fix():
    assert "RLIMIT_RTPRIO 50" in check_sched_fifo(GOOD).text
    check = check_sched_fifo(replace(GOOD, sched_fifo="Operation not permitted", rtprio=0))
    assert not check.ok and "RLIMIT_RTPRIO 0" in check.text and "rtprio" in check.fix


def test_one_cpu_is_a_warning():
    assert check_cpus(GOOD).ok
    assert not check_cpus(replace(GOOD, cpus=1)).ok


def test_clocksource():
    assert check_clocksource(GOOD).ok
    assert check_clocksource(replace(GOOD, clocksource="")).ok
    check = check_clocksource(replace(GOOD, clocksource="hpet"))
    assert not check.ok and "available_clocksource" in check.fix


# ----------------------------------------------------------------- receivers


class _Board:
    name = "fc1"


CP2102 = UsbPortDescription("/dev/ttyUSB3", 0x10C4, 0xEA60, "Silicon Labs", "CP2102", "RC01", "1-1.2:1.0")
FC_PORT = UsbPortDescription("/dev/ttyACM0", 0x1209, 0x5741, "ArduPilot", "MatekH743", "FC0001", "1-1.3:1.0")


def test_a_receiver_adapter_found_by_serial():
    rc = Receiver("rc", "sbus", usb_serial="RC01", baud=100000, parity="E", stop_bits=2, inverted=True, inverter="external")
    check = check_receiver(_Board(), rc, [FC_PORT, CP2102])
    assert check.ok and "/dev/ttyUSB3" in check.text and "100000 8E2 inverted" in check.text
    assert "not visible to the host" in check.text


def test_a_receiver_adapter_that_is_absent():
    check = check_receiver(_Board(), Receiver("rc", "crsf", usb_serial="NOSUCH", baud=420000), [CP2102])
    assert check.failed and check.exit_code == 3 and "RC01@/dev/ttyUSB3" in check.text


def test_a_receiver_on_a_flight_controller_port_is_refused():
    check = check_receiver(_Board(), Receiver("rc", "crsf", usb_serial="FC0001", baud=420000), [FC_PORT])
    assert check.failed and "not a USB-UART adapter" in check.text


def test_a_receiver_device_path_that_does_not_exist():
    check = check_receiver(_Board(), Receiver("gps", "ubx", device="/dev/hil-no-such-tty"), [])
    assert check.failed and check.exit_code == 3 and "/dev/serial/by-id" in check.fix


def test_a_receiver_device_path_classified(monkeypatch):
    monkeypatch.setattr("hil.doctor.Path.exists", lambda self: True)
    fc = UsbPortDescription("/dev/ttyFAKE0", 0x1209, 0x5741, "ArduPilot", "MatekH743", "FC0001", "1-1.3:1.0")
    uart = replace(CP2102, device="/dev/ttyFAKE1")
    assert check_receiver(_Board(), Receiver("gps", "ubx", device="/dev/ttyFAKE1"), [uart]).ok
    assert check_receiver(_Board(), Receiver("gps", "ubx", device="/dev/ttyFAKE0"), [fc]).failed
    native = check_receiver(_Board(), Receiver("gps", "ubx", device="/dev/ttyFAKE2"), [uart])
    assert native.ok and "native UART" in native.text


def test_a_receiver_behind_a_network_serial_url_is_checked_by_connecting():
    import socket
    from types import SimpleNamespace

    from hil.doctor import check_receiver
    from hil.receivers import Receiver

    board = SimpleNamespace(name="bf", wiring_note=lambda r: None)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        url = f"socket://127.0.0.1:{server.getsockname()[1]}"
        ok = check_receiver(board, Receiver("rc", "crsf", url, baud=420000), [])
    assert not ok.failed and "far end" in ok.text
    gone = check_receiver(board, Receiver("rc", "crsf", url, baud=420000), [])
    assert gone.failed and "nothing answers" in gone.text
    stand_in = SimpleNamespace(name="bf", wiring_note=lambda r: "opens once configured")
    noted = check_receiver(stand_in, Receiver("rc", "crsf", url, baud=420000), [])
    assert not noted.failed and "opens once configured" in noted.text
