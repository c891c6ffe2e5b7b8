"""The real-time loop in a process of its own (issue 12: pacing nothing else can stall).

In the harness's process the real-time loop thread shares the GIL with everything else
the harness runs (the MSP recorder's status polls, the pilots, a report), and each of
them can hold it for up to a switch interval: a 1 ms period became 1.2-1.5 ms under a
scenario's load. Here the loop runs in a child process that holds nothing else of ours:

- the child (``python -m hil.sim.rt_child``, started by exec, never forked from the
  threaded harness) builds the plant and the link from a picklable spec (the factory's
  arguments), runs `hil.sim.loop.ClosedLoop`'s real-time pacing in one thread (SCHED_FIFO
  where permitted), with the garbage collector frozen and off and its memory locked
  where permitted;
- the state the harness reads (time, the vehicle's truth, motors, RC channels, the RC
  link's state) is a block of shared memory the loop thread writes after every send, and
  what the harness writes (sticks and switches, the pilot model's target) is another
  block the loop thread reads; each block sits behind a sequence lock (`SeqBlock`), so
  neither side ever waits for the other;
- everything else (schedule an injection, the RC link settings, stop, the timing
  figures) is a message on a socket pair, and the loop's events (injection start and
  stop, link notes, its error) come back on it. Every wait for an answer is bounded and
  names what it waited for;
- the child dies with the harness: it watches the harness's lifeline
  (`hil.children`), has the parent-death signal, and is registered with the guard.

`ProcessLoop` is the harness's end: the `ClosedLoop` interface the flights, sessions,
pilots and the bench use. The Betaflight SITL board's default
(``BetaflightLoopConfig.process``; ``HIL_LOOP_PROCESS=0`` keeps the loop in a thread);
see docs/architecture.md for what it measured.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import math
import mmap
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hil import children
from hil.errors import HilError
from hil.sim.loop import ARM_CHANNEL, ARM_US, DISARM_US
from hil.sim.realtime import LoopTiming, loop_timing

log = logging.getLogger(__name__)

_PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent

#: RC channels carried in the shared blocks.
CHANNELS = 16

# -- the shared-memory blocks -------------------------------------------------------------

#: What the loop publishes after every send: t_us, steps, missed, wall_running, motors
#: (4), position NED (3), velocity NED (3), attitude quaternion (4), roll/pitch/yaw (3),
#: RC channels (16), the RC link's total flag and loss, rc_enabled, running.
STATE = struct.Struct(f"<qqqd4d3d3d4d3d{CHANNELS}i?d??")
#: What the harness writes: RC channels (16), how many times it wrote each (16: the
#: loop takes a channel only when its count moved, so a channel an injection moved in
#: the loop is not put back by a write of another), the pilot model on (1) or off (0),
#: its target altitude.
COMMAND = struct.Struct(f"<{CHANNELS}i{CHANNELS}IBd")
_SEQ = struct.Struct("<Q")
#: Bytes of shared memory: a sequence word and the payload per block, 8-byte aligned.
_STATE_OFF = 0
_COMMAND_OFF = (_SEQ.size + STATE.size + 7) // 8 * 8
SHM_SIZE = _COMMAND_OFF + (_SEQ.size + COMMAND.size + 7) // 8 * 8
#: Reads of a block retried while its writer is inside it, before giving up for now.
_READ_TRIES = 1000


class BlockError(ValueError):
    """A shared block's bytes that do not decode."""


def encode_state(values: tuple) -> bytes:
    """The loop's state as `STATE` bytes (the tuple's order is `STATE`'s)."""
    try:
        return STATE.pack(*values)
    except struct.error as exc:
        raise BlockError(f"state does not fit the block: {exc}") from None


def decode_state(data: bytes) -> tuple:
    if len(data) != STATE.size:
        raise BlockError(f"state block of {len(data)} bytes, not {STATE.size}")
    return STATE.unpack(data)


def _pad(values, fill: int) -> list[int]:
    return [int(c) for c in list(values)[:CHANNELS]] + [fill] * max(0, CHANNELS - len(values))


