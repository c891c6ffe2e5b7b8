"""DfuFlasher end to end: pyusb over the virtual backend to `serve_dfu` on a Flash file."""

from __future__ import annotations

import json
import os
import random
import struct
import tempfile
import threading
import zlib
from pathlib import Path

import pytest
import usb.core
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hil.boards.virtual_usb import VirtualBackend
from hil.firmware.dfuse_codec import DfuRequest, DfuState, parse_memory_layout, parse_status
from hil.firmware.image import FirmwareImage, Segment
from hil.flash import dfu_flasher
from hil.flash.base import FlashError
from hil.flash.dfu_flasher import DfuFlasher, DfuSession, parse_app_header
from hil.links import registry
from hil.vfc import dfu_device
from hil.vfc.dfu_device import DfuDevice, DfuTiming, serve_dfu
from hil.vfc.flash import APP_BASE, FLASH_BASE, Flash

SERIAL = "HILDFU07"
BOARD_ID = 7701


def app_payload(size: int, *, board_id: int = BOARD_ID, version: tuple[int, int, int] = (1, 2, 3), seed: int = 1) -> bytes:
    """A virtual app image per docs/flashing.md, padded with random code to `size`."""
    config = json.dumps(
        {"name": "HILCopter", "version": ".".join(map(str, version)), "git_identity": "abc123",
         "loop_rate": 400, "params": {"FS_THR_ENABLE": 1}, "behaviour": {}}
    ).encode()
    sw = version[0] << 24 | version[1] << 16 | version[2] << 8 | 255
    head = b"HILAPP\x00\x01" + struct.pack("<IIII", board_id, sw, len(config), zlib.crc32(config)) + config
    return head + random.Random(seed).randbytes(size - len(head))


def image_of(payload: bytes, address: int = APP_BASE) -> FirmwareImage:
    return FirmwareImage("test.bin", "bin", (Segment(address, payload),))


class CountingFlash(Flash):
    """A Flash that counts erases and writes (to cut a flash off at a chosen operation)."""

    operations = 0

    def write(self, address: int, data: bytes) -> None:
        super().write(address, data)
        self.operations += 1

    def erase_sector(self, address: int) -> None:
        super().erase_sector(address)
        self.operations += 1


class Board:
    """`serve_dfu` in a thread; after a leave it "boots" (announces state app), like the board process."""

    def __init__(self, work: Path, *, cut_after: int | None = None, timing: DfuTiming | None = None,
                 board_id: int | None = BOARD_ID) -> None:
        self.registry = work / "reg"
        self.flash = CountingFlash(work / "flash.bin")
        self.stop = False
        self.cut_after = cut_after
        ready = threading.Event()

        def should_stop() -> bool:
            return self.stop or (self.cut_after is not None and self.flash.operations >= self.cut_after)

        def run() -> None:
            serve_dfu(self.flash, SERIAL, self.registry, should_stop,
                      timing=timing or DfuTiming.instant(), board_id=board_id,
                      on_ready=lambda path: ready.set())
            if not should_stop():
                registry.write_entry(self.registry, {"usb_serial": SERIAL, "port": "/dev/null",
                                                     "process_id": os.getpid(), "state": "app"})

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(5)

    def close(self) -> None:
        self.stop = True
        self.thread.join(5)
        registry.remove_entry(self.registry, SERIAL)
        self.flash.close()

    def flasher(self, **kwargs) -> DfuFlasher:
        kwargs.setdefault("confirm_version", False)
        kwargs.setdefault("boot_timeout", 5.0)
        return DfuFlasher(SERIAL, registry_dir=self.registry, backend=VirtualBackend(self.registry), **kwargs)


def test_flash_200k_image_verify_leave_and_boot(tmp_path):
    board = Board(tmp_path, timing=DfuTiming())
    seen: list[tuple[int, int, str]] = []
    payload = app_payload(200 * 1024)
    try:
        result = board.flasher(progress=lambda d, t, p: seen.append((d, t, p))).flash(image_of(payload))
        board.thread.join(5)
        assert not board.thread.is_alive()  # left DFU
        assert registry.find_entry(board.registry, SERIAL)["state"] == "app"
        assert board.flash.read(APP_BASE, len(payload)) == payload
        assert board.flash.read(APP_BASE + len(payload), 64) == b"\xff" * 64
    finally:
        board.close()
    assert not result.skipped and result.method == "dfu" and result.verified_by == "readback"
    assert result.bytes_written == len(payload)
    assert result.new_version == "1.2.3" and result.old_version is None
    assert result.link_limit_bps is None
    assert result.throughput_bps > 0 and result.write_seconds <= result.seconds
    phases = [p for _, _, p in seen]
    assert phases.index("erase") < phases.index("write") < phases.index("verify")
    for phase in ("erase", "write", "verify"):
        done, total, _ = [s for s in seen if s[2] == phase][-1]
        assert done == total
    print(f"DFU write throughput, 200 KiB through the virtual backend: {result.throughput_bps:.0f} B/s")


