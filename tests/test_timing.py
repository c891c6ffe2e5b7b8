"""Timing analysis (hil.timing): loop statistics, latencies, clock alignment, measurements."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.timing import ClockAlignment, Measurement, latency_stats, loop_stats

periods_us = st.integers(min_value=50, max_value=100_000)


# -- loop_stats ------------------------------------------------------------------------------
@settings(deadline=None)
@given(
    period=periods_us,
    n=st.integers(min_value=1, max_value=3000),
    start=st.integers(min_value=0, max_value=2**40),
)
def test_constant_period_has_zero_jitter_and_rate_one_over_period(period, n, start):
    stamps = start + period * np.arange(n + 1, dtype=np.int64)
    stats = loop_stats(stamps)
    assert stats.n == n
    assert stats.jitter_p99.value == 0.0
    assert stats.rate.value == pytest.approx(1e6 / period, rel=1e-12)
    for m in (stats.period_mean, stats.period_p50, stats.period_p99, stats.period_max):
        assert m.value == pytest.approx(period, rel=1e-12)
    assert stats.overruns.value == 0
    assert stats.nominal_from == "median"


@settings(deadline=None)
@given(period=periods_us, n=st.integers(min_value=1, max_value=500))
def test_constant_period_at_its_nominal_rate_has_zero_jitter(period, n):
    stats = loop_stats(periods_us=np.full(n, float(period)), nominal_hz=1e6 / period)
    assert stats.jitter_p99.value == pytest.approx(0.0, abs=1e-6)
    assert stats.nominal_from == "given"


@settings(deadline=None)
@given(
    data=st.data(),
    period=st.integers(min_value=100, max_value=20_000),
    n=st.integers(min_value=20, max_value=2000),
    seed=st.integers(0, 2**32 - 1),
    given_nominal=st.booleans(),
)
def test_injected_overruns_are_all_found(data, period, n, seed, given_nominal):
    rng = np.random.default_rng(seed)
    periods = np.rint(period + rng.uniform(-0.1, 0.1, n) * period)
    k = data.draw(st.integers(min_value=0, max_value=(n - 1) // 2), label="overruns")
    where = rng.choice(n, size=k, replace=False)
    periods[where] += rng.integers(period, 2 * period, size=k, endpoint=True)
    stamps = np.concatenate([[0], np.cumsum(periods)]).astype(np.int64)
    stats = loop_stats(stamps, 1e6 / period if given_nominal else None)
    assert stats.overruns.value == k
    assert stats.period_max.value == periods.max()


@settings(deadline=None)
@given(
    period=st.integers(min_value=200, max_value=10_000),
    n=st.integers(min_value=2, max_value=2000),
    seed=st.integers(0, 2**32 - 1),
    spread=st.floats(min_value=0.0, max_value=0.4),
)
def test_jitter_is_p99_of_deviation_from_nominal(period, n, seed, spread):
    rng = np.random.default_rng(seed)
    periods = period * (1 + rng.uniform(-spread, spread, n))
    stats = loop_stats(periods_us=periods, nominal_hz=1e6 / period)
    assert stats.jitter_p99.value == pytest.approx(
        np.quantile(np.abs(periods - period), 0.99), rel=1e-9, abs=1e-9
    )
    assert stats.rate.value == pytest.approx(1e6 / periods.mean(), rel=1e-12)


@settings(deadline=None)
@given(
    period=st.integers(min_value=200, max_value=10_000),
    n=st.integers(min_value=2, max_value=3000),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_figure_carries_at_least_the_timestamp_resolution(period, n, seed):
    rng = np.random.default_rng(seed)
    stamps = np.cumsum(np.rint(period + rng.normal(0, period * 0.05, n + 1).clip(-period / 2)))
    stats = loop_stats(stamps.astype(np.int64), resolution_us=1.0)
    for m in (stats.period_p50, stats.period_p99, stats.period_max, stats.jitter_p99):
        assert math.isfinite(m.uncertainty) and m.uncertainty >= 1.0
    assert stats.rate.uncertainty > 0 and stats.period_mean.uncertainty > 0


def test_percentile_uncertainty_shrinks_with_more_samples():
    rng = np.random.default_rng(5)
    few = loop_stats(periods_us=2500 + rng.uniform(-300, 300, 200), nominal_hz=400)
    many = loop_stats(periods_us=2500 + rng.uniform(-300, 300, 20_000), nominal_hz=400)
    assert many.jitter_p99.uncertainty < few.jitter_p99.uncertainty
    assert many.rate.uncertainty < few.rate.uncertainty


def test_loop_stats_serialises_to_json():
    stats = loop_stats([0, 2500, 5000, 10_000], nominal_hz=400)
    record = json.loads(json.dumps(stats.to_dict()))
    names = [m["name"] for m in record["measurements"]]
    assert "loop rate" in names and "loop jitter p99" in names
    assert record["nominal_from"] == "given"
    assert "1 overrun" in str(stats)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timestamps_us": []}, "at least 2"),
        ({"timestamps_us": [5]}, "at least 2"),
        ({"timestamps_us": [0, 1, float("nan")]}, "NaN or infinite"),
        ({"timestamps_us": [0, float("inf")]}, "NaN or infinite"),
        ({"timestamps_us": [0, 10, 5, 20]}, "increase strictly: sample 2"),
        ({"timestamps_us": [0, 10, 10]}, "increase strictly"),
        ({"timestamps_us": [[0, 1], [2, 3]]}, "1-D"),
        ({"timestamps_us": ["a", "b"]}, "expected numbers"),
        ({"timestamps_us": [0, 1], "periods_us": [1]}, "exactly one"),
        ({}, "exactly one"),
        ({"periods_us": []}, "at least 1"),
        ({"periods_us": [10, 0]}, "must be > 0"),
        ({"periods_us": [10, -3]}, "must be > 0"),
        ({"timestamps_us": [0, 1], "nominal_hz": 0}, "nominal_hz"),
        ({"timestamps_us": [0, 1], "nominal_hz": float("nan")}, "nominal_hz"),
        ({"timestamps_us": [0, 1], "resolution_us": -1}, "resolution_us"),
    ],
)
def test_bad_loop_input_raises_a_clear_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        loop_stats(**kwargs)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(allow_nan=True, allow_infinity=True),
            st.integers(min_value=-(2**63), max_value=2**63 - 1),
        ),
        max_size=30,
    ),
    st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
)
def test_garbage_timestamps_give_stats_or_value_error_only(values, nominal):
    try:
        stats = loop_stats(values, nominal)
    except ValueError as exc:
        assert str(exc)
        return
    for m in stats.measurements():
        assert math.isfinite(m.value) and math.isfinite(m.uncertainty)


# -- latency_stats ------------------------------------------------------------------------
@settings(deadline=None)
@given(
    n=st.integers(min_value=1, max_value=500),
    seed=st.integers(0, 2**32 - 1),
    gap=st.integers(min_value=10, max_value=10_000),
)
def test_latencies_are_recovered_and_silent_causes_counted(n, seed, gap):
    rng = np.random.default_rng(seed)
    causes = np.cumsum(rng.integers(gap, 2 * gap, n)).astype(float)
    delays = rng.uniform(0, gap - 1, n)
    answered = rng.random(n) < 0.8
    answered[0] = True
    effects = (causes + delays)[answered]
    stats = latency_stats(causes, effects)
    assert stats.paired == answered.sum()
    assert stats.unanswered == n - answered.sum()
    np.testing.assert_allclose(stats.latencies, delays[answered])
    assert stats.max.value == pytest.approx(delays[answered].max())


def test_an_effect_answers_only_the_latest_cause_before_it():
    stats = latency_stats([0, 10, 20, 30], [3, 14, 15, 40])
    # 3 answers 0, 14 answers 10 (15 is a second answer: ignored), nothing in [20, 30),
    # 40 answers 30.
    np.testing.assert_array_equal(stats.latencies, [3, 4, 10])
    assert stats.unanswered == 1


def test_max_latency_bounds_the_window():
    stats = latency_stats([0, 100], [10, 150], max_latency=20)
    np.testing.assert_array_equal(stats.latencies, [10])  # 150 is 50 after its cause
    assert stats.unanswered == 1


def test_index_pairing_takes_pairs_as_given():
    stats = latency_stats([0, 10, 20], [1, 12, 23], pairing="index", unit="ms", resolution=0.5)
    np.testing.assert_array_equal(stats.latencies, [1, 2, 3])
    assert stats.mean.unit == "ms"
    assert stats.max.uncertainty == 0.5


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (([], [1]), {}, "at least 1"),
        (([0, 10], []), {}, "none of the 2 causes"),
        (([0, 10], [5]), {"max_latency": 1}, "none of the 2 causes"),
        (([10, 0], [5]), {}, "must be sorted"),
        (([0, 10], [5, 1]), {}, "must be sorted"),
        (([0, float("nan")], [5]), {}, "NaN"),
        (([0, 1], [5]), {"pairing": "index"}, "as many effects"),
        (([0, 1], [5, 6]), {"pairing": "nearest"}, "pairing must be"),
        (([0, 1], [5, 6]), {"max_latency": -1}, "max_latency"),
    ],
)
def test_bad_latency_input_raises_a_clear_value_error(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        latency_stats(*args, **kwargs)


# -- ClockAlignment -----------------------------------------------------------------------
@settings(max_examples=100, deadline=None)
@given(
    offset_s=st.floats(min_value=-1e5, max_value=1e5),
    drift_ppm=st.floats(min_value=-500, max_value=500),
    n=st.integers(min_value=12, max_value=400),
    outlier_share=st.floats(min_value=0.0, max_value=0.25),
    seed=st.integers(0, 2**32 - 1),
)
def test_alignment_recovers_offset_and_drift_despite_outliers(
    offset_s, drift_ppm, n, outlier_share, seed
):
    rng = np.random.default_rng(seed)
    host0 = 10**15
    host = host0 + np.sort(rng.integers(0, 20 * 10**9, n))  # 20 s of samples
    rate = 1 + drift_ppm * 1e-6

    def truth(h):
        return offset_s * 1e6 + rate * (h - host0) / 1e3

    board = truth(host) + rng.normal(0, 20, n)  # 20 us of noise
    bad = rng.choice(n, size=int(outlier_share * n), replace=False)
    board[bad] += rng.choice([-1, 1], bad.size) * rng.uniform(5_000, 50_000, bad.size)
    fit = ClockAlignment.fit(host, board)
    assert fit.drift_ppm == pytest.approx(drift_ppm, abs=10)
    probe = host[[0, n // 2, -1]]
    # The uncertainty is a 95 % bound, and hypothesis hunts for the other 5 %: allow 3x.
    np.testing.assert_allclose(fit.to_board(probe), truth(probe), atol=3 * fit.uncertainty_us)
    assert fit.uncertainty_us < 500  # the outliers did not inflate it
    np.testing.assert_allclose(fit.to_host(fit.to_board(probe)), probe, rtol=0, atol=1.0)


def test_alignment_keeps_the_quickest_round_trips():
    rng = np.random.default_rng(3)
    n = 100
    host = np.arange(n) * 10**8  # 100 ms apart
    true_board = 1e6 + host / 1e3
    rtt = rng.uniform(0.2e6, 0.4e6, n)  # 0.2 - 0.4 ms
    slow = rng.random(n) < 0.4
    rtt[slow] = rng.uniform(2e6, 9e6, slow.sum())
    # A slow round trip hides an asymmetric delay of up to the whole round trip.
    board = true_board + np.where(slow, rtt / 1e3 * 0.9, rng.uniform(-1, 1, n) * rtt / 2e3)
    fit = ClockAlignment.fit(host, board, rtt)
    assert fit.n_used <= n // 2
    np.testing.assert_allclose(fit.to_board(host), true_board, atol=fit.uncertainty_us)
    assert 0.1e3 <= fit.uncertainty_us * 1e3 <= 1e6  # at least half the quickest round trip


def test_a_clock_that_stood_still_cannot_be_mapped_to_host_time():
    fit = ClockAlignment.fit([0, 10**6, 2 * 10**6, 3 * 10**6], [5.0, 5.0, 5.0, 5.0])
    assert fit.rate == 0.0
    assert fit.to_board(10**9) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="did not advance"):
        fit.to_host(5.0)


def test_one_sample_gives_an_offset_at_rate_one():
    fit = ClockAlignment.fit([10**9], [250.0], [2000])
    assert fit.rate == 1.0
    assert fit.to_board(10**9) == pytest.approx(250.0)
    assert fit.uncertainty_us == pytest.approx(1.0)  # the board's 1 us resolution
    assert json.loads(json.dumps(fit.to_dict()))["n_used"] == 1


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (([], []), {}, "at least 1"),
        (([1, 2], [1]), {}, "2 samples but board_us has 1"),
        (([1, float("nan")], [1, 2]), {}, "NaN"),
        (([1, 2], [1, 2], [1]), {}, "rtt_ns has 1"),
        (([1, 2], [1, 2], [-1, 1]), {}, "negative"),
        (([1, 2], [1, 2], [2e7, 3e7]), {}, "longer than 10 ms"),
        (([1, 2], [1, 2]), {"keep": 0}, "keep"),
        (([1, 2], [1, 2]), {"clip": float("nan")}, "clip"),
    ],
)
def test_bad_alignment_input_raises_a_clear_value_error(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ClockAlignment.fit(*args, **kwargs)


# -- Measurement ----------------------------------------------------------------------------
def test_a_value_within_its_uncertainty_of_a_limit_is_marginal():
    near = Measurement("RTL delay", 2.31, "s", 0.05, maximum=2.35)
    assert near.passed and near.marginal and near.verdict == "marginal"
    over = Measurement("RTL delay", 2.38, "s", 0.05, maximum=2.35)
    assert not over.passed and over.verdict == "marginal"
    clear = Measurement("RTL delay", 2.31, "s", 0.05, maximum=2.5)
    assert clear.verdict == "pass" and not clear.marginal
    fail = Measurement("RTL delay", 2.31, "s", 0.05, minimum=2.5)
    assert fail.verdict == "fail"
    assert "2.31 ± 0.05 s (limit >= 2.5 s): fail" in str(fail)


def test_within_sets_limits_and_to_dict_is_json():
    m = Measurement("loop rate", 399.0, "Hz", 0.5).within(minimum=390.0)
    record = json.loads(json.dumps(m.to_dict()))
    assert record == {
        "name": "loop rate", "value": 399.0, "unit": "Hz", "uncertainty": 0.5,
        "minimum": 390.0, "maximum": None, "passed": True, "marginal": False, "verdict": "pass",
    }
    assert Measurement("x", 1.0, "").passed


@pytest.mark.parametrize(
    "kwargs",
    [
        {"value": float("nan")},
        {"value": 1.0, "uncertainty": -1.0},
        {"value": 1.0, "uncertainty": float("inf")},
        {"value": 1.0, "minimum": 2.0, "maximum": 1.0},
        {"value": 1.0, "maximum": float("nan")},
        {"value": "fast"},
    ],
)
def test_bad_measurements_are_refused(kwargs):
    with pytest.raises(ValueError, match="measurement 'm'"):
        Measurement("m", unit="us", **kwargs)


finite_or_not = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(finite_or_not, finite_or_not, finite_or_not), max_size=20),
    st.booleans(),
)
def test_garbage_clock_samples_give_an_alignment_or_value_error_only(rows, with_rtt):
    host = [r[0] for r in rows]
    board = [r[1] for r in rows]
    rtt = [r[2] for r in rows] if with_rtt else None
    try:
        fit = ClockAlignment.fit(host, board, rtt)
    except ValueError as exc:
        assert str(exc)
        return
    assert math.isfinite(fit.rate) and math.isfinite(fit.uncertainty_us)


@settings(max_examples=200, deadline=None)
@given(st.lists(finite_or_not, max_size=20), st.lists(finite_or_not, max_size=20))
def test_garbage_events_give_latencies_or_value_error_only(causes, effects):
    try:
        stats = latency_stats(causes, effects)
    except ValueError as exc:
        assert str(exc)
        return
    assert all(math.isfinite(m.value) for m in stats.measurements())
