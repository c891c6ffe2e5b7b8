"""No orphans: however `hil` dies, nothing it started outlives it, and the next command
takes the board at once instead of being told "already served by pid N".

The end-to-end tests run the real `hil` command in a subprocess with a state directory
of their own; every process they may leave is recognised by that directory in its
command line or working directory (or, for the guard, by the harness pid in its
command line) and killed in a `finally`, whatever happens.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil import children
from hil.errors import BoardNotAnswering
from hil.vfc.process import VirtualBoardProcess

ROOT = Path(__file__).resolve().parent.parent
IMAGE = ROOT / "firmware_images" / "hilcopter-1.0.0.apj"
SERIAL = "HILVFC0001"  # the board of fixtures/virtual.toml
GONE_WITHIN = 15.0  # s from the harness's death until nothing of it is left


# -- helpers ---------------------------------------------------------------------------------
class HilCommand:
    """A `hil` command running in a subprocess (its own session), its output collected."""

    def __init__(self, args: list[str], env: dict[str, str], argv: list[str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *(argv if argv is not None else ["-m", "hil.cli", *args])],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._out = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for chunk in iter(lambda: self.proc.stdout.read1(4096), b""):  # type: ignore[union-attr]
            self._out += chunk

    @property
    def output(self) -> str:
        return self._out.decode(errors="replace")

    def wait_for(self, text: str, timeout: float) -> None:
        """Wait until `text` appears in the output (the command is mid-way)."""
        end = time.monotonic() + timeout
        while text not in self.output:
            if self.proc.poll() is not None or time.monotonic() > end:
                raise AssertionError(
                    f"no {text!r} from `hil` within {timeout:.0f} s; output:\n{self.output[-3000:]}"
                )
            time.sleep(0.05)

    def finish(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5.0)
        return code


def _ours(marker: str, harness_pids: set[int]) -> dict[int, str]:
    """Live processes of a test run: `marker` in the command line or working directory,
    or a guard naming one of `harness_pids`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        if not children.running(pid):
            continue
        argv = children.command_line(pid)
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            cwd = ""
        guard = (
            argv[-3:-1] == ["hil.children", "guard"] and argv[-1:] and int(argv[-1]) in harness_pids
        )
        if marker in " ".join(argv) or cwd.startswith(marker) or guard:
            found[pid] = " ".join(argv)[:160]
    return found


def _wait_none_left(marker: str, harness_pids: set[int], within: float = GONE_WITHIN) -> None:
    end = time.monotonic() + within
    while (left := _ours(marker, harness_pids)) and time.monotonic() < end:
        time.sleep(0.1)
    assert not left, f"still running {within:.0f} s after the harness died: {left}"


def _namespaces_of(pid: int) -> list[str]:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, timeout=10
        ).stdout
        return [line.split()[0] for line in out.splitlines() if line.startswith(f"hil-{pid}-")]
    return []


