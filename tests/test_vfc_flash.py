"""The virtual board's flash: sectors, NOR programming, a protected bootloader sector."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hil.vfc.flash import APP_BASE, APP_SIZE, FLASH_BASE, FLASH_TOTAL, SECTORS, Flash, FlashError


@pytest.fixture
def flash(tmp_path):
    with Flash(tmp_path / "flash.bin") as f:
        yield f


def test_new_flash_is_erased_and_one_mebibyte(flash, tmp_path):
    assert (tmp_path / "flash.bin").stat().st_size == FLASH_TOTAL
    assert flash.app_bytes() == b"\xff" * APP_SIZE
    assert sum(size for _, size in SECTORS) == FLASH_TOTAL


def test_programming_only_clears_bits(flash):
    flash.write(APP_BASE, b"\x0f\xf0")
    flash.write(APP_BASE, b"\xf0\xff")
    assert flash.read(APP_BASE, 2) == b"\x00\xf0"


def test_erase_restores_a_whole_sector(flash):
    start, size = SECTORS[1]
    flash.write(start + 10, b"\x00" * 4)
    flash.erase_sector(start + 10)
    assert flash.read(start, size) == b"\xff" * size


def test_bootloader_sector_is_protected(flash):
    with pytest.raises(FlashError, match="outside the application area"):
        flash.write(FLASH_BASE, b"\x00")
    with pytest.raises(FlashError, match="bootloader"):
        flash.erase_sector(FLASH_BASE)


def test_contents_survive_reopening(tmp_path):
    with Flash(tmp_path / "f.bin") as f:
        f.write(APP_BASE + 100, b"persist")
    with Flash(tmp_path / "f.bin") as f:
        assert f.read(APP_BASE + 100, 7) == b"persist"


@given(offset=st.integers(0, APP_SIZE - 64), data=st.binary(min_size=1, max_size=64))
def test_write_to_erased_flash_reads_back(tmp_path_factory, offset, data):
    path = tmp_path_factory.mktemp("flash") / "flash.bin"
    with Flash(path) as f:
        f.write(APP_BASE + offset, data)
        assert f.read(APP_BASE + offset, len(data)) == data


def test_access_past_the_end_is_refused(flash):
    with pytest.raises(FlashError):
        flash.read(FLASH_BASE + FLASH_TOTAL - 1, 2)


def test_programming_is_visible_to_another_open_of_the_file_and_survives_flush(tmp_path):
    with Flash(tmp_path / "f.bin") as f:
        f.write(APP_BASE + 8, b"shared")
        with Flash(tmp_path / "f.bin") as other:  # another process opens the same file
            assert other.read(APP_BASE + 8, 6) == b"shared"
        f.flush()
    assert (tmp_path / "f.bin").read_bytes()[APP_BASE - FLASH_BASE + 8 :][:6] == b"shared"


def test_matches_and_is_erased_read_the_flash(flash):
    assert flash.is_erased(APP_BASE, 4096)
    flash.write(APP_BASE + 4095, b"\x7f")
    assert not flash.is_erased(APP_BASE, 4096)
    assert flash.matches(APP_BASE + 4094, b"\xff\x7f")
    assert not flash.matches(APP_BASE + 4094, b"\xff\xff")


def test_a_closed_flash_refuses_access(tmp_path):
    f = Flash(tmp_path / "f.bin")
    f.close()
    with pytest.raises(FlashError, match="closed"):
        f.read(APP_BASE, 1)
