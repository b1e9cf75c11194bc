"""ASCII text normalisation for target-7 signatures (signatures.md §3.5); stdlib only."""

from __future__ import annotations

import re

__all__ = ["normalise_text"]

_WHITESPACE = b"\t\n\x0b\x0c\r "
# A-Z become a-z and every whitespace byte becomes a space, in one translate pass.
_TABLE = bytes.maketrans(
    bytes(range(0x41, 0x5B)) + _WHITESPACE,
    bytes(range(0x61, 0x7B)) + b" " * len(_WHITESPACE),
)
# Control bytes that are not whitespace, and all of 0x80-0xFF, vanish (0x7F is kept).
_DELETE = bytes([*range(0x00, 0x09), *range(0x0E, 0x20), *range(0x80, 0x100)])
_SPACE_RUN = re.compile(b"  +")


def normalise_text(data: bytes) -> bytes:
    """Lower-case A-Z, squeeze whitespace runs to one space, drop other controls and 0x80+.

    Deleted bytes do not split a whitespace run (``" \\x01 "`` gives one space), exactly as
    ClamAV's textnorm.c, which skips them without resetting its "space written" flag.
    """
    return _SPACE_RUN.sub(b" ", data.translate(_TABLE, _DELETE))
