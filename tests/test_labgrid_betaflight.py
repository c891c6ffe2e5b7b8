"""A Betaflight board behind a labgrid place: MSP and the CLI on the place's control port
and our CRSF receiver on its rc port, both NetworkSerialPorts over RFC 2217 through a
real coordinator and exporter on 127.0.0.1.

The board is the bench Betaflight SITL (fixtures/betaflight-bench.toml's stand-in), run
by this test as the bench host would run a board; its TCP UARTs become ptys
(hil.labgrid.tcp_pty) that labgrid's exporter serves through ser2net. The harness
reaches it only through the place (`type = "betaflight"`, `place = ...`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sitl_support import require_sitl
from tests.test_labgrid_remote import _WHY, BIN, Lab, _free_port, _start, _stop, _wait_for

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(_WHY is not None, reason=_WHY or "")


def test_a_tcp_port_becomes_a_pty_that_follows_a_far_end_that_comes_and_goes(tmp_path):
    """The bridge copies both ways, connects when there is something to send, and
    connects again after the far end went away (a SITL that rebooted)."""
    import socket
    import threading

    from hil.labgrid.tcp_pty import TcpPty

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(2)
    port = server.getsockname()[1]
    served: list[int] = []

    def serve_twice():
        for _ in range(2):
            conn, _ = server.accept()
            data = conn.recv(100)
            conn.sendall(data.upper())
            served.append(len(data))
            conn.close()  # the far end goes away after each answer

    thread = threading.Thread(target=serve_twice, daemon=True)
    thread.start()
    link = Path(f"/dev/shm/hil-tcp-pty-test-{os.getpid()}") / "uart"
    with TcpPty(link, "127.0.0.1", port) as bridge:
        fd = os.open(link, os.O_RDWR | os.O_NOCTTY)
        try:
            for word in (b"hello", b"again"):
                # Bytes written while the far end is going away are lost, as on a wire with
                # nothing at its end: write once the bridge has seen it go.
                _wait_for("the bridge to see the far end go", lambda: not bridge.connected or bridge.connects > len(served), 5)
                os.write(fd, word)
                got = b""
                while len(got) < len(word):
                    got += os.read(fd, 100)
                assert got == word.upper()
        finally:
            os.close(fd)
        assert bridge.connects >= 2 and bridge.to_tcp == 10 and bridge.from_tcp == 10
    assert not link.exists() and not link.parent.exists()
    server.close()


@pytest.fixture(scope="module")
def bench_place(tmp_path_factory):
    """The bench SITL, its UART1 (MSP) and UART2 (serial RX) as ptys exported by a labgrid
    exporter, a coordinator, and a place holding both ports."""
    require_sitl()
    from hil.labgrid.tcp_pty import TcpPty
    from hil.lifecycle import BoardState
    from hil.rig import Rig

    root = tmp_path_factory.mktemp("bench-lab")
    tag = str(os.getpid())
    procs: list[subprocess.Popen] = []
    bridges: list[TcpPty] = []
    rig = Rig.load(ROOT / "fixtures" / "betaflight-bench.toml", work_dir=root / "bench")
    try:
        # The bench host's board: the stand-in SITL (waits for the host-wide SITL lock).
        rig.boards[0].lifecycle.reach(BoardState.APP, "the bench host behind the place")
        links = Path(f"/dev/shm/hil-lgbf-{tag}")
        bridges = [
            TcpPty(links / "control", "127.0.0.1", 5761).start(),
            TcpPty(links / "rc", "127.0.0.1", 5762).start(),
        ]
        coordinator = f"127.0.0.1:{_free_port()}"
        coord_log = root / "coordinator.log"
        procs.append(_start([str(BIN / "labgrid-coordinator"), "-l", coordinator], root, coord_log))
        _wait_for("the coordinator listening", lambda: "listening on" in coord_log.read_text(errors="replace"), 20, coord_log)
        (root / "exporter.yaml").write_text(
            "bf:\n"
            + "".join(f"  {b.link.name}:\n    cls: RawSerialPort\n    port: {b.link}\n    speed: 115200\n" for b in bridges)
            # The ROM bootloader of a board as udev would match it (never present here: no USB).
            + f'bfdfu:\n  dfu:\n    cls: DFUDevice\n    match:\n      ID_SERIAL_SHORT: "HILBFDFU{tag}"\n'
        )
        exporter = f"hil-bf-{tag}"
        exp_log = root / "exporter.log"
        procs.append(_start(
            [str(BIN / "labgrid-exporter"), "-c", coordinator, "-n", exporter, "--hostname", "127.0.0.1", "exporter.yaml"],
            root, exp_log,
        ))
        lab = Lab(root, coordinator, f"hil-bf-{tag}")
        _wait_for("the exporter's resources at the coordinator", lambda: exporter in lab.client("resources").stdout, 30, exp_log)
        for args in (("create",), ("add-match", f"{exporter}/bf/*")):
            done = lab.client("-p", lab.place, *args)
            assert done.returncode == 0, done.stderr
        # A second place: the same ports and the board's DFU device.
        for args in (("create",), ("add-match", f"{exporter}/bf/*"), ("add-match", f"{exporter}/bfdfu/*")):
            done = lab.client("-p", f"{lab.place}-dfu", *args)
            assert done.returncode == 0, done.stderr
        lab.host = rig.boards[0]  # the bench host's board (its stand-in SITL)
        yield lab
    finally:
        for proc in reversed(procs):
            _stop(proc)
        for bridge in bridges:
            bridge.stop()
        rig.stop()


def _placed_rig(lab: Lab, place: str | None = None) -> Path:
    path = lab.root / f"placed-{place or lab.place}.toml"
    path.write_text(
        '[rig]\nname = "placed-bench"\n[[board]]\nname = "bf-placed"\ntype = "betaflight"\n'
        f'place = "{place or lab.place}"\ncoordinator = "{lab.coordinator}"\narm_aux = 1\n'
        '[[board.receiver]]\nrole = "rc"\nprotocol = "crsf"\nfc_port = "UART2"\n'
    )
    return path


@pytest.mark.slow  # about 60 s here when the SITL lock is free (the first use configures the board)
def test_a_bench_scenario_passes_on_a_betaflight_board_reached_only_through_a_place(bench_place, tmp_path):
    lab = bench_place
    report = tmp_path / "report"
    run = subprocess.run(
        [sys.executable, "-m", "hil.cli", "run", "--rig", str(_placed_rig(lab)), "--report", str(report),
         "--state-dir", str(tmp_path / "state"), "scenarios/bench_arming.toml", "scenarios/bench_link_statistics.toml"],
        capture_output=True, text=True, timeout=420, cwd=ROOT, env=lab.env(),
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    ran = {s["name"]: s for s in json.loads((report / "summary.json").read_text())["scenarios"]}
    assert ran["bench-arming"]["passed"] and ran["bench-link-statistics"]["passed"], ran
    assert re.search(r"bench-arming\s+bf-placed\s+PASS", run.stdout), run.stdout[-2000:]
    assert lab.holder() is None, "the place was not released"


@pytest.mark.slow  # shares the bench place above (the SITL's start)
def test_flashing_a_placed_betaflight_board_needs_a_dfu_device_in_its_place(bench_place, tmp_path):
    """The place exports the board's ports only: hil flash is refused in one line naming
    what the place has, before anything is sent to the board."""
    import struct

    lab = bench_place
    image = tmp_path / "fw.bin"
    image.write_bytes(struct.pack("<II", 0x20020000, 0x08000201) + bytes(1024))
    run = subprocess.run(
        [sys.executable, "-m", "hil.cli", "flash", str(image), "--base-address", "0x08000000",
         "--rig", str(_placed_rig(lab)), "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=lab.env(),
    )
    assert run.returncode != 0
    assert re.search(
        rf"place {lab.place} has no DFU device to flash through .*; it has: control \(NetworkSerialPort\), rc \(NetworkSerialPort\)",
        run.stderr,
    ), run.stderr
    assert "Traceback" not in run.stderr and run.stderr.strip().count("\n") == 0, run.stderr
    assert lab.holder() is None


@pytest.mark.slow  # shares the bench place above
def test_a_real_target_image_is_refused_over_msp_through_the_place_before_any_reboot(bench_place, tmp_path):
    """A place with the board's DFU device: hil flash asks the board over MSP (through the
    place's control port) what it is before anything else, and the real MATEKF405SE .hex
    is refused for the SITL target; the board is never rebooted."""
    from hil.errors import ConfigError
    from hil.sitl.target_build import CompilerMissing, target_hex

    try:
        image = target_hex()
    except (CompilerMissing, ConfigError) as exc:
        pytest.skip(f"cannot build a Betaflight target here: {exc}")
    lab = bench_place
    generation = lab.host.stand_in.generation
    run = subprocess.run(
        [sys.executable, "-m", "hil.cli", "flash", str(image), "--rig", str(_placed_rig(lab, f"{lab.place}-dfu")),
         "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=lab.env(),
    )
    assert run.returncode != 0
    assert "which is target SITL" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and run.stderr.strip().count("\n") == 0, run.stderr
    assert lab.host.stand_in.generation == generation and lab.host.stand_in.alive  # never rebooted
    assert lab.holder() is None


@pytest.mark.slow  # shares the bench place above; the SITL reboots
def test_into_the_rom_bootloader_over_msp_through_the_place_then_no_dfu_device_is_one_line(bench_place, tmp_path):
    """An image naming the board's target passes the MSP check; MSP_REBOOT into the ROM
    bootloader goes out through the place's control port and the board goes. The SITL has no
    ROM bootloader, so no DFU device appears at the exporter: one line, nothing written."""
    import struct

    lab = bench_place
    image = tmp_path / "sitl-named.bin"
    # A vector table, then the strings a Betaflight image for target SITL carries.
    image.write_bytes(struct.pack("<II", 0x20020000, 0x08000101) + bytes(248) + b"\0Betaflight\0BTFL\0SITL\0" + bytes(64))
    rig = _placed_rig(lab, f"{lab.place}-dfu")
    rig.write_text(rig.read_text().replace("arm_aux = 1\n", "arm_aux = 1\ncheck_board_name = false\ndfu_wait = 3\n"))
    generation = lab.host.stand_in.generation
    run = subprocess.run(
        [sys.executable, "-m", "hil.cli", "flash", str(image), "--base-address", "0x08000000", "--rig", str(rig),
         "--state-dir", str(tmp_path / "state"), "--force"],
        capture_output=True, text=True, timeout=180, cwd=ROOT, env=lab.env(),
    )
    assert run.returncode != 0
    assert "DFU device dfu is not present" in run.stderr and "did not appear after the board was told to reboot into it" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and run.stderr.strip().count("\n") == 0, run.stderr
    assert lab.host.stand_in.generation > generation  # it rebooted
    assert lab.holder() is None
