"""MAVLink framing: split a byte stream into messages, with a fast path for hot messages.

The closed loop exchanges one HIL_SENSOR and one HIL_ACTUATOR_CONTROLS per control loop
(400 per simulated second). pymavlink builds a full message object for each, which costs
more than the rest of a lockstep step; `HotCodec` packs and unpacks those few messages
with one precompiled `struct` and the same CRC pymavlink uses (fastcrc's MCRF4XX), and
`FrameReader` hands them out as slim objects with the same field names and getters.
Every other message still goes through pymavlink.

`FrameReader` also resynchronises better than pymavlink's parser: a candidate frame that
fails its CRC costs only its start byte, so a stray 0xFD cannot swallow the valid frames
behind it, and a candidate that stays incomplete for `stall_s` is given up the same way.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from typing import Any

from fastcrc import crc16

from hil.mavlink.dialect import mavlink

_crc = crc16.mcrf4xx
_STX_V2 = 0xFD
_STX_V1 = 0xFE
_HEADER_HEAD = struct.Struct("<BBBBBB")  # len incompat compat seq sys comp (after the stx)
_SIGNED = 0x01


class HotCodec:
    """Pack and unpack one message type without pymavlink objects (MAVLink 2 only)."""

    def __init__(self, msg_class: type) -> None:
        self.msg_class = msg_class
        self.msg_id: int = msg_class.id
        self.name: str = msg_class.msgname
        self.crc_extra = bytes([msg_class.crc_extra])
        self.struct = struct.Struct(msg_class.unpacker.format)
        self.size = self.struct.size
        self.light = _light_class(msg_class)
        self._unpack = self.struct.unpack
        self._pack = self.struct.pack
        self._make = _maker(msg_class, self.light)
        self._id_bytes = self.msg_id.to_bytes(3, "little")  # header bytes 7..9
        # Zero padding that restores a payload truncated by n bytes, by n.
        self._pads = tuple(bytes(n) for n in range(self.size + 1))

    def pack(self, seq: int, system: int, component: int, *wire_values: Any) -> bytes:
        """A frame for the fields in wire order (arrays flattened), trailing zeros trimmed."""
        return self.frame(seq, system, component, self._pack(*wire_values).rstrip(b"\x00") or b"\x00")

    def frame(self, seq: int, system: int, component: int, payload: bytes) -> bytes:
        """The frame around a payload packed (and trailing-zero trimmed) by the caller."""
        body = _HEADER_HEAD.pack(len(payload), 0, 0, seq & 0xFF, system, component) + self._id_bytes
        body += payload
        return b"\xfd" + body + _crc(body + self.crc_extra).to_bytes(2, "little")

    def decode(self, frame: bytes | bytearray, payload_len: int) -> Any | None:
        """The slim message of a complete v2 frame, or None when its CRC is wrong."""
        end = 10 + payload_len
        if _crc(self.crc_extra, _crc(frame[1:end])) != frame[end] | frame[end + 1] << 8:
            return None
        if payload_len < self.size:
            values = self._unpack(frame[10:end] + self._pads[self.size - payload_len])
        else:
            values = self._unpack(frame[10 : 10 + self.size])
        return self._make(values, (frame[5], frame[6]), frame[4])


def _maker(msg_class: type, light: type) -> Any:
    """A function (values, src, seq) -> light message, generated for this message's fields.

    Straight-line attribute stores instead of a loop of setattr calls: this runs for every
    hot message (800 per simulated second). `_nonfinite` is computed here, once: the sum of
    the float fields is finite exactly when each of them is (float32 values cannot overflow
    a double's sum).
    """
    types = dict(zip(msg_class.fieldnames, msg_class.fieldtypes, strict=True))
    lines = ["def make(v, src, seq):", "    m = new(Light)"]
    floats: list[str] = []
    i = 0
    for name, length in zip(msg_class.ordered_fieldnames, msg_class.array_lengths, strict=True):
        is_float = types[name] in ("float", "double")
        if length and types[name] == "char":
            # A char array is one struct item ("10s"); pymavlink hands it out as text.
            lines.append(f"    m.{name} = v[{i}].split(b'\\x00', 1)[0].decode('ascii', 'replace')")
            i += 1
        elif length:
            lines.append(f"    m.{name} = list(v[{i}:{i + length}])")
            if is_float:
                floats.extend(f"v[{j}]" for j in range(i, i + length))
            i += length
        else:
            lines.append(f"    m.{name} = v[{i}]")
            if is_float:
                floats.append(f"v[{i}]")
            i += 1
    check = f"not isfinite({' + '.join(floats)})" if floats else "False"
    lines += ["    m._src = src", "    m._seq = seq", f"    m._nonfinite = {check}", "    return m"]
    namespace: dict[str, Any] = {"new": object.__new__, "Light": light, "isfinite": math.isfinite}
    exec("\n".join(lines), namespace)  # noqa: S102 - code built from the dialect's field names
    return namespace["make"]


def _light_class(msg_class: type) -> type:
    names = tuple(msg_class.ordered_fieldnames)
    msg_type = msg_class.msgname
    msg_id = msg_class.id
    fieldnames = list(msg_class.fieldnames)

    class Light:
        __slots__ = (*names, "_src", "_seq", "_t_ns", "_t_vehicle", "_nonfinite")

        def get_type(self) -> str:
            return msg_type

        def get_msgId(self) -> int:  # noqa: N802 - pymavlink's name
            return msg_id

        def get_srcSystem(self) -> int:  # noqa: N802
            return self._src[0]

        def get_srcComponent(self) -> int:  # noqa: N802
            return self._src[1]

        def get_seq(self) -> int:
            return self._seq

        def get_fieldnames(self) -> list[str]:
            return fieldnames

        def to_dict(self) -> dict[str, Any]:
            return {"mavpackettype": msg_type, **{n: getattr(self, n) for n in fieldnames}}

        def __repr__(self) -> str:
            return f"{msg_type} {self.to_dict()}"

    Light.__name__ = f"Light_{msg_type}"
    return Light


def arrival_ns(msg: Any, default: int | None = None) -> int | None:
    """When the bytes of `msg` arrived, host monotonic ns, as `stamp_arrival` stamped it
    (a MavConnection stamps every message it reads); `default` for one never stamped."""
    return getattr(msg, "_t_ns", default)


def vehicle_time(msg: Any, default: float | None = None) -> float | None:
    """The board's own clock (s) when `msg` was read, as `stamp_vehicle_time` stamped it."""
    return getattr(msg, "_t_vehicle", default)


def stamp_vehicle_time(msg: Any, t: float) -> None:
    """Stamp a message with the board's clock at reading (`vehicle_time`)."""
    msg._t_vehicle = t


def stamp_arrival(msgs: Iterable[Any], t_ns: int) -> None:
    """Stamp decoded messages with when the bytes they came in arrived (`arrival_ns`)."""
    for msg in msgs:
        msg._t_ns = t_ns


def has_nonfinite(msg: Any) -> bool:
    """True when any float field (or float in an array field) is NaN or infinite.

    Hot messages carry the answer from their decoding (`_nonfinite`).
    """
    try:
        return msg._nonfinite
    except AttributeError:
        pass
    for name in msg.get_fieldnames():
        value = getattr(msg, name)
        if isinstance(value, float):
            if not math.isfinite(value):
                return True
        elif isinstance(value, list):
            for v in value:
                if isinstance(v, float) and not math.isfinite(v):
                    return True
    return False


class FrameReader:
    """Frames MAVLink out of a byte stream; hot message ids skip pymavlink."""

    def __init__(self, codec: Any, hot: Iterable[HotCodec] = (), stall_s: float = 0.05) -> None:
        self.codec = codec
        self.hot = {h.msg_id: h for h in hot}
        self.stall_s = stall_s
        self.buf = bytearray()
        self.bad_bytes = 0
        self._pending_since: float | None = None

    def feed(self, data: bytes, now: float) -> list[Any]:
        """Add bytes; return the messages now complete."""
        self.buf += data
        return self.poll(now)

    def poll(self, now: float) -> list[Any]:
        """Return complete messages; give up on a start byte that has stalled."""
        out: list[Any] = []
        buf = self.buf
        hot = self.hot
        while buf:
            first = buf[0]
            if first != _STX_V2 and first != _STX_V1:
                v2 = buf.find(_STX_V2)
                v1 = buf.find(_STX_V1)
                start = min(i for i in (v2, v1, len(buf)) if i >= 0)
                self.bad_bytes += start
                del buf[:start]
                self._pending_since = None
                continue
            if len(buf) < 3:
                total = None
            elif first == _STX_V2:
                incompat = buf[2]
                if incompat & ~_SIGNED:
                    self._drop_one()
                    continue
                total = 12 + buf[1] + (13 if incompat & _SIGNED else 0)
            else:
                total = 8 + buf[1]
            if total is None or len(buf) < total:
                if self._pending_since is None:
                    self._pending_since = now
                if now - self._pending_since > self.stall_s:
                    self._drop_one()
                    continue
                break
            msg = None
            if first == _STX_V2:
                hot_codec = hot.get(buf[7] | buf[8] << 8 | buf[9] << 16)
                if hot_codec is not None:
                    msg = hot_codec.decode(buf, buf[1])
                    if msg is None:
                        self._drop_one()
                        continue
            if msg is None:
                try:
                    msg = self.codec.decode(bytearray(buf[:total]))
                except Exception:
                    msg = None
                if msg is None or isinstance(msg, mavlink.MAVLink_unknown):
                    # An unknown id cannot be CRC-checked: treat it as noise.
                    self._drop_one()
                    continue
            del buf[:total]
            self._pending_since = None
            out.append(msg)
        return out

    def _drop_one(self) -> None:
        del self.buf[:1]
        self.bad_bytes += 1
        self._pending_since = None


#: The hot messages of the closed loop.
HIL_SENSOR = HotCodec(mavlink.MAVLink_hil_sensor_message)
HIL_ACTUATOR_CONTROLS = HotCodec(mavlink.MAVLink_hil_actuator_controls_message)
