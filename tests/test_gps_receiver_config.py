"""The GPS emulator configures like a real u-blox: ArduPilot's and Betaflight's conversations.

The firmware side is scripted from the sources: ``ArduPilotUblox`` follows AP_GPS_UBLOX's
step order (``config_step`` in AP_GPS_UBLOX.h) and the checks ``_parse_gps`` makes on each
answer (AP_GPS_UBLOX.cpp, ArduPilot 4.5/4.6 with M10 support); ``betaflight_steps`` is
gps.c's ``gpsConfigureUblox`` of the 2025.12 ("4.6") branch with its defaults
(src/main/pg/gps.c). Both are driven against the emulator until the firmware is content.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyubx2 import VALCKSUM, UBXReader

from hil.injectors.gps import GpsReceiverEmulator
from hil.injectors.ublox_config import KEY, frame
from hil.threats.gnss import GnssEnvironment, Truth

CFG, NAV, MON, ACK = 0x06, 0x01, 0x0A, 0x05
PVT, STATUS, POSLLH, SOL, VELNED, DOP, TIMEGPS = (
    (NAV, 7),
    (NAV, 3),
    (NAV, 2),
    (NAV, 6),
    (NAV, 0x12),
    (NAV, 4),
    (NAV, 0x20),
)
MON_HW, MON_HW2, TIM_TM2 = (MON, 9), (MON, 0x0B), (0x0D, 3)
# AP_GPS_UBLOX.h: RATE_PVT 1, RATE_TIMEGPS 5, RATE_DOP 1, RATE_HW 5, RATE_HW2 5, RATE_TIM_TM2 1;
# POSLLH, STATUS, SOL, VELNED go to 0 once NAV-PVT is seen.
AP_RATES = {
    PVT: 1,
    TIMEGPS: 5,
    DOP: 1,
    MON_HW: 5,
    MON_HW2: 5,
    TIM_TM2: 1,
    POSLLH: 0,
    STATUS: 0,
    SOL: 0,
    VELNED: 0,
}
# ArduPilot's config_M10 list (AP_GPS_UBLOX.cpp)
AP_M10 = {
    "CFG_SIGNAL_BDS_ENA": 1,
    "CFG_SIGNAL_BDS_B1_ENA": 0,
    "CFG_SIGNAL_BDS_B1C_ENA": 1,
    "CFG_SIGNAL_GLO_ENA": 0,
    "CFG_SIGNAL_QZSS_ENA": 1,
    "CFG_SIGNAL_QZSS_L1CA_ENA": 1,
    "CFG_SIGNAL_QZSS_L1S_ENA": 1,
    "CFG_NAVSPG_DYNMODEL": 8,
}
# the AP_GPS init blob UBLOX_SET_BINARY_230400: CFG-MSG NAV-SOL rate 1, then PUBX,41
AP_BLOB = b"\xb5\x62\x06\x01\x03\x00\x01\x06\x01\x12\x4f$PUBX,41,1,0023,0001,230400,0*1E\r\n"

STEPS = (
    "PVT NAV_RATE SOL PORT STATUS POSLLH VELNED TIMEGPS POLL_SVINFO POLL_SBAS POLL_NAV POLL_GNSS "
    "POLL_TP5 TMODE DOP MON_HW MON_HW2 RAW RAWX VERSION RTK_MOVBASE TIM_TM2 F9 F9_VALIDATE M10 L5 LAST"
).split()
BIT = {n: 1 << i for i, n in enumerate(
    "RATE_NAV RATE_POSLLH RATE_STATUS RATE_SOL RATE_VELNED RATE_DOP RATE_MON_HW RATE_MON_HW2 RATE_RAW "
    "VERSION NAV_SETTINGS GNSS SBAS RATE_PVT TP5 RATE_TIMEGPS TMODE_MODE RTK_MOVBASE TIM_TM2 F9 M10 L5".split()
)}  # fmt: skip
CONFIG_ALL = sum(BIT[n] for n in "RATE_NAV RATE_POSLLH RATE_STATUS RATE_SOL RATE_VELNED RATE_DOP RATE_MON_HW "
                 "RATE_MON_HW2 RATE_RAW VERSION NAV_SETTINGS GNSS SBAS".split())  # fmt: skip
RATE_BIT = {PVT: "RATE_PVT", TIMEGPS: "RATE_TIMEGPS", DOP: "RATE_DOP", MON_HW: "RATE_MON_HW",
            MON_HW2: "RATE_MON_HW2", TIM_TM2: "TIM_TM2", POSLLH: "RATE_POSLLH", STATUS: "RATE_STATUS",
            SOL: "RATE_SOL", VELNED: "RATE_VELNED"}  # fmt: skip


def frames(data: bytes) -> list[tuple[int, int, bytes]]:
    """(class, id, payload) of every UBX frame in ``data``; every frame must check out."""
    out, seen = [], 0
    for raw, msg in UBXReader(io.BytesIO(data), protfilter=3, validate=VALCKSUM):  # NMEA + UBX
        assert msg is not None
        seen += len(raw)
        if raw[:2] == b"\xb5\x62":
            out.append((raw[2], raw[3], raw[6:-2]))
    assert seen == len(data), "bytes that are neither a valid UBX frame nor an NMEA sentence"
    return out


def env_obs(t: float, seed: int = 1):
    env = GnssEnvironment(np.random.default_rng(seed))
    return env.step(t, Truth((0.0, 0.0, -10.0), (0.0, 0.0, 0.0)))


class ArduPilotUblox:
    """The configuration side of AP_GPS_UBLOX, one step per call, answers parsed back."""

    def __init__(self, emu: GpsReceiverEmulator) -> None:
        self.emu = emu
        self.port: int | None = None
        self.hw: str | None = None  # "M8" from NAV-SVINFO chipGen 4, "M10" from MON-VER
        self.have_version = False
        self.have_pvt = False
        self.unconfigured = CONFIG_ALL
        self.step = 0
        self.active: list[tuple[int, int]] | None = None  # M10 (key, value) list
        self.done = 0
        self.fetch = -1
        self.sent: list[tuple[int, int, bytes]] = []
        self.t = 0.0

    def send(self, cls: int, mid: int, payload: bytes = b"") -> None:
        self.sent.append((cls, mid, payload))
        self.emu.on_bytes(frame(cls, mid, payload))

    def request_rate(self, msg: tuple[int, int]) -> bool:
        if self.port is None:
            self.send(CFG, 0x00)
            return False
        self.send(CFG, 0x01, bytes(msg))
        return True

    def valget(self, keys: list[int]) -> None:
        self.send(
            CFG, 0x8B, struct.pack("<BBH", 0, 0, 0) + b"".join(struct.pack("<I", k) for k in keys)
        )

    def next_config(self) -> None:
        if self.unconfigured == BIT["RATE_SOL"] and self.have_pvt:
            self.unconfigured &= ~BIT["RATE_SOL"]
        name = STEPS[self.step]
        self.step += 1
        retry = False
        if name in (
            "PVT",
            "SOL",
            "STATUS",
            "POSLLH",
            "VELNED",
            "TIMEGPS",
            "DOP",
            "MON_HW",
            "MON_HW2",
            "TIM_TM2",
        ):
            retry = not self.request_rate(globals()[name])
        elif name == "NAV_RATE":
            self.send(CFG, 0x08)
        elif name == "PORT":
            self.send(CFG, 0x00)
        elif name == "POLL_SVINFO" and self.hw is None:
            self.send(NAV, 0x30)
        elif name == "POLL_SBAS":  # GPS_SBAS_MODE 2: do not change
            self.unconfigured &= ~BIT["SBAS"]
        elif name == "POLL_NAV":
            self.send(CFG, 0x24)
        elif name == "POLL_GNSS":
            self.send(CFG, 0x3E)
        elif name == "TMODE" and self.hw == "M10":
            self.valget([KEY["CFG_TMODE_MODE"]])
        elif name in ("RAW", "RAWX"):  # GPS_RAW_DATA 0
            self.unconfigured &= ~BIT["RATE_RAW"]
        elif name == "VERSION":
            if not self.have_version:
                self.send(MON, 0x04)
            else:
                self.unconfigured &= ~BIT["VERSION"]
        elif name == "M10" and self.hw == "M10":
            self.active = [(KEY[k], v) for k, v in AP_M10.items()]
            self.done, self.fetch = 0, -1
            self.valget([k for k, _v in self.active])
        elif name == "LAST":
            self.step = 0
        if retry:
            self.step -= 1

    def parse(self, cls: int, mid: int, p: bytes) -> None:
        if cls == ACK:
            acked_cls, acked_mid = p[0], p[1]
            if mid == 0x01 and acked_cls == CFG:
                bit = {0x3E: "GNSS", 0x24: "NAV_SETTINGS", 0x16: "SBAS"}.get(acked_mid)
                if bit:
                    self.unconfigured &= ~BIT[bit]
            if mid == 0x00 and acked_cls == CFG and acked_mid == 0x8B and self.active is not None:
                if self.fetch == -1:
                    self.fetch = 0
                else:
                    self.done |= 1 << self.fetch
                    if self.done == (1 << len(self.active)) - 1:
                        self.unconfigured &= ~BIT["M10"]
                    self.fetch += 1
                if self.fetch < len(self.active):
                    self.valget([self.active[self.fetch][0]])
            return
        if (cls, mid) == (CFG, 0x24):
            dyn = p[2]
            if dyn != 8:  # GPS_NAVFILTER default: airborne < 4 g
                self.send(CFG, 0x24, struct.pack("<HB", 1, 8) + p[3:])
                self.unconfigured |= BIT["NAV_SETTINGS"]
            else:
                self.unconfigured &= ~BIT["NAV_SETTINGS"]
        elif (cls, mid) == (CFG, 0x3E):  # GPS_GNSS_MODE 0
            self.unconfigured &= ~BIT["GNSS"]
        elif (cls, mid) == (CFG, 0x01):
            assert len(p) == 8, "ArduPilot reads the 8-byte CFG-MSG answer"
            if self.port is None:
                self.send(CFG, 0x00)
                return
            msg, rate = (p[0], p[1]), p[2 + self.port]
            want = AP_RATES.get(msg)
            if want is None:
                return
            if msg in (POSLLH, STATUS, SOL, VELNED) and not self.have_pvt:
                want = 1
            if rate == want:
                self.unconfigured &= ~BIT[RATE_BIT[msg]]
            else:
                self.send(CFG, 0x01, bytes((*msg, want)))
                self.unconfigured |= BIT[RATE_BIT[msg]]
        elif (cls, mid) == (CFG, 0x00):
            self.port = p[0]
        elif (cls, mid) == (CFG, 0x08):
            meas, nav, ref = struct.unpack("<HHH", p)
            if (meas, nav, ref) != (200, 1, 0):  # GPS_RATE_MS 200, UTC time reference
                self.send(CFG, 0x08, struct.pack("<HHH", 200, 1, 0))
                self.unconfigured |= BIT["RATE_NAV"]
            else:
                self.unconfigured &= ~BIT["RATE_NAV"]
        elif (cls, mid) == (CFG, 0x8B):
            i, body = 4, p
            while len(body) - i >= 5:
                (key,) = struct.unpack_from("<I", body, i)
                size = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8}[(key >> 28) & 7]
                value = int.from_bytes(body[i + 4 : i + 4 + size], "little")
                idx = next((j for j, (k, _v) in enumerate(self.active or []) if k == key), -1)
                if idx >= 0:
                    want = self.active[idx][1]
                    if value != want:
                        vs = struct.pack("<BBBBI", 1, 0x03, 0, 0, key) + want.to_bytes(
                            size, "little"
                        )
                        self.send(CFG, 0x8A, vs)
                        self.unconfigured |= BIT["M10"]
                        self.done &= ~(1 << idx)
                    else:
                        self.done |= 1 << idx
                        if self.done == (1 << len(self.active)) - 1:
                            self.unconfigured &= ~BIT["M10"]
                    if 0 <= self.fetch < len(self.active) and key == self.active[self.fetch][0]:
                        self.fetch += 1
                        if self.fetch < len(self.active):
                            self.valget([self.active[self.fetch][0]])
                i += 4 + size
        elif (cls, mid) == (MON, 0x04):
            self.have_version = True
            hw = p[30:40].rstrip(b"\0").decode()
            if hw == "000A0000":
                self.hw = "M10"
                self.unconfigured |= BIT["M10"]
                self.unconfigured &= ~BIT["GNSS"]
        elif (cls, mid) == (NAV, 0x30):
            assert p[5] & 7 == 4
            self.hw = "M8"
            self.unconfigured &= ~BIT["VERSION"]
            self.send(CFG, 0x01, bytes((NAV, 0x30, 0)))
        elif (cls, mid) == PVT:
            self.have_pvt = True
        elif (cls, mid) in (STATUS, POSLLH, VELNED) and self.have_pvt:
            self.unconfigured |= BIT[RATE_BIT[(cls, mid)]]

    def run(self, ticks: int = 400) -> int:
        """Steps at ArduPilot's pace (one per tick of 0.3 s) until configured; ticks used."""
        obs = env_obs(0.0)
        for n in range(ticks):
            self.next_config()
            for _ in range(3):  # 0.3 s at 10 Hz of reading
                self.t += 0.1
                data = self.emu.produce(self.t, obs if self.emu.due(self.t) else None)
                self.emu.switch_baud()
                for cls, mid, p in frames(data):
                    self.parse(cls, mid, p)
            if not self.unconfigured:
                return n
        raise AssertionError(f"ArduPilot still configuring: unconfigured 0x{self.unconfigured:x}")


