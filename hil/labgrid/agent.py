"""The place agent: one process per labgrid place the harness uses, run as
`python -m hil.labgrid.agent`. It is the only part of hil that imports labgrid.

It reserves the place (by name or tags, or through an existing token), waits as long as
it was told, acquires it, and then serves the harness over its stdin and stdout in JSON
lines until it is told to let go, or until its stdin closes: the harness exited, however
it exited (a SIGKILL too: the kernel closes the pipe). On every way out it releases the
place and cancels its reservation.

Why a process of its own: labgrid's coordinator keeps a place acquired when the client
that acquired it disconnects (coordinator.py, AcquirePlace: "survives disconnecting
clients"), so a client that dies holding a place holds it for good, until someone runs
`labgrid-client release --kick`. The agent outlives the harness long enough to release.
It also keeps grpc's threads and event loop out of the harness process, which forks
board processes.

Messages out (one JSON object per line on stdout):
    {"event": "waiting", "token": T, "holders": {...}}       the place is busy; queued
    {"event": "acquired", "place": P, "token": T, "user": U, "resources": [...]}
    {"event": "resources", "resources": [...]}               answer to "resources"
    {"event": "done", "ok": true|false, "message": "..."}    answer to a power command
    {"event": "released", "place": P}
    {"event": "error", "kind": "busy"|"config"|"server", "message": "..."}  then exit
Commands in (one per line on stdin): "resources", "power on", "power off",
"power cycle", "dfu download ALT PATH", "dfu detach ALT", "release".

`dfu download` runs labgrid's DFUDriver on the place's NetworkDFUDevice: labgrid copies
the file to the exporter host (ManagedFile, over SSH) and runs `dfu-util -p USBPATH --alt
ALT --download FILE` there through SSH (NetworkResource.command_prefix); there is no
shortcut for an exporter on this very host.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from typing import Any

#: labgrid's default coordinator port (labgrid.remote.client.start_session).
DEFAULT_PORT = 20408
#: How long to wait for the coordinator to answer at all.
CONNECT_TIMEOUT_S = 10.0
#: How long a release may take: the coordinator waits for the exporter to stop each
#: resource (ser2net: about a second per serial port).
RELEASE_TIMEOUT_S = 30.0
#: How long the exporter may take to start a resource (ser2net) after an acquire.
RESOURCES_TIMEOUT_S = 15.0


def emit(**message: Any) -> None:
    """One message to the harness; nothing when it is gone (we may be releasing for it)."""
    try:
        sys.stdout.write(json.dumps(message, sort_keys=True) + "\n")
        sys.stdout.flush()
    except (BrokenPipeError, OSError, ValueError):
        pass


class Stop(Exception):
    """Told to stop (SIGTERM, SIGINT, "release", or the harness's pipe closed)."""


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m hil.labgrid.agent")
    parser.add_argument("--coordinator", default=None, help="HOST[:PORT] (default: $LG_COORDINATOR)")
    parser.add_argument("--place", default=None, help="place name (default: $LG_PLACE unless --tag)")
    parser.add_argument("--tag", action="append", default=[], help="KEY=VALUE a place must carry")
    parser.add_argument("--token", default=None, help="an existing reservation (default: $LG_TOKEN)")
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the place")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        import labgrid  # noqa: F401
    except ImportError as exc:
        emit(
            event="error", kind="config",
            message=f"labgrid is not installed in {sys.executable} ({exc}); "
            "install hil's labgrid extra: pip install 'hil[labgrid]'",
        )
        return 2
    coordinator = args.coordinator or os.environ.get("LG_COORDINATOR") or f"127.0.0.1:{DEFAULT_PORT}"
    token = args.token or os.environ.get("LG_TOKEN") or None
    tags: dict[str, str] = {}
    for pair in args.tag:
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            emit(event="error", kind="config", message=f"tag {pair!r} is not KEY=VALUE")
            return 2
        tags[key] = value
    place = args.place or (None if tags or token else os.environ.get("LG_PLACE"))
    if not (place or tags or token):
        emit(event="error", kind="config", message="name a place, tags or a reservation token (or set LG_PLACE)")
        return 2

    def on_signal(signum, frame):  # noqa: ARG001
        raise Stop(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    agent = Agent(coordinator, place, tags, token, args.wait)
    return agent.run()


class Agent:
    def __init__(self, coordinator: str, place: str | None, tags: dict[str, str], token: str | None, wait: float):
        self.coordinator = coordinator
        self.place_name = place
        self.tags = tags
        self.token = token
        self.own_token = token is None  # a reservation we made is ours to cancel
        self.wait = wait
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.session = None
        self.acquired: str | None = None
        self.target = None
        self.dfu_driver = None

    # -- the life of the agent ---------------------------------------------------------
    def run(self) -> int:
        code = 0
        try:
            self.loop.run_until_complete(self._connect())
            self.loop.run_until_complete(self._reserve_and_acquire())
            self.loop.run_until_complete(self._serve())
        except Stop:
            pass
        except _Refused as exc:
            emit(event="error", kind=exc.kind, message=str(exc))
            code = 3 if exc.kind == "busy" else 2
        except Exception as exc:  # whatever labgrid or grpc raised: one line, no traceback
            emit(event="error", kind="server", message=f"{type(exc).__name__}: {exc}")
            code = 2
        finally:
            self._let_go()
        return code

    def _let_go(self) -> None:
        """Release the place and cancel our reservation; bounded, whatever state we are in.
        Signals are ignored from here: a second SIGTERM must not cut the release short."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        if self.session is None:
            return
        try:
            self.loop.run_until_complete(asyncio.wait_for(self._release(), RELEASE_TIMEOUT_S))
        except Exception as exc:
            emit(event="error", kind="server", message=f"releasing {self.acquired}: {type(exc).__name__}: {exc}")
        try:
            self.loop.run_until_complete(asyncio.wait_for(self._disconnect(), 5.0))
        except Exception:
            pass

    async def _connect(self) -> None:
        from labgrid.remote.client import ClientSession
        from labgrid.util.proxy import proxymanager

        address = proxymanager.get_grpc_address(self.coordinator, default_port=DEFAULT_PORT)
        session = ClientSession(address, self.loop)
        try:
            await asyncio.wait_for(session.start(), CONNECT_TIMEOUT_S)
        except TimeoutError:
            raise _Refused("server", f"labgrid coordinator {self.coordinator} did not answer within {CONNECT_TIMEOUT_S:.0f} s") from None
        except Exception as exc:
            raise _Refused("server", f"labgrid coordinator {self.coordinator}: {exc}") from None
        self.session = session

    async def _disconnect(self) -> None:
        if self.session is not None:
            await self.session.stop()
            await self.session.close()

    def user(self) -> str:
        return f"{self.session.gethostname()}/{self.session.getuser()}"

    # -- reserve, then acquire ---------------------------------------------------------
    def _filters(self) -> dict[str, str]:
        return {"name": self.place_name} if self.place_name else dict(self.tags)

    def _matching(self) -> dict[str, Any]:
        places = self.session.places
        if self.place_name:
            return {self.place_name: places[self.place_name]} if self.place_name in places else {}
        return {
            name: p for name, p in places.items()
            if all(p.tags.get(k) == v for k, v in self.tags.items())
        }

    async def _reserve_and_acquire(self) -> None:
        from labgrid.remote.common import Reservation, ReservationState
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb2

        stub = self.session.stub
        if self.token is None:
            if not self._matching():
                what = f"place {self.place_name!r}" if self.place_name else f"a place tagged {self.tags}"
                known = ", ".join(sorted(self.session.places)) or "none"
                raise _Refused("config", f"the coordinator {self.coordinator} knows no {what}; places: {known}")
            request = pb2.CreateReservationRequest(
                filters={"main": pb2.Reservation.Filter(filter=self._filters())}, prio=0
            )
            response = await stub.CreateReservation(request)
            self.token = response.reservation.token
        deadline = time.monotonic() + max(0.0, self.wait)
        told = False
        while True:
            response = await stub.PollReservation(pb2.PollReservationRequest(token=self.token))
            res = Reservation.from_pb2(response.reservation)
            if res.state in (ReservationState.allocated, ReservationState.acquired) and res.allocations:
                name = res.allocations["main"][0]
                break
            if res.state not in (ReservationState.waiting,):
                raise _Refused("busy", f"reservation {self.token} is {res.state.name}")
            holders = {n: p.acquired or f"reserved ({p.reservation})" for n, p in self._matching().items()}
            if time.monotonic() >= deadline:
                raise _Refused(
                    "busy",
                    f"no place free within {self.wait:.0f} s (reservation {self.token} still waiting); "
                    + ("; ".join(f"{n} held by {h}" for n, h in sorted(holders.items())) or "no place matches"),
                )
            if not told:
                emit(event="waiting", token=self.token, holders=holders)
                told = True
            await asyncio.sleep(min(0.5, max(0.05, deadline - time.monotonic())))
        place = self.session.places.get(name)
        if place is not None and place.acquired:
            raise _Refused("busy", f"place {name} is acquired by {place.acquired}")
        await stub.AcquirePlace(pb2.AcquirePlaceRequest(placename=name))
        self.acquired = name
        await self.session.sync_with_coordinator()
        resources = await self._resources_ready()
        emit(event="acquired", place=name, token=self.token, user=self.user(), resources=resources)

    async def _resources_ready(self) -> list[dict[str, Any]]:
        """The place's resources once every network serial port has its TCP port (the
        exporter starts ser2net when the place is acquired, then tells the coordinator)."""
        deadline = time.monotonic() + RESOURCES_TIMEOUT_S
        while True:
            resources = self._resources()
            waiting = [r["name"] for r in resources if r["cls"] == "NetworkSerialPort" and not (r["avail"] and r["params"].get("port"))]
            if not waiting:
                return resources
            if time.monotonic() >= deadline:
                raise _Refused(
                    "server",
                    f"place {self.acquired}: serial ports {', '.join(waiting)} not available "
                    f"{RESOURCES_TIMEOUT_S:.0f} s after acquiring it (exporter down, ser2net missing there?)",
                )
            await asyncio.sleep(0.1)
            await self.session.sync_with_coordinator()

    def _resources(self) -> list[dict[str, Any]]:
        place = self.session.places[self.acquired]
        out = []
        for (name, cls), entry in sorted(self.session.get_target_resources(place).items()):
            params = {k: v for k, v in dict(entry.args).items() if isinstance(v, str | int | float | bool | type(None))}
            out.append({"name": name, "cls": cls, "avail": bool(entry.avail), "params": params})
        return out

    async def _release(self) -> None:
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb2

        stub = self.session.stub
        if self.acquired is not None:
            name, self.acquired = self.acquired, None
            # fromuser: release only while we hold it (never someone who took it after us).
            await stub.ReleasePlace(pb2.ReleasePlaceRequest(placename=name, fromuser=self.user()))
            emit(event="released", place=name)
        if self.token is not None and self.own_token:
            token, self.token = self.token, None
            try:
                await stub.CancelReservation(pb2.CancelReservationRequest(token=token))
            except Exception:
                pass  # expired or already gone

    # -- serving the harness -----------------------------------------------------------
    async def _serve(self) -> None:
        while True:
            line = await self.loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return  # the harness is gone
            command = line.split()
            if not command:
                continue
            if command == ["release"]:
                return
            if command == ["resources"]:
                await self.session.sync_with_coordinator()
                emit(event="resources", resources=self._resources())
            elif command[0] == "dfu":
                await self._dfu_command(line)
            elif command[0] == "power" and len(command) == 2 and command[1] in ("on", "off", "cycle"):
                try:
                    await self.loop.run_in_executor(None, self._power, command[1])
                except Exception as exc:
                    emit(event="done", ok=False, message=f"power {command[1]}: {type(exc).__name__}: {exc}")
                else:
                    emit(event="done", ok=True, message=f"power {command[1]}")
            else:
                emit(event="done", ok=False, message=f"unknown command {line.strip()!r}")

    async def _dfu_command(self, line: str) -> None:
        words = line.split(maxsplit=3)
        try:
            if len(words) == 4 and words[1] == "download":
                alt, path = int(words[2]), words[3].rstrip("\n")
                await self.loop.run_in_executor(None, self._dfu, "download", alt, path)
            elif len(words) == 3 and words[1] == "detach":
                await self.loop.run_in_executor(None, self._dfu, "detach", int(words[2]), None)
            else:
                raise ValueError(f"not a dfu command: {line.strip()!r}")
        except Exception as exc:
            text = " ".join(f"{type(exc).__name__}: {exc}".split())  # labgrid's messages span lines
            emit(event="done", ok=False, message=f"dfu {words[1] if len(words) > 1 else ''}: {text}")
        else:
            emit(event="done", ok=True, message=f"dfu {words[1]}")

    def _dfu(self, action: str, alt: int, path: str | None) -> None:
        """labgrid's DFUDriver, bound to the place's NetworkDFUDevice (labgrid activates
        it only while the exporter sees the device: a board in its ROM bootloader)."""
        from labgrid import target_factory

        target = self._target()
        if not any(type(r).__name__ == "NetworkDFUDevice" for r in target.resources):
            raise RuntimeError(f"place {self.acquired} has no NetworkDFUDevice")
        if self.dfu_driver is None:
            self.dfu_driver = target_factory.make_driver(target, "DFUDriver", "DFUDriver", {})
        driver = self.dfu_driver
        target.activate(driver)
        if action == "download":
            driver.download(alt, path)
        else:
            driver.detach(alt)

    def _power(self, action: str) -> None:
        """Switch the place's power through labgrid's driver for its power resource."""
        driver = self._power_driver()
        getattr(driver, action)()

    def _target(self):
        """A labgrid Target holding the acquired place's resources (as labgrid-client
        builds one: its RemotePlace expands into the place's network resources)."""
        from labgrid import Target
        from labgrid.resource.remote import RemotePlace, RemotePlaceManager

        if self.target is None:
            manager = RemotePlaceManager.get()
            manager.session = self.session
            manager.loop = self.loop
            target = Target(self.acquired)
            RemotePlace(target, name=self.acquired)
            self.target = target
        return self.target

    def _power_driver(self):
        from labgrid import target_factory

        target = self._target()
        for resource in target.resources:
            driver_name = POWER_DRIVERS.get(type(resource).__name__)
            if driver_name is None:
                continue
            driver = target_factory.make_driver(target, driver_name, driver_name, {})
            target.activate(driver)
            return driver
        raise RuntimeError(
            f"place {self.acquired} has no power resource labgrid can switch (one of: {', '.join(sorted(POWER_DRIVERS))})"
        )


#: labgrid's power resources as a place exports them, and the driver that switches each
#: (the pairs labgrid-client's `power` command uses, labgrid/remote/client.py).
POWER_DRIVERS = {
    "NetworkPowerPort": "NetworkPowerDriver",
    "NetworkUSBPowerPort": "USBPowerDriver",
    "NetworkSiSPMPowerPort": "SiSPMPowerDriver",
    "PDUDaemonPort": "PDUDaemonDriver",
    "TasmotaPowerPort": "TasmotaPowerDriver",
    "NetworkYKUSHPowerPort": "YKUSHPowerDriver",
}


class _Refused(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


if __name__ == "__main__":
    status = main()
    try:
        sys.stdout.flush()
    except (BrokenPipeError, OSError, ValueError):
        pass
    # Not sys.exit: the thread blocked reading stdin would hold the interpreter's exit.
    os._exit(status)
