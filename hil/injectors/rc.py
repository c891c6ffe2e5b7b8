"""An RC receiver on the flight controller's RC UART, with its radio link under a threat.

On a bench the FC's RC input is wired to a USB-UART adapter and the harness plays the
receiver. `RcReceiverEmulator.produce` says what the receiver writes on that UART up to
sim time `t_us`, given the pilot's sticks and an `RcLinkModel` (hil.threats.rc_link): one
link frame per receiver output frame. Pure: no clocks, the caller passes the time.

Frames are due at t0 + k * period (t0 = the time of the first `produce` call, rounded to
whole microseconds). A call returns every frame due since the previous call, in order,
so a caller that calls less often than the frame rate still gets them all; between frames
it returns b"".

CRSF (ExpressLRS-like, default 150 Hz)
    A delivered frame -> RC_CHANNELS_PACKED with the sticks. A lost frame -> nothing: an
    ELRS receiver forwards a frame only when it decodes a packet. LINK_STATISTICS every
    1/stats_hz (default 10 Hz) carries uplink LQ (the link model's, i.e. it falls while
    frames are lost) and the RSSI/SNR of the last frame the receiver decoded, until the
    receiver declares the link lost: `failsafe_timeout_s` (default 1 s) without a decoded
    frame. Then it also stops LINK_STATISTICS; both resume with the next decoded frame.
    What the receiver does once the link is lost is its failsafe setting:
    "no_pulses" (default, ELRS and what FC failsafe detection expects: the UART goes
    silent), "hold" (the last decoded sticks at the frame rate) or "set" (`failsafe_us`
    at the frame rate). Downlink fields of LINK_STATISTICS carry the clean link budget
    (the jammer is near the aircraft, not the ground radio), tx power and rf mode are
    constructor parameters passed through.

SBUS (default 1 / 0.011 s, fast mode: rate_hz=1/0.006)
    A frame every period whatever the link does. A lost frame repeats the last decoded
    sticks with the frame-lost flag. After `failsafe_timeout_s` (default 1 s) without a
    decoded frame the receiver is in failsafe: flags frame-lost and failsafe both set (as
    FrSky receivers send 0x0C) and the channels at `failsafe_us` (None: the last decoded
    sticks, the receiver's "hold" setting). Only the bytes are produced: the inverted
    100000 baud 8E2 line is the adapter's business.

Channels: up to 16 pulse widths in microseconds; missing channels are sent at 1500 us.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from hil.codecs import crsf, sbus
from hil.codecs.bits import CHANNELS
from hil.threats.rc_link import RcLinkModel, RcLinkState

Protocol = Literal["crsf", "sbus"]
CrsfFailsafe = Literal["no_pulses", "hold", "set"]

DEFAULT_RATE_HZ: dict[str, float] = {"crsf": 150.0, "sbus": 1.0 / sbus.FRAME_PERIOD_S}
MID_US = 1500


def _channels16(channels_us: Sequence[int | float]) -> tuple[int | float, ...]:
    if len(channels_us) > CHANNELS:
        raise ValueError(f"at most {CHANNELS} RC channels, got {len(channels_us)}")
    return tuple(channels_us) + (MID_US,) * (CHANNELS - len(channels_us))


def _clamp_int(value: float, lo: int, hi: int) -> int:
    return min(max(int(math.floor(value + 0.5)), lo), hi)


class RcReceiverEmulator:
    """What an RC receiver writes on the FC's RC UART; see the module docstring."""

    def __init__(
        self,
        protocol: Protocol = "crsf",
        rate_hz: float | None = None,
        *,
        failsafe_timeout_s: float = 1.0,
        failsafe: CrsfFailsafe = "no_pulses",
        failsafe_us: Sequence[int] | None = None,
        stats_hz: float = 10.0,
        rf_mode: int = 0,
        tx_power: int = 3,
    ) -> None:
        if protocol not in DEFAULT_RATE_HZ:
            raise ValueError(f"protocol must be 'crsf' or 'sbus', got {protocol!r}")
        rate = DEFAULT_RATE_HZ[protocol] if rate_hz is None else float(rate_hz)
        if not rate > 0 or not math.isfinite(rate):
            raise ValueError(f"rate_hz must be a positive frame rate, got {rate_hz}")
        if failsafe not in ("no_pulses", "hold", "set"):
            raise ValueError(f"failsafe must be 'no_pulses', 'hold' or 'set', got {failsafe!r}")
        if failsafe == "set" and failsafe_us is None:
            raise ValueError("failsafe='set' needs failsafe_us, the channels to send")
        if not failsafe_timeout_s > 0:
            raise ValueError(f"failsafe_timeout_s must be > 0, got {failsafe_timeout_s}")
        if not stats_hz > 0:
            raise ValueError(f"stats_hz must be > 0, got {stats_hz}")
        self.protocol: Protocol = protocol
        self._frame_cache: tuple[tuple[int | float, ...], bytes] | None = None
        self.rate_hz = rate
        self.failsafe_timeout_us = int(round(failsafe_timeout_s * 1e6))
        self.failsafe: CrsfFailsafe = failsafe
        self.failsafe_us = None if failsafe_us is None else _channels16(failsafe_us)
        self.stats_period_us = 1e6 / stats_hz
        self.rf_mode = rf_mode
        self.tx_power = tx_power

        self._t0_us: int | None = None
        self._k = 0
        self._next_stats_us = 0.0
        self._last_delivered_us = 0
        self._last_channels: tuple[int | float, ...] | None = None
        self._last_decoded: RcLinkState | None = None
        self.last_state: RcLinkState | None = None
        """The link's state for the last frame slot produced."""
        self.frames = 0
        """Frame slots stepped (one link frame each)."""

    @property
    def period_us(self) -> float:
        return 1e6 / self.rate_hz

    def slot_time_us(self, k: int) -> int:
        """Sim time of frame slot k (0 = the first `produce` call)."""
        return (self._t0_us or 0) + int(round(k * 1e6 / self.rate_hz))

    def link_lost(self, t_us: int) -> bool:
        """The receiver has declared the link lost at `t_us` (failsafe timeout ran out)."""
        return t_us - self._last_delivered_us >= self.failsafe_timeout_us

    def produce(self, t_us: int, channels_us: Sequence[int], link: RcLinkModel) -> bytes:
        """Bytes the receiver writes on its UART for every frame due up to `t_us`."""
        if abs(link.rate_hz - self.rate_hz) > 1e-6 * self.rate_hz:
            raise ValueError(
                f"the link model runs at {link.rate_hz} Hz but the {self.protocol} receiver "
                f"sends frames at {self.rate_hz} Hz: make them equal (burst lengths are "
                "counted in frames)"
            )
        sticks = _channels16(channels_us)
        if self._t0_us is None:
            self._t0_us = int(t_us)
            self._last_delivered_us = int(t_us)
            self._next_stats_us = float(t_us)
            self._last_channels = sticks
        out = bytearray()
        while (slot := self.slot_time_us(self._k)) <= t_us:
            self._k += 1
            state = link.step()
            self.last_state = state
            self.frames += 1
            if state.delivered:
                self._last_delivered_us = slot
                self._last_channels = sticks
                self._last_decoded = state
            if self.protocol == "crsf":
                out += self._crsf_slot(slot, sticks, state, link)
            else:
                out += self._sbus_slot(slot, sticks, state)
        return bytes(out)

    # ------------------------------------------------------------------ CRSF

    def _crsf_slot(
        self, slot: int, sticks: tuple[int | float, ...], state: RcLinkState, link: RcLinkModel
    ) -> bytes:
        out = b""
        lost = self.link_lost(slot)
        if state.delivered:
            out += self._rc_frame(sticks)
        elif lost and self.failsafe != "no_pulses":
            hold = self.failsafe == "hold" or self.failsafe_us is None
            values = self._last_channels if hold else self.failsafe_us
            assert values is not None
            out += crsf.encode(crsf.RcChannelsPacked.from_us(values))
        if slot >= self._next_stats_us:
            self._next_stats_us += self.stats_period_us
            if self._next_stats_us <= slot:  # produce() skipped ahead: restart the schedule
                self._next_stats_us = slot + self.stats_period_us
            if not lost:
                out += crsf.encode(self.link_statistics(state, link))
        return out

    def _rc_frame(self, sticks: tuple[int | float, ...]) -> bytes:
        """The RC_CHANNELS_PACKED frame for `sticks`; sticks rarely move, so keep the last one."""
        cached = self._frame_cache
        if cached is not None and cached[0] == sticks:
            return cached[1]
        frame = crsf.encode(crsf.RcChannelsPacked.from_us(sticks))
        self._frame_cache = (sticks, frame)
        return frame

    def link_statistics(self, state: RcLinkState, link: RcLinkModel) -> crsf.LinkStatistics:
        """LINK_STATISTICS for slot `state`: its LQ, the last decoded frame's RSSI/SNR."""
        measured = self._last_decoded or state
        rssi = _clamp_int(measured.rssi_dbm, -255, 0)
        snr = _clamp_int(measured.snr_db, -128, 127)
        return crsf.LinkStatistics(
            uplink_rssi_ant1_dbm=rssi,
            uplink_rssi_ant2_dbm=rssi,
            uplink_link_quality=state.lq,
            uplink_snr_db=snr,
            active_antenna=0,
            rf_mode=self.rf_mode,
            uplink_tx_power=self.tx_power,
            downlink_rssi_dbm=_clamp_int(link.signal_dbm, -255, 0),
            downlink_link_quality=100,
            downlink_snr_db=_clamp_int(link.snr_max_db, -128, 127),
        )

    # ------------------------------------------------------------------ SBUS

    def _sbus_slot(self, slot: int, sticks: tuple[int | float, ...], state: RcLinkState) -> bytes:
        if state.delivered:
            return sbus.encode(sbus.SbusFrame.from_us(sticks))
        assert self._last_channels is not None
        if self.link_lost(slot):
            values = self.failsafe_us if self.failsafe_us is not None else self._last_channels
            return sbus.encode(sbus.SbusFrame.from_us(values, frame_lost=True, failsafe=True))
        return sbus.encode(sbus.SbusFrame.from_us(self._last_channels, frame_lost=True))
