"""Finding a board again by USB serial number."""

from __future__ import annotations

import os
import time

import pytest

from hil.errors import PortNotFound
from hil.links import registry
from hil.links.ports import find_port


def _entry(serial: str, port: str, pid: int | None = None) -> dict:
    return {
        "usb_serial": serial,
        "port": port,
        "process_id": pid if pid is not None else os.getpid(),
        "state": "app",
        "usb_vid": 0x1209,
        "usb_pid": 0x5741,
        "board_id": 7701,
        "firmware_version": "1.0.0",
    }


def test_virtual_board_is_found_by_serial(tmp_path):
    registry.write_entry(tmp_path, _entry("SN1", "/dev/pts/99"))
    port = find_port("SN1", tmp_path)
    assert port.device == "/dev/pts/99"
    assert port.source == "virtual"


def test_missing_serial_lists_what_was_seen(tmp_path):
    registry.write_entry(tmp_path, _entry("SN1", "/dev/pts/99"))
    with pytest.raises(PortNotFound) as err:
        find_port("SN2", tmp_path, timeout=0.1)
    assert "SN2" in str(err.value) and "SN1@/dev/pts/99" in str(err.value)


def test_search_waits_for_a_board_that_reappears(tmp_path):
    import threading

    def reappear():
        time.sleep(0.2)
        registry.write_entry(tmp_path, _entry("SN3", "/dev/pts/42"))

    threading.Thread(target=reappear, daemon=True).start()
    assert find_port("SN3", tmp_path, timeout=3.0).device == "/dev/pts/42"


def test_wait_is_bounded(tmp_path):
    start = time.monotonic()
    with pytest.raises(PortNotFound):
        find_port("NOPE", tmp_path, timeout=0.3)
    assert time.monotonic() - start < 2.0


def test_state_filter_skips_a_board_in_its_bootloader(tmp_path):
    entry = _entry("SN4", "/dev/pts/7")
    entry["state"] = "bootloader"
    registry.write_entry(tmp_path, entry)
    with pytest.raises(PortNotFound, match="bootloader"):
        find_port("SN4", tmp_path, state="app")
    assert find_port("SN4", tmp_path, state="bootloader").device == "/dev/pts/7"
