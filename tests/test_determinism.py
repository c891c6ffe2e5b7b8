"""Lockstep repeats exactly: same rig, same seed, same flight, whatever the host's load.

Two things make it so (docs/architecture.md, "Lockstep is deterministic"): the test
thread acts only at step boundaries of a gated loop, and every UART byte is tied to a
position in the MAVLink stream by a marker (hil.mavlink.uart_marker).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from hil.rig import DEFAULT_RIG, Rig
from hil.scenario.load import load_scenario
from hil.scenario.runner import run_scenario
from hil.session import session_for
from hil.vfc.pty import Pty
from hil.vfc.uarts import BoardUarts

ROOT = Path(__file__).resolve().parent.parent
UART_RIG = ROOT / "fixtures" / "virtual.toml"
SCENARIO = ROOT / "scenarios" / "rc_loss_rtl.toml"


def _hog(stop) -> None:  # pragma: no cover - runs in a child process
    while not stop.is_set():
        sum(i * i for i in range(10_000))


class CpuHogs:
    """Processes that keep every core busy while the block runs."""

    def __init__(self, count: int = 2) -> None:
        self.count = count
        self._stop = multiprocessing.Event()
        self._procs: list[multiprocessing.Process] = []

    def __enter__(self) -> CpuHogs:
        for _ in range(self.count):
            proc = multiprocessing.Process(target=_hog, args=(self._stop,), daemon=True)
            proc.start()
            self._procs.append(proc)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for proc in self._procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)


def _fly(rig_path: Path, tmp_path: Path, seed: int) -> dict:
    """One flight of the RC-loss scenario; what must repeat exactly."""
    rig = Rig.load(rig_path, work_dir=tmp_path / f"rig-{time.monotonic_ns()}")
    try:
        scenario = replace(load_scenario(SCENARIO), seed=seed)
        with session_for(rig.select(None)) as session:
            result = run_scenario(scenario, session)
            sim = session.sim
            assert sim is not None
            truth = sim.truth.values().tolist()
            answers = sim.answer_stamps().board_us.tolist()
    finally:
        rig.stop()
    assert result.error is None, result.error
    return {
        "truth": hashlib.sha256(repr(truth).encode()).hexdigest(),
        "truth_rows": len(truth),
        "answers": hashlib.sha256(repr(answers).encode()).hexdigest(),
        "verdicts": [(v.expectation.kind, v.passed, v.t) for v in result.verdicts],
        "events": [(round(e.t, 6), e.kind, e.text) for e in result.timeline.events],
        "states": hashlib.sha256(repr({k: v.tolist() for k, v in result.timeline.states().items()}).encode()).hexdigest(),
        "end": truth[-1] if truth else None,
    }


@pytest.mark.parametrize("rig_path", [UART_RIG, DEFAULT_RIG], ids=["uart-rig", "mavlink-rig"])
def test_a_flight_repeats_bit_for_bit_with_two_cpu_hogs_running(rig_path, tmp_path):
    quiet = _fly(rig_path, tmp_path, seed=3)
    with CpuHogs(2):
        loaded = _fly(rig_path, tmp_path, seed=3)
    assert loaded == quiet


def test_another_seed_gives_another_flight(tmp_path):
    # The check above must be able to fail: the seed does change the flight.
    assert _fly(DEFAULT_RIG, tmp_path, seed=3)["truth"] != _fly(DEFAULT_RIG, tmp_path, seed=4)["truth"]


# -- the board's side of UART sequencing -------------------------------------------------


class _Copter:
    """Records what the UART drivers hand the flight software."""

    def __init__(self) -> None:
        self.rc: list[tuple[int, list[int]]] = []
        self.gps: list[int] = []

    def on_rc(self, t_us: int, channels: list[int]) -> None:
        self.rc.append((t_us, channels))

    def on_gps(self, t_us: int, *fix: object) -> None:
        self.gps.append(t_us)


def _crsf_frames(count: int) -> bytes:
    """The emulator's bytes up to and including its `count`-th RC channels frame."""
    from hil.injectors.rc import RcReceiverEmulator
    from hil.threats.rc_link import RcLinkModel
    from hil.vfc.rc_uart import RcUartInput

    emulator = RcReceiverEmulator("crsf")
    link = RcLinkModel(emulator.rate_hz, seed=0)
    parser = RcUartInput("crsf")
    out = b""
    t_us = 0
    seen = 0
    while seen < count:
        data = emulator.produce(t_us, [1500] * 8, link) or b""
        seen += sum(1 for r in parser.feed(data, t_us) if r.valid)
        out += data
        t_us += 1000
    return out


@pytest.fixture()
def rc_uart():
    uarts = BoardUarts({"rc": "crsf"})
    fd = os.open(uarts.paths["rc"], os.O_RDWR | os.O_NOCTTY)
    try:
        yield uarts, fd
    finally:
        os.close(fd)
        uarts.close()


def test_bytes_for_a_later_step_are_held_back(rc_uart):
    uarts, fd = rc_uart
    first = _crsf_frames(1)
    os.write(fd, first + first)  # this step's frame and, already, the next step's
    time.sleep(0.05)
    copter = _Copter()
    uarts.announce("rc", len(first))
    uarts.poll(copter, 1000)
    assert [t for t, _ in copter.rc] == [1000]
    uarts.announce("rc", len(first))
    uarts.poll(copter, 2000)
    assert [t for t, _ in copter.rc] == [1000, 2000]


def test_announced_bytes_still_in_the_kernel_are_waited_for(rc_uart):
    uarts, fd = rc_uart
    frame = _crsf_frames(1)
    uarts.announce("rc", len(frame))
    writer = threading.Timer(0.2, os.write, (fd, frame))
    writer.start()
    copter = _Copter()
    try:
        uarts.poll(copter, 5000)
    finally:
        writer.join()
    assert [t for t, _ in copter.rc] == [5000]
    assert uarts.shortfall == ""


def test_bytes_that_never_arrive_end_the_wait_with_a_warning(rc_uart, monkeypatch):
    import hil.vfc.uarts as uarts_module

    monkeypatch.setattr(uarts_module, "UART_WAIT_S", 0.2)
    uarts, _fd = rc_uart
    uarts.announce("rc", 26)
    t0 = time.monotonic()
    uarts.poll(_Copter(), 1000)
    assert time.monotonic() - t0 < 2.0
    assert uarts.shortfall == "UART rc: 26 bytes announced for this step, only 0 arrived within 0.2 s"


def test_without_announcements_everything_that_arrived_is_fed(rc_uart):
    uarts, fd = rc_uart
    frames = _crsf_frames(2)
    os.write(fd, frames)
    time.sleep(0.05)
    copter = _Copter()
    uarts.poll(copter, 1000)
    assert len(copter.rc) == 2


def test_a_restart_forgets_announcements_and_drops_waiting_bytes(rc_uart):
    uarts, fd = rc_uart
    os.write(fd, _crsf_frames(1))
    uarts.announce("rc", 999)
    time.sleep(0.05)
    uarts.reset()
    copter = _Copter()
    uarts.poll(copter, 1000)
    assert copter.rc == [] and uarts.shortfall == ""


def test_a_pty_pair_is_what_the_board_reads():
    # The fixture above writes to the path the harness opens; the board reads the master.
    pty = Pty.open()
    try:
        assert pty.path.startswith("/dev/pts/")
    finally:
        pty.close()
