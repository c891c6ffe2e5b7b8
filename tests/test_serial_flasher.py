"""Flashing a running virtual board through its serial bootloader, end to end."""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.firmware import bootloader_codec as bl
from hil.firmware.app_image import build_app, parse_app
from hil.firmware.build import REPO_IMAGES
from hil.firmware.image import FirmwareImage, Segment, load_image
from hil.flash.base import FlashError
from hil.flash.serial_flasher import BootloaderLink, SerialFlasher, app_payload
from hil.links import registry
from hil.links.ports import find_port
from hil.mavlink.dialect import VFC_USB_PID, VFC_USB_VID
from hil.vfc.bootloader import SerialBootloader
from hil.vfc.flash import APP_BASE, APP_SIZE, Flash
from hil.vfc.process import VirtualBoardProcess
from hil.vfc.pty import Pty

SERIAL = "HILFLASH01"
RELEASE = REPO_IMAGES / "hilcopter-1.0.0.apj"
PATCH = REPO_IMAGES / "hilcopter-1.0.1-fieldpatch.apj"


def _program(flash_path: Path, image_path: Path) -> None:
    with Flash(flash_path) as flash:
        flash.write(APP_BASE, app_payload(load_image(image_path)))


@pytest.fixture
def board(tmp_path: Path) -> Iterator[VirtualBoardProcess]:
    _program(tmp_path / "flash.bin", RELEASE)
    proc = VirtualBoardProcess(
        SERIAL,
        tmp_path / "storage.bin",
        tmp_path / "registry",
        flash_path=tmp_path / "flash.bin",
        sector_erase_s=0.02,
    )
    proc.start()
    yield proc
    proc.stop()


def _flasher(board: VirtualBoardProcess, **kwargs: object) -> SerialFlasher:
    return SerialFlasher(SERIAL, registry_dir=board.registry_dir, **kwargs)  # type: ignore[arg-type]


def _running_version(board: VirtualBoardProcess) -> str:
    """The version the board's application says over MAVLink (AUTOPILOT_VERSION)."""
    from hil.autopilot.mavlink import MavlinkAutopilot
    from hil.links.serial_link import SerialLink
    from hil.mavlink.connection import MavConnection

    port = find_port(SERIAL, board.registry_dir, timeout=10, state="app")
    conn = MavConnection(SerialLink(port.device).open())
    autopilot = MavlinkAutopilot(conn)
    conn.start_reader()
    try:
        version = autopilot.identify(timeout=10).firmware_version
    finally:
        conn.close()
        autopilot.close()
    entry = board.entry or {}
    assert str(entry.get("firmware_version", "")).startswith(version)
    return str(entry["firmware_version"])


def test_flash_both_shipped_images_and_the_board_reports_each_version(
    board: VirtualBoardProcess,
) -> None:
    seen: list[tuple[int, int, str]] = []
    result = _flasher(board, progress=lambda d, t, p: seen.append((d, t, p))).flash(
        load_image(PATCH)
    )
    assert not result.skipped and result.verified_by == "crc"
    assert (result.old_version, result.new_version) == ("1.0.0", "1.0.1-fieldpatch")
    assert result.bytes_written >= len(app_payload(load_image(PATCH)))
    assert result.throughput_bps > 0 and result.link_limit_bps is None
    assert [p for _, _, p in seen][0] == "erase" and seen[-1][2] == "verify"
    writes = [(d, t) for d, t, p in seen if p == "write"]
    assert writes[-1][0] == writes[-1][1] == result.bytes_written
    assert _running_version(board) == "1.0.1-fieldpatch"

    back = _flasher(board).flash(load_image(REPO_IMAGES / "hilcopter-1.0.0.hex"))
    assert (back.old_version, back.new_version, back.skipped) == ("1.0.1", "1.0.0", False)
    assert _running_version(board) == "1.0.0"


def test_a_second_flash_of_the_same_image_is_skipped(board: VirtualBoardProcess) -> None:
    result = _flasher(board).flash(load_image(RELEASE))
    assert result.skipped and result.bytes_written == 0 and result.verified_by == ""
    assert result.new_version == "1.0.0"
    forced = _flasher(board).flash(load_image(RELEASE), force=True)
    assert not forced.skipped and forced.verified_by == "crc"


