"""TIMESYNC clock alignment (hil.autopilot.timesync): a scripted link, then the virtual board."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from hil.autopilot.timesync import TimesyncSample, alignment_from, collect, exchange, sync_clock
from hil.errors import BoardNotAnswering, HilError, WaitTimeout
from hil.mavlink.dialect import mavlink


class ScriptedBoard:
    """A board whose clock is `offset_us + rate * host_us`, behind a link whose one-way
    delays (ns) are scripted per exchange; None for the way back loses the reply."""

    def __init__(self, offset_us: float, rate: float, delays: list[tuple[int, int | None]]):
        self.offset_us = offset_us
        self.rate = rate
        self.delays = iter(delays)
        self.now = 5 * 10**12  # the host's clock, ns
        self.conn = self
        self.link = SimpleNamespace(url="scripted://board")
        self.reply: Any = None

    def board_us(self, host_ns: float) -> float:
        return self.offset_us + self.rate * host_ns / 1e3

    def clock(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += int(seconds * 1e9)

    def send(self, msg: Any) -> None:
        out, back = next(self.delays)
        self.now += out
        tc1 = int(self.board_us(self.now) * 1e3)
        self.reply = None
        if back is not None:
            self.now += back
            self.reply = mavlink.MAVLink_timesync_message(tc1, msg.ts1)
            self.reply._t_ns = self.now

    def mark(self) -> int:
        return 0

    def wait_for(self, what: str, predicate, **kwargs: Any) -> Any:
        if self.reply is not None and predicate(self.reply):
            return self.reply
        raise WaitTimeout(f"timed out waiting for {what}")


def test_one_exchange_pairs_the_board_reading_with_the_round_trip():
    board = ScriptedBoard(1000.0, 1.0, [(300_000, 500_000)])
    sample = exchange(board, clock=board.clock)
    assert sample.rtt_ns == 800_000
    assert sample.board_ns == int(board.board_us(sample.sent_ns + 300_000) * 1e3)
    # The midpoint assumption is off by half the asymmetry: (500 - 300) / 2 us.
    assert sample.offset_ns == pytest.approx(1000e3 - 100e3)


def test_alignment_recovers_offset_and_drift_keeping_the_quick_round_trips():
    quick = [(100_000 + 7_000 * (i % 5), 110_000 - 5_000 * (i % 3)) for i in range(24)]
    slow = [(50_000, 4_000_000), (6_000_000, 100_000), (80_000, 9_000_000)] * 4
    slow += [(20_000_000, 100_000)] * 3  # above the 10 ms round-trip limit
    delays = [d for pair in zip(quick, slow + quick[: len(quick) - len(slow)], strict=True)
              for d in pair]
    board = ScriptedBoard(-7_000_000.0, 1 + 40e-6, delays)
    fit = sync_clock(board, len(delays), clock=board.clock, sleep=board.sleep, interval=0.05)
    assert fit.drift_ppm == pytest.approx(40, abs=2)
    host = board.now
    assert fit.to_board(host) == pytest.approx(board.board_us(host), abs=fit.uncertainty_us)
    # The slow, lopsided round trips were not used: what is left is half the quickest one.
    assert fit.residual_us < 20
    assert fit.uncertainty_us == pytest.approx(100.0)
    assert fit.n_used <= len(delays) // 2 + 1


def test_a_few_lost_replies_are_skipped_but_a_silent_board_is_an_error():
    delays = [(100_000, 100_000), (100_000, None)] * 4
    board = ScriptedBoard(0.0, 1.0, delays)
    samples = collect(board, 8, clock=board.clock, sleep=board.sleep)
    assert len(samples) == 4
    silent = ScriptedBoard(0.0, 1.0, [(100_000, None)] * 4 + [(100_000, 100_000)])
    with pytest.raises(BoardNotAnswering, match="answered only 1 of 5 TIMESYNC"):
        collect(silent, 5, clock=silent.clock, sleep=silent.sleep)


def test_samples_all_too_slow_give_a_clear_error():
    samples = [TimesyncSample(0, 20_000_000, 5_000_000)] * 3
    with pytest.raises(HilError, match="longer than 10 ms"):
        alignment_from(samples)
    with pytest.raises(ValueError, match="no TIMESYNC samples"):
        alignment_from([])


# -- the virtual board ---------------------------------------------------------------------------
def test_a_board_with_no_simulator_has_a_clock_that_stands_still(autopilot):
    fit = sync_clock(autopilot, 8)
    assert fit.n_total == 8
    assert fit.rate == 0.0
    with pytest.raises(ValueError, match="did not advance"):
        fit.to_host(0.0)


def test_a_lockstep_board_clock_runs_at_simulation_speed(autopilot, sim):
    target = autopilot.vehicle_time + 0.5
    autopilot.wait_for("0.5 s of flight", lambda m: autopilot.vehicle_time >= target, within=2.0)
    fit = sync_clock(autopilot, 16, interval=0.02)
    assert fit.n_used >= 3
    assert fit.rate > 0  # board us per host us: the lockstep speed
    host = fit.host_ref_ns + 10**6
    assert fit.to_host(fit.to_board(host)) == pytest.approx(host, abs=1.0)
