"""`hil doctor`: is this host and this rig ready for a bench run, and if not, how to fix it.

One line per check: `OK`, `PROBLEM` (the rig needs it fixed: the exit code is not 0) or
`WARNING` (worth fixing, but this rig runs without it: a virtual rig needs no serial
permissions, no libusb and no real-time scheduling). Host facts are gathered once into
`HostFacts` and judged by pure functions, so each check's text can be tested with its
inputs made up. Boards are started as a run starts them (a virtual board in a scratch
state directory, so nothing of another run's is touched) and looked for as a run looks
for them; receivers' adapters are found and classified as `hil.links.ports` does.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import socket
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hil.errors import EXIT_BOARD, EXIT_ERROR, HilError
from hil.receivers import Receiver, find_adapter
from hil.rig import Board, Rig

SERIAL_GROUPS = ("dialout", "uucp")  # Debian/Ubuntu/Fedora; Arch
#: Clock sources whose reads are cheap and fine-grained (x86 TSC, the Arm generic timer,
#: a KVM guest's paravirtual clock).
GOOD_CLOCKSOURCES = ("tsc", "arch_sys_counter", "kvm-clock")
_UDEV_RULE = (
    'a udev rule such as /etc/udev/rules.d/50-hil.rules: SUBSYSTEM=="tty", '
    'ATTRS{idVendor}=="10c4", MODE="0660", GROUP="dialout" (one line per adapter or board VID), '
    "then sudo udevadm control --reload && sudo udevadm trigger"
)


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    ok: bool
    text: str
    fix: str = ""
    needed: bool = True  # False: reported as a WARNING; the rig runs without it
    exit_code: int = EXIT_ERROR

    @property
    def failed(self) -> bool:
        """A problem this rig needs fixed."""
        return not self.ok and self.needed

    def line(self) -> str:
        if self.ok:
            return f"OK       {self.name}: {self.text}"
        word = "PROBLEM" if self.needed else "WARNING"
        return f"{word:8} {self.name}: {self.text}; fix: {self.fix}"


@dataclass(frozen=True)
class HostFacts:
    """What the checks judge, gathered from the host by `gather()` (tests make them up)."""

    euid: int
    user: str
    groups: frozenset[str]  # the groups this process holds
    serial_devices: tuple[tuple[str, bool], ...]  # (path, readable and writable)
    modem_manager: bool  # a ModemManager process is running
    libusb: bool  # pyusb finds libusb (libusb_package's or the system's)
    dfu_util: str | None  # its path
    sched_fifo: str | None  # None: allowed; else why not
    rtprio: int  # soft RLIMIT_RTPRIO (-1: unlimited)
    cpus: int  # CPUs this process may run on
    clocksource: str  # "" when /sys does not say


# ------------------------------------------------------------------------ host checks


def check_serial_access(facts: HostFacts, *, needed: bool) -> Check:
    name = "serial access"
    if facts.euid == 0:
        return Check(name, True, "running as root: every serial device opens")
    closed = [path for path, usable in facts.serial_devices if not usable]
    member = sorted(set(SERIAL_GROUPS) & facts.groups)
    fix = (
        f"sudo usermod -aG dialout {facts.user} (uucp on Arch), then log out and in again; or {_UDEV_RULE}"
    )
    if closed:
        return Check(name, False, f"{facts.user} cannot open {', '.join(closed)}", fix, needed)
    if member:
        seen = f"; {len(facts.serial_devices)} serial device(s) open" if facts.serial_devices else ""
        return Check(name, True, f"{facts.user} is in group {member[0]}{seen}")
    if facts.serial_devices:
        return Check(name, True, f"{facts.user} can open every serial device present ({len(facts.serial_devices)})")
    return Check(name, False, f"{facts.user} is in none of the groups {', '.join(SERIAL_GROUPS)}", fix, needed)


def check_modem_manager(facts: HostFacts, *, needed: bool) -> Check:
    name = "ModemManager"
    if not facts.modem_manager:
        return Check(name, True, "not running")
    return Check(
        name,
        False,
        "running: it opens every new tty to probe for a modem, which garbles a bootloader "
        "handshake and holds the port",
        "sudo systemctl stop ModemManager && sudo systemctl mask ModemManager; or, to keep it, "
        'a udev rule ENV{ID_MM_DEVICE_IGNORE}="1" for the boards\' and adapters\' VID:PID',
        needed,
    )


def check_libusb(facts: HostFacts, *, needed: bool) -> Check:
    name = "libusb (DFU)"
    if facts.libusb:
        return Check(name, True, "pyusb finds libusb")
    return Check(
        name,
        False,
        "pyusb finds no libusb: USB DFU flashing and USB board listing cannot work",
        "pip install libusb-package (it ships libusb), or sudo apt install libusb-1.0-0",
        needed,
    )


def check_dfu_util(facts: HostFacts) -> Check:
    name = "dfu-util"
    if facts.dfu_util:
        return Check(name, True, f"{facts.dfu_util} (for recovery by hand; hil flashes DFU itself)")
    return Check(
        name,
        False,
        "not installed; hil flashes DFU itself, dfu-util is for recovering a board by hand",
        "sudo apt install dfu-util",
        needed=False,
    )


def check_sched_fifo(facts: HostFacts) -> Check:
    name = "SCHED_FIFO"
    limit = "unlimited" if facts.rtprio < 0 else str(facts.rtprio)
    if facts.sched_fifo is None:
        return Check(name, True, f"allowed (RLIMIT_RTPRIO {limit})")
    return Check(
        name,
        False,
        f"not allowed ({facts.sched_fifo}; RLIMIT_RTPRIO {limit}): real-time runs keep the normal "
        "scheduler and see more jitter under load",
        "run as root, or add '@dialout - rtprio 50' to /etc/security/limits.d/hil.conf and log in "
        "again; in a container give it CAP_SYS_NICE",
        needed=False,
    )


def check_cpus(facts: HostFacts) -> Check:
    name = "CPUs"
    if facts.cpus >= 2:
        return Check(name, True, f"{facts.cpus} available")
    return Check(
        name,
        False,
        f"{facts.cpus} available: the harness's loop and the board (or SITL) share it, so "
        "real-time loops miss their deadlines",
        "run on a host (or give the container) at least 2 CPUs",
        needed=False,
    )


def check_clocksource(facts: HostFacts) -> Check:
    name = "clocksource"
    if not facts.clocksource:
        return Check(name, True, "not reported by /sys (not Linux, or /sys not mounted)")
    if facts.clocksource in GOOD_CLOCKSOURCES:
        return Check(name, True, f"{facts.clocksource}")
    return Check(
        name,
        False,
        f"{facts.clocksource}: each clock read is slow or coarse, which shows as timing jitter",
        "if /sys/devices/system/clocksource/clocksource0/available_clocksource lists tsc: "
        "echo tsc | sudo tee /sys/devices/system/clocksource/clocksource0/current_clocksource",
        needed=False,
    )


def host_checks(facts: HostFacts, *, hardware: bool) -> list[Check]:
    """Checks of the host; those about USB and serial devices are needed only when the
    rig holds hardware (`hardware`)."""
    return [
        check_serial_access(facts, needed=hardware),
        check_modem_manager(facts, needed=hardware),
        check_libusb(facts, needed=hardware),
        check_dfu_util(facts),
        check_sched_fifo(facts),
        check_cpus(facts),
        check_clocksource(facts),
    ]


# ------------------------------------------------------------------ boards, receivers


def check_board(board: Board, timeout: float, *, stop: bool = True) -> tuple[Check, str | None]:
    """Start the board as a run does and find its port; (the check, the port or None).
    With `stop=False` the caller stops it (after checking what hangs off it)."""
    who = f"{board.type_name or 'board'}" + (f", usb_serial {board.usb_serial!r}" if board.usb_serial else "")
    name = f"board {board.name} ({who})"
    try:
        board.start()
        port = board.url(timeout=timeout)
    except HilError as exc:
        fix = (
            "plug it in and power it; check that lsusb lists it and that usb_serial in the rig file "
            "matches its serial number (`hil boards` lists the boards it sees on USB)"
            if board.usb_serial
            else "check its url in the rig file and that whatever serves it is running"
        )
        return Check(name, False, f"not found: {_one_line(exc)}", fix, exit_code=EXIT_BOARD), None
    finally:
        if stop:
            with contextlib.suppress(HilError):
                board.stop()
    return Check(name, True, f"found on {port}"), port


def check_receiver(board: Board, receiver: Receiver, ports: Sequence[Any]) -> Check:
    """A receiver's device is present and, when it is on USB, a USB-UART adapter."""
    from hil.usb import discovery

    name = f"{receiver.role} receiver of {board.name}"
    what = f"{receiver.protocol.upper()} {receiver.framing}"
    if receiver.virtual:
        return Check(name, True, f"{what} on the virtual board's pty")
    inversion = ""
    if receiver.inverted:
        inversion = f"; inversion by the {receiver.inverter} inverter is not visible to the host: check it once with a scope or the FC's receiver tab"
    if not receiver.device:
        try:
            device = find_adapter(receiver, ports)
        except HilError as exc:
            return Check(
                name,
                False,
                _one_line(exc),
                "plug the adapter in, or correct usb_serial in the rig file to one of the adapters seen",
                exit_code=EXIT_BOARD,
            )
        return Check(name, True, f"{what} on USB-UART adapter {device} (serial {receiver.usb_serial}){inversion}")
    device = receiver.device
    if not device.startswith("/") and "://" not in device:
        note = board.wiring_note(receiver)  # a port of the board's own kind (a labgrid place's)
        if note is not None:
            return Check(name, True, f"{what} through {device}: {note}")
    if "://" in device:  # a network serial server (or a SITL's TCP UART standing in for the board)
        host, _, port = device.split("://", 1)[1].split("?", 1)[0].rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=2.0).close()
        except (OSError, ValueError) as exc:
            note = board.wiring_note(receiver)
            if note is not None:
                return Check(name, True, f"{what} through {device}: {note}")
            return Check(
                name,
                False,
                f"nothing answers on {device}: {_one_line(exc)}",
                "start the serial server that exports the adapter (ser2net, a labgrid exporter) or correct the URL",
                exit_code=EXIT_BOARD,
            )
        return Check(
            name, True, f"{what} through {device} (the framing is set at the far end){inversion}"
        )
    if not Path(device).exists():
        return Check(
            name,
            False,
            f"{device} does not exist",
            "plug the adapter in; ls /dev/serial/by-id/ shows what is there, and usb_serial = \"...\" "
            "instead of device finds the adapter wherever it enumerates",
            exit_code=EXIT_BOARD,
        )
    real = os.path.realpath(device)
    on_usb = [p for p in ports if p.device and os.path.realpath(p.device) == real]
    if not on_usb:
        return Check(name, True, f"{what} on {device} (not a USB device: a native UART){inversion}")
    verdict = discovery.classify(on_usb[0])
    if verdict.state != discovery.USB_UART:
        return Check(
            name,
            False,
            f"{device} ({on_usb[0].usb_id}) is {verdict.state} ({verdict.reason}), not a USB-UART adapter",
            "wire the receiver through a USB-UART adapter (CP210x, FTDI, CH340, PL2303) and name that adapter",
            exit_code=EXIT_BOARD,
        )
    return Check(name, True, f"{what} on USB-UART adapter {device} ({verdict.reason}){inversion}")


