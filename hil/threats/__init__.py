"""Threat environments: the physics of jamming and spoofing, without any I/O.

``hil.threats.gnss`` models the GNSS sky a receiver sees (satellites, their C/N0, a
jammer, a spoofer) and turns it into what the receiver would report. The bytes on the
wire are the job of ``hil.injectors``.
"""
