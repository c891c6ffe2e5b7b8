"""The virtual board's internal flash layout: where its bootloader and application live.

The board's flash (hil.vfc.flash) and the harness that builds and flashes images for it
(hil.firmware.build, hil.flash.preflight, hil.boards.virtual) both need these, so they
live here, below both: an STM32F4 with 1 MiB of internal flash, its first 16 KiB sector
holding the bootloader and the application from the second sector on.
"""

from __future__ import annotations

FLASH_BASE = 0x08000000
FLASH_TOTAL = 0x100000
APP_BASE = 0x08004000
APP_SIZE = FLASH_BASE + FLASH_TOTAL - APP_BASE  # 0xFC000: the serial bootloader's FLASH_SIZE

__all__ = ["APP_BASE", "APP_SIZE", "FLASH_BASE", "FLASH_TOTAL"]
