"""Firmware profiles: what differs between firmwares is data, and the harness reads it.

Covers the profiles themselves, the MAVLink adapter using them (mode numbers, the
force-arm value), the virtual board arming as ArduPilot does, and board types found
through the `hil.boards` entry-point group.
"""

from __future__ import annotations

import re
import sys
import textwrap
import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.autopilot.mavlink import MavlinkAutopilot
from hil.errors import CommandRefused, ConfigError, HilError
from hil.mavlink import dialect
from hil.mavlink.dialect import mavlink
from hil.profiles import (
    ARDUCOPTER,
    MODE_WORDS,
    PX4_MULTICOPTER,
    ProfileLacks,
    UnknownProfile,
    profile,
    profile_names,
)
from hil.profiles.model import MAV_CMD_PREFLIGHT_REBOOT_SHUTDOWN, MSP_REBOOT
from hil.profiles.px4 import MAIN_SUB_MODES, decode_custom_mode, encode_custom_mode
from hil.rig import BOARD_GROUP, BUILTIN_BOARD_TYPES, Board, Rig
from hil.scenario.model import COPTER_MODES as SCENARIO_MODE_WORDS

ROOT = Path(__file__).resolve().parent.parent


# -- the profiles ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", profile_names())
def test_every_profile_mode_map_is_a_bijection(name):
    prof = profile(name)
    numbers = list(prof.modes.values())
    assert len(set(numbers)) == len(numbers)
    for mode, number in prof.modes.items():
        assert prof.mode_name(number) == mode
        assert prof.mode_number(mode) == number


@pytest.mark.parametrize("name", profile_names())
def test_every_vocabulary_word_lands_on_a_mode_of_the_firmware(name):
    prof = profile(name)
    for word, mode in prof.vocabulary.items():
        assert word in MODE_WORDS or word in prof.modes
        assert prof.resolve(word) == mode
        assert mode in prof.modes or mode == prof.idle_mode


def test_the_built_in_profiles_are_the_four_firmwares():
    assert profile_names() == ["arducopter", "betaflight", "inav", "px4"]
    assert profile_names("mavlink") == ["arducopter", "px4"]
    assert profile_names("msp") == ["betaflight", "inav"]


def test_arducopter_scenario_words_keep_their_meaning():
    for word in (
        "RTL",
        "LAND",
        "LOITER",
        "POSHOLD",
        "GUIDED",
        "STABILIZE",
        "ALT_HOLD",
        "AUTO",
        "ACRO",
    ):
        assert ARDUCOPTER.resolve(word) == word
    assert ARDUCOPTER.resolve("HOLD") == "LOITER"
    assert ARDUCOPTER.resolve("ANGLE") == "STABILIZE"
    assert ARDUCOPTER.resolve("OFFBOARD") == "GUIDED"
    assert ARDUCOPTER.mode_number("rtl") == 6


def test_every_mode_a_scenario_may_name_is_arducopter_s_or_an_msp_firmware_s():
    msp_only = {"HORIZON", "FAILSAFE"}
    for word in SCENARIO_MODE_WORDS:
        assert ARDUCOPTER.supports(word) or word in msp_only, word
        if word in ARDUCOPTER.modes:
            assert ARDUCOPTER.resolve(word) == word


def test_the_dialect_re_exports_arducopter_s_modes():
    assert dialect.COPTER_MODES == dict(ARDUCOPTER.modes)
    assert dialect.mode_name(6) == "RTL"
    assert dialect.mode_name(99) == "MODE(99)"
    assert dialect.COPTER_MODE_NAMES[16] == "POSHOLD"


def test_px4_modes_encode_main_mode_in_byte_2_and_sub_mode_in_byte_3():
    assert PX4_MULTICOPTER.modes["AUTO_RTL"] == 0x05040000
    assert PX4_MULTICOPTER.modes["POSCTL"] == 0x00030000
    assert PX4_MULTICOPTER.mode_name(0x05040000) == "AUTO_RTL"
    for name, pair in MAIN_SUB_MODES.items():
        assert decode_custom_mode(PX4_MULTICOPTER.modes[name]) == pair


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 255), st.integers(0, 255))
def test_px4_custom_mode_round_trips(main, sub):
    assert decode_custom_mode(encode_custom_mode(main, sub)) == (main, sub)


def test_px4_refuses_a_mode_that_is_not_a_byte():
    with pytest.raises(ValueError, match="bytes"):
        encode_custom_mode(256, 0)


