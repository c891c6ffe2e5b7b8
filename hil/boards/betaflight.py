"""A Betaflight flight controller on a bench, as a rig board (type ``betaflight``).

MSP and the CLI over the board's USB port; RC from our receiver emulator into the UART
its receiver would be wired to (CRSF or SBUS, through a USB-UART adapter); no physics:
the board's own sensors sit on the bench (the ``bench`` simulator link,
`hil.sim.bench_link`). Nothing here is specific to SITL; a rig that has no board gives
it a stand-in (`hil.sitl.bench_stand`) that the board starts and stops with itself.

    [[board]]
    name = "bf-f405"
    type = "betaflight"
    url = "/dev/ttyACM0"            # or usb_serial = "..." (found by `hil doctor`), or
                                    # "socket://host:port" through a network serial server
    arm_aux = 1                     # the arm switch's AUX channel (1 = AUX1), default 1

    [[board.receiver]]              # exactly one RC receiver, and where it is wired
    role = "rc"
    protocol = "crsf"               # or "sbus"
    device = "/dev/ttyUSB0"         # the adapter (or usb_serial = "...")
    fc_port = "UART2"               # the FC's UART it is wired to

    [board.stand_in]                # only without hardware: see hil.sitl.bench_stand
    kind = "betaflight-sitl"

On first use the harness applies its bench configuration to the board (serial RX on
``fc_port`` with the receiver's protocol, the arm switch, ANGLE, link statistics in the
debug channels) and keeps the board's configuration from before (``diff all``) in the
board's state directory as ``original-diff.txt``, which the CLI takes back line by line.
A test that changes a setting marks the board dirty; the next session then puts the bench
configuration back (``defaults nosave``, the saved bench ``diff all``, ``save``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hil.errors import ConfigError, HilError
from hil.receivers import Receiver
from hil.rig import Board, Rig, RigKey

log = logging.getLogger(__name__)

#: Written by the harness: the board's own configuration before the bench one.
ORIGINAL_DIFF = "original-diff.txt"
#: The bench configuration as `diff all` printed it once applied; replayed to reset.
BENCH_DIFF = "bench-diff.txt"
#: Lines of `diff all` that are not settings to replay.
_SKIP_PREFIXES = ("#", "batch", "defaults", "save", "board_name", "manufacturer_id", "mcu_id", "signature")


class BetaflightBoard(Board):
    type_name = "betaflight"
    board_class = "msp"
    profile_name = "betaflight"
    session_type = "hil.session:MspBoardSession"
    capabilities = frozenset({"rc_receiver", "link_statistics", "arm_switch"})
    KEYS: Mapping[str, RigKey] = {
        "name": RigKey("name"),
        "type": RigKey("text"),
        "usb_serial": RigKey("name"),
        "url": RigKey("text"),
        "baud": RigKey("integer", 9600, 4_000_000, unit="bits per second"),
        "arm_aux": RigKey("integer", 1, 12),
        "receiver": RigKey("tables"),
        "stand_in": RigKey("table"),
    }

    def __init__(self, name: str, spec: Mapping[str, Any], rig: Rig) -> None:
        super().__init__(name, spec, rig)
        where = f"{rig.path}: board {name!r}"
        if not spec.get("url") and not self.usb_serial:
            raise ConfigError(
                f"{where}: give url (\"/dev/ttyACM0\", \"socket://host:port\") or usb_serial (`hil doctor` lists them)"
            )
        rc = [r for r in self.receivers if r.role == "rc"]
        if len(rc) != 1:
            raise ConfigError(
                f"{where}: a betaflight board needs exactly one [[board.receiver]] with role = \"rc\" "
                f"(the harness is its radio), found {len(rc)}"
            )
        if not rc[0].fc_port:
            raise ConfigError(
                f"{where}: its rc receiver needs fc_port, the board's UART it is wired to (e.g. \"UART2\"), "
                "so the harness can set serial RX on that port"
            )
        self.rc_receiver: Receiver = rc[0]
        self.dirty = False
        self.stand_in = None
        if spec.get("stand_in") is not None:
            from hil.sitl.bench_stand import BetaflightBenchStandIn

            self.stand_in = BetaflightBenchStandIn.from_spec(
                f"{where}: stand_in", spec["stand_in"], self.work_dir, rig.path.parent, self.lock_dir
            )

    # -- what the rig knows ----------------------------------------------------------

    @property
    def work_dir(self) -> Path:
        return self.rig.work_dir / self.name

    @property
    def baud(self) -> int:
        return int(self.spec.get("baud", 115200))

    @property
    def arm_aux_channel(self) -> int:
        """0-based AUX index of the arm switch (AUX1 = 0)."""
        return int(self.spec.get("arm_aux", 1)) - 1

    @property
    def simulated(self) -> bool:
        return False

    @property
    def state(self) -> str:
        if self.stand_in is not None:
            return "running" if self.stand_in.alive else "off"
        try:
            self.url(timeout=0.0)
        except HilError:
            return "absent"
        return "present"

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> None:
        """A real board is the user's to power; a stand-in is started here."""
        if self.stand_in is not None:
            self.stand_in.start()

    def stop(self) -> None:
        if self.stand_in is not None:
            self.stand_in.stop()

    def power_cycle(self) -> None:
        if self.stand_in is None:
            raise HilError(
                f"board {self.name} cannot be power-cycled by the harness (no power switch in the rig); "
                "unplug and replug it"
            )
        self.stand_in.restart()

    def url(self, timeout: float = 10.0) -> str:
        url = self.spec.get("url")
        if url:
            text = str(url)
            return "socket://" + text[4:] if text.startswith("tcp:") else text
        from hil.links.ports import find_port

        return find_port(self.usb_serial, None, timeout=timeout).device

    def wiring_note(self, receiver: Receiver) -> str | None:
        if self.stand_in is None:
            return None
        return (
            "the stand-in SITL listens on a UART only once serial RX is configured on it, "
            "which a run does first (`hil run`)"
        )

    def log_path(self) -> Path | None:
        return self.stand_in.log_path if self.stand_in is not None else None

    def open_autopilot(self, connect_timeout: float = 10.0):
        """An MSP adapter on the board's port: reopened after a reboot by finding the port
        again (by USB serial when the rig gives one), or through the stand-in."""
        from hil.autopilot.msp import MspAutopilot

        reconnect = None
        if not self.spec.get("url"):
            def reconnect() -> str:
                return self.url(timeout=1.0)

        return MspAutopilot(
            self.url(timeout=connect_timeout),
            sitl=self.stand_in,
            reconnect=reconnect,
            baudrate=self.baud,
            connect_timeout=connect_timeout,
            profile=self.profile,
        )

    # -- configuration -----------------------------------------------------------------

    def reset_configuration(self) -> bool:
        """Apply the bench configuration if the board lacks it or a test changed a setting;
        True if the board was changed (it rebooted)."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        with self.open_autopilot() as ap:
            bench = self.work_dir / BENCH_DIFF
            if self.dirty and bench.is_file():
                self._replay(ap, bench.read_text().splitlines())
                self.dirty = False
                return True
            original = self.work_dir / ORIGINAL_DIFF
            if not original.exists():
                original.write_text(ap.cli("diff all", timeout=10.0) + "\n")
                log.info("board %s: its configuration before the bench one is kept in %s", self.name, original)
            changed = ap.configure_for_harness(
                rc_uart=None,
                serial_rx=(self.rc_receiver.fc_port, self.rc_receiver.protocol),
                arm_aux_channel=self.arm_aux_channel,
                debug_mode="CRSF_LINK_STATISTICS_UPLINK" if self.rc_receiver.protocol == "crsf" else "RX_TIMING",
            )
            if changed or not bench.exists():
                bench.write_text(ap.cli("diff all", timeout=10.0) + "\n")
            self.dirty = False
            if changed:
                log.info("board %s: bench configuration applied (%s)", self.name, ", ".join(changed))
            return bool(changed)

    def _replay(self, ap, lines: list[str]) -> None:
        """``defaults nosave``, then every setting line, then ``save`` (which reboots)."""
        ap.cli_enter()
        try:
            ap.cli("defaults nosave", timeout=10.0)
            for line in lines:
                text = line.strip()
                if not text or text.startswith(_SKIP_PREFIXES):
                    continue
                ap.cli(text, timeout=5.0)
        except BaseException:
            ap.cli_exit(reboot=True)  # unsaved: the board reboots into what it had
            raise
        ap.save(reboot=True)

    # -- the closed loop -----------------------------------------------------------------

    def simulator_link(self, config: Any = None):
        """The bench link: our receiver on the board's receiver UART, no physics."""
        from hil.receivers import receiver_device
        from hil.sim.bench_link import bench_loop

        seed = int(getattr(config, "seed", 0) or 0)
        return bench_loop(self.rc_receiver, receiver_device(self.rc_receiver), seed=seed)
