"""The virtual board's loop-time model (hil.vfc.looptime) as ground truth for hil.timing.

The model stamps HIL_ACTUATOR_CONTROLS with a seeded loop clock; the analysis of those
stamps must give back the rate, jitter and overruns the parameters ask for.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import serial

from hil.mavlink.dialect import (
    GCS_COMPONENT_ID,
    GCS_SYSTEM_ID,
    SIM_COMPONENT_ID,
    VFC_COMPONENT_ID,
    VFC_SYSTEM_ID,
    mavlink,
    new_codec,
)
from hil.sim.loop import SimConfig, mavlink_loop
from hil.timeout import Deadline
from hil.timing import loop_stats
from hil.vfc.looptime import MAX_JITTER_FRACTION, LoopTimeModel
from hil.vfc.params import ParamStore
from hil.vfc.server import BoardIdentity, VfcServer

M = mavlink
ALL_SENSORS = 0x1FFF
DT_US = 2500  # the board's default SCHED_LOOP_RATE, 400 Hz


# -- the model alone ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rate", "jitter", "overrun", "seed"),
    [
        (400, 400.0, 0.002, 1),
        (1000, 200.0, 0.004, 7),
        (400, 300.0, 0.03, 2),  # overruns above 1 %: the p99 lies among them
        (1000, 0.0, 0.004, 3),
        (2000, 100.0, 0.0, 4),
    ],
)
def test_analysis_of_model_periods_matches_the_configured_truth(rate, jitter, overrun, seed):
    model = LoopTimeModel(rate, jitter, overrun, seed)
    periods = model.periods(20_000)
    stats = loop_stats(periods_us=periods, nominal_hz=rate)
    assert stats.rate.value == pytest.approx(model.expected_rate_hz, rel=0.01)
    assert stats.jitter_p99.value == pytest.approx(model.expected_jitter_us(), rel=0.01, abs=1.0)
    assert stats.overruns.value == np.count_nonzero(periods > 1.5 * model.period_us)


def test_stamps_are_the_first_sample_then_the_seeded_periods():
    model = LoopTimeModel(400, 300.0, 0.05, 9)
    stamps = [model.stamp(12_345 + DT_US * k) for k in range(3000)]
    assert stamps[0] == 12_345
    np.testing.assert_array_equal(np.diff(stamps), LoopTimeModel(400, 300.0, 0.05, 9).periods(2999))
    assert not np.array_equal(
        LoopTimeModel(400, 300.0, 0.05, 9).periods(100),
        LoopTimeModel(400, 300.0, 0.05, 10).periods(100),
    )


def test_jitter_is_limited_so_periods_stay_positive_and_overruns_distinct():
    model = LoopTimeModel(400, 10_000.0, 0.1, 0)
    assert model.jitter_us == MAX_JITTER_FRACTION * 2500
    periods = model.periods(10_000)
    late = periods > 1.5 * 2500
    assert periods.min() > 0
    assert periods[~late].max() <= 1.45 * 2500 + 1 and periods[late].min() >= 1.55 * 2500 - 1


def test_a_replacement_model_carries_on_after_the_clock_it_replaces():
    model = LoopTimeModel(400, 100.0, 0.0, 0, not_before_us=1_000_000)
    assert model.stamp(500_000) == 1_000_000 + DT_US


def test_model_is_off_unless_jitter_or_overruns_are_asked_for():
    params = ParamStore()
    assert LoopTimeModel.from_params(params) is None
    params.set("SIM_LOOP_US", 800)
    assert LoopTimeModel.from_params(params) is None
    params.set("SIM_LOOP_OVR", 0.01)
    assert LoopTimeModel.from_params(params) is not None


@pytest.mark.parametrize(
    "args", [(0, 1.0, 0.0), (float("nan"), 1.0, 0.0), (400, -1.0, 0.0), (400, 1.0, 1.5)]
)
def test_bad_model_settings_are_refused(args):
    with pytest.raises(ValueError):
        LoopTimeModel(*args)


# -- the server, in process, stepped by hand -------------------------------------------------
class Bench:
    """One in-process virtual board and the harness's end of its pty."""

    def __init__(self, tmp_path: Path) -> None:
        self.server = VfcServer(
            BoardIdentity("HILLOOPT01"), tmp_path / "params.json", log=lambda text: None
        )
        self.port = serial.Serial(self.server.port, timeout=0)
        self.gcs = new_codec(GCS_SYSTEM_ID, GCS_COMPONENT_ID)
        self.sim = new_codec(GCS_SYSTEM_ID, SIM_COMPONENT_ID)
        self.parser = new_codec(GCS_SYSTEM_ID, GCS_COMPONENT_ID)

    def close(self) -> None:
        self.port.close()
        self.server.close()

    def ask(self, msg: Any, want: str, match=lambda m: True, *, as_sim: bool = False) -> Any:
        """Send `msg`, serve, and return the first `want` message meeting `match`."""
        codec = self.sim if as_sim else self.gcs
        self.port.write(msg.pack(codec))
        codec.seq = (codec.seq + 1) % 256
        deadline = Deadline(2.0)
        seen: list[str] = []
        while not deadline.expired:
            self.server.serve_once(0.01)
            for m in self.parser.parse_buffer(self.port.read(65536)) or []:
                if m.get_type() == want and match(m):
                    return m
                seen.append(m.get_type())
        pytest.fail(f"no {want} from the in-process board within 2 s; saw {seen[-20:]}")

    def set_param(self, name: str, value: float) -> None:
        reply = self.ask(
            self.gcs.param_set_encode(
                VFC_SYSTEM_ID, VFC_COMPONENT_ID, name.encode(), value, M.MAV_PARAM_TYPE_REAL32
            ),
            "PARAM_VALUE",
            lambda m: m.param_id == name,
        )
        assert reply.param_value == pytest.approx(value)

    def step(self, t_us: int) -> Any:
        """HIL_SENSOR for `t_us`; the answer (one per sample, in order)."""
        return self.ask(
            self.sim.hil_sensor_encode(
                t_us, 0, 0, -9.80665, 0, 0, 0, 0.2, 0.0, 0.4, 1013.25, 0, 0, 20.0, ALL_SENSORS
            ),
            "HIL_ACTUATOR_CONTROLS",
            as_sim=True,
        )