def test_px4_maps_the_scenario_words_onto_its_own_modes():
    assert PX4_MULTICOPTER.resolve("RTL") == "AUTO_RTL"
    assert PX4_MULTICOPTER.resolve("LAND") == "AUTO_LAND"
    assert PX4_MULTICOPTER.resolve("HOLD") == "AUTO_LOITER"
    assert PX4_MULTICOPTER.resolve("GUIDED") == "OFFBOARD"
    assert PX4_MULTICOPTER.resolve("ALT_HOLD") == "ALTCTL"


def test_a_firmware_without_a_mode_gives_the_reason_a_skip_shows():
    bf = profile("betaflight")
    assert not bf.supports("LAND")
    assert "Betaflight" in bf.lacks("LAND") and "no LAND mode" in bf.lacks("LAND")
    with pytest.raises(ProfileLacks) as err:
        bf.resolve("LAND")
    assert err.value.word == "LAND" and err.value.profile == "betaflight"
    assert bf.resolve("FAILSAFE") == "FAILSAFE" and bf.resolve("ACRO") == "ACRO"


def test_an_unknown_word_lists_the_words_and_the_modes():
    reason = ARDUCOPTER.lacks("WARP")
    assert "'WARP'" in reason and "RTL" in reason and "STABILIZE" in reason


def test_unknown_profile_is_a_config_error_naming_the_known_ones():
    with pytest.raises(UnknownProfile) as err:
        profile("ardupilane")
    assert isinstance(err.value, ConfigError)
    assert "ardupilane" in str(err.value) and "arducopter, betaflight, inav, px4" in str(err.value)


def test_failsafe_facts_say_what_a_setting_value_does():
    rc = ARDUCOPTER.failsafe("rc_loss")
    assert rc.action_setting == "FS_THR_ENABLE" and rc.timeout_setting == "RC_FS_TIMEOUT"
    assert rc.action(3) == ("LAND",) and rc.action(4.0) == ("SMART_RTL", "RTL")
    bf = profile("betaflight").failsafe("rc_loss")
    assert bf.action("GPS-RESCUE") == ("RTL",) and bf.action(1) == ("DISARM",)
    assert bf.timeout_setting == "failsafe_delay" and bf.timeout_scale == 0.1
    assert profile("inav").failsafe("rc_loss").action("NONE") == ("CONTINUE",)
    assert profile("betaflight").failsafe("gcs_loss") is None
    with pytest.raises(ConfigError, match="FS_THR_ENABLE = 9"):
        rc.action(9)


def test_force_arm_values_follow_the_firmware():
    assert (ARDUCOPTER.arming.force_arm, ARDUCOPTER.arming.force_disarm) == (2989, 21196)
    assert (PX4_MULTICOPTER.arming.force_arm, PX4_MULTICOPTER.arming.force_disarm) == (21196, 21196)
    assert profile("betaflight").arming.force_arm is None


def test_reboot_to_bootloader_commands():
    for prof in (ARDUCOPTER, PX4_MULTICOPTER):
        first = prof.bootloader[0]
        assert (first.kind, first.code, first.params) == (
            "mavlink",
            MAV_CMD_PREFLIGHT_REBOOT_SHUTDOWN,
            (3.0,),
        )
    bf = profile("betaflight").bootloader
    assert (bf[0].kind, bf[0].code, bf[0].payload) == ("msp", MSP_REBOOT, b"\x01")
    assert [c.code for c in bf if c.kind == "cli"] == ["bl rom", "bl flash"]  # 4.6 cli.c: no `dfu`
    # INAV 9 fc_msp.c mspFcRebootCommand: one non-zero byte means DFU; the CLI's dfu too.
    inav = profile("inav").bootloader
    assert [(c.kind, c.code, c.payload) for c in inav] == [("msp", MSP_REBOOT, b"\x01"), ("cli", "dfu", b"")]
    # Into the ROM DFU device: MSP_REBOOT 1, else the CLI.
    assert [(c.kind, c.payload or c.code) for c in profile("betaflight").rom_dfu] == [
        ("msp", b"\x01"),
        ("cli", "bl rom"),
    ]
    assert [(c.kind, c.payload or c.code) for c in profile("inav").rom_dfu] == [("msp", b"\x01"), ("cli", "dfu")]


# -- the MAVLink adapter reads the profile --------------------------------------------------
class _QuietConn:
    """Just enough of a MavConnection to build an adapter that sends nothing."""

    class link:
        url = "test://"

    def add_listener(self, listener) -> None:
        pass


