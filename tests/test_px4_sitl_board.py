"""The px4-sitl board type, with a stand-in for PX4's executable: it is launched with the
command line and environment PX4's POSIX start scripts read, after the simulator
listener is open, and it dies with the board."""

from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hil.errors import ConfigError
from hil.rig import Rig
from hil.sim.px4_link import Px4TcpLink

INSTANCE = 191  # port 4751: clear of a PX4 someone runs on this host

FAKE_PX4 = textwrap.dedent(
    """\
    import json, os, socket, sys, time
    args = sys.argv[1:]
    port = 4560 + int(args[args.index("-i") + 1])
    env = {k: v for k, v in os.environ.items() if k.startswith("PX4_")}
    sock = socket.create_connection((os.environ["PX4_SIM_HOST_ADDR"], port), timeout=5)
    with open("started.json", "w") as f:
        json.dump({"args": args, "env": env}, f)
    time.sleep(60)
    """
)


def _rig(tmp_path: Path, **keys: str) -> Rig:
    fake = tmp_path / "bin" / "px4"
    fake.parent.mkdir()
    fake.write_text(f"#!{sys.executable}\n" + FAKE_PX4)
    fake.chmod(0o755)
    (tmp_path / "etc" / "init.d-posix").mkdir(parents=True)
    lines = ['[[board]]', 'name = "px4"', 'type = "px4-sitl"', 'executable = "bin/px4"', f"instance = {INSTANCE}"]
    lines += [f'{k} = "{v}"' for k, v in keys.items()]
    rig_file = tmp_path / "rig.toml"
    rig_file.write_text("\n".join(lines) + "\n")
    return Rig.load(rig_file, work_dir=tmp_path / "work")


def test_px4_is_launched_as_its_start_scripts_expect_and_connects_to_our_listener(tmp_path) -> None:
    rig = _rig(tmp_path)
    board = rig.select(None)
    assert board.profile.name == "px4"
    try:
        board.start()
        link = Px4TcpLink(board.sim_listener, accept_timeout=10.0)
        link.open()
        link.close()
        started = board.work_dir / "started.json"
        deadline = time.monotonic() + 10
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        seen = json.loads(started.read_text())
        assert seen["args"][:3] == ["-d", "-i", str(INSTANCE)]
        assert seen["args"][-1] == str(tmp_path / "etc")
        assert seen["env"]["PX4_SYS_AUTOSTART"] == "10016"
        assert seen["env"]["PX4_SIM_HOST_ADDR"] == "127.0.0.1"
        assert board.url() == f"udpout:127.0.0.1:{18570 + INSTANCE}"
    finally:
        board.stop()
    assert board.state == "off"


def test_a_px4_sitl_board_without_an_executable_is_refused(tmp_path) -> None:
    rig_file = tmp_path / "rig.toml"
    rig_file.write_text('[[board]]\nname = "px4"\ntype = "px4-sitl"\n')
    with pytest.raises(ConfigError, match="executable"):
        Rig.load(rig_file, work_dir=tmp_path / "w")


def test_a_build_folder_without_px4s_start_scripts_is_refused_before_launch(tmp_path) -> None:
    rig = _rig(tmp_path, etc="nowhere")
    with pytest.raises(ConfigError, match="init.d-posix"):
        rig.select(None).start()
