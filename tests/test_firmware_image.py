"""Firmware images: every format round-trips, and bad files fail with a named, useful error."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hil.firmware import image as fw
from hil.firmware.image import (
    FirmwareImage,
    ImageError,
    Segment,
    load_image,
    parse_image,
    write_apj,
    write_bin,
    write_dfu,
    write_hex,
    write_px4,
)

FLASH = 0x08000000
_PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def segment_lists(draw: st.DrawFn, max_segments: int = 4) -> tuple[Segment, ...]:
    """Non-overlapping segments, some straddling 64 KiB boundaries."""
    count = draw(st.integers(1, max_segments))
    address = draw(st.one_of(st.integers(0, 0xFFFF_0000), st.sampled_from([0x0800FFF8, FLASH])))
    segments = []
    for _ in range(count):
        data = draw(st.binary(min_size=1, max_size=300))
        if address + len(data) > 1 << 32:
            break
        segments.append(Segment(address, data))
        address += len(data) + draw(st.integers(0, 0x2_0000))
    return tuple(segments)


def _image(segments: tuple[Segment, ...], **fields: object) -> FirmwareImage:
    return FirmwareImage("memory", "test", segments, **fields)  # type: ignore[arg-type]


def _apj(**overrides: object) -> bytes:
    payload = overrides.pop("payload", b"\x00\x10\x00\x20firmware")
    desc = {
        "magic": "APJFWv1",
        "board_id": 9,
        "board_revision": 0,
        "image": base64.b64encode(zlib.compress(payload, 9)).decode(),  # type: ignore[arg-type]
        "image_size": len(payload),  # type: ignore[arg-type]
        "version": "4.6.0",
        "git_identity": "abc123",
        "USBID": "0x1209/0x5741",
    }
    desc.update(overrides)
    return json.dumps(desc).encode()


def _elf(segments: list[tuple[int, int, bytes]], machine: int = 40, ident_class: int = 1) -> bytes:
    """A minimal 32-bit LE ELF with one PT_LOAD per (vaddr, paddr, data)."""
    phoff = 52
    offset = phoff + 32 * len(segments)
    ident = b"\x7fELF" + bytes([ident_class, 1, 1]) + bytes(9)
    header = struct.pack(
        "<16sHHIIIIIHHHHHH",
        ident,
        2,
        machine,
        1,
        FLASH + 1,
        phoff,
        0,
        0,
        52,
        32,
        len(segments),
        40,
        0,
        0,
    )
    phdrs, blobs = b"", b""
    for vaddr, paddr, data in segments:
        phdrs += struct.pack(
            "<IIIIIIII", 1, offset + len(blobs), vaddr, paddr, len(data), len(data) + 8, 5, 4
        )
        blobs += data
    return header + phdrs + blobs


# ------------------------------------------------------------------------ the model


def test_contiguous_fills_gaps_and_sha256_hashes_it() -> None:
    img = _image((Segment(0x100, b"\x01\x02"), Segment(0x104, b"\x03")))
    assert img.contiguous() == b"\x01\x02\xff\xff\x03"
    assert img.contiguous(fill=0) == b"\x01\x02\x00\x00\x03"
    assert img.sha256 == hashlib.sha256(b"\x01\x02\xff\xff\x03").hexdigest()
    assert (img.size, img.base_address, img.end_address) == (3, 0x100, 0x105)


def test_touching_segments_merge_and_are_sorted() -> None:
    img = _image((Segment(0x10, b"cd"), Segment(0x0E, b"ab"), Segment(0x20, b"")))
    assert img.segments == (Segment(0x0E, b"abcd"),)


def test_overlapping_segments_are_an_image_error() -> None:
    with pytest.raises(ImageError, match="overlaps"):
        _image((Segment(0x10, b"abcd"), Segment(0x12, b"x")))


def test_sha256_streams_over_a_large_gap() -> None:
    img = _image((Segment(0, b"a"), Segment(3 * 65536 + 5, b"b")))
    assert img.sha256 == hashlib.sha256(img.contiguous()).hexdigest()


# -------------------------------------------------------------------- round trips


@_PROPS
@given(
    segs=segment_lists(), board_id=st.integers(0, 2**31), version=st.text(min_size=1, max_size=20)
)
def test_apj_round_trip(tmp_path_factory: pytest.TempPathFactory, segs, board_id, version) -> None:
    path = tmp_path_factory.mktemp("apj") / "fw.apj"
    src = _image(segs, usb_vid=0x1209, usb_pid=0x5741)
    if src.end_address - src.base_address > 1 << 20:
        src = _image(segs[:1], usb_vid=0x1209, usb_pid=0x5741)
    write_apj(src, path, board_id=board_id, board_revision=3, version=version)
    got = load_image(path, base_address=src.base_address)
    assert got.format == "apj"
    assert got.segments == (Segment(src.base_address, src.contiguous()),)
    assert (got.board_id, got.board_revision, got.version) == (board_id, 3, version)
    assert (got.usb_vid, got.usb_pid) == (0x1209, 0x5741)
    assert got.sha256 == src.sha256


@_PROPS
@given(data=st.binary(min_size=1, max_size=2000), board_id=st.integers(0, 2**31))
def test_px4_round_trip(tmp_path_factory: pytest.TempPathFactory, data, board_id) -> None:
    path = tmp_path_factory.mktemp("px4") / "fw.px4"
    write_px4(_image((Segment(FLASH, data),)), path, board_id=board_id, version="v1.15.0")
    got = load_image(path)
    assert (got.format, got.segments, got.board_id, got.version) == (
        "px4",
        (Segment(FLASH, data),),
        board_id,
        "v1.15.0",
    )


@_PROPS
@given(
    segs=segment_lists(),
    record_size=st.integers(1, 255),
    start=st.none() | st.integers(0, 2**32 - 1),
)
def test_hex_round_trip(segs, record_size, start) -> None:
    src = _image(segs)
    out = io.BytesIO()
    write_hex(src, out, record_size=record_size, start_address=start)
    got = parse_image(out.getvalue(), "fw.hex")
    assert got.format == "hex"
    assert got.segments == src.segments
    assert got.metadata.get("start_address") == start


@_PROPS
@given(
    segs=segment_lists(),
    vid=st.integers(0, 0xFFFE),
    pid=st.integers(0, 0xFFFE),
    alt=st.integers(0, 255),
)
def test_dfuse_round_trip(segs, vid, pid, alt) -> None:
    out = io.BytesIO()
    write_dfu(_image(segs), out, vid=vid, pid=pid, alt=alt, target_name="Internal Flash")
    got = parse_image(out.getvalue(), "fw.dfu")
    assert got.format == "dfuse"
    assert got.segments == _image(segs).segments
    assert (got.usb_vid, got.usb_pid) == (vid, pid)
    assert got.metadata["targets"][0]["alt"] == alt
    assert got.metadata["targets"][0]["name"] == "Internal Flash"


@_PROPS
@given(data=st.binary(min_size=1, max_size=2000), base=st.integers(0, 0xF000_0000))
def test_bin_round_trip(data, base) -> None:
    out = io.BytesIO()
    write_bin(_image((Segment(base, data),)), out)
    got = parse_image(out.getvalue(), "fw.bin", base_address=base)
    assert (got.format, got.segments) == ("bin", (Segment(base, data),))


@_PROPS
@given(segs=segment_lists())
def test_elf_program_headers_give_segments_at_load_addresses(segs) -> None:
    # vaddr differs from paddr (like .data copied to RAM): flash wants paddr.
    elf = _elf([(0x2000_0000 + i, s.address, s.data) for i, s in enumerate(segs)])
    got = parse_image(elf, "fw.elf")
    assert got.format == "elf"
    assert got.segments == _image(segs).segments
    assert got.metadata["entry"] == FLASH + 1


def test_plain_dfu_with_suffix_needs_and_uses_a_base_address() -> None:
    raw = fw.dfu_suffix(b"payload!", vid=0x0483, pid=0xDF11, bcd_dfu=0x0100)
    with pytest.raises(ImageError, match="base_address"):
        parse_image(raw, "fw.dfu")
    got = parse_image(raw, "fw.dfu", base_address=FLASH)
    assert (got.format, got.segments, got.usb_vid) == (
        "dfu",
        (Segment(FLASH, b"payload!"),),
        0x0483,
    )


def test_apj_defaults_to_stm32_flash_base_and_keeps_fields_as_metadata() -> None:
    got = parse_image(_apj(summary="CubeOrange"), "fw.apj")
    assert got.base_address == FLASH
    assert got.metadata["summary"] == "CubeOrange"
    assert "image" not in got.metadata


def test_apj_version_falls_back_to_git_identity() -> None:
    assert parse_image(_apj(version=None), "fw.apj").version == "abc123"


def test_hex_segment_addressing_and_start_records() -> None:
    text = ":020000021000EC\n:0400000001020304F2\n:0400000300001000E9\n:00000001FF\n"
    got = parse_image(text.encode(), "fw.hex")
    assert got.segments == (Segment(0x10000, b"\x01\x02\x03\x04"),)
    assert got.metadata["start_segment_address"] == 0x1000


# ------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("fw.apj", b'{"magic": "APJFWv1", ', "not valid JSON"),
        ("fw.apj", _apj(magic="XXXFWv1"), "wrong magic"),
        ("fw.apj", _apj(image="!!notbase64!!"), "not valid base64"),
        ("fw.apj", _apj(image=base64.b64encode(b"not zlib").decode()), "not valid zlib"),
        (
            "fw.apj",
            _apj(image=base64.b64encode(zlib.compress(b"x" * 100)[:-6]).decode()),
            "truncated",
        ),
        ("fw.apj", _apj(image_size=5), "image_size says 5 bytes"),
        ("fw.apj", _apj(USBID="1209:5741"), "0xVID/0xPID"),
        ("fw.apj", _apj(board_id="nine"), "'board_id' must be an integer"),
        ("fw.apj", _apj(payload=b"", image_size=0), "empty"),
        ("fw.hex", b":0400000001020304F3\n:00000001FF\n", "line 1: HEX checksum error"),
        ("fw.hex", b":0400000001020304F2\n", "no end-of-file record"),
        ("fw.hex", b":0400000001020304F2\nhello\n:00000001FF\n", "line 2"),
        ("fw.hex", b":00000001FF\n", "empty"),
        ("fw.bin", b"\x00\x01", "base_address"),
        ("fw.xyz", b"\x00\x01\x02", "unknown firmware format; supported: .apj"),
        ("fw.bin", b"", "empty"),
        ("fw.elf", _elf([(0, 0, b"x")], machine=3), "not ARM"),
        ("fw.elf", _elf([(0, 0, b"x")], ident_class=2), "32-bit"),
        ("fw.elf", _elf([(0, 0, b"abcd")])[:-2], "truncated"),
    ],
)
def test_bad_files_name_the_file_and_the_reason(name: str, content: bytes, needle: str) -> None:
    with pytest.raises(ImageError) as caught:
        parse_image(content, name)
    assert name in str(caught.value)
    assert needle in str(caught.value)


def _good_dfu() -> bytes:
    out = io.BytesIO()
    write_dfu(_image((Segment(FLASH, b"0123456789abcdef"),)), out, vid=0x0483, pid=0xDF11)
    return out.getvalue()


def test_dfuse_crc_mismatch_reports_expected_and_actual() -> None:
    data = bytearray(_good_dfu())
    data[300] ^= 0x01
    with pytest.raises(
        ImageError, match=r"DfuSe CRC mismatch \(expected 0x[0-9A-F]{8}.*file says 0x"
    ):
        parse_image(bytes(data), "fw.dfu")


def _with_fixed_crc(body: bytes) -> bytes:
    return body[:-4] + struct.pack("<I", zlib.crc32(body[:-4]) ^ 0xFFFFFFFF)


def test_dfuse_inconsistent_sizes_are_reported() -> None:
    data = bytearray(_good_dfu())
    struct.pack_into("<I", data, 6, 9999)  # prefix imageSize
    with pytest.raises(ImageError, match="DfuSe size fields inconsistent"):
        parse_image(_with_fixed_crc(bytes(data)), "fw.dfu")
    data = bytearray(_good_dfu())
    struct.pack_into("<I", data, 11 + 274 + 4, 17)  # element size one too big
    with pytest.raises(ImageError, match="DfuSe size fields inconsistent"):
        parse_image(_with_fixed_crc(bytes(data)), "fw.dfu")


def test_truncated_dfuse_file_is_reported() -> None:
    with pytest.raises(ImageError, match="fw.dfu"):
        parse_image(_good_dfu()[:-3], "fw.dfu")


def test_missing_file_is_an_image_error(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="cannot read"):
        load_image(tmp_path / "nope.apj")


def test_writers_refuse_an_empty_image() -> None:
    with pytest.raises(ImageError, match="empty"):
        write_hex(_image(()), io.BytesIO())


# --------------------------------------------------------------- garbage never escapes


_NAMES = ["fw.apj", "fw.px4", "fw.hex", "fw.dfu", "fw.elf", "fw.bin", "fw"]


@_PROPS
@given(data=st.binary(max_size=400), name=st.sampled_from(_NAMES))
def test_arbitrary_bytes_raise_only_image_error(data: bytes, name: str) -> None:
    try:
        parse_image(data, name, base_address=FLASH if name.endswith(".bin") else None)
    except ImageError:
        pass


def _samples() -> dict[str, bytes]:
    img = _image((Segment(FLASH, bytes(range(200))), Segment(FLASH + 0x1_0000, b"tail")))
    out: dict[str, bytes] = {}
    for name, writer, kwargs in [
        ("fw.apj", write_apj, {"board_id": 9, "version": "1"}),
        ("fw.px4", write_px4, {"board_id": 9, "version": "1"}),
        ("fw.hex", write_hex, {}),
        ("fw.dfu", write_dfu, {"vid": 0x0483, "pid": 0xDF11}),
    ]:
        buf = io.BytesIO()
        writer(img, buf, **kwargs)  # type: ignore[operator]
        out[name] = buf.getvalue()
    out["fw.elf"] = _elf([(FLASH, FLASH, b"code" * 10), (0x2000_0000, FLASH + 40, b"data")])
    return out


_SAMPLES = _samples()


@_PROPS
@given(name=st.sampled_from(sorted(_SAMPLES)), data=st.data())
def test_truncations_and_bit_flips_raise_only_image_error(name: str, data: st.DataObject) -> None:
    content = bytearray(_SAMPLES[name])
    if data.draw(st.booleans()):
        content = content[: data.draw(st.integers(0, len(content) - 1))]
    for _ in range(data.draw(st.integers(1, 4))):
        if content:
            pos = data.draw(st.integers(0, len(content) - 1))
            content[pos] ^= 1 << data.draw(st.integers(0, 7))
    try:
        parse_image(bytes(content), name)
    except ImageError:
        pass


def test_zlib_bomb_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fw, "_MAX_DECOMPRESSED", 1000)
    with pytest.raises(ImageError, match="inflates to more than"):
        parse_image(_apj(payload=bytes(5000)), "fw.apj")


def test_deeply_nested_json_is_an_image_error() -> None:
    with pytest.raises(ImageError, match="fw.apj"):
        parse_image(b"[" * 100_000 + b"]" * 100_000, "fw.apj")


# ------------------------------------------------------------------- dfu-suffix


@pytest.mark.skipif(
    shutil.which("dfu-suffix") is None, reason="dfu-suffix (dfu-util) is not installed"
)
def test_our_dfu_passes_dfu_suffix_check(tmp_path: Path) -> None:
    good = tmp_path / "good.dfu"
    good.write_bytes(_good_dfu())
    result = subprocess.run(
        ["dfu-suffix", "--check", str(good)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Vendor ID:\t0x0483" in result.stdout and "Product ID:\t0xDF11" in result.stdout
    bad = tmp_path / "bad.dfu"
    corrupted = bytearray(_good_dfu())
    corrupted[300] ^= 0x01
    bad.write_bytes(bytes(corrupted))
    result = subprocess.run(
        ["dfu-suffix", "--check", str(bad)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0  # the tool and our CRC rule agree on what is corrupt


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
_KEYS = [
    "magic",
    "image",
    "image_size",
    "board_id",
    "board_revision",
    "version",
    "git_identity",
    "USBID",
    "extf_image",
]


@_PROPS
@given(
    fields=st.dictionaries(st.sampled_from(_KEYS), _JSON_VALUES),
    magic=st.sampled_from(["APJFWv1", "PX4FWv1", None]),
)
def test_json_with_odd_field_types_raises_only_image_error(fields: dict, magic: str | None) -> None:
    desc = json.loads(_apj())
    desc.update(fields)
    if magic is not None:
        desc["magic"] = magic
    try:
        parse_image(json.dumps(desc).encode(), "fw.apj")
    except ImageError:
        pass
