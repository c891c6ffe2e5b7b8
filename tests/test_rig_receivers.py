"""Receivers wired in the rig file: `[[board.receiver]]` tables, their protocol defaults,
what is refused at load, and an adapter found by its USB serial number."""

from __future__ import annotations

import pytest
from serial.tools.list_ports_common import ListPortInfo

from hil.errors import ConfigError, PortNotFound
from hil.links import ports as ports_module
from hil.receivers import FRAMING, Receiver
from hil.rig import Rig

FC = '[[board]]\nname = "fc1"\ntype = "mavlink"\nusb_serial = "FC0001"\n'


def _load(tmp_path, text: str) -> Rig:
    path = tmp_path / "rig.toml"
    path.write_text(text)
    return Rig.load(path, work_dir=tmp_path / "state")


def _receivers(tmp_path, *tables: str) -> tuple[Receiver, ...]:
    text = FC + "".join(f"[[board.receiver]]\n{t}\n" for t in tables)
    rig = _load(tmp_path, text)
    try:
        return rig.boards[0].receivers
    finally:
        rig.stop()


def _refused(tmp_path, *tables: str) -> str:
    with pytest.raises(ConfigError) as info:
        _receivers(tmp_path, *tables)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path) in message
    return message


# ------------------------------------------------------------------- defaults


def test_crsf_defaults_to_420000_8n1_upright(tmp_path):
    (rc,) = _receivers(tmp_path, 'role = "rc"\nprotocol = "crsf"\ndevice = "/dev/ttyUSB0"')
    assert (rc.baud, rc.parity, rc.stop_bits, rc.inverted, rc.device) == (420000, "N", 1, False, "/dev/ttyUSB0")


def test_sbus_defaults_to_100000_8e2_inverted(tmp_path):
    (rc,) = _receivers(tmp_path, 'role = "rc"\nprotocol = "sbus"\ndevice = "/dev/ttyUSB0"\ninverter = "external"')
    assert (rc.baud, rc.parity, rc.stop_bits, rc.inverted, rc.inverter) == (100000, "E", 2, True, "external")
    assert rc.framing == "100000 8E2 inverted (external inverter)"


@pytest.mark.parametrize("protocol", ["ubx", "nmea"])
def test_gps_defaults_to_115200_8n1(tmp_path, protocol):
    (gps,) = _receivers(tmp_path, f'role = "gps"\nprotocol = "{protocol}"\nusb_serial = "A10GPS"')
    assert (gps.baud, gps.parity, gps.stop_bits, gps.inverted, gps.usb_serial) == (115200, "N", 1, False, "A10GPS")


def test_every_default_is_one_of_its_protocols_rates():
    for framing in FRAMING.values():
        assert framing.baud in framing.bauds and "PROTOCOLS.md" in framing.source


def test_a_board_takes_a_gps_and_an_rc_receiver(tmp_path):
    got = _receivers(
        tmp_path,
        'role = "gps"\nprotocol = "ubx"\ndevice = "/dev/ttyUSB1"\nbaud = 230400',
        'role = "rc"\nprotocol = "crsf"\ndevice = "/dev/ttyUSB0"\nbaud = 416666',
    )
    assert [(r.role, r.baud) for r in got] == [("gps", 230400), ("rc", 416666)]


def test_the_board_reports_its_receivers_protocols(tmp_path):
    rig = _load(tmp_path, FC + '[[board.receiver]]\nrole = "rc"\nprotocol = "crsf"\ndevice = "/dev/ttyUSB0"\n')
    try:
        assert rig.boards[0].uart_protocols == {"rc": "crsf"}
        assert rig.boards[0].uart_paths() == {"rc": "/dev/ttyUSB0"}
    finally:
        rig.stop()


# ------------------------------------------------------------------- refused


def test_sbus_through_a_plain_adapter_needs_an_inverter(tmp_path):
    message = _refused(tmp_path, 'role = "rc"\nprotocol = "sbus"\ndevice = "/dev/ttyUSB0"')
    assert "inverter = \"external\"" in message and "F4" in message


