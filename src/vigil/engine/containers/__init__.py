"""Unpackers: children of container objects, extracted in memory within the scan limits.

First formats: GZIP, BZIP2, XZ/LZMA (single-stream decompressors) and ZIP, TAR and
CPIO (members). Every decompression is bounded (``max_length``), so a bomb costs at most
MaxFileSize + 1 bytes per child; a broken or truncated container yields what could be
read and never raises.
"""

from __future__ import annotations

import bz2
import io
import logging
import lzma
import struct
import tarfile
import zlib
from collections.abc import Callable, Iterator
from typing import Protocol

from vigil.engine.containers import (
    archives,
    executables,
    mail,
    mspack,
    native_formats,
    office,
    pdf,
    pe_unpack,
)
from vigil.engine.containers.child import Child
from vigil.engine.filetype import FileType

__all__ = ["CONTAINER_TYPES", "Child", "extract", "sniff"]

log = logging.getLogger(__name__)


CHUNK = 1 << 20  # decompressed per step: a bomb costs at most MaxFileSize + 1 MiB


class _Stream(Protocol):
    """What zlib, bz2 and lzma decompressor objects have in common."""

    def decompress(self, data: bytes, max_length: int = ..., /) -> bytes: ...


def _drain(name: str, engine: _Stream, data: bytes, limit: int, more: Callable[[], bool]) -> Child:
    """Decompress ``data`` in 1 MiB steps; past ``limit`` the output is dropped at once
    (the child is over MaxFileSize and will not be scanned), so memory stays bounded."""
    chunks: list[bytes] = []
    total = 0
    out = engine.decompress(data, CHUNK)
    while True:
        chunks.append(out)
        total += len(out)
        if total > limit:
            return Child(name, b"", True)
        if not more():
            break
        # zlib hands back the input it did not use; bz2 and lzma keep it themselves
        pending = getattr(engine, "unconsumed_tail", b"")
        out = engine.decompress(pending, CHUNK)
        if not out:
            break
    return Child(name, b"".join(chunks))


def _gzip(data: bytes, limit: int) -> Iterator[Child]:
    engine = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        yield _drain(
            "gzip", engine, data, limit, lambda: bool(engine.unconsumed_tail) and not engine.eof
        )
    except zlib.error as exc:
        log.debug("gzip: %s", exc)


def _bzip2(data: bytes, limit: int) -> Iterator[Child]:
    engine = bz2.BZ2Decompressor()
    try:
        yield _drain("bzip2", engine, data, limit, lambda: not (engine.eof or engine.needs_input))
    except (OSError, ValueError, EOFError) as exc:
        log.debug("bzip2: %s", exc)


def _xz(data: bytes, limit: int) -> Iterator[Child]:
    engine = lzma.LZMADecompressor()
    try:
        yield _drain("xz", engine, data, limit, lambda: not (engine.eof or engine.needs_input))
    except (lzma.LZMAError, EOFError) as exc:
        log.debug("xz: %s", exc)


def _tar(data: bytes, limit: int) -> Iterator[Child]:
    try:
        archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:")
    except (tarfile.TarError, OSError, ValueError) as exc:
        log.debug("tar: %s", exc)
        return
    with archive:
        while True:
            try:
                member = archive.next()
            except (tarfile.TarError, OSError, ValueError) as exc:
                log.debug("tar: %s", exc)
                return
            if member is None:
                return
            if not member.isfile():
                continue
            if member.issparse():
                fh = archive.extractfile(member)
                if fh is None:
                    continue
                try:
                    out = fh.read(limit + 1)
                except (tarfile.TarError, OSError, ValueError) as exc:
                    log.debug("tar member %r: %s", member.name[:200], exc)
                    continue
            else:
                # a member cut short by the end of the archive keeps what is there
                start = member.offset_data
                out = data[start : start + min(member.size, limit + 1)]
            yield Child(member.name, out[:limit], len(out) > limit or member.size > limit)


_TRAILER = "TRAILER!!!"
MAX_MEMBER_NAME = 4096


def _cpio_member(
    data: bytes, pos: int, namesize: int, filesize: int, header: int, align: int, limit: int
) -> tuple[Child | None, int]:
    """The member after a header at ``pos``; (None, -1) at the trailer or on damage."""
    name_at = pos + header
    if namesize <= 0 or namesize > MAX_MEMBER_NAME or name_at + namesize > len(data):
        return None, -1
    name = data[name_at : name_at + namesize].rstrip(b"\x00").decode("utf-8", "surrogateescape")
    start = name_at + namesize
    start += -start % align
    if name == _TRAILER or start > len(data):
        return None, -1
    end = start + filesize
    body = data[start : min(end, len(data))]
    nxt = end + (-end % align)
    return Child(name, body[:limit], len(body) > limit), nxt


