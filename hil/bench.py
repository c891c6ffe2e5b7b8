"""`hil bench`: what this host sustains, measured (never estimated), with its spread.

Figures (each repeated, shown as min / median / max against its target):

- harness cost per closed-loop step: physics + sensors + HIL_SENSOR encode +
  HIL_ACTUATOR_CONTROLS decode, in process, median and p99 over many steps;
- lockstep speed on the virtual rig at the board's loop rate (simulated seconds per wall
  second) while the vehicle hovers;
- the real-time loop at 1 kHz against a board with its own clock (Betaflight SITL, in its
  own network namespace): send-period jitter p99, missed steps and the motor-packet rate,
  per run (each run starts the SITL afresh);
- flashing throughput over the serial bootloader and over DFU against the link's limit.
  The virtual links model no line rate (a pty has no baud rate, the virtual USB backend no
  bus speed), so the limit is the protocol's own ceiling on this link: the payload of one
  request divided by the round trips the protocol needs for it, each measured as a no-op
  round trip to the same board process just before and just after the flash (plus the
  programming time the DFU device asks for in pollTimeout);
- timing-measurement error against the virtual board's ground truth: the board's loop-time
  model (hil.vfc.looptime) stamps its answers with a seeded loop clock whose rate and
  p99 jitter are known; the loop analysis (hil.timing.loop_stats) of the stamps the
  closed loop received is compared with them, per run a different model;
- the default scenario suite's wall time (opt-in: it takes minutes);
- the same suite on one board and on several at once (`hil run -n`), its speed-up, and
  a model of several boards on as many hosts (opt-in, `--boards [N]`);
- memory growth of the harness over a long real-time run (opt-in, `--soak MINUTES`);
- ArduPilot SITL with the harness as its physics (lockstep) against the same executable's
  built-in quad model at a range of --speedup, and their ratio (opt-in, `--ardupilot
  [PATH]`; hil.bench_ardupilot).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hil.errors import CommandRefused, HilError

Log = Callable[[str], None]


def _stderr(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Figure:
    """One measured figure: its runs and how they compare with the target.

    No runs means not measured here; `detail` says why.
    """

    name: str
    unit: str
    runs: tuple[float, ...]
    target: str
    passed: bool | None
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def median(self) -> float:
        return float(np.median(self.runs)) if self.runs else float("nan")

    @property
    def measured(self) -> bool:
        return bool(self.runs)


def _not_measured(name: str, unit: str, target: str, why: str) -> Figure:
    return Figure(name, unit, (), target, None, f"not measured: {why}")


# -- CPU and wall time of a stretch of work -----------------------------------------------


def process_cpu_ns(pid: int | None) -> int:
    """CPU time (ns) of every thread of process `pid` so far; 0 when it cannot be read."""
    if pid is None:
        return 0
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{pid}/task/{tid}/schedstat") as handle:
                    total += int(handle.read().split()[0])
    except OSError:
        return 0
    return total


@dataclass
class _Span:
    """Wall, host-thread CPU and board CPU over some number of requests."""

    wall_s: float = 0.0
    host_cpu_s: float = 0.0
    board_cpu_s: float = 0.0
    requests: int = 0

    def per_request_us(self) -> tuple[float, float, float]:
        n = max(1, self.requests)
        return 1e6 * self.wall_s / n, 1e6 * self.host_cpu_s / n, 1e6 * self.board_cpu_s / n


class _Meter:
    """Start/stop marks of wall clock, this thread's CPU and process `pid`'s CPU (all its
    threads; the span's `board_cpu_s`)."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self._marks: tuple[float, int, int] | None = None

    def start(self) -> None:
        self._marks = (time.perf_counter(), time.thread_time_ns(), process_cpu_ns(self.pid))

    def stop(self, requests: int) -> _Span:
        assert self._marks is not None
        wall, host, board = self._marks
        return _Span(
            time.perf_counter() - wall,
            (time.thread_time_ns() - host) / 1e9,
            (process_cpu_ns(self.pid) - board) / 1e9,
            requests,
        )


# -- harness cost and lockstep speed ------------------------------------------------------


def step_cost(steps: int = 20_000, repeats: int = 3) -> tuple[Figure, Figure]:
    """Harness work per lockstep step, without the board: median and p99 in microseconds."""
    from hil import geo
    from hil.mavlink.dialect import new_codec
    from hil.mavlink.framing import HIL_ACTUATOR_CONTROLS, HIL_SENSOR, FrameReader
    from hil.sim.sensors import Baro, Battery, Imu, Mag, Wind
    from hil.sim.vehicle import Quadrotor

    answer = HIL_ACTUATOR_CONTROLS.pack(0, 1, 1, 0, 1, 0.5, 0.5, 0.5, 0.5, *([0.0] * 12), 128)
    medians, p99s = [], []
    for r in range(repeats):
        rng = np.random.default_rng(r)
        vehicle, imu, baro, mag = Quadrotor(), Imu(rng), Baro(rng), Mag(rng)
        battery, wind = Battery(), Wind(rng, speed=3.0, gust_std=0.5)
        reader = FrameReader(new_codec(255, 190), hot=(HIL_ACTUATOR_CONTROLS,))
        vehicle.reset(down=-10.0)
        costs = np.empty(steps, dtype=np.int64)
        motors = (0.5, 0.5, 0.5, 0.5)
        t_us = 0
        clock = time.perf_counter_ns
        for i in range(steps):
            t0 = clock()
            ax, ay, az, gx, gy, gz = imu.sample(vehicle)
            mx, my, mz = mag.sample(vehicle.quat)
            alt = geo.HOME.alt_m - vehicle.pos[2]
            pressure, temperature = baro.sample(alt)
            HIL_SENSOR.pack(
                i,
                255,
                25,
                t_us,
                ax,
                ay,
                az,
                gx,
                gy,
                gz,
                mx,
                my,
                mz,
                pressure,
                0.0,
                alt,
                temperature,
                0x1FFF,
                0,
            )
            msg = reader.feed(answer, 0.0)[0]
            c = msg.controls
            motors = (c[0], c[1], c[2], c[3])
            vehicle.step(0.0025, motors, wind.step(0.0025))
            baro.step(0.0025)
            battery.step(0.0025, vehicle.current_a())
            t_us += 2500
            costs[i] = clock() - t0
        medians.append(float(np.median(costs)) / 1000.0)
        p99s.append(float(np.percentile(costs, 99)) / 1000.0)
    median = Figure(
        "harness cost per step, median",
        "us",
        tuple(medians),
        "<= 30 us",
        float(np.median(medians)) <= 30.0,
        f"{steps} steps per run, in process",
    )
    p99 = Figure("harness cost per step, p99", "us", tuple(p99s), "(shown)", None)
    return median, p99


@contextlib.contextmanager
def _hovering_rig(
    rig_path: Path | str | None = None,
) -> Iterator[tuple[Callable[[float], None], float, int | None]]:
    """The virtual rig's first board, armed and hovering at 10 m: yields (run, rate_hz,
    the board's process id or None).

    `run(seconds)` advances the lockstep loop by that many simulated seconds with the
    background reader stopped (as a scenario's closed loop runs).
    """
    from hil.rig import DEFAULT_RIG, Rig
    from hil.session import BoardSession

    rig = Rig.load(rig_path or DEFAULT_RIG)
    try:
        board = rig.select(None)
        with BoardSession(board) as session:
            ap = session.autopilot
            sim = session.make_sim()

            def run(secs: float) -> None:
                sim.link.open()
                try:
                    sim.run_for(secs)
                finally:
                    sim.link.close()

            run(3.0)
            _until(lambda: (ap.set_mode("GUIDED"), ap.arm()), lambda: run(1.0), "arm in GUIDED")
            ap.takeoff(10.0)
            run(10.0)
            process = getattr(board, "process", None)
            yield run, float(sim.config.rate_hz), getattr(process, "pid", None)
    finally:  # stopping the rig ends the flight: nothing to land
        rig.stop()


def lockstep_speed(seconds: float = 20.0, repeats: int = 3, rig_path=None) -> Figure:
    """Simulated seconds per wall second on the virtual rig, hovering at 10 m."""
    speeds = []
    spans: list[_Span] = []
    with _hovering_rig(rig_path) as (run, rate, pid):
        harness = _Meter(os.getpid())
        board = _Meter(pid)
        for _ in range(repeats):
            harness.start()
            board.start()
            start = time.perf_counter()
            run(seconds)
            speeds.append(seconds / (time.perf_counter() - start))
            steps = int(round(seconds * rate))
            mine, theirs = harness.stop(steps), board.stop(steps)
            spans.append(_Span(mine.wall_s, mine.board_cpu_s, theirs.board_cpu_s, steps))
    wall, harness_us, board_us = np.median([s.per_request_us() for s in spans], axis=0)
    return Figure(
        f"lockstep speed at {rate:.0f} Hz (virtual rig)",
        "x real time",
        tuple(speeds),
        ">= 25x",
        float(np.median(speeds)) >= 25.0,
        f"{seconds:g} simulated s per run, hovering, board process and pty included; per "
        f"step: {wall:.0f} us wall, harness process CPU {harness_us:.0f} us, board process "
        f"CPU {board_us:.0f} us (the two take turns: wall above their sum is waiting for a "
        f"CPU); load average {os.getloadavg()[0]:.1f} on {_cores()} cores",
        {
            "us_per_step": [list(s.per_request_us()) for s in spans],
            "per_step_fields": ["wall", "harness_cpu", "board_cpu"],
        },
    )


# (rate Hz, jitter us, overrun probability, seed): one loop-time model per run.
ERROR_MODELS = (  # no overrun share at exactly 1 %: the p99 would sit on its edge
    (1000.0, 200.0, 0.004, 7),
    (400.0, 300.0, 0.002, 11),
    (1000.0, 100.0, 0.005, 23),
    (2000.0, 150.0, 0.0, 5),
    (400.0, 500.0, 0.02, 3),
)


def timing_error(periods: int = 4000, runs: int = 3, rig_path=None, log: Log = _stderr) -> Figure:
    """Error of the loop analysis against the virtual board's modelled loop clock, in %.

    Per run the board gets another loop-time model (SCHED_LOOP_RATE, SIM_LOOP_JIT,
    SIM_LOOP_OVR, SIM_LOOP_SEED); a lockstep closed loop at that rate collects `periods`
    loop stamps from it, exactly as a scenario run does, and `loop_stats` measures rate
    and p99 jitter from them. The figure per run is the larger of the two relative errors
    against the model's expected rate and p99 jitter.
    """
    from hil.boards.virtual import loop_time_truth
    from hil.rig import DEFAULT_RIG, Rig
    from hil.session import BoardSession
    from hil.sim.loop import SimConfig, mavlink_loop
    from hil.timing import loop_stats

    errors: list[float] = []
    rows: list[dict[str, float]] = []
    models = [ERROR_MODELS[i % len(ERROR_MODELS)] for i in range(runs)]
    for i, (rate, jitter, overrun, seed) in enumerate(models, 1):
        # A fresh board per run: its loop clock starts at the first sample of the run.
        rig = Rig.load(rig_path or DEFAULT_RIG)
        try:
            with BoardSession(rig.select(None)) as session:
                ap = session.autopilot
                log(f"timing-measurement run {i} of {runs}: {rate:g} Hz, +-{jitter:g} us, overruns {overrun:g}")
                for name, value in (
                    ("SCHED_LOOP_RATE", rate),
                    ("SIM_LOOP_SEED", seed),
                    ("SIM_LOOP_JIT", jitter),
                    ("SIM_LOOP_OVR", overrun),
                ):
                    ap.set_param(name, value)
                loop = mavlink_loop(ap, SimConfig(rate_hz=rate, lockstep=True, seed=seed))
                stamps = loop.link.answer_log.board_us  # grows as the loop takes answers
                wanted = periods + 3
                loop.link.open()
                try:
                    limit = time.monotonic() + 30.0 + periods / rate * 5
                    while len(stamps) < wanted:
                        if time.monotonic() > limit:
                            raise HilError(
                                f"the virtual board gave {len(stamps)} of {wanted} loop stamps "
                                f"within {30.0 + periods / rate * 5:.0f} s"
                            )
                        loop.run_for(min(1.0, (wanted - len(stamps)) / rate + 0.01))
                finally:
                    loop.link.close()
                # The first answers after the reconfiguration carry the old clock on: skip them.
                received = np.asarray(stamps[3:wanted], dtype=np.int64)
                stats = loop_stats(received, nominal_hz=rate)
                truth_rate, truth_p99 = loop_time_truth(rate, jitter, overrun, seed)
                rate_err = abs(stats.rate.value - truth_rate) / truth_rate * 100
                p99_err = abs(stats.jitter_p99.value - truth_p99) / truth_p99 * 100
                errors.append(max(rate_err, p99_err))
                rows.append(
                    {
                        "rate_hz": rate, "jitter_us": jitter, "overrun": overrun, "seed": seed,
                        "measured_rate_hz": stats.rate.value, "truth_rate_hz": truth_rate,
                        "measured_p99_us": stats.jitter_p99.value, "truth_p99_us": truth_p99,
                        "rate_error_pct": rate_err, "p99_error_pct": p99_err,
                    }
                )
                for name in ("SIM_LOOP_JIT", "SIM_LOOP_OVR"):
                    ap.set_param(name, 0)
        finally:
            rig.stop()
    detail = "; ".join(
        f"{r['rate_hz']:g} Hz +-{r['jitter_us']:g} us: rate {r['rate_error_pct']:.2f} %, "
        f"p99 {r['measured_p99_us']:.1f} vs {r['truth_p99_us']:.1f} us ({r['p99_error_pct']:.2f} %)"
        for r in rows
    )
    return Figure(
        "timing-measurement error vs ground truth",
        "%",
        tuple(errors),
        "<= 1 % (rate, p99)",
        max(errors) <= 1.0,
        f"{periods} loop stamps per run from the virtual board's loop-time model, received "
        f"through a lockstep closed loop; per run the larger of the rate and p99-jitter "
        f"errors: {detail}",
        {"runs": rows},
    )


def _until(
    action: Callable[[], object], wait: Callable[[], None], what: str, tries: int = 60
) -> None:
    for _ in range(tries):
        try:
            action()
            return
        except CommandRefused:
            wait()
    raise HilError(f"bench: could not {what} after {tries} tries")


# -- the real-time loop against Betaflight SITL --------------------------------------------

_LOOP_THREAD = "closed-loop"
_RT_TARGET_JITTER_US = 100.0


def _sitl_missing() -> str | None:
    """Why Betaflight SITL cannot run here, or None when it can."""
    try:
        from hil.sitl.betaflight import SitlNotInstalled, find_executable
    except ImportError as exc:  # pragma: no cover - part of the package
        return str(exc)
    try:
        find_executable()
    except SitlNotInstalled as exc:
        return str(exc)
    return None


def _thread_sched(name: str, pid: int | None = None) -> tuple[int, int] | None:
    """(ns waited on the run queue, involuntary switches) of this process's thread `name`,
    or with `pid`, of that process's SCHED_FIFO thread (the loop process's loop thread)."""
    base = None
    if pid is None:
        for thread in threading.enumerate():
            if thread.name == name and thread.native_id is not None:
                base = f"/proc/self/task/{thread.native_id}"
    else:
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/stat") as handle:
                    text = handle.read()
                fields = text[text.rfind(")") + 2 :].split()
                if len(fields) > 38 and int(fields[38]) == 1:
                    base = f"/proc/{pid}/task/{tid}"
    if base is None:
        return None
    try:
        with open(f"{base}/schedstat") as handle:
            wait_ns = int(handle.read().split()[1])
        with open(f"{base}/status") as handle:
            forced = next(
                int(line.split()[1]) for line in handle if line.startswith("nonvoluntary_ctxt_switches")
            )
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return wait_ns, forced


@contextlib.contextmanager
def _harness_load(on: bool):
    """A thread of the harness that holds the GIL 2 ms in every 10 (pure Python work, as a
    status poller decoding its answers does), while the real-time loop is measured."""
    if not on:
        yield
        return
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            end = time.perf_counter() + 0.002
            while time.perf_counter() < end:
                sum(i * i for i in range(100))
            stop.wait(0.008)

    thread = threading.Thread(target=work, name="bench-harness-load", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(2.0)


def host_steal_ms() -> float | None:
    """CPU time the hypervisor took from this machine's vCPUs since boot, ms, summed over
    CPUs (/proc/stat "steal"); None where the kernel does not count it. A VM whose vCPUs
    the host stops runs no thread at all meanwhile: a real-time step missed then is the
    host's, and no harness can make it up."""
    try:
        with open("/proc/stat") as handle:
            fields = handle.readline().split()
        return int(fields[8]) * 1000.0 / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class _RealtimeRig:
    """Betaflight SITL in a scratch directory and the 1 kHz loop against it.

    The SITL answers every state packet with a motor packet, even disarmed. A boot that
    answers fewer than half of them at the end of the warm-up (one motor packet, then
    none, about one start in ten here: the firmware derives its clock rate from the
    first state packets) is started again, up to `attempts` times.
    """

    def __init__(
        self, rate_hz: float, warmup_s: float = 1.5, attempts: int = 3, log: Log = _stderr,
        process: bool = False,
    ) -> None:
        self.rate_hz = rate_hz
        self.process = process
        self.warmup_s = warmup_s
        self.attempts = attempts
        self.log = log
        self.restarts = 0
        self.sitl: Any = None
        self.loop: Any = None
        self.started = 0.0  # time.monotonic() when the loop started
        self._dir: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> _RealtimeRig:
        from hil.sitl.betaflight import BetaflightSitl

        self._dir = tempfile.TemporaryDirectory(prefix="hil-bench-sitl-")
        try:
            self.sitl = BetaflightSitl(self._dir.name)
            self.sitl.start()
            for attempt in range(1, self.attempts + 1):
                self._start_loop()
                time.sleep(self.warmup_s)
                if self.loop.error is not None:
                    raise HilError(f"bench: the real-time loop stopped: {self.loop.error}")
                recent = self.loop.timing(since_s=max(0.0, self.warmup_s - 0.5))
                if recent.motor_rate_hz >= 0.5 * self.rate_hz:
                    break
                if attempt == self.attempts:
                    raise HilError(
                        f"bench: Betaflight SITL answered too few state packets after "
                        f"{self.attempts} starts; see {self.sitl.log_path}"
                    )
                self.log(
                    f"Betaflight SITL answers {recent.motor_rate_hz:.0f} of {self.rate_hz:.0f} "
                    "state packets per second: starting it again"
                )
                self.loop.close()
                self.loop = None
                self.sitl.restart()
                self.restarts += 1
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start_loop(self) -> None:
        from hil.sim.betaflight_loop import BetaflightLoopConfig, betaflight_loop

        self.loop = betaflight_loop(
            self.sitl.fc_ip, self.sitl.host_ip, None,
            BetaflightLoopConfig(rate_hz=self.rate_hz, process=self.process),
        )
        self.started = time.monotonic()
        self.loop.start()

    @property
    def elapsed(self) -> float:
        """Seconds since the loop started."""
        return time.monotonic() - self.started

    def __exit__(self, *exc: object) -> None:
        if self.loop is not None:
            with contextlib.suppress(HilError):
                self.loop.close()
            self.loop = None
        if self.sitl is not None:
            self.sitl.stop()
            self.sitl = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


def realtime_neighbours(exclude: set[int] | None = None) -> dict[str, int]:
    """Real-time (SCHED_FIFO/RR) user threads on this host outside `exclude` (process ids):
    "name/priority" -> count. Kernel threads are left out."""
    exclude = exclude or set()
    found: dict[str, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in exclude:
            continue
        try:
            tids = os.listdir(f"/proc/{entry}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{entry}/task/{tid}/stat") as handle:
                    text = handle.read()
            except OSError:
                continue
            comm = text[text.find("(") + 1 : text.rfind(")")]
            fields = text[text.rfind(")") + 2 :].split()
            if len(fields) < 39 or fields[1] in ("0", "2") or int(fields[38]) not in (1, 2):
                continue  # kernel thread, or not FIFO/RR
            key = f"{comm}/{fields[37]}"
            found[key] = found.get(key, 0) + 1
    return found


def realtime_loop(
    seconds: float = 10.0, runs: int = 3, rate_hz: float = 1000.0, log: Log = _stderr,
    process: bool = False, harness_load: bool = False,
) -> list[Figure]:
    """Send-period jitter p99, missed steps and motor-packet rate of `runs` separate runs.

    ``process``: the loop in a process of its own (`hil.sim.rt_child`) instead of a thread
    of this one; ``harness_load``: a thread here holds the GIL 2 ms in every 10 meanwhile.

    Each run starts Betaflight SITL in a scratch directory, runs the loop through a
    warm-up, then measures `seconds`. The loop's statistics are taken once, after the
    run: computing them holds the GIL for milliseconds, which would make the loop late.
    """
    hz = f"{rate_hz:.0f} Hz"
    if process:
        hz += ", own process"
    if harness_load:
        hz += ", harness loaded"
    names = (
        (f"real-time {hz} (BF SITL): jitter p99", "us", f"<= {_RT_TARGET_JITTER_US:.0f} us"),
        (f"real-time {hz} (BF SITL): missed steps", f"per {seconds:g} s", "0 in 60 s"),
        (f"real-time {hz} (BF SITL): motor packets", "per s", "(shown)"),
    )
    missing = _sitl_missing()
    if missing is not None:
        return [_not_measured(n, u, t, missing) for n, u, t in names]
    jitter: list[float] = []
    missed: list[float] = []
    motor_rate: list[float] = []
    period_p99: list[float] = []
    period_max: list[float] = []
    run_wait_ms: list[float] = []
    forced: list[int] = []
    loads: list[float] = []
    neighbours: dict[str, int] = {}
    restarts = 0
    scheduler = isolated = ""
    warmup = 0.0
    stolen_ms: list[float] = []
    for i in range(runs):
        log(f"real-time run {i + 1} of {runs}")
        with _RealtimeRig(rate_hz, log=log, process=process) as rig, _harness_load(harness_load):
            loop = rig.loop
            loop_pid = getattr(loop, "pid", None)
            origin = rig.elapsed + 0.05
            warmup = origin
            before = _thread_sched(_LOOP_THREAD, loop_pid)
            steal_before = host_steal_ms()
            time.sleep(seconds + 0.05)
            after = _thread_sched(_LOOP_THREAD, loop_pid)
            steal_after = host_steal_ms()
            if steal_before is not None and steal_after is not None:
                stolen_ms.append(steal_after - steal_before)
            loads.append(os.getloadavg()[0])
            for key, count in realtime_neighbours({os.getpid(), rig.sitl.proc.pid, loop_pid or 0}).items():
                neighbours[key] = max(neighbours.get(key, 0), count)
            loop.stop()
            if loop.error is not None:
                raise HilError(f"bench: the real-time loop stopped: {loop.error}")
            t = loop.timing(since_s=origin)
            scheduler = f"loop {t.scheduler}, SITL {rig.sitl.scheduler}"
            isolated = "its own network namespace" if rig.sitl.isolated else "loopback"
            restarts += rig.restarts
        jitter.append(t.send_jitter_p99_us)
        missed.append(float(t.missed))
        motor_rate.append(t.motor_rate_hz)
        period_p99.append(t.send_period_p99_us)
        period_max.append(t.send_period_max_us)
        if before is not None and after is not None:
            run_wait_ms.append((after[0] - before[0]) / 1e6)
            forced.append(after[1] - before[1])
    common = (
        f"{runs} runs of {seconds:g} s, each after a {warmup:.1f} s warm-up; {scheduler}; SITL in "
        f"{isolated}; load average {min(loads):.1f}-{max(loads):.1f} on {_cores()} cores"
    )
    if restarts:
        common += f"; {restarts} SITL restart(s): it stopped answering after starting"
    if run_wait_ms:
        common += (
            "; the loop thread was runnable but not running "
            + ", ".join(f"{w:.0f}" for w in run_wait_ms)
            + " ms per run, preempted "
            + ", ".join(str(n) for n in forced)
            + " times"
        )
    if neighbours:
        listed = ", ".join(f"{k} x{v}" for k, v in sorted(neighbours.items()))
        common += f"; other real-time threads on the host (name/priority): {listed}"
    if stolen_ms:
        common += (
            "; steal time the kernel counted (vCPU time the hypervisor took) "
            + ", ".join(f"{ms:.0f}" for ms in stolen_ms)
            + " ms per run (a host that pauses the VM may not count it: see docs/architecture.md)"
        )
    extra = {
        "rate_hz": rate_hz,
        "run_s": seconds,
        "send_period_p99_us": period_p99,
        "send_period_max_us": period_max,
        "run_queue_wait_ms": run_wait_ms,
        "involuntary_switches": forced,
        "load_average": loads,
        "scheduler": scheduler,
        "sitl_restarts": restarts,
        "realtime_neighbours": neighbours,
        "host_steal_ms": stolen_ms,
    }
    total = seconds * runs
    missed_note = (
        f"a step is missed when a send period exceeds 1.5 periods; {total:g} s measured"
        + ("" if total >= 60 else " (the target is over 60 s: --realtime-seconds 60)")
        + "; longest period per run "
        + ", ".join(f"{m / 1000:.1f}" for m in period_max)
        + " ms"
    )
    return [
        Figure(
            names[0][0],
            "us",
            tuple(jitter),
            names[0][2],
            float(np.median(jitter)) <= _RT_TARGET_JITTER_US,
            common,
            extra,
        ),
        Figure(
            names[1][0],
            names[1][1],
            tuple(missed),
            names[1][2],
            all(m == 0 for m in missed),
            missed_note,
        ),
        Figure(
            names[2][0],
            "per s",
            tuple(motor_rate),
            "(shown)",
            None,
            f"at most one motor packet per state packet ({rate_hz:.0f}/s), disarmed",
        ),
    ]


def realtime_compare(
    seconds: float = 10.0, runs: int = 3, rate_hz: float = 1000.0, log: Log = _stderr,
    harness_load: bool = False,
) -> list[Figure]:
    """The real-time loop in a thread of this process and in a process of its own,
    measured in alternating runs (thread, process, process, thread, ...) on the same
    host, so that the host's load changes fall on both alike."""
    from dataclasses import replace

    merged: dict[bool, list[Figure]] = {}
    for i in range(runs):
        order = (False, True) if i % 2 == 0 else (True, False)
        for process in order:
            log(f"pair {i + 1} of {runs}: loop in {'its own process' if process else 'a thread'}")
            figs = realtime_loop(seconds, 1, rate_hz, log, process=process, harness_load=harness_load)
            if process not in merged:
                merged[process] = figs
                continue
            merged[process] = [
                replace(
                    old,
                    runs=old.runs + new.runs,
                    detail=old.detail + " | " + new.detail,
                    extra={k: (v if not isinstance(v, list) else v + new.extra.get(k, []))
                           for k, v in old.extra.items()},
                )
                for old, new in zip(merged[process], figs, strict=True)
            ]
    out: list[Figure] = []
    for process in (False, True):
        jitter, missed, motor = merged[process]
        out += [
            replace(jitter, passed=bool(jitter.runs) and float(np.median(jitter.runs)) <= _RT_TARGET_JITTER_US
                    if jitter.runs else None),
            replace(missed, passed=all(m == 0 for m in missed.runs) if missed.runs else None),
            motor,
        ]
    return out


# -- flashing throughput --------------------------------------------------------------------

_FLASH_SERIAL = "HILBENCHFL"
_FLASH_TARGET = 90.0
_NOOP_MAX_ROUNDS = 3000


def _bench_image(size: int, version: str = "9.9.9") -> Any:
    """A bootable virtual application of `size` bytes: header and config, then filler."""
    from hil.firmware.app_image import build_app
    from hil.firmware.image import FirmwareImage, Segment
    from hil.firmware.layout import APP_BASE
    from hil.mavlink.dialect import VFC_BOARD_ID

    head = build_app(board_id=VFC_BOARD_ID, name="HILBench", version=version, loop_rate=400)
    rng = np.random.default_rng(7)
    filler = rng.integers(0, 256, max(0, size - len(head)), dtype=np.uint8).tobytes()
    return FirmwareImage(
        "hil-bench.bin",
        "bin",
        (Segment(APP_BASE, head + filler),),
        board_id=VFC_BOARD_ID,
        version=version,
    )


def _board(work: Path, *, boot0: bool) -> Any:
    """A virtual board process: with an erased flash it waits in its serial bootloader."""
    from hil.boards.virtual import bare_process

    return bare_process(work, _FLASH_SERIAL, boot0=boot0)


def _serial_noop(work: Path, rounds: int) -> _Span:
    """PROG_MULTI round trips the bootloader refuses: the link's round trip, no flash work.

    The board has no application and no host has synced, so the bootloader reads the
    same 255 bytes a real PROG_MULTI carries, parses them and answers INVALID.
    """
    from hil.firmware import bootloader_codec as bl
    from hil.flash.serial_flasher import BootloaderLink
    from hil.links.ports import find_port

    (work / "flash.bin").unlink(missing_ok=True)  # erased: the board stays in its bootloader
    board = _board(work, boot0=False)
    board.start()
    try:
        port = find_port(_FLASH_SERIAL, work / "registry", timeout=10.0, state="bootloader")
        request = bl.encode_prog_multi(bytes(bl.PROG_MULTI_MAX))
        meter = _Meter(board.pid)
        with BootloaderLink(port.device) as link:
            link.drain()
            for _ in range(10):  # warm the path
                link.request("no-op PROG_MULTI", request)
            meter.start()
            for _ in range(rounds):
                reply = link.request("no-op PROG_MULTI", request)
            span = meter.stop(rounds)
        if reply.status != bl.Status.INVALID:
            raise HilError(
                f"bench: the bootloader took a PROG_MULTI before sync ({reply.status.name})"
            )
    finally:
        board.stop()
    return span


def _dfu_noop(work: Path, rounds: int, poll_s: float) -> tuple[_Span, Any]:
    """(no-op block cycles, the board process, left in DFU).

    A cycle has the shape of a block's: two GETSTATUS back to back (where a block has
    DNLOAD and GETSTATUS), the pollTimeout pause, one GETSTATUS after it. The pause
    matters: a board process that went idle answers the first request after it more
    slowly, and every block of a DFU download has that pause.
    """
    import usb.util

    from hil.boards.virtual_usb import VirtualBackend
    from hil.firmware.dfuse_codec import REQUEST_TYPE_IN, DfuRequest
    from hil.flash.dfu_flasher import DfuFlasher
    from hil.flash.wait import DeadlineWaiter

    board = _board(work, boot0=True)
    board.start()
    try:
        registry = work / "registry"
        finder = DfuFlasher(_FLASH_SERIAL, registry_dir=registry, backend=VirtualBackend(registry))
        dev = finder.find_device(10.0)
        if dev is None:
            raise HilError("bench: the virtual board did not come up as a DFU device")
        waiter = DeadlineWaiter()

        def cycle() -> None:
            dev.ctrl_transfer(REQUEST_TYPE_IN, DfuRequest.GETSTATUS, 0, 0, 6, 5000)
            dev.ctrl_transfer(REQUEST_TYPE_IN, DfuRequest.GETSTATUS, 0, 0, 6, 5000)
            waiter.wait_until(time.monotonic() + poll_s)
            dev.ctrl_transfer(REQUEST_TYPE_IN, DfuRequest.GETSTATUS, 0, 0, 6, 5000)

        meter = _Meter(board.pid)
        try:
            for _ in range(5):
                cycle()
            meter.start()
            for _ in range(rounds):
                cycle()
            span = meter.stop(rounds)
        finally:
            usb.util.dispose_resources(dev)
    except BaseException:
        board.stop()
        raise
    return span, board


def flash_throughput(method: str, runs: int = 3, size_kib: int = 512, log: Log = _stderr) -> Figure:
    """Write-phase throughput of SerialFlasher or DfuFlasher against the virtual board, as a
    percentage of the protocol's ceiling on this link (see the module docstring).

    The no-op round trip is measured before and after each flash, as many times as the
    write phase makes requests (load on a shared host moves it); the ceiling uses the
    mean. Wall, host-thread CPU and board-process CPU per request, for the no-ops and for
    the write phase, show where a gap comes from.
    """
    from hil.boards.virtual import DFU_BLOCK_PROGRAM_S, DFU_TRANSFER_SIZE
    from hil.boards.virtual_usb import VirtualBackend
    from hil.flash.dfu_flasher import DfuFlasher
    from hil.flash.serial_flasher import SerialFlasher
    from hil.mavlink.dialect import VFC_BOARD_ID

    if method not in ("serial", "dfu"):
        raise HilError(f"bench: flashing method {method!r} is not serial or dfu")
    size = size_kib * 1024
    image = _bench_image(size)
    poll_s = DFU_BLOCK_PROGRAM_S  # what the board process's DFU device asks for
    # Requests per write: one PROG_MULTI per 252 bytes; per DFU block DNLOAD + 2 GETSTATUS
    # (the address pointer is set once per contiguous region, DfuSe block numbers place
    # the blocks after it).
    chunk = 252 if method == "serial" else DFU_TRANSFER_SIZE
    chunks = -(-size // chunk)
    # As many no-ops as the write makes (DFU: block-shaped cycles): both span a similar
    # time, so load from other processes weighs on the limit as it weighs on the flash.
    units = chunks  # what the notes are per: a PROG_MULTI, a DFU block
    rounds = min(_NOOP_MAX_ROUNDS, units)
    ratios: list[float] = []
    throughputs: list[float] = []
    ceilings: list[float] = []
    noops: list[_Span] = []
    writes: list[_Span] = []
    with tempfile.TemporaryDirectory(prefix="hil-bench-flash-") as tmp:
        work = Path(tmp)
        registry = work / "registry"

        def noop() -> tuple[_Span, Any]:
            if method == "serial":
                return _serial_noop(work, rounds), None
            return _dfu_noop(work, rounds, poll_s)

        before, board = noop()
        try:
            for _ in range(runs):
                if method == "serial":
                    board = _board(work, boot0=False)  # erased by _serial_noop: in its bootloader
                    board.start()
                meter = _Meter(board.pid)
                write: list[_Span] = []

                def progress(done: int, total: int, phase: str, meter=meter, write=write) -> None:
                    if phase != "write":
                        return
                    if done == 0:
                        meter.start()
                    elif done >= total and not write:
                        write.append(meter.stop(units))

                if method == "serial":
                    flasher: Any = SerialFlasher(
                        _FLASH_SERIAL, registry_dir=registry, progress=progress
                    )
                else:
                    flasher = DfuFlasher(
                        _FLASH_SERIAL,
                        registry_dir=registry,
                        backend=VirtualBackend(registry),
                        board_id=VFC_BOARD_ID,
                        confirm_version=False,
                        progress=progress,
                    )
                try:
                    result = flasher.flash(image, force=True)
                finally:
                    board.stop()
                    board = None
                after, board = noop()
                # Serial: one PROG_MULTI round trip per 252 bytes. DFU: one block-shaped
                # cycle (3 round trips and the pollTimeout pause) per block.
                per_noop = (before.wall_s / before.requests + after.wall_s / after.requests) / 2.0
                ceiling = chunk / per_noop
                throughputs.append(result.throughput_bps)
                ceilings.append(ceiling)
                ratios.append(100.0 * result.throughput_bps / ceiling)
                noops.append(before)
                writes.extend(write)
                before = after
            noops.append(before)
        finally:
            if board is not None:
                board.stop()
    noop_us = np.median([s.per_request_us() for s in noops], axis=0)
    write_us = np.median([s.per_request_us() for s in writes], axis=0) if writes else None
    if method == "serial":
        name = "flash via serial bootloader, % of limit"
        how = (
            "limit = 252 B per PROG_MULTI round trip; no-op = a PROG_MULTI the bootloader "
            "refuses (same 255 bytes, no flash work); a pty has no baud rate"
        )
        unit_name = "PROG_MULTI"
    else:
        name = "flash via DFU, % of limit"
        how = (
            f"limit = {DFU_TRANSFER_SIZE} B per block-shaped no-op cycle in dfuIDLE: 2 GETSTATUS "
            f"back to back, the {poll_s * 1e3:.0f} ms pollTimeout the device asks, 1 GETSTATUS "
            "(a block is DNLOAD, GETSTATUS, the wait, GETSTATUS); the flasher sets the address "
            "once per contiguous region, DfuSe block numbers place the blocks after it; the "
            "virtual USB backend models no bus speed"
        )
        unit_name = "block (3 control transfers and the wait)"
    detail = (
        f"{size_kib} KiB image, write phase: median {np.median(throughputs) / 1e3:.0f} kB/s "
        f"of {np.median(ceilings) / 1e3:.0f} kB/s; {how}. Per {unit_name}, wall / host CPU / "
        f"board CPU: no-op {noop_us[0]:.0f} / {noop_us[1]:.0f} / {noop_us[2]:.0f} us"
    )
    if write_us is not None:
        detail += f", writing {write_us[0]:.0f} / {write_us[1]:.0f} / {write_us[2]:.0f} us"
    extra = {
        "throughput_bps": throughputs,
        "limit_bps": ceilings,
        "image_bytes": size,
        "noop_us_per_request": [list(s.per_request_us()) for s in noops],
        "write_us_per_request": [list(s.per_request_us()) for s in writes],
        "per_request_fields": ["wall", "host_cpu", "board_cpu"],
    }
    passed = float(np.median(ratios)) >= _FLASH_TARGET
    return Figure(name, "%", tuple(ratios), f">= {_FLASH_TARGET:.0f} %", passed, detail, extra)


# -- the scenario suite -------------------------------------------------------------------------


def default_scenarios() -> Path:
    """The project's scenarios/ (next to the package), else ./scenarios."""
    beside = Path(__file__).resolve().parent.parent / "scenarios"
    return beside if beside.is_dir() else Path("scenarios").resolve()


_PYTEST_SUMMARY = re.compile(r"\b(passed|failed|errors?|skipped|no tests ran)\b.* in [0-9.]+s")


def suite_wall_time(
    runs: int = 1, scenarios: Path | str | None = None, log: Log = _stderr
) -> Figure:
    """Wall seconds of `hil run` over the scenario suite (fresh state and report each run)."""
    target = "<= 60 s on 2 cores"
    name = "scenario suite wall time"
    path = Path(scenarios) if scenarios is not None else default_scenarios()
    # Named one by one: pytest collects a .toml only under <rootdir>/scenarios or by name.
    files = sorted(path.rglob("*.toml")) if path.is_dir() else [path] if path.exists() else []
    if not files:
        return _not_measured(name, "s", target, f"no scenarios at {path}")
    walls: list[float] = []
    codes: list[int] = []
    summary = speed = failure = ""
    for i in range(runs):
        with tempfile.TemporaryDirectory(prefix="hil-bench-suite-") as tmp:
            argv = [
                sys.executable,
                "-m",
                "hil.cli",
                "run",
                *map(str, files),
                "--report",
                f"{tmp}/report",
                "--state-dir",
                f"{tmp}/state",
            ]
            log(f"scenario suite, run {i + 1} of {runs}: {path}")
            start = time.perf_counter()
            proc = subprocess.run(argv, cwd=tmp, capture_output=True, text=True, timeout=3600)
            walls.append(time.perf_counter() - start)
            codes.append(proc.returncode)
            lines = proc.stdout.splitlines()
            summary = next((ln for ln in reversed(lines) if _PYTEST_SUMMARY.search(ln)), summary)
            speed = next((ln for ln in lines if ln.startswith("lockstep speed:")), "")
            if proc.returncode:
                errors = [
                    ln for ln in lines if ln.startswith(("ERROR", "FAILED")) or ".toml: " in ln
                ]
                errors += [ln for ln in proc.stderr.splitlines() if ln.strip()][-1:]
                failure = "; ".join(errors[:3])
    detail = (
        f"`hil run` over the {len(files)} scenario files in {path}, in a subprocess, "
        f"{_cores()} cores, load average {os.getloadavg()[0]:.1f}; {summary.strip('= ')}"
    )
    if speed:
        detail += f"; {speed}"
    if any(codes):
        detail += f"; exit codes {codes}" + (f": {failure}" if failure else "")
    return Figure(
        name,
        "s",
        tuple(walls),
        target,
        float(np.median(walls)) <= 60.0,
        detail,
        {"exit_codes": codes},
    )


# -- several boards at once ------------------------------------------------------------------------


def _rig_of(boards: int, path: Path) -> Path:
    """A rig file of `boards` virtual copters wired as the default rig (GPS and RC over
    their UARTs), for the one-board and the several-board run alike."""
    lines = [
        "[rig]",
        f'name = "bench-{boards}-boards"',
        f'description = "{boards} virtual copters for hil bench --boards"',
    ]
    for i in range(1, boards + 1):
        lines += [
            "",
            "[[board]]",
            f'name = "copter{i}"',
            'type = "virtual"',
            f'usb_serial = "HILVFC{i:04d}"',
            'gps = "uart:ubx"',
            'rc = "uart:crsf"',
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def makespan(walls: list[float], hosts: int) -> float:
    """The wall time of flying scenarios of these wall times on `hosts` boards, each on a
    host of its own (so none slows another), the longest first onto the board free
    first, as work stealing hands them out: a model, from measured times."""
    loads = [0.0] * max(1, hosts)
    for wall in sorted(walls, reverse=True):
        loads[loads.index(min(loads))] += wall
    return max(loads)


def boards_wall_time(
    boards: int = 2, runs: int = 1, scenarios: Path | str | None = None, log: Log = _stderr
) -> list[Figure]:
    """Wall seconds of `hil run` over the scenario suite on one board and on `boards`
    boards at once (`hil run -n`), in turn, on one rig of `boards` virtual copters, and
    the speed-up. The note models `boards` boards on as many hosts from the one-board
    run's per-scenario wall times (`makespan`) plus the run's own start and end."""
    names = (
        "wall time, scenarios on 1 board",
        f"wall time, scenarios on {boards} boards at once",
        f"speed-up, {boards} boards at once vs 1",
    )
    path = Path(scenarios) if scenarios is not None else default_scenarios()
    files = sorted(path.rglob("*.toml")) if path.is_dir() else [path] if path.exists() else []
    why = ""
    if boards < 2:
        why = f"--boards {boards}: give at least 2"
    elif not files:
        why = f"no scenarios at {path}"
    else:
        try:
            import xdist  # noqa: F401
        except ImportError:
            why = "pytest-xdist is not installed (hil's dev extra)"
    if why:
        return [_not_measured(n, u, "-", why) for n, u in zip(names, ("s", "s", "x"), strict=True)]
    walls: dict[int, list[float]] = {1: [], boards: []}
    codes: dict[int, list[int]] = {1: [], boards: []}
    used: set[str] = set()
    scenario_walls: list[float] = []
    outcomes: dict[int, dict[str, str]] = {}
    failures: dict[int, str] = {}
    for i in range(runs):
        for n in (1, boards):
            with tempfile.TemporaryDirectory(prefix="hil-bench-boards-") as tmp:
                rig = _rig_of(boards, Path(tmp) / "rig.toml")
                argv = [
                    sys.executable, "-m", "hil.cli", "run", *map(str, files), "--rig", str(rig),
                    "--report", f"{tmp}/report", "--state-dir", f"{tmp}/state",
                ]
                if n > 1:
                    argv += ["-n", str(n)]
                log(f"scenarios on {n} board(s), run {i + 1} of {runs}: {path}")
                start = time.perf_counter()
                proc = subprocess.run(argv, cwd=tmp, capture_output=True, text=True, timeout=3600)
                walls[n].append(time.perf_counter() - start)
                codes[n].append(proc.returncode)
                if proc.returncode and n not in failures:
                    lines = proc.stdout.splitlines()
                    errors = [ln for ln in lines if ln.startswith(("ERROR", "FAILED"))]
                    errors += [ln for ln in proc.stderr.splitlines() if ln.startswith("hil run:")]
                    failures[n] = "; ".join(errors[:2])
                try:
                    flown = json.loads(Path(tmp, "report", "summary.json").read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    flown = {"scenarios": []}
                outcomes[n] = {s["name"]: s["outcome"] for s in flown["scenarios"]}
                if n > 1:
                    used |= {s["board"] for s in flown["scenarios"]}
                elif i == 0:
                    scenario_walls = [float(s["wall_seconds"]) for s in flown["scenarios"]]
    one, many = float(np.median(walls[1])), float(np.median(walls[boards]))
    ratios = tuple(a / b for a, b in zip(walls[1], walls[boards], strict=True) if b > 0)
    fixed = max(0.0, walls[1][0] - sum(scenario_walls))
    model = {
        k: walls[1][0] / (fixed + makespan(scenario_walls, k)) for k in sorted({2, boards, 4, 8})
    }
    same = outcomes.get(1) == outcomes.get(boards)
    detail = (
        f"`hil run` over the {len(files)} scenario files in {path}, {len(scenario_walls)} flown on "
        f"virtual boards, on 1 board and with -n {boards} (boards used: "
        f"{', '.join(sorted(used)) or 'none'}), {_cores()} cores, load average "
        f"{os.getloadavg()[0]:.1f}; exit codes {codes[1]} and {codes[boards]}; verdicts "
        f"{'the same' if same else 'DIFFER'} on 1 and {boards} boards"
        + "".join(f" ({k} board(s): {v})" for k, v in failures.items() if v)
        + ". Each virtual board "
        "costs a board process and a closed loop, about a core between them, so on this "
        "host the boards share its cores. Modelled, with each board on a host of its own "
        f"(the 1-board run's per-scenario wall times, longest first onto the board free "
        f"first, plus its {fixed:.1f} s of start and end): "
        + ", ".join(f"{k} hosts {v:.2f}x" for k, v in model.items())
    )
    extra = {
        "exit_codes": {"1": codes[1], str(boards): codes[boards]},
        "boards_used": sorted(used),
        "modelled_speedup": {str(k): v for k, v in model.items()},
        "scenario_walls_1_board": scenario_walls,
        "same_verdicts": same,
    }
    return [
        Figure(names[0], "s", tuple(walls[1]), "-", None, "", extra),
        Figure(names[1], "s", tuple(walls[boards]), "-", None, "", extra),
        Figure(names[2], "x", ratios, f"> 1 on {boards}+ cores", (one / many > 1.0) if many else None, detail, extra),
    ]


# -- memory over a long run ----------------------------------------------------------------------


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size of a process in MB (VmRSS)."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise HilError(f"no VmRSS for process {pid}")


def growth_mb_per_hour(t_s: list[float] | np.ndarray, mb: list[float] | np.ndarray) -> float:
    """Least-squares slope of `mb` over `t_s`, in MB per hour."""
    t = np.asarray(t_s, dtype=float)
    if len(t) < 2 or np.ptp(t) <= 0:
        raise HilError("bench: need samples at two times at least to fit a growth rate")
    return float(np.polyfit(t / 3600.0, np.asarray(mb, dtype=float), 1)[0])


def _fit_soak(
    t: list[float], mb: list[float], warmup_s: float, segments: int = 3
) -> tuple[float, list[float]]:
    """(slope after the warm-up, slopes of `segments` consecutive parts of it), MB/h."""
    t_arr, mb_arr = np.asarray(t), np.asarray(mb)
    keep = t_arr >= warmup_s
    t_arr, mb_arr = t_arr[keep], mb_arr[keep]
    overall = growth_mb_per_hour(t_arr, mb_arr)
    parts = []
    for idx in np.array_split(np.arange(len(t_arr)), segments):
        if len(idx) >= 3:
            parts.append(growth_mb_per_hour(t_arr[idx], mb_arr[idx]))
    return overall, parts or [overall]


def soak(
    minutes: float, sample_s: float = 5.0, rate_hz: float = 1000.0, log: Log = _stderr
) -> Figure:
    """Harness RSS growth over `minutes` of the real-time loop (lockstep rig without SITL).

    RSS is sampled every `sample_s`; after a warm-up (a fifth of the run, at most 60 s)
    a least-squares line gives MB per hour; three consecutive parts of the run show the
    spread.
    """
    name = "memory growth, long run"
    duration = minutes * 60.0
    warmup = min(60.0, duration / 5.0)
    t: list[float] = []
    mb: list[float] = []
    other: list[float] = []
    missing = _sitl_missing()
    if missing is None:
        what = f"real-time loop at {rate_hz:.0f} Hz against Betaflight SITL"
        with _RealtimeRig(rate_hz, log=log) as rig:
            start = time.monotonic()
            pid = rig.sitl.proc.pid
            while (elapsed := time.monotonic() - start) < duration:
                t.append(elapsed)
                mb.append(rss_mb())
                with contextlib.suppress(OSError, HilError):
                    other.append(rss_mb(pid))
                time.sleep(min(sample_s, max(0.0, duration - elapsed)))
                if rig.loop.error is not None:
                    raise HilError(f"bench: the real-time loop stopped: {rig.loop.error}")
            t.append(time.monotonic() - start)
            mb.append(rss_mb())
    else:
        what = f"lockstep loop on the virtual rig (Betaflight SITL missing: {missing})"
        with _hovering_rig() as (run, _rate, _pid):
            start = time.monotonic()
            while (elapsed := time.monotonic() - start) < duration:
                t.append(elapsed)
                mb.append(rss_mb())
                chunk_start = time.monotonic()
                while (
                    time.monotonic() - chunk_start < sample_s
                    and time.monotonic() - start < duration
                ):
                    run(1.0)
            t.append(time.monotonic() - start)
            mb.append(rss_mb())
    overall, parts = _fit_soak(t, mb, warmup)
    detail = (
        f"{what}; {minutes:g} min, RSS sampled every {sample_s:g} s, fit after {warmup:.0f} s: "
        f"{overall:+.1f} MB/h overall, RSS {mb[0]:.0f} -> {mb[-1]:.0f} MB"
    )
    if missing is None:
        per_step = overall * 1024 * 1024 / 3600.0 / rate_hz
        detail += f" ({per_step:.0f} bytes per loop step)"
    if len(other) >= 2:
        detail += f"; the SITL process: {growth_mb_per_hour(t[: len(other)], other):+.1f} MB/h"
    extra = {"t_s": t, "rss_mb": mb, "fit_mb_per_hour": overall, "warmup_s": warmup}
    return Figure(name, "MB/h", tuple(parts), "<= 10 MB/h", overall <= 10.0, detail, extra)


# -- all of it -------------------------------------------------------------------------------------


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - Linux has it
        return os.cpu_count() or 1


def _realtime(seconds: float, runs: int, log: Log, where: str, load: bool) -> list[Figure]:
    if where == "both":
        return realtime_compare(seconds=seconds, runs=runs, log=log, harness_load=load)
    return realtime_loop(seconds=seconds, runs=runs, log=log, process=where == "process", harness_load=load)


def run_all(
    quick: bool = False,
    realtime_seconds: float | None = None,
    realtime_runs: int = 3,
    suite_runs: int = 0,
    soak_minutes: float = 0.0,
    boards: int = 0,
    log: Log = _stderr,
    realtime_where: str = "thread",
    realtime_load: bool = False,
    realtime_only: bool = False,
    ardupilot: Any = None,
    ardupilot_only: bool = False,
) -> list[Figure]:
    """Every figure; `quick` shortens each (a smoke test: wider spread).

    ``realtime_where``: the real-time loop in a ``thread`` of the harness, in a
    ``process`` of its own, or ``both`` in alternating runs; ``realtime_load``: a harness
    thread holds the GIL meanwhile; ``realtime_only``: measure that and nothing else.
    ``ardupilot`` (a `hil.bench_ardupilot.ArduPilotBench`): also ArduPilot SITL with the
    harness as its physics against its own quad model; ``ardupilot_only``: only that."""
    if ardupilot is not None:
        from dataclasses import replace

        ardupilot = replace(ardupilot, cpu_ns=process_cpu_ns)
    if ardupilot_only and ardupilot is not None:
        from hil import bench_ardupilot

        return ardupilot_figures(bench_ardupilot.measure(ardupilot, log))
    seconds = realtime_seconds if realtime_seconds is not None else (2.0 if quick else 10.0)
    runs = 1 if quick and realtime_seconds is None else realtime_runs
    if realtime_only:
        log(f"real-time loop against Betaflight SITL ({realtime_where}), {runs} x {seconds:g} s")
        return _realtime(seconds, runs, log, realtime_where, realtime_load)
    log("harness cost per step")
    figures = list(step_cost(steps=5_000 if quick else 20_000))
    log("lockstep speed on the virtual rig")
    figures.append(lockstep_speed(seconds=5.0 if quick else 20.0))
    log(f"real-time loop against Betaflight SITL ({realtime_where}), {runs} x {seconds:g} s")
    figures.extend(_realtime(seconds, runs, log, realtime_where, realtime_load))
    for method in ("serial", "dfu"):
        log(f"flashing throughput over {method}")
        figures.append(
            flash_throughput(method, runs=1 if quick else 3, size_kib=64 if quick else 512, log=log)
        )
    log("timing-measurement error against the virtual board's loop-time model")
    figures.append(timing_error(periods=2000 if quick else 4000, runs=1 if quick else 3, log=log))
    if suite_runs:
        figures.append(suite_wall_time(runs=suite_runs, log=log))
    else:
        figures.append(
            _not_measured(
                "scenario suite wall time",
                "s",
                "<= 60 s on 2 cores",
                "takes minutes; `hil bench --suite`",
            )
        )
    if boards:
        figures.extend(boards_wall_time(boards=boards, log=log))
    else:
        figures.append(
            _not_measured(
                "speed-up, several boards at once vs 1",
                "x",
                "-",
                "takes minutes; `hil bench --boards [N]`",
            )
        )
    if ardupilot is not None:
        from hil import bench_ardupilot

        figures.extend(ardupilot_figures(bench_ardupilot.measure(ardupilot, log)))
    else:
        figures.append(
            _not_measured(
                ARDUPILOT_RATIO,
                "ratio",
                "-",
                "needs an arducopter SITL build; `hil bench --ardupilot [PATH]`",
            )
        )
    if soak_minutes:
        log(f"memory soak, {soak_minutes:g} min")
        figures.append(soak(soak_minutes, log=log))
    else:
        figures.append(
            _not_measured(
                "memory growth, long run", "MB/h", "<= 10 MB/h", "`hil bench --soak MINUTES`"
            )
        )
    return figures


ARDUPILOT_RATIO = "ArduPilot SITL: JSON physics / built-in best"


def ardupilot_figures(comparison: Any) -> list[Figure]:
    """Figures of a `hil.bench_ardupilot.Comparison`: the JSON physics speed, the built-in
    model's at each --speedup (its target: GOES_SHARE of the speed-up), and the ratio."""
    from hil.bench_ardupilot import GOES_SHARE, SpeedRun

    def where(run: SpeedRun, load: tuple[float, float, float]) -> str:
        how = "hovering at 10 m" if run.hovering else run.note
        cpu = ", ".join(f"{name} {sec:.2f}" for name, sec in run.cpu_s.items())
        return (
            f"{run.vehicle_s:.1f} vehicle s in {run.wall_s:.2f} wall s, {how}"
            + (f"; CPU s over it: {cpu}" if cpu else "")
            + f"; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
        )

    def extra(run: SpeedRun, **more: Any) -> dict[str, Any]:
        return {**more, "vehicle_s": run.vehicle_s, "wall_s": run.wall_s, "hovering": run.hovering,
                "cpu_s": dict(run.cpu_s)}

    unit = "x real time"
    out = []
    name = "ArduPilot SITL, harness as JSON physics"
    run = comparison.json_physics
    if isinstance(run, SpeedRun):
        out.append(Figure(name, unit, (run.speed,), "-", None,
                          f"lockstep; {where(run, comparison.load['json'])}", extra(run)))
    else:
        out.append(_not_measured(name, unit, "-", run))
    for s, run in comparison.builtin.items():
        name = f"ArduPilot SITL built-in quad, --speedup {s:g}"
        target = f">= {GOES_SHARE * s:g}x"
        if isinstance(run, SpeedRun):
            out.append(Figure(name, unit, (run.speed,), target, run.speed >= GOES_SHARE * s,
                              where(run, comparison.load[f"{s:g}"]), extra(run, speedup=s)))
        else:
            out.append(_not_measured(name, unit, target, run))
    ratio = comparison.ratio
    if ratio is None:
        why = "the JSON physics run failed" if comparison.json_speed is None else "no built-in run finished"
        out.append(_not_measured(ARDUPILOT_RATIO, "ratio", "-", why))
        return out
    best = comparison.best_speedup
    highest = comparison.highest_that_goes
    speeds = comparison.builtin_speeds
    out.append(Figure(
        ARDUPILOT_RATIO, "ratio", (ratio,), "-", None,
        f"harness as physics {comparison.json_speed:.1f}x against the built-in model's best "
        f"{speeds[best]:.1f}x (at --speedup {best:g}); the highest --speedup it still reached "
        f"({GOES_SHARE:.0%}): " + (f"{highest:g}" if highest is not None else "none of those tried"),
        {"json_speed": comparison.json_speed, "builtin_speeds": {f"{k:g}": v for k, v in speeds.items()},
         "best_speedup": best, "highest_speedup_that_goes": highest, "vehicle_s": comparison.seconds},
    ))
    return out


def _host() -> dict[str, Any]:
    return {
        "node": platform.node(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cores": _cores(),
        "load_average": list(os.getloadavg()),
    }


_NAME_WIDTH = 44
_UNIT_WIDTH = 11
_TARGET_WIDTH = 18


def _value(x: float) -> str:
    return f"{x:9.2f}" if abs(x) < 1e6 else f"{x:9.3g}"


def format_table(figures: list[Figure]) -> str:
    host = _host()
    lines = [
        f"hil bench on {host['node']} ({host['machine']}, {host['cores']} cores, Python "
        f"{host['python']}, load average {host['load_average'][0]:.1f})",
        f"{'figure':{_NAME_WIDTH}} {'min':>9} {'median':>9} {'max':>9}  {'unit':{_UNIT_WIDTH}} "
        f"{'target':{_TARGET_WIDTH}} verdict",
    ]
    notes = []
    for f in figures:
        if f.measured:
            verdict = "-" if f.passed is None else ("ok" if f.passed else "MISSED")
            values = f"{_value(min(f.runs))} {_value(f.median)} {_value(max(f.runs))}"
        else:
            verdict = "-"
            values = f"{'-':>9} {'-':>9} {'-':>9}"
        ref = ""
        if f.detail:
            notes.append(f.detail)
            ref = f"  [{len(notes)}]"
        lines.append(
            f"{f.name:{_NAME_WIDTH}} {values}  {f.unit:{_UNIT_WIDTH}} "
            f"{f.target:{_TARGET_WIDTH}} {verdict}{ref}"
        )
    for i, note in enumerate(notes, 1):
        lines.append(f"[{i}] {note}")
    return "\n".join(lines)


def to_json(figures: list[Figure]) -> str:
    def one(f: Figure) -> dict[str, Any]:
        data = asdict(f)
        data["median"] = f.median if f.measured else None
        data["min"] = min(f.runs) if f.measured else None
        data["max"] = max(f.runs) if f.measured else None
        return data

    host = _host()
    return json.dumps(
        {
            "schema": "hil-bench/2",
            "host": host["node"],
            "machine": host,
            "figures": [one(f) for f in figures],
        },
        indent=2,
        default=float,
    )