@pytest.fixture
def bench(tmp_path: Path):
    b = Bench(tmp_path)
    try:
        yield b
    finally:
        b.close()


def test_without_the_model_the_answer_names_its_sample_and_is_lockstep(bench):
    reply = bench.step(DT_US)
    assert reply.time_usec == DT_US and reply.flags & 1


def test_with_the_model_answers_carry_the_seeded_loop_clock(bench):
    for name, value in (("SIM_LOOP_SEED", 5), ("SIM_LOOP_JIT", 300), ("SIM_LOOP_OVR", 0.05)):
        bench.set_param(name, value)
    answers = [bench.step(DT_US * k) for k in range(1, 301)]
    stamps = np.array([a.time_usec for a in answers])
    assert stamps[0] == DT_US
    np.testing.assert_array_equal(np.diff(stamps), LoopTimeModel(400, 300, 0.05, 5).periods(299))
    assert not any(a.flags & 1 for a in answers)  # time_usec no longer echoes the sample


def test_reconfiguring_never_turns_the_loop_clock_back_and_off_restores_lockstep(bench):
    bench.set_param("SIM_LOOP_OVR", 0.5)
    stamps = [bench.step(DT_US * k).time_usec for k in range(1, 41)]
    assert stamps[-1] > DT_US * 45  # half the loops overran: the loop clock ran ahead
    bench.set_param("SIM_LOOP_JIT", 500)
    stamps += [bench.step(DT_US * k).time_usec for k in range(41, 81)]
    assert np.all(np.diff(stamps) > 0)
    bench.set_param("SIM_LOOP_OVR", 0)
    bench.set_param("SIM_LOOP_JIT", 0)
    reply = bench.step(DT_US * 81)
    assert reply.time_usec == DT_US * 81 and reply.flags & 1


def test_sys_status_load_reports_the_modelled_loop_cost(bench):
    bench.step(DT_US)
    bench.set_param("SIM_LOOP_US", 1250)  # half of the 2500 us period
    status = bench.ask(
        bench.gcs.command_long_encode(
            VFC_SYSTEM_ID, VFC_COMPONENT_ID, M.MAV_CMD_REQUEST_MESSAGE, 0,
            M.MAVLINK_MSG_ID_SYS_STATUS, 0, 0, 0, 0, 0, 0,
        ),
        "SYS_STATUS",
    )
    assert status.load == 500


# -- a real board process, flown by the harness's closed loop -------------------------------
RATE_HZ = 1000.0
JITTER_US = 200.0
OVERRUN = 0.004
SEED = 7
PERIODS = 4000


def test_measured_loop_rate_and_jitter_match_the_boards_ground_truth(board_session):
    """In lockstep: the loop takes an answer stamped with the board's own loop clock as
    the answer to the oldest sample in flight, and keeps every stamp."""
    ap = board_session.autopilot
    ap.set_param("SCHED_LOOP_RATE", RATE_HZ)
    ap.set_param("SIM_LOOP_SEED", SEED)
    ap.set_param("SIM_LOOP_JIT", JITTER_US)
    ap.set_param("SIM_LOOP_OVR", OVERRUN)
    loop = mavlink_loop(ap, SimConfig(rate_hz=RATE_HZ, lockstep=True, seed=SEED))
    stamps = loop.link.answer_log.board_us  # grows as the loop takes answers
    bound = PERIODS / RATE_HZ * 10 + 20.0
    loop.start()
    try:
        deadline = Deadline(bound)
        while len(stamps) <= PERIODS:
            assert loop.error is None, f"closed loop stopped: {loop.error}"
            if deadline.expired:
                pytest.fail(
                    f"waited {bound:.0f} s for {PERIODS + 1} HIL_ACTUATOR_CONTROLS from "
                    f"{ap.conn.link.url}; got {len(stamps)}"
                )
            time.sleep(0.05)
    finally:
        loop.stop()
    received = np.asarray(stamps[: PERIODS + 1], dtype=np.int64)
    model = LoopTimeModel(RATE_HZ, JITTER_US, OVERRUN, SEED)
    truth = model.periods(PERIODS)
    stats = loop_stats(received, nominal_hz=RATE_HZ)
    print(
        f"\nmeasured: {stats}\nground truth: rate {model.expected_rate_hz:.3f} Hz, jitter p99 "
        f"{model.expected_jitter_us():.2f} us, overruns {np.count_nonzero(truth > 1500)}"
    )
    # Every stamp arrived, in order, as the board made it.
    np.testing.assert_array_equal(np.diff(received), truth)
    assert stats.overruns.value == np.count_nonzero(truth > 1.5 * model.period_us)
    assert stats.rate.value == pytest.approx(model.expected_rate_hz, rel=0.01)
    assert stats.jitter_p99.value == pytest.approx(model.expected_jitter_us(), rel=0.01)
