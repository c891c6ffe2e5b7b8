"""Nothing wrong is erased onto a board: refusals before the erase, on both paths.

An image whose file names the right board but whose payload is for another board, or
is junk, an address far outside the flash, a corrupt ArduPilot descriptor: each is
refused with one line before anything is erased, and the board's flash reads back as
it was. A flash cut off after the erase says how to finish, and the next one does.
"""

from __future__ import annotations

import random
import struct
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hil.firmware.app_image import build_app
from hil.firmware.arm_image import (
    APP_DESCRIPTOR_SIG,
    check_vector_table,
    crc32_ap,
    find_app_descriptor,
    stamp_app_descriptor,
)
from hil.firmware.build import REPO_IMAGES
from hil.firmware.image import FirmwareImage, ImageError, Segment, load_image, write_apj
from hil.flash.base import FlashInterrupted
from hil.flash.preflight import FlashArea, FlashTarget, ImageRefused, check_image
from hil.flash.serial_flasher import SerialFlasher, app_payload
from hil.links import registry
from hil.links.ports import find_port
from hil.vfc.flash import APP_BASE, FLASH_BASE, Flash
from hil.vfc.process import VirtualBoardProcess
from tests.test_dfu_flasher import Board, _assert_refused_untouched, image_of
from tests.test_dfu_flasher import app_payload as dfu_app_payload

SERIAL = "HILREFUSE1"
RELEASE = REPO_IMAGES / "hilcopter-1.0.0.apj"
PATCH = REPO_IMAGES / "hilcopter-1.0.1-fieldpatch.apj"
UNTOUCHED = "refused before erasing, the board's firmware is untouched"
_PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _apj(path: Path, payload: bytes, board_id: int = 7701) -> Path:
    """An .apj whose JSON names `board_id`, whatever its payload says."""
    write_apj(FirmwareImage("p", "bin", (Segment(APP_BASE, payload),)), path, board_id=board_id, version="9.9.9")
    return path


def _other_board_apj(tmp_path: Path) -> Path:
    payload = build_app(board_id=9999, name="Other", version="2.0.0", loop_rate=400)
    return _apj(tmp_path / "other-board.apj", payload)


def _junk_apj(tmp_path: Path) -> Path:
    return _apj(tmp_path / "junk.apj", random.Random(3).randbytes(20_000))


def _far_hex(tmp_path: Path) -> Path:
    """The shipped release HEX (about 90 KB) with one more record at 0xFFFFFFF0."""
    lines = (REPO_IMAGES / "hilcopter-1.0.0.hex").read_text().splitlines()
    far = [":02000004FFFFFC", ":10FFF000" + "00" * 16 + "01"]
    path = tmp_path / "far.hex"
    path.write_text("\n".join(lines[:-1] + far + lines[-1:]) + "\n")
    return path


def _one_line_refusal(exc: BaseException, *needles: str) -> None:
    text = str(exc)
    assert "\n" not in text and text.endswith(UNTOUCHED), text
    for needle in needles:
        assert needle in text, text


REFUSED = [
    (_other_board_apj, "the apj file says board id 7701, its payload says 9999; the image is inconsistent"),
    (_junk_apj, "application header at 0x08004000: no application: magic is"),
]
REFUSED_IDS = ["payload-for-another-board", "junk-payload"]


# ------------------------------------------------------------------ serial bootloader


@pytest.fixture
def serial_board(tmp_path: Path) -> Iterator[VirtualBoardProcess]:
    with Flash(tmp_path / "flash.bin") as flash:
        flash.write(APP_BASE, app_payload(load_image(RELEASE)))
    proc = VirtualBoardProcess(
        SERIAL, tmp_path / "storage.bin", tmp_path / "registry", flash_path=tmp_path / "flash.bin", sector_erase_s=0.02
    )
    proc.start()
    yield proc
    proc.stop()


def _flash_file(board: VirtualBoardProcess) -> bytes:
    return Path(board.flash_path).read_bytes()  # type: ignore[arg-type]


