"""USB for flashing: what each port and device is, and how control transfers travel.

`hil.usb.discovery` classifies ports and lists flight controllers and bootloaders on
USB; `hil.usb.control_socket` carries control transfers over a Unix socket to the
virtual board's DFU device, whose pyusb backend is `hil.boards.virtual_usb`.
"""