def test_identical_image_is_skipped_unless_forced(tmp_path):
    payload = app_payload(40 * 1024)
    board = Board(tmp_path)
    try:
        board.flasher().flash(image_of(payload))
    finally:
        board.close()
    board = Board(tmp_path)
    try:
        result = board.flasher().flash(image_of(payload))
        assert result.skipped and result.bytes_written == 0 and result.verified_by == ""
        assert result.old_version == "1.2.3"
        assert board.flash.operations == 0  # nothing erased or written
        board.thread.join(5)
        assert not board.thread.is_alive()  # it still left DFU, so the board boots
    finally:
        board.close()
    board = Board(tmp_path)
    try:
        forced = board.flasher().flash(image_of(payload), force=True)
        assert not forced.skipped and forced.bytes_written == len(payload)
    finally:
        board.close()


def _assert_refused_untouched(board: Board, image: FirmwareImage, match: str, **kwargs) -> None:
    before = board.flash.path.read_bytes()
    with pytest.raises(FlashError, match=match):
        board.flasher(**kwargs).flash(image)
    assert board.flash.operations == 0
    assert board.flash.path.read_bytes() == before
    assert board.thread.is_alive()  # still in DFU, ready for the right image
    dev = usb.core.find(idVendor=0x0483, idProduct=0xDF11, backend=VirtualBackend(board.registry))
    assert parse_status(dev.ctrl_transfer(0xA1, 3, 0, 0, 6)).state == DfuState.DFU_IDLE
    usb.util.dispose_resources(dev)


def test_images_outside_the_writable_area_are_refused_before_erase(tmp_path):
    board = Board(tmp_path)
    try:
        board.flash.write(APP_BASE, b"\x00" * 16)  # an old app that must survive
        board.flash.operations = 0
        _assert_refused_untouched(board, image_of(app_payload(8192), FLASH_BASE), "read-only sector")
        _assert_refused_untouched(board, image_of(app_payload(8192), FLASH_BASE + 0xFF000), "outside")
        spanning = FirmwareImage("two.hex", "hex", (Segment(APP_BASE, app_payload(4096)), Segment(0x08100000, b"\x00")))
        _assert_refused_untouched(board, spanning, "outside")
        _assert_refused_untouched(board, image_of(app_payload(1024 * 1024)), "outside")
    finally:
        board.close()


def test_wrong_board_id_is_refused_before_erase(tmp_path):
    board = Board(tmp_path)
    try:
        # The board id comes from the registry entry (serve_dfu board_id=7701) ...
        _assert_refused_untouched(board, image_of(app_payload(8192, board_id=9999)), "board id 9999")
        # ... or from the caller; an .apj that disagrees with its payload is refused too.
        _assert_refused_untouched(board, image_of(app_payload(8192, board_id=BOARD_ID)), "board id",
                                  board_id=1234)
        inconsistent = FirmwareImage("x.apj", "apj", (Segment(APP_BASE, app_payload(8192)),), board_id=42)
        _assert_refused_untouched(board, inconsistent, "inconsistent")
    finally:
        board.close()


def test_image_without_app_header_is_refused_by_a_board_that_boots_only_our_header(tmp_path):
    board = Board(tmp_path)
    try:
        raw = random.Random(5).randbytes(10_000)
        _assert_refused_untouched(board, image_of(raw, APP_BASE + 0x20000), "application start 0x08004000")
        _assert_refused_untouched(board, image_of(raw), "no application: magic is")
    finally:
        board.close()


def test_raw_image_with_a_vector_table_goes_to_a_board_of_unknown_type(tmp_path):
    board = Board(tmp_path, board_id=None)
    try:
        at = APP_BASE + 0x20000
        raw = struct.pack("<II", 0x20020000, at + 0x201) + random.Random(5).randbytes(10_000)
        result = board.flasher(wait_for_app=False).flash(image_of(raw, at))
        assert result.bytes_written == len(raw) and result.new_version is None
        assert board.flash.read(at, len(raw)) == raw
    finally:
        board.close()


def test_not_in_dfu_without_enter_dfu_says_how(tmp_path):
    reg = tmp_path / "reg"
    registry.write_entry(reg, {"usb_serial": SERIAL, "port": "/dev/pts/99", "process_id": os.getpid(), "state": "app"})
    flasher = DfuFlasher(SERIAL, registry_dir=reg, backend=VirtualBackend(reg))
    with pytest.raises(FlashError, match="BOOT0") as info:
        flasher.flash(image_of(app_payload(4096)))
    assert "state 'app'" in str(info.value)


