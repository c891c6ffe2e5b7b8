"""The closed loop for Betaflight SITL: our physics over its UDP ports, in real time.

One `hil.sim.loop.ClosedLoop` with the `betaflight_udp` link
(`hil.sim.betaflight_link`), the 5-inch quad's plant (`Plant.for_betaflight`) and
real-time pacing at the state rate: every period the loop integrates the physics with
the newest motor packet, samples the sensors and sends one state packet. The loop
thread asks for SCHED_FIFO above the SITL's threads and a 1 ns timer slack when it may;
``timing()`` reports what it achieved.
"""

from __future__ import annotations

from dataclasses import dataclass

from hil.errors import HilError
from hil.sim.betaflight_link import BetaflightUdpLink
from hil.sim.loop import ClosedLoop
from hil.sim.plant import Plant


@dataclass
class BetaflightLoopConfig:
    rate_hz: float = 1000.0
    rc_rate_hz: float = 50.0
    seed: int = 0
    wind_speed: float = 0.0
    wind_direction: float = 0.0
    wind_gust: float = 0.0
    battery_cells: int = 4
    battery_capacity_mah: float = 1500.0
    truth_rate_hz: float = 50.0
    #: Ask for SCHED_FIFO for the loop thread (when the process may).
    realtime_priority: int | None = 60  # above the SITL threads (50): the harness must keep time
    #: Spin the last 200 us before each tick: the send period holds to microseconds.
    spin_us: int = 200
    # The loop's lockstep knobs (unused in real time).
    step_timeout: float = 2.0
    pipeline: bool = False


def betaflight_loop(
    fc_ip: str,
    host_ip: str,
    rc_url: str | None,
    config: BetaflightLoopConfig | None = None,
    *,
    state_port: int = 9003,
    motor_port: int = 9002,
    clock_offset_s: float = 0.0,
) -> ClosedLoop:
    """The real-time loop against a Betaflight SITL at ``fc_ip`` (not started).

    ``clock_offset_s`` is added to every state timestamp: the firmware's clock follows
    them, so a second loop against the same process must not go back in time (pass the
    seconds since the process started)."""
    cfg = config or BetaflightLoopConfig()
    if not 50.0 <= cfg.rate_hz <= 4000.0:
        raise HilError(f"state rate {cfg.rate_hz} Hz is outside 50..4000 Hz (the firmware needs > 50 Hz)")
    link = BetaflightUdpLink(
        fc_ip, host_ip, rc_url, rate_hz=cfg.rate_hz, rc_rate_hz=cfg.rc_rate_hz,
        state_port=state_port, motor_port=motor_port, clock_offset_s=clock_offset_s,
    )
    #: The 5-inch quad, its sensors, weather, battery, the RC link and the threats set
    #: on them (GNSS and GCS threats have no path to this board).
    return ClosedLoop(Plant.for_betaflight(cfg), link, cfg)
