"""Formats decoded by the C decoders in vigil.native: implode/deflate64 ZIP members, ARJ, SIS."""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Callable, Iterator

from vigil.engine.containers.child import Child
from vigil.engine.filetype import FileType

__all__ = ["UNPACKERS"]

log = logging.getLogger(__name__)


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


UNPACKERS: dict[FileType, Callable[[bytes, int], Iterator[Child]]] = {FileType.ZIP: _zip}
