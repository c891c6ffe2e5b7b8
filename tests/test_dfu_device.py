"""The virtual board's ROM DFU device, step by step through its Unix socket."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from hil.firmware.dfuse_codec import (
    DfuState,
    DfuStatus,
    erase_page_command,
    mass_erase_command,
    parse_functional_descriptor,
    parse_memory_layout,
    parse_status,
    read_unprotect_command,
    set_address_command,
)
from hil.links import registry
from hil.vfc.dfu_device import DfuDevice, DfuTiming, serve_dfu
from hil.vfc.flash import APP_BASE, FLASH_BASE, Flash

SERIAL = "HILDFU01"
LAYOUT = "@Internal Flash  /0x08000000/01*016Ka,03*016Kg,01*064Kg,07*128Kg"


class Client:
    """A raw client of the wire protocol: returns (acked, data)."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(3.0)
        self.sock.connect(path)

    def close(self) -> None:
        self.sock.close()

    def _recv(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("device closed the connection")
            out += chunk
        return out

    def request(self, rtype: int, req: int, value: int = 0, index: int = 0, data: bytes | int = b"") -> tuple[bool, bytes]:
        if rtype & 0x80:
            frame = struct.pack("<BBHHH", rtype, req, value, index, int(data))  # type: ignore[arg-type]
        else:
            payload = bytes(data)  # type: ignore[arg-type]
            frame = struct.pack("<BBHHH", rtype, req, value, index, len(payload)) + payload
        self.sock.sendall(struct.pack("<I", len(frame)) + frame)
        (length,) = struct.unpack("<I", self._recv(4))
        answer = self._recv(length)
        return answer[0] == 0, answer[1:]

    # DFU helpers
    def status(self):
        ok, data = self.request(0xA1, 3, 0, 0, 6)
        assert ok
        return parse_status(data)

    def state(self) -> int:
        ok, data = self.request(0xA1, 5, 0, 0, 1)
        assert ok
        return data[0]

    def dnload(self, block: int, data: bytes) -> bool:
        return self.request(0x21, 1, block, 0, data)[0]

    def upload(self, block: int, length: int) -> tuple[bool, bytes]:
        return self.request(0xA1, 2, block, 0, length)

    def clrstatus(self) -> bool:
        return self.request(0x21, 4)[0]

    def abort(self) -> bool:
        return self.request(0x21, 6)[0]

    def run(self, block: int, data: bytes):
        """DNLOAD then GETSTATUS until not busy; returns the final status reply."""
        assert self.dnload(block, data)
        first = self.status()
        assert first.state == DfuState.DFU_DNBUSY and first.status == DfuStatus.OK
        while True:
            reply = self.status()
            if reply.state != DfuState.DFU_DNBUSY:
                return reply
            time.sleep(reply.poll_timeout_ms / 1000)

    def descriptor(self, kind: int, index: int = 0, langid: int = 0, length: int = 255) -> bytes:
        ok, data = self.request(0x80, 6, kind << 8 | index, langid, length)
        assert ok
        return data


class Server:
    def __init__(self, tmp_path: Path, timing: DfuTiming | None = None) -> None:
        self.registry = tmp_path / "reg"
        self.flash = Flash(tmp_path / "flash.bin")
        self.stop = False
        ready = threading.Event()
        self.path = ""

        def on_ready(path: Path) -> None:
            self.path = str(path)
            ready.set()

        self.thread = threading.Thread(
            target=serve_dfu,
            args=(self.flash, SERIAL, self.registry, lambda: self.stop),
            kwargs={"timing": timing or DfuTiming.instant(), "board_id": 7701, "on_ready": on_ready},
            daemon=True,
        )
        self.thread.start()
        assert ready.wait(5)

    def client(self) -> Client:
        return Client(self.path)

    def close(self) -> None:
        self.stop = True
        self.thread.join(5)
        self.flash.close()


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path)
    yield srv
    srv.close()


def _poke_bootloader(flash: Flash, data: bytes) -> None:
    """Put bytes in the bootloader sector the way the factory does (not through Flash.write)."""
    fd = os.open(flash.path, os.O_RDWR)
    try:
        os.pwrite(fd, data, 0)
    finally:
        os.close(fd)


