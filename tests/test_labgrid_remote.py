"""Boards on other hosts through the real labgrid (issue 15): a coordinator and an
exporter on 127.0.0.1, a virtual board's control pty and receiver ptys exported through
ser2net, and the harness reaching the board only through the place.

Needs labgrid (hil's `labgrid` extra) and ser2net (Debian package `ser2net`); skipped
without them, failed without them when HIL_REQUIRE_LABGRID=1 (CI sets it).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hil import children
from hil.errors import ConfigError
from hil.labgrid.place import PlaceAgent
from hil.lifecycle import BoardState
from hil.locks import BoardBusy
from hil.rig import Rig

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "tests" / "data" / "labgrid" / "ground_rc_glitch.toml"
BIN = Path(sys.executable).parent


def _missing() -> str | None:
    try:
        import labgrid  # noqa: F401
    except ImportError:
        return "labgrid is not installed (pip install -e '.[labgrid]')"
    if not (BIN / "labgrid-coordinator").exists() or not (BIN / "labgrid-exporter").exists():
        return f"labgrid's programs are not in {BIN}"
    if not (shutil.which("ser2net") or Path("/usr/sbin/ser2net").exists()):
        return "ser2net is not installed (apt-get install ser2net)"
    if not Path("/dev/shm").is_dir() or not os.access("/dev/shm", os.W_OK):
        return "/dev/shm is not writable (the exporter serves only paths under /dev/)"
    return None


_WHY = _missing()
if _WHY and os.environ.get("HIL_REQUIRE_LABGRID") == "1":
    raise RuntimeError(f"HIL_REQUIRE_LABGRID=1 but {_WHY}")
pytestmark = pytest.mark.skipif(_WHY is not None, reason=_WHY or "")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(argv: list[str], cwd: Path, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    handle = open(log, "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        argv, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    handle.close()
    children.guard.watch(proc.pid)  # dies with this test process, however it ends
    return proc


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(8)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    children.guard.forget(proc.pid)


def _wait_for(what: str, check, within: float, log: Path | None = None):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-2000:] if log is not None and log.exists() else ""
    raise AssertionError(f"{what} not within {within:.0f} s\n{tail}")


class Lab:
    def __init__(self, root: Path, coordinator: str, place: str, host=None) -> None:
        self.root = root
        self.coordinator = coordinator
        self.place = place
        #: The bench host (hil.labgrid.virtual_host.VirtualHost) behind the exporter.
        self.host = host

    def client(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "labgrid-client"), "-x", self.coordinator, *args],
            capture_output=True, text=True, timeout=30, cwd=self.root,
        )

    def holder(self) -> str | None:
        """Who holds the place, as the coordinator says ("host/user"), or None."""
        out = self.client("-p", self.place, "show").stdout
        found = re.search(r"^\s*acquired: (\S+)", out, re.M)
        value = found.group(1) if found else "?"
        return None if value == "None" else value

    def rig(self, name: str = "remote.toml", place: str | None = None, **extra: str) -> Path:
        lines = [
            "[rig]", 'name = "remote"', "[[board]]", 'name = "remote1"', 'type = "labgrid"',
            f'place = "{place or self.place}"', f'coordinator = "{self.coordinator}"', "lockstep = true",
            *(f"{k} = {v}" for k, v in extra.items()),
            "[[board.receiver]]", 'role = "gps"', 'protocol = "ubx"',
            "[[board.receiver]]", 'role = "rc"', 'protocol = "crsf"',
        ]
        path = self.root / name
        path.write_text("\n".join(lines) + "\n")
        return path

    def pytest_argv(self, rig: Path) -> list[str]:
        return [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-W", "ignore::DeprecationWarning",
            "--rig", str(rig), "--lock-wait", "20", str(SCENARIO),
            # labgrid's own option: its pytest plugin is loaded beside ours (neighbours).
            "--lg-colored-steps",
        ]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["HIL_LOCK_DIR"] = str(self.root / "locks")
        env.pop("LG_PLACE", None)
        env.pop("LG_TOKEN", None)
        return env


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A coordinator, a bench host of one virtual board (GPS and RC on UARTs) and its
    exporter, all on 127.0.0.1, and a place matching the board's ports."""
    from hil.labgrid.virtual_host import VirtualHost
    from hil.rig import Rig

    root = tmp_path_factory.mktemp("lab")
    tag = f"{os.getpid()}"
    coordinator = f"127.0.0.1:{_free_port()}"
    procs: list[subprocess.Popen] = []
    host = None
    try:
        coord_log = root / "coordinator.log"
        procs.append(_start([str(BIN / "labgrid-coordinator"), "-l", coordinator], root, coord_log))
        _wait_for("the coordinator listening", lambda: "listening on" in coord_log.read_text(errors="replace"), 20, coord_log)
        (root / "bench.toml").write_text(
            '[rig]\nname = "bench"\n[[board]]\nname = "vfc"\ntype = "virtual"\n'
            f'usb_serial = "HILLG{tag}"\ngps = "uart:ubx"\nrc = "uart:crsf"\n'
        )
        host = VirtualHost(Rig.load(root / "bench.toml", work_dir=root / "bench"), Path(f"/dev/shm/hil-lgtest-{tag}"))
        host.start()
        host.serve_power()  # each board's power switch, for labgrid's simplerest backend
        # The board's ROM bootloader as labgrid's exporter would find it over udev: there is
        # no USB on this host, so the place shows it as a NetworkDFUDevice never available.
        dfu = f'  dfu:\n    cls: DFUDevice\n    match:\n      ID_SERIAL_SHORT: "HILLGDFU{tag}"\n'
        (root / "exporter.yaml").write_text(host.exporter_config() + dfu)
        exporter = f"hil-test-{tag}"
        exp_log = root / "exporter.log"
        procs.append(_start(
            [str(BIN / "labgrid-exporter"), "-c", coordinator, "-n", exporter, "--hostname", "127.0.0.1", "exporter.yaml"],
            root, exp_log,
        ))
        lab = Lab(root, coordinator, f"hil-vfc-{tag}", host)
        lab.exporter = exporter
        _wait_for(
            "the exporter's resources at the coordinator",
            lambda: exporter in lab.client("resources").stdout, 30, exp_log,
        )
        for args in (("create",), ("add-match", f"{exporter}/vfc/*"), ("set-tags", "board=vfc", f"run={tag}")):
            done = lab.client("-p", lab.place, *args)
            assert done.returncode == 0, done.stderr
        yield lab
    finally:
        for proc in reversed(procs):
            _stop(proc)
        if host is not None:
            host.stop()