def test_enter_dfu_is_called_when_the_board_is_not_in_dfu(tmp_path):
    boards: list[Board] = []
    reg = tmp_path / "reg"
    flasher = DfuFlasher(SERIAL, registry_dir=reg, backend=VirtualBackend(reg), confirm_version=False,
                         enter_dfu=lambda: boards.append(Board(tmp_path)), find_timeout=5.0)
    try:
        result = flasher.flash(image_of(app_payload(6000)))
        assert len(boards) == 1 and result.bytes_written == 6000
    finally:
        for board in boards:
            board.close()


@pytest.mark.parametrize("left_in", ["dfuERROR", "dfuDNLOAD-SYNC", "dfuUPLOAD-IDLE"])
def test_state_left_by_someone_else_is_cleared(tmp_path, left_in):
    board = Board(tmp_path)
    try:
        dev = usb.core.find(idVendor=0x0483, idProduct=0xDF11, backend=VirtualBackend(board.registry))
        if left_in == "dfuERROR":
            with pytest.raises(usb.core.USBError):
                dev.ctrl_transfer(0x21, 1, 0, 0, b"")  # zero-length DNLOAD in dfuIDLE: STALL
        elif left_in == "dfuDNLOAD-SYNC":
            dev.ctrl_transfer(0x21, 1, 0, 0, b"\x21\x00\x40\x00\x08")  # no GETSTATUS after it
        else:
            dev.ctrl_transfer(0xA1, 2, 2, 0, 2048)
        usb.util.dispose_resources(dev)
        payload = app_payload(5000)
        board.flasher().flash(image_of(payload))
        assert board.flash.read(APP_BASE, len(payload)) == payload
    finally:
        board.close()


CUT_PAYLOAD = app_payload(40 * 1024, version=(2, 0, 1), seed=9)
CUT_OPERATIONS = 3 + 20  # three 16 KiB sectors erased, twenty 2 KiB blocks written


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(min_value=1, max_value=CUT_OPERATIONS - 1))
def test_cut_off_flash_leaves_a_board_that_flashes_again(cut):
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        old = app_payload(12 * 1024, version=(1, 0, 0), seed=3)
        with Flash(work / "flash.bin") as flash:
            flash.write(APP_BASE, old)
        board = Board(work, cut_after=cut)
        try:
            with pytest.raises(FlashError, match="DFU transfer failed"):
                board.flasher().flash(image_of(CUT_PAYLOAD))
            board.thread.join(5)
            assert not board.thread.is_alive()
            # The app's header is written last: a cut-off flash never looks bootable.
            assert parse_app_header(board.flash.read(APP_BASE, 4096)) is None
        finally:
            board.close()
        board = Board(work)  # powered again with BOOT0 held
        try:
            result = board.flasher().flash(image_of(CUT_PAYLOAD))
            assert not result.skipped
            assert board.flash.read(APP_BASE, len(CUT_PAYLOAD)) == CUT_PAYLOAD
            assert parse_app_header(CUT_PAYLOAD)["crc_ok"]
        finally:
            board.close()


class InProcessDevice:
    """A pyusb-like `dev` on a DfuDevice in this process, noting every DNLOAD it gets."""

    def __init__(self, flash: Flash) -> None:
        self.device = DfuDevice(flash, SERIAL, timing=DfuTiming())
        self.dnloads: list[tuple[str, int, int]] = []  # ("SET", address, 0) / ("DATA", block, n)

    def ctrl_transfer(self, request_type, request, value, index, data, timeout=None):
        payload = b"" if request_type & 0x80 else bytes(data)
        length = int(data) if request_type & 0x80 else len(payload)
        if request == DfuRequest.DNLOAD and payload:
            if value == 0 and payload[0] == 0x21:
                self.dnloads.append(("SET", int.from_bytes(payload[1:5], "little"), 0))
            elif value >= 2:
                self.dnloads.append(("DATA", value, len(payload)))
        answer = self.device.control(request_type, request, value, index, length, payload)
        if answer is None:
            raise usb.core.USBError("Pipe error")
        self.device.finish_work()  # as serve_dfu does once the answer is out
        return answer if request_type & 0x80 else len(payload)


