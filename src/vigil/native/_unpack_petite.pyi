"""Petite 2.1/2.2 unpacking in place (see _unpack_petite.c)."""

def inflate(
    image: bytearray,
    minrva: int,
    sections: list[tuple[int, int]],
    base: int,
    entry: int,
    version: int,
    /,
) -> tuple[list[tuple[int, int, int, int]], int] | None: ...
