"""Run one virtual board: `python -m hil.vfc --usb-serial SN --storage FILE --flash FILE`.

With `--flash` the board boots like hardware: a valid application in its flash runs
the MAVLink server with that build's configuration (version, board id, loop rate,
parameter defaults, behaviour knobs); an invalid one leaves it in its serial
bootloader (hil.vfc.bootloader). MAV_CMD_PREFLIGHT_REBOOT_SHUTDOWN param1 = 3 moves the
app into the bootloader, the bootloader's REBOOT back to the app; each state has its
own pty, announced in the registry with the same USB serial. `--boot0` powers the board
on with BOOT0 held: the ROM DFU device (hil.vfc.dfu_device) serves until it leaves.
Without `--flash` the board runs its built-in firmware (`--firmware-version`).

The board serves until SIGTERM or SIGINT, then removes its registry entry and exits 0.
With `--lifeline FD` (a pipe only the harness writes to) it also stops when the harness
has ended, however it ended: a board must never outlive the harness that started it.
It logs sparsely to stderr, line-buffered, so a harness can keep the log.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from hil.links import registry
from hil.mavlink.dialect import VFC_BOARD_ID, VFC_USB_PID, VFC_USB_VID


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hil.vfc", description=__doc__)
    parser.add_argument("--usb-serial", required=True, help="USB serial number the board reports")
    parser.add_argument(
        "--storage", required=True, type=Path, help="parameter storage file (its eeprom)"
    )
    parser.add_argument(
        "--flash", type=Path, default=None, help="the board's 1 MiB internal flash file"
    )
    parser.add_argument(
        "--boot0", action="store_true", help="power on with BOOT0 held: ROM DFU device first"
    )
    parser.add_argument(
        "--registry",
        type=Path,
        default=None,
        help="registry directory (default: $HIL_REGISTRY or a per-user temp dir)",
    )
    parser.add_argument(
        "--board-id", type=int, default=VFC_BOARD_ID, help="board id (APJ board_id)"
    )
    parser.add_argument(
        "--firmware-version", default="1.0.0", help="built-in firmware version (no --flash)"
    )
    parser.add_argument("--name", default="HILVFC", help="board name shown in the boot banner")
    parser.add_argument(
        "--sector-erase-s",
        type=float,
        default=1.0,
        help="bootloader: seconds to erase one 128 KiB sector (smaller ones in proportion)",
    )
    parser.add_argument(
        "--boot-delay-s",
        type=float,
        default=5.0,
        help="bootloader: seconds it waits for a host before booting a valid application",
    )
    parser.add_argument(
        "--lifeline",
        type=int,
        default=None,
        metavar="FD",
        help="inherited read end of a pipe the harness holds open: stop when it reaches end of file",
    )
    parser.add_argument(
        "--uart",
        action="append",
        default=[],
        metavar="NAME=PROTOCOL",
        help="a receiver UART wired to the harness: gps=ubx|nmea|auto, rc=crsf|sbus (repeatable)",
    )
    parser.add_argument(
        "--personality",
        choices=("ardupilot", "px4"),
        default="ardupilot",
        help="whose firmware the board presents: ArduCopter's (default) or PX4's (hil.vfc.px4)",
    )
    parser.add_argument(
        "--sim-tcp",
        default=None,
        metavar="HOST:PORT",
        help="px4: the simulator's TCP port, which the board connects to as PX4 SITL does",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Serve one board until signalled; return the exit code."""
    sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    args = _parser().parse_args(argv)
    serial: str = args.usb_serial
    directory = args.registry if args.registry is not None else registry.default_registry_dir()
    pid = os.getpid()
    identity = registry.own_identity()  # now, while the harness that started us is our parent

    def log(text: str) -> None:
        print(f"vfc {serial} [{pid}]: {text}", file=sys.stderr)

    if args.lifeline is not None:
        _stop_with_harness(args.lifeline, directory, serial, log)

    other = registry.find_entry(directory, serial)
    if other is not None and other.get("process_id") != pid:
        log(f"USB serial {serial} is already served by pid {other.get('process_id')}; exiting")
        return 2

    from hil.vfc.uarts import BoardUarts, parse_uart_spec

    try:
        uart_spec = dict(parse_uart_spec(text) for text in args.uart)
    except ValueError as exc:
        log(f"--uart: {exc}")
        return 2
    uarts = BoardUarts(uart_spec) if uart_spec else None
    if args.personality == "px4":
        host, _, port = (args.sim_tcp or "").rpartition(":")
        if not host or not port.isdigit():
            log(f"--personality px4 needs --sim-tcp HOST:PORT, got {args.sim_tcp!r}")
            return 2

    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def announce(port: str, state: str, **extra: Any) -> None:
        entry = {
            **identity,
            "usb_serial": serial,
            "port": port,
            "state": state,
            "usb_vid": VFC_USB_VID,
            "usb_pid": VFC_USB_PID,
            "board_id": args.board_id,
            "name": args.name,
        }
        if uarts is not None:
            entry["uarts"] = uarts.paths
        entry.update(extra)
        registry.write_entry(directory, entry)

    flash = None
    if args.flash is not None:
        from hil.vfc.flash import Flash

        flash = Flash(args.flash)
    try:
        if args.boot0:
            if flash is None:
                log("--boot0 needs --flash: the ROM DFU device writes the flash")
                return 2
            # Imported here: only this branch needs the DFU device.
            from hil.vfc.dfu_device import serve_dfu

            log("BOOT0 held: ROM DFU device")
            serve_dfu(flash, serial, directory, lambda: stopping)
        _serve(args, flash, announce, log, lambda: stopping, uarts)
    finally:
        registry.remove_entry(directory, serial, process_id=pid)
        if flash is not None:
            flash.close()
        if uarts is not None:
            uarts.close()
    return 0


