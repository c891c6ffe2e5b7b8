"""Rig files, fuzzed: whatever a rig file holds, loading it either gives boards whose
values have the declared types and whose files stay inside the state directory, or
raises ConfigError. Never TypeError, ValueError, KeyError or a file written elsewhere.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hil.boards.virtual import VirtualBoard
from hil.errors import ConfigError, HilError
from hil.rig import BOARD_TYPES, SAFE_NAME, Rig
from hil.search.strategies import toml_value

#: Every key some board type knows, plus a few it does not.
KNOWN_KEYS = sorted({key for factory in BOARD_TYPES.values() for key in getattr(factory, "KEYS", ())})
KEYS = st.sampled_from([*KNOWN_KEYS, "speed", "Name", ""])

TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40)
NASTY_TEXT = st.sampled_from(
    ["..", ".", "../../x y", "a/b", "/etc", "~nosuchuser/x", "x" * 300, "a\x00b", "", " ", "uart:ubx",
     "virtual", "mavlink", "betaflight-sitl", "HILVFC0001", "1.0.0", "tcp:127.0.0.1:5760", "no", "true"]
)
SCALARS = st.one_of(
    TEXT,
    NASTY_TEXT,
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.dates(),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)


#: A board a user might write, per type: the starting point that a few keys are changed from.
PLAUSIBLE = {
    "virtual": {"name": "copter1", "type": "virtual", "usb_serial": "HILVFC0001", "gps": "uart:ubx"},
    "mavlink": {"name": "fc1", "type": "mavlink", "url": "tcp:127.0.0.1:5760", "baud": 57600},
    "betaflight-sitl": {"name": "bf1", "type": "betaflight-sitl", "state_rate_hz": 1000},
}
PLAUSIBLE_VALUES = st.one_of(
    SCALARS,
    st.sampled_from([True, False, 0, 1, 115200, 1e9, -1, 7701, 2.5, "uart:crsf", "hil", "auto", "fifo"]),
)


@st.composite
def plausible_board(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted(PLAUSIBLE)))
    board = dict(PLAUSIBLE[kind])
    keys = sorted(getattr(BOARD_TYPES[kind], "KEYS", ()))
    for key in draw(st.lists(st.sampled_from(keys), max_size=3)):
        board[key] = draw(PLAUSIBLE_VALUES | VALUES)
    if draw(st.booleans()):
        board.pop(draw(st.sampled_from(sorted(board))))
    return board


BOARD = st.dictionaries(KEYS, VALUES, max_size=6) | plausible_board()
RIG = st.dictionaries(st.sampled_from(["name", "description", "other"]), VALUES, max_size=2)


def document(rig: dict[str, Any] | None, boards: list[dict[str, Any]]) -> str:
    lines = []
    if rig is not None:
        lines.append("[rig]")
        lines += [f"{toml_value(k)} = {toml_value(v)}" for k, v in rig.items()]
    for board in boards:
        lines.append("[[board]]")
        lines += [f"{toml_value(k)} = {toml_value(v)}" for k, v in board.items()]
    return "\n".join(lines) + "\n"


def _load_and_use(text: str | bytes) -> None:
    """Load the rig and touch what the harness reads from its boards before starting them."""
    with tempfile.TemporaryDirectory(prefix="hil-rigfuzz-") as tmp:
        path = Path(tmp) / "rig.toml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        state = Path(tmp) / "state"
        try:
            rig = Rig.load(path, work_dir=state)
        except ConfigError as exc:
            assert "\n" not in str(exc), "a rig error is one line"
            return
        try:
            for board in rig.boards:
                assert SAFE_NAME.fullmatch(board.name)
                if board.usb_serial:
                    assert SAFE_NAME.fullmatch(board.usb_serial)
                assert isinstance(board.lockstep, bool) and isinstance(board.simulated, bool)
                assert isinstance(board.baud, int) and board.baud > 0
                assert isinstance(board.uart_protocols, dict)
                assert isinstance(board.state, str)
                if isinstance(board, VirtualBoard):
                    assert isinstance(board.board_id, int)
                    assert isinstance(board.firmware_version, str)
                    assert board.sector_erase_s is None or board.sector_erase_s >= 0
                    assert board.factory_image.name
                    assert state.resolve() in board.flash_path.resolve().parents
                try:
                    board.url(timeout=0.0)
                except HilError:
                    pass
        finally:
            rig.stop()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rig=st.none() | RIG, boards=st.lists(BOARD, max_size=3))
def test_any_rig_document_loads_or_raises_config_error(rig, boards):
    _load_and_use(document(rig, boards))


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_any_text_loads_or_raises_config_error(text):
    _load_and_use(text)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=200))
def test_any_bytes_load_or_raise_config_error(data):
    _load_and_use(data)


@settings(max_examples=200, deadline=None)
@given(name=NASTY_TEXT | TEXT)
def test_a_board_name_or_serial_never_leaves_the_state_directory(name):
    for key in ("name", "usb_serial"):
        board = {"type": "virtual", "usb_serial": "HILVFC0001", key: name}
        _load_and_use(document(None, [board]))
