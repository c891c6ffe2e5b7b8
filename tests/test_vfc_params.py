"""ParamStore: limits, rounding, and the board's flash file surviving reboots and damage."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from hil.errors import ParamError
from hil.firmware.paramdefs import PARAM_DEFS, ParamDef
from hil.vfc.params import ParamStore

DEFS = (
    ParamDef("RATE", 400.0, "int", 50.0, 2000.0, "an int"),
    ParamDef("GAIN", 0.5, "float", 0.0, 0.8, "a float"),
    ParamDef("ALT", 1500.0, "float", 200.0, 3000.0, "another float"),
)


def test_defaults_come_from_the_definitions_in_their_order() -> None:
    store = ParamStore(DEFS)
    assert store.names() == ("RATE", "GAIN", "ALT")
    assert [store.index(n) for n in store.names()] == [0, 1, 2]
    assert dict(store.items()) == {"RATE": 400.0, "GAIN": 0.5, "ALT": 1500.0}


def test_the_default_definitions_load() -> None:
    store = ParamStore()
    assert len(store) == len(PARAM_DEFS)
    assert store.get("SCHED_LOOP_RATE") == 400.0


def test_int_parameters_are_rounded() -> None:
    store = ParamStore(DEFS)
    assert store.set("RATE", 399.6) == 400.0
    assert store.get("RATE") == 400.0


@pytest.mark.parametrize("value", [49.0, 2001.0, math.nan, math.inf, "abc"])
def test_out_of_range_or_non_finite_values_are_refused_unchanged(value: object) -> None:
    store = ParamStore(DEFS)
    with pytest.raises(ParamError, match="RATE"):
        store.set("RATE", value)  # type: ignore[arg-type]
    assert store.get("RATE") == 400.0


def test_unknown_names_are_refused() -> None:
    store = ParamStore(DEFS)
    with pytest.raises(ParamError, match="NOPE"):
        store.set("NOPE", 1.0)
    with pytest.raises(ParamError):
        store.get("NOPE")


def test_a_float32_limit_is_accepted_as_the_limit() -> None:
    store = ParamStore(DEFS)
    assert store.set("GAIN", 0.800000011920929) == 0.8


def test_values_round_trip_through_the_storage_file(tmp_path: Path) -> None:
    path = tmp_path / "flash.bin"
    store = ParamStore(DEFS, path)
    store.set("ALT", 2500.0)
    store.set("RATE", 800)
    store.save()
    again = ParamStore(DEFS, path)
    assert again.load() == 2
    assert again.get("ALT") == 2500.0 and again.get("RATE") == 800.0
    assert again.get("GAIN") == 0.5


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x00\xff garbage",
        b"HILVFC-PARAMS 1\n{not json",
        b"HILVFC-PARAMS 9\n{}",
        b'HILVFC-PARAMS 1\n["a"]',
        b"ELF\x7f not ours",
    ],
)
def test_a_corrupt_or_foreign_storage_file_is_reported_and_ignored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    path = tmp_path / "flash.bin"
    path.write_bytes(content)
    store = ParamStore(DEFS, path)
    assert store.load() == 0
    assert dict(store.items()) == {"RATE": 400.0, "GAIN": 0.5, "ALT": 1500.0}
    assert str(path) in capsys.readouterr().err


def test_stored_values_that_no_longer_fit_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "flash.bin"
    path.write_bytes(b'HILVFC-PARAMS 1\n{"ALT": 99999, "GONE": 1, "RATE": 100}\n')
    store = ParamStore(DEFS, path)
    assert store.load() == 1
    assert store.get("RATE") == 100.0 and store.get("ALT") == 1500.0


def test_saving_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = ParamStore(DEFS, tmp_path / "flash.bin")
    store.set("ALT", 300.0)
    store.save()
    store.save()
    assert [p.name for p in tmp_path.iterdir()] == ["flash.bin"]