def encode_command(
    channels: list[int] | tuple[int, ...], writes: list[int] | tuple[int, ...], pilot_on: bool, target_m: float
) -> bytes:
    """The harness's RC channels (padded with 1500 to `CHANNELS`), its write count per
    channel (padded with 0; counted modulo 2**32) and the pilot target."""
    counts = [c & 0xFFFFFFFF for c in _pad(writes, 0)]
    try:
        return COMMAND.pack(*_pad(channels, 1500), *counts, 1 if pilot_on else 0, float(target_m))
    except struct.error as exc:
        raise BlockError(f"command does not fit the block: {exc}") from None


def decode_command(data: bytes) -> tuple[list[int], list[int], bool, float]:
    if len(data) != COMMAND.size:
        raise BlockError(f"command block of {len(data)} bytes, not {COMMAND.size}")
    values = COMMAND.unpack(data)
    n = 2 * CHANNELS
    return list(values[:CHANNELS]), list(values[CHANNELS:n]), bool(values[n]), values[n + 1]


class SeqBlock:
    """One writer, any readers, no locks: a sequence word before the payload.

    The writer makes the word odd, writes the payload and makes it even again; a reader
    takes the word, copies the payload and takes the word again, and keeps the copy
    only when both words are the same even number. (Python's stores reach the mapping
    in program order, and x86 keeps stores and loads in order: no fences are needed on
    the machines this runs on.)"""

    def __init__(self, buf: Any, offset: int, size: int) -> None:
        self._buf = buf
        self._off = offset
        self._data = offset + _SEQ.size
        self._size = size
        self._seq = _SEQ.unpack_from(buf, offset)[0] & ~1

    def write(self, payload: bytes) -> None:
        if len(payload) != self._size:
            raise BlockError(f"payload of {len(payload)} bytes for a block of {self._size}")
        buf, off = self._buf, self._off
        self._seq += 1
        _SEQ.pack_into(buf, off, self._seq)
        buf[self._data : self._data + self._size] = payload
        self._seq += 1
        _SEQ.pack_into(buf, off, self._seq)

    def sequence(self) -> int:
        return _SEQ.unpack_from(self._buf, self._off)[0]

    def read(self) -> tuple[int, bytes] | None:
        """(sequence, payload) of the last complete write; None while a writer stays
        inside the block for `_READ_TRIES` looks."""
        buf, off = self._buf, self._off
        for _ in range(_READ_TRIES):
            before = _SEQ.unpack_from(buf, off)[0]
            if before & 1:
                continue
            payload = bytes(buf[self._data : self._data + self._size])
            if _SEQ.unpack_from(buf, off)[0] == before:
                return before, payload
        return None


def state_block(buf: Any) -> SeqBlock:
    return SeqBlock(buf, _STATE_OFF, STATE.size)


def command_block(buf: Any) -> SeqBlock:
    return SeqBlock(buf, _COMMAND_OFF, COMMAND.size)


# -- messages on the socket pair ----------------------------------------------------------

_LEN = struct.Struct("<I")
#: The largest message (the timing series: 120 s of 1 kHz stamps, three arrays).
MAX_MESSAGE = 64 << 20


def encode_message(obj: Any) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    if len(data) > MAX_MESSAGE:
        raise BlockError(f"message of {len(data)} bytes is over {MAX_MESSAGE}")
    return _LEN.pack(len(data)) + data


