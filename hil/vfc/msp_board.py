"""A virtual Betaflight flight controller for flashing: MSP on a pty, the ROM DFU device
after MSP_REBOOT into the bootloader, and what it boots read from its own flash.

It stands in for the hardware half of `hil.flash.msp_dfu`: an STM32F405 board with no
bootloader of its own (its flash is `Flash(..., bootloader_sector=False)`, 1 MiB from
0x08000000). It has a fixed identity, as a physical board does: MCU target, board name,
manufacturer id, board identifier, MCU type id and the chip's unique id. What it runs
comes from its flash: at power-on it "boots" when the flash holds a Cortex-M vector table
at 0x08000000 and an image that names this board's MCU target (an image of another
target would not start on it); MSP then reports the version and the build date and time
the image carries (`hil.firmware.betaflight_info`). A blank or foreign flash leaves it in
the ROM DFU device, as if BOOT0 were held.

MSP it answers (Betaflight 4.6 msp.c layouts, `hil.codecs.msp`): API_VERSION,
FC_VARIANT, FC_VERSION, BOARD_INFO, BUILD_INFO, UID, STATUS (all zero), and REBOOT:
mode 0 reboots (the pty goes away and a new one comes), mode 1 (or the one-shot CLI's
`bl rom`, STX first as Betaflight's msp_serial.c takes it) goes into the ROM DFU
device (`hil.vfc.dfu_device.serve_dfu` with `ROM_LAYOUT`, serial from the unique id as
ST's ROM computes it, `hil.usb.stm32_uid`); DFU leave boots again. Other commands get
an error reply. Its VCP serial is the unique-id serial (as HAL builds: F7/H7) unless
given, e.g. "0x8000000" as StdPeriph F4 builds send.

The registry (hil.links.registry) carries its state: `app` with the pty, `dfu` with the
USB socket. Run it in a thread (`VirtualMspBoard.run(should_stop)`) or as a process:
``python -m hil.vfc.msp_board --flash F --registry DIR [--lifeline FD]``.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hil.codecs import msp
from hil.codecs.msp import BoardDetails, BoardInfo, BuildInfo, MspCommand, MspParser, Uid
from hil.firmware.betaflight_info import read_strings
from hil.firmware.image import FirmwareImage, Segment
from hil.firmware.layout import FLASH_BASE, FLASH_TOTAL
from hil.links import registry
from hil.usb.stm32_uid import stm32_usb_serial
from hil.vfc.dfu_device import ROM_LAYOUT, DfuTiming, serve_dfu
from hil.vfc.flash import Flash
from hil.vfc.pty import Pty

STM32_VCP_VID, STM32_VCP_PID = 0x0483, 0x5740
"""Betaflight's VCP (src/platform/STM32/vcp_hal/usbd_desc.c USBD_VID / USBD_PID)."""
CLI_STX, CLI_ETX = b"\x02", b"\x03"
"""Betaflight's one-shot CLI: STX enters it, ETX leaves (src/main/msp/msp_serial.c)."""
_RAM = ((0x10000000, 0x10010000), (0x20000000, 0x20020000))  # F405: CCM 64K, SRAM 128K


@dataclass(frozen=True)
class BoardIdentity:
    """What the physical board is; the flash decides what it runs."""

    target: str = "STM32F405"
    board_name: str = "MATEKF405SE"
    manufacturer_id: str = "MTKS"
    identifier: str = (
        "S405"  # TARGET_BOARD_IDENTIFIER, src/platform/STM32/target/STM32F405/target.h
    )
    mcu_type_id: int = 1  # MCU_TYPE_F40X (Betaflight src/main/build/build_config.h)
    uid: tuple[int, int, int] = (0x002D0030, 0x3334510B, 0x32313533)
    vcp_serial: str | None = None  # None: the unique-id serial

    @property
    def dfu_serial(self) -> str:
        return stm32_usb_serial(self.uid)

    @property
    def usb_serial(self) -> str:
        return self.vcp_serial if self.vcp_serial is not None else self.dfu_serial


