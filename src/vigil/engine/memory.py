"""Hand freed heap memory back to the operating system after a large build."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

__all__ = ["release_free_memory"]

log = logging.getLogger(__name__)

_libc: ctypes.CDLL | None = None
try:
    _name = ctypes.util.find_library("c")
    _libc = ctypes.CDLL(_name) if _name else None
except OSError:  # pragma: no cover - not glibc
    _libc = None


def release_free_memory() -> None:
    """Ask glibc to return free arenas: compiling Hyperscan leaves hundreds of MB of freed
    but still resident memory that would otherwise count against the daemon."""
    trim = getattr(_libc, "malloc_trim", None) if _libc is not None else None
    if trim is not None:
        trim(0)