def test_registry_entry_and_descriptors(server):
    entry = registry.find_entry(server.registry, SERIAL)
    assert entry is not None
    assert entry["state"] == "dfu"
    assert (entry["usb_vid"], entry["usb_pid"]) == (0x0483, 0xDF11)
    assert entry["usb_socket"] == server.path and entry["board_id"] == 7701
    c = server.client()
    dev = c.descriptor(1)
    assert len(dev) == 18
    vid, pid = struct.unpack_from("<HH", dev, 8)
    assert (vid, pid) == (0x0483, 0xDF11)
    langids = c.descriptor(3, 0)
    assert langids == bytes([4, 3, 0x09, 0x04])
    serial_index, interface_index = dev[16], 4
    assert c.descriptor(3, serial_index, 0x0409)[2:].decode("utf-16-le") == SERIAL
    layout = c.descriptor(3, interface_index, 0x0409)[2:].decode("utf-16-le")
    assert layout == LAYOUT
    parsed = parse_memory_layout(layout)
    assert not parsed.sectors[0].writable and parsed.sectors[1].writable
    config = c.descriptor(2, length=9)
    assert len(config) == 9
    total = struct.unpack_from("<H", config, 2)[0]
    full = c.descriptor(2, length=total)
    assert full[9:18] == bytes([9, 4, 0, 0, 0, 0xFE, 1, 2, 4])
    functional = parse_functional_descriptor(full[18:])
    assert functional.attributes == 0x0B and functional.detach_timeout_ms == 255
    assert functional.transfer_size == 2048 and functional.dfu_version == 0x011A
    assert c.request(0x80, 6, 0x0700, 0, 10)[0] is False  # unknown descriptor: STALL
    c.close()


def test_initial_status_and_set_address(server):
    c = server.client()
    reply = c.status()
    assert (reply.status, reply.state, reply.poll_timeout_ms) == (DfuStatus.OK, DfuState.DFU_IDLE, 0)
    assert c.state() == DfuState.DFU_IDLE
    assert c.dnload(0, set_address_command(APP_BASE))
    assert c.state() == DfuState.DFU_DNLOAD_SYNC
    busy = c.status()
    assert busy.state == DfuState.DFU_DNBUSY
    assert c.status().state == DfuState.DFU_DNLOAD_IDLE
    assert c.abort()
    assert c.state() == DfuState.DFU_IDLE
    ok, commands = c.upload(0, 2048)
    assert ok and commands == bytes([0x00, 0x21, 0x41, 0x92])
    assert c.state() == DfuState.DFU_IDLE  # short answer ends the upload
    c.close()


def test_erase_write_readback_with_block_numbers(server):
    c = server.client()
    target = APP_BASE + 0x4000  # sector 2
    # Dirty the sector, then erase it through DFU.
    server.flash.write(target + 100, b"\x00" * 16)
    reply = c.run(0, erase_page_command(target + 5))
    assert (reply.status, reply.state) == (DfuStatus.OK, DfuState.DFU_DNLOAD_IDLE)
    assert server.flash.read(target, 0x4000) == b"\xff" * 0x4000
    assert c.run(0, set_address_command(target)).state == DfuState.DFU_DNLOAD_IDLE
    block_a, block_b = bytes(range(256)) * 8, bytes(reversed(range(256))) * 8
    assert c.run(2, block_a).state == DfuState.DFU_DNLOAD_IDLE
    # wValue 3 lands one wTransferSize after the pointer.
    assert c.run(3, block_b).state == DfuState.DFU_DNLOAD_IDLE
    assert server.flash.read(target, 4096) == block_a + block_b
    assert c.abort()
    ok, first = c.upload(2, 2048)
    assert ok and first == block_a
    assert c.state() == DfuState.DFU_UPLOAD_IDLE
    ok, second = c.upload(3, 2048)
    assert ok and second == block_b
    assert c.abort()
    c.close()


