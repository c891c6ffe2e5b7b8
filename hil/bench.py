"""`hil bench`: what this host sustains, measured (never estimated), with its spread.

Figures so far:
- harness cost per closed-loop step: physics + sensors + HIL_SENSOR encode +
  HIL_ACTUATOR_CONTROLS decode, in process, median and p99 over many steps;
- lockstep speed on the virtual rig at the board's loop rate (simulated seconds per wall
  second) while the vehicle hovers, repeated to show min / median / max.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from hil.errors import CommandRefused, HilError


@dataclass(frozen=True)
class Figure:
    """One measured figure: its runs and how they compare with the target."""

    name: str
    unit: str
    runs: tuple[float, ...]
    target: str
    passed: bool | None
    detail: str = ""

    @property
    def median(self) -> float:
        return float(np.median(self.runs)) if self.runs else float("nan")


def step_cost(steps: int = 20_000, repeats: int = 3) -> tuple[Figure, Figure]:
    """Harness work per lockstep step, without the board: median and p99 in microseconds."""
    from hil.mavlink.dialect import new_codec
    from hil.mavlink.framing import HIL_ACTUATOR_CONTROLS, HIL_SENSOR, FrameReader
    from hil.sim import geo
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
            HIL_SENSOR.pack(i, 255, 25, t_us, ax, ay, az, gx, gy, gz, mx, my, mz, pressure, 0.0, alt, temperature, 0x1FFF, 0)
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
    median = Figure("harness cost per step, median", "us", tuple(medians), "<= 30 us", float(np.median(medians)) <= 30.0)
    p99 = Figure("harness cost per step, p99", "us", tuple(p99s), "(shown)", None)
    return median, p99


def lockstep_speed(seconds: float = 20.0, repeats: int = 3, rig_path=None) -> Figure:
    """Simulated seconds per wall second on the virtual rig, hovering at 10 m."""
    from hil.rig import DEFAULT_RIG, Rig
    from hil.session import BoardSession

    rig = Rig.load(rig_path or DEFAULT_RIG)
    speeds = []
    rate = 0.0
    try:
        board = rig.select(None)
        with BoardSession(board) as session:
            ap = session.autopilot
            sim = session.make_sim()
            rate = sim.config.rate_hz

            def run(secs: float) -> None:
                sim.conn.stop_reader()
                try:
                    sim.run_for(secs)
                finally:
                    sim.conn.start_reader()

            run(3.0)
            _until(lambda: (ap.set_mode("GUIDED"), ap.arm()), lambda: run(1.0), "arm in GUIDED")
            ap.takeoff(10.0)
            run(10.0)
            for _ in range(repeats):
                start = time.perf_counter()
                run(seconds)
                speeds.append(seconds / (time.perf_counter() - start))
            ap.set_mode("LAND")
            run(40.0)
    finally:
        rig.stop()
    return Figure(
        f"lockstep speed at {rate:.0f} Hz (virtual rig)",
        "x real time",
        tuple(speeds),
        ">= 25x",
        float(np.median(speeds)) >= 25.0,
        f"{seconds:.0f} simulated s per run, hovering",
    )


def _until(action: Callable[[], object], wait: Callable[[], None], what: str, tries: int = 60) -> None:
    for _ in range(tries):
        try:
            action()
            return
        except CommandRefused:
            wait()
    raise HilError(f"bench: could not {what} after {tries} tries")


def run_all(quick: bool = False) -> list[Figure]:
    figures = list(step_cost(steps=5_000 if quick else 20_000))
    figures.append(lockstep_speed(seconds=5.0 if quick else 20.0))
    return figures


def format_table(figures: list[Figure]) -> str:
    lines = [
        f"hil bench on {platform.node()} ({platform.machine()}, Python {platform.python_version()})",
        f"{'figure':44} {'min':>9} {'median':>9} {'max':>9}  {'target':10} verdict",
    ]
    for f in figures:
        verdict = "-" if f.passed is None else ("ok" if f.passed else "MISSED")
        lines.append(
            f"{f.name:44} {min(f.runs):9.2f} {f.median:9.2f} {max(f.runs):9.2f}  {f.target:10} {verdict}"
            + (f"  [{f.unit}; {f.detail}]" if f.detail else f"  [{f.unit}]")
        )
    return "\n".join(lines)


def to_json(figures: list[Figure]) -> str:
    return json.dumps(
        {"schema": "hil-bench/1", "host": platform.node(), "figures": [asdict(f) | {"median": f.median} for f in figures]},
        indent=2,
    )
