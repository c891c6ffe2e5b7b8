"""The virtual board's internal flash: a 1 MiB file with STM32F4 sectors and NOR semantics.

Writing can only clear bits (new = old & data), as on real NOR flash, so a flasher that
forgets to erase fails here as it would on hardware. The first sector holds the
bootloader and refuses writes and erases. See docs/flashing.md.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

from hil.errors import HilError
from hil.firmware.layout import APP_BASE, APP_SIZE, FLASH_BASE, FLASH_TOTAL


def _sectors() -> tuple[tuple[int, int], ...]:
    sizes = [16 * 1024] * 4 + [64 * 1024] + [128 * 1024] * 7
    out = []
    address = FLASH_BASE
    for size in sizes:
        out.append((address, size))
        address += size
    return tuple(out)


SECTORS: tuple[tuple[int, int], ...] = _sectors()
BOOTLOADER_SECTOR = SECTORS[0]
_ERASED = b"\xff" * FLASH_TOTAL


class FlashError(HilError):
    """A flash operation outside what the part allows."""


class Flash:
    """The flash file of one virtual board, mapped into memory (MAP_SHARED).

    Reads and programming work on the mapping, with no system call per access; `flush`
    writes the mapping back to the file (msync) and makes it durable (fsync). Other
    processes that open the same file see the same page cache.
    """

    def __init__(self, path: Path | str, *, bootloader_sector: bool = True) -> None:
        """`bootloader_sector` False: no bootloader of ours in the first sector, every
        sector is the application's (a board flashed only through the ROM DFU device,
        as a Betaflight board is)."""
        self.path = Path(path)
        self.writable_from = APP_BASE if bootloader_sector else FLASH_BASE
        if not self.path.exists() or self.path.stat().st_size != FLASH_TOTAL:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "wb") as handle:
                handle.write(_ERASED)
        self._fd = os.open(self.path, os.O_RDWR)
        try:
            self._mem: mmap.mmap | None = mmap.mmap(self._fd, FLASH_TOTAL)
        except BaseException:
            os.close(self._fd)
            raise

    def close(self) -> None:
        if self._mem is not None:
            self._mem.close()
            self._mem = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Flash:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _memory(self) -> mmap.mmap:
        if self._mem is None:
            raise FlashError(f"flash {self.path} is closed")
        return self._mem

    def _check(self, address: int, length: int, *, writable: bool) -> None:
        lo = self.writable_from if writable else FLASH_BASE
        hi = FLASH_BASE + FLASH_TOTAL
        if length < 0 or address < lo or address + length > hi:
            area = "application area" if writable else "flash"
            raise FlashError(
                f"flash access 0x{address:08X}+{length} is outside the {area} "
                f"0x{lo:08X}..0x{hi:08X}"
            )

    def read(self, address: int, length: int) -> bytes:
        self._check(address, length, writable=False)
        start = address - FLASH_BASE
        return self._memory()[start : start + length]

    def matches(self, address: int, data: bytes) -> bool:
        """True when the flash at `address` holds exactly `data` (a read-back check)."""
        return self.read(address, len(data)) == data

    def is_erased(self, address: int, length: int) -> bool:
        """True when every one of `length` bytes at `address` reads 0xFF."""
        return self.read(address, length) == _ERASED[:length]

    def write(self, address: int, data: bytes) -> None:
        """Program `data` at `address`: bits can only go from 1 to 0."""
        self._check(address, len(data), writable=True)
        if not data:
            return
        start = address - FLASH_BASE
        end = start + len(data)
        mem = self._memory()
        if self.is_erased(address, len(data)):
            mem[start:end] = data  # erased NOR: old & data == data
            return
        old = int.from_bytes(mem[start:end], "little")
        mem[start:end] = (old & int.from_bytes(data, "little")).to_bytes(len(data), "little")

    def sector_of(self, address: int) -> tuple[int, int]:
        for start, size in SECTORS:
            if start <= address < start + size:
                return start, size
        raise FlashError(f"address 0x{address:08X} is not in any flash sector")

    def erase_sector(self, address: int) -> None:
        """Erase the sector holding `address` (to 0xFF); the bootloader sector refuses."""
        start, size = self.sector_of(address)
        if start < self.writable_from:
            raise FlashError(f"sector at 0x{start:08X} holds the bootloader and is write-protected")
        offset = start - FLASH_BASE
        self._memory()[offset : offset + size] = _ERASED[:size]

    def erase_app(self) -> None:
        """Erase every application sector."""
        offset = self.writable_from - FLASH_BASE
        self._memory()[offset:] = _ERASED[offset:]

    def app_bytes(self) -> bytes:
        return self.read(APP_BASE, APP_SIZE)

    def flush(self) -> None:
        """Write the mapping back to the file and to the disk."""
        self._memory().flush()
        os.fsync(self._fd)


EXTF_TOTAL = 256 * 1024
"""The virtual board's external flash: small, as a test fixture needs it, not a real part."""
EXTF_SECTOR = 4 * 1024
"""Erase granularity, as the 4 KiB sectors of the QSPI NOR parts ArduPilot boards carry."""
EXTF_FILE = "extflash.bin"


class ExternalFlash:
    """The board's external (QSPI) flash: a file beside `flash.bin`, NOR semantics, erased
    in `EXTF_SECTOR` steps. Small enough to read and write whole on every access."""

    def __init__(self, path: Path | str, size: int = EXTF_TOTAL) -> None:
        self.path = Path(path)
        self.size = size
        if not self.path.exists() or self.path.stat().st_size != size:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_bytes(b"\xff" * size)
        self._data = bytearray(self.path.read_bytes())

    @classmethod
    def beside(cls, flash: Flash, size: int = EXTF_TOTAL) -> ExternalFlash:
        """The external flash file next to `flash`'s file."""
        return cls(flash.path.with_name(EXTF_FILE), size)

    def _check(self, offset: int, length: int) -> None:
        if length < 0 or offset < 0 or offset + length > self.size:
            raise FlashError(
                f"external flash access +0x{offset:X}+{length} is outside its {self.size} bytes"
            )

    def read(self, offset: int, length: int) -> bytes:
        self._check(offset, length)
        return bytes(self._data[offset : offset + length])

    def write(self, offset: int, data: bytes) -> None:
        """Program `data` at `offset`: bits can only go from 1 to 0."""
        self._check(offset, len(data))
        for i, byte in enumerate(data):
            self._data[offset + i] &= byte

    def erase(self, length: int) -> int:
        """Erase the sectors holding the first `length` bytes; returns how many sectors."""
        self._check(0, length)
        sectors = -(-length // EXTF_SECTOR)
        end = min(self.size, sectors * EXTF_SECTOR)
        self._data[:end] = b"\xff" * end
        return sectors

    def flush(self) -> None:
        with open(self.path, "r+b") as handle:
            handle.write(self._data)
            handle.flush()
            os.fsync(handle.fileno())