@pytest.mark.parametrize(("make", "message"), REFUSED, ids=REFUSED_IDS)
def test_serial_path_refuses_a_wrong_payload_and_the_board_keeps_running_its_firmware(
    serial_board: VirtualBoardProcess, tmp_path: Path, make, message: str
) -> None:
    before = _flash_file(serial_board)
    app_port = find_port(SERIAL, serial_board.registry_dir, timeout=10, state="app").device
    with pytest.raises(ImageRefused) as info:
        SerialFlasher(SERIAL, registry_dir=serial_board.registry_dir).flash(load_image(make(tmp_path)))
    _one_line_refusal(info.value, message)
    assert _flash_file(serial_board) == before
    # Refused before the reboot: the application still runs on the same port.
    assert find_port(SERIAL, serial_board.registry_dir, timeout=0, state="app").device == app_port


def test_serial_path_refuses_a_wrong_payload_even_when_the_registry_names_no_board(
    serial_board: VirtualBoardProcess, tmp_path: Path
) -> None:
    """The bootloader's own BOARD_ID decides then, still before CHIP_ERASE."""
    entry = registry.find_entry(serial_board.registry_dir, SERIAL)
    entry.pop("board_id")
    registry.write_entry(serial_board.registry_dir, entry)
    before = _flash_file(serial_board)
    image = FirmwareImage("other.hex", "hex", (Segment(APP_BASE, build_app(board_id=9999, name="O", version="2.0.0", loop_rate=400)),))
    with pytest.raises(ImageRefused) as info:
        SerialFlasher(SERIAL, registry_dir=serial_board.registry_dir).flash(image)
    _one_line_refusal(info.value, "its payload says board id 9999", "is board id 7701")
    assert _flash_file(serial_board) == before
    assert find_port(SERIAL, serial_board.registry_dir, timeout=10, state="app")  # the old app boots again


def test_far_hex_is_refused_quickly_with_bounded_memory_before_the_board_is_touched(tmp_path: Path) -> None:
    path = _far_hex(tmp_path)
    assert 80_000 < path.stat().st_size < 100_000
    tracemalloc.start()
    started = time.monotonic()
    try:
        image = load_image(path)
        with pytest.raises(ImageRefused) as info:
            SerialFlasher("HILNOBOARD", registry_dir=tmp_path / "reg", port_timeout=0.1).flash(image)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 2.0
    assert peak < 16 * 1024 * 1024, f"peak {peak} bytes"
    _one_line_refusal(info.value, "far.hex: bytes 0xFFFFFFF0..0x100000000 lie outside the flash of board HILNOBOARD")
    with pytest.raises(ImageError, match="an address in the file is wrong"):
        image.contiguous()


def test_interrupted_serial_flash_says_how_to_finish_and_the_next_flash_does(
    serial_board: VirtualBoardProcess,
) -> None:
    def pull_the_cable(done: int, total: int, phase: str) -> None:
        if phase == "write" and done > 4096:
            raise OSError("cable pulled")

    with pytest.raises(FlashInterrupted) as info:
        SerialFlasher(SERIAL, registry_dir=serial_board.registry_dir, progress=pull_the_cable).flash(load_image(PATCH))
    text = str(info.value)
    assert "cut off after the erase began (OSError: cable pulled)" in text
    assert "the board is now in its bootloader without an application" in text
    retry = info.value.with_retry("hil flash patch.apj --method serial")
    assert "run `hil flash patch.apj --method serial` again to finish" in str(retry)
    assert registry.find_entry(serial_board.registry_dir, SERIAL)["state"] == "bootloader"
    result = SerialFlasher(SERIAL, registry_dir=serial_board.registry_dir).flash(load_image(PATCH))
    assert not result.skipped and result.new_version == "1.0.1-fieldpatch"


# ------------------------------------------------------------------------------- DFU


def _dfu_board(tmp_path: Path) -> Board:
    with Flash(tmp_path / "flash.bin") as flash:
        flash.write(APP_BASE, dfu_app_payload(12 * 1024, version=(1, 0, 0)))
    return Board(tmp_path)