def test_programming_non_erased_flash_is_check_erased(server):
    c = server.client()
    server.flash.write(APP_BASE, b"\x12\x34")
    assert c.run(0, set_address_command(APP_BASE)).state == DfuState.DFU_DNLOAD_IDLE
    reply = c.run(2, b"\x00" * 64)
    assert (reply.status, reply.state) == (DfuStatus.ERR_CHECK_ERASED, DfuState.DFU_ERROR)
    assert server.flash.read(APP_BASE, 4) == b"\x12\x34\xff\xff"
    # In dfuERROR only GETSTATUS/GETSTATE/CLRSTATUS are accepted; the status is kept.
    assert not c.dnload(0, set_address_command(APP_BASE))
    assert c.status().status == DfuStatus.ERR_CHECK_ERASED
    assert c.clrstatus()
    reply = c.status()
    assert (reply.status, reply.state) == (DfuStatus.OK, DfuState.DFU_IDLE)
    # 0xFF bytes over programmed flash are a no-op, as on NOR.
    assert c.run(0, set_address_command(APP_BASE)).state == DfuState.DFU_DNLOAD_IDLE
    assert c.run(2, b"\xff\xff\x00\x00").state == DfuState.DFU_DNLOAD_IDLE
    assert server.flash.read(APP_BASE, 4) == b"\x12\x34\x00\x00"
    c.close()


def test_protected_sector_and_addresses_outside_flash(server):
    c = server.client()
    _poke_bootloader(server.flash, b"BOOTLOADER")
    # Erasing or writing the bootloader sector: errTARGET, nothing changes.
    reply = c.run(0, erase_page_command(FLASH_BASE))
    assert (reply.status, reply.state) == (DfuStatus.ERR_TARGET, DfuState.DFU_ERROR)
    assert c.clrstatus()
    assert c.run(0, set_address_command(FLASH_BASE + 0x100)).state == DfuState.DFU_DNLOAD_IDLE
    reply = c.run(2, b"\x00" * 32)
    assert reply.status == DfuStatus.ERR_TARGET
    assert c.clrstatus()
    # A block straddling the bootloader and the first app sector is refused whole.
    assert c.run(0, set_address_command(APP_BASE - 16)).state == DfuState.DFU_DNLOAD_IDLE
    assert c.run(2, b"\x00" * 32).status == DfuStatus.ERR_TARGET
    assert c.clrstatus()
    assert server.flash.read(FLASH_BASE, 10) == b"BOOTLOADER"
    assert server.flash.read(APP_BASE, 16) == b"\xff" * 16
    # Outside the memory map: errADDRESS.
    assert c.run(0, set_address_command(0x20000000)).status == DfuStatus.ERR_ADDRESS
    assert c.clrstatus()
    end = FLASH_BASE + 0x100000
    assert c.run(0, set_address_command(end - 16)).state == DfuState.DFU_DNLOAD_IDLE
    assert c.run(2, b"\x00" * 32).status == DfuStatus.ERR_ADDRESS  # runs past the end
    assert c.clrstatus()
    assert c.run(0, erase_page_command(end)).status == DfuStatus.ERR_ADDRESS
    assert c.clrstatus()
    # The bootloader sector is readable (type 'a').
    assert c.run(0, set_address_command(FLASH_BASE)).state == DfuState.DFU_DNLOAD_IDLE
    assert c.abort()
    ok, data = c.upload(2, 10)
    assert ok and data == b"BOOTLOADER"
    assert c.abort()
    # Reading at the end of flash gives a short frame and ends the upload.
    assert c.run(0, set_address_command(end - 100)).state == DfuState.DFU_DNLOAD_IDLE
    assert c.abort()
    ok, data = c.upload(2, 2048)
    assert ok and len(data) == 100
    assert c.state() == DfuState.DFU_IDLE
    c.close()


def test_mass_erase_spares_the_bootloader(server):
    c = server.client()
    _poke_bootloader(server.flash, b"BL")
    server.flash.write(APP_BASE, b"\x00" * 8)
    server.flash.write(FLASH_BASE + 0xF0000, b"\x00" * 8)
    reply = c.run(0, mass_erase_command())
    assert (reply.status, reply.state) == (DfuStatus.OK, DfuState.DFU_DNLOAD_IDLE)
    assert server.flash.app_bytes() == b"\xff" * len(server.flash.app_bytes())
    assert server.flash.read(FLASH_BASE, 2) == b"BL"
    c.close()


