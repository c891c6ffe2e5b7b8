"""Private network namespaces for simulators whose ports are fixed.

Betaflight SITL binds its TCP UARTs (5760+n) and UDP ports (9003, 9004) on 0.0.0.0 and
sends motors to a fixed UDP port (9002). Two instances on one host steal each other's
packets, and an instance on the host's own stack listens on every interface. Each
instance therefore gets a namespace of its own, joined to the host by a veth pair on a
private /30: the firmware sees only its namespace; the harness reaches it at
``guest_ip`` and receives its motor packets on ``host_ip``.

Creating namespaces needs CAP_SYS_ADMIN and CAP_NET_ADMIN (root here). Where that is
refused, :func:`namespaces_available` says so and the caller falls back to loopback,
serialising instances with a lock.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass

from hil.errors import HilError

#: 10.231.0.0/16 carved into /30 blocks: .1 is the host end, .2 the namespace end.
_NET_A, _NET_B = 10, 231
_NAME = re.compile(r"^hil-(\d+)-(\d+)$")
_lock = threading.Lock()
_counter = 0
_available: bool | None = None


class NamespaceError(HilError):
    """A network namespace could not be made or removed."""


def _ip(*args: str, check: bool = True, timeout: float = 10.0) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(
            ["ip", *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise NamespaceError("`ip` (iproute2) is not installed") from None
    except subprocess.TimeoutExpired:
        raise NamespaceError(f"`ip {' '.join(args)}` did not finish within {timeout:.0f} s") from None
    if check and proc.returncode != 0:
        raise NamespaceError(f"`ip {' '.join(args)}` failed: {proc.stderr.strip() or proc.returncode}")
    return proc


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale() -> list[str]:
    """Delete namespaces this harness made in processes that are gone; returns their names."""
    if shutil.which("ip") is None:
        return []
    proc = _ip("netns", "list", check=False)
    removed = []
    for line in proc.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = _NAME.match(name)
        if m and not _pid_alive(int(m.group(1))):
            if _ip("netns", "del", name, check=False).returncode == 0:
                removed.append(name)
    return removed


def namespaces_available() -> bool:
    """Whether this process may create network namespaces (checked once, by trying)."""
    global _available
    if _available is None:
        if os.environ.get("HIL_NO_NETNS"):
            _available = False
        elif shutil.which("ip") is None or os.geteuid() != 0:
            _available = False
        else:
            try:
                probe = NetNamespace.create()
            except NamespaceError:
                _available = False
            else:
                probe.remove()
                _available = True
    return _available


@dataclass
class NetNamespace:
    """One namespace with a veth pair; ``remove()`` deletes both."""

    name: str
    host_if: str
    host_ip: str
    guest_ip: str

    @classmethod
    def create(cls) -> NetNamespace:
        global _counter
        remove_stale()
        pid = os.getpid()
        with _lock:
            _counter += 1
            n = _counter
        used = _ip("-o", "-4", "addr", "show", check=False).stdout
        block = None
        for k in range(16384):
            cand = (pid * 7 + n * 13 + k) % 16384
            c, d = divmod(cand * 4, 256)
            if f"{_NET_A}.{_NET_B}.{c}.{d + 1}/" not in used:
                block = (c, d)
                break
        if block is None:
            raise NamespaceError("no free /30 left in 10.231.0.0/16 for a namespace")
        c, d = block
        name = f"hil-{pid}-{n}"
        host_if = f"hv{pid % 10**9}n{n}"[:15]
        host_ip = f"{_NET_A}.{_NET_B}.{c}.{d + 1}"
        guest_ip = f"{_NET_A}.{_NET_B}.{c}.{d + 2}"
        ns = cls(name, host_if, host_ip, guest_ip)
        try:
            _ip("netns", "add", name)
            _ip("link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", name)
            _ip("addr", "add", f"{host_ip}/30", "dev", host_if)
            _ip("link", "set", host_if, "up")
            _ip("-n", name, "addr", "add", f"{guest_ip}/30", "dev", "eth0")
            _ip("-n", name, "link", "set", "eth0", "up")
            _ip("-n", name, "link", "set", "lo", "up")
        except NamespaceError:
            ns.remove()
            raise
        return ns

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run inside the namespace (``ip netns exec`` execs it: same pid)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def remove(self) -> None:
        """Delete the namespace (its veth end goes with it); idempotent."""
        _ip("netns", "del", self.name, check=False)
        _ip("link", "del", self.host_if, check=False)
