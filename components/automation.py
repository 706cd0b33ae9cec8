"""Stub (filled in below)."""


def add_commands(sub) -> None:
    pass