def test_requests_invalid_in_the_state_stall(server):
    c = server.client()
    # Zero-length DNLOAD in dfuIDLE (leave needs dfuDNLOAD-IDLE).
    assert not c.dnload(0, b"")
    reply = c.status()
    assert (reply.status, reply.state) == (DfuStatus.ERR_STALLEDPKT, DfuState.DFU_ERROR)
    assert c.clrstatus()
    # CLRSTATUS outside dfuERROR; DETACH in DFU mode; UPLOAD in dfuDNLOAD-IDLE.
    assert not c.clrstatus()
    assert c.status().status == DfuStatus.ERR_STALLEDPKT
    assert c.clrstatus()
    assert not c.request(0x21, 0, 1000)[0]
    assert c.clrstatus()
    assert c.run(0, set_address_command(APP_BASE)).state == DfuState.DFU_DNLOAD_IDLE
    assert not c.upload(2, 16)[0]
    assert c.status().state == DfuState.DFU_ERROR
    assert c.clrstatus()
    # DNLOAD twice without GETSTATUS; an unknown DfuSe command; an oversized block.
    assert c.dnload(0, set_address_command(APP_BASE))
    assert not c.dnload(0, set_address_command(APP_BASE))
    assert c.status().status == DfuStatus.ERR_STALLEDPKT
    assert c.clrstatus()
    assert not c.dnload(0, b"\x55\x00\x00\x00\x08")
    assert c.clrstatus()
    assert not c.dnload(2, b"\xff" * 4096)
    assert c.clrstatus()
    # Wrong direction, wrong interface: STALL.
    assert not c.request(0x21, 3)[0]
    assert c.clrstatus()
    assert not c.request(0xA1, 3, 0, 1, 6)[0]
    assert c.status().state == DfuState.DFU_IDLE
    c.close()


def test_poll_timeout_reports_the_erase_time():
    now = [100.0]
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, Flash(Path(tmp) / "f.bin") as flash:
        timing = DfuTiming(erase_base_ms=10, erase_ms_per_kib=1.0, program_ms=3, command_ms=0)
        dev = DfuDevice(flash, SERIAL, timing=timing, clock=lambda: now[0])

        def getstatus():
            return parse_status(dev.control(0xA1, 3, 0, 0, 6, b""))

        assert dev.control(0x21, 1, 0, 0, 5, erase_page_command(FLASH_BASE + 0x20000)) == b""
        reply = getstatus()  # 128 KiB sector: 10 + 128 ms
        assert (reply.state, reply.poll_timeout_ms) == (DfuState.DFU_DNBUSY, 138)
        now[0] += 0.1
        reply = getstatus()
        assert reply.state == DfuState.DFU_DNBUSY and 30 <= reply.poll_timeout_ms <= 40
        assert dev.control(0xA1, 5, 0, 0, 1, b"") is None  # busy: only GETSTATUS
        dev.control(0x21, 4, 0, 0, 0, b"")  # back to idle from the stall
        assert getstatus().state == DfuState.DFU_IDLE


def test_leave_ends_serve_dfu_and_removes_the_entry(server):
    c = server.client()
    assert c.run(0, set_address_command(APP_BASE)).state == DfuState.DFU_DNLOAD_IDLE
    assert c.dnload(0, b"")
    assert c.state() == DfuState.DFU_MANIFEST_SYNC
    reply = c.status()
    assert reply.state == DfuState.DFU_MANIFEST
    server.thread.join(5)
    assert not server.thread.is_alive()
    assert registry.find_entry(server.registry, SERIAL) is None
    assert not os.path.exists(server.path)
    with pytest.raises((ConnectionError, OSError)):
        c.status()
    c.close()