class MessageReader:
    """Length-prefixed messages out of a byte stream. Only our own two processes talk on
    the pair (the child is started by us with the pair's other end): the payload is a
    pickle, and a length over `MAX_MESSAGE` is refused as a broken stream."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        self._buf += data
        out = []
        while len(self._buf) >= _LEN.size:
            (n,) = _LEN.unpack_from(self._buf)
            if n > MAX_MESSAGE:
                raise BlockError(f"message length {n} is over {MAX_MESSAGE}: the stream is broken")
            if len(self._buf) < _LEN.size + n:
                break
            body = bytes(self._buf[_LEN.size : _LEN.size + n])
            del self._buf[: _LEN.size + n]
            try:
                out.append(pickle.loads(body))
            except Exception as exc:  # noqa: BLE001 - any unpickling failure is a broken stream
                raise BlockError(f"a message that does not decode: {exc}") from None
        return out


# -- the child ----------------------------------------------------------------------------


def _build(factory: str, kwargs: dict[str, Any]):
    """The in-process loop the child runs: ``factory`` is "module:function" (a factory
    of `hil.sim` such as ``hil.sim.betaflight_loop:betaflight_loop``), called with
    ``kwargs``; a ``config`` in them is told to stay in this process."""
    import importlib
    from dataclasses import is_dataclass, replace

    module, _, name = factory.partition(":")
    if not module.startswith("hil.sim.") or not name:
        raise HilError(f"no real-time loop factory named {factory!r}")
    try:
        func = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise HilError(f"no real-time loop factory named {factory!r}") from None
    kwargs = dict(kwargs)
    config = kwargs.get("config")
    if is_dataclass(config) and hasattr(config, "process"):
        kwargs["config"] = replace(config, process=False)
    return func(**kwargs)


_PLAIN = (int, float, str, bytes, bool, type(None))


def _resolve(loop: Any, path: tuple[str, ...]) -> Any:
    """``loop.link.gps_feed...``: public attributes only."""
    value = loop
    for name in path:
        if name.startswith("_"):
            raise HilError(f"{'.'.join(path)}: not a public attribute of the loop")
        try:
            value = getattr(value, name)
        except AttributeError:
            raise HilError(f"the loop has no {'.'.join(path)}") from None
    return value


def _plain(value: Any) -> Any:
    """A copy of a plain value (numbers, text, containers of them) to send back, or
    ``_OBJECT`` for anything else (the harness then reads its attributes one by one)."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, list | tuple | set | frozenset):
        items = [_plain(v) for v in value]
        if all(i is not _OBJECT for i in items):
            return type(value)(items) if not isinstance(value, tuple) or type(value) is tuple else tuple(items)
    if isinstance(value, dict):
        items = {k: _plain(v) for k, v in value.items()}
        if all(isinstance(k, _PLAIN) for k in items) and all(v is not _OBJECT for v in items.values()):
            return items
    if isinstance(value, np.ndarray):
        return value.copy()
    return _OBJECT


#: What `_plain` answers for an object that is not sent whole.
_OBJECT = "<hil.sim.rt_child object>"