@pytest.mark.parametrize(("make", "message"), REFUSED, ids=REFUSED_IDS)
def test_dfu_path_refuses_a_wrong_payload_and_the_flash_is_untouched(tmp_path: Path, make, message: str) -> None:
    board = _dfu_board(tmp_path)
    try:
        image = load_image(make(tmp_path), base_address=APP_BASE)  # as --base-address 0x08004000
        _assert_refused_untouched(board, image, message)
    finally:
        board.close()


@pytest.mark.parametrize(
    ("base", "message"),
    [
        (FLASH_BASE, "falls in the read-only sector (the bootloader) at 0x08000000"),
        (APP_BASE, "no application: magic is"),
    ],
)
def test_dfu_path_refuses_a_junk_bin_at_any_base_address(tmp_path: Path, base: int, message: str) -> None:
    board = _dfu_board(tmp_path)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(random.Random(4).randbytes(30_000))
    try:
        with pytest.raises(ImageRefused) as info:
            board.flasher().flash(load_image(junk, base_address=base))
        _one_line_refusal(info.value, message)
        assert board.flash.operations == 0
    finally:
        board.close()


def test_dfu_path_refuses_the_far_hex_before_erasing(tmp_path: Path) -> None:
    board = _dfu_board(tmp_path)
    try:
        _assert_refused_untouched(board, load_image(_far_hex(tmp_path)), r"0xFFFFFFF0\.\.0x100000000 lie outside")
    finally:
        board.close()


def test_interrupted_dfu_flash_says_how_to_finish_and_the_next_flash_does(tmp_path: Path) -> None:
    payload = dfu_app_payload(40 * 1024, version=(2, 0, 0))
    board = Board(tmp_path, cut_after=6)
    try:
        with pytest.raises(FlashInterrupted, match="now in its bootloader without an application") as info:
            board.flasher().flash(image_of(payload))
        assert "DFU transfer failed" in str(info.value) and "\n" not in str(info.value)
    finally:
        board.close()
    board = Board(tmp_path)
    try:
        assert board.flasher().flash(image_of(payload)).bytes_written == len(payload)
        assert board.flash.read(APP_BASE, len(payload)) == payload
    finally:
        board.close()


# ------------------------------------------------------------------------- hil flash


def test_hil_flash_refuses_the_probe_images_on_both_paths_and_leaves_the_flash(tmp_path: Path) -> None:
    from tests.test_cli_flash import _hil

    other = _other_board_apj(tmp_path)
    first = _hil(tmp_path, "flash", str(other))  # starts the board: the factory image
    flash_file = tmp_path / "state" / "HILVFC0001" / "flash.bin"
    before = flash_file.read_bytes()
    assert first.returncode == 4 and first.stderr.count("\n") == 1, first.stderr
    assert first.stderr.startswith(f"hil flash: {other}: the apj file says board id 7701, its payload says 9999")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(random.Random(5).randbytes(30_000))
    second = _hil(tmp_path, "flash", str(junk), "--method", "dfu", "--base-address", "0x08004000")
    assert second.returncode == 4 and "no application: magic is" in second.stderr, second.stderr
    assert UNTOUCHED in second.stderr.splitlines()[-1]
    assert flash_file.read_bytes() == before


def test_hil_flash_interrupted_names_the_command_that_finishes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from hil import cli
    from tests.test_cli_flash import _rig

    argv = ["flash", str(PATCH), "--rig", str(_rig(tmp_path)), "--state-dir", str(tmp_path / "state")]
    real_write = SerialFlasher._write

    def cut(self, link, payload, total):  # noqa: ANN001 - the patched method's own signature
        raise OSError("USB hub reset")

    monkeypatch.setattr(SerialFlasher, "_write", cut)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert f"run `hil flash {PATCH} --method serial --rig {tmp_path / 'rig.toml'} --state-dir {tmp_path / 'state'}` again to finish" in err
    monkeypatch.setattr(SerialFlasher, "_write", real_write)
    assert cli.main(argv) == 0
    assert "1.0.1" in capsys.readouterr().out