def _is_hardware_port(port: str) -> bool:
    return port.startswith("/dev/") and not port.startswith("/dev/pts/")


# ------------------------------------------------------------------------ the whole


def gather() -> HostFacts:
    """The host's facts, now."""
    import grp
    import pwd

    euid = os.geteuid()
    try:
        user = pwd.getpwuid(euid).pw_name
    except KeyError:
        user = str(euid)
    groups = set()
    for gid in {os.getegid(), *os.getgroups()}:
        with contextlib.suppress(KeyError):
            groups.add(grp.getgrgid(gid).gr_name)
    devices = []
    for pattern in ("ttyUSB*", "ttyACM*"):
        for path in sorted(Path("/dev").glob(pattern)):
            devices.append((str(path), os.access(path, os.R_OK | os.W_OK)))
    rtprio = resource.getrlimit(resource.RLIMIT_RTPRIO)[0] if hasattr(resource, "RLIMIT_RTPRIO") else 0
    return HostFacts(
        euid=euid,
        user=user,
        groups=frozenset(groups),
        serial_devices=tuple(devices),
        modem_manager=_process_running("ModemManager"),
        libusb=_libusb_found(),
        dfu_util=shutil.which("dfu-util"),
        sched_fifo=_try_sched_fifo(),
        rtprio=-1 if rtprio == resource.RLIM_INFINITY else int(rtprio),
        cpus=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1),
        clocksource=_read("/sys/devices/system/clocksource/clocksource0/current_clocksource"),
    )


