"""Injectors: the harness plays a device the flight controller talks to over a wire.

``hil.injectors.gps`` is a GNSS receiver: it turns ``hil.threats.gnss`` observations into
the UBX or NMEA bytes the FC's GPS port reads and answers the FC's configuration
messages; ``hil.injectors.rc`` plays the RC receiver.
"""