def test_upright_sbus_is_allowed_for_an_fc_that_inverts(tmp_path):
    (rc,) = _receivers(tmp_path, 'role = "rc"\nprotocol = "sbus"\ndevice = "/dev/ttyUSB0"\ninverted = false')
    assert not rc.inverted


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ('role = "rc"\nprotocol = "crsf"\ndevice = "/dev/ttyUSB0"\nbaud = 115200', ["baud", "416666, 420000"]),
        ('role = "rc"\nprotocol = "sbus"\ndevice = "/dev/ttyUSB0"\ninverter = "external"\nbaud = 115200', ["100000"]),
        ('role = "gps"\nprotocol = "ubx"\ndevice = "/dev/ttyUSB0"\nbaud = 420000', ["baud", "230400"]),
        ('role = "rc"\nprotocol = "crsf"\ndevice = "/dev/ttyUSB0"\nparity = "E"', ["8E1", "8N1"]),
        ('role = "rc"\nprotocol = "crsf"\ndevice = "/dev/ttyUSB0"\nparity = "X"', ["parity", "N, E, O"]),
        ('role = "rc"\nprotocol = "crsf"\ndevice = "/dev/ttyUSB0"\nstop_bits = 3', ["stop_bits", "1 or 2"]),
        ('role = "rc"\nprotocol = "crsf"\ndevice = "/dev/ttyUSB0"\ninverted = true', ["never inverted"]),
        ('role = "rc"\nprotocol = "crsf"\ndevice = "/dev/ttyUSB0"\ninverter = "external"', ["no inverter"]),
        ('role = "rc"\nprotocol = "ubx"\ndevice = "/dev/ttyUSB0"', ["protocol", "crsf, sbus"]),
        ('role = "esc"\nprotocol = "crsf"\ndevice = "/dev/ttyUSB0"', ["role", "gps, rc"]),
        ('role = "rc"\nprotocol = "crsf"', ["exactly one of device", "usb_serial"]),
        ('role = "rc"\nprotocol = "crsf"\ndevice = "/dev/ttyUSB0"\nusb_serial = "A1"', ["exactly one of"]),
        ('role = "rc"\nprotocol = "crsf"\ndevice = "ttyUSB0"', ["absolute device path"]),
        ('role = "rc"\nprotocol = "crsf"\nusb_serial = "../x"', ["usb_serial"]),
        ('role = "rc"\nprotocol = "crsf"\ndevice = "/dev/ttyUSB0"\nspeed = 1', ["unknown keys", "speed"]),
    ],
)
def test_what_cannot_work_is_refused_naming_the_key(tmp_path, table, words):
    message = _refused(tmp_path, table)
    assert "[[board.receiver]][0]" in message
    for word in words:
        assert word in message


def test_two_receivers_of_one_role_are_refused(tmp_path):
    table = 'role = "rc"\nprotocol = "crsf"\ndevice = "/dev/ttyUSB0"'
    assert "role 'rc'" in _refused(tmp_path, table, table)


# ------------------------------------------------------------------- virtual boards


VFC = '[[board]]\nname = "copter1"\ntype = "virtual"\nusb_serial = "HILVFC0001"\n'


def test_virtual_uart_keys_become_receivers_on_the_boards_pty(tmp_path):
    rig = _load(tmp_path, VFC + 'gps = "uart:ubx"\nrc = "uart:sbus"\n')
    try:
        board = rig.boards[0]
        assert board.uart_protocols == {"gps": "ubx", "rc": "sbus"}
        assert all(r.virtual for r in board.receivers)
        assert [(r.role, r.baud, r.parity, r.stop_bits) for r in board.receivers] == [
            ("gps", 115200, "N", 1),
            ("rc", 100000, "E", 2),
        ]
    finally:
        rig.stop()


def test_a_virtual_board_takes_receiver_tables_without_a_device(tmp_path):
    rig = _load(tmp_path, VFC + '[[board.receiver]]\nrole = "rc"\nprotocol = "crsf"\n')
    try:
        assert rig.boards[0].uart_protocols == {"rc": "crsf"}
    finally:
        rig.stop()