def _flash_bytes(board: VirtualBoardProcess) -> bytes:
    with Flash(board.flash_path) as flash:  # type: ignore[arg-type]
        return flash.app_bytes()


def test_wrong_board_id_is_refused_before_erase_and_the_old_firmware_boots(
    board: VirtualBoardProcess,
) -> None:
    before = _flash_bytes(board)
    payload = build_app(board_id=9999, name="Other", version="2.0.0", loop_rate=400)
    image = FirmwareImage("other.hex", "hex", (Segment(APP_BASE, payload),), board_id=9999)
    with pytest.raises(FlashError, match="board id 9999.*7701.*before erasing"):
        _flasher(board).flash(image)
    assert _flash_bytes(board) == before
    assert _running_version(board) == "1.0.0"
    assert parse_app(before, board_id=7701).version == "1.0.0"


def test_too_large_image_is_refused_before_erase_and_the_old_firmware_boots(
    board: VirtualBoardProcess,
) -> None:
    before = _flash_bytes(board)
    payload = build_app(board_id=7701, name="Huge", version="9.0.0", loop_rate=400)
    huge = payload + b"\x00" * (APP_SIZE - len(payload) + 4)
    image = FirmwareImage("huge.hex", "hex", (Segment(APP_BASE, huge),), board_id=7701)
    with pytest.raises(FlashError, match="do not fit"):
        _flasher(board).flash(image)
    assert _flash_bytes(board) == before
    assert _running_version(board) == "1.0.0"


def test_image_reaching_into_the_bootloader_sector_is_refused() -> None:
    image = FirmwareImage("full.hex", "hex", (Segment(0x08000000, b"\x00" * 64),), board_id=7701)
    with pytest.raises(FlashError, match="bootloader sector"):
        app_payload(image)


class FakeBootloader:
    """A registry entry in state bootloader whose pty answers `answer(request)`."""

    def __init__(self, registry_dir: Path, serial: str, answer) -> None:
        self.pty = Pty.open()
        self.answer = answer
        self.stop = False
        registry.write_entry(
            registry_dir,
            {
                "usb_serial": serial,
                "port": self.pty.path,
                "process_id": os.getpid(),
                "state": "bootloader",
                "usb_vid": VFC_USB_VID,
                "usb_pid": VFC_USB_PID,
            },
        )
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop:
            if select.select([self.pty.master_fd], [], [], 0.02)[0]:
                data = self.pty.read()
                if data:
                    self.pty.write(self.answer(data))

    def close(self) -> None:
        self.stop = True
        self.thread.join(2)
        self.pty.close()


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (lambda data: b"\x55\xaa" * 40, "not in sync"),
        (lambda data: b"", "no answer"),
        (lambda data: b"\x12", "truncated|no answer"),
    ],
    ids=["garbage", "silence", "half-reply"],
)
def test_a_bootloader_that_answers_garbage_or_nothing_gives_flash_error(
    tmp_path: Path, answer, message: str
) -> None:
    fake = FakeBootloader(tmp_path, "HILFAKE01", answer)
    try:
        flasher = SerialFlasher("HILFAKE01", registry_dir=tmp_path, port_timeout=1.0, reply_timeout=0.3)
        started = time.monotonic()
        with pytest.raises(FlashError, match=message) as info:
            flasher.flash(load_image(RELEASE))
        assert fake.pty.path in str(info.value)
        assert time.monotonic() - started < 5.0
    finally:
        fake.close()


def test_no_board_at_all_is_a_bounded_flash_error(tmp_path: Path) -> None:
    flasher = SerialFlasher("HILNOBODY", registry_dir=tmp_path, port_timeout=0.3)
    with pytest.raises(FlashError, match="HILNOBODY"):
        flasher.flash(load_image(RELEASE))


