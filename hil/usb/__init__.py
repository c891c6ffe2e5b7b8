"""USB access for flashing: real devices through libusb, virtual boards through the registry.

`hil.usb.virtual_backend.VirtualBackend` is a pyusb backend over the virtual rig's DFU
devices; `hil.usb.discovery.list_usb_boards` lists flight controllers and bootloaders
seen on either.
"""

from hil.usb.virtual_backend import VirtualBackend

__all__ = ["VirtualBackend"]
