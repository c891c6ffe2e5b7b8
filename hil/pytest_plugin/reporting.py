"""What a run tells: progress lines while a scenario flies, the results table at the end
of the terminal output, and summary.json and report.html in --hil-report's directory
(JUnit XML there is pytest's junitxml, pointed at it by pytest_configure)."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time

import pytest

from hil.errors import HilError
from hil.pytest_plugin.options import STATE
from hil.pytest_plugin.workers import (
    OUTPUT_KEY,
    too_many_workers,
    worker_boards,
    worker_facts,
    worker_id,
)


# -- the results table -------------------------------------------------------------------
def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is None or not state.results:
        return
    tr = terminalreporter
    tr.section("hil scenarios")
    header = f"{'scenario':34} {'board':10} {'result':7} {'sim s':>7} {'wall s':>7} {'loop':>7} {'overall':>8}"
    tr.write_line(header)
    tr.write_line("-" * len(header))
    sim_total = wall_total = loop_wall = 0.0
    realtime = []
    sweep = config.getoption("hil_seeds", None)
    for r in state.results:
        verdict = r.outcome
        # A board that does not follow the simulator's clock runs its loop in real time
        # (Betaflight SITL, a MAVLink board without lockstep): no lockstep speed to show.
        real = not state.lockstep.get(r.board, True)
        loop_col = f"{r.loop_speed:6.1f}x" if not real else "   real"
        name = r.scenario.name if sweep is None else f"{r.scenario.name}[seed={r.scenario.seed}]"
        tr.write_line(
            f"{name[:34]:34} {r.board[:10]:10} {verdict:7} {r.sim_seconds:7.1f} "
            f"{r.wall_seconds:7.2f} {loop_col} {r.speed:7.1f}x"
        )
        if real:
            realtime.append(r)
            continue
        sim_total += r.sim_seconds
        wall_total += r.wall_seconds
        if r.loop_speed > 0:
            loop_wall += r.sim_seconds / r.loop_speed
    for r in realtime:
        tr.write_line(f"{r.scenario.name} on {r.board}, real-time loop timing:")
        for note in r.notes:
            tr.write_line(f"  {note}")
    limited = [(r, m) for r in state.results for m in getattr(r, "limit_timing", []) if m.minimum is not None or m.maximum is not None]
    if limited:
        tr.write_line("timing limits:")
        for r, m in limited:
            tr.write_line(f"  {r.scenario.name}: {m}")
    workers = worker_boards(config)
    if workers and state.started is not None:
        # Several boards at once: the scenarios' wall times overlap; say who flew where
        # and what the run took.
        who = ", ".join(f"{board} ({worker})" for worker, board in sorted(workers.items()))
        tr.write_line(
            f"{len(workers)} boards at once: {who}; {sim_total:.0f} simulated s in "
            f"{time.monotonic() - state.started:.1f} s of the run's wall time"
        )
    if wall_total > 0:
        loop = f"{sim_total / loop_wall:.1f}x in the closed loop, " if loop_wall > 0 else ""
        tr.write_line(
            f"lockstep speed: {loop}{sim_total / wall_total:.1f}x overall "
            f"({sim_total:.0f} simulated s in {wall_total:.1f} wall s, setup and teardown included)"
        )


# -- the session's outcome and its report files ------------------------------------------
def pytest_sessionstart(session: pytest.Session) -> None:
    state = session.config.stash[STATE]
    state.started = time.monotonic()
    try:
        tags = state.board_tags
    except HilError:
        tags = {}  # the session's check says why, once
    warning = too_many_workers(session.config, state.rig_path, state.board_name, tags)
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    if warning and tr is not None:
        tr.write_line(f"hil: {warning}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config.stash.get(STATE, None)
    if state is not None and state.unavailable and exitstatus in (
        pytest.ExitCode.OK,
        pytest.ExitCode.TESTS_FAILED,
    ):
        # No verdict could be reached on some board: that is the run's outcome (3, or 4
        # when the rig asks for something this host lacks), ahead of any failed test.
        session.exitstatus = next(iter(state.unavailable.values())).exit_code
        exitstatus = session.exitstatus
    if state is not None and worker_id(session.config) is not None:
        # An xdist worker: its scenarios went to the controller with their reports, which
        # writes the run's files once, from every worker's (hil.pytest_plugin.workers).
        session.config.workeroutput[OUTPUT_KEY] = worker_facts(state)
        return
    if state is None or state.report_dir is None or not state.results:
        return
    from hil.report.html import write_report
    from hil.report.summary import RunInfo, summary

    state.report_dir.mkdir(parents=True, exist_ok=True)
    run = RunInfo(
        rig=str(state.rig_path),
        started=state.started_unix,
        finished=time.time(),
        exit_status=int(exitstatus),
        boards=state.board_info,
    )
    document = summary(run, state.results, state.report_dir)
    (state.report_dir / "summary.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    write_report(state.report_dir / "report.html", run, state.results)


# -- progress while it runs ----------------------------------------------------------------
class Progress:
    """One line when a scenario starts, one every `every` wall seconds while it runs (with
    the vehicle time reached), one when it ends; on the terminal, past output capture.

    In an xdist worker, whose terminal output nobody sees, the lines go to its standard
    error (the controller's, under xdist) and name the worker: `hil: [gw1] ...`.
    """

    def __init__(self, config: pytest.Config, scenario: str, board: str, every: float = 10.0) -> None:
        self.config = config
        self.scenario = scenario
        self.board = board
        self.every = every
        self.enabled = config.getoption("verbose", 0) > -2
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wall0 = time.monotonic()
        self.worker = worker_id(config)
        #: How later lines name the scenario: with its board too when workers interleave.
        self.who = scenario if self.worker is None else f"{scenario} on {board}"

    def _write(self, text: str) -> None:
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if not self.enabled or (tr is None and self.worker is None):
            return
        capman = self.config.pluginmanager.get_plugin("capturemanager")
        quiet = capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext()
        with quiet:
            if self.worker is not None:
                with contextlib.suppress(OSError, ValueError):
                    sys.stderr.write(f"hil: [{self.worker}] {text}\n")
                    sys.stderr.flush()
                return
            tw = self.config.get_terminal_writer()
            if getattr(tw, "width_of_current_line", 0):
                tr.write("\n")  # after the progress dots of -q
            tr.write_line(f"hil: {text}")

    def start(self, session) -> None:
        self._wall0 = time.monotonic()
        self._write(f"{self.scenario} on {self.board}: started")
        if not self.enabled:
            return
        autopilot = session.autopilot
        t0 = getattr(autopilot, "vehicle_time", None)

        def tick() -> None:
            while not self._stop.wait(self.every):
                wall = time.monotonic() - self._wall0
                t = getattr(autopilot, "vehicle_time", None)
                sim = f"{t - t0:.1f} s vehicle time, " if isinstance(t, float) and t0 is not None else ""
                self._write(f"{self.who}: running, {sim}{wall:.0f} s wall")

        self._thread = threading.Thread(target=tick, name="hil-progress", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None

    def done(self, result) -> None:
        verdict = result.outcome
        self._write(
            f"{self.who}: {verdict}, {result.sim_seconds:.1f} s simulated in "
            f"{result.wall_seconds:.1f} s wall ({result.speed:.1f}x)"
        )