def _lock_memory() -> str:
    """mlockall where permitted; what it got, in words."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        # MCL_FUTURE under a finite limit would make later allocations fail: only with
        # no limit (or CAP_IPC_LOCK, which root has) is the future locked too.
        flags = 1 | 2 if (soft == resource.RLIM_INFINITY or os.geteuid() == 0) else 1
        if libc.mlockall(flags) != 0:
            return f"memory not locked ({os.strerror(ctypes.get_errno())})"
        return "memory locked" + (" (current and future)" if flags == 3 else " (current)")
    except (OSError, AttributeError, ValueError) as exc:
        return f"memory not locked ({exc})"


class _Child:
    def __init__(self, sock: socket.socket, buf: Any) -> None:
        self.sock = sock
        self.buf = buf
        self.state = state_block(buf)
        self.command = command_block(buf)
        self.loop: Any = None
        self._send_lock = threading.Lock()
        self._cmd_seq = -1
        self._last_writes = [0] * CHANNELS
        self._pilot_on = False
        self._reported_error = False
        self.memory = "memory not locked"

    def send(self, obj: Any) -> None:
        data = encode_message(obj)
        with self._send_lock:
            self.sock.sendall(data)

    # The loop thread: after every send.
    def tick(self) -> None:
        seq = self.command.sequence()
        if seq != self._cmd_seq and not seq & 1:
            got = self.command.read()
            if got is not None:
                self._cmd_seq = got[0]
                self._apply(*decode_command(got[1]))
        self.publish()

    def _apply(self, channels: list[int], writes: list[int], pilot_on: bool, target_m: float) -> None:
        loop = self.loop
        if pilot_on:
            if not self._pilot_on or loop.pilot is None or loop.pilot.target_m != target_m:
                loop.hold_altitude(target_m)
        elif self._pilot_on:
            loop.pilot = None
        self._pilot_on = pilot_on
        ch = loop.plant.rc_channels
        last = self._last_writes
        # Only the channels the harness wrote since the last look: an injection (the arm
        # switch) may have moved another one here.
        for i in range(min(len(ch), CHANNELS)):
            if writes[i] != last[i]:
                if i == 2 and loop.pilot is not None:
                    continue  # the pilot model flies the throttle
                ch[i] = channels[i]
        self._last_writes = writes

    def publish(self) -> None:
        loop = self.loop
        plant = loop.plant
        v = plant.vehicle
        if v is not None:
            pos = (float(v.pos[0]), float(v.pos[1]), float(v.pos[2]))
            vel = (float(v.vel[0]), float(v.vel[1]), float(v.vel[2]))
            quat = tuple(float(q) for q in v.quat)
            euler = v.euler()
        else:
            pos = vel = euler = (0.0, 0.0, 0.0)
            quat = (1.0, 0.0, 0.0, 0.0)
        ch = list(plant.rc_channels[:CHANNELS])
        ch += [1500] * (CHANNELS - len(ch))
        rc = plant.rc_link
        self.state.write(
            STATE.pack(
                loop.t_us, loop.steps, loop.missed_periods, loop.wall_running, *loop.motors, *pos, *vel, *quat,
                *euler, *ch, bool(rc.total), float(rc.loss), bool(plant.rc_enabled), loop.running,
            )
        )

    def _publish_stopped(self) -> None:
        """Publish from this thread only while the loop thread (the block's one writer)
        does not run; it publishes at its next tick otherwise."""
        if not self.loop.running:
            self.publish()

    def on_event(self, t: float, kind: str, text: str) -> None:
        with contextlib.suppress(OSError):
            self.send(("event", t, kind, text))

    def series(self) -> dict[str, Any]:
        loop = self.loop
        send, motor, rate_hz, started = loop.timing_series()
        return {
            "send": send, "motor": motor, "latency": loop.link.latencies_ns()
            if hasattr(loop.link, "latencies_ns") else np.zeros(0, dtype=np.int64),
            "rate_hz": rate_hz, "started_ns": started, "scheduler": loop.scheduler,
            "wall_running": loop.wall_running, "memory": self.memory,
        }

    def handle(self, msg: tuple) -> bool:
        """One command; False to end the child."""
        op, ident, args = msg[0], msg[1], msg[2:]
        loop = self.loop
        try:
            if op == "start":
                loop.start()
                value = None
            elif op == "stop":
                loop.stop()
                self.publish()
                value = self.series()
            elif op == "exit":
                with contextlib.suppress(HilError):
                    loop.stop()
                self.send(("reply", ident, True, None))
                return False
            elif op == "schedule":
                loop.schedule(*args)
                value = None
            elif op == "rc_link":
                loss, total = args
                loop.plant.rc_link.configure(loss=loss, total=total)
                self._publish_stopped()
                value = None
            elif op == "rc_enabled":
                loop.plant.rc_enabled = bool(args[0])
                self._publish_stopped()
                value = None
            elif op == "series":
                value = self.series()
            elif op == "report":
                value = loop.report(*args)
            elif op == "get":
                value = _plain(_resolve(loop, args[0]))
            else:
                raise HilError(f"unknown command {op!r}")
        except HilError as exc:
            self.send(("reply", ident, False, str(exc)))
            return True
        except Exception as exc:  # noqa: BLE001 - a bug reaches the harness as one line
            log.exception("loop process command %s failed", op)
            self.send(("reply", ident, False, f"{type(exc).__name__}: {exc}"))
            return True
        self.send(("reply", ident, True, value))
        return True

    def check_loop(self) -> None:
        loop = self.loop
        if loop.error is not None and not self._reported_error:
            self._reported_error = True
            text = " ".join(str(loop.error).split()) or type(loop.error).__name__
            self.publish()
            self.send(("error", text))

    def serve(self) -> None:
        reader = MessageReader()
        self.sock.settimeout(0.2)
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except TimeoutError:
                if self.loop is not None:
                    self.check_loop()
                continue
            if not data:
                return  # the harness hung up
            for msg in reader.feed(data):
                if not self.handle(msg):
                    return
            if self.loop is not None:
                self.check_loop()


def child_main(argv: list[str]) -> int:
    sock_fd, shm_fd, lifeline = (int(a) for a in argv)
    children.watch_lifeline(lifeline, lambda: os._exit(3))
    sock = socket.socket(fileno=sock_fd)
    buf = mmap.mmap(shm_fd, SHM_SIZE)
    child = _Child(sock, buf)
    reader = MessageReader()
    spec = None
    sock.settimeout(10.0)
    try:
        while spec is None:
            data = sock.recv(1 << 16)
            if not data:
                return 0
            msgs = reader.feed(data)
            if msgs:
                spec = msgs[0]
    except TimeoutError:
        return 2
    _op, factory, kwargs = spec
    try:
        loop = _build(factory, kwargs)
    except HilError as exc:
        child.send(("hello", False, str(exc)))
        return 1
    except Exception as exc:  # noqa: BLE001
        child.send(("hello", False, f"{type(exc).__name__}: {exc}"))
        return 1
    child.loop = loop
    loop.on_tick = child.tick
    loop.event_hooks.append(child.on_event)
    child.memory = _lock_memory()
    child.publish()
    link = loop.link
    child.send(
        ("hello", True, {
            "name": link.name, "physics": bool(link.physics),
            "supported_injections": loop.supported_injections, "rc_idle": tuple(link.rc_idle),
            "rate_hz": float(loop.config.rate_hz), "dt_us": loop.dt_us, "pid": os.getpid(),
        })
    )
    # Nothing of ours allocates cycles in the loop: the collector stays off, and what
    # exists now is out of its sight (no pause walks it).
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        child.serve()
    finally:
        with contextlib.suppress(Exception):
            loop.stop()
    return 0


# -- the harness's end --------------------------------------------------------------------


class _VehicleView:
    """The vehicle's truth as the loop last published it (what the pilots read)."""

    def __init__(self, pos, vel, quat, euler) -> None:
        self.pos = np.array(pos)
        self.vel = np.array(vel)
        self.quat = np.array(quat)
        self._euler = tuple(euler)

    def euler(self) -> tuple[float, float, float]:
        return self._euler


class _RcLinkView:
    def __init__(self, owner: ProcessLoop) -> None:
        self._owner = owner

    @property
    def total(self) -> bool:
        return bool(self._owner.snapshot()[_I_RC_TOTAL])

    @property
    def loss(self) -> float:
        return float(self._owner.snapshot()[_I_RC_TOTAL + 1])

    def configure(self, loss: float | None = None, total: bool | None = None) -> None:
        self._owner.request_published("rc_link", loss, total)


class _PlantView:
    """``loop.plant`` as the harness uses it: the radio's state and the vehicle's truth."""

    def __init__(self, owner: ProcessLoop) -> None:
        self._owner = owner
        self.rc_link = _RcLinkView(owner)

    @property
    def physics(self) -> bool:
        return self._owner.link.physics

    @property
    def vehicle(self) -> _VehicleView | None:
        return self._owner.vehicle if self.physics else None

    @property
    def rc_enabled(self) -> bool:
        return bool(self._owner.snapshot()[_I_RC_TOTAL + 2])

    @rc_enabled.setter
    def rc_enabled(self, on: bool) -> None:
        self._owner.request_published("rc_enabled", bool(on))

    @property
    def rc_channels(self) -> list[int]:
        return self._owner.rc_channels


class _Remote:
    """An object in the loop's process, read attribute by attribute (each read is one
    bounded request; plain values come back as copies), for tests that look into the
    link (``loop.link.gps_feed.emulator.acked``)."""

    def __init__(self, owner: ProcessLoop, path: tuple[str, ...]) -> None:
        self._owner = owner
        self._path = path

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        path = (*self._path, name)
        value = self._owner.request("get", path)
        return _Remote(self._owner, path) if value == _OBJECT else value


class _LinkView(_Remote):
    def __init__(self, owner: ProcessLoop, info: Mapping[str, Any]) -> None:
        super().__init__(owner, ("link",))
        self.name = info["name"]
        self.physics = info["physics"]
        self.rc_idle = info["rc_idle"]
        self.lockstep = False
        self.pid = info["pid"]


# Indices into the STATE tuple.
_I_MOTORS = 4
_I_POS = 8
_I_VEL = 11
_I_QUAT = 14
_I_EULER = 18
_I_CH = 21
_I_RC_TOTAL = _I_CH + CHANNELS
_I_RUNNING = _I_RC_TOTAL + 3

#: Seconds the harness waits for the child's first word, and for an answer.
HELLO_TIMEOUT_S = 20.0
ANSWER_TIMEOUT_S = 10.0


class ProcessLoop:
    """A real-time `ClosedLoop` run in a child process, with the same interface.

    ``factory`` names what the child builds ("module:function", e.g.
    ``hil.sim.betaflight_loop:betaflight_loop``) and ``kwargs`` are its arguments
    (picklable: a GPS feed as ``gps_uart=(url, model, baud)``).
    The child starts here and builds the loop (bounded by `HELLO_TIMEOUT_S`); `start`
    starts the pacing, `stop` ends it and keeps its figures, `close` ends the child.
    """

    lockstep = False
    controller = None

    def __init__(self, factory: str, kwargs: dict[str, Any], *, hello_timeout: float = HELLO_TIMEOUT_S) -> None:
        self.events: list[tuple[float, str, str]] = []
        self.event_hooks: list[Callable[[float, str, str], None]] = []
        self.error: BaseException | None = None
        self._lock = threading.Condition()
        self._replies: dict[int, tuple[bool, Any]] = {}
        self._next_id = 0
        self._closing = False
        self._started = False
        self._final: dict[str, Any] | None = None
        self._hold = (False, 0.0)
        self._last_state: tuple | None = None
        self._stderr = tempfile.TemporaryFile()
        fd = os.memfd_create("hil-rt-loop", 0)
        try:
            os.ftruncate(fd, SHM_SIZE)
            self._buf = mmap.mmap(fd, SHM_SIZE)
            parent_sock, child_sock = socket.socketpair()
            lifeline = children.lifeline_fd()
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
            try:
                self._proc = subprocess.Popen(
                    [sys.executable, "-m", "hil.sim.rt_child", str(child_sock.fileno()), str(fd), str(lifeline)],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr, env=env,
                    start_new_session=True, pass_fds=(child_sock.fileno(), fd, lifeline),
                    preexec_fn=children.parent_death_preexec(signal.SIGTERM),
                )
            except OSError as exc:
                parent_sock.close()
                raise HilError(f"cannot start the real-time loop process: {exc}") from None
            finally:
                child_sock.close()
        finally:
            os.close(fd)
        children.guard.watch(self._proc.pid)
        self._sock = parent_sock
        self._state = state_block(self._buf)
        self._command = command_block(self._buf)
        self._sock.sendall(encode_message(("spec", factory, kwargs)))
        info = self._hello(hello_timeout)
        self.link = _LinkView(self, info)
        self.supported_injections = info["supported_injections"]
        self.rate_hz = info["rate_hz"]
        self.dt_us = info["dt_us"]
        self.config = type("ProcessLoopConfig", (), {"rate_hz": self.rate_hz})()
        self._channels = _pad(info["rc_idle"], 1500)
        self._writes = [0] * CHANNELS
        self._write_command()
        self.plant = _PlantView(self)
        self._reader = threading.Thread(target=self._read, name="rt-loop-reader", daemon=True)
        self._reader.start()

    # -- plumbing ------------------------------------------------------------------------
    def _hello(self, timeout: float) -> dict[str, Any]:
        reader = MessageReader()
        deadline = time.monotonic() + timeout
        self._sock.settimeout(0.2)
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except TimeoutError:
                data = None
            if data == b"" or self._proc.poll() is not None:
                self._end_child()
                raise HilError(f"the real-time loop process ended before it built the loop: {self._last_words()}")
            if data:
                msgs = reader.feed(data)
                if msgs:
                    _op, ok, info = msgs[0]
                    if not ok:
                        self._end_child()
                        raise HilError(f"the real-time loop process could not build the loop: {info}")
                    self._sock.settimeout(None)
                    return info
            if time.monotonic() > deadline:
                self._end_child()
                raise HilError(f"the real-time loop process did not report its loop built within {timeout:.0f} s")

    def _last_words(self) -> str:
        code = self._proc.poll()
        try:
            self._stderr.seek(0)
            lines = [ln for ln in self._stderr.read().decode(errors="replace").splitlines() if ln.strip()]
        except (OSError, ValueError):
            lines = []
        last = lines[-1].strip() if lines else "nothing on its stderr"
        return f"exit code {code}, last words: {last}"

    def _read(self) -> None:
        reader = MessageReader()
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except OSError:
                data = b""
            try:
                msgs = reader.feed(data) if data else []
            except BlockError as exc:
                self._fail(f"the real-time loop process's messages broke: {exc}")
                return
            if not data:
                if not self._closing:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self._proc.wait(1.0)
                    self._fail(f"the real-time loop process ended ({self._last_words()})")
                with self._lock:
                    self._lock.notify_all()
                return
            for msg in msgs:
                if msg[0] == "reply":
                    with self._lock:
                        self._replies[msg[1]] = (msg[2], msg[3])
                        self._lock.notify_all()
                elif msg[0] == "event":
                    entry = (msg[1], msg[2], msg[3])
                    self.events.append(entry)
                    for hook in list(self.event_hooks):
                        try:
                            hook(*entry)
                        except Exception:  # noqa: BLE001 - a hook's bug must not stop the reader
                            log.exception("loop event hook failed")
                elif msg[0] == "error":
                    self._fail(msg[1])

    def _fail(self, text: str) -> None:
        if self.error is None:
            self.error = HilError(text)
            log.warning("real-time loop process: %s", text)
        with self._lock:
            self._lock.notify_all()

    def request(self, op: str, *args: Any, timeout: float = ANSWER_TIMEOUT_S) -> Any:
        """Send a command to the child and wait (bounded) for its answer."""
        with self._lock:
            ident = self._next_id
            self._next_id += 1
        try:
            self._sock.sendall(encode_message((op, ident, *args)))
        except OSError as exc:
            raise HilError(f"the real-time loop process is gone ({op}): {exc}") from None
        deadline = time.monotonic() + timeout
        with self._lock:
            while ident not in self._replies:
                if not self._reader.is_alive():
                    raise HilError(f"the real-time loop process ended while we waited for its answer to {op}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise HilError(f"the real-time loop process did not answer {op} within {timeout:.0f} s")
                self._lock.wait(min(remaining, 0.2))
            ok, value = self._replies.pop(ident)
        if not ok:
            raise HilError(value)
        return value

    def request_published(self, op: str, *args: Any) -> None:
        """A command whose effect the state block shows once this returns: the loop
        thread publishes it at its next tick (waited for, bounded)."""
        self.request(op, *args)
        seq = self._state.sequence()
        deadline = time.monotonic() + 1.0
        while self.running and self._state.sequence() == seq and time.monotonic() < deadline:
            time.sleep(0.0005)

    def snapshot(self) -> tuple:
        """The loop's last published state (`STATE`'s fields)."""
        got = self._state.read()
        if got is not None:
            self._last_state = decode_state(got[1])
        elif self._last_state is None:
            raise HilError("the real-time loop process's state block stayed mid-write")
        return self._last_state

    def _write_command(self, *written: int) -> None:
        """Publish the channels, counting a write of each channel in ``written``."""
        for i in written:
            self._writes[i] = (self._writes[i] + 1) & 0xFFFFFFFF
        on, target = self._hold
        self._command.write(encode_command(self._channels, self._writes, on, target))

    # -- the pilot's radio ---------------------------------------------------------------
    @property
    def rc_channels(self) -> list[int]:
        return list(self.snapshot()[_I_CH : _I_CH + len(self.link.rc_idle)])

    @rc_channels.setter
    def rc_channels(self, values: list[int]) -> None:
        values = list(values)[:CHANNELS]
        for i, v in enumerate(values):
            self._channels[i] = int(v)
        self._write_command(*range(len(values)))

    def set_sticks(self, roll: int = 1500, pitch: int = 1500, throttle: int | None = None, yaw: int = 1500) -> None:
        ch = self._channels
        ch[0], ch[1], ch[3] = int(roll), int(pitch), int(yaw)
        if throttle is not None:
            self._hold = (False, 0.0)
            ch[2] = int(throttle)
            self._write_command(0, 1, 2, 3)
        else:
            self._write_command(0, 1, 3)

    def arm_switch(self, on: bool) -> None:
        self._channels[ARM_CHANNEL] = ARM_US if on else DISARM_US
        self._write_command(ARM_CHANNEL)

    def hold_altitude(self, target_m: float | None) -> None:
        physics = self.link.physics
        if target_m is None or (target_m == 0 and not physics):
            self._hold = (False, 0.0)
            self._channels[2] = 1000
            self._write_command(2)
            return
        if not physics:
            raise HilError(f"the {self.link.name} link has no physics: there is no height to hold")
        self._hold = (True, float(target_m))
        self._write_command()

    # -- what the harness reads ----------------------------------------------------------
    @property
    def t_us(self) -> int:
        return int(self.snapshot()[0])

    @property
    def time(self) -> float:
        return self.t_us / 1_000_000

    @property
    def steps(self) -> int:
        return int(self.snapshot()[1])

    @property
    def motors(self) -> tuple[float, float, float, float]:
        s = self.snapshot()
        return (s[_I_MOTORS], s[_I_MOTORS + 1], s[_I_MOTORS + 2], s[_I_MOTORS + 3])

    @property
    def vehicle(self) -> _VehicleView:
        s = self.snapshot()
        return _VehicleView(s[_I_POS : _I_POS + 3], s[_I_VEL : _I_VEL + 3], s[_I_QUAT : _I_QUAT + 4],
                            s[_I_EULER : _I_EULER + 3])

    @property
    def altitude(self) -> float:
        return -self.snapshot()[_I_POS + 2] if self.link.physics else 0.0

    def pose(self) -> tuple[float, float, float, float, float, float]:
        if not self.link.physics:
            return (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        s = self.snapshot()
        pn, pe, pd = s[_I_POS : _I_POS + 3]
        return (-pd, pn, pe, math.hypot(s[_I_VEL], s[_I_VEL + 1]), s[_I_EULER], s[_I_EULER + 1])

    @property
    def wall_running(self) -> float:
        return float(self.snapshot()[3])

    @property
    def speed(self) -> float:
        w = self.wall_running
        return self.time / w if w > 0 else 0.0

    @property
    def injection_target(self) -> str:
        return f"the {self.link.name} link"

    # -- injections ----------------------------------------------------------------------
    def schedule(self, kind: str, start: float, stop: float | None, params: Mapping[str, Any] | None = None,
                 ident: str | None = None) -> None:
        """As `InjectionSchedule.schedule`: checked and inserted by the child's loop."""
        self.request("schedule", kind, start, stop, dict(params or {}), ident)

    # -- running -------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._started and self._proc.poll() is None and bool(self.snapshot()[_I_RUNNING])

    @property
    def pid(self) -> int:
        return self._proc.pid

    def start(self, *, gated: bool = False) -> None:
        if self._started:
            return
        self.error = None
        self._final = None
        self.request("start")
        self._started = True

    def stop(self, timeout: float = 5.0) -> None:
        """End the pacing; its figures stay for `timing`, `report` and `timing_series`."""
        if not self._started:
            return
        self._started = False
        if self._proc.poll() is None and self._reader.is_alive():
            self._final = self.request("stop", timeout=timeout + ANSWER_TIMEOUT_S)

    def close(self) -> None:
        """Stop the loop and end its process."""
        try:
            with contextlib.suppress(HilError):
                self.stop()
        finally:
            self._end_child()

    def _end_child(self) -> None:
        self._closing = True
        proc = self._proc
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                self._sock.sendall(encode_message(("exit", -1)))
            try:
                proc.wait(3.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(3.0)
        children.guard.forget(proc.pid)
        with contextlib.suppress(OSError):
            self._sock.close()
        with contextlib.suppress(OSError, ValueError):
            self._stderr.close()

    def __enter__(self) -> ProcessLoop:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what it achieved ----------------------------------------------------------------
    def _series(self) -> dict[str, Any]:
        if self._final is not None:
            return self._final
        return self.request("series")

    @property
    def scheduler(self) -> str:
        return self._series()["scheduler"]

    def timing(self, since_s: float = 0.0) -> LoopTiming:
        s = self._series()
        send, motor = s["send"], s["motor"]
        cut = s["started_ns"] + int(since_s * 1e9)
        timing = loop_timing(send[send >= cut], motor[motor >= cut], s["latency"], s["rate_hz"],
                             f"{s['scheduler']}, own process, {s['memory']}")
        if timing is None:
            raise HilError("the real-time loop has not run long enough to measure its timing")
        return timing

    def timing_series(self) -> tuple[np.ndarray, np.ndarray, float, int]:
        s = self._series()
        return s["send"], s["motor"], s["rate_hz"], s["started_ns"]

    def motor_times_ns(self) -> np.ndarray:
        return self._series()["motor"]

    def answer_stamps(self) -> None:
        """The loop in its own process runs real-time links only: their answers name no
        sample."""
        return None

    def report(self, since_s: float = 1.0) -> tuple[list[str], dict[str, object]]:
        if not self.link.physics:
            return self.request("report", since_s)
        timing = self.timing(since_s=since_s)
        return timing.lines(), timing.measurements()


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