@pytest.mark.parametrize("model", ["M8", "M10"])
def test_arduPilot_configures_the_receiver_to_its_wishes(model):
    emu = GpsReceiverEmulator("ubx", rate_hz=1.0, model=model, baud=9600)
    emu.on_bytes(AP_BLOB)  # what AP_GPS sends at detection, before the driver starts
    assert frames(emu.produce(0.0, None)) == [(ACK, 0x01, bytes((CFG, 0x01)))]  # NAV-SOL rate
    assert emu.switch_baud() == 230400
    ap = ArduPilotUblox(emu)
    ap.run()
    cfg = emu.config
    for msg, rate in AP_RATES.items():
        assert cfg.rate(msg) == rate, msg
    assert (cfg.get("CFG_RATE_MEAS"), cfg.get("CFG_RATE_NAV"), cfg.get("CFG_RATE_TIMEREF")) == (
        200,
        1,
        0,
    )
    assert emu.rate_hz == 5.0 and cfg.get("CFG_NAVSPG_DYNMODEL") == 8
    assert emu.baud == 230400 and cfg.out_ubx and not cfg.out_nmea  # PUBX,41 out 0001
    if model == "M10":
        assert {k: cfg.get(k) for k in AP_M10} == AP_M10
        assert set(emu.naked) <= {(CFG, 0x3E), (CFG, 0x8B), (NAV, 0x30)}  # GNSS, TMODE, SVINFO
    else:
        assert emu.naked == []
    polls = [(c, m, p) for c, m, p in ap.sent if not p or (c, m) == (CFG, 0x01) and len(p) == 2]
    assert polls and all(
        (c, m) in emu.acked or (c, m) in emu.naked or c != CFG for c, m, _p in polls
    )


