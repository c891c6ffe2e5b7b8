"""`hil flash` as a bench technician uses it: both paths, skip, refusals, the board lock."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from hil.locks import BoardLock

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "firmware_images"


def _rig(tmp_path: Path) -> Path:
    rig = tmp_path / "rig.toml"
    rig.write_text(
        textwrap.dedent(
            """
            [[board]]
            name = "copter1"
            type = "virtual"
            usb_serial = "HILVFC0001"
            sector_erase_s = 0.01
            """
        )
    )
    return rig


def _hil(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hil.cli", *args, "--rig", str(_rig(tmp_path)), "--state-dir", str(tmp_path / "state")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_flash_over_serial_then_the_same_image_again_is_skipped(tmp_path):
    first = _hil(tmp_path, "flash", str(IMAGES / "hilcopter-1.0.1-fieldpatch.apj"))
    assert first.returncode == 0, first.stderr
    assert "flashed onto copter1 (HILVFC0001) over serial, 1.0.0 -> 1.0.1" in first.stdout
    assert "kB/s" in first.stdout
    second = _hil(tmp_path, "flash", str(IMAGES / "hilcopter-1.0.1-fieldpatch.apj"))
    assert second.returncode == 0
    assert "skipped" in second.stdout
    boards = _hil(tmp_path, "boards")
    assert "ArduPilot 1.0.1" in boards.stdout


def test_flash_over_dfu_boots_the_new_version(tmp_path):
    result = _hil(tmp_path, "flash", str(IMAGES / "hilcopter-1.0.1-fieldpatch.dfu"), "--method", "dfu")
    assert result.returncode == 0, result.stderr
    assert "over dfu, 1.0.0 -> 1.0.1" in result.stdout
    assert "verified by readback" in result.stdout
    assert "ArduPilot 1.0.1" in _hil(tmp_path, "boards").stdout


def test_a_broken_image_is_refused_naming_the_file(tmp_path):
    bad = tmp_path / "broken.apj"
    bad.write_text('{"magic": "APJFWv1", "board_id": 7701, "image": "not base64!"')
    result = _hil(tmp_path, "flash", str(bad))
    assert result.returncode == 4  # bad input, not a test failure (1) or a board problem (3)
    assert "broken.apj" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_board_held_by_another_process_is_refused_naming_its_pid(tmp_path):
    with BoardLock("HILVFC0001", tmp_path / "state" / "locks"):
        result = _hil(tmp_path, "flash", str(IMAGES / "hilcopter-1.0.0.apj"), "--lock-wait", "0.5")
    assert result.returncode == 3  # the board is not available
    assert f"held by pid {os.getpid()}" in result.stderr


def test_firmware_build_is_deterministic_and_the_manifest_checks(tmp_path):
    out = tmp_path / "images"
    built = subprocess.run(
        [sys.executable, "-m", "hil.cli", "firmware", "build", "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert built.returncode == 0, built.stderr
    for image in IMAGES.glob("*.apj"):
        assert (out / image.name).read_bytes() == image.read_bytes()
    check = subprocess.run(
        [sys.executable, "-m", "hil.cli", "firmware", "check", "--out", str(out)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert check.returncode == 0 and "manifest ok" in check.stdout
    (out / "hilcopter-1.0.0.hex").write_text(":00000001FF\n")
    broken = subprocess.run(
        [sys.executable, "-m", "hil.cli", "firmware", "check", "--out", str(out)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert broken.returncode == 1 and "hilcopter-1.0.0.hex" in broken.stderr
