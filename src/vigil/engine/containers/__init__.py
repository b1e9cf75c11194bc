"""Unpackers: children of container objects, extracted in memory within the scan limits.

First formats: GZIP, BZIP2, XZ/LZMA (single-stream decompressors) and ZIP and TAR
(members). Every decompression is bounded (``max_length``), so a bomb costs at most
MaxFileSize + 1 bytes per child; a broken or truncated container yields what could be
read and never raises.
"""

from __future__ import annotations

import bz2
import io
import logging
import lzma
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from vigil.engine.filetype import FileType

__all__ = ["CONTAINER_TYPES", "Child", "extract"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Child:
    """One member: its data (cut at the size limit: ``oversized``) and the metadata that
    .cdb signatures test (compressed and real size, encryption)."""

    name: str
    data: bytes
    oversized: bool = False
    compressed: int = -1  # -1: same as the real size
    real: int = -1
    encrypted: bool = False


def _gzip(data: bytes, limit: int) -> Iterator[Child]:
    try:
        out = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, limit + 1)
    except zlib.error as exc:
        log.debug("gzip: %s", exc)
        return
    yield Child("gzip", out[:limit], len(out) > limit)


def _bzip2(data: bytes, limit: int) -> Iterator[Child]:
    try:
        out = bz2.BZ2Decompressor().decompress(data, max_length=limit + 1)
    except (OSError, ValueError, EOFError) as exc:
        log.debug("bzip2: %s", exc)
        return
    yield Child("bzip2", out[:limit], len(out) > limit)


def _xz(data: bytes, limit: int) -> Iterator[Child]:
    try:
        out = lzma.LZMADecompressor().decompress(data, max_length=limit + 1)
    except (lzma.LZMAError, EOFError) as exc:
        log.debug("xz: %s", exc)
        return
    yield Child("xz", out[:limit], len(out) > limit)


def _zip(data: bytes, limit: int) -> Iterator[Child]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:
        log.debug("zip: %s", exc)
        return
    for info in members:
        if info.is_dir():
            continue
        if info.flag_bits & 0x1:  # encrypted: metadata only, nothing to scan
            yield Child(info.filename, b"", False, info.compress_size, info.file_size, True)
            continue
        try:
            with archive.open(info) as fh:
                out = fh.read(limit + 1)
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as exc:
            log.debug("zip member %r: %s", info.filename[:200], exc)
            continue
        yield Child(
            info.filename, out[:limit], len(out) > limit, info.compress_size, info.file_size
        )


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
            fh = archive.extractfile(member)
            if fh is None:
                continue
            out = fh.read(limit + 1)
            yield Child(member.name, out[:limit], len(out) > limit)


_UNPACKERS = {
    FileType.GZ: _gzip,
    FileType.BZ: _bzip2,
    FileType.XZ: _xz,
    FileType.ZIP: _zip,
    FileType.POSIX_TAR: _tar,
    FileType.OLD_TAR: _tar,
}
CONTAINER_TYPES = frozenset(_UNPACKERS)


def extract(ftype: FileType, data: bytes, limit: int) -> Iterator[Child]:
    """Children of a container, each cut at ``limit`` bytes (flagged ``oversized``)."""
    unpack = _UNPACKERS.get(ftype)
    if unpack is None:
        return iter(())
    return unpack(data, limit)
