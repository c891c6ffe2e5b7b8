"""The `hil` command: run the scenario suite, list the rig's boards."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from hil.errors import EXIT_USAGE, BoardUnavailable, ConfigError, HilError, exit_code


def _state_dir(args: argparse.Namespace) -> Path:
    """Where the rig's virtual boards keep their flash and parameters between commands."""
    if args.state_dir:
        return Path(args.state_dir)
    from hil.pytest_plugin.options import resolve_rig_path
    from hil.rig import state_dir

    return state_dir(resolve_rig_path(args.rig))


def _cmd_run(args: argparse.Namespace) -> int:
    import pytest

    report = Path(args.report or f"hil-runs/{time.strftime('%Y%m%d-%H%M%S')}")
    report.mkdir(parents=True, exist_ok=True)
    targets = list(args.scenarios)
    if not targets:
        default = Path("scenarios")
        if not default.is_dir():
            print("hil run: no scenarios given and no scenarios/ directory here", file=sys.stderr)
            return EXIT_USAGE
        targets = [str(default)]
    boards = _check_run_inputs(args, targets)
    workers = _workers(args, boards)
    pytest_args = [
        *targets,
        "-p",
        "no:cacheprovider",
        f"--hil-report={report}",
        "-o",
        "junit_family=xunit1",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",  # hil is imported before pytest starts
        "-q",
    ]
    if args.rig:
        pytest_args.append(f"--rig={args.rig}")
    pytest_args.append(f"--hil-state-dir={_state_dir(args)}")
    if args.board:
        pytest_args.append(f"--board={args.board}")
    for tag in getattr(args, "board_tags", None) or ():
        pytest_args.append(f"--board-tag={tag}")
    if args.keyword:
        pytest_args += ["-k", args.keyword]
    if args.seeds:
        pytest_args.append(f"--seeds={args.seeds}")
    if workers > 1:
        # One pytest-xdist worker per board: each claims a free board of the rig; work
        # stealing keeps both busy when scenarios differ in length.
        pytest_args += ["-n", str(workers), "--dist", "worksteal"]
    code = int(pytest.main(pytest_args))
    print(f"report: {report}/ (report.html, junit.xml, summary.json, a directory per scenario)")
    return code


def _workers(args: argparse.Namespace, boards: int) -> int:
    """How many pytest-xdist workers `-n` gets: at most one per board the run may use
    (every board of the rig, or the one --board names), since a worker holds its board
    for the whole run and one without a board could only wait for another's."""
    wanted = args.workers
    if wanted is None or wanted == 1:
        return 1
    if wanted < 1:
        raise ConfigError(f"-n {wanted}: give a number of workers of at least 1")
    usable = 1 if args.board else boards
    if wanted > usable:
        tags = getattr(args, "board_tags", None)
        carrying = f" carrying {','.join(tags)}" if tags else ""
        why = f"--board {args.board} names one board" if args.board else f"the rig has {boards} board(s){carrying}"
        print(f"hil run: -n {wanted}: {why}, so {usable} worker(s), one per board", file=sys.stderr)
        wanted = usable
    if wanted > 1:
        try:
            import xdist  # noqa: F401
        except ImportError:
            raise ConfigError(
                f"-n {args.workers}: several boards at once need pytest-xdist "
                "(pip install 'pytest-xdist>=3.2', or hil's dev extra)"
            ) from None
    return wanted


def _check_run_inputs(args: argparse.Namespace, targets: list[str]) -> int:
    """Refuse a broken rig file, an unknown --board or a broken scenario file before
    pytest starts: one line and exit code 4, not a traceback per scenario. Returns how
    many boards the run may use (the rig's, or those carrying --board-tag's tags)."""
    from hil.pytest_plugin.items import scenario_paths
    from hil.pytest_plugin.options import resolve_rig_path
    from hil.rig import Rig, parse_tag_filter
    from hil.scenario.load import load_scenario, parse_seeds

    if args.seeds:
        parse_seeds(args.seeds)
    tags = parse_tag_filter(getattr(args, "board_tags", None))
    rig = Rig.load(resolve_rig_path(args.rig), work_dir=_state_dir(args))
    try:
        rig.select(args.board, tags)
        usable = len(rig.matching(tags))
    finally:
        rig.stop()
    for path in scenario_paths(targets):
        load_scenario(path)
    return usable


