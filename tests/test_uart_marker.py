"""The UART sequencing marker: a NAMED_VALUE_INT the board reads on its fast path."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hil.mavlink.dialect import mavlink, new_codec
from hil.mavlink.framing import FrameReader
from hil.mavlink.uart_marker import (
    MAX_COUNT,
    NAMED_VALUE_INT,
    MarkerError,
    marker_name,
    pack_marker,
    parse_marker,
)

uart_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=5)


def _decode(frame: bytes, hot: bool):
    reader = FrameReader(new_codec(1, 1), hot=(NAMED_VALUE_INT,) if hot else ())
    msgs = reader.feed(frame, 0.0)
    assert len(msgs) == 1
    return msgs[0]


@given(uart_names, st.integers(1, MAX_COUNT), st.integers(0, 2**40), st.integers(0, 255))
def test_a_marker_round_trips_through_the_fast_path_and_pymavlink(uart, count, t_us, seq):
    frame = pack_marker(seq, 1, 51, t_us, uart, count)
    for hot in (True, False):
        msg = _decode(frame, hot)
        assert parse_marker(msg) == (uart, count)
        assert msg.time_boot_ms == (t_us // 1000) & 0xFFFFFFFF


@given(st.text(max_size=10).filter(lambda s: s.isascii()), st.integers(-(2**31), 2**31 - 1))
def test_the_fast_path_decodes_any_named_value_int_as_pymavlink_does(name, value):
    msg = mavlink.MAVLink_named_value_int_message(7, name.encode(), value)
    frame = msg.pack(new_codec(1, 51))
    hot = _decode(frame, True)
    slow = _decode(frame, False)
    assert (hot.time_boot_ms, hot.name, hot.value) == (slow.time_boot_ms, slow.name, slow.value)


@given(st.text(max_size=10).filter(lambda s: s.isascii()), st.integers(-(2**31), 2**31 - 1))
def test_other_named_values_are_not_markers(name, value):
    msg = _decode(mavlink.MAVLink_named_value_int_message(0, name.encode(), value).pack(new_codec(1, 1)), True)
    result = parse_marker(msg)
    if result is not None:
        assert name.startswith("HILU_") and value > 0


@given(st.binary(max_size=300))
def test_garbage_never_decodes_into_a_marker_that_raises(data):
    reader = FrameReader(new_codec(1, 1), hot=(NAMED_VALUE_INT,))
    for msg in reader.feed(data, 0.0):
        parse_marker(msg)  # never raises


@pytest.mark.parametrize("uart", ["", "toolongname", "g-s", "gps\x00", "ñ"])
def test_a_bad_uart_name_is_refused(uart):
    with pytest.raises(MarkerError, match="UART name"):
        marker_name(uart)


@pytest.mark.parametrize("count", [0, -1, MAX_COUNT + 1])
def test_a_count_outside_the_field_is_refused(count):
    with pytest.raises(MarkerError, match="byte count"):
        pack_marker(0, 1, 51, 0, "gps", count)


def test_a_marker_other_than_named_value_int_is_none():
    msg = mavlink.MAVLink_heartbeat_message(6, 8, 0, 0, 4, 3)
    assert parse_marker(msg) is None
