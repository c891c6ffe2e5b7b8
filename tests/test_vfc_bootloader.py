"""The virtual board's serial bootloader, driven over its pty with the codec, step by step."""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hil.firmware import bootloader_codec as bl
from hil.firmware.app_image import AppImageError, parse_app
from hil.firmware.build import release_image_path
from hil.firmware.image import load_image
from hil.vfc.bootloader import BL_REV, CHIP_FAMILY, SerialBootloader
from hil.vfc.flash import APP_BASE, APP_SIZE, EXTF_TOTAL, Flash

Info = bl.DeviceInfo
PAYLOAD = load_image(release_image_path()).contiguous()


class Host:
    """The uploader's side of the pty: send a request, read one reply, bounded."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        self.rx = bytearray()

    def close(self) -> None:
        os.close(self.fd)

    def drain(self, quiet: float = 0.05) -> None:
        self.rx.clear()
        while select.select([self.fd], [], [], quiet)[0]:
            os.read(self.fd, 65536)

    def ask(self, request: bytes, data_len: int = 0, timeout: float = 3.0) -> bl.Reply:
        os.write(self.fd, request)
        end = time.monotonic() + timeout
        while True:
            at_end = time.monotonic() >= end
            reply = bl.parse_reply(self.rx, data_len, at_end=at_end)
            if reply is not None:
                del self.rx[: reply.consumed]
                return reply
            if select.select([self.fd], [], [], max(0.0, end - time.monotonic()))[0]:
                self.rx += os.read(self.fd, 65536)

    def status(self, request: bytes) -> bl.Status:
        return self.ask(request).status

    def word(self, request: bytes) -> int:
        reply = self.ask(request, 4)
        assert reply.ok, reply
        return reply.u32

    def handshake(self) -> None:
        assert self.status(bl.encode_get_sync()) is bl.Status.OK
        for arg in (Info.BL_REV, Info.BOARD_ID, Info.FLASH_SIZE):
            self.word(bl.encode_get_device(arg))

    def program(self, payload: bytes, chunks: int | None = None) -> None:
        for index, chunk in enumerate(bl.prog_multi_chunks(payload)):
            if chunks is not None and index >= chunks:
                return
            assert self.status(bl.encode_prog_multi(chunk)) is bl.Status.OK


class Board:
    """A bootloader served by a thread, as the board process serves it."""

    def __init__(self, flash_path: Path, **kwargs: object) -> None:
        self.flash = Flash(flash_path)
        options = {"sector_erase_s": 0.0, "log": lambda text: None}
        options.update(kwargs)
        self.loader = SerialBootloader(self.flash, "HILBL0001", **options)  # type: ignore[arg-type]
        self.stop = False
        self.outcome: str | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.host = Host(self.loader.port)

    def _run(self) -> None:
        self.outcome = self.loader.run(lambda: self.stop)

    def wait(self, timeout: float = 3.0) -> str | None:
        self.thread.join(timeout)
        return self.outcome

    def close(self) -> None:
        self.stop = True
        self.thread.join(3.0)
        self.host.close()
        self.loader.close()
        self.flash.close()


@pytest.fixture
def board(tmp_path: Path) -> Iterator[Board]:
    b = Board(tmp_path / "flash.bin")
    yield b
    b.close()


def test_get_sync_then_get_device_answers_every_field(board: Board) -> None:
    h = board.host
    assert h.status(bl.encode_get_sync()) is bl.Status.OK
    assert h.word(bl.encode_get_device(Info.BL_REV)) == BL_REV == 5
    assert h.word(bl.encode_get_device(Info.BOARD_ID)) == 7701
    assert h.word(bl.encode_get_device(Info.BOARD_REV)) == 0
    assert h.word(bl.encode_get_device(Info.FLASH_SIZE)) == APP_SIZE
    assert h.word(bl.encode_get_device(Info.EXTF_SIZE)) == EXTF_TOTAL  # extflash.bin
    vec = h.ask(bl.encode_get_device(Info.VEC_AREA), 16)
    assert vec.ok and len(vec.data) == 16
    assert h.status(bl.encode_get_device(9)) is bl.Status.INVALID


def test_sync_bytes_on_the_wire_are_exactly_12_10(board: Board) -> None:
    os.write(board.host.fd, b"\x21\x20")
    got = b""
    end = time.monotonic() + 2
    while len(got) < 2 and time.monotonic() < end:
        if select.select([board.host.fd], [], [], 0.5)[0]:
            got += os.read(board.host.fd, 16)
    assert got == b"\x12\x10"


def test_erase_and_program_are_refused_until_sync_and_get_device(board: Board) -> None:
    h = board.host
    chunk = PAYLOAD[:252]
    assert h.status(bl.encode_chip_erase()) is bl.Status.INVALID
    assert h.status(bl.encode_prog_multi(chunk)) is bl.Status.INVALID
    assert h.status(bl.encode_get_sync()) is bl.Status.OK
    assert h.status(bl.encode_chip_erase()) is bl.Status.INVALID
    h.word(bl.encode_get_device(Info.BL_REV))
    h.word(bl.encode_get_device(Info.BOARD_ID))
    assert h.status(bl.encode_chip_erase()) is bl.Status.INVALID  # FLASH_SIZE not asked yet
    h.word(bl.encode_get_device(Info.FLASH_SIZE))
    assert h.status(bl.encode_chip_erase()) is bl.Status.OK
    assert h.status(bl.encode_prog_multi(chunk)) is bl.Status.OK


def test_chip_erase_takes_the_sector_time_and_replies_when_done(tmp_path: Path) -> None:
    b = Board(tmp_path / "flash.bin", sector_erase_s=0.04)  # 7.875 sector-equivalents
    try:
        b.host.handshake()
        started = time.monotonic()
        assert b.host.ask(bl.encode_chip_erase(), timeout=10).ok
        assert time.monotonic() - started >= 0.04 * 7.875 * 0.95
    finally:
        b.close()


def test_crc_rule_and_held_back_first_word(board: Board) -> None:
    h = board.host
    h.handshake()
    assert h.status(bl.encode_chip_erase()) is bl.Status.OK
    assert h.word(bl.encode_get_crc()) == bl.flash_crc(b"", APP_SIZE)
    h.program(PAYLOAD)
    # GET_CRC counts the held word as written ...
    assert h.word(bl.encode_get_crc()) == bl.flash_crc(PAYLOAD, APP_SIZE)
    # ... but the flash does not hold it yet: a cut here leaves no bootable app.
    assert board.flash.read(APP_BASE, 4) == b"\xff" * 4
    assert board.flash.read(APP_BASE + 4, len(PAYLOAD) - 4) == PAYLOAD[4:]
    with pytest.raises(AppImageError, match="magic"):
        parse_app(board.flash.app_bytes())
    assert h.status(bl.encode_reboot()) is bl.Status.OK
    assert board.wait() == "boot"
    assert board.flash.read(APP_BASE, len(PAYLOAD)) == PAYLOAD
    assert parse_app(board.flash.app_bytes(), board_id=7701).version == "1.0.0"


def test_read_multi_reads_back_from_the_app_start(board: Board) -> None:
    h = board.host
    h.handshake()
    h.status(bl.encode_chip_erase())
    h.program(PAYLOAD, chunks=2)
    assert h.status(bl.encode_get_sync()) is bl.Status.OK  # rewinds the read pointer
    first = h.ask(bl.encode_read_multi(8), 8)
    assert first.data == b"\xff" * 4 + PAYLOAD[4:8]  # the held word is not in flash yet
    assert h.ask(bl.encode_read_multi(8), 8).data == PAYLOAD[8:16]
    assert h.status(bytes([bl.Opcode.READ_MULTI, 6, bl.EOC])) is bl.Status.INVALID


def test_program_without_erase_fails_on_nor_flash(board: Board) -> None:
    h = board.host
    h.handshake()
    h.status(bl.encode_chip_erase())
    h.program(PAYLOAD, chunks=2)
    h.status(bl.encode_reboot())
    board.wait()
    b2_loader = SerialBootloader(board.flash, "HILBL0001", sector_erase_s=0, log=lambda t: None)
    h2 = Host(b2_loader.port)
    stop = False
    t = threading.Thread(target=b2_loader.run, args=(lambda: stop,), daemon=True)
    t.start()
    try:
        h2.handshake()
        # Programming over old data (no CHIP_ERASE) cannot set bits back to 1.
        inverted = bytes(x ^ 0xFF for x in PAYLOAD[:252])
        assert h2.status(bl.encode_prog_multi(inverted)) is bl.Status.FAILED
    finally:
        stop = True
        t.join(3)
        h2.close()
        b2_loader.close()


def test_identity_requests(board: Board) -> None:
    h = board.host
    assert h.word(bl.encode_get_chip()) & 0xFFF == 0x413
    words = [h.word(bl.encode_get_sn(i)) for i in (0, 4, 8)]
    assert len(bl.format_serial_number(words)) == 24
    assert h.status(bl.encode_get_sn(12)) is bl.Status.INVALID
    os.write(h.fd, bl.encode_get_chip_des())
    buf = b""
    end = time.monotonic() + 2
    des = None
    while des is None and time.monotonic() < end:
        if select.select([h.fd], [], [], 0.5)[0]:
            buf += os.read(h.fd, 256)
        des = bl.parse_chip_des_reply(buf)
    assert isinstance(des, bl.ChipDescription) and des.family == CHIP_FAMILY
    assert h.status(bl.encode_set_boot_delay(3)) is bl.Status.OK


def test_bad_opcodes_and_lengths_get_invalid(board: Board) -> None:
    h = board.host
    assert h.status(b"\x99\x20") is bl.Status.INVALID  # 0x99, then 0x20: two INVALIDs
    assert h.ask(b"").status is bl.Status.INVALID
    assert h.status(bytes([bl.Opcode.GET_SYNC, 0x21])) is bl.Status.INVALID  # no EOC
    h.drain()
    assert h.status(bl.encode_get_sync()) is bl.Status.OK


def test_valid_app_boots_after_the_boot_delay_without_a_host(tmp_path: Path) -> None:
    b = Board(tmp_path / "flash.bin", app_valid=True, boot_delay_s=0.3)
    try:
        started = time.monotonic()
        assert b.wait(3.0) == "boot"
        assert 0.25 <= time.monotonic() - started < 2.0
    finally:
        b.close()


def test_a_host_that_syncs_keeps_the_board_in_its_bootloader(tmp_path: Path) -> None:
    b = Board(tmp_path / "flash.bin", app_valid=True, boot_delay_s=0.3)
    try:
        assert b.host.status(bl.encode_get_sync()) is bl.Status.OK
        assert b.wait(0.8) is None
    finally:
        b.close()


def test_invalid_app_waits_forever(board: Board) -> None:
    assert board.wait(0.5) is None


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=len(list(bl.prog_multi_chunks(PAYLOAD)))))
def test_cut_off_flash_stays_in_bootloader_and_the_next_flash_succeeds(
    tmp_path_factory: pytest.TempPathFactory, cut: int
) -> None:
    path = tmp_path_factory.mktemp("cut") / "flash.bin"
    first = Board(path)
    first.host.handshake()
    first.host.status(bl.encode_chip_erase())
    first.host.program(PAYLOAD, chunks=cut)
    first.close()  # power lost before REBOOT
    with Flash(path) as flash, pytest.raises(AppImageError):
        parse_app(flash.app_bytes(), board_id=7701)
    second = Board(path)  # the board powers up in its bootloader again
    try:
        h = second.host
        h.handshake()
        assert h.status(bl.encode_chip_erase()) is bl.Status.OK
        h.program(PAYLOAD)
        assert h.word(bl.encode_get_crc()) == bl.flash_crc(PAYLOAD, APP_SIZE)
        assert h.status(bl.encode_reboot()) is bl.Status.OK
        assert second.wait() == "boot"
        assert parse_app(second.flash.app_bytes(), board_id=7701).version == "1.0.0"
    finally:
        second.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.binary(min_size=1, max_size=600))
def test_garbage_never_crashes_it(board: Board, garbage: bytes) -> None:
    assume(b"\x30\x20" not in garbage)  # a REBOOT request hidden in the noise is not garbage
    h = board.host
    os.write(h.fd, garbage)
    for _ in range(8):  # as uploaders do: resync until the board answers in step
        h.drain()
        try:
            if h.ask(bl.encode_get_sync(), timeout=0.7).ok:
                break
        except bl.BootloaderCodecError:
            continue
    else:
        pytest.fail("bootloader never came back in sync after garbage")
    assert board.thread.is_alive()


# ------------------------------------------------------------- external flash


def test_extf_opcodes_are_refused_until_the_host_asked_get_device(board: Board) -> None:
    h = board.host
    assert h.status(bl.encode_get_sync()) is bl.Status.OK
    assert h.status(bl.encode_extf_erase(4096)) is bl.Status.INVALID
    assert board.loader.ext_flash is not None and board.loader.ext_flash.read(0, 4) == b"\xff" * 4


def test_extf_erase_program_and_crc_as_the_uploader_reads_them(board: Board) -> None:
    h = board.host
    h.handshake()
    data = bytes(range(200)) * 3
    assert h.status(bl.encode_extf_erase(len(data))) is bl.Status.OK
    end = time.monotonic() + 3.0
    state = bl.parse_extf_erase(b"")
    while state.done is None and time.monotonic() < end:
        if select.select([h.fd], [], [], 0.1)[0]:
            h.rx += os.read(h.fd, 4096)
        state = bl.parse_extf_erase(h.rx)
    assert (state.percent, state.done) == (100, bl.Status.OK)
    del h.rx[: state.consumed]
    for request in bl.extf_prog_multi_requests(data):
        assert h.status(request) is bl.Status.OK
    assert h.word(bl.encode_extf_get_crc(len(data))) == bl.extf_crc(data, len(data))
    too_big = EXTF_TOTAL + 4
    assert h.status(bl.encode_extf_erase(too_big)) is bl.Status.INVALID


def test_a_bootloader_without_external_flash_answers_invalid(tmp_path: Path) -> None:
    b = Board(tmp_path / "flash.bin", extf_size=0)
    try:
        b.host.handshake()
        assert b.host.status(bl.encode_get_device(Info.EXTF_SIZE)) is bl.Status.INVALID
        assert b.host.status(bl.encode_get_sync()) is bl.Status.OK
    finally:
        b.close()
