"""Flashers: put a firmware image on a board over its bootloader, without bricking it."""