def _cmd_boards(args: argparse.Namespace) -> int:
    from hil.pytest_plugin.options import resolve_rig_path
    from hil.rig import Rig
    from hil.session import session_for

    if not args.timeout > 0:
        raise ConfigError(f"--timeout {args.timeout}: give a positive number of seconds")
    rig = Rig.load(resolve_rig_path(args.rig), work_dir=_state_dir(args))
    unreachable: list[str] = []
    try:
        def identify(board) -> str:
            try:
                return session_for(board, connect_timeout=args.timeout).describe_firmware()
            except HilError as exc:
                unreachable.append(f"board {board.name}: {exc}")
                return f"unreachable: {exc}"

        rows = rig.statuses(identify)
    finally:
        rig.stop()
    print(f"rig {rig.name} ({rig.path})")
    header = f"{'name':12} {'type':8} {'state':9} {'usb serial':14} {'port':22} firmware"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row.name:12} {row.type:8} {row.state:9} {row.usb_serial:14} {row.port:22} {row.firmware}")
    from hil.usb.discovery import list_usb_boards

    seen = list_usb_boards(real=True)
    print(f"\nflight controllers and bootloaders on USB: {len(seen) or 'none'}")
    for dev in seen:
        where = f"bus {dev.bus} addr {dev.address}" if dev.bus is not None else ""
        print(f"  {dev.vid:04x}:{dev.pid:04x} {dev.kind:7} serial {dev.usb_serial or '?':14} {dev.description} {where}".rstrip())
    if unreachable:
        more = f" (and {len(unreachable) - 1} more)" if len(unreachable) > 1 else ""
        raise BoardUnavailable(unreachable[0] + more)
    return 0


def _cmd_flash(args: argparse.Namespace) -> int:
    import shlex

    from hil.firmware.image import load_image
    from hil.flash.base import FlashInterrupted
    from hil.lifecycle import BoardState
    from hil.locks import BoardLock
    from hil.pytest_plugin.options import resolve_rig_path
    from hil.rig import Rig

    def again() -> str:
        """The command that finishes a flash cut off half way (this one, as given)."""
        words = ["hil", "flash", args.image, "--method", method]
        for flag, value in (("--board", args.board), ("--rig", args.rig),
                            ("--base-address", args.base_address), ("--state-dir", args.state_dir)):
            if value:
                words += [flag, str(value)]
        return shlex.join(words + (["--force"] if args.force else []))

    base = int(args.base_address, 0) if args.base_address else None
    image = load_image(args.image, base_address=base)
    rig = Rig.load(resolve_rig_path(args.rig), work_dir=_state_dir(args))
    try:
        board = rig.select(args.board)
        with BoardLock(board.usb_serial or board.name, board.lock_dir, wait=args.lock_wait):
            board.lifecycle.reach(BoardState.APP, "to be flashed")
            method = args.method or board.flash_method
            flasher = board.flasher(method, progress=_progress_bar())
            try:
                result = flasher.flash(image, force=args.force)
            except FlashInterrupted as exc:
                sys.stderr.write("\n")
                raise exc.with_retry(again()) from None
            except KeyboardInterrupt:
                if flasher.erase_started:
                    sys.stderr.write(
                        f"\nhil flash: interrupted after the erase began: board {board.name} is now "
                        f"in its bootloader without an application: run `{again()}` to finish\n"
                    )
                raise
    finally:
        rig.stop()
    sys.stderr.write("\n")
    where = f"{board.name} ({result.usb_serial}) over {result.method}"
    if result.skipped:
        print(f"{args.image}: skipped, {where} already holds it (sha256 {image.sha256[:16]}...); --force to flash anyway")
        return 0
    print(f"{args.image}: flashed onto {where}, {result.old_version or '?'} -> {result.new_version or '?'}")
    print(f"  {result.bytes_written} bytes, sha256 {image.sha256[:16]}..., verified by {result.verified_by}")
    limit = (
        f", {result.throughput_bps / result.link_limit_bps:.0%} of the link's {result.link_limit_bps / 1e3:.0f} kB/s"
        if result.link_limit_bps
        else " (this link has no fixed rate limit)"
    )
    print(
        f"  erase+write+verify {result.seconds:.2f} s; write {result.write_seconds:.3f} s = "
        f"{result.throughput_bps / 1e3:.1f} kB/s{limit}"
    )
    return 0


def _progress_bar():
    state = {"phase": None, "filled": -1}

    def show(done: int, total: int, phase: str) -> None:
        filled = int(30 * done / total) if total else 30
        if phase == state["phase"] and filled == state["filled"]:
            return
        if phase != state["phase"] and state["phase"] is not None:
            sys.stderr.write("\n")
        state["phase"], state["filled"] = phase, filled
        percent = 100 * done // total if total else 100
        sys.stderr.write(f"\r  {phase:7} [{'#' * filled}{'.' * (30 - filled)}] {percent:3d}%")
        sys.stderr.flush()

    return show