def test_the_failsafe_scenario_catches_the_field_patch_flashed_onto_the_board(tmp_path: Path) -> None:
    from hil.rig import Rig
    from hil.scenario.load import load_scenario
    from hil.scenario.runner import run_scenario
    from hil.session import BoardSession

    rig_file = tmp_path / "rig.toml"
    rig_file.write_text(
        '[[board]]\nname = "copter1"\ntype = "virtual"\nusb_serial = "HILFLASH02"\n'
        "sector_erase_s = 0.02\n"
    )
    rig = Rig.load(rig_file, work_dir=tmp_path / "work")
    board = rig.boards[0]
    scenario = load_scenario(Path(__file__).resolve().parent.parent / "scenarios" / "rc_loss_rtl.toml")
    try:
        board.start()  # factory-programmed with the release
        result = SerialFlasher("HILFLASH02", registry_dir=rig.registry_dir).flash(load_image(PATCH))
        assert result.new_version == "1.0.1-fieldpatch"
        with BoardSession(board) as session:
            outcome = run_scenario(scenario, session)
        assert not outcome.passed
        failed = [v.message for v in outcome.verdicts if not v.passed]
        assert any("RTL" in m for m in failed), outcome.failure_text()
    finally:
        rig.stop()


class _CountingBootloader(SerialBootloader):
    """The virtual bootloader, noting how many bytes wait behind each request it handles."""

    def __init__(self, *args, refuse_prog_at: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.waiting_behind: list[int] = []
        self.refuse_prog_at = refuse_prog_at

    def _handle(self, request: bytes) -> None:
        if request[0] == bl.Opcode.PROG_MULTI:
            self.waiting_behind.append(len(self._rx))
            if self._prog_offset == self.refuse_prog_at:
                self._reply(bl.Status.FAILED)
                return
        super()._handle(request)


class _InThreadLoader:
    def __init__(self, tmp_path: Path, **kwargs) -> None:
        self.flash = Flash(tmp_path / "flash.bin")
        self.loader = _CountingBootloader(
            self.flash, "HILBL0002", sector_erase_s=0.0, log=lambda text: None, **kwargs
        )
        self.stop = False
        self.thread = threading.Thread(target=lambda: self.loader.run(lambda: self.stop), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop = True
        self.thread.join(3.0)
        self.loader.close()
        self.flash.close()


def test_prog_multi_requests_go_one_at_a_time_and_the_crc_verifies(tmp_path: Path) -> None:
    board = _InThreadLoader(tmp_path)
    image = load_image(RELEASE)
    payload = app_payload(image)
    seen: list[tuple[int, int, str]] = []
    try:
        flasher = SerialFlasher("HILBL0002", progress=lambda d, t, p: seen.append((d, t, p)))
        with BootloaderLink(board.loader.port) as link:
            skipped, written, _, _ = flasher._program(link, image, payload, force=True)
        assert not skipped and written == len(payload) + (-len(payload) % 4)
        # Never a second request behind the one being handled: no pipelining.
        assert board.loader.waiting_behind and set(board.loader.waiting_behind) == {0}
        assert len(board.loader.waiting_behind) == -(-written // bl.PROG_MULTI_MAX)
        assert board.flash.read(APP_BASE, len(payload)) == payload
    finally:
        board.close()
    writes = [d for d, _, p in seen if p == "write"]
    assert writes[0] == 0 and writes[-1] == written
    assert writes == sorted(writes) and len(writes) == len(board.loader.waiting_behind) + 1


def test_a_prog_multi_refused_mid_way_names_its_offset_and_the_app_stays_unbootable(
    tmp_path: Path,
) -> None:
    board = _InThreadLoader(tmp_path, refuse_prog_at=3 * bl.PROG_MULTI_MAX)
    image = load_image(RELEASE)
    try:
        with BootloaderLink(board.loader.port) as link:
            with pytest.raises(FlashError, match=r"PROG_MULTI at \+0x2F4 refused \(FAILED\)"):
                SerialFlasher("HILBL0002")._program(link, image, app_payload(image), force=True)
        assert board.flash.read(APP_BASE, 4) == b"\xff" * 4  # the first word is held back
    finally:
        board.close()
