"""The aPLib-style decoder of FSG and MEW (see _unpack_aplib.c)."""

_Buffer = bytes | bytearray | memoryview

def decode(src: _Buffer, dst: bytearray, doff: int, dsize: int, /) -> tuple[int, int] | None: ...
