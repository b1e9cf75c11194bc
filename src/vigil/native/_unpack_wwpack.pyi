"""WWPack32 decompression in place (see _unpack_wwpack.c)."""

_Buffer = bytes | bytearray | memoryview

def unpack(image: bytearray, packer: _Buffer, packer_rva: int, /) -> int: ...