def _writes(dnloads: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """The DNLOADs of the write phase: from the SET_ADDRESS before the first data block."""
    first = next(i for i, d in enumerate(dnloads) if d[0] == "DATA") - 1
    last = max(i for i, d in enumerate(dnloads) if d[0] == "DATA")
    return dnloads[first : last + 1]


def test_blocks_of_each_region_follow_one_set_address_and_land_in_place(tmp_path):
    # Two regions with a gap; neither is a whole number of blocks.
    head = app_payload(5 * 2048 + 100)
    far = random.Random(8).randbytes(3000)
    far_at = APP_BASE + 0x20000
    image = FirmwareImage("two.hex", "hex", (Segment(APP_BASE, head), Segment(far_at, far)))
    with Flash(tmp_path / "flash.bin") as flash:
        dev = InProcessDevice(flash)
        flasher = DfuFlasher(SERIAL, registry_dir=tmp_path, wait_for_app=False)
        layout = parse_memory_layout(dev.device._strings[4])
        session = DfuSession(dev, transfer_size=2048)
        session.ensure_idle()
        flasher._flash(session, image, flasher.check_image(image, layout), True, layout)
        assert _writes(dev.dnloads) == [
            # the first region from its second block on: one pointer, blocks 2, 3, ...
            ("SET", APP_BASE + 2048, 0),
            *[("DATA", n, 2048) for n in range(2, 6)],
            ("DATA", 6, 100),
            # the region after the gap: its own pointer
            ("SET", far_at, 0),
            ("DATA", 2, 2048),
            ("DATA", 3, 3000 - 2048),
            # the held-back first block (the app's magic), last
            ("SET", APP_BASE, 0),
            ("DATA", 2, 2048),
        ]
        assert flash.read(APP_BASE, len(head)) == head
        assert flash.read(far_at, len(far)) == far
        gap = far_at - (APP_BASE + len(head))
        assert flash.read(APP_BASE + len(head), gap) == b"\xff" * gap
        assert flash.read(far_at + len(far), 64) == b"\xff" * 64


def test_a_region_past_the_last_block_number_gets_a_new_set_address(tmp_path, monkeypatch):
    monkeypatch.setattr(dfu_flasher, "MAX_BLOCK", 4)  # blocks 2, 3, 4 per pointer
    data = random.Random(4).randbytes(7 * 2048 - 10)
    blocks = [data[i : i + 2048] for i in range(0, len(data), 2048)]
    with Flash(tmp_path / "flash.bin") as flash:
        dev = InProcessDevice(flash)
        session = DfuSession(dev, transfer_size=2048)
        session.ensure_idle()
        landed: list[tuple[int, int]] = []
        session.write_blocks(APP_BASE, blocks, lambda at, n: landed.append((at, n)))
        assert [d[:2] for d in dev.dnloads] == [
            ("SET", APP_BASE), ("DATA", 2), ("DATA", 3), ("DATA", 4),
            ("SET", APP_BASE + 3 * 2048), ("DATA", 2), ("DATA", 3), ("DATA", 4),
            ("SET", APP_BASE + 6 * 2048), ("DATA", 2),
        ]
        assert landed == [(APP_BASE + i * 2048, len(b)) for i, b in enumerate(blocks)]
        assert flash.read(APP_BASE, len(data)) == data


def test_only_the_last_block_of_a_region_may_be_short(tmp_path):
    with Flash(tmp_path / "flash.bin") as flash:
        session = DfuSession(InProcessDevice(flash), transfer_size=2048)
        with pytest.raises(ValueError, match="only the last may be shorter"):
            session.write_blocks(APP_BASE, [b"\x00" * 100, b"\x00" * 2048])
        assert flash.app_bytes() == b"\xff" * len(flash.app_bytes())


def test_without_auto_increment_every_block_gets_its_pointer_and_block_2(tmp_path):
    data = random.Random(6).randbytes(3 * 2048)
    with Flash(tmp_path / "flash.bin") as flash:
        dev = InProcessDevice(flash)
        session = DfuSession(dev, transfer_size=2048, auto_increment=False)
        session.ensure_idle()
        session.write_blocks(APP_BASE, [data[i : i + 2048] for i in range(0, len(data), 2048)])
        assert [d[:2] for d in dev.dnloads] == [
            ("SET", APP_BASE), ("DATA", 2),
            ("SET", APP_BASE + 2048), ("DATA", 2),
            ("SET", APP_BASE + 4096), ("DATA", 2),
        ]
        assert flash.read(APP_BASE, len(data)) == data


def test_a_device_without_functional_descriptor_gets_a_pointer_per_block(tmp_path, monkeypatch):
    def bare_configuration() -> bytes:
        tail = dfu_device.interface_descriptor()
        return struct.pack("<BBHBBBBB", 9, 2, 9 + len(tail), 1, 1, 0, 0xC0, 50) + tail

    monkeypatch.setattr(dfu_device, "configuration_descriptor", bare_configuration)
    blocks: list[int] = []
    control = DfuDevice.control

    def recording(self, request_type, request, value, index, length, data):
        if request == DfuRequest.DNLOAD and value >= 2:
            blocks.append(value)
        return control(self, request_type, request, value, index, length, data)

    monkeypatch.setattr(DfuDevice, "control", recording)
    board = Board(tmp_path)
    payload = app_payload(5 * 2048)
    try:
        board.flasher().flash(image_of(payload))
        assert board.flash.read(APP_BASE, len(payload)) == payload
    finally:
        board.close()
    assert blocks and set(blocks) == {2}