def placeholder_firmware(identity: BoardIdentity, version: str = "4.5.1") -> bytes:
    """What a board holds before the harness flashes it, as far as this board reads it: a
    vector table and the strings a Betaflight build for it carries (firmware name and
    identifier, target, board, manufacturer, version, build date and time). No code."""
    vectors = (
        (0x2001FFF0).to_bytes(4, "little")
        + (FLASH_BASE + 0x189).to_bytes(4, "little")
        + bytes(0x180)
    )
    names = ("Betaflight", "BTFL", identity.target, identity.board_name, identity.manufacturer_id,
             version, "Jan 10 2025", "12:00:00")  # fmt: skip
    return vectors + b"\x00" + b"\x00".join(n.encode("ascii") for n in names) + b"\x00"


@dataclass(frozen=True)
class Running:
    """What the board booted: the image's version and build stamp."""

    version: tuple[int, int, int]
    build_date: str
    build_time: str


def boot(flash: Flash, identity: BoardIdentity) -> Running | None:
    """What the flash would run on this board, or None (it stays in the ROM bootloader)."""
    data = flash.read(FLASH_BASE, FLASH_TOTAL)
    sp, reset = int.from_bytes(data[0:4], "little"), int.from_bytes(data[4:8], "little")
    if (
        not any(lo <= sp <= hi for lo, hi in _RAM)
        or not (reset & 1)
        or not FLASH_BASE <= reset < FLASH_BASE + FLASH_TOTAL
    ):
        return None
    found = read_strings(FirmwareImage("<flash>", "bin", (Segment(FLASH_BASE, data),)))
    if found.family != "betaflight" or not found.names(identity.target) or found.version is None:
        return None
    version = tuple(int(p) for p in found.version.split("."))
    date = found.build_dates[0] if found.build_dates else "Jan  1 1970"
    when = found.build_times[0] if found.build_times else "00:00:00"
    return Running((version[0], version[1], version[2]), date, when)


