"""The closed loop for Betaflight SITL: our physics over its UDP ports, in real time.

One `hil.sim.loop.ClosedLoop` with the `betaflight_udp` link
(`hil.sim.betaflight_link`), the 5-inch quad's plant (`Plant.for_betaflight`) and
real-time pacing at the state rate: every period the loop integrates the physics with
the newest motor packet, samples the sensors and sends one state packet. The loop
thread asks for SCHED_FIFO above the SITL's threads and a 1 ns timer slack when it may;
``timing()`` reports what it achieved.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from hil.errors import HilError
from hil.sim.betaflight_link import BetaflightUdpLink
from hil.sim.gps_feed import GpsFeed
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
    #: Run the loop in a process of its own (`hil.sim.rt_child`): no thread of the
    #: harness can hold it up. See docs/architecture.md for what it measured.
    #: None: the board decides (the SITL board: its own process); HIL_LOOP_PROCESS=1 or 0
    #: decides for every loop.
    process: bool | None = field(default_factory=lambda: _process_from_env())
    # The loop's lockstep knobs (unused in real time).
    step_timeout: float = 2.0
    pipeline: bool = False


def _process_from_env() -> bool | None:
    value = os.environ.get("HIL_LOOP_PROCESS", "").strip()
    return {"1": True, "0": False}.get(value)


def betaflight_loop(
    fc_ip: str,
    host_ip: str,
    rc_url: str | None,
    config: BetaflightLoopConfig | None = None,
    *,
    state_port: int = 9003,
    motor_port: int = 9002,
    clock_offset_s: float = 0.0,
    gps_feed: GpsFeed | None = None,
    gps_uart: tuple[str, str, int] | None = None,
) -> ClosedLoop:
    """The real-time loop against a Betaflight SITL at ``fc_ip`` (not started).

    ``clock_offset_s`` is added to every state timestamp: the firmware's clock follows
    them, so a second loop against the same process must not go back in time (pass the
    seconds since the process started). ``gps_feed``: our GPS receiver on one of the
    firmware's UARTs (`hil.sim.gps_feed`), stepped with every state packet; or
    ``gps_uart`` = (socket URL, u-blox model, baud) to have one built here (or in the
    loop's process). With ``config.process`` the loop runs in a process of its own
    (`hil.sim.rt_child.ProcessLoop`, the same interface)."""
    cfg = config or BetaflightLoopConfig()
    if not 50.0 <= cfg.rate_hz <= 4000.0:
        raise HilError(f"state rate {cfg.rate_hz} Hz is outside 50..4000 Hz (the firmware needs > 50 Hz)")
    if cfg.process:
        if gps_feed is not None:
            raise HilError("a loop in its own process builds its GPS feed there: pass gps_uart, not gps_feed")
        from hil.sim.rt_child import ProcessLoop

        return ProcessLoop(  # type: ignore[return-value]
            "hil.sim.betaflight_loop:betaflight_loop",
            dict(
                fc_ip=fc_ip, host_ip=host_ip, rc_url=rc_url, config=cfg, state_port=state_port,
                motor_port=motor_port, clock_offset_s=clock_offset_s, gps_uart=gps_uart,
            ),
        )
    if gps_uart is not None and gps_feed is None:
        from hil.sim.gps_feed import TcpUart

        url, model, baud = gps_uart
        gps_feed = GpsFeed.ublox(TcpUart(url), model=model, baud=baud)
    link = BetaflightUdpLink(
        fc_ip, host_ip, rc_url, rate_hz=cfg.rate_hz, rc_rate_hz=cfg.rc_rate_hz,
        state_port=state_port, motor_port=motor_port, clock_offset_s=clock_offset_s, gps_feed=gps_feed,
    )
    #: The 5-inch quad, its sensors, weather, battery, the RC link and the threats set
    #: on them (GNSS and GCS threats have no path to this board).
    return ClosedLoop(Plant.for_betaflight(cfg), link, cfg)
