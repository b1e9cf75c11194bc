"""Hand freed heap memory back to the operating system after a large build."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["release_free_memory", "no_gc"]

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


@contextmanager
def no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while building large, acyclic structures.

    Loading a database allocates millions of objects that all stay alive; every collection
    would walk all of them again for nothing (measured: 5.0 s -> 1.7 s on the official
    sample). Reference counting still frees everything as usual.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