def _cmd_firmware(args: argparse.Namespace) -> int:
    from hil.firmware import build

    if args.action == "check":
        problems = build.check_manifest(Path(args.out) if args.out else build.REPO_IMAGES)
        for problem in problems:
            print(problem, file=sys.stderr)
        print("manifest ok" if not problems else f"{len(problems)} problem(s)")
        return 1 if problems else 0
    src = Path(args.src) if args.src else build.REPO_IMAGES / "src"
    out = Path(args.out) if args.out else build.REPO_IMAGES
    for path in build.build_all(src, out):
        print(path)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from hil import bench

    if args.realtime_seconds is not None and args.realtime_seconds <= 0:
        raise ConfigError(f"--realtime-seconds {args.realtime_seconds}: give a positive length")
    if args.realtime_runs < 1:
        raise ConfigError(f"--realtime-runs {args.realtime_runs}: give at least 1")
    if args.boards is not None and args.boards < 2:
        raise ConfigError(f"--boards {args.boards}: give at least 2 boards to compare with 1")
    if args.soak is not None and args.soak <= 0:
        raise ConfigError(f"--soak {args.soak}: give a positive number of minutes")
    ardupilot = None
    if args.ardupilot is not None or args.ardupilot_only:
        from hil import bench_ardupilot

        ardupilot = bench_ardupilot.resolve(
            args.ardupilot or None,
            seconds=args.ardupilot_seconds if args.ardupilot_seconds is not None else (5.0 if args.quick else None),
            speedups=args.ardupilot_speedups,
            instance=args.ardupilot_instance,
        )
    figures = bench.run_all(
        quick=args.quick,
        realtime_seconds=args.realtime_seconds,
        realtime_runs=args.realtime_runs,
        suite_runs=args.suite or 0,
        soak_minutes=args.soak or 0.0,
        boards=args.boards or 0,
        realtime_where=args.realtime_loop,
        realtime_load=args.realtime_harness_load,
        realtime_only=args.realtime_only,
        ardupilot=ardupilot,
        ardupilot_only=args.ardupilot_only,
    )
    print(bench.to_json(figures) if args.json else bench.format_table(figures))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, with the command's usage-error exit code (4) instead of argparse's 2."""

    def error(self, message: str):  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hil", description="hardware-in-the-loop tests for flight controllers")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run scenarios (through pytest) on a rig")
    run.add_argument("scenarios", nargs="*", help="scenario files or directories (default: scenarios/)")
    run.add_argument("--rig", help="rig file (default: fixtures/virtual.toml)")
    run.add_argument("--board", help="board of the rig (name or USB serial)")
    run.add_argument(
        "--board-tag", dest="board_tags", action="append", default=[], metavar="KEY=VALUE",
        help="only boards whose rig tags include KEY=VALUE (repeatable); with -n, free ones first",
    )
    run.add_argument("--report", help="directory for JUnit XML and the report (default: hil-runs/<time>)")
    run.add_argument("-k", dest="keyword", help="only scenarios matching this pytest keyword expression")
    run.add_argument(
        "--seeds",
        help="fly every scenario once per seed, e.g. 0-19 or 0,3,7 (default: each file's own seed); "
        "a verdict must hold on all of them",
    )
    run.add_argument("--state-dir", help="where virtual boards keep flash and parameters (default: .hil/rigs/<rig>)")
    run.add_argument(
        "-n",
        dest="workers",
        type=int,
        metavar="N",
        help="fly on N boards of the rig at once (pytest-xdist workers, one board each; "
        "at most the rig's boards); one merged report and results table",
    )
    run.set_defaults(func=_cmd_run)

    boards = sub.add_parser("boards", help="list the rig's boards with state, port, USB serial, firmware")
    boards.add_argument("--rig", help="rig file (default: fixtures/virtual.toml)")
    boards.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each board")
    boards.add_argument("--state-dir", help="where virtual boards keep flash and parameters (default: .hil/rigs/<rig>)")
    boards.set_defaults(func=_cmd_boards)

    flash = sub.add_parser("flash", help="flash a firmware image onto a board of the rig")
    flash.add_argument("image", help=".apj, .px4, .hex, .bin (with --base-address), .dfu or .elf")
    flash.add_argument("--rig", help="rig file (default: fixtures/virtual.toml)")
    flash.add_argument("--board", help="board of the rig (name or USB serial)")
    flash.add_argument(
        "--method", choices=("serial", "dfu"), default=None,
        help="serial bootloader or USB DFU (default: the board type's: serial, dfu for betaflight)",
    )
    flash.add_argument("--force", action="store_true", help="flash even when the board already holds the image")
    flash.add_argument("--base-address", help="load address of a raw .bin image (e.g. 0x08004000)")
    flash.add_argument("--lock-wait", type=float, default=30.0, help="seconds to wait for a board another process holds")
    flash.add_argument("--state-dir", help="where virtual boards keep flash and parameters (default: .hil/rigs/<rig>)")
    flash.set_defaults(func=_cmd_flash)

    firmware = sub.add_parser("firmware", help="build the virtual board's firmware images, or check their manifest")
    firmware.add_argument("action", choices=("build", "check"))
    firmware.add_argument("--src", help="directory of build sources (default: firmware_images/src)")
    firmware.add_argument("--out", help="directory for images and manifest (default: firmware_images)")
    firmware.set_defaults(func=_cmd_firmware)

    bench = sub.add_parser(
        "bench",
        help="measure what this host sustains: harness cost, loops, flashing, suite, memory",
    )
    bench.add_argument("--quick", action="store_true", help="shorter runs (a smoke test, wider spread)")
    bench.add_argument("--json", action="store_true", help="print JSON instead of the table")
    bench.add_argument(
        "--realtime-seconds",
        type=float,
        metavar="S",
        help="seconds of each real-time run against Betaflight SITL (default 10; 60: the target)",
    )
    bench.add_argument(
        "--realtime-runs", type=int, default=3, metavar="N", help="real-time runs (default 3)"
    )
    bench.add_argument(
        "--realtime-loop",
        choices=("thread", "process", "both"),
        default="thread",
        help="run the real-time loop in a thread of the harness, in a process of its own, or "
        "both in alternating runs (default thread)",
    )
    bench.add_argument(
        "--realtime-harness-load",
        action="store_true",
        help="a harness thread holds the GIL 2 ms in every 10 while the real-time loop is measured",
    )
    bench.add_argument(
        "--realtime-only", action="store_true", help="measure the real-time loop and nothing else"
    )
    bench.add_argument(
        "--suite",
        type=int,
        nargs="?",
        const=1,
        metavar="RUNS",
        help="also time the default scenario suite (minutes per run; default 1 run)",
    )
    bench.add_argument(
        "--boards",
        type=int,
        nargs="?",
        const=2,
        metavar="N",
        help="also time the scenario suite on 1 board and on N virtual boards at once "
        "(hil run -n N; default 2), with the speed-up",
    )
    bench.add_argument(
        "--soak",
        type=float,
        metavar="MINUTES",
        help="also measure memory growth over a real-time run of MINUTES",
    )
    bench.add_argument(
        "--ardupilot",
        nargs="?",
        const="",
        metavar="PATH",
        help="also measure ArduPilot SITL (the arducopter executable at PATH, else "
        "HIL_ARDUPILOT_SITL): lockstep speed with the harness as its physics (JSON) against "
        "the same executable's built-in quad model (--model quad) at each --ardupilot-speedups, "
        "each hovering for the same vehicle time; reports every speed, the highest speed-up "
        "the built-in model still reaches (90 %%) and the ratio",
    )
    bench.add_argument(
        "--ardupilot-only", action="store_true", help="measure the ArduPilot comparison and nothing else"
    )
    bench.add_argument(
        "--ardupilot-seconds",
        type=float,
        metavar="S",
        help="vehicle seconds timed per ArduPilot flight (default 20; 5 with --quick)",
    )
    bench.add_argument(
        "--ardupilot-speedups",
        metavar="LIST",
        help="the built-in model's --speedup values, comma-separated (default 1,10,50,100,1000)",
    )
    bench.add_argument(
        "--ardupilot-instance",
        type=int,
        default=0,
        metavar="N",
        help="SITL instance (-I N: its ports move by 10 x N) for every ArduPilot run (default 0)",
    )
    bench.set_defaults(func=_cmd_bench)

    from hil.gate import add_command as add_gate

    add_gate(sub)
    from hil.doctor import add_command as add_doctor

    add_doctor(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from hil import sigterm

    restore = sigterm.install()  # SIGTERM tears down like Ctrl-C: boards stopped, locks released
    try:
        return int(args.func(args))
    except HilError as exc:
        print(f"hil {args.command}: {exc}", file=sys.stderr)
        return exit_code(exc)
    except sigterm.Terminated as exc:
        return 128 + exc.signum
    except KeyboardInterrupt:
        return 130
    finally:
        restore()


if __name__ == "__main__":
    sys.exit(main())
