"""Vigil: a clamd-compatible anti-virus engine and daemon.

The engine's lifecycle mirrors libclamav's: load databases, compile once, then scan many
objects from many threads.
"""

from __future__ import annotations

__version__ = "0.1.0"

from vigil.engine.database import Database, DatabaseOptions, load_database
from vigil.engine.limits import Limits
from vigil.engine.results import ScanResult
from vigil.engine.scanner import Engine, ScanOptions

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


def load_engine(
    paths: list[str] | None = None,
    *,
    limits: Limits | None = None,
    options: DatabaseOptions | None = None,
) -> Engine:
    """Load databases (the built-in one when ``paths`` is empty) and compile an Engine."""
    from vigil.engine.database import builtin_database_dir

    db = load_database(paths or [str(builtin_database_dir())], options)
    return Engine(db, limits)
