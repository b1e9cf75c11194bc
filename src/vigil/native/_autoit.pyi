"""AutoIt v3 compiled-script keystreams and LZSS (C)."""

def decrypt_ea05(data: bytes, seed: int, /) -> bytes:
    """``data`` XOR the EA05 (MT19937) keystream seeded with ``seed``."""

def decrypt_ea06(data: bytes, seed: int, /) -> bytes:
    """``data`` XOR the EA06 keystream seeded with ``seed``."""

def decompress(data: bytes, version: int, usize: int, cap: int, /) -> bytes:
    """LZSS output of ``data`` (from its ``EA0x`` header), at most ``min(usize, cap)`` bytes."""

def detokenise(
    data: bytes, cap: int, keywords: tuple[bytes, ...], functions: tuple[bytes, ...], /
) -> bytes:
    """An EA06 script's token stream as text (at most ``cap`` bytes), as libclamav writes it."""
