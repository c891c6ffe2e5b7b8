"""The serial flasher on real boards' terms: ports found again after re-enumeration,
adapters refused, ambiguous ports probed, external flash programmed and verified, and
the reboot-to-bootloader variants tried in uploader.py's order."""

from __future__ import annotations

import base64
import json
import threading
import zlib
from pathlib import Path
from types import SimpleNamespace

import pytest

from hil.errors import WaitTimeout
from hil.firmware.build import REPO_IMAGES
from hil.firmware.image import load_image
from hil.flash.base import FlashError
from hil.flash.preflight import ImageRefused
from hil.flash.serial_flasher import REBOOT_VARIANTS, BootloaderLink, SerialFlasher, app_payload
from hil.links import ports as ports_module
from hil.vfc.bootloader import SerialBootloader
from hil.vfc.flash import APP_BASE, EXTF_FILE, ExternalFlash, Flash
from hil.vfc.process import VirtualBoardProcess
from tests.test_serial_flasher import SERIAL
from tests.test_serial_flasher import board as board  # noqa: F401 - fixture: a running virtual board

RELEASE = REPO_IMAGES / "hilcopter-1.0.0.apj"
PATCH = REPO_IMAGES / "hilcopter-1.0.1-fieldpatch.apj"
EXTF_DATA = bytes(range(256)) * 40 + b"\x5a\xa5\x01"  # 10243 bytes: not a multiple of 4


def _with_extf(source: Path, target: Path, data: bytes = EXTF_DATA) -> Path:
    """An `.apj` like `source` that also carries `data` for external flash."""
    desc = json.loads(source.read_text())
    desc["extf_image"] = base64.b64encode(zlib.compress(data, 9)).decode()
    desc["extf_image_size"] = len(data)
    target.write_text(json.dumps(desc))
    return target


# ------------------------------------------------------------ a faked USB host


def _usb(device: str, vid: int, pid: int, product: str, serial: str, location: str):
    return SimpleNamespace(
        device=device,
        vid=vid,
        pid=pid,
        manufacturer=None,
        product=product,
        serial_number=serial,
        location=location,
        description=product,
    )