# ------------------------------------------------------------------ checks of real firmware


def _arm_image(board_id: int, *, size: int = 4096, at: int = APP_BASE, descriptor: bool = True) -> bytes:
    """A Cortex-M application as ArduPilot builds one: vector table, code, app descriptor."""
    body = bytearray(random.Random(board_id).randbytes(size))
    body[0:8] = struct.pack("<II", 0x20020000, at + 0x1C1)
    if descriptor:
        body[0x400 : 0x400 + 28] = APP_DESCRIPTOR_SIG + bytes(16) + struct.pack("<BBH", 4, 5, board_id)
        return stamp_app_descriptor(bytes(body))
    return bytes(body)


def _arm_target(board_id: int | None) -> FlashTarget:
    return FlashTarget("board TEST", APP_BASE, (FlashArea(APP_BASE, APP_BASE + 0xFC000),), board_id=board_id)


def _arm(data: bytes, **fields: object) -> FirmwareImage:
    return FirmwareImage("ap.apj", "apj", (Segment(APP_BASE, data),), **fields)  # type: ignore[arg-type]


def test_an_ardupilot_image_passes_on_its_board_by_its_descriptor() -> None:
    checked = check_image(_arm(_arm_image(9), board_id=9), _arm_target(9))
    assert (checked.kind, checked.board_id, checked.version) == ("ardupilot-descriptor", 9, "4.5")
    assert check_image(_arm(_arm_image(9, descriptor=False)), _arm_target(None)).kind == "vector-table"


@pytest.mark.parametrize(
    ("data", "fields", "board", "message"),
    [
        (_arm_image(9), {}, 10, "its ArduPilot app descriptor says board id 9, board TEST is board id 10"),
        (_arm_image(9), {"board_id": 10}, None, "the apj file says board id 10, its ArduPilot app descriptor says 9"),
        (_arm_image(9)[:0x500] + b"\x00" + _arm_image(9)[0x501:], {}, 9, "ArduPilot app descriptor CRCs say"),
        (b"\x00\x00\x00\x00" + _arm_image(9)[4:], {}, 9, "initial stack pointer 0x00000000 is not a word-aligned RAM address"),
        (_arm_image(9)[:4] + struct.pack("<I", APP_BASE + 0x1C0) + _arm_image(9)[8:], {}, 9, "is not a Thumb address"),
        (_arm_image(9)[:4] + struct.pack("<I", 0x08200001) + _arm_image(9)[8:], {}, 9, "inside the image"),
    ],
    ids=["other-board", "file-disagrees", "bad-crc", "sp-not-in-ram", "reset-not-thumb", "reset-outside"],
)
def test_real_firmware_checks_refuse_with_one_line(data: bytes, fields: dict, board: int | None, message: str) -> None:
    with pytest.raises(ImageRefused) as info:
        check_image(_arm(data, **fields), _arm_target(board))
    _one_line_refusal(info.value, message)


def test_the_ardupilot_crc_is_crc32_small() -> None:
    """crc32_small: reflected 0xEDB88320, initial value 0, no final xor."""
    crc = 0
    for byte in b"123456789":
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 & -(crc & 1))
    assert crc32_ap(b"123456789") == crc
    assert crc32_ap(b"6789", crc32_ap(b"12345")) == crc


@_PROPS
@given(board_id=st.integers(0, 0xFFFF), size=st.integers(0x440, 20_000), at=st.integers(0x20, 0x400))
def test_app_descriptor_round_trip(board_id: int, size: int, at: int) -> None:
    body = bytearray(random.Random(size).randbytes(size))
    body[:] = body.replace(APP_DESCRIPTOR_SIG, b"\x00" * 8)
    body[at : at + 28] = APP_DESCRIPTOR_SIG + bytes(16) + struct.pack("<BBH", 1, 2, board_id)
    stamped = stamp_app_descriptor(bytes(body))
    found = find_app_descriptor(stamped)
    assert found is not None and found.offset == body.find(APP_DESCRIPTOR_SIG)
    assert (found.board_id, found.image_size, found.version_major, found.version_minor) == (board_id, size, 1, 2)
    assert stamped[found.offset : found.offset + 28] == found.encode()