def test_a_scenario_passes_on_a_virtual_board_reached_only_through_a_place(lab):
    rig = lab.rig()
    run = subprocess.run(lab.pytest_argv(rig), capture_output=True, text=True, timeout=240, cwd=ROOT, env=lab.env())
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert re.search(r"labgrid-ground-rc-glitch\s+remote1\s+PASS", run.stdout), run.stdout[-2000:]
    assert lab.holder() is None, "the place was not released at the end of the run"


def test_a_second_client_is_refused_naming_the_holder_then_queued_until_it_is_free(lab):
    first = PlaceAgent(coordinator=lab.coordinator, tags={"board": "vfc", "run": str(os.getpid())})
    first.acquire(wait=10)
    try:
        assert first.acquired == lab.place
        assert first.serial_url("control").startswith("rfc2217://127.0.0.1:")
        assert lab.holder() == first.user
        second = PlaceAgent(coordinator=lab.coordinator, place=lab.place)
        with pytest.raises(BoardBusy, match=rf"{lab.place} held by {re.escape(first.user)}"):
            second.acquire(wait=1.0)
        # Queued: a client that waits gets the place once the first lets it go.
        waiting = PlaceAgent(coordinator=lab.coordinator, place=lab.place)
        got: list[object] = []
        thread = threading.Thread(target=lambda: got.append(_try(waiting.acquire, 30)), daemon=True)
        thread.start()
        time.sleep(1.5)
        assert not got, "the waiting client got a place somebody holds"
        first.release()
        thread.join(35)
        assert got and got[0] is waiting, got
        assert waiting.acquired == lab.place
        waiting.release()
    finally:
        first.release()
    _wait_for("the place released", lambda: lab.holder() is None, 10)


def _try(call, *args):
    try:
        return call(*args)
    except Exception as exc:  # reported by the assertion
        return exc


def test_killing_the_client_mid_run_releases_the_place(lab):
    rig = lab.rig("killed.toml")
    log = lab.root / "killed.log"
    proc = _start(lab.pytest_argv(rig), ROOT, log, env=lab.env())
    try:
        _wait_for("the client to acquire the place", lab.holder, 60, log)
        time.sleep(1.0)  # into the run
        os.kill(proc.pid, signal.SIGKILL)  # the harness only: its agent sees its pipe close
        proc.wait(10)
        _wait_for("the place released after the client was killed", lambda: lab.holder() is None, 30, log)
    finally:
        _stop(proc)


def test_a_coordinator_nobody_runs_is_a_missing_board_in_one_line():
    from hil.labgrid.place import PlaceError

    with pytest.raises(PlaceError, match=r"coordinator 127\.0\.0\.1:\d+: .*[Cc]ould not connect"):
        PlaceAgent(place="nowhere", coordinator=f"127.0.0.1:{_free_port()}").acquire(wait=1)


def test_a_place_the_coordinator_does_not_know_is_a_rig_mistake(lab):
    from hil.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"knows no place 'no-such-place'; places: .*{lab.place}"):
        PlaceAgent(place="no-such-place", coordinator=lab.coordinator).acquire(wait=1)


