"""`hil bench --ardupilot`: ArduPilot SITL with the harness as its physics against its own.

The same ``arducopter`` SITL executable is flown twice in one bench run:

- **JSON physics** (``--model JSON``): our ``ardupilot-sitl`` board (hil.boards.ardupilot_sitl),
  the harness's plant answering every physics frame in lockstep, SITL as fast as the two
  can take turns;
- **built-in physics** (``--model quad --speedup S``): SITL's own quadcopter model and
  its own simulated GPS, RC and sensors, nothing of ours in its loop, for each S given
  (by default 1, 10, 50, 100 and 1000), each a fresh SITL.

Each flight is the same: GUIDED, armed, a 10 m takeoff, then the hover is timed for the
same stretch of vehicle time. Speed is vehicle seconds per wall second, the vehicle's
clock read from its telemetry (``time_boot_ms`` of SYSTEM_TIME and the other streamed
messages) on the host's monotonic clock, so both are measured the same way. A vehicle
that will not arm or take off within its bound is timed where it stands (said in the
figure). The built-in model "still goes" at S when it reaches at least 90 % of S; the
report gives every S's speed, the highest S that still goes, and the ratio of the JSON
lockstep speed to the built-in model's best.

Every SITL started here is stopped when its part ends, however it ends (and dies with
the harness: hil.children).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hil.errors import ConfigError, HilError

Log = Callable[[str], None]

#: --speedup values the built-in model is tried at when none are given.
DEFAULT_SPEEDUPS: tuple[float, ...] = (1.0, 10.0, 50.0, 100.0, 1000.0)
#: Vehicle seconds timed per flight by default.
DEFAULT_SECONDS = 20.0
#: A built-in run "still goes" at S when it reaches this share of S.
GOES_SHARE = 0.9
#: Vehicle seconds the setup may take to enter GUIDED, arm, and reach the hover.
SETUP_VEHICLE_S = 90.0
#: Slowest speed a flight is waited on before it is cut short (x real time).
SLOWEST = 0.2
#: Parameters the built-in model needs beyond ArduCopter's defaults (the values
#: ArduPilot's SITL copter defaults use): a quad X frame, the offsets of SITL's simulated
#: compass taken out, the streams that carry the vehicle's clock, calibrated IMUs.
BUILTIN_DEFAULTS: dict[str, float] = {
    "FRAME_CLASS": 1, "FRAME_TYPE": 1,
    "COMPASS_OFS_X": 5, "COMPASS_OFS_Y": 13, "COMPASS_OFS_Z": -18,
    "COMPASS_OFS2_X": 5, "COMPASS_OFS2_Y": 13, "COMPASS_OFS2_Z": -18,
    "COMPASS_OFS3_X": 5, "COMPASS_OFS3_Y": 13, "COMPASS_OFS3_Z": -18,
    "SR0_POSITION": 10, "SR0_EXTRA1": 10, "SR0_EXTRA2": 10, "SR0_EXTRA3": 2, "SR0_EXT_STAT": 2,
    # SITL's own RC puts channel 5, the flight-mode channel, high: every switch position
    # GUIDED (4), so the mode the bench sets stays.
    **{f"FLTMODE{i}": 4 for i in range(1, 7)},
    # Accelerometer calibration values that are not the defaults, so the pre-arm check
    # counts the IMUs as calibrated ("3D Accel calibration needed" otherwise).
    "INS_ACCOFFS_X": 0.001, "INS_ACCOFFS_Y": 0.001, "INS_ACCOFFS_Z": 0.001,
    "INS_ACCSCAL_X": 1.001, "INS_ACCSCAL_Y": 1.001, "INS_ACCSCAL_Z": 1.001,
    "INS_ACC2OFFS_X": 0.001, "INS_ACC2OFFS_Y": 0.001, "INS_ACC2OFFS_Z": 0.001,
    "INS_ACC2SCAL_X": 1.001, "INS_ACC2SCAL_Y": 1.001, "INS_ACC2SCAL_Z": 1.001,
}  # fmt: skip


@dataclass(frozen=True)
class ArduPilotBench:
    """What `hil bench --ardupilot` was asked for."""

    executable: Path
    seconds: float = DEFAULT_SECONDS
    speedups: tuple[float, ...] = DEFAULT_SPEEDUPS
    instance: int = 0
    #: CPU nanoseconds of a process so far (hil.bench.process_cpu_ns, handed in by the
    #: bench): each flight then says how its wall time split between SITL and the harness.
    cpu_ns: Callable[[int], int] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class SpeedRun:
    """One timed flight: vehicle seconds over wall seconds, and how it was flown."""

    vehicle_s: float
    wall_s: float
    hovering: bool
    note: str = ""
    #: CPU seconds each process ("SITL", "harness") spent over the timed stretch.
    cpu_s: dict[str, float] = field(default_factory=dict)

    @property
    def speed(self) -> float:
        return self.vehicle_s / self.wall_s if self.wall_s > 0 else float("nan")


def parse_speedups(text: str) -> tuple[float, ...]:
    """``"1,10,100"`` as speed-ups; ConfigError for anything that is not positive numbers."""
    values = []
    for part in text.split(","):
        part = part.strip()
        try:
            value = float(part)
        except ValueError:
            raise ConfigError(f"--ardupilot-speedups {text!r}: {part!r} is not a number") from None
        if not (0.0 < value <= 100_000.0):
            raise ConfigError(f"--ardupilot-speedups {text!r}: {part!r} is not in (0, 100000]")
        values.append(value)
    if not values:
        raise ConfigError(f"--ardupilot-speedups {text!r}: give at least one speed-up")
    return tuple(dict.fromkeys(values))


def resolve(path: str | None, *, seconds: float | None, speedups: str | None, instance: int) -> ArduPilotBench:
    """The bench's request from the command line: PATH, else HIL_ARDUPILOT_SITL."""
    from hil.boards.ardupilot_sitl import EXECUTABLE_ENV

    given = path or os.environ.get(EXECUTABLE_ENV, "")
    if not given:
        raise ConfigError(f"--ardupilot: give the arducopter SITL executable, or set {EXECUTABLE_ENV}")
    exe = Path(given).expanduser()
    if not exe.is_file() or not os.access(exe, os.X_OK):
        raise ConfigError(f"--ardupilot: {exe} is not an executable file")
    if seconds is not None and not (0.0 < seconds <= 3600.0):
        raise ConfigError(f"--ardupilot-seconds {seconds}: give a length in (0, 3600]")
    if not 0 <= instance <= 50:
        raise ConfigError(f"--ardupilot-instance {instance}: give 0..50 (SITL's ports move by 10 per instance)")
    return ArduPilotBench(
        executable=exe.resolve(),
        seconds=DEFAULT_SECONDS if seconds is None else float(seconds),
        speedups=DEFAULT_SPEEDUPS if speedups is None else parse_speedups(speedups),
        instance=instance,
    )