@_PROPS
@given(data=st.binary(max_size=400), sig_at=st.one_of(st.none(), st.integers(0, 400)))
def test_garbage_descriptor_only_raises_image_error(data: bytes, sig_at: int | None) -> None:
    if sig_at is not None:
        data = data[:sig_at] + APP_DESCRIPTOR_SIG + data[sig_at:]
    try:
        find_app_descriptor(data)
    except ImageError:
        pass


@_PROPS
@given(head=st.binary(min_size=0, max_size=16), at=st.integers(0, 2**32 - 64))
def test_garbage_vector_table_only_raises_image_error(head: bytes, at: int) -> None:
    image = FirmwareImage("v.bin", "bin", (Segment(at, head),)) if head else FirmwareImage("v.bin", "bin", ())
    try:
        table = check_vector_table(image, at)
    except ImageError:
        return
    assert table.reset & 1 and image.covers(table.reset & ~1)


segments = st.lists(
    st.tuples(st.integers(0, 2**32 - 1), st.binary(min_size=1, max_size=64)), min_size=0, max_size=4
)


@_PROPS
@given(raw=segments, board_id=st.one_of(st.none(), st.integers(0, 2**32 - 1)), header=st.booleans())
def test_garbage_images_only_raise_image_refused(raw, board_id: int | None, header: bool) -> None:
    placed: list[Segment] = []
    for address, data in sorted(raw):
        address = max(address, placed[-1].end if placed else 0)
        if address + len(data) <= 2**32:
            placed.append(Segment(address, data))
    image = FirmwareImage("g.hex", "hex", tuple(placed), board_id=board_id)
    target = FlashTarget("board G", APP_BASE, (FlashArea(FLASH_BASE, APP_BASE, False), FlashArea(APP_BASE, APP_BASE + 0xFC000)), 7701, header)
    try:
        check_image(image, target)
    except ImageRefused as exc:
        assert "\n" not in str(exc)


@_PROPS
@given(raw=segments, start=st.integers(0, 2**32 - 1), length=st.integers(0, 300))
def test_sparse_read_matches_the_dense_bytes(raw, start: int, length: int) -> None:
    placed: list[Segment] = []
    for address, data in sorted(raw):
        address = max(address, placed[-1].end if placed else 0)
        if address + len(data) <= 2**32:
            placed.append(Segment(address, data))
    image = FirmwareImage("s.hex", "hex", tuple(placed))
    got = image.read(start, length)
    assert len(got) == length
    for i in range(0, length, 37):
        address = start + i
        seg = next((s for s in image.segments if s.address <= address < s.end), None)
        assert got[i] == (seg.data[address - seg.address] if seg else 0xFF)
    if image.segments and image.span < 4096:
        assert image.read(image.base_address, image.span) == image.contiguous()
        assert image.moved(0x1000).moved(image.base_address) == image


def test_loader_checks_added_for_real_files(tmp_path: Path) -> None:
    import json

    good = json.loads(RELEASE.read_text())
    for field, value, needle in (
        ("image_maxsize", 100, "image_maxsize is 100"),
        ("board_id", 2**33, "does not fit a u32"),
    ):
        path = tmp_path / f"{field}.apj"
        path.write_text(json.dumps({**good, field: value}))
        with pytest.raises(ImageError, match=needle):
            load_image(path)


def test_a_dfuse_file_whose_suffix_is_not_dfuse_is_refused() -> None:
    import io

    from hil.firmware.image import dfu_suffix, parse_image, write_dfu

    out = io.BytesIO()
    write_dfu(_arm(_arm_image(9)), out, vid=0x0483, pid=0xDF11)
    body = out.getvalue()[:-16]
    relabelled = dfu_suffix(body, vid=0x0483, pid=0xDF11, bcd_dfu=0x0100)
    with pytest.raises(ImageError, match="bcdDFU 0x011A, this one says 0x0100"):
        parse_image(relabelled, "x.dfu")