def test_power_goes_through_labgrids_power_driver_at_start_cycle_and_stop(lab):
    """A `power = true` board: the agent switches the place's NetworkPowerPort with
    labgrid's NetworkPowerDriver (simplerest backend, real HTTP to the bench host's power
    service), which really stops and boots the virtual board behind the place."""
    from hil.lifecycle import BoardState
    from hil.rig import Rig

    host = lab.host
    link = host.links(host.boards[0])["control"]
    resources = lab.client("-p", lab.place, "show").stdout
    assert "NetworkPowerPort" in resources and "simplerest" in resources, resources
    rig = Rig.load(lab.rig("powered.toml", power="true"), work_dir=lab.root / "powered")
    board = rig.boards[0]
    before = len(host.switched)
    try:
        board.lifecycle.reach(BoardState.APP, "the power test")
        assert host.switched[before:] == [("vfc", "on")]
        board.lifecycle.power_cycle()  # labgrid's cycle: off, its 2 s delay, on
        # Each entry is a switch the bench host carried out: the board stopped, then booted.
        assert host.switched[before:] == [("vfc", "on"), ("vfc", "off"), ("vfc", "on")]
        assert host.boards[0].state == "running" and link.exists()
        assert board.url().startswith("rfc2217://127.0.0.1:")
        rig.stop()  # power off, then release
        assert host.switched[before:] == [("vfc", "on"), ("vfc", "off"), ("vfc", "on"), ("vfc", "off")]
        assert not link.exists() and host.boards[0].state != "running", "the board still runs after power off"
        assert lab.holder() is None
    finally:
        rig.stop()
        host.power("vfc", True)  # the other tests use the board unswitched


def test_power_on_a_place_without_a_power_resource_is_one_line(lab):
    """The same board's serial ports in a place without its power switch: switching fails
    in one line naming what labgrid can switch, and the place stays usable and is let go."""
    from hil.labgrid.place import PlaceError

    place = f"{lab.place}-nopower"
    exporter = lab.exporter
    for args in (("create",), ("add-match", f"{exporter}/vfc/NetworkSerialPort/*")):
        done = lab.client("-p", place, *args)
        assert done.returncode == 0, done.stderr
    agent = PlaceAgent(coordinator=lab.coordinator, place=place)
    agent.acquire(wait=10)
    try:
        assert "power" not in agent.resources and "control" in agent.resources
        with pytest.raises(PlaceError, match=rf"place {place}: power on: .*has no power resource labgrid can switch \(one of: .*NetworkPowerPort"):
            agent.power("on")
        assert agent.serial_url("control").startswith("rfc2217://")
    finally:
        agent.release()
    # Nor any DFU device: a flash through it is refused in one line naming what it has.
    rig = Rig.load(lab.rig("nodfu.toml", place=place), work_dir=lab.root / "nodfu")
    try:
        rig.boards[0].lifecycle.reach(BoardState.APP, "the test")
        with pytest.raises(ConfigError, match=rf"place {place} has no DFU device to flash through .*; it has: control \(NetworkSerialPort\)") as err:
            rig.boards[0].flasher("dfu").flash(_vector_image(lab.root))
        assert "\n" not in str(err.value)
    finally:
        rig.stop()
        lab.client("-p", place, "delete")


def _vector_image(where: Path):
    import struct

    from hil.firmware.image import load_image

    path = where / "fw.bin"
    path.write_bytes(struct.pack("<II", 0x20020000, 0x08000201) + bytes(4096))
    return load_image(path, base_address=0x08000000)


def test_dfu_through_the_place_sees_the_exported_dfu_device_and_says_the_board_is_not_in_its_bootloader(lab):
    """hil flash on a place whose exporter exports the board's ROM DFU device (a
    DFUDevice): the coordinator shows it as a NetworkDFUDevice, unavailable while no USB
    device matches (none can, here), and the flash stops in one line before writing."""
    env = lab.env()
    rig = lab.rig("dfu.toml", dfu_wait="1")
    image = _vector_image(lab.root)
    run = subprocess.run(
        [sys.executable, "-m", "hil.cli", "flash", image.path, "--base-address", "0x08000000", "--rig", str(rig)],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=env,
    )
    assert run.returncode != 0
    assert re.search(
        rf"place {lab.place}'s DFU device dfu is not present \(the exporter sees no USB device matching it.*"
        r"not in its ROM bootloader; a MAVLink board cannot be sent there over its link: hold BOOT0", run.stderr,
    ), run.stderr
    assert "Traceback" not in run.stderr and run.stderr.strip().count("\n") == 0, run.stderr
    assert lab.holder() is None


def test_the_agent_hands_the_file_to_labgrids_dfu_driver_which_refuses_an_absent_device(lab, tmp_path):
    """Past our own check, straight to labgrid's DFUDriver on the exported device: labgrid
    refuses to activate it while the device is absent, and that comes back in one line."""
    from hil.labgrid.dfu import dfu_file
    from hil.labgrid.place import PlaceError

    agent = PlaceAgent(coordinator=lab.coordinator, place=lab.place)
    agent.acquire(wait=10)
    try:
        dfu = agent.resources["dfu"]
        assert dfu.cls == "NetworkDFUDevice" and not dfu.avail and dfu.params.get("path") is None
        path = dfu_file(_vector_image(tmp_path), tmp_path)
        with pytest.raises(PlaceError, match=r"dfu download: .*(not available|NoResourceFoundError|Not all resources)") as err:
            agent.dfu_download(0, path, timeout=60)
        assert "\n" not in str(err.value)
        assert agent.held  # the place is still ours
    finally:
        agent.release()