# -- flying and timing --------------------------------------------------------------------


def _wait_vehicle(ap, seconds: float, what: str) -> float:
    """Wait until the vehicle's clock has moved `seconds` (bounded at SLOWEST x real time);
    returns the wall seconds it took."""
    t0 = ap.vehicle_time
    start = time.perf_counter()
    limit = start + seconds / SLOWEST + 10.0
    while ap.vehicle_time - t0 < seconds:
        if time.perf_counter() > limit:
            raise HilError(
                f"the vehicle's clock moved {ap.vehicle_time - t0:.1f} of {seconds:g} s in "
                f"{limit - start:.0f} wall s while waiting for {what}"
            )
        time.sleep(0.01)
    return time.perf_counter() - start


def _hover(ap, log: Log) -> str:
    """GUIDED, arm, take off to 10 m and settle; '' when hovering, else why not."""
    try:
        ap.until_accepted("enter GUIDED", lambda: ap.set_mode("GUIDED"), within=SETUP_VEHICLE_S, wall_within=SETUP_VEHICLE_S / SLOWEST)
        ap.until_accepted("arm", ap.arm, within=SETUP_VEHICLE_S, wall_within=SETUP_VEHICLE_S / SLOWEST)
        ap.takeoff(10.0)
        _wait_vehicle(ap, 12.0, "the climb to 10 m")
    except HilError as exc:
        log(f"not hovering: {exc}")
        return f"timed on the ground: {exc}"
    return ""


def timed_flight(
    ap, seconds: float, log: Log, *, pids: dict[str, int] | None = None,
    cpu_ns: Callable[[int], int] | None = None,
) -> SpeedRun:
    """Hover (`_hover`), then time `seconds` of vehicle time (and the CPU of `pids`)."""
    why = _hover(ap, log)
    pids = pids if cpu_ns is not None and pids else {}
    cpu0 = {name: cpu_ns(pid) for name, pid in pids.items()} if cpu_ns else {}
    t0 = ap.vehicle_time
    start = time.perf_counter()
    _wait_vehicle(ap, seconds, f"{seconds:g} s of timed flight")
    wall = time.perf_counter() - start
    vehicle = ap.vehicle_time - t0
    cpu = {name: (cpu_ns(pid) - cpu0[name]) * 1e-9 for name, pid in pids.items()} if cpu_ns else {}
    return SpeedRun(vehicle, wall, hovering=not why, note=why, cpu_s=cpu)


def json_physics_run(bench: ArduPilotBench, log: Log, work: Path) -> SpeedRun:
    """Our ardupilot-sitl board, the harness its physics in lockstep."""
    from hil.rig import Rig
    from hil.session import session_for

    rig_file = work / "bench-ardupilot.toml"
    rig_file.write_text(
        '[rig]\nname = "bench-ardupilot"\n[[board]]\nname = "arducopter"\ntype = "ardupilot-sitl"\n'
        f"executable = {json.dumps(str(bench.executable))}\ninstance = {bench.instance}\n"
        # SITL's own pace limit out of the way: lockstep goes as fast as the two take turns.
        "speedup = 1000\n",
        encoding="utf-8",
    )
    rig = Rig.load(rig_file, work_dir=work / "rig")
    try:
        board = rig.select(None)
        with session_for(board) as session:
            sitl = getattr(board, "sitl", None)
            proc = getattr(sitl, "proc", None)
            pids = {"SITL": proc.pid, "harness": os.getpid()} if proc is not None else {}
            return timed_flight(session.autopilot, bench.seconds, log, pids=pids, cpu_ns=bench.cpu_ns)
    finally:
        rig.stop()