class Host:
    """What `list_ports.comports()` answers, switched by the test as the board reboots."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *ports: SimpleNamespace) -> None:
        self.ports = list(ports)
        monkeypatch.setattr(ports_module.list_ports, "comports", lambda: list(self.ports))

    def now(self, *ports: SimpleNamespace) -> None:
        self.ports = list(ports)


class FakeApplication:
    """The MAVLink side `SerialFlasher._mavlink` returns: disarmed, answers the reboot by
    letting `on_reboot` re-enumerate the board."""

    def __init__(self, on_reboot) -> None:
        self.armed = False
        self.identity = SimpleNamespace(firmware_version="0.9.0")
        self.last: dict[str, object] = {}
        self.on_reboot = on_reboot
        self.conn = SimpleNamespace(close=lambda: None)
        self.commands: list[tuple[int, tuple[float, ...]]] = []

    def command(self, command: int, *params: float, **kwargs: object) -> int:
        self.commands.append((command, params))
        self.on_reboot()
        return 0

    def close(self) -> None:
        pass


class LoaderThread:
    """The virtual serial bootloader on a pty, served in a thread; `on_boot` runs at REBOOT."""

    def __init__(self, tmp_path: Path, on_boot=lambda: None, **kwargs: object) -> None:
        self.flash = Flash(tmp_path / "flash.bin")
        self.loader = SerialBootloader(
            self.flash, "0", sector_erase_s=0.0, log=lambda text: None, **kwargs
        )
        self.stop = False
        self.outcome = ""

        def run() -> None:
            self.outcome = self.loader.run(lambda: self.stop)
            if self.outcome == "boot":
                on_boot()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    @property
    def port(self) -> str:
        return self.loader.port

    def close(self) -> None:
        self.stop = True
        self.thread.join(3.0)
        self.loader.close()
        self.flash.close()


def test_a_px4_board_whose_bootloader_says_serial_0_is_found_again_by_usb_location(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _usb("/dev/ttyACM0", 0x26AC, 0x0032, "PX4 FMU v5.x", "3A0029001451", "1-1.4:1.0")
    other = _usb("/dev/ttyACM9", 0x26AC, 0x0032, "PX4 BL FMU v5.x", "0", "1-1.2:1.0")
    host = Host(monkeypatch, app, other)
    app_again = _usb("/dev/ttyACM2", 0x26AC, 0x0032, "PX4 FMU v5.x", "3A0029001451", "1-1.4:1.0")
    loader = LoaderThread(tmp_path, on_boot=lambda: host.now(other, app_again))
    try:
        in_bl = _usb(loader.port, 0x26AC, 0x0032, "PX4 BL FMU v5.x", "0", "1-1.4:1.0")
        fake = FakeApplication(on_reboot=lambda: host.now(other, in_bl))
        monkeypatch.setattr(SerialFlasher, "_mavlink", lambda self, url: fake)
        flasher = SerialFlasher("3A0029001451", registry_dir=tmp_path, port_timeout=5.0)
        result = flasher.flash(load_image(RELEASE))
        assert not result.skipped and result.verified_by == "crc"
        assert flasher.reboot_attempts == [f"{REBOOT_VARIANTS[0]}: bootloader on {loader.port}"]
        assert fake.commands == [(246, (3,))]
        assert loader.outcome == "boot"
        payload = app_payload(load_image(RELEASE))
        assert loader.flash.read(APP_BASE, len(payload)) == payload
    finally:
        loader.close()


def test_a_usb_uart_adapter_under_the_boards_serial_is_refused_with_its_own_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Host(monkeypatch, _usb("/dev/ttyUSB0", 0x10C4, 0xEA60, "CP2102", "0001", "1-1.3:1.0"))
    monkeypatch.setattr(SerialFlasher, "_mavlink", lambda self, url: pytest.fail("MAVLink"))
    flasher = SerialFlasher("0001", registry_dir=tmp_path, port_timeout=0.5)
    with pytest.raises(FlashError, match=r"/dev/ttyUSB0 is a USB-UART adapter .*usb_serial"):
        flasher.flash(load_image(RELEASE))
    assert not flasher.erase_started


def test_an_ardupilot_port_that_could_be_app_or_bootloader_is_told_apart_by_get_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = Host(monkeypatch)
    # After REBOOT the application comes back on the same VID:PID, same serial.
    app_again = _usb("/dev/hil-no-such-tty", 0x1209, 0x5741, None, "AP0001", "2-1:1.0")
    loader = LoaderThread(tmp_path, on_boot=lambda: host.now(app_again))
    try:
        host.now(_usb(loader.port, 0x1209, 0x5741, None, "AP0001", "2-1:1.0"))
        fake = FakeApplication(on_reboot=lambda: pytest.fail("already in its bootloader"))
        monkeypatch.setattr(SerialFlasher, "_mavlink", lambda self, url: fake)
        flasher = SerialFlasher("AP0001", registry_dir=tmp_path, port_timeout=5.0)
        result = flasher.flash(load_image(RELEASE))
        assert not result.skipped and fake.commands == []
        assert loader.outcome == "boot"
    finally:
        loader.close()


# ------------------------------------------------------------ external flash


def test_an_extf_image_is_refused_before_erase_by_a_bootloader_without_extf(
    tmp_path: Path,
) -> None:
    image = load_image(_with_extf(PATCH, tmp_path / "patch-extf.apj"))
    loader = LoaderThread(tmp_path, extf_size=0)
    try:
        loader.flash.write(APP_BASE, app_payload(load_image(RELEASE)))
        loader.flash.flush()
        before = (tmp_path / "flash.bin").read_bytes()
        flasher = SerialFlasher("0")
        with BootloaderLink(loader.port, reply_timeout=0.5) as link:
            with pytest.raises(ImageRefused, match="no external flash support.*before erasing"):
                flasher._program(link, image, None, force=False)
        assert not flasher.erase_started
        assert not (tmp_path / EXTF_FILE).exists()
    finally:
        loader.close()
    assert (tmp_path / "flash.bin").read_bytes() == before


def test_an_apj_with_extf_image_is_flashed_into_both_flashes_and_both_verify(
    board: VirtualBoardProcess, tmp_path: Path
) -> None:
    path = _with_extf(PATCH, tmp_path / "patch-extf.apj")
    seen: list[str] = []
    flasher = SerialFlasher(
        SERIAL, registry_dir=board.registry_dir, progress=lambda d, t, p: seen.append(p)
    )
    result = flasher.flash(load_image(path))
    assert not result.skipped and result.new_version == "1.0.1-fieldpatch"
    payload = app_payload(load_image(path))
    padded = len(EXTF_DATA) + (-len(EXTF_DATA) % 4)
    assert result.bytes_written == len(payload) + (-len(payload) % 4) + padded
    with Flash(tmp_path / "flash.bin") as flash:
        assert flash.read(APP_BASE, len(payload)) == payload
    ext = ExternalFlash(tmp_path / EXTF_FILE)
    assert ext.read(0, len(EXTF_DATA)) == EXTF_DATA
    assert seen.count("erase") >= 3 and seen.count("verify") == 4  # internal, then external

    again = SerialFlasher(SERIAL, registry_dir=board.registry_dir).flash(load_image(path))
    assert again.skipped  # GET_CRC and EXTF_GET_CRC both match


# ------------------------------------------------------------ reboot variants


def _ignore_reboot_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    """The board answers every COMMAND_LONG but MAV_CMD_PREFLIGHT_REBOOT_SHUTDOWN (246)
    addressed to it, which never reaches it."""
    from hil.autopilot.mavlink import MavlinkAutopilot

    real = MavlinkAutopilot.command

    def command(self, command: int, *params: float, **kwargs: object) -> int:
        if command == 246:
            raise WaitTimeout(f"no COMMAND_ACK for command {command}")
        return real(self, command, *params, **kwargs)

    monkeypatch.setattr(MavlinkAutopilot, "command", command)


def test_a_board_that_ignores_the_first_reboot_variant_reboots_on_the_broadcast_one(
    board: VirtualBoardProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ignore_reboot_commands(monkeypatch)
    flasher = SerialFlasher(SERIAL, registry_dir=board.registry_dir, reboot_wait=5.0)
    result = flasher.flash(load_image(PATCH))
    assert result.new_version == "1.0.1-fieldpatch"
    first, second = flasher.reboot_attempts
    assert first.startswith(REBOOT_VARIANTS[0]) and "no COMMAND_ACK" in first
    assert second.startswith(f"{REBOOT_VARIANTS[1]}: bootloader on ")


def test_a_board_that_ignores_every_reboot_variant_names_each_attempt(
    board: VirtualBoardProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hil.mavlink.connection import MavConnection

    _ignore_reboot_commands(monkeypatch)
    real_send = MavConnection.send

    def send(self, msg: object, **kwargs: object) -> None:
        if getattr(msg, "command", None) != 246:
            real_send(self, msg, **kwargs)

    monkeypatch.setattr(MavConnection, "send", send)
    flasher = SerialFlasher(SERIAL, registry_dir=board.registry_dir, reboot_wait=0.3)
    with pytest.raises(FlashError, match="did not reboot into its bootloader") as info:
        flasher.flash(load_image(PATCH))
    text = str(info.value)
    for number, variant in enumerate(REBOOT_VARIANTS, 1):
        assert f"{number}) {variant}: " in text
    assert "\n" not in text and not flasher.erase_started