def _recording_adapter(prof: str) -> tuple[MavlinkAutopilot, list[tuple]]:
    ap = MavlinkAutopilot(_QuietConn(), profile=prof)
    sent: list[tuple] = []
    ap.command = lambda command, *params, **kw: sent.append((command, *params))  # type: ignore[method-assign]
    return ap, sent


def test_a_px4_adapter_forces_with_21196_and_sets_px4_main_and_sub_modes():
    ap, sent = _recording_adapter("px4")
    ap.arm(force=True)
    ap.disarm(force=True)
    ap.set_mode("RTL")
    # PX4's Commander reads DO_SET_MODE param2 as the main mode and param3 as the sub mode
    # (AUTO 4, RTL 5), not as a HEARTBEAT custom_mode.
    assert sent == [
        (mavlink.MAV_CMD_COMPONENT_ARM_DISARM, 1, 21196.0),
        (mavlink.MAV_CMD_COMPONENT_ARM_DISARM, 0, 21196.0),
        (mavlink.MAV_CMD_DO_SET_MODE, mavlink.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED, 4.0, 5.0),
    ]


def test_an_arducopter_adapter_forces_arming_with_2989_and_disarming_with_21196():
    ap, sent = _recording_adapter("arducopter")
    ap.arm(force=True)
    ap.disarm(force=True)
    ap.arm()
    assert [s[2] for s in sent] == [2989.0, 21196.0, 0]


def test_an_adapter_refuses_a_mode_its_firmware_lacks():
    ap, _ = _recording_adapter("arducopter")
    with pytest.raises(HilError, match="unknown mode 'FAILSAFE'"):
        ap.set_mode("FAILSAFE")


def test_a_mavlink_adapter_refuses_an_msp_profile():
    with pytest.raises(HilError, match="not MAVLink"):
        MavlinkAutopilot(_QuietConn(), profile="betaflight")


def test_force_arm_sends_2989_and_the_virtual_board_arms_without_its_checks(autopilot, monkeypatch):
    sent = []
    send = autopilot.conn.send

    def recording_send(msg, **kw):
        if msg.get_type() == "COMMAND_LONG":
            sent.append((msg.command, msg.param1, msg.param2))
        return send(msg, **kw)

    monkeypatch.setattr(autopilot.conn, "send", recording_send)
    with pytest.raises(CommandRefused, match=r"\(FAILED\): Arm: "):
        autopilot.arm()  # no position yet: the checks refuse
    autopilot.arm(force=True)
    assert autopilot.armed is True
    autopilot.disarm(force=True)
    arm = mavlink.MAV_CMD_COMPONENT_ARM_DISARM
    assert (arm, 1.0, 2989.0) in sent and (arm, 0.0, 21196.0) in sent


def test_the_virtual_board_treats_21196_on_arming_as_an_ordinary_checked_arm(autopilot):
    # ArduPilot skips its arming checks only for 2989 (GCS_Common.cpp); PX4's 21196 is
    # just another value there.
    with pytest.raises(CommandRefused, match=r"\(FAILED\): Arm: "):
        autopilot.command(mavlink.MAV_CMD_COMPONENT_ARM_DISARM, 1, 21196)
    assert autopilot.armed is False


# -- board types by entry point -------------------------------------------------------------
_PLUGIN = '''
from hil.rig import Board, RigKey


class PluginBoard(Board):
    """A board type from another package: a PX4 board on a URL."""

    type_name = "plugin-px4"
    profile_name = "px4"
    KEYS = {"name": RigKey("name"), "type": RigKey("text"), "url": RigKey("text")}

    def start(self):
        pass

    def stop(self):
        pass

    def url(self, timeout=10.0):
        return str(self.spec["url"])
'''


def _fake_entry_points(monkeypatch, *eps: EntryPoint) -> None:
    monkeypatch.setattr(
        "hil.rig.entry_points", lambda **kw: list(eps) if kw.get("group") == BOARD_GROUP else []
    )


def _rig(tmp_path, board_type: str, extra: str = "") -> Path:
    path = tmp_path / "rig.toml"
    path.write_text(f'[[board]]\nname = "b1"\ntype = "{board_type}"\n{extra}')
    return path


