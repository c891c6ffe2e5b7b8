"""Betaflight SITL as a rig board (type ``betaflight-sitl``, board class ``msp``, firmware
profile ``betaflight``), registered in the ``hil.boards`` entry-point group.

Rig file keys (all optional but ``name`` and ``type``):

    [[board]]
    name = "bf1"
    type = "betaflight-sitl"
    executable = "path/to/betaflight_4.6.0_SITL"   # default: the `betaflight` package's build
    eeprom = "fixtures/bf-eeprom.bin"             # a saved configuration to start from
    isolation = "auto"                            # auto | netns | loopback
    scheduler = "auto"                            # auto | fifo | other
    state_rate_hz = 1000                          # state packets per second
    gps_uart = 3                                  # GPS from our u-blox emulator on UART3
    gps_model = "M10"                             # M8 | M10: the receiver it plays
    gps_baud = 115200                             # the GPS baud the firmware asks for

With ``gps_uart`` the board runs the bench variant of the SITL (`hil.sitl.bench_build`:
its GPS is the serial driver, not the virtual one fed from the state packets) unless
``executable`` names another build, and the bench configuration adds: that UART's
function GPS, ``gps_provider = UBLOX``, ``gps_auto_config = ON`` (Betaflight's driver
configures our receiver), ``failsafe_procedure = GPS-RESCUE`` and the throttle held through stage 1
(``rxfail 3 h``, see `GPS_RXFAIL`). The closed loop then carries a `GpsFeed`.

The board's directory under the rig's state directory holds its ``eeprom.bin``. On the
first start the harness applies its bench configuration (RC over MSP on UART4, the arm
switch on AUX1, ANGLE mode, a fast MSP task) and keeps the result as
``harness-eeprom.bin``; every test session starts from that file, so a setting one
test changes (and saves) never leaks into the next.

Without a network namespace the firmware's fixed ports allow one instance per host:
the board then holds a host-wide lock for as long as it runs, and says so.
"""

from __future__ import annotations

import filecmp
import logging
import shutil
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from hil.errors import ConfigError, HilError
from hil.locks import BoardLock
from hil.rig import Board, Rig, RigKey
from hil.sitl.betaflight import HOST_PORTS_LOCK, BetaflightSitl, find_executable

log = logging.getLogger(__name__)

TEMPLATE = "harness-eeprom.bin"
#: The GPS bauds Betaflight's driver can ask a u-blox for (io/gps.c, gpsInitData).
GPS_BAUDS = (9600, 19200, 38400, 57600, 115200, 230400)
#: What a board with a GPS UART adds to the bench configuration (CLI names, 4.6):
#: the u-blox driver configures the receiver itself (io/gps.c, gps_auto_config), and
#: losing the radio in flight starts GPS Rescue (flight/failsafe.c, failsafe_procedure).
GPS_SETTINGS: dict[str, object] = {
    "gps_provider": "UBLOX",
    "gps_auto_config": "ON",
    "failsafe_procedure": "GPS-RESCUE",
}
#: Stage 1 lasts failsafe_delay (1.5 s by default). Betaflight holds the sticks 300 ms
#: and then, with rxfail AUTO, puts the throttle at its minimum (rx/rx.c getRxfailValue),
#: which drops a hovering quad some 7 m before the rescue starts; a GPS Rescue setup
#: holds the throttle instead (rxfail HOLD on channel 3, AETR's throttle).
GPS_RXFAIL = "rxfail 3 h"


