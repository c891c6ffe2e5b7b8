"""Threat environments: the physics of jamming and spoofing, without any I/O.

Each module models what a threat does to the signals a board depends on and turns it
into what the receiving device would report: ``hil.threats.gnss`` the GNSS sky
(satellites and their C/N0, a jammer, a spoofer), ``hil.threats.rc_link`` the RC link.
The bytes on the wire are the job of ``hil.injectors``.
"""
