"""Archives read through libarchive: 7z, RAR, ISO 9660, XAR, LHA, AR."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from vigil.engine.containers.child import Child
from vigil.engine.filetype import FileType

__all__ = ["UNPACKERS"]

UNPACKERS: dict[FileType, Callable[[bytes, int], Iterator[Child]]] = {}