class VirtualMspBoard:
    """The board's main loop (see the module docstring)."""

    def __init__(
        self,
        flash: Flash,
        registry_dir: Path,
        identity: BoardIdentity | None = None,
        *,
        timing: DfuTiming | None = None,
        log: Callable[[str], None] | None = None,
        msp_rom_reboot: bool = True,
    ) -> None:
        """`msp_rom_reboot` False: MSP_REBOOT 1 gets an error reply (the CLI's `bl rom`
        still works), as a firmware whose MSP has no way into the ROM bootloader."""
        self.msp_rom_reboot = msp_rom_reboot
        self.flash = flash
        self.registry_dir = Path(registry_dir)
        self.identity = identity or BoardIdentity()
        self.timing = timing or DfuTiming.instant()
        self.log = log or (lambda text: None)
        self.boots = 0
        self.dfu_sessions = 0

    def run(self, should_stop: Callable[[], bool]) -> None:
        while not should_stop():
            running = boot(self.flash, self.identity)
            if running is None:
                self._dfu(should_stop)
                continue
            self.boots += 1
            if self._app(running, should_stop) == "dfu":
                self._dfu(should_stop)

    def _dfu(self, should_stop: Callable[[], bool]) -> None:
        self.dfu_sessions += 1
        serve_dfu(
            self.flash, self.identity.dfu_serial, self.registry_dir, should_stop,
            timing=self.timing, layout=ROM_LAYOUT, log=self.log,
        )  # fmt: skip

    def _app(self, running: Running, should_stop: Callable[[], bool]) -> str:
        """Serve MSP until a reboot; "dfu" or "reboot" (or "stop")."""
        pty = Pty.open()
        serial = self.identity.usb_serial
        pid = os.getpid()
        registry.write_entry(
            self.registry_dir,
            {"usb_serial": serial, "port": pty.path, "process_id": pid, "state": "app",
             "usb_vid": STM32_VCP_VID, "usb_pid": STM32_VCP_PID},
        )  # fmt: skip
        self.log(f"running Betaflight {'.'.join(map(str, running.version))} on {pty.path}")
        parser = MspParser()
        cli: bytearray | None = None  # the one-shot CLI line being typed, after STX
        try:
            while not should_stop():
                ready, _, _ = select.select([pty.master_fd], [], [], 0.05)
                if not ready:
                    continue
                data = pty.read()
                if cli is None and data.startswith(CLI_STX):
                    pty.write(CLI_STX)  # Betaflight answers STX and takes the line that follows
                    cli, data = bytearray(), data[1:]
                if cli is not None:
                    cli += data
                    if b"\n" not in cli:
                        continue
                    line = bytes(cli).split(b"\n", 1)[0].strip().decode("ascii", "replace")
                    cli = None
                    if line.lower() == "bl rom":  # src/main/cli/cli.c cliBootloader, cliRebootEx
                        pty.write(b"\r\n# restarting in ROM bootloader mode\r\n\r\nRebooting")
                        time.sleep(0.02)
                        return "dfu"
                    pty.write(f"{line}\r\nUnknown command, try 'help'".encode() + CLI_ETX)
                    continue
                for frame in parser.feed(data):
                    if frame.direction != msp.Direction.REQUEST:
                        continue
                    answer, then = self._answer(frame.cmd, frame.payload, running)
                    pty.write(answer)
                    if then is not None:
                        time.sleep(0.02)  # the reply leaves before the USB device goes
                        return then
            return "stop"
        finally:
            registry.remove_entry(self.registry_dir, serial, process_id=pid)
            pty.close()

    def _answer(self, cmd: int, payload: bytes, running: Running) -> tuple[bytes, str | None]:
        me = self.identity
        replies = {
            MspCommand.API_VERSION: lambda: msp.ApiVersion(0, 1, 47).encode(),
            MspCommand.FC_VARIANT: lambda: b"BTFL",
            MspCommand.FC_VERSION: lambda: msp.FcVersion(*running.version).encode(),
            MspCommand.BOARD_INFO: lambda: BoardInfo(
                me.identifier, 0, 2, 1, me.target,
                BoardDetails(me.board_name, me.manufacturer_id, bytes(32), me.mcu_type_id, b"\x00").encode(),
            ).encode(),
            MspCommand.BUILD_INFO: lambda: BuildInfo(running.build_date, running.build_time, bytes(7)).encode(),
            MspCommand.UID: lambda: Uid(me.uid).encode(),
            MspCommand.STATUS: lambda: bytes(22),
        }  # fmt: skip
        if cmd == MspCommand.REBOOT:
            mode = payload[0] if payload else 0
            if mode not in (0, 1) or (mode == 1 and not self.msp_rom_reboot):
                return msp.encode_reply(cmd, b"", error=True), None
            return msp.encode_reply(cmd, bytes([mode])), ("dfu" if mode == 1 else "reboot")
        make = replies.get(cmd)
        if make is None:
            return msp.encode_reply(cmd, b"", error=True), None
        return msp.encode_reply(cmd, make()), None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hil.vfc.msp_board", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--flash", required=True, type=Path)
    parser.add_argument("--registry", required=True, type=Path)
    parser.add_argument("--target", default=BoardIdentity.target)
    parser.add_argument("--board-name", default=BoardIdentity.board_name)
    parser.add_argument("--vcp-serial", default=None)
    parser.add_argument("--lifeline", type=int, default=None, help="stop when this pipe closes")
    parser.add_argument(
        "--placeholder", action="store_true", help="a blank flash gets placeholder_firmware first"
    )
    args = parser.parse_args(argv)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.lifeline is not None:
        from hil.children import watch_lifeline

        watch_lifeline(args.lifeline, stop)
    identity = BoardIdentity(
        target=args.target, board_name=args.board_name, vcp_serial=args.vcp_serial
    )
    with Flash(args.flash, bootloader_sector=False) as flash:
        if args.placeholder and flash.is_erased(FLASH_BASE, 8):
            flash.write(FLASH_BASE, placeholder_firmware(identity))
            flash.flush()
        board = VirtualMspBoard(
            flash, args.registry, identity, log=lambda t: print(f"msp board: {t}", file=sys.stderr)
        )
        board.run(lambda: stopping)
    return 0


if __name__ == "__main__":
    sys.exit(main())
