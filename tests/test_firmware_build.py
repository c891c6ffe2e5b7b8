"""Firmware builds: deterministic bytes, a manifest that checks, the field patch's regression."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from hil.firmware.app_image import parse_app
from hil.firmware.build import REPO_IMAGES, BuildError, build_all, check_manifest, read_manifest
from hil.firmware.image import load_image
from hil.vfc import failsafe as fs

SRC = REPO_IMAGES / "src"


def _digests(paths: list[Path]) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def test_same_source_same_bytes(tmp_path: Path) -> None:
    first = _digests(build_all(SRC, tmp_path / "a"))
    second = _digests(build_all(SRC, tmp_path / "b"))
    assert first == second
    assert {"hilcopter-1.0.0.apj", "hilcopter-1.0.1-fieldpatch.dfu"} <= set(first)


def test_committed_images_are_what_the_sources_build(tmp_path: Path) -> None:
    built = _digests(build_all(SRC, tmp_path))
    committed = {name: hashlib.sha256((REPO_IMAGES / name).read_bytes()).hexdigest() for name in built}
    assert built == committed, "rebuild with `python -m hil.firmware.build` and commit"
    assert (tmp_path / "manifest.toml").read_text() == (REPO_IMAGES / "manifest.toml").read_text()


def test_shipped_manifest_checks_clean() -> None:
    assert check_manifest(REPO_IMAGES) == []
    manifest = read_manifest(REPO_IMAGES)
    formats = {(e["build"], e["format"]) for e in manifest["image"]}
    for build in ("hilcopter-1.0.0", "hilcopter-1.0.1-fieldpatch"):
        assert {(build, f) for f in ("apj", "hex", "dfu")} <= formats
    for entry in manifest["image"]:
        assert entry["board_id"] == 7701


def test_manifest_check_finds_a_changed_and_a_missing_file(tmp_path: Path) -> None:
    out = tmp_path / "images"
    build_all(SRC, out)
    with open(out / "hilcopter-1.0.0.hex", "ab") as handle:
        handle.write(b"\n")
    (out / "hilcopter-1.0.0.dfu").unlink()
    problems = check_manifest(out)
    assert len(problems) == 2
    assert any("hilcopter-1.0.0.hex" in p and "sha256" in p for p in problems)
    assert any("hilcopter-1.0.0.dfu" in p and "missing" in p for p in problems)


@pytest.mark.parametrize("fmt", ["apj", "hex", "dfu"])
def test_every_format_carries_the_same_payload(fmt: str) -> None:
    image = load_image(REPO_IMAGES / f"hilcopter-1.0.1-fieldpatch.{fmt}")
    app = parse_app(image.contiguous(), board_id=7701)
    assert app.version == "1.0.1-fieldpatch"
    assert app.behaviour["rc_failsafe_extra_delay_s"] == 2.5
    if fmt != "apj":
        assert image.base_address == 0x08004000


def test_release_has_no_behaviour_changes() -> None:
    app = parse_app(load_image(REPO_IMAGES / "hilcopter-1.0.0.apj").contiguous())
    assert app.version == "1.0.0" and dict(app.behaviour) == {}


def test_bad_source_names_the_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(SRC / "hilcopter-1.0.0.toml", src / "bad.toml")
    with open(src / "bad.toml", "a") as handle:
        handle.write('rc_failsafe_extra_delay_s = 1.0\n')  # lands in [behaviour]: fine
    build_all(src, tmp_path / "ok")
    (src / "bad.toml").write_text((SRC / "hilcopter-1.0.0.toml").read_text() + "turbo = 1\n")
    with pytest.raises(BuildError, match="bad.toml.*turbo"):
        build_all(src, tmp_path / "out")


def _radio_on_after(extra: float) -> float:
    """Seconds from the last RC frame until the radio failsafe engages."""
    monitor = fs.RadioMonitor(extra)
    monitor.on_frame(0.0, True, 1500, 975)
    t = 0.0
    while t < 10.0:
        t = round(t + 0.1, 3)
        if monitor.check(t, True, True, 0.0, 1.0) == "on":
            return t
    return float("inf")


def test_field_patch_knob_delays_the_radio_failsafe() -> None:
    assert _radio_on_after(0.0) == pytest.approx(1.0)
    assert _radio_on_after(2.5) == pytest.approx(3.5)
