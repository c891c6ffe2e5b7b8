"""The closed loop hears what a flight controller sends its GPS: configuration bytes on
the GPS UART reach the receiver emulator, its answers go back on the same UART, and the
line follows a baud change once the answer that asked for it has left."""

from __future__ import annotations

import os
import struct
import time

from hil.injectors.gps import GpsReceiverEmulator
from hil.injectors.ublox_config import frame
from hil.links.serial_link import SerialLink
from hil.sim.mavlink_hil_link import MavlinkHilLink

CFG, ACK = 0x06, 0x05


def _ubx_frames(data: bytes) -> list[tuple[int, int, bytes]]:
    out, i = [], 0
    while i + 8 <= len(data):
        if data[i : i + 2] != b"\xb5\x62":
            i += 1
            continue
        (n,) = struct.unpack_from("<H", data, i + 4)
        out.append((data[i + 2], data[i + 3], data[i + 6 : i + 6 + n]))
        i += 8 + n
    return out


def _read_all(fd: int, within: float = 1.0) -> bytes:
    end, got = time.monotonic() + within, b""
    os.set_blocking(fd, False)
    while time.monotonic() < end:
        try:
            got += os.read(fd, 4096)
        except BlockingIOError:
            if got:
                return got
            time.sleep(0.01)
    return got


def test_a_cfg_prt_from_the_board_is_answered_and_the_line_moves_after_the_ack():
    board_end, harness_end = os.openpty()
    link = SerialLink(os.ttyname(harness_end), 38400).open()
    try:
        emu = GpsReceiverEmulator("ubx", model="M8", baud=38400)
        # The board asks the receiver to run its UART at 115200 baud (UBX-CFG-PRT).
        prt = struct.pack("<BBHIIHHHH", 1, 0, 0, 0x08D0, 115200, 0x01, 0x01, 0, 0)
        os.write(board_end, frame(CFG, 0x00, prt))
        time.sleep(0.05)
        MavlinkHilLink.gps_listen(emu, link)  # what the loop does before each fix
        data = emu.produce(0.0, None)
        link.write(data)
        assert emu.switch_baud() == 115200
        link.set_baudrate(115200)
        answer = _ubx_frames(_read_all(board_end))
        assert (ACK, 0x01, bytes((CFG, 0x00))) in answer
        assert link.baudrate == 115200
        # Nothing more from the board: the next listen returns at once, nothing queued.
        MavlinkHilLink.gps_listen(emu, link)
        assert not [f for f in _ubx_frames(emu.produce(0.2, None)) if f[0] == ACK]
    finally:
        link.close()
        os.close(board_end)
        os.close(harness_end)
