"""Build the virtual board's firmware images from their sources, and check the manifest.

One source per build, `firmware_images/src/<name>.toml` (name, version, board_id,
git_identity, loop_rate, code_kib, [params], [behaviour]), becomes `<name>.apj`, `<name>.hex` and
`<name>.dfu`, all carrying the same application payload (hil.firmware.app_image) placed
at APP_BASE. Same source, same bytes, same sha256. `manifest.toml` lists every file with
its sha256, board id, version and format.

    python -m hil.firmware.build [SRC_DIR [OUT_DIR]]      # rebuild
    python -m hil.firmware.build --check [OUT_DIR]        # verify the manifest
"""

from __future__ import annotations

import hashlib
import io
import sys
import tomllib
from pathlib import Path
from typing import Any

from hil.errors import HilError
from hil.firmware.app_image import AppImageError, build_app
from hil.firmware.image import FirmwareImage, Segment, write_apj, write_dfu, write_hex
from hil.firmware.layout import APP_BASE, APP_SIZE

REPO_IMAGES = Path(__file__).resolve().parent.parent.parent / "firmware_images"
"""`firmware_images/` of the source tree (the committed, built images)."""
RELEASE_IMAGE = "hilcopter-1.0.0"
"""The build every virtual board is factory-programmed with."""
FORMATS = ("apj", "hex", "dfu")
MANIFEST = "manifest.toml"
_SOURCE_KEYS = {
    "name", "version", "board_id", "git_identity", "loop_rate", "code_kib", "params", "behaviour"
}
CODE_KIB_MAX = 512
# The STM32 ROM DFU device ids, which a .dfu for this board names in its suffix.
_DFU_VID, _DFU_PID = 0x0483, 0xDF11


class BuildError(HilError):
    """A firmware source cannot be built; the message names the file."""


def load_source(path: Path) -> dict[str, Any]:
    """Read and check one build source."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BuildError(f"{path}: cannot read the build source ({exc})") from None
    unknown = sorted(set(data) - _SOURCE_KEYS)
    if unknown:
        raise BuildError(f"{path}: unknown keys {unknown}; allowed: {sorted(_SOURCE_KEYS)}")
    missing = sorted({"name", "version", "board_id", "loop_rate"} - set(data))
    if missing:
        raise BuildError(f"{path}: missing keys {missing}")
    return data


def build_payload(source: dict[str, Any], where: str = "<source>") -> bytes:
    """The application payload of one source: header, config, then `code_kib` KiB of code.

    The virtual board runs Python, so the "machine code" after the config is filler,
    derived from the build's name and version: it gives the image a realistic size for
    flashing times without changing what the board boots.
    """
    code_kib = source.get("code_kib", 0)
    if isinstance(code_kib, bool) or not isinstance(code_kib, int) or not 0 <= code_kib <= CODE_KIB_MAX:
        raise BuildError(f"{where}: code_kib must be an integer 0..{CODE_KIB_MAX}, found {code_kib!r}")
    try:
        head = build_app(
            board_id=int(source["board_id"]),
            name=source["name"],
            version=source["version"],
            loop_rate=source["loop_rate"],
            git_identity=source.get("git_identity", ""),
            params=source.get("params", {}),
            behaviour=source.get("behaviour", {}),
        )
    except (AppImageError, TypeError, ValueError) as exc:
        raise BuildError(f"{where}: {exc}") from None
    seed = f"{source['name']} {source['version']}".encode()
    return head + (hashlib.shake_256(seed).digest(code_kib * 1024) if code_kib else b"")


def _render(name: str, source: dict[str, Any], payload: bytes) -> dict[str, bytes]:
    image = FirmwareImage(
        name,
        "bin",
        (Segment(APP_BASE, payload),),
        board_id=int(source["board_id"]),
        version=source["version"],
    )
    out: dict[str, bytes] = {}
    for fmt in FORMATS:
        buf = io.BytesIO()
        if fmt == "apj":
            write_apj(
                image,
                buf,
                board_id=image.board_id or 0,
                version=source["version"],
                git_identity=source.get("git_identity", ""),
                summary=f"{source['name']} {source['version']}",
                image_maxsize=APP_SIZE,
            )
        elif fmt == "hex":
            write_hex(image, buf)
        else:
            write_dfu(image, buf, vid=_DFU_VID, pid=_DFU_PID)
        out[fmt] = buf.getvalue()
    return out


def build_all(src_dir: Path | str, out_dir: Path | str) -> list[Path]:
    """Build every `*.toml` in `src_dir` into `out_dir`, write the manifest; return the files."""
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    sources = sorted(src_dir.glob("*.toml"))
    if not sources:
        raise BuildError(f"{src_dir}: no build sources (*.toml)")
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    entries: list[str] = []
    for path in sources:
        source = load_source(path)
        payload = build_payload(source, str(path))
        for fmt, data in _render(path.stem, source, payload).items():
            target = out_dir / f"{path.stem}.{fmt}"
            if not target.exists() or target.read_bytes() != data:
                target.write_bytes(data)
            written.append(target)
            entries.append(
                "[[image]]\n"
                f'build = "{path.stem}"\n'
                f'file = "{target.name}"\n'
                f'format = "{fmt}"\n'
                f"board_id = {int(source['board_id'])}\n"
                f'version = "{source["version"]}"\n'
                f'sha256 = "{hashlib.sha256(data).hexdigest()}"\n'
                f'payload_sha256 = "{hashlib.sha256(payload).hexdigest()}"\n'
            )
    manifest = (
        "# Written by `python -m hil.firmware.build`; check with `--check`.\n"
        f'release = "{RELEASE_IMAGE}"\n\n' + "\n".join(entries)
    )
    (out_dir / MANIFEST).write_text(manifest, encoding="utf-8")
    return written


def read_manifest(directory: Path | str) -> dict[str, Any]:
    """The parsed manifest of an images directory."""
    path = Path(directory) / MANIFEST
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BuildError(f"{path}: cannot read the manifest ({exc})") from None


def check_manifest(directory: Path | str) -> list[str]:
    """Problems with the manifest of `directory`: missing files, sha256 mismatches."""
    directory = Path(directory)
    try:
        manifest = read_manifest(directory)
    except BuildError as exc:
        return [str(exc)]
    problems: list[str] = []
    images = manifest.get("image", [])
    if not isinstance(images, list) or not images:
        return [f"{directory / MANIFEST}: lists no images"]
    for entry in images:
        name = entry.get("file", "?") if isinstance(entry, dict) else "?"
        path = directory / str(name)
        if not path.is_file():
            problems.append(f"{path}: listed in the manifest but missing")
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != entry.get("sha256"):
            problems.append(
                f"{path}: sha256 {digest} does not match the manifest's {entry.get('sha256')}"
            )
    return problems


def release_image_path(directory: Path | str | None = None, fmt: str = "apj") -> Path:
    """The release image file (what a new virtual board holds from the factory)."""
    directory = Path(directory) if directory is not None else REPO_IMAGES
    path = directory / f"{RELEASE_IMAGE}.{fmt}"
    if not path.is_file():
        raise BuildError(
            f"release image {path} not found; build it with `python -m hil.firmware.build`"
        )
    return path


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--check"]:
        problems = check_manifest(Path(args[1]) if len(args) > 1 else REPO_IMAGES)
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    src = Path(args[0]) if args else REPO_IMAGES / "src"
    out = Path(args[1]) if len(args) > 1 else REPO_IMAGES
    for path in build_all(src, out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