def _stop_with_harness(fd: int, directory: Path, serial: str, log: Any, grace: float = 5.0) -> None:
    """Stop like on SIGTERM once the harness's lifeline is cut; after `grace` s, exit hard."""
    from hil.children import watch_lifeline

    def cut() -> None:
        log("the harness has gone (lifeline closed); stopping")
        os.kill(os.getpid(), signal.SIGTERM)
        timer = threading.Timer(grace, _exit_hard, (directory, serial, log, grace))
        timer.daemon = True
        timer.start()

    watch_lifeline(fd, cut)


def _exit_hard(directory: Path, serial: str, log: Any, grace: float) -> None:
    log(f"still running {grace:.0f} s after the harness went; exiting now")
    registry.remove_entry(directory, serial, process_id=os.getpid())
    os._exit(3)


def _serve(
    args: argparse.Namespace, flash: Any, announce: Any, log: Any, stopping: Any, uarts: Any = None
) -> None:
    """Boot, and boot again, until `stopping()`: app or bootloader, each on a new pty."""
    from hil.firmware.app_image import AppImageError, parse_app
    from hil.vfc.bootloader import SerialBootloader
    from hil.vfc.server import BoardIdentity, VfcServer

    serial = args.usb_serial
    current: Any = None  # what owns the port now: VfcServer or SerialBootloader
    to_bootloader = False
    try:
        while not stopping():
            app = None
            if flash is not None:
                try:
                    app = parse_app(flash.app_bytes(), board_id=args.board_id)
                except AppImageError as exc:
                    log(f"no bootable application: {exc.reason}")
            if flash is not None and (app is None or to_bootloader):
                to_bootloader = False
                loader = SerialBootloader(
                    flash,
                    serial,
                    board_id=args.board_id,
                    app_valid=app is not None,
                    boot_delay_s=args.boot_delay_s,
                    sector_erase_s=args.sector_erase_s,
                    on_port=lambda port: announce(port, "bootloader", bootloader_rev=5),
                    log=log,
                )
                if current is not None:  # the new pty exists first, so the path changes
                    current.close()
                current = loader
                loader.run(stopping)
                continue
            if app is not None:
                identity = BoardIdentity(serial, app.board_id, app.version, args.name)
            else:
                identity = BoardIdentity(serial, args.board_id, args.firmware_version, args.name)

            def on_app_port(port: str, identity: BoardIdentity = identity) -> None:
                announce(
                    port,
                    "app",
                    board_id=identity.board_id,
                    firmware_version=identity.firmware_version,
                )

            options: dict[str, Any] = {
                "on_port": on_app_port,
                "log": log,
                "app": app,
                "bootloader": flash is not None,
                "uarts": uarts,
            }
            if args.personality == "px4":
                from hil.vfc.px4_server import Px4Server

                host, _, port = args.sim_tcp.rpartition(":")
                server: Any = Px4Server(identity, args.storage, sim_host=host, sim_port=int(port), **options)
            else:
                server = VfcServer(identity, args.storage, **options)
            if current is not None:
                current.close()
            current = server
            server.run(stopping)
            log(("stopping: " if stopping() else "leaving the app: ") + server.timing_summary())
            if server.exit_reason != "bootloader":
                break
            to_bootloader = True
    finally:
        if current is not None:
            current.close()


if __name__ == "__main__":
    sys.exit(main())
