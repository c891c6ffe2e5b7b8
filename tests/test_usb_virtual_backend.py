"""The pyusb backend over virtual DFU devices: real pyusb calls, libusb-like errors."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import usb.core
import usb.util

from hil.boards.virtual_usb import VirtualBackend
from hil.firmware.dfuse_codec import DfuState, parse_functional_descriptor, parse_status
from hil.links import registry
from hil.usb.discovery import list_usb_boards
from hil.vfc.dfu_device import LAYOUT_TEXT, DfuTiming, serve_dfu
from hil.vfc.flash import Flash


class Device:
    """serve_dfu in a thread."""

    def __init__(self, tmp_path: Path, registry_dir: Path, serial: str) -> None:
        self.flash = Flash(tmp_path / f"{serial}.bin")
        self.stop = False
        ready = threading.Event()
        self.thread = threading.Thread(
            target=serve_dfu,
            args=(self.flash, serial, registry_dir, lambda: self.stop),
            kwargs={"timing": DfuTiming.instant(), "on_ready": lambda path: ready.set()},
            daemon=True,
        )
        self.thread.start()
        assert ready.wait(5)

    def close(self) -> None:
        self.stop = True
        self.thread.join(5)
        self.flash.close()


@pytest.fixture
def reg(tmp_path):
    return tmp_path / "reg"


@pytest.fixture
def device(tmp_path, reg):
    dev = Device(tmp_path, reg, "VDFU1")
    yield dev
    dev.close()


def test_find_descriptors_and_strings(device, reg):
    backend = VirtualBackend(reg)
    dev = usb.core.find(idVendor=0x0483, idProduct=0xDF11, backend=backend)
    assert dev is not None
    assert dev.serial_number == "VDFU1"
    assert dev.manufacturer == "STMicroelectronics"
    cfg = dev.get_active_configuration()
    assert cfg.bConfigurationValue == 1
    intf = cfg[(0, 0)]
    assert (intf.bInterfaceClass, intf.bInterfaceSubClass, intf.bInterfaceProtocol) == (0xFE, 1, 2)
    assert usb.util.get_string(dev, intf.iInterface) == LAYOUT_TEXT
    functional = parse_functional_descriptor(bytes(intf.extra_descriptors))
    assert (functional.attributes, functional.transfer_size, functional.dfu_version) == (0x0B, 2048, 0x011A)
    dev.set_configuration()
    dev.set_interface_altsetting(0, 0)
    status = parse_status(dev.ctrl_transfer(0xA1, 3, 0, 0, 6))
    assert status.state == DfuState.DFU_IDLE
    assert dev.ctrl_transfer(0x21, 1, 0, 0, b"\x21\x00\x40\x00\x08") == 5
    assert dev.ctrl_transfer(0xA1, 5, 0, 0, 1)[0] == DfuState.DFU_DNLOAD_SYNC
    usb.util.dispose_resources(dev)


def test_stall_is_a_pipe_error(device, reg):
    dev = usb.core.find(idVendor=0x0483, idProduct=0xDF11, backend=VirtualBackend(reg))
    with pytest.raises(usb.core.USBError) as info:
        dev.ctrl_transfer(0x21, 4, 0, 0, None)  # CLRSTATUS in dfuIDLE
    assert info.value.errno == errno.EPIPE
    assert parse_status(dev.ctrl_transfer(0xA1, 3, 0, 0, 6)).state == DfuState.DFU_ERROR
    usb.util.dispose_resources(dev)


def test_lists_only_dfu_entries_and_several_devices(tmp_path, reg):
    assert usb.core.find(backend=VirtualBackend(reg)) is None
    registry.write_entry(
        reg, {"usb_serial": "APPBOARD", "port": "/dev/null", "process_id": os.getpid(), "state": "app"}
    )
    one, two = Device(tmp_path, reg, "VDFU1"), Device(tmp_path, reg, "VDFU2")
    try:
        backend = VirtualBackend(reg)
        found = sorted(d.serial_number for d in usb.core.find(find_all=True, backend=backend))
        assert found == ["VDFU1", "VDFU2"]
        boards = [b for b in list_usb_boards(real=False, virtual_backend=VirtualBackend(reg)) if b.source == "virtual"]
        assert sorted(b.usb_serial for b in boards) == ["VDFU1", "VDFU2"]
        assert all(b.kind == "dfu" and (b.vid, b.pid) == (0x0483, 0xDF11) for b in boards)
    finally:
        one.close()
        two.close()
    assert list(usb.core.find(find_all=True, backend=VirtualBackend(reg))) == []


def test_device_gone_after_stop_raises(device, reg):
    dev = usb.core.find(idVendor=0x0483, idProduct=0xDF11, backend=VirtualBackend(reg))
    assert dev.ctrl_transfer(0xA1, 5, 0, 0, 1)[0] == DfuState.DFU_IDLE
    device.close()
    with pytest.raises(usb.core.USBError) as info:
        dev.ctrl_transfer(0xA1, 5, 0, 0, 1)
    assert info.value.errno == errno.ENODEV


def _start_process(tmp_path: Path, reg: Path, serial: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hil.vfc.dfu_device", "--flash", str(tmp_path / "p.bin"),
         "--usb-serial", serial, "--registry", str(reg), "--timing", "instant"],
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 10
    while registry.find_entry(reg, serial) is None:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "standalone DFU device did not announce itself"
        time.sleep(0.02)
    return proc


def test_killed_device_raises_usb_error(tmp_path, reg):
    proc = _start_process(tmp_path, reg, "VDFUK")
    try:
        dev = usb.core.find(idVendor=0x0483, idProduct=0xDF11, backend=VirtualBackend(reg))
        assert dev.serial_number == "VDFUK"
        assert dev.ctrl_transfer(0xA1, 5, 0, 0, 1)[0] == DfuState.DFU_IDLE
        proc.kill()
        proc.wait(5)
        t0 = time.monotonic()
        with pytest.raises(usb.core.USBError):
            dev.ctrl_transfer(0xA1, 3, 0, 0, 6)
        assert time.monotonic() - t0 < 1.0
        assert usb.core.find(backend=VirtualBackend(reg)) is None  # dead entries are skipped
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        if proc.stderr:
            proc.stderr.close()


def test_frozen_device_times_out_instead_of_hanging(tmp_path, reg):
    proc = _start_process(tmp_path, reg, "VDFUF")
    try:
        dev = usb.core.find(idVendor=0x0483, idProduct=0xDF11, backend=VirtualBackend(reg))
        assert dev.ctrl_transfer(0xA1, 5, 0, 0, 1)[0] == DfuState.DFU_IDLE
        os.kill(proc.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        with pytest.raises(usb.core.USBTimeoutError):
            dev.ctrl_transfer(0xA1, 3, 0, 0, 6, timeout=200)
        assert time.monotonic() - t0 < 1.5
        os.kill(proc.pid, signal.SIGCONT)
        # The handle is not reused after a timeout: the next transfer fails cleanly too.
        with pytest.raises(usb.core.USBError):
            dev.ctrl_transfer(0xA1, 3, 0, 0, 6)
        proc.terminate()
        assert proc.wait(5) == 0
        assert registry.find_entry(reg, "VDFUF") is None
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.wait(5)
        if proc.stderr:
            proc.stderr.close()


class _BrokenBackend(VirtualBackend):
    def enumerate_devices(self):
        raise usb.core.USBError("Access denied (insufficient permissions)", -3, errno.EACCES)


def test_discovery_never_fails_on_real_usb_trouble(device, reg):
    boards = list_usb_boards(backend=_BrokenBackend(reg), virtual_backend=VirtualBackend(reg))
    assert [(b.usb_serial, b.source, b.usb_id) for b in boards] == [("VDFU1", "virtual", "0483:df11")]
    # The bundled libusb on this machine: whatever it sees, it answers with a list.
    assert isinstance(list_usb_boards(), list)
    from hil.usb.discovery import identify

    assert identify(0x2DAE, 0x1016)[0] == "serial" and identify(0x1234, 0x5678) is None