def _cpio_ascii(data: bytes, limit: int) -> Iterator[Child]:
    """newc/crc (hex, 110-byte headers, 4-byte alignment) and odc (octal, 76 bytes)."""
    pos = 0
    while pos + 6 <= len(data):
        magic = data[pos : pos + 6]
        try:
            if magic in (b"070701", b"070702"):
                namesize = int(data[pos + 94 : pos + 102], 16)
                filesize = int(data[pos + 54 : pos + 62], 16)
                mode = int(data[pos + 14 : pos + 22], 16)
                child, nxt = _cpio_member(data, pos, namesize, filesize, 110, 4, limit)
            elif magic == b"070707":
                namesize = int(data[pos + 59 : pos + 65], 8)
                filesize = int(data[pos + 65 : pos + 76], 8)
                mode = int(data[pos + 18 : pos + 24], 8)
                child, nxt = _cpio_member(data, pos, namesize, filesize, 76, 1, limit)
            else:
                return
        except ValueError:
            return
        if child is None:
            return
        if mode & 0o170000 == 0o100000:  # regular files only
            yield child
        pos = nxt


def _cpio_old(data: bytes, limit: int) -> Iterator[Child]:
    """The old binary format: 26-byte headers of 16-bit words, either byte order."""
    pos = 0
    while pos + 26 <= len(data):
        if data[pos : pos + 2] == b"\xc7\x71":
            order = "<"
        elif data[pos : pos + 2] == b"\x71\xc7":
            order = ">"
        else:
            return
        words = struct.unpack_from(order + "13H", data, pos)
        mode, namesize = words[3], words[10]
        filesize = words[11] << 16 | words[12]
        child, nxt = _cpio_member(data, pos, namesize, filesize, 26, 2, limit)
        if child is None:
            return
        if mode & 0o170000 == 0o100000:
            yield child
        pos = nxt


Unpacker = Callable[[bytes, int], Iterator[Child]]

_UNPACKERS: dict[FileType, Unpacker] = {
    FileType.CPIO_NEWC: _cpio_ascii,
    FileType.CPIO_CRC: _cpio_ascii,
    FileType.CPIO_ODC: _cpio_ascii,
    FileType.CPIO_OLD: _cpio_old,
    FileType.GZ: _gzip,
    FileType.BZ: _bzip2,
    FileType.XZ: _xz,
    FileType.POSIX_TAR: _tar,
    FileType.OLD_TAR: _tar,
}
for _module in (archives, executables, mail, mspack, native_formats, office, pdf):
    _UNPACKERS.update(_module.UNPACKERS)
if FileType.ZIP in _UNPACKERS:
    # OOXML documents are read as the ZIPs they are (libclamav falls through to unzip)
    for _ooxml in (
        FileType.OOXML_WORD,
        FileType.OOXML_PPT,
        FileType.OOXML_XL,
        FileType.OOXML_HWP,
    ):
        _UNPACKERS.setdefault(_ooxml, _UNPACKERS[FileType.ZIP])
# packed executables are unpacked after their own raw scan (the scanner's POST_RAW_TYPES)
_UNPACKERS[FileType.MSEXE] = pe_unpack.unpack_pe
CONTAINER_TYPES = frozenset(_UNPACKERS)


def extract(ftype: FileType, data: bytes, limit: int) -> Iterator[Child]:
    """Children of a container, each cut at ``limit`` bytes (flagged ``oversized``)."""
    unpack = _UNPACKERS.get(ftype)
    if unpack is None:
        return iter(())
    return unpack(data, limit)


# Formats ClamAV 1.4 has no file type for (so clamd does not look inside them), recognised
# by their magic at offset 0 of what would otherwise be plain binary data: Unix ar (Debian
# packages) and Zstandard streams.
_SNIFFERS: tuple[tuple[bytes, Unpacker], ...] = (
    (b"!<arch>\n", archives.ar_members),
    (b"\x28\xb5\x2f\xfd", archives.zstd_stream),
)


def sniff(head: bytes) -> Unpacker | None:
    """The unpacker for binary data that is one of the extra formats, else None."""
    for magic, unpack in _SNIFFERS:
        if head.startswith(magic):
            return unpack
    return None