class Workspace:
    """A state directory, report directory and lock directory of one test's own."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "state"
        self.report = root / "report"
        self.env = dict(os.environ)
        self.env["HIL_LOCK_DIR"] = str(root / "locks")
        self.env["HIL_REGISTRY"] = str(root / "registry")
        self.harness_pids: set[int] = set()
        self.commands: list[HilCommand] = []

    def hil(self, *args: str) -> HilCommand:
        command = HilCommand([*args, "--state-dir", str(self.state)], self.env)
        self.harness_pids.add(command.proc.pid)
        self.commands.append(command)
        return command

    def cleanup(self) -> None:
        for command in self.commands:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(command.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                command.finish(5.0)
        for pid in _ours(str(self.root), self.harness_pids):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for pid in self.harness_pids:
            for name in _namespaces_of(pid):
                subprocess.run(
                    ["ip", "netns", "del", name], capture_output=True, timeout=10, check=False
                )


@pytest.fixture
def work(tmp_path: Path) -> Iterator[Workspace]:
    space = Workspace(tmp_path)
    try:
        yield space
    finally:
        space.cleanup()


def _kill(command: HilCommand, signum: int) -> None:
    os.kill(command.proc.pid, signum)  # the harness alone, as `timeout` does
    code = command.finish(30.0)
    if signum == signal.SIGTERM:
        assert code in (128 + signal.SIGTERM, 2), (
            f"`hil` exited {code} on SIGTERM:\n{command.output[-3000:]}"
        )


def _assert_torn_down_by_the_harness(work: Workspace) -> None:
    """After SIGTERM the harness stops its board itself; the lifeline is not needed."""
    log = (work.state / SERIAL / "board.log").read_text(errors="replace")
    assert "lifeline closed" not in log, log[-2000:]


def _assert_board_taken_at_once(work: Workspace) -> None:
    boards = work.hil("boards", "--timeout", "10")
    code = boards.finish(60.0)
    assert code == 0, boards.output
    assert "unreachable" not in boards.output and "already served" not in boards.output, (
        boards.output
    )
    assert SERIAL in boards.output


SIGNALS = [pytest.param(signal.SIGTERM, id="sigterm"), pytest.param(signal.SIGKILL, id="sigkill")]


# -- `hil flash` and `hil run` killed mid-way ------------------------------------------------
@pytest.mark.parametrize("signum", SIGNALS)
def test_a_flash_killed_mid_way_leaves_nothing_and_the_next_flash_takes_the_board(
    work: Workspace, signum: int
) -> None:
    flash = work.hil("flash", str(IMAGE), "--force", "--lock-wait", "0")
    flash.wait_for("erase", 60.0)
    _kill(flash, signum)
    _wait_none_left(str(work.state), work.harness_pids)
    if signum == signal.SIGTERM:
        _assert_torn_down_by_the_harness(work)

    started = time.monotonic()
    again = work.hil("flash", str(IMAGE), "--lock-wait", "0")
    code = again.finish(120.0)
    assert code == 0, again.output
    assert "flashed onto copter1" in again.output, again.output
    assert time.monotonic() - started < 60.0
    _wait_none_left(str(work.state), work.harness_pids, within=5.0)


@pytest.mark.parametrize("signum", SIGNALS)
def test_a_run_killed_mid_scenario_leaves_nothing_and_the_next_command_takes_the_board(
    work: Workspace, signum: int
) -> None:
    run = work.hil("run", "scenarios/hover_hold.toml", "--report", str(work.report))
    run.wait_for("hover-hold on copter1: started", 120.0)
    time.sleep(1.0)  # into the scenario's flight
    _kill(run, signum)
    _wait_none_left(str(work.state), work.harness_pids)
    if signum == signal.SIGTERM:
        _assert_torn_down_by_the_harness(work)
    _assert_board_taken_at_once(work)


def test_a_pytest_session_given_sigterm_tears_down_like_ctrl_c(work: Workspace) -> None:
    argv = ["-m", "pytest", "scenarios/hover_hold.toml", "-q", "--hil-state-dir", str(work.state)]
    session = HilCommand([], work.env, argv=argv)
    work.harness_pids.add(session.proc.pid)
    work.commands.append(session)
    session.wait_for("hover-hold on copter1: started", 120.0)
    os.kill(session.proc.pid, signal.SIGTERM)
    assert session.finish(30.0) == 2, session.output[-3000:]  # pytest's "interrupted"
    _wait_none_left(str(work.state), work.harness_pids)
    _assert_torn_down_by_the_harness(work)


def test_a_betaflight_sitl_run_killed_leaves_no_firmware_and_no_namespace(work: Workspace) -> None:
    from tests.sitl_support import require_sitl

    require_sitl()
    rig = str(ROOT / "fixtures" / "betaflight-sitl.toml")
    run = work.hil(
        "run", "scenarios/bf_rc_loss_drop.toml", "--rig", rig, "--report", str(work.report)
    )
    run.wait_for("bf-rc-loss-drop on bf1: started", 180.0)
    sitl = [pid for pid, argv in _ours(str(work.state), set()).items() if "SITL" in argv]
    assert sitl, "no Betaflight SITL process found in the state directory"
    _kill(run, signal.SIGKILL)
    _wait_none_left(str(work.state), work.harness_pids)
    end = time.monotonic() + GONE_WITHIN
    while _namespaces_of(run.proc.pid) and time.monotonic() < end:
        time.sleep(0.1)
    assert not _namespaces_of(run.proc.pid)


# -- a board left by an older crash ----------------------------------------------------------
def _start_orphan_board(state: Path, registry_dir: Path) -> int:
    """A board as an older harness left it: no lifeline, its parent gone."""
    (state / SERIAL).mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "hil.vfc",
        "--usb-serial",
        SERIAL,
        "--storage",
        str(state / SERIAL / "storage.bin"),
        "--registry",
        str(registry_dir),
    ]
    starter = (
        "import subprocess, sys\n"
        f"p = subprocess.Popen({argv!r}, start_new_session=True, stdin=subprocess.DEVNULL,"
        " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "print(p.pid)\n"
        # Until the board has announced itself, so it records this process as its harness.
        f"import json, pathlib, time\nentry = pathlib.Path({str(registry_dir / (SERIAL + '.json'))!r})\n"
        "end = time.monotonic() + 15\n"
        "while time.monotonic() < end and not entry.exists():\n    time.sleep(0.05)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", starter], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    pid = int(out.stdout.strip())
    entry_path = registry_dir / f"{SERIAL}.json"
    end = time.monotonic() + 15.0
    while time.monotonic() < end:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(entry_path.read_text())["process_id"] == pid:
                return pid
        time.sleep(0.05)
    raise AssertionError(f"the orphan board {pid} did not announce itself in {registry_dir}")


def test_a_board_left_by_an_older_crash_is_replaced_not_reported(work: Workspace) -> None:
    orphan = _start_orphan_board(work.state, work.state / "registry")
    recorded = json.loads((work.state / "registry" / f"{SERIAL}.json").read_text())["parent_pid"]
    assert recorded > 1 and children.orphaned(orphan, recorded)
    _assert_board_taken_at_once(work)
    assert not children.running(orphan)


def test_a_board_whose_harness_lives_is_not_taken(tmp_path: Path) -> None:
    registry_dir = tmp_path / "registry"
    first = VirtualBoardProcess(SERIAL, tmp_path / "first.bin", registry_dir).start()
    try:
        with pytest.raises(BoardNotAnswering, match=f"already served by pid {first.pid}"):
            VirtualBoardProcess(SERIAL, tmp_path / "second.bin", registry_dir).start()
        assert first.alive
    finally:
        first.stop()


def test_an_orphan_whose_lock_another_live_process_holds_is_left_alone(work: Workspace) -> None:
    registry_dir = work.state / "registry"
    orphan = _start_orphan_board(work.state, registry_dir)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom hil.locks import BoardLock\n"
            f"BoardLock({SERIAL!r}, {str(work.state / 'locks')!r}).acquire()\nprint('held', flush=True)\ntime.sleep(60)\n",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(BoardNotAnswering, match=f"already served by pid {orphan}"):
            VirtualBoardProcess(SERIAL, work.root / "new.bin", registry_dir).start(timeout=10.0)
        assert children.running(orphan)
    finally:
        holder.kill()
        holder.wait(5.0)
        with contextlib.suppress(ProcessLookupError):
            os.kill(orphan, signal.SIGKILL)


# -- the layers one by one -------------------------------------------------------------------
def _sleeper_started_by_a_dying_parent(preexec: str) -> int:
    """Start `sleep 60` from a Python parent (with `preexec`), return its pid; the parent
    then waits to be killed."""
    code = (
        "import os, signal, subprocess, sys, time\nfrom hil import children\n"
        f"p = subprocess.Popen(['sleep', '60'], start_new_session=True, preexec_fn={preexec})\n"
        "print(p.pid, flush=True)\ntime.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    parent.kill()
    parent.wait(5.0)
    return pid


def test_the_parent_death_signal_ends_a_child_when_its_parent_is_killed() -> None:
    pid = _sleeper_started_by_a_dying_parent("children.parent_death_preexec(signal.SIGKILL)")
    try:
        end = time.monotonic() + 5.0
        while children.running(pid) and time.monotonic() < end:
            time.sleep(0.02)
        assert not children.running(pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_the_guard_ends_the_groups_it_was_told_of_at_end_of_file() -> None:
    kept = subprocess.Popen(["sleep", "60"], start_new_session=True)
    forgotten = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        lines = (
            f"group {kept.pid} {children.process_start_time(kept.pid)}\n"
            f"group {forgotten.pid} {children.process_start_time(forgotten.pid)}\n"
            f"ungroup {forgotten.pid}\n"
        )
        assert children._guard_main(io.BytesIO(lines.encode()), grace=2.0) == 0
        assert kept.wait(5.0) == -signal.SIGTERM
        assert forgotten.poll() is None
    finally:
        kept.kill()
        forgotten.kill()
        kept.wait(5.0)
        forgotten.wait(5.0)


def test_the_guard_never_signals_a_recycled_pid() -> None:
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        wrong_start = (children.process_start_time(other.pid) or 0) + 1
        assert children.end_process_groups({other.pid: wrong_start}, grace=0.5) == []
        assert other.poll() is None
    finally:
        other.kill()
        other.wait(5.0)
