"""MEW 11 SE unpacking in place (see _unpack_mew.c)."""

def unpack(
    buf: bytearray,
    off: int,
    ssize: int,
    dsize: int,
    base: int,
    vadd: int,
    uselzma: int,
    /,
) -> tuple[int, list[tuple[int, int, int, int]]] | None: ...