def builtin_run(bench: ArduPilotBench, speedup: float, log: Log, work: Path) -> SpeedRun:
    """The same executable with its own quad model at ``--speedup``."""
    from hil.autopilot.mavlink import MavlinkAutopilot
    from hil.boards.ardupilot_sitl import write_defaults
    from hil.links.udp_link import open_link
    from hil.mavlink.connection import MavConnection
    from hil.sitl.ardupilot import ArduPilotSitl

    run_dir = work / f"builtin-{speedup:g}"
    run_dir.mkdir(parents=True, exist_ok=True)
    defaults = run_dir / "bench.parm"
    write_defaults(defaults, BUILTIN_DEFAULTS)
    sitl = ArduPilotSitl(
        run_dir, bench.executable, defaults=[defaults], instance=bench.instance, speedup=speedup, model="quad"
    )
    conn = ap = None
    try:
        sitl.start()
        sitl.wait_mavlink_port(60.0)
        conn = MavConnection(open_link(sitl.mavlink_url, 115200))
        conn.idle_callbacks.append(conn.gcs_heartbeat)
        conn.start_reader()
        ap = MavlinkAutopilot(conn, profile="arducopter")
        ap.wait_heartbeat(30.0)
        ap.request_streams()
        pids = {"SITL": sitl.proc.pid, "harness": os.getpid()} if sitl.proc is not None else {}
        return timed_flight(ap, bench.seconds, log, pids=pids, cpu_ns=bench.cpu_ns)
    finally:
        if ap is not None:
            ap.close()
        if conn is not None:
            conn.close()
        sitl.stop()


# -- the comparison ------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """What one bench run measured: the JSON physics flight and each built-in speed-up's
    (a SpeedRun, or the reason it was not measured), with the load averages at each."""

    seconds: float
    json_physics: SpeedRun | str
    builtin: dict[float, SpeedRun | str]
    load: dict[str, tuple[float, float, float]]

    @property
    def json_speed(self) -> float | None:
        return self.json_physics.speed if isinstance(self.json_physics, SpeedRun) else None

    @property
    def builtin_speeds(self) -> dict[float, float]:
        return {s: r.speed for s, r in self.builtin.items() if isinstance(r, SpeedRun)}

    @property
    def best_speedup(self) -> float | None:
        speeds = self.builtin_speeds
        return max(speeds, key=lambda k: speeds[k]) if speeds else None

    @property
    def highest_that_goes(self) -> float | None:
        going = [s for s, v in self.builtin_speeds.items() if v >= GOES_SHARE * s]
        return max(going) if going else None

    @property
    def ratio(self) -> float | None:
        best = self.best_speedup
        if self.json_speed is None or best is None:
            return None
        return self.json_speed / self.builtin_speeds[best]


def measure(
    bench: ArduPilotBench,
    log: Log,
    *,
    json_run: Callable[[ArduPilotBench, Log, Path], SpeedRun] = json_physics_run,
    builtin: Callable[[ArduPilotBench, float, Log, Path], SpeedRun] = builtin_run,
    work_dir: Path | None = None,
) -> Comparison:
    """The JSON physics flight, then one built-in flight per speed-up, in one run; a
    flight that fails is a reason in its place, not the end of the bench. The SITLs run
    in `work_dir` (default: a new temporary directory, removed unless a flight failed)."""
    load: dict[str, tuple[float, float, float]] = {}
    work = Path(tempfile.mkdtemp(prefix="hil-bench-ardupilot-", dir=work_dir))
    failed = True
    try:
        log(f"ArduPilot SITL with the harness as its physics (lockstep), {bench.seconds:g} vehicle s")
        try:
            json_result: SpeedRun | str = json_run(bench, log, work)
        except HilError as exc:
            json_result = str(exc)
        load["json"] = os.getloadavg()
        runs: dict[float, SpeedRun | str] = {}
        for s in bench.speedups:
            log(f"ArduPilot SITL with its own quad model at --speedup {s:g}, {bench.seconds:g} vehicle s")
            try:
                runs[s] = builtin(bench, s, log, work)
            except HilError as exc:
                runs[s] = str(exc)
            load[f"{s:g}"] = os.getloadavg()
        failed = any(isinstance(r, str) for r in (json_result, *runs.values()))
    finally:
        if failed:  # SITL's logs (sitl.log in each run directory) say why
            log(f"kept the ArduPilot runs' directories for their logs: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return Comparison(bench.seconds, json_result, runs, load)


__all__ = [
    "ArduPilotBench", "Comparison", "DEFAULT_SPEEDUPS", "GOES_SHARE", "SpeedRun", "builtin_run",
    "json_physics_run", "measure", "parse_speedups", "resolve", "timed_flight",
]  # fmt: skip
