"""PESpin 1.1 decryption layers in place (see _unpack_spin.c)."""

def decrypt(
    file: bytearray,
    sections: list[tuple[int, int]],
    last: tuple[int, int, int],
    entry: int,
    /,
) -> tuple[int, int] | None: ...
