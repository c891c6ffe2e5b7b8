"""Pure protocol codecs (CRSF, SBUS, MSP): bytes in, messages out, and back.

Nothing here opens a port, sleeps or reads a clock; links feed bytes to the parsers.
"""
