"""Executable containers: packed PE (UPX ...), NSIS, AutoIt, InstallShield."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from vigil.engine.containers.child import Child
from vigil.engine.filetype import FileType

__all__ = ["UNPACKERS"]

UNPACKERS: dict[FileType, Callable[[bytes, int], Iterator[Child]]] = {}
