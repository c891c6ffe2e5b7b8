"""Rig files naming labgrid places (hil.labgrid.board), checked without labgrid."""

from __future__ import annotations

import importlib.util

import pytest

from hil.errors import ConfigError
from hil.labgrid.place import PlaceAgent, PlaceError, Resource
from hil.rig import Rig


def _rig(tmp_path, body: str) -> Rig:
    path = tmp_path / "lab.toml"
    path.write_text('[rig]\nname = "lab"\n[[board]]\nname = "fc1"\ntype = "labgrid"\n' + body)
    return Rig.load(path, work_dir=tmp_path / "state")


def test_a_place_by_name_with_receivers_served_by_its_ports(tmp_path):
    rig = _rig(
        tmp_path,
        'place = "bench-a-fc1"\ncoordinator = "lab:20408"\nlockstep = true\nuarts = { rc = "crsf-uart" }\n'
        '[[board.receiver]]\nrole = "gps"\nprotocol = "ubx"\n'
        '[[board.receiver]]\nrole = "rc"\nprotocol = "crsf"\n',
    )
    board = rig.boards[0]
    assert board.profile_name == "arducopter" and board.lockstep and board.fixed_url
    assert board.wall_factor == 10.0
    assert {r.role: r.device for r in board.receivers} == {"gps": "labgrid:gps", "rc": "labgrid:crsf-uart"}
    assert board.uart_protocols == {"gps": "ubx", "rc": "crsf"}
    assert board.agent.command(5)[-4:] == ["--coordinator", "lab:20408", "--place", "bench-a-fc1"]
    assert board.state == "not acquired"
    with pytest.raises(PlaceError, match="not acquired"):
        board.url(timeout=0.0)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("", "needs place"),
        ('tags = { board = 3 }\n', r"tags.board = 3: must be a string"),
        ('place = "a"\nprofile = "betaflight"\n', "not a MAVLink firmware profile"),
        ('place = "a"\n[[board.receiver]]\nrole = "gps"\nprotocol = "ubx"\ndevice = "/dev/ttyUSB0"\n', "leave device"),
        ('place = "a"\nslowdown = 0.5\n', "slowdown"),
    ],
)
def test_rig_mistakes_are_refused_naming_the_key(tmp_path, monkeypatch, body, reason):
    monkeypatch.delenv("LG_PLACE", raising=False)
    with pytest.raises(ConfigError, match=reason):
        _rig(tmp_path, body)


def test_tags_choose_the_place_unless_a_place_is_named(tmp_path):
    by_tags = _rig(tmp_path, 'tags = { board = "h743", site = "a" }\n').boards[0]
    assert by_tags.agent.place is None and by_tags.agent.tags == {"board": "h743", "site": "a"}
    assert by_tags.agent.command(5)[-4:] == ["--tag", "board=h743", "--tag", "site=a"]
    named = _rig(tmp_path, 'place = "bench-a-fc1"\ntags = { board = "h743" }\n').boards[0]
    assert named.agent.place == "bench-a-fc1" and named.agent.tags == {}
    assert named.tags == {"board": "h743"}  # still chosen by --board-tag among the rig's boards


def test_lg_place_names_the_place_when_the_rig_does_not(tmp_path, monkeypatch):
    monkeypatch.setenv("LG_PLACE", "from-env")
    assert _rig(tmp_path, "").boards[0].agent.place == "from-env"


def test_a_network_serial_port_becomes_an_rfc2217_url():
    port = Resource("control", "NetworkSerialPort", True, {"host": "bench-a", "port": 4001, "speed": 115200})
    assert port.serial_url == "rfc2217://bench-a:4001"
    raw = Resource("gps", "NetworkSerialPort", True, {"host": "::1", "port": 4002, "protocol": "raw"})
    assert raw.serial_url == "socket://[::1]:4002"
    with pytest.raises(PlaceError, match="not available"):
        _ = Resource("rc", "NetworkSerialPort", False, {"host": "h", "port": 1}).serial_url


@pytest.mark.skipif(importlib.util.find_spec("labgrid") is not None, reason="labgrid is installed here")
def test_without_labgrid_a_place_is_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"labgrid is not installed .*hil\[labgrid\]"):
        PlaceAgent(place="bench-a-fc1", coordinator="127.0.0.1:9").acquire(wait=1)


# -- flashing through the place (hil.labgrid.dfu) ------------------------------------------------
def _vector_image(tmp_path, at: int = 0x08000000, size: int = 4096):
    import random
    import struct

    from hil.firmware.image import load_image

    raw = struct.pack("<II", 0x20020000, at + 0x201) + random.Random(3).randbytes(size)
    path = tmp_path / "fw.bin"
    path.write_bytes(raw)
    return load_image(path, base_address=at), raw


