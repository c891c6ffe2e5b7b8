"""A pyusb backend whose devices are the virtual rig's DFU devices.

A virtual board in state `dfu` (docs/flashing.md) announces a Unix socket in its registry
entry; this backend lists those boards as USB devices and carries control transfers to
them over the socket (protocol: `hil.usb.control_socket`). So the harness flashes virtual
boards with the very pyusb calls it uses on hardware::

    dev = usb.core.find(idVendor=0x0483, idProduct=0xdf11, backend=VirtualBackend(registry))
    dev.ctrl_transfer(0xA1, 3, 0, 0, 6)          # DFU GETSTATUS
    usb.util.get_string(dev, dev.iSerialNumber)

Descriptors are read from the device over the socket when it is enumerated (as the
kernel does), and errors look like libusb's: a STALL is `USBError` "Pipe error"
(EPIPE), a device that went away is `USBError` "No such device" (ENODEV), and a device
that does not answer within the transfer's timeout is `USBTimeoutError`.
"""

from __future__ import annotations

import array
import errno
import os
import socket
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import usb.backend
from usb.core import USBError, USBTimeoutError

from hil.links import registry
from hil.usb.control_socket import HANDSHAKE_ACK, SETUP, recv_frame, send_frame

# libusb error codes, so callers that look at backend_error_code see familiar values.
LIBUSB_ERROR_IO = -1
LIBUSB_ERROR_NO_DEVICE = -4
LIBUSB_ERROR_TIMEOUT = -7
LIBUSB_ERROR_PIPE = -9

_ENUMERATION_TIMEOUT = 1.0


def _gone(what: str) -> USBError:
    return USBError(f"No such device (it may have been disconnected): {what}", LIBUSB_ERROR_NO_DEVICE, errno.ENODEV)


def _stalled() -> USBError:
    return USBError("Pipe error", LIBUSB_ERROR_PIPE, errno.EPIPE)


