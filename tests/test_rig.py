"""Rig files: good ones load, bad ones name the file, key and what is allowed."""

from __future__ import annotations

import pytest

from hil.boards.mavlink import MavlinkBoard
from hil.boards.virtual import VirtualBoard
from hil.errors import ConfigError
from hil.rig import BUILTIN_BOARD_TYPES, DEFAULT_RIG, Rig


def _write(tmp_path, text: str):
    path = tmp_path / "rig.toml"
    path.write_text(text)
    return path


def test_default_rig_holds_one_virtual_copter():
    rig = Rig.load(DEFAULT_RIG)
    try:
        assert len(rig.boards) == 1
        assert isinstance(rig.boards[0], VirtualBoard)
        assert rig.boards[0].lockstep
    finally:
        rig.stop()


def test_sitl_board_by_url(tmp_path):
    rig = Rig.load(_write(tmp_path, '[[board]]\nname = "sitl"\ntype = "mavlink"\nurl = "tcp:127.0.0.1:5760"\n'))
    try:
        board = rig.select("sitl")
        assert isinstance(board, MavlinkBoard)
        assert board.url() == "socket://127.0.0.1:5760"
        assert not board.lockstep
    finally:
        rig.stop()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "at least one [[board]]"),
        ("[[board]]\ntype = 'warp'\nusb_serial = 'X'\n", "'warp' is not one of: " + ", ".join(sorted(BUILTIN_BOARD_TYPES))),
        ("[[board]]\ntype = 'virtual'\n", "needs a usb_serial"),
        ("[[board]]\ntype = 'virtual'\nusb_serial = 'X'\nspeed = 3\n", "unknown keys ['speed']"),
        ("[[board]]\ntype = 'mavlink'\n", "give either url"),
        ("[rig]\nnmae = 'x'\n[[board]]\nusb_serial = 'X'\n", "[rig] takes only"),
        ("[[board]\n", "not valid TOML"),
        ("[[board]]\nusb_serial='X'\n[extra]\n", "unknown top-level keys"),
    ],
)
def test_bad_rig_file_is_refused_with_the_reason(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        Rig.load(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_missing_rig_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        Rig.load(tmp_path / "nope.toml")


def test_unknown_board_lists_the_boards():
    rig = Rig.load(DEFAULT_RIG)
    try:
        with pytest.raises(ConfigError, match="copter1 \\(HILVFC0001\\)"):
            rig.select("copter9")
    finally:
        rig.stop()


def test_the_state_directory_is_the_one_given_or_one_per_rig_file(tmp_path):
    from pathlib import Path

    from hil.rig import state_dir

    assert state_dir(tmp_path / "bench.toml") == Path(".hil") / "rigs" / "bench"
    assert state_dir(tmp_path / "bench.toml", tmp_path / "mine") == tmp_path / "mine"


# -- tags: boards chosen by --board-tag ------------------------------------------------------
_TAGGED = """
[[board]]
name = "a"
usb_serial = "HILTAG1"
tags = { board = "h743", site = "x" }
[[board]]
name = "b"
type = "mavlink"
url = "tcp:127.0.0.1:5760"
tags = { board = "f405" }
[[board]]
name = "c"
usb_serial = "HILTAG3"
tags = { board = "h743", site = "y" }
"""


def test_tags_choose_boards_of_any_type_in_the_rigs_order(tmp_path):
    from hil.rig import parse_tag_filter

    rig = Rig.load(_write(tmp_path, _TAGGED), work_dir=tmp_path / "s")
    try:
        assert rig.boards[1].tags == {"board": "f405"}
        assert [b.name for b in rig.matching(parse_tag_filter(["board=h743"]))] == ["a", "c"]
        assert [b.name for b in rig.matching(parse_tag_filter(["board=h743,site=y"]))] == ["c"]
        assert [b.name for b in rig.matching(parse_tag_filter(["board=h743", "site=y"]))] == ["c"]
        assert [b.name for b in rig.matching({})] == ["a", "b", "c"]
        assert rig.select(None, {"board": "f405"}).name == "b"
        assert rig.select("c", {"board": "h743"}).name == "c"
        with pytest.raises(ConfigError, match=r"board a does not carry the tags board=f405; it has board=h743,site=x"):
            rig.select("a", {"board": "f405"})
        with pytest.raises(ConfigError, match=r"no board carries the tags board=g4; boards: a: board=h743,site=x; b: board=f405"):
            rig.matching({"board": "g4"})
    finally:
        rig.stop()


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ('"h743"', "tags = 'h743': must be a table"),
        ("{ board = 4 }", "tags.board = 4: must be a string"),
        ('{ board = "" }', "tags.board = '': must be a string of 1 to 128"),
        ('{ board = "a,b" }', "without commas"),
        ('{ "9x" = "a" }', "key '9x': must be 1 to 64 characters"),
        ('{ "a b" = "a" }', "key 'a b'"),
        ('{ board = { x = "y" } }', "tags.board = {'x': 'y'}: must be a string"),
    ],
)
def test_bad_tags_are_refused_in_one_line(tmp_path, tags, message):
    path = _write(tmp_path, f'[[board]]\nusb_serial = "X"\ntags = {tags}\n')
    with pytest.raises(ConfigError) as err:
        Rig.load(path, work_dir=tmp_path / "s")
    assert message in str(err.value) and "\n" not in str(err.value)
    assert f"{path}: [[board]][0]" in str(err.value)


@pytest.mark.parametrize(
    ("given", "message"),
    [(["board"], "give KEY=VALUE"), (["=x"], "give KEY=VALUE"), (["board="], "give KEY=VALUE"),
     (["board=a", "board=b"], "board given as both 'a' and 'b'")],
)
def test_a_bad_board_tag_option_is_one_line(given, message):
    from hil.rig import parse_tag_filter

    with pytest.raises(ConfigError, match=message):
        parse_tag_filter(given)
