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