class _Descriptor:
    """Attribute bag, like the ctypes structures of the libusb backend."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)

    def __repr__(self) -> str:
        return f"_Descriptor({self.__dict__!r})"


@dataclass
class _Interface:
    descriptor: _Descriptor
    endpoints: list[_Descriptor] = field(default_factory=list)


@dataclass
class VirtualDevice:
    """What the backend knows of one virtual USB device (pyusb's opaque `dev`)."""

    usb_serial: str
    socket_path: str
    process_id: int
    address: int
    device: _Descriptor
    configuration: _Descriptor
    interfaces: list[list[_Interface]]  # [interface index][alt index]
    raw_configuration: bytes


class _Handle:
    """An open device: one socket connection, used by one transfer at a time."""

    def __init__(self, dev: VirtualDevice) -> None:
        self.dev = dev
        self.lock = threading.Lock()
        self.sock: socket.socket | None = _connect(dev.socket_path, _ENUMERATION_TIMEOUT)
        self.claimed: set[int] = set()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _connect(path: str, timeout: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        raise _gone(f"{path}: {exc}") from None
    return sock


def transfer(
    sock: socket.socket,
    request_type: int,
    request: int,
    value: int,
    index: int,
    data: bytes | int,
    timeout: float,
) -> bytes:
    """One control transfer on a connected socket; IN data (b"" for OUT). Raises USBError."""
    if request_type & 0x80:
        length = int(data)  # type: ignore[arg-type]
        frame = SETUP.pack(request_type, request, value, index, length)
    else:
        payload = bytes(data)  # type: ignore[arg-type]
        length = len(payload)
        frame = SETUP.pack(request_type, request, value, index, length) + payload
    if not 0 <= length <= 0xFFFF:
        raise ValueError(f"control transfer of {length} bytes does not fit wLength")
    sock.settimeout(timeout)
    try:
        send_frame(sock, frame)
        answer = recv_frame(sock)
    except TimeoutError:
        raise USBTimeoutError("Operation timed out", LIBUSB_ERROR_TIMEOUT, errno.ETIMEDOUT) from None
    except (OSError, ValueError) as exc:
        raise _gone(str(exc)) from None
    if answer is None:
        raise _gone("the device closed the connection")
    if not answer or answer[0] != HANDSHAKE_ACK:
        raise _stalled()
    reply = answer[1:]
    if len(reply) > length:
        raise USBError("Overflow", -8, errno.EOVERFLOW)
    return reply if request_type & 0x80 else b""


def _parse_descriptors(raw: bytes) -> list[bytes]:
    out = []
    pos = 0
    while pos + 2 <= len(raw):
        length = raw[pos]
        if length < 2:
            break
        out.append(raw[pos : pos + length])
        pos += length
    return out


def _device_descriptor(raw: bytes, address: int) -> _Descriptor:
    if len(raw) < 18 or raw[1] != 1:
        raise USBError("bad device descriptor", LIBUSB_ERROR_IO, errno.EIO)
    fields = struct.unpack("<BBHBBBBHHHBBBB", raw[:18])
    names = (
        "bLength bDescriptorType bcdUSB bDeviceClass bDeviceSubClass bDeviceProtocol "
        "bMaxPacketSize0 idVendor idProduct bcdDevice iManufacturer iProduct "
        "iSerialNumber bNumConfigurations"
    ).split()
    return _Descriptor(
        **dict(zip(names, fields, strict=True)),
        bus=1,
        address=address,
        port_number=address,
        port_numbers=(address,),
        speed=2,  # full speed, as the STM32 ROM
    )


def _configuration(raw: bytes) -> tuple[_Descriptor, list[list[_Interface]]]:
    parts = _parse_descriptors(raw)
    if not parts or parts[0][1] != 2 or len(parts[0]) < 9:
        raise USBError("bad configuration descriptor", LIBUSB_ERROR_IO, errno.EIO)
    (b_length, b_type, total, n_interfaces, value, i_config, attributes, power) = struct.unpack(
        "<BBHBBBBB", parts[0][:9]
    )
    interfaces: list[list[_Interface]] = []
    config_extra: list[int] = []
    current: _Interface | None = None
    for part in parts[1:]:
        kind = part[1]
        if kind == 4 and len(part) >= 9:
            fields = struct.unpack("<BBBBBBBBB", part[:9])
            names = (
                "bLength bDescriptorType bInterfaceNumber bAlternateSetting bNumEndpoints "
                "bInterfaceClass bInterfaceSubClass bInterfaceProtocol iInterface"
            ).split()
            current = _Interface(_Descriptor(**dict(zip(names, fields, strict=True)), extra_descriptors=[]))
            number = current.descriptor.bInterfaceNumber
            while len(interfaces) <= number:
                interfaces.append([])
            interfaces[number].append(current)
        elif kind == 5 and len(part) >= 7 and current is not None:
            address, attrs, size, interval = struct.unpack("<BBHB", part[2:7])
            current.endpoints.append(
                _Descriptor(
                    bLength=part[0],
                    bDescriptorType=5,
                    bEndpointAddress=address,
                    bmAttributes=attrs,
                    wMaxPacketSize=size,
                    bInterval=interval,
                    bRefresh=0,
                    bSynchAddress=0,
                    extra_descriptors=[],
                )
            )
        elif current is not None:
            target = current.endpoints[-1] if current.endpoints else current.descriptor
            target.extra_descriptors.extend(part)
        else:
            config_extra.extend(part)
    descriptor = _Descriptor(
        bLength=b_length,
        bDescriptorType=b_type,
        wTotalLength=total,
        bNumInterfaces=n_interfaces,
        bConfigurationValue=value,
        iConfiguration=i_config,
        bmAttributes=attributes,
        bMaxPower=power,
        extra_descriptors=config_extra,
    )
    return descriptor, [alts for alts in interfaces if alts]


class VirtualBackend(usb.backend.IBackend):
    """pyusb backend over the registry's `dfu` entries (see the module docstring)."""

    #: Transfers go over a socket, not a USB bus: no bus speed limits them
    #: (hil.flash.dfu_flasher reports no link limit for such a backend).
    has_bus = False

    def __init__(self, registry_dir: Path | str | None = None, *, timeout_scale: float = 1.0) -> None:
        super().__init__()
        self.registry_dir = Path(registry_dir) if registry_dir is not None else registry.default_registry_dir()
        self.timeout_scale = timeout_scale
        self._addresses: dict[tuple[str, str, int], int] = {}
        self._cache: dict[tuple[str, str, int], VirtualDevice] = {}

    def __repr__(self) -> str:
        return f"VirtualBackend({str(self.registry_dir)!r})"

    # -- enumeration ---------------------------------------------------------------------
    def _address(self, key: tuple[str, str, int]) -> int:
        if key not in self._addresses:
            self._addresses[key] = len(self._addresses) % 127 + 1
        return self._addresses[key]

    def _probe(self, key: tuple[str, str, int]) -> VirtualDevice | None:
        serial, path, pid = key
        try:
            sock = _connect(path, _ENUMERATION_TIMEOUT)
        except USBError:
            return None
        try:
            raw_device = transfer(sock, 0x80, 6, 0x0100, 0, 18, _ENUMERATION_TIMEOUT)
            head = transfer(sock, 0x80, 6, 0x0200, 0, 9, _ENUMERATION_TIMEOUT)
            total = struct.unpack_from("<H", head, 2)[0] if len(head) >= 4 else 9
            raw_config = transfer(sock, 0x80, 6, 0x0200, 0, total, _ENUMERATION_TIMEOUT)
            address = self._address(key)
            device = _device_descriptor(raw_device, address)
            config, interfaces = _configuration(raw_config)
        except (USBError, struct.error):
            return None
        finally:
            sock.close()
        return VirtualDevice(serial, path, pid, address, device, config, interfaces, raw_config)

    def enumerate_devices(self):
        seen: set[tuple[str, str, int]] = set()
        for entry in registry.read_entries(self.registry_dir):
            path = entry.get("usb_socket")
            if entry.get("state") != "dfu" or not isinstance(path, str) or not os.path.exists(path):
                continue
            key = (str(entry["usb_serial"]), path, int(entry["process_id"]))
            seen.add(key)
            dev = self._cache.get(key)
            if dev is None:
                dev = self._probe(key)
                if dev is None:
                    continue
                self._cache[key] = dev
            yield dev
        for key in list(self._cache):
            if key not in seen:
                del self._cache[key]

    def get_parent(self, dev):
        return None

    # -- descriptors ---------------------------------------------------------------------
    def get_device_descriptor(self, dev):
        return dev.device

    def get_configuration_descriptor(self, dev, config):
        if config != 0:
            raise IndexError(f"invalid configuration index {config}")
        return dev.configuration

    def get_interface_descriptor(self, dev, intf, alt, config):
        if config != 0:
            raise IndexError(f"invalid configuration index {config}")
        if intf >= len(dev.interfaces):
            raise IndexError(f"invalid interface index {intf}")
        if alt >= len(dev.interfaces[intf]):
            raise IndexError(f"invalid alternate setting index {alt}")
        return dev.interfaces[intf][alt].descriptor

    def get_endpoint_descriptor(self, dev, ep, intf, alt, config):
        interface = self.get_interface_descriptor(dev, intf, alt, config)
        endpoints = dev.interfaces[intf][alt].endpoints
        if ep >= len(endpoints):
            raise IndexError(f"invalid endpoint index {ep} (interface has {interface.bNumEndpoints})")
        return endpoints[ep]

    # -- handles -------------------------------------------------------------------------
    def open_device(self, dev):
        return _Handle(dev)

    def close_device(self, dev_handle):
        dev_handle.close()

    def _request(self, handle: _Handle, request_type, request, value, index, data, timeout_ms) -> bytes:
        with handle.lock:
            if handle.sock is None:
                raise _gone(f"{handle.dev.usb_serial} is closed")
            timeout = (timeout_ms if timeout_ms else 1000) / 1000.0 * self.timeout_scale
            try:
                return transfer(handle.sock, request_type, request, value, index, data, timeout)
            except USBError as exc:
                if exc.backend_error_code in (LIBUSB_ERROR_NO_DEVICE, LIBUSB_ERROR_TIMEOUT):
                    handle.close()  # the stream is out of step or gone: never reuse it
                raise

    def set_configuration(self, dev_handle, config_value):
        self._request(dev_handle, 0x00, 9, config_value, 0, b"", 1000)

    def get_configuration(self, dev_handle):
        return self._request(dev_handle, 0x80, 8, 0, 0, 1, 1000)[0]

    def set_interface_altsetting(self, dev_handle, intf, altsetting):
        self._request(dev_handle, 0x01, 11, altsetting, intf, b"", 1000)

    def claim_interface(self, dev_handle, intf):
        dev_handle.claimed.add(intf)

    def release_interface(self, dev_handle, intf):
        dev_handle.claimed.discard(intf)

    def ctrl_transfer(self, dev_handle, bmRequestType, bRequest, wValue, wIndex, data, timeout):
        if bmRequestType & 0x80:
            length = len(data) * data.itemsize
            reply = self._request(dev_handle, bmRequestType, bRequest, wValue, wIndex, length, timeout)
            view = memoryview(data).cast("B")
            view[: len(reply)] = reply
            return len(reply)
        payload = data.tobytes() if isinstance(data, array.array) else bytes(data)
        self._request(dev_handle, bmRequestType, bRequest, wValue, wIndex, payload, timeout)
        return len(payload)

    def clear_halt(self, dev_handle, ep):
        return None

    def reset_device(self, dev_handle):
        return None

    def is_kernel_driver_active(self, dev_handle, intf):
        return False

    def detach_kernel_driver(self, dev_handle, intf):
        return None

    def attach_kernel_driver(self, dev_handle, intf):
        return None
