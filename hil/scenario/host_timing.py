"""Host-clock timing of a MAVLink scenario run, with the board's clock aligned by TIMESYNC.

What a run measures here, besides the vehicle-time figures of `hil.scenario.limits`:

- ``command_ack_latency_ms``: every COMMAND_LONG the run sent, from the moment its bytes
  were written to the moment the COMMAND_ACK's bytes were read, on the host's monotonic
  clock (the adapter's ``command_log``). The limit applies to the slowest one.
- ``sensor_actuator_latency_us``: every sensor sample the closed loop wrote (HIL_SENSOR)
  to the read of the board's answer to it (HIL_ACTUATOR_CONTROLS), host clock: transport
  both ways plus the board's loop. The limit applies to the p99. The loop pipelines one
  sample, so an answer can wait in the pty while the harness integrates the next step:
  the figure is an upper bound of what the board and the link take.
- the board clock against the host's, fitted to TIMESYNC exchanges at the start and the
  end of the run (offset, rate, ~95 % uncertainty): ``board_clock_rate`` is board
  seconds per host second (1 + drift on a board with its own crystal, the simulation
  speed in lockstep). On a board running in real time (rate within 1 % of 1), the
  board's own stamp on each answer (time_usec) is placed on the host clock and
  ``board_answer_latency_us`` is the part of the round trip up to the moment the board
  says it produced the answer, good to the alignment's uncertainty. A lockstep clock
  runs at a speed that varies over the run, so there the stamps are not mapped.

And what the runner asks of the board before the timeline when a limit needs it: a mode
change is seen when a HEARTBEAT reports it, so a ``failsafe_latency_s`` limit is only as
exact as the HEARTBEAT spacing. `heartbeat_rate_for` gives the rate that resolves a limit
to a tenth of it; the runner requests it with MAV_CMD_SET_MESSAGE_INTERVAL and puts the
default back afterwards.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hil.autopilot import timesync
from hil.errors import HilError
from hil.mavlink.dialect import mavlink
from hil.scenario.model import Scenario
from hil.timing import ClockAlignment, Measurement, latency_stats

log = logging.getLogger(__name__)

#: TIMESYNC exchanges at each end of a run.
SYNC_SAMPLES = 8
#: The finest HEARTBEAT spacing a limit may ask for (50 Hz).
MAX_HEARTBEAT_HZ = 50.0
#: A limit is resolved to this share of itself.
RESOLUTION_SHARE = 0.1
#: How exactly a read is stamped: the reader blocks in select, so bytes are stamped within
#: about this long of their arrival on an idle host (ms).
READ_STAMP_MS = 0.05
#: A board whose clock rate is within this of the host's runs in real time (a crystal
#: drifts by tens of ppm; a lockstep clock runs at the simulation's speed).
REALTIME_RATE_TOLERANCE = 0.01


def heartbeat_rate_for(scenario: Scenario) -> float | None:
    """The HEARTBEAT rate (Hz) a failsafe-latency limit needs, or None for the default.

    A mode change is known to within the HEARTBEAT spacing; the limit's maximum should be
    resolved to `RESOLUTION_SHARE` of itself. None when the default 1 Hz already does.
    """
    bounds = [
        lim.maximum for lim in scenario.limits
        if lim.name == "failsafe_latency_s" and lim.maximum is not None and lim.maximum > 0
    ]
    if not bounds:
        return None
    rate = math.ceil(1.0 / (min(bounds) * RESOLUTION_SHARE))
    if rate <= 1:
        return None
    return float(min(rate, MAX_HEARTBEAT_HZ))


def request_heartbeat_rate(ap: Any, rate_hz: float | None) -> str | None:
    """Ask the board for HEARTBEAT at `rate_hz` (None or 0: its default); a note if refused."""
    interval = 0.0 if not rate_hz else 1e6 / rate_hz
    try:
        ap.command(
            mavlink.MAV_CMD_SET_MESSAGE_INTERVAL, mavlink.MAVLINK_MSG_ID_HEARTBEAT, interval, timeout=2.0
        )
    except HilError as exc:
        what = f"HEARTBEAT at {rate_hz:g} Hz" if rate_hz else "HEARTBEAT back at its default rate"
        return f"the board refused SET_MESSAGE_INTERVAL for {what} ({exc})"
    return None


#: Figures measured on the host's clock (the rest are on the vehicle's or board's clock).
HOST_CLOCK_FIGURES = frozenset(
    {
        "command_ack_latency_ms",
        "command ack (host clock) p50",
        "sensor_actuator_latency_us",
        "sensor -> actuator (host clock) p50",
        "board_clock_rate",
        "timesync_uncertainty_us",
    }
)


def ran_in_real_time(measurements: dict[str, Any]) -> bool:
    """Whether a run's board clock kept the host's pace (its TIMESYNC fit says so).

    In lockstep, host-clock figures say how busy the host was, not how the firmware did.
    """
    fit = measurements.get("timesync")
    rate = fit.get("rate") if isinstance(fit, dict) else None
    return isinstance(rate, int | float) and abs(rate - 1.0) <= REALTIME_RATE_TOLERANCE


@dataclass
class HostTiming:
    """Collects one run's host-clock evidence; `measurements()` turns it into figures."""

    ap: Any
    loop: Any = None
    samples: list[timesync.TimesyncSample] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    alignment: ClockAlignment | None = None
    _commands_from: int = 0
    _batches: list[list[timesync.TimesyncSample]] = field(default_factory=list)

    def start(self) -> None:
        self._commands_from = len(self.ap.command_log)
        self._sync("start")

    def finish(self) -> None:
        self._sync("end")
        # The quickest half of each batch: a fit that kept the quickest of all samples
        # could take them all from one batch, a few ms apart, where a clock that moves in
        # steps (a simulated board's) reads the same and the rate comes out 0.
        chosen = [
            s
            for batch in self._batches
            for s in sorted(batch, key=lambda s: s.rtt_ns)[: max(2, len(batch) // 2)]
        ]
        if len(self._batches) == 2 and len(chosen) >= 3:
            try:
                self.alignment = timesync.alignment_from(chosen, keep=1.0)
            except HilError as exc:
                self.notes.append(f"clock alignment: {exc}")

    def _sync(self, when: str) -> None:
        try:
            batch = timesync.collect(self.ap, SYNC_SAMPLES, timeout=0.5, interval=0.0)
        except HilError as exc:
            self.notes.append(f"TIMESYNC at the {when} of the run: {exc}")
            return
        self._batches.append(batch)
        self.samples += batch

    # -- figures -----------------------------------------------------------------------
    def measurements(self) -> list[Measurement]:
        out: list[Measurement] = []
        out += self._command_latency()
        out += self._sensor_actuator_latency()
        out += self._alignment_figures()
        return out

    def _command_latency(self) -> list[Measurement]:
        entries = list(self.ap.command_log)[self._commands_from:]
        if not entries:
            return []
        sent = np.array([e[1] for e in entries], dtype=np.int64)
        read = np.array([e[2] for e in entries], dtype=np.int64)
        stats = latency_stats(
            np.zeros(len(entries)), (read - sent) / 1e6,
            pairing="index", unit="ms", resolution=READ_STAMP_MS, name="command ack (host clock)",
        )
        return [
            Measurement("command_ack_latency_ms", stats.max.value, "ms", stats.max.uncertainty),
            stats.p50,
        ]

    def _pairs(self) -> tuple[np.ndarray, np.ndarray] | None:
        stamps = self.loop.answer_stamps()
        if stamps is None or stamps.sent_ns.size < 3:
            return None
        return stamps.sent_ns, stamps.read_ns

    def _sensor_actuator_latency(self) -> list[Measurement]:
        pairs = self._pairs()
        if pairs is None:
            return []
        sent, read = pairs
        stats = latency_stats(
            np.zeros(sent.size), (read - sent) / 1e3,
            pairing="index", unit="us", resolution=READ_STAMP_MS * 1e3,
            name="sensor -> actuator (host clock)",
        )
        return [
            Measurement("sensor_actuator_latency_us", stats.p99.value, "us", stats.p99.uncertainty),
            stats.p50,
        ]

    def _alignment_figures(self) -> list[Measurement]:
        fit = self.alignment
        if fit is None:
            return []
        out = [
            Measurement("board_clock_rate", fit.rate, "", 0.0),
            Measurement("timesync_uncertainty_us", fit.uncertainty_us, "us", 0.0),
        ]
        if abs(fit.rate - 1.0) > REALTIME_RATE_TOLERANCE:
            # A lockstep board's clock runs at the simulation's speed, which varies over a
            # run: one straight line cannot place its stamps between the sync points.
            self.notes.append(
                f"board clock ran at {fit.rate:.3g} x the host's (lockstep): its answer "
                "stamps are not placed on the host clock"
            )
            return out
        board_us = self._answer_board_times()
        if board_us is not None:
            sent, stamps = board_us
            produced = np.asarray(fit.to_host(stamps), dtype=np.float64)
            delays = (produced - sent) / 1e3
            stats = latency_stats(
                np.zeros(delays.size), delays, pairing="index", unit="us",
                resolution=max(fit.uncertainty_us, 1.0), name="sensor -> board answer (aligned)",
            )
            out.append(Measurement("board_answer_latency_us", stats.p50.value, "us", stats.p50.uncertainty))
        return out

    def _answer_board_times(self) -> tuple[np.ndarray, np.ndarray] | None:
        stamps = self.loop.answer_stamps()
        if stamps is None or stamps.sent_ns.size < 3 or stamps.board_us.size != stamps.sent_ns.size:
            return None  # not one stamp per paired answer: cannot tell which belongs to which
        return stamps.sent_ns.astype(np.float64), stamps.board_us.astype(np.float64)

    def summary(self) -> dict[str, Any]:
        return {
            "timesync_samples": len(self.samples),
            "alignment": self.alignment.to_dict() if self.alignment is not None else None,
            "notes": list(self.notes),
        }