class BetaflightSitlBoard(Board):
    type_name = "betaflight-sitl"
    board_class = "msp"
    profile_name = "betaflight"
    session_type = "hil.session:MspBoardSession"
    #: The harness flies it, and arms it by the AUX1 switch on the RC it sends over MSP.
    capabilities = frozenset({"physics", "arm_switch", "failsafe_mode"})
    KEYS: Mapping[str, RigKey] = {
        "name": RigKey("name"),
        "type": RigKey("text"),
        "usb_serial": RigKey("name"),
        "executable": RigKey("path"),
        "eeprom": RigKey("path"),
        "isolation": RigKey("choice", choices=("auto", "netns", "loopback")),
        "scheduler": RigKey("choice", choices=("auto", "fifo", "other")),
        "state_rate_hz": RigKey("number", 100, 4000, unit="state packets per second"),
        "lock_wait": RigKey("number", 0, 86400, unit="seconds"),
        "gps_uart": RigKey("integer", 1, 8),
        "gps_model": RigKey("choice", choices=("M8", "M10")),
        "gps_baud": RigKey("integer", 9600, 230400, unit="bits per second"),
    }

    def __init__(self, name: str, spec: Mapping[str, Any], rig: Rig) -> None:
        super().__init__(name, spec, rig)
        where = f"{rig.path}: board {name!r}"
        for key, allowed in (("isolation", ("auto", "netns", "loopback")), ("scheduler", ("auto", "fifo", "other"))):
            value = spec.get(key, "auto")
            if value not in allowed:
                raise ConfigError(f"{where}: {key} = {value!r} is not one of: {', '.join(allowed)}")
        rate = spec.get("state_rate_hz", 1000)
        if not isinstance(rate, int | float) or isinstance(rate, bool) or not 100 <= rate <= 4000:
            raise ConfigError(f"{where}: state_rate_hz = {rate!r} must be a number from 100 to 4000")
        self.state_rate_hz = float(rate)
        self._executable = self._path(spec.get("executable"))
        self._eeprom = self._path(spec.get("eeprom"))
        if self._eeprom is not None and not self._eeprom.is_file():
            raise ConfigError(f"{where}: eeprom = {spec.get('eeprom')!r}: {self._eeprom} does not exist")
        gps_uart = spec.get("gps_uart")
        if gps_uart is not None and (
            not isinstance(gps_uart, int) or isinstance(gps_uart, bool) or not 1 <= gps_uart <= 8 or gps_uart in (1, 4)
        ):
            raise ConfigError(
                f"{where}: gps_uart = {gps_uart!r} must be a UART from 2 to 8 other than 4 "
                "(UART1 is MSP, UART4 carries the harness's RC)"
            )
        #: The UART our GPS receiver is wired to (None: no GPS on a UART).
        self.gps_uart: int | None = gps_uart
        self.gps_model = str(spec.get("gps_model", "M10"))
        self.gps_baud = spec.get("gps_baud", 115200)
        if self.gps_baud not in GPS_BAUDS:
            raise ConfigError(f"{where}: gps_baud = {self.gps_baud!r} must be one of {', '.join(map(str, GPS_BAUDS))}")
        if gps_uart is not None:
            #: A GPS whose sky is our GNSS model: scenarios with GNSS threats and GPS
            #: modes apply (hil.scenario.model.Needs).
            #: Its stage 2 is GPS Rescue (GPS_SETTINGS): the GPS RESCUE mode, not FAILSAFE
            #: (flight/failsafe.c), so scenarios expecting FAILSAFE do not apply.
            #: GPS Rescue configured: Betaflight refuses arming without a fix (the profile's
            #: "gps_fix" arming check).
            self.capabilities = (self.capabilities | {"gnss", "gps_rescue"}) - {"failsafe_mode"}
        self.sitl: BetaflightSitl | None = None
        self._host_lock: BoardLock | None = None
        #: Set by a session that changed the configuration: the next one starts clean.
        self.dirty = False

    def _path(self, value: Any) -> Path | None:
        if not value:
            return None
        path = Path(str(value)).expanduser()
        return path if path.is_absolute() else self.rig.path.parent / path

    @property
    def usb_serial(self) -> str:
        return str(self.spec.get("usb_serial", f"SITL-{self.name}"))

    @property
    def work_dir(self) -> Path:
        return self.rig.work_dir / self.name

    @property
    def lockstep(self) -> bool:
        return False

    @property
    def state(self) -> str:
        if self.sitl is None:
            try:
                find_executable(self._executable)
            except ConfigError:
                return "not installed"
            return "off"
        return "running" if self.sitl.alive else "stopped"

    def start(self) -> None:
        if self.sitl is not None and self.sitl.alive:
            return
        self.work_dir.mkdir(parents=True, exist_ok=True)
        executable = self._executable
        if executable is None and self.gps_uart is not None:
            from hil.sitl.bench_build import bench_executable

            executable = bench_executable()  # serial GPS instead of the virtual one
        sitl = BetaflightSitl(
            self.work_dir,
            executable=executable,
            eeprom=self._eeprom,
            isolation=str(self.spec.get("isolation", "auto")),
            scheduler=str(self.spec.get("scheduler", "auto")),
        )
        from hil.sitl.netns import namespaces_available

        if sitl.isolation == "loopback" or not namespaces_available():
            wait = float(self.spec.get("lock_wait", 600.0))
            log.warning(
                "board %s: no network namespace here; Betaflight SITL instances on this host "
                "are serialised by a lock (waiting up to %.0f s)", self.name, wait,
            )
            self._host_lock = BoardLock(HOST_PORTS_LOCK, self.lock_dir, wait=wait)
            self._host_lock.acquire()
        try:
            sitl.start()
        except BaseException:
            self._release()
            raise
        self.sitl = sitl
        if not (self.work_dir / TEMPLATE).exists():
            self._configure()

    def _configure(self) -> None:
        """Apply the bench configuration once and keep it as the template."""
        from hil.autopilot.msp import MspAutopilot

        assert self.sitl is not None
        with MspAutopilot(self.sitl.msp_url, sitl=self.sitl) as ap:
            if self.gps_uart is None:
                changed = ap.configure_for_harness()
            else:
                changed = ap.configure_for_harness(
                    gps_port=(f"UART{self.gps_uart}", self.gps_baud), settings=GPS_SETTINGS
                )
                if ap.cli(GPS_RXFAIL.rsplit(" ", 1)[0]).split() != GPS_RXFAIL.split():
                    ap.cli(GPS_RXFAIL)
                    ap.save(reboot=True)
                    changed[GPS_RXFAIL] = ("", GPS_RXFAIL)
        log.info("board %s: bench configuration applied (%s)", self.name, ", ".join(changed) or "nothing to change")
        shutil.copyfile(self.work_dir / "eeprom.bin", self.work_dir / TEMPLATE)

    def use_executable(self, path: str | Path) -> None:
        """Run another build (a field patch) from now on; the bench configuration stays."""
        exe = find_executable(Path(path))
        if self.sitl is not None:
            self.stop()
        self._executable = exe
        self.start()

    def reset_configuration(self) -> bool:
        """Start again from the bench configuration if it was changed; True if it restarted."""
        assert self.sitl is not None
        eeprom = self.work_dir / "eeprom.bin"
        template = self.work_dir / TEMPLATE
        if not self.dirty and eeprom.exists() and filecmp.cmp(eeprom, template, shallow=False):
            return False
        gen = self.sitl.generation
        shutil.copyfile(template, eeprom)
        self.sitl.restart()
        self.sitl.wait_restarted(gen)
        self.dirty = False
        return True

    def stop(self) -> None:
        if self.sitl is not None:
            self.sitl.stop()
            self.sitl = None
        self._release()

    def _release(self) -> None:
        if self._host_lock is not None:
            self._host_lock.release()
            self._host_lock = None

    def url(self, timeout: float = 10.0) -> str:
        if self.sitl is None or not self.sitl.alive:
            raise HilError(f"Betaflight SITL board {self.name} is not running")
        return self.sitl.msp_url

    def open_autopilot(self, connect_timeout: float = 10.0):
        """An MSP adapter on UART1 that restarts a hung boot and reopens after reboots."""
        from hil.autopilot.msp import MspAutopilot

        # A boot whose scheduler never runs (MspAutopilot.ensure_running) came several times
        # in a row on a loaded host until the firmware got its timing from exec
        # (hil.sitl.betaflight.boot_preexec); the check stays as a guard, with 3 restarts.
        return MspAutopilot(
            self.url(timeout=connect_timeout), sitl=self.sitl, connect_timeout=connect_timeout, respawn_attempts=3
        )

    def simulator_link(self, config=None):
        """The physics loop over the firmware's UDP ports, RC as MSP on UART4."""
        from hil.sim.betaflight_loop import BetaflightLoopConfig, betaflight_loop

        sitl = self.sitl
        if sitl is None:
            raise HilError(f"Betaflight SITL board {self.name} is not running")
        config = replace(config, rate_hz=self.state_rate_hz) if config is not None else BetaflightLoopConfig(rate_hz=self.state_rate_hz)
        if config.process is None:  # the loop in a process of its own unless asked otherwise
            config = replace(config, process=True)
        # A receiver out of the box (u-blox M10: 38400 baud, 1 solution per second);
        # Betaflight's driver moves it to gps_baud and its own rate.
        gps = (sitl.uart_url(self.gps_uart), self.gps_model, 38400) if self.gps_uart is not None else None
        return betaflight_loop(
            sitl.fc_ip, sitl.host_ip, self.rc_url, config, clock_offset_s=sitl.uptime, gps_uart=gps
        )

    def power_cycle(self) -> None:
        if self.sitl is None:
            raise HilError(f"Betaflight SITL board {self.name} is not running")
        self.sitl.restart()

    def runtime(self) -> dict[str, str]:
        """How the firmware process runs, for a scenario's measurements."""
        return {"sitl_scheduler": self.sitl.scheduler if self.sitl is not None else "not running"}

    @property
    def rc_url(self) -> str:
        """The MSP UART the harness sends RC on (UART4, set up by the bench configuration)."""
        assert self.sitl is not None
        return self.sitl.uart_url(4)

    def log_path(self) -> Path | None:
        return self.sitl.log_path if self.sitl is not None else None

