"""yC's polymorphic byte decryptors (see _unpack_yc.c)."""

def emulate(
    buf: bytearray, limit: int, decryptor: int, code: int, count: int, max_count: int, /
) -> int: ...
