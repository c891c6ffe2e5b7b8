"""Classifying real boards' USB ports and finding a board again after it reboots.

The ports are recorded descriptions (tests/data/usb_ports/real_boards.json) written from
upstream sources: ArduPilot hwdefs and chibios_hwdef.py, PX4 defconfigs and
PX4-Bootloader, Betaflight's VCP descriptors, the adapters' Linux drivers.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from serial.tools.list_ports_common import ListPortInfo

from hil.errors import PortNotFound
from hil.links import ports as ports_module
from hil.links.ports import PortInfo, find_port, find_port_again, list_all
from hil.usb import discovery
from hil.usb.discovery import (
    FAMILIES,
    IDENTITIES,
    STATES,
    UsbPortDescription,
    classify,
    find_again,
    identify,
    lookup,
    serial_identifies,
)

DATA = json.loads((Path(__file__).parent / "data" / "usb_ports" / "real_boards.json").read_text())
PORTS = {name: UsbPortDescription.from_dict(rec["port"]) for name, rec in DATA["ports"].items()}


def _port(name: str) -> UsbPortDescription:
    return PORTS[name]


# ------------------------------------------------------------------ classification


@pytest.mark.parametrize("name", sorted(DATA["ports"]))
def test_each_recorded_port_is_classified_as_its_source_says(name: str) -> None:
    expect = DATA["ports"][name]["expect"]
    got = classify(_port(name))
    assert (got.state, got.family, got.role) == (
        expect["state"],
        expect["family"],
        expect["role"],
    ), got.reason


def test_ardupilot_pids_follow_get_usb_ids() -> None:
    # chibios_hwdef.py get_USB_IDs: 0x5740 when dual CDC is enabled, 0x5741 otherwise.
    assert "two CDC" in lookup(0x1209, 0x5740).what
    assert "one CDC" in lookup(0x1209, 0x5741).what


def test_every_identity_row_cites_its_source_and_uses_known_words() -> None:
    keys = [(row.vid, row.pid) for row in IDENTITIES]
    assert len(keys) == len(set(keys))
    for row in IDENTITIES:
        assert row.source.strip() and row.what.strip()
        assert row.state in STATES and row.family in (*FAMILIES, None)


def test_a_port_the_table_does_not_know_is_unknown() -> None:
    port = UsbPortDescription("/dev/ttyACM9", 0x1234, 0x5678, "Acme", "Widget", "X1", "1-2:1.0")
    assert classify(port).state == discovery.UNKNOWN
    assert classify(UsbPortDescription("/dev/ttyS0", None, None)).state == discovery.UNKNOWN


def test_a_px4_bootloader_under_another_vendor_id_is_still_a_bootloader() -> None:
    # PX4-Bootloader hw_config.h TARGET_HW_MODALAI_FC_V1: 0483:a32f "PX4 BL ModalAI FCv1".
    port = UsbPortDescription("/dev/ttyACM0", 0x0483, 0xA32F, "ModalAI", "PX4 BL ModalAI FCv1", "0")
    assert (classify(port).state, classify(port).family) == ("bootloader", "px4")


def test_a_signed_ardupilot_bootloader_is_a_bootloader() -> None:
    # chibios_hwdef.py: signed bootloaders replace "-BL" with "-Secure-BL-v10".
    port = UsbPortDescription(
        "/dev/ttyACM0", 0x1209, 0x5741, "ArduPilot", "MatekH743-Secure-BL-v10"
    )
    assert classify(port).state == "bootloader"


def test_identify_keeps_its_answers_for_flight_controllers_only() -> None:
    assert identify(0x0483, 0xDF11)[0] == "dfu"
    assert identify(0x2DAE, 0x1016)[0] == "serial"
    assert identify(0x1209, 0x5740)[0] == "serial"
    assert identify(0x10C4, 0xEA60) is None  # an adapter is not a flight controller
    assert identify(0x1234, 0x5678) is None


# ---------------------------------------------------------------- the descriptions


def test_interface_number_comes_from_the_location_on_linux_and_windows() -> None:
    assert UsbPortDescription("a", 1, 2, location="1-1.4:1.2").interface_number == 2
    assert UsbPortDescription("a", 1, 2, location="1-1.4:x.0").interface_number == 0
    assert UsbPortDescription("a", 1, 2, location="1-1.4").interface_number is None
    assert UsbPortDescription("a", 1, 2, location="1-1.4:1.2").usb_path == "1-1.4"


def test_a_description_reads_pyserials_list_port_info() -> None:
    info = ListPortInfo("/dev/ttyACM4", skip_link_detection=True)
    info.vid, info.pid, info.serial_number = 0x26AC, 0x0032, "0"
    info.manufacturer, info.product, info.location = "3D Robotics", "PX4 BL FMU v5.x", "1-1.4:1.0"
    info.interface = "CDC ACM"  # pyserial's interface is a name, not a number
    port = UsbPortDescription.from_list_port_info(info)
    assert port == _port("px4-fmu-v5-bootloader")
    assert port.interface_number == 0


def test_recorded_data_with_a_misspelt_key_is_refused() -> None:
    with pytest.raises(ValueError, match="serial"):
        UsbPortDescription.from_dict({"device": "x", "vid": 1, "pid": 2, "serial": "A"})


# ------------------------------------------------------------------ finding again


@pytest.mark.parametrize("reboot", DATA["reboots"], ids=lambda r: r["what"])
def test_a_board_is_found_again_after_a_reboot(reboot: dict) -> None:
    now = [_port(name) for name in reboot["now"]]
    found = find_again(_port(reboot["before"]), now)
    expected = _port(reboot["found"]) if reboot["found"] else None
    assert found == expected


def test_serial_zero_and_shared_serials_identify_nothing() -> None:
    now = [_port("px4-fmu-v5-app"), _port("cubeorange-ardupilot-app-mavlink")]
    assert not serial_identifies("0", now)
    assert not serial_identifies("", now) and not serial_identifies(None, now)
    shared = [_port("cp2102"), dataclasses.replace(_port("cp2102"), location="1-2")]
    assert not serial_identifies("0001", shared)
    # two ttys of one dual-CDC board share a serial at one location: still one board
    both = [_port("cubeorange-ardupilot-app-mavlink"), _port("cubeorange-ardupilot-app-second")]
    assert serial_identifies("3A0027000851383131373933", both)


def test_another_board_plugged_where_a_board_was_is_not_taken_for_it() -> None:
    gone = _port("matekh743-ardupilot-app-mavlink")
    stranger = UsbPortDescription(
        "/dev/ttyACM2",
        0x1209,
        0x5740,
        "ArduPilot",
        "MatekH743",
        "1F0044001951333435393933",
        "1-1.3:1.0",
    )
    assert find_again(gone, [stranger]) is None


def test_a_flight_controller_is_never_matched_to_an_adapter_at_its_place() -> None:
    adapter_there = UsbPortDescription(
        "/dev/ttyUSB0", 0x10C4, 0xEA60, "Silicon Labs", "CP2102", "0001", "1-1.4"
    )
    assert find_again(_port("px4-fmu-v5-app"), [adapter_there]) is None
    assert find_again(adapter_there, [_port("px4-fmu-v5-bootloader")]) is None


def test_a_board_without_a_location_and_a_useless_serial_cannot_be_found() -> None:
    lost = UsbPortDescription("/dev/ttyACM4", 0x26AC, 0x0032, "3D Robotics", "PX4 FMU v5.x", "0")
    assert find_again(lost, [_port("px4-fmu-v5-bootloader")]) is None


# --------------------------------------------------------- the ports layer on top


def _fake_comports(monkeypatch: pytest.MonkeyPatch, sequence: list[list[str]]) -> None:
    """comports() answers each listed set of recorded ports in turn, then the last."""

    def info(name: str) -> ListPortInfo:
        port = _port(name)
        out = ListPortInfo(port.device, skip_link_detection=True)
        for field in ("vid", "pid", "manufacturer", "product", "serial_number", "location"):
            setattr(out, field, getattr(port, field))
        out.description = port.product
        return out

    answers = [[info(n) for n in names] for names in sequence]

    def comports() -> list[ListPortInfo]:
        return answers.pop(0) if len(answers) > 1 else answers[0]

    monkeypatch.setattr(ports_module.list_ports, "comports", comports)


def test_real_ports_carry_their_classified_state(monkeypatch, tmp_path) -> None:
    _fake_comports(monkeypatch, [["cubeorange-ardupilot-bootloader", "cp2102", "px4-fmu-v5-app"]])
    seen = {p.device: (p.state, p.family) for p in list_all(tmp_path)}
    assert seen == {
        "/dev/ttyACM0": ("bootloader", "ardupilot"),
        "/dev/ttyUSB0": ("usb-uart", None),
        "/dev/ttyACM4": ("app", "px4"),
    }
    serial = "3A0027000851383131373933"
    assert find_port(serial, tmp_path, state="bootloader").device == "/dev/ttyACM0"
    with pytest.raises(PortNotFound, match="bootloader"):
        find_port(serial, tmp_path, state="app")


def test_find_port_answers_the_mavlink_tty_of_a_dual_cdc_board(monkeypatch, tmp_path) -> None:
    _fake_comports(
        monkeypatch, [["matekh743-ardupilot-app-second", "matekh743-ardupilot-app-mavlink"]]
    )
    port = find_port("2B0038001851333435393932", tmp_path, state="app")
    assert (port.device, port.role) == ("/dev/ttyACM2", "mavlink")


def test_an_unknown_real_port_still_counts_as_an_application(monkeypatch, tmp_path) -> None:
    info = ListPortInfo("/dev/ttyACM7", skip_link_detection=True)
    info.vid, info.pid, info.serial_number, info.location = 0x1234, 0x5678, "CUSTOM1", "1-3:1.0"
    monkeypatch.setattr(ports_module.list_ports, "comports", lambda: [info])
    port = find_port("CUSTOM1", tmp_path, state="app")
    assert (port.device, port.state) == ("/dev/ttyACM7", "unknown")


def test_find_port_again_waits_for_a_px4_bootloader_by_location(monkeypatch, tmp_path) -> None:
    _fake_comports(
        monkeypatch,
        [
            ["px4-fmu-v5-other-board-app"],  # rebooting: gone from the bus
            ["px4-fmu-v5-other-board-app", "px4-fmu-v5-bootloader"],
        ],
    )
    before = PortInfo(
        "/dev/ttyACM4", "0", 0x26AC, 0x0032, "PX4 FMU v5.x", "usb", usb=_port("px4-fmu-v5-app")
    )
    port = find_port_again(before, tmp_path, timeout=2.0, state="bootloader", poll=0.01)
    assert (port.device, port.state, port.family) == ("/dev/ttyACM4", "bootloader", "px4")


def test_find_port_again_says_what_it_looked_for(monkeypatch, tmp_path) -> None:
    _fake_comports(monkeypatch, [["px4-fmu-v5-other-board-app"]])
    before = PortInfo(
        "/dev/ttyACM4", "0", 0x26AC, 0x0032, "PX4 FMU v5.x", "usb", usb=_port("px4-fmu-v5-app")
    )
    with pytest.raises(PortNotFound, match="1-1.4"):
        find_port_again(before, tmp_path, timeout=0.05, poll=0.01)