def test_arduPilot_gets_fixes_at_its_rates_after_configuring():
    emu = GpsReceiverEmulator("ubx", rate_hz=1.0, model="M10")
    ArduPilotUblox(emu).run()
    ids = []
    for k in range(10):  # two seconds at 5 Hz
        t = 100.0 + k * 0.2
        ids += [(c, m) for c, m, _p in frames(emu.produce(t, env_obs(t)))]
    assert ids.count(PVT) == 10 and ids.count(DOP) == 10
    assert ids.count(TIMEGPS) == 2 and ids.count(MON_HW) == 2 and STATUS not in ids


def betaflight_steps(m10: bool) -> list[tuple[bytes, bool]]:
    """gpsConfigureUblox's CONFIGURE steps (Betaflight 2025.12, defaults): (frame, waits_ack)."""

    def valset(*pairs: tuple[str, int]) -> bytes:
        body = struct.pack("<BBH", 0, 0x01, 0)
        for name, value in pairs:
            key = KEY[name]
            body += struct.pack("<I", key) + value.to_bytes(
                {1: 1, 2: 1, 3: 2, 4: 4, 5: 8}[(key >> 28) & 7], "little"
            )
        return frame(CFG, 0x8A, body)

    def cfg_msg(msg: tuple[int, int], rate: int) -> bytes:
        return frame(CFG, 0x01, bytes((*msg, rate)))

    def nav_rate(hz: int) -> tuple[bytes, bool]:
        if m10:
            return valset(
                ("CFG_RATE_MEAS", 1000 // hz), ("CFG_RATE_NAV", 1), ("CFG_RATE_TIMEREF", 1)
            ), True
        return frame(CFG, 0x08, struct.pack("<HHH", 1000 // hz, 1, 1)), False

    steps = [nav_rate(1)]
    nmea = ["GGA", "VTG", "GSV", "GLL", "GSA", "RMC"]
    if m10:
        steps.append((valset(*((f"CFG_MSGOUT_NMEA_ID_{n}_UART1", 0) for n in nmea)), False))
        steps.append((valset(("CFG_NAVSPG_DYNMODEL", 2), ("CFG_NAVSPG_UTCSTANDARD", 0)), False))
        sbas = [
            ("CFG_SBAS_USE_TESTMODE", 0),
            ("CFG_SBAS_USE_RANGING", 0),
            ("CFG_SBAS_USE_DIFFCORR", 0),
        ]
        steps.append((valset(*sbas, ("CFG_SBAS_PRNSCANMASK", 0)), False))
        steps.append((valset(("CFG_PM_OPERATEMODE", 0)), False))
        steps.append((valset(("CFG_MSGOUT_UBX_NAV_PVT_UART1", 1)), False))
    else:
        steps += [
            (cfg_msg((0xF0, i), 0), True) for i in (5, 3, 1, 0, 2, 4)
        ]  # VTG GSV GLL GGA GSA RMC
        nav5 = struct.pack(
            "<HBBiIbBHHHHBBBBHHB5x",
            0xFFFF,
            2,
            3,
            0,
            10000,
            5,
            0,
            250,
            250,
            100,
            300,
            0,
            60,
            0,
            0,
            0,
            200,
            0,
        )
        steps.append((frame(CFG, 0x24, nav5), True))
        steps.append((frame(CFG, 0x16, struct.pack("<BBBBI", 0x02, 0x03, 3, 0, 0)), True))
        steps.append((frame(CFG, 0x86, struct.pack("<BBHH2x", 0, 0, 0, 0)), True))
        steps.append((cfg_msg(PVT, 1), True))
        steps.append((cfg_msg(SOL, 0), True))
    steps += [(cfg_msg(POSLLH, 0), True), (cfg_msg(STATUS, 0), True), (cfg_msg(VELNED, 0), True)]
    if m10:
        steps.append((valset(("CFG_MSGOUT_UBX_NAV_DOP_UART1", 0)), False))
        steps.append((valset(("CFG_MSGOUT_UBX_NAV_SAT_UART1", 5)), False))
    else:
        steps += [(cfg_msg(DOP, 0), True), (cfg_msg((NAV, 0x35), 5), True)]
    steps.append(nav_rate(10))  # gps_update_rate_hz 10
    steps.append((frame(CFG, 0x3E), True))  # sbasMode NONE: poll CFG-GNSS
    return steps


@pytest.mark.parametrize("model", ["M8", "M10"])
def test_betaflight_configures_the_receiver_to_its_wishes(model):
    emu = GpsReceiverEmulator("nmea", rate_hz=1.0, model=model, baud=230400)
    # DETECT_BAUD: MON-VER at the user's baud, then PUBX,41 with in 0003 / out 0001
    emu.on_bytes(frame(MON, 0x04))
    [(cls, mid, ver)] = frames(emu.produce(0.0, None))
    assert (cls, mid) == (MON, 0x04)
    hw = int(ver[30:40].rstrip(b"\0"), 16)
    assert hw == {"M8": 0x00080000, "M10": 0x000A0000}[model]  # gps.c ubloxVersionMap
    emu.on_bytes(b"$PUBX,41,1,0003,0001,230400,0*1C\r\n")
    answers = []
    for data, waits in betaflight_steps(model == "M10"):
        emu.on_bytes(data)
        got = frames(emu.produce(0.0, None))
        answers.append(got)
        if (data[2], data[3]) == (CFG, 0x3E) and got and got[0][:2] == (CFG, 0x3E):
            # gps.c answers the CFG-GNSS contents with a set: SBAS and Galileo off
            body = bytearray(got[0][2])
            for i in range(body[3]):
                if body[4 + 8 * i] in (1, 2):
                    body[8 + 8 * i] &= 0xFE
            emu.on_bytes(frame(CFG, 0x3E, bytes(body)))
            assert frames(emu.produce(0.0, None))[-1][:2] == (ACK, 0x01)
        if waits:
            assert got and got[-1][0] == ACK and got[-1][2] == data[2:4], data[:8]
    cfg = emu.config
    assert emu.rate_hz == 10.0 and cfg.get("CFG_RATE_TIMEREF") == 1
    assert cfg.rate(PVT) == 1 and all(cfg.rate(m) == 0 for m in (SOL, POSLLH, STATUS, VELNED, DOP))
    assert all(cfg.rate((0xF0, i)) == 0 for i in range(6)) and not cfg.out_nmea
    assert cfg.get("CFG_NAVSPG_DYNMODEL") == 2 and cfg.rate((NAV, 0x35)) == 5
    if model == "M10":
        assert emu.naked == [(CFG, 0x3E)]  # CFG-GNSS: Betaflight ignores the NAK
    else:
        assert emu.naked == [] and [b[3] & 1 for b in cfg.gnss if b[0] in (1, 2)] == [0, 0]
    # and the receiver now speaks UBX: NAV-PVT at 10 Hz, no NMEA
    data = emu.produce(1.0, env_obs(1.0))
    assert [(c, m) for c, m, _p in frames(data)][:1] == [PVT] and b"$G" not in data


def test_baud_change_is_reported_after_its_ack():
    seen: list[int] = []
    emu = GpsReceiverEmulator("ubx", model="M8", baud=38400, on_baud_change=seen.append)
    prt = struct.pack("<BBHIIHHHH", 1, 0, 0, 0x08D0, 115200, 0x01, 0x01, 0, 0)
    emu.on_bytes(frame(CFG, 0x00, prt))
    assert emu.baud == 38400 and emu.pending_baud == 115200
    assert emu.switch_baud() is None  # the ACK has not left yet
    data = emu.produce(0.0, None)
    assert frames(data) == [(ACK, 0x01, bytes((CFG, 0x00)))]
    assert emu.baud == 38400 and seen == []  # the ACK goes at the old baud
    assert emu.switch_baud() == 115200 and emu.baud == 115200 and seen == [115200]
    assert emu.switch_baud() is None and emu.pending_baud is None


def test_valset_baud_switches_at_the_next_produce_when_the_loop_does_not_ask():
    emu = GpsReceiverEmulator("ubx", model="M10", baud=38400)
    key = KEY["CFG_UART1_BAUDRATE"]
    emu.on_bytes(frame(CFG, 0x8A, struct.pack("<BBHII", 1, 1, 0, key, 460800)))
    assert frames(emu.produce(0.0, None))[-1][:2] == (ACK, 0x01) and emu.baud == 38400
    emu.produce(0.1, None)
    assert emu.baud == 460800
    emu.on_bytes(frame(CFG, 0x8B, struct.pack("<BBHI", 0, 0, 0, key)))
    [(_c, _m, p), _ack] = frames(emu.produce(0.2, None))
    assert struct.unpack_from("<I", p, 8)[0] == 460800


def test_valset_with_one_unknown_key_changes_nothing():
    emu = GpsReceiverEmulator("ubx", model="M10")
    body = struct.pack("<BBHIH", 1, 1, 0, KEY["CFG_RATE_MEAS"], 100)
    body += struct.pack("<IB", KEY["CFG_TMODE_MODE"], 0)  # no timing mode on an M10
    emu.on_bytes(frame(CFG, 0x8A, body))
    assert frames(emu.produce(0.0, None)) == [(ACK, 0x00, bytes((CFG, 0x8A)))]
    assert emu.rate_hz == 5.0


def test_m8_has_no_configuration_keys_and_m10_no_cfg_gnss():
    m8, m10 = GpsReceiverEmulator(model="M8"), GpsReceiverEmulator(model="M10")
    m8.on_bytes(frame(CFG, 0x8B, struct.pack("<BBHI", 0, 0, 0, KEY["CFG_RATE_MEAS"])))
    m10.on_bytes(frame(CFG, 0x3E))
    assert frames(m8.produce(0.0, None)) == [(ACK, 0x00, bytes((CFG, 0x8B)))]
    assert frames(m10.produce(0.0, None)) == [(ACK, 0x00, bytes((CFG, 0x3E)))]


def test_legacy_and_key_views_are_one_configuration():
    emu = GpsReceiverEmulator("ubx", model="M10")
    emu.on_bytes(frame(CFG, 0x01, bytes((*PVT, 3))))  # CFG-MSG set, current port
    emu.on_bytes(
        frame(CFG, 0x8B, struct.pack("<BBHI", 0, 0, 0, KEY["CFG_MSGOUT_UBX_NAV_PVT_UART1"]))
    )
    got = frames(emu.produce(0.0, None))
    assert got[1][2][-1] == 3
    emu.on_bytes(
        frame(CFG, 0x8A, struct.pack("<BBHIB", 1, 1, 0, KEY["CFG_MSGOUT_UBX_NAV_PVT_UART1"], 2))
    )
    emu.on_bytes(frame(CFG, 0x01, bytes(PVT)))
    assert frames(emu.produce(0.0, None))[1][2] == bytes((*PVT, 0, 2, 0, 0, 0, 0))


def _fuzz_frame(draw_cls: int, draw_mid: int, payload: bytes) -> bytes:
    return frame(draw_cls, draw_mid, payload)


@settings(max_examples=200, deadline=None)
@given(
    garbage=st.binary(max_size=400),
    cfg=st.lists(
        st.tuples(
            st.sampled_from([0x00, 0x01, 0x08, 0x16, 0x24, 0x3E, 0x86, 0x8A, 0x8B, 0x09]),
            st.binary(max_size=48),
        ),
        max_size=6,
    ),  # fmt: skip
    model=st.sampled_from(["M8", "M10"]),
    protocol=st.sampled_from(["ubx", "nmea"]),
)
def test_any_input_never_raises_and_output_stays_valid_ubx(garbage, cfg, model, protocol):
    emu = GpsReceiverEmulator(protocol, model=model)
    emu.on_bytes(garbage)
    emu.on_bytes(b"\xb5\x62" + garbage)
    emu.on_bytes(b"$PUBX,41," + garbage + b"\r\n")
    out = emu.produce(0.0, env_obs(0.0))
    if protocol == "ubx" and not emu.acked:  # nothing was accepted: output as before
        assert (NAV, 7) in [(c, m) for c, m, _p in frames(out)]
    for mid, payload in cfg:  # well-formed frames with arbitrary contents
        emu.on_bytes(frame(CFG, mid, payload))
    out = emu.produce(1.0, env_obs(1.0)) + emu.produce(2.0, env_obs(2.0))
    frames(out)  # every UBX byte the receiver writes is a valid frame
    assert emu.rate_hz > 0


@settings(max_examples=60, deadline=None)
@given(
    model=st.sampled_from(["M8", "M10"]),
    mid=st.sampled_from([0x00, 0x01, 0x08, 0x16, 0x24, 0x3E, 0x86]),
)
def test_every_answer_round_trips_through_pyubx2(model, mid):
    emu = GpsReceiverEmulator("ubx", model=model)
    emu.on_bytes(frame(CFG, mid, bytes(PVT) if mid == 0x01 else b""))
    emu.on_bytes(frame(MON, 0x04) + frame(NAV, 0x30))
    data = emu.produce(0.0, env_obs(0.0))
    for raw, msg in UBXReader(io.BytesIO(data), protfilter=2, validate=VALCKSUM):
        assert UBXReader.parse(raw, validate=VALCKSUM).identity == msg.identity
        assert msg.serialize() == raw
