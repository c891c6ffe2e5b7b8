"""The application payload: build and parse round trip, and every reason a board refuses it."""

from __future__ import annotations

import json
import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hil.firmware.app_image import (
    APP_MAGIC,
    BEHAVIOUR_KEYS,
    HEADER,
    AppImageError,
    build_app,
    flight_sw_version,
    parse_app,
)

CONFIG = {"name": "HILCopter", "version": "1.0.0", "loop_rate": 400}
BASE = {"board_id": 7701, **CONFIG}


def _app(**changes: object) -> bytes:
    return build_app(**{**BASE, **changes})  # type: ignore[arg-type]


def _raw(config: dict, board_id: int = 7701, sw: int | None = None) -> bytes:
    body = json.dumps(config).encode()
    if sw is None:
        sw = flight_sw_version(str(config.get("version", "0")))
    return HEADER.pack(APP_MAGIC, board_id, sw, len(body), zlib.crc32(body)) + body


def test_round_trip_keeps_every_field() -> None:
    blob = _app(
        git_identity="abc123",
        params={"FS_THR_ENABLE": 3, "RC_FS_TIMEOUT": 1.5},
        behaviour={"rc_failsafe_extra_delay_s": 2.5},
    )
    app = parse_app(blob + b"\xff" * 1000, board_id=7701)
    assert (app.board_id, app.version, app.name, app.git_identity, app.loop_rate) == (
        7701, "1.0.0", "HILCopter", "abc123", 400,
    )
    assert app.flight_sw_version == (1 << 24) | 255
    assert dict(app.params) == {"FS_THR_ENABLE": 3.0, "RC_FS_TIMEOUT": 1.5}
    assert dict(app.behaviour) == {"rc_failsafe_extra_delay_s": 2.5}


def test_header_layout_matches_the_contract() -> None:
    blob = _app()
    magic, board, sw, length, crc = struct.unpack_from("<8sIIII", blob)
    assert magic == b"HILAPP\x00\x01" and board == 7701 and sw == 0x010000FF
    assert length == len(blob) - 24 and crc == zlib.crc32(blob[24:])


def test_same_config_same_bytes() -> None:
    assert _app(params={"RC_FS_TIMEOUT": 2.0, "FS_THR_ENABLE": 1}) == _app(
        params={"FS_THR_ENABLE": 1, "RC_FS_TIMEOUT": 2.0}
    )


@pytest.mark.parametrize(
    ("blob", "reason"),
    [
        (b"\xff" * 64, "magic"),
        (b"HILAPP", "shorter than"),
        (_app(board_id=9), "board id 9"),
        (_app()[:-3], "config_length"),
        (_app()[:30] + b"X" + _app()[31:], "CRC"),
        (_raw({**CONFIG, "loop_rate": 10}), "loop_rate must be"),
        (_raw({**CONFIG, "loop_rate": 400.5}), "loop_rate must be"),
        (_raw({**CONFIG, "name": ""}), "name"),
        (_raw({**CONFIG, "version": "one"}), "version"),
        (_raw({**CONFIG, "params": {"NOT_A_PARAM": 1}}), "NOT_A_PARAM"),
        (_raw({**CONFIG, "params": {"RC_FS_TIMEOUT": 99.0}}), "out of range"),
        (_raw({**CONFIG, "params": {"FS_THR_ENABLE": 1.5}}), "integer"),
        (_raw({**CONFIG, "params": {"RC_FS_TIMEOUT": "1"}}), "finite number"),
        (_raw({**CONFIG, "behaviour": {"rc_failsafe_extra_delay_s": -1}}), "rc_failsafe_extra_delay_s"),
        (_raw({**CONFIG, "extra": 1}), "unknown config keys"),
        (_raw({**CONFIG}, sw=0x02000000), "flight_sw_version"),
        (_raw([1, 2], sw=0), "JSON object"),  # type: ignore[arg-type]
    ],
)
def test_refusals_name_the_reason(blob: bytes, reason: str) -> None:
    with pytest.raises(AppImageError, match=reason):
        parse_app(blob, board_id=7701)


def test_unknown_behaviour_key_names_the_allowed_ones() -> None:
    with pytest.raises(AppImageError) as info:
        parse_app(_raw({**CONFIG, "behaviour": {"fly_upside_down": 1}}))
    assert "fly_upside_down" in info.value.reason
    for key in BEHAVIOUR_KEYS:
        assert key in info.value.reason


def test_build_validates_too() -> None:
    with pytest.raises(AppImageError, match="loop_rate"):
        _app(loop_rate=5)


@given(st.binary(max_size=300))
def test_garbage_only_raises_app_image_error(data: bytes) -> None:
    try:
        parse_app(data)
    except AppImageError:
        pass


@given(st.binary(min_size=1, max_size=300), st.integers(0, 400))
def test_corrupt_config_bytes_are_refused(noise: bytes, at: int) -> None:
    blob = bytearray(_app(behaviour={"rc_failsafe_extra_delay_s": 1.0}))
    at = 24 + at % (len(blob) - 24)
    before = bytes(blob)
    blob[at : at + len(noise)] = bytes(a ^ b for a, b in zip(blob[at : at + len(noise)], noise, strict=False))
    if bytes(blob) == before:
        return
    with pytest.raises(AppImageError):
        parse_app(bytes(blob))
