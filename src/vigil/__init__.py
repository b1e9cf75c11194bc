"""Vigil: a clamd-compatible anti-virus engine and daemon.

The engine's lifecycle mirrors libclamav's: load databases, compile once, then scan many
objects from many threads. The public names are imported lazily, so that light commands
(``vigil client``) do not pay for loading the engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Database",
    "DatabaseOptions",
    "Engine",
    "Limits",
    "ScanOptions",
    "ScanResult",
    "__version__",
    "load_database",
    "load_engine",
]

if TYPE_CHECKING:
    from vigil.engine.database import Database, DatabaseOptions, load_database
    from vigil.engine.limits import Limits
    from vigil.engine.results import ScanResult
    from vigil.engine.scanner import Engine, ScanOptions

_LAZY = {
    "Database": "vigil.engine.database",
    "DatabaseOptions": "vigil.engine.database",
    "load_database": "vigil.engine.database",
    "Limits": "vigil.engine.limits",
    "ScanResult": "vigil.engine.results",
    "Engine": "vigil.engine.scanner",
    "ScanOptions": "vigil.engine.scanner",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vigil' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def load_engine(
    paths: list[str] | None = None,
    *,
    limits: Limits | None = None,
    options: DatabaseOptions | None = None,
) -> Engine:
    """Load databases (the built-in one when ``paths`` is empty) and compile an Engine."""
    from vigil.engine.compiled import open_engine
    from vigil.engine.database import builtin_database_dir

    return open_engine(paths or [str(builtin_database_dir())], options, limits)
