"""A stand-in for ``arducopter --model JSON`` in tests (not ArduPilot's code, nothing of
its behaviour beyond the wire): SIM_JSON's servo/state exchange on UDP, the receiver
UARTs it is given read and counted, and just enough MAVLink on its TCP port for a
session (HEARTBEAT, TIMESYNC, COMMAND_ACK, a short parameter list that the --defaults
files may change, SYSTEM_TIME on the physics' clock). ``status.txt`` in its directory:
frames, GPS bytes, RC bytes, GCS heartbeats heard."""

from __future__ import annotations

import os
import socket
import struct
import sys
import time

from pymavlink.dialects.v20 import ardupilotmega as mav

args = sys.argv[1:]


def opt(name: str, default: str) -> str:
    return args[args.index(name) + 1] if name in args else default


inst = int(opt("-I", "0"))
json_port = int(opt("--sim-port-out", str(9002 + 10 * inst)))
serial = {a.split("=", 1)[0][8:]: a.split("=", 1)[1][5:] for a in args if a.startswith("--serial")}
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 5760 + 10 * inst))
server.listen(4)
server.setblocking(False)
fds = {n: os.open(p, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK) for n, p in serial.items()}
got = dict.fromkeys(fds, 0)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.settimeout(1.0)
params = {"SCHED_LOOP_RATE": 400.0, "RC_FS_TIMEOUT": 1.0, "FS_THR_ENABLE": 1.0, "GPS_AUTO_CONFIG": 1.0,
          "BARO1_GND_PRESS": 95000.0}
# The --defaults files, in order (each start from them alone, as -w gives the real one).
for defaults_file in filter(None, opt("--defaults", "").split(",")):
    for line in open(defaults_file):
        fields = line.split("#", 1)[0].replace(",", " ").split()
        if len(fields) >= 2:
            params[fields[0]] = float(fields[1])
client = None
link = mav.MAVLink(None, srcSystem=1, srcComponent=1)
armed = False
gcs_heartbeats = 0
frame = 0
sim_ms = 0


def send(msg) -> None:
    global client
    if client is None:
        return
    try:
        client.sendall(msg.pack(link))
    except OSError:
        client = None


def heartbeat() -> None:
    base = mav.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED | (mav.MAV_MODE_FLAG_SAFETY_ARMED if armed else 0)
    send(mav.MAVLink_heartbeat_message(mav.MAV_TYPE_QUADROTOR, mav.MAV_AUTOPILOT_ARDUPILOTMEGA, base, 0, 4, 3))


def handle(msg) -> None:
    global armed, gcs_heartbeats
    kind = msg.get_type()
    if kind == "HEARTBEAT":
        gcs_heartbeats += 1
    elif kind == "TIMESYNC" and msg.tc1 == 0:
        send(mav.MAVLink_timesync_message(time.monotonic_ns(), msg.ts1))
    elif kind == "COMMAND_LONG":
        if msg.command == mav.MAV_CMD_COMPONENT_ARM_DISARM:
            armed = msg.param1 == 1
        send(mav.MAVLink_command_ack_message(msg.command, mav.MAV_RESULT_ACCEPTED))
        if msg.command == mav.MAV_CMD_REQUEST_MESSAGE:
            heartbeat()
    elif kind == "PARAM_REQUEST_LIST":
        for i, (name, value) in enumerate(params.items()):
            send(mav.MAVLink_param_value_message(name.encode(), value, mav.MAV_PARAM_TYPE_REAL32, len(params), i))
    elif kind == "PARAM_SET":
        name = msg.param_id
        if name in params and name != "BARO1_GND_PRESS":  # as ArduPilot: "Param write denied"
            params[name] = msg.param_value
        if name in params:
            i = list(params).index(name)
            send(mav.MAVLink_param_value_message(name.encode(), params[name], mav.MAV_PARAM_TYPE_REAL32, len(params), i))


parser = mav.MAVLink(None)
while True:
    udp.sendto(struct.pack("<HHI16H", 18458, 400, frame, *([1500 if armed else 1000] * 16)), ("127.0.0.1", json_port))
    try:
        data = udp.recv(4096)
    except TimeoutError:
        continue
    if b"timestamp" not in data:
        continue
    frame += 1
    sim_ms = frame * 2.5
    if client is None:
        try:
            client, _ = server.accept()
            client.setblocking(False)
        except BlockingIOError:
            pass
    if client is not None:
        try:
            incoming = client.recv(65536)
            if not incoming:
                client = None
            else:
                for m in parser.parse_buffer(incoming) or []:
                    handle(m)
        except BlockingIOError:
            pass
        except OSError:
            client = None
    if frame % 40 == 0:
        send(mav.MAVLink_system_time_message(int(time.time() * 1e6), int(sim_ms)))
    if frame % 400 == 0:
        heartbeat()
    for n, fd in fds.items():
        try:
            got[n] += len(os.read(fd, 4096))
        except BlockingIOError:
            pass
    if frame % 50 == 0:
        with open("status.txt.new", "w") as f:
            f.write(f"{frame} {got.get('3', 0)} {got.get('4', 0)} {gcs_heartbeats}\n")
        os.replace("status.txt.new", "status.txt")