def test_a_board_type_from_an_entry_point_loads_from_a_rig_file(tmp_path, monkeypatch):
    (tmp_path / "hil_plugin_example.py").write_text(textwrap.dedent(_PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "hil_plugin_example", raising=False)
    _fake_entry_points(
        monkeypatch, EntryPoint("plugin-px4", "hil_plugin_example:PluginBoard", BOARD_GROUP)
    )
    rig = Rig.load(_rig(tmp_path, "plugin-px4", 'url = "udp:127.0.0.1:14540"\n'))
    try:
        board = rig.select("b1")
        assert type(board).__name__ == "PluginBoard" and isinstance(board, Board)
        assert board.profile.name == "px4"
        assert board.url() == "udp:127.0.0.1:14540"
    finally:
        rig.stop()


def test_a_board_type_that_names_no_profile_is_refused(tmp_path, monkeypatch):
    source = textwrap.dedent(_PLUGIN).replace('    profile_name = "px4"\n', "")
    (tmp_path / "hil_plugin_no_profile.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "hil_plugin_no_profile", raising=False)
    _fake_entry_points(
        monkeypatch, EntryPoint("anon", "hil_plugin_no_profile:PluginBoard", BOARD_GROUP)
    )
    with pytest.raises(ConfigError, match="names no firmware profile"):
        Rig.load(_rig(tmp_path, "anon", 'url = "udp:127.0.0.1:14540"\n'))


def test_the_built_in_board_types_load_without_package_metadata(tmp_path, monkeypatch):
    _fake_entry_points(monkeypatch)
    rig = Rig.load(_rig(tmp_path, "mavlink", 'url = "tcp:127.0.0.1:5760"\nprofile = "px4"\n'))
    try:
        assert rig.select("b1").profile is PX4_MULTICOPTER
    finally:
        rig.stop()


def test_an_entry_point_that_fails_to_load_is_a_config_error(tmp_path, monkeypatch):
    _fake_entry_points(
        monkeypatch, EntryPoint("broken", "hil_no_such_module_xyz:Board", BOARD_GROUP)
    )
    path = _rig(tmp_path, "broken")
    with pytest.raises(ConfigError) as err:
        Rig.load(path)
    text = str(err.value)
    assert str(path) in text and "'broken'" in text
    assert (
        "hil_no_such_module_xyz:Board" in text and "failed to load" in text and BOARD_GROUP in text
    )


def test_an_unknown_board_type_lists_the_plugin_types_too(tmp_path, monkeypatch):
    _fake_entry_points(
        monkeypatch, EntryPoint("plugin-px4", "hil_plugin_example:PluginBoard", BOARD_GROUP)
    )
    with pytest.raises(
        ConfigError, match=re.escape("is not one of: " + ", ".join(sorted([*BUILTIN_BOARD_TYPES, "plugin-px4"])))
    ):
        Rig.load(_rig(tmp_path, "warp"))


def test_a_mavlink_board_names_a_mavlink_profile(tmp_path):
    with pytest.raises(
        ConfigError, match="not a MAVLink firmware profile; one of: arducopter, px4"
    ):
        Rig.load(_rig(tmp_path, "mavlink", 'url = "tcp:127.0.0.1:5760"\nprofile = "betaflight"\n'))


def test_every_built_in_board_type_declares_a_profile():
    from hil.rig import BOARD_TYPES

    assert {name: BOARD_TYPES[name].profile_name for name in BUILTIN_BOARD_TYPES} == {
        "virtual": "arducopter",
        "mavlink": "arducopter",
        "betaflight-sitl": "betaflight",
        "betaflight": "betaflight",
        "px4-sitl": "px4",
        "labgrid": "arducopter",
        "ardupilot-sitl": "arducopter",
    }


def test_pyproject_lists_the_built_in_board_types():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert data["project"]["entry-points"][BOARD_GROUP] == dict(BUILTIN_BOARD_TYPES)


def test_inav_hitl_facts():
    import hil.sim.inav_link  # noqa: F401 - registers the link
    from hil.profiles.inav import BOXES, HITL_LINK, HITL_SETUP_CLI
    from hil.sim.simlink import LINKS

    assert HITL_LINK in LINKS
    # fc_msp_box.c of INAV 9.1 numbers the gimbal boxes 65..68.
    assert BOXES["GIMBAL HEADTRACKER"] == 68 and BOXES["ANGLE HOLD"] == 64
    assert "set receiver_type = SIM (SITL)" in HITL_SETUP_CLI
    assert f"aux 0 {BOXES['ARM']} 0 1700 2100 0 0" in HITL_SETUP_CLI