def test_a_virtual_board_refuses_a_device_and_a_doubly_wired_role(tmp_path):
    with pytest.raises(ConfigError, match="its own pty"):
        _load(tmp_path, VFC + '[[board.receiver]]\nrole = "rc"\nprotocol = "crsf"\ndevice = "/dev/ttyUSB0"\n')
    with pytest.raises(ConfigError, match="keep one"):
        _load(tmp_path, VFC + 'rc = "uart:crsf"\n[[board.receiver]]\nrole = "rc"\nprotocol = "crsf"\n')


# ------------------------------------------------------------------- real adapters


def _fake_comports(monkeypatch, *ports: tuple[str, int, int, str]) -> None:
    infos = []
    for device, vid, pid, serial in ports:
        info = ListPortInfo(device, skip_link_detection=True)
        info.vid, info.pid, info.serial_number, info.location = vid, pid, serial, "1-1.2:1.0"
        infos.append(info)
    monkeypatch.setattr(ports_module.list_ports, "comports", lambda *a, **k: list(infos))


def test_an_adapter_is_found_by_its_usb_serial(monkeypatch, tmp_path):
    # CP210x 10C4:EA60 (PROTOCOLS.md section 13), a flight controller beside it.
    _fake_comports(monkeypatch, ("/dev/ttyACM0", 0x1209, 0x5741, "FC0001"), ("/dev/ttyUSB3", 0x10C4, 0xEA60, "CP2102RC"))
    rig = _load(tmp_path, FC + '[[board.receiver]]\nrole = "rc"\nprotocol = "crsf"\nusb_serial = "CP2102RC"\n')
    try:
        assert rig.boards[0].uart_paths() == {"rc": "/dev/ttyUSB3"}
    finally:
        rig.stop()


def test_a_flight_controller_port_is_no_receiver_adapter(monkeypatch, tmp_path):
    _fake_comports(monkeypatch, ("/dev/ttyACM0", 0x1209, 0x5741, "FC0001"))
    rig = _load(tmp_path, FC + '[[board.receiver]]\nrole = "rc"\nprotocol = "crsf"\nusb_serial = "FC0001"\n')
    try:
        with pytest.raises(PortNotFound, match="not a USB-UART adapter"):
            rig.boards[0].uart_paths()
    finally:
        rig.stop()


def test_a_missing_adapter_says_what_was_seen(monkeypatch, tmp_path):
    _fake_comports(monkeypatch, ("/dev/ttyUSB0", 0x0403, 0x6001, "FTDIGPS"))
    rig = _load(tmp_path, FC + '[[board.receiver]]\nrole = "gps"\nprotocol = "ubx"\nusb_serial = "NOSUCH"\n')
    try:
        with pytest.raises(PortNotFound, match="FTDIGPS@/dev/ttyUSB0"):
            rig.boards[0].uart_paths()
    finally:
        rig.stop()


def test_the_session_opens_each_receiver_with_its_framing(monkeypatch, tmp_path):
    from hil import session as session_module
    from hil.session import BoardSession

    opened = []
    monkeypatch.setattr(
        session_module, "open_link", lambda url, baud, **kw: opened.append((url, baud, kw)) or object()
    )
    rig = _load(
        tmp_path,
        FC + '[[board.receiver]]\nrole = "rc"\nprotocol = "sbus"\ndevice = "/dev/ttyUSB0"\ninverter = "external"\n'
        '[[board.receiver]]\nrole = "gps"\nprotocol = "ubx"\ndevice = "/dev/ttyUSB1"\nbaud = 230400\n',
    )
    try:
        BoardSession(rig.boards[0])._open_uarts()
    finally:
        rig.stop()
    assert sorted(opened) == [
        ("/dev/ttyUSB0", 100000, {"parity": "E", "stop_bits": 2}),
        ("/dev/ttyUSB1", 230400, {"parity": "N", "stop_bits": 1}),
    ]