def test_the_file_handed_to_labgrids_dfu_driver_carries_the_address_and_alt(tmp_path):
    """labgrid's DFUDriver gives dfu-util only --alt and --download (no -s ADDRESS): the
    DfuSe file must say where each byte goes, for the rig's alt setting."""
    from hil.firmware.image import load_image
    from hil.labgrid.dfu import dfu_file

    image, raw = _vector_image(tmp_path, at=0x08004000)
    path = dfu_file(image, tmp_path, alt=1)
    back = load_image(path)
    assert [(s.address, bytes(s.data)) for s in back.segments] == [(0x08004000, raw)]
    data = path.read_bytes()
    assert data[11 + 6] == 1  # the target's bAlternateSetting
    assert data[-16:-10] == bytes.fromhex("ffff11df8304")  # any bcdDevice, ST's ROM DFU ids


@pytest.mark.skipif(importlib.util.find_spec("labgrid") is None, reason="labgrid is not installed")
def test_labgrids_dfu_driver_binds_the_exported_dfu_device_and_runs_dfu_util_through_its_prefix():
    """What labgrid's own DFUDriver runs (labgrid/driver/dfudriver.py): the resource's
    command prefix (SSH to the exporter for a NetworkDFUDevice), dfu-util, -p USB path,
    then --alt and --download. Read from the installed driver's class, not restated."""
    from labgrid.driver.dfudriver import DFUDriver

    assert DFUDriver.bindings == {"dfu": {"DFUDevice", "NetworkDFUDevice"}}
    import inspect

    source = inspect.getsource(DFUDriver)
    assert '"--alt", str(altsetting), "--download", mf.get_remote_path()' in source
    assert "self.dfu.command_prefix" in source and '"-p",' in source


@pytest.mark.skipif(
    __import__("shutil").which("dfu-util") is None, reason="dfu-util is not installed (Debian package dfu-util)"
)
def test_dfu_util_reads_the_file_as_a_dfuse_file_for_st_rom_dfu(tmp_path):
    """The real dfu-util takes our file: it matches ST's ROM DFU ids from its suffix (no
    CRC or signature warning) before it looks for a device, which this host has none of."""
    import subprocess

    from hil.labgrid.dfu import dfu_file

    image, _ = _vector_image(tmp_path)
    path = dfu_file(image, tmp_path)
    run = subprocess.run(["dfu-util", "-a", "0", "-D", str(path)], capture_output=True, text=True, timeout=30)
    out = run.stdout + run.stderr
    assert "Match vendor ID from file: 0483" in out and "Match product ID from file: df11" in out, out
    assert "suffix" not in out.lower(), out  # no "DFU suffix CRC does not match" / "Invalid DFU suffix"
    broken = bytearray(path.read_bytes())
    broken[-1] ^= 1
    path.write_bytes(bytes(broken))
    run = subprocess.run(["dfu-util", "-a", "0", "-D", str(path)], capture_output=True, text=True, timeout=30)
    assert "DFU suffix CRC does not match" in run.stdout + run.stderr


def test_a_labgrid_board_is_flashed_over_dfu_only(tmp_path):
    rig = _rig(tmp_path, 'place = "a"\ndfu = "rom"\ndfu_alt = 0\n')
    board = rig.boards[0]
    assert board.flash_method == "dfu"
    with pytest.raises(ConfigError, match=r"flashed over DFU with labgrid's DFU driver .*--method dfu, not 'serial'"):
        board.flasher("serial")
    with pytest.raises(PlaceError, match="not acquired"):
        board.flasher("dfu")


# -- a Betaflight board behind a place ---------------------------------------------------------
def _bf(tmp_path, body: str) -> Rig:
    path = tmp_path / "bf.toml"
    path.write_text('[[board]]\nname = "bf1"\ntype = "betaflight"\n' + body)
    return Rig.load(path, work_dir=tmp_path / "state")


_BF_RC = '[[board.receiver]]\nrole = "rc"\nprotocol = "crsf"\nfc_port = "UART2"\n'


def test_a_betaflight_board_behind_a_place_reaches_its_ports_through_it(tmp_path):
    board = _bf(tmp_path, 'place = "bench-bf"\ncoordinator = "lab:20408"\npower = true\nuarts = { rc = "crsf" }\n' + _BF_RC).boards[0]
    assert board.fixed_url and board.power_switch
    assert board.rc_receiver.device == "labgrid:crsf"
    assert board.agent.command(5)[-4:] == ["--coordinator", "lab:20408", "--place", "bench-bf"]
    assert board.state == "not acquired"
    assert "labgrid place" in board.wiring_note(board.rc_receiver)  # hil doctor does not look for it here
    with pytest.raises(PlaceError, match="not acquired"):
        board.url(timeout=0.0)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('place = "p"\nurl = "socket://x:1"\n' + _BF_RC, "leave url and stand_in out"),
        ('url = "socket://x:1"\npower = true\n' + _BF_RC, "go with place"),
        ('place = "p"\n[[board.receiver]]\nrole = "rc"\nprotocol = "crsf"\nfc_port = "UART2"\ndevice = "/dev/ttyUSB0"\n', "leave device"),
        ('place = "p"\nuarts = { rc = 3 }\n' + _BF_RC, "must map roles to resource names"),
    ],
)
def test_betaflight_place_mistakes_are_one_line(tmp_path, body, reason):
    with pytest.raises(ConfigError, match=reason) as err:
        _bf(tmp_path, body)
    assert "\n" not in str(err.value)
