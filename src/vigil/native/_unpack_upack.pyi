"""Upack unpacking in place (see _unpack_upack.c)."""

def unpack(
    image: bytearray,
    upack: bool,
    ep_bytes: bytes,
    vma: int,
    ep: int,
    base: int,
    va: int,
    /,
) -> tuple[int, int, int] | None: ...
