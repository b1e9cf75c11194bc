"""Files embedded in OneNote sections (MS-ONESTORE), found as libclamav finds them.

Revision-store files (OneNote 2007/2010 desktop) keep each embedded file, and each
picture, in a FileDataStoreObject: a 16-byte GUID header, the data length (u64), 12
reserved bytes, then the data. Sections exported by OneNote for the web use the
alternative packaging (MS-FSSHTTPB): there an embedded file is the binary item of an
Object Data BLOB stream object. Both are located with ``bytes.find``/``re`` and checked
against their own length fields; nothing else of the revision store is parsed.
"""

from __future__ import annotations

import logging
import re
import struct
from collections.abc import Iterator

__all__ = ["onenote_files"]

log = logging.getLogger(__name__)

ONE_MAGIC = bytes.fromhex("e4525c7b8cd8a74daeb15378d02996d3")
FILE_DATA_STORE = bytes.fromhex("e716e3bd65261145a4c48d4d0b7a9eac")
FILE_DATA_HEADER = 36  # GUID, u64 length, u32 and u64 reserved
# guidFileFormat of the alternative packaging {638DE92F-A6D4-4BC1-9A36-B3FC2511A5B7}
PACKAGING_FORMAT = bytes.fromhex("2fe98d63d4a6c14b9a36b3fc2511a5b7")
MAX_FILES = 100_000
MAX_CANDIDATES = 200_000  # blob headers looked at: bytes "12 00" abound in hostile input

# A 32-bit stream object header (low bits 10, not compound) of type 0x02, Object Data
# BLOB: its low 17 bits are 0x00012, so the first two bytes are 12 00 and bit 0 of the
# third is clear.
_EVEN_BYTES = b"".join(re.escape(bytes([b])) for b in range(0, 256, 2))
_BLOB_HEADER = re.compile(b"\\x12\\x00[" + _EVEN_BYTES + b"]")


def _compact_u64(data: bytes, pos: int) -> tuple[int, int] | None:
    """An MS-FSSHTTPB compact unsigned 64-bit integer at ``pos``: (value, size). The
    number of trailing zero bits of the first byte says how many bytes follow."""
    if pos >= len(data):
        return None
    first = data[pos]
    if first == 0:
        return 0, 1
    if first == 0x80 or first & 0x7F == 0:
        # 0x80: 9 bytes, the value in the 8 after the first
        if pos + 9 > len(data):
            return None
        return int.from_bytes(data[pos + 1 : pos + 9], "little"), 9
    size = (first & -first).bit_length()  # 1 to 7 bytes
    if pos + size > len(data):
        return None
    value = int.from_bytes(data[pos : pos + size], "little") >> size
    return value, size


def _file_data_store(data: bytes, limit: int) -> Iterator[tuple[bytes, bool]]:
    """The data of every FileDataStoreObject, in file order; a truncated last one gives
    the bytes that are there."""
    pos = data.find(FILE_DATA_STORE)
    count = 0
    while pos >= 0 and count < MAX_FILES:
        count += 1
        if pos + FILE_DATA_HEADER > len(data):
            return
        (length,) = struct.unpack_from("<Q", data, pos + 16)
        start = pos + FILE_DATA_HEADER
        body = data[start : start + min(length, limit + 1)]
        yield body[:limit], len(body) > limit
        if start + length > len(data):
            return
        pos = data.find(FILE_DATA_STORE, start + length)


def _fsshttpb_blobs(data: bytes, limit: int) -> Iterator[tuple[bytes, bool]]:
    """Object Data BLOBs of the alternative packaging whose header length matches the
    binary item's own length, in file order, none overlapping the previous one."""
    count = 0
    resume = 0
    for tried, match in enumerate(_BLOB_HEADER.finditer(data)):
        if tried >= MAX_CANDIDATES:
            log.debug("onenote: too many blob header candidates")
            return
        pos = match.start()
        if pos < resume or pos + 4 > len(data):
            continue
        (header,) = struct.unpack_from("<I", data, pos)
        length = header >> 17
        at = pos + 4
        if length == 0x7FFF:  # the length follows as a compact u64
            large = _compact_u64(data, at)
            if large is None:
                continue
            length, used = large
            at += used
        item = _compact_u64(data, at)
        if item is None:
            continue
        size, used = item
        if size == 0 or used + size != length:
            continue
        start = at + used
        body = data[start : start + min(size, limit + 1)]
        yield body[:limit], len(body) > limit
        count += 1
        if count >= MAX_FILES:
            return
        resume = start + size


def onenote_files(data: bytes, limit: int) -> Iterator[tuple[str, bytes, bool]]:
    """(name, data, oversized) for every file embedded in a OneNote section."""
    if not data.startswith(ONE_MAGIC):
        return
    n = 0
    for body, over in _file_data_store(data, limit):
        n += 1
        yield f"onenote-{n}", body, over
    if data[48:64] == PACKAGING_FORMAT:
        for body, over in _fsshttpb_blobs(data, limit):
            n += 1
            yield f"onenote-{n}", body, over