def test_read_unprotect_mass_erases_and_resets(server):
    c = server.client()
    server.flash.write(APP_BASE, b"\x00" * 8)
    assert c.dnload(0, read_unprotect_command())
    assert c.status().state == DfuState.DFU_DNBUSY
    with pytest.raises((ConnectionError, OSError)):
        c.status()  # the device reset: this connection is gone
    c.close()
    assert server.flash.read(APP_BASE, 8) == b"\xff" * 8
    again = server.client()  # ... and it came back, still in DFU
    assert again.status().state == DfuState.DFU_IDLE
    again.close()


def test_should_stop_ends_serving(tmp_path):
    srv = Server(tmp_path)
    c = srv.client()
    assert c.status().state == DfuState.DFU_IDLE
    srv.close()
    assert not srv.thread.is_alive()
    assert registry.find_entry(srv.registry, SERIAL) is None
    with pytest.raises((ConnectionError, OSError)):
        c.status()
    c.close()


class _Clocked:
    """A DfuDevice in this process on a clock the test moves."""

    def __init__(self, flash: Flash) -> None:
        self.now = 0.0
        self.dev = DfuDevice(flash, SERIAL, timing=DfuTiming(), clock=lambda: self.now)

    def status(self):
        return parse_status(self.dev.control(0xA1, 3, 0, 0, 6, b""))

    def run(self, block: int, data: bytes):
        """DNLOAD, GETSTATUS (busy), then GETSTATUS once the pollTimeout has passed."""
        assert self.dev.control(0x21, 1, block, 0, len(data), data) == b""
        busy = self.status()
        assert busy.state == DfuState.DFU_DNBUSY
        self.now += busy.poll_timeout_ms / 1000.0
        return self.status()


def test_programming_happens_after_the_busy_answer_is_sent(tmp_path):
    with Flash(tmp_path / "flash.bin") as flash:
        d = _Clocked(flash)
        assert d.run(0, set_address_command(APP_BASE)).state == DfuState.DFU_DNLOAD_IDLE
        block = bytes(range(256)) * 8
        assert d.dev.control(0x21, 1, 2, 0, len(block), block) == b""
        busy = d.status()
        assert (busy.state, busy.poll_timeout_ms) == (DfuState.DFU_DNBUSY, 1)
        # The answer is out, the flash not yet written: that happens during pollTimeout ...
        assert flash.read(APP_BASE, 4) == b"\xff" * 4
        d.dev.finish_work()  # ... which serve_dfu starts as soon as it has sent the answer
        assert flash.read(APP_BASE, len(block)) == block
        d.now += 0.001
        assert d.status().state == DfuState.DFU_DNLOAD_IDLE


def test_a_failure_found_by_the_deferred_work_is_reported_after_the_poll(tmp_path):
    with Flash(tmp_path / "flash.bin") as flash:
        flash.write(APP_BASE, b"\x00")
        d = _Clocked(flash)
        assert d.run(0, set_address_command(APP_BASE)).state == DfuState.DFU_DNLOAD_IDLE
        # No finish_work() call here: the next request runs the pending work first.
        reply = d.run(2, b"\x12\x34\x56\x78")
        assert (reply.status, reply.state) == (DfuStatus.ERR_CHECK_ERASED, DfuState.DFU_ERROR)
        assert flash.read(APP_BASE, 4) == b"\x00\xff\xff\xff"


def test_consecutive_blocks_need_no_new_pointer_and_an_erase_moves_it(server):
    c = server.client()
    sector = APP_BASE + 0x8000  # sector 3, 16 KiB
    server.flash.write(sector + 0x100, b"\x00" * 4)
    assert c.run(0, erase_page_command(sector)).state == DfuState.DFU_DNLOAD_IDLE
    blocks = [bytes([n]) * 2048 for n in range(1, 9)]  # the whole sector, blocks 2..9
    for number, block in enumerate(blocks, start=2):
        assert c.run(number, block).state == DfuState.DFU_DNLOAD_IDLE
    # No SET_ADDRESS: block n landed at the erased sector + (n - 2) * wTransferSize.
    assert server.flash.read(sector, 0x4000) == b"".join(blocks)
    assert server.flash.read(sector + 0x4000, 16) == b"\xff" * 16
    c.close()