def _process_running(comm: str) -> bool:
    for entry in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            if entry.read_text().strip() == comm:
                return True
    return False


def _libusb_found() -> bool:
    from hil.usb.discovery import real_backend

    return real_backend() is not None


def _try_sched_fifo() -> str | None:
    """Whether this process may use SCHED_FIFO: tried in a thread of its own, which ends,
    so nothing of ours keeps the policy."""
    if not hasattr(os, "SCHED_FIFO"):
        return "this OS has no SCHED_FIFO"
    result: list[str | None] = []

    def attempt() -> None:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
            result.append(None)
        except OSError as exc:
            result.append(exc.strerror or str(exc))

    thread = threading.Thread(target=attempt, name="hil-doctor-fifo", daemon=True)
    thread.start()
    thread.join(2.0)
    return result[0] if result else "the attempt did not finish"


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def diagnose(rig: Rig, facts: HostFacts, *, timeout: float = 5.0, ports: Iterable[Any] | None = None) -> list[Check]:
    """Every check for this rig on this host, boards and receivers first."""
    from hil.links.ports import usb_ports

    listed = list(ports) if ports is not None else usb_ports()
    checks: list[Check] = []
    hardware = False
    for board in rig.boards:
        try:
            check, port = check_board(board, timeout, stop=False)
            checks.append(check)
            hardware |= port is None or _is_hardware_port(port)
            for receiver in board.receivers:  # while the board runs: a stand-in serves its UARTs
                checks.append(check_receiver(board, receiver, listed))
                hardware |= not receiver.virtual
        finally:
            with contextlib.suppress(HilError):
                board.stop()
    return checks + host_checks(facts, hardware=hardware)


