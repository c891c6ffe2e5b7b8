"""The built-in board types a rig file can name (`type = ...`, hil.rig).

- `virtual` (hil.boards.virtual): the virtual flight controller of hil.vfc, run as a
  process on this host. It is the device under test: in the harness only this board
  type, and the modules here that serve it alone (hil.boards.virtual_usb), import
  hil.vfc.
- `mavlink` (hil.boards.mavlink): a board the user points at, over MAVLink.
- `betaflight` (hil.boards.betaflight): a Betaflight board on a bench, over MSP.

Betaflight SITL (`betaflight-sitl`) lives in hil.sitl. Board types are found through
the `hil.boards` entry points (hil.rig.BOARD_TYPES); hil.rig imports none of them.
"""
