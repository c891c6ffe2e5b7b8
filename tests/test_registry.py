"""The virtual rig registry: atomic entries, found by USB serial, dead boards skipped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hil.links import registry


def _entry(serial: str, pid: int | None = None, port: str = "/dev/pts/99") -> dict:
    return {
        "usb_serial": serial,
        "port": port,
        "process_id": os.getpid() if pid is None else pid,
        "state": "app",
        "usb_vid": 0x1209,
        "usb_pid": 0x5741,
        "board_id": 7701,
        "firmware_version": "1.0.0",
    }


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_an_entry_written_is_found_by_usb_serial(tmp_path: Path) -> None:
    registry.write_entry(tmp_path, _entry("SN1"))
    assert registry.find_entry(tmp_path, "SN1") == _entry("SN1")
    assert [e["usb_serial"] for e in registry.read_entries(tmp_path)] == ["SN1"]
    assert registry.find_entry(tmp_path, "SN2") is None


def test_entries_of_dead_processes_are_skipped(tmp_path: Path) -> None:
    registry.write_entry(tmp_path, _entry("ALIVE"))
    registry.write_entry(tmp_path, _entry("DEAD", pid=_dead_pid()))
    assert [e["usb_serial"] for e in registry.read_entries(tmp_path)] == ["ALIVE"]
    assert registry.find_entry(tmp_path, "DEAD") is None


def test_corrupt_files_are_skipped(tmp_path: Path) -> None:
    registry.write_entry(tmp_path, _entry("GOOD"))
    (tmp_path / "BAD.json").write_text("{half an entr")
    (tmp_path / "LIST.json").write_text("[1, 2]")
    assert [e["usb_serial"] for e in registry.read_entries(tmp_path)] == ["GOOD"]


def test_rewriting_replaces_the_port_and_leaves_no_temp_files(tmp_path: Path) -> None:
    registry.write_entry(tmp_path, _entry("SN1", port="/dev/pts/1"))
    registry.write_entry(tmp_path, _entry("SN1", port="/dev/pts/2"))
    assert registry.find_entry(tmp_path, "SN1")["port"] == "/dev/pts/2"
    assert [p.name for p in tmp_path.iterdir()] == ["SN1.json"]


def test_remove_entry_only_removes_the_owners_entry(tmp_path: Path) -> None:
    registry.write_entry(tmp_path, _entry("SN1"))
    assert not registry.remove_entry(tmp_path, "SN1", process_id=os.getpid() + 1)
    assert registry.find_entry(tmp_path, "SN1") is not None
    assert registry.remove_entry(tmp_path, "SN1", process_id=os.getpid())
    assert registry.find_entry(tmp_path, "SN1") is None
    assert not registry.remove_entry(tmp_path, "SN1")


def test_a_missing_directory_has_no_entries(tmp_path: Path) -> None:
    assert registry.read_entries(tmp_path / "nowhere") == []


def test_serials_that_cannot_name_a_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="USB serial"):
        registry.write_entry(tmp_path, _entry("../escape"))


def test_the_default_directory_follows_hil_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HIL_REGISTRY", str(tmp_path))
    assert registry.default_registry_dir() == tmp_path
    monkeypatch.delenv("HIL_REGISTRY")
    assert str(os.getuid()) in registry.default_registry_dir().name