def exit_status(checks: Sequence[Check]) -> int:
    """0 when nothing needs fixing; 3 when a board or receiver is missing; else 2."""
    failed = [c for c in checks if c.failed]
    if not failed:
        return 0
    return EXIT_BOARD if any(c.exit_code == EXIT_BOARD for c in failed) else EXIT_ERROR


def _cmd_doctor(args: Any) -> int:
    from hil.pytest_plugin.options import resolve_rig_path

    path = resolve_rig_path(args.rig)
    rig = Rig.load(path)  # a scratch state directory: nothing of another run's is touched
    try:
        print(f"rig {rig.name} ({path})")
        checks = diagnose(rig, gather(), timeout=args.timeout)
    finally:
        rig.stop()
    for check in checks:
        print(check.line())
    status = exit_status(checks)
    failed = [c for c in checks if c.failed]
    print("ready" if not failed else f"not ready: {len(failed)} problem(s)")
    return status


def add_command(sub: Any) -> None:
    """Register `hil doctor` on the CLI's subparsers."""
    doctor = sub.add_parser("doctor", help="check that this host and the rig are ready for a bench run; says how to fix each problem")
    doctor.add_argument("--rig", help="rig file (default: fixtures/virtual.toml)")
    doctor.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for each board (default 5)")
    doctor.set_defaults(func=_cmd_doctor)


__all__ = [
    "Check",
    "HostFacts",
    "add_command",
    "check_board",
    "check_receiver",
    "diagnose",
    "exit_status",
    "gather",
    "host_checks",
]
