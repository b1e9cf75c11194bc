"""An on-disk cache of compiled Hyperscan databases, so a restart or an unchanged reload
skips the compile (seconds to a minute at the official database's size).

Entries are keyed by the exact atom list, the Hyperscan version and the CPU's feature
flags; each file carries a SHA-256 of its payload. A missing, corrupt, truncated or
foreign entry is rebuilt, never trusted; writes are atomic (temporary file + rename), so
two daemons sharing the directory cannot corrupt it, and a write that fails (full disk,
read-only directory) only costs the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import platform
import tempfile
from collections.abc import Sequence
from pathlib import Path

import hyperscan

__all__ = ["cache_dir", "cache_key", "cpu_flags", "load", "mtime", "store"]

log = logging.getLogger(__name__)

MAGIC = b"VIGIL-HS-CACHE-1\n"
# newest entries kept in the directory: a database has one per chunk of an atom group
# (16 groups at most: one per target type, one for the file-type magic; a group of the
# official database's size has a handful of chunks), and two databases' worth are kept
KEEP = 64


def cache_dir() -> Path | None:
    """``VIGIL_CACHE_DIR`` (empty: no cache), else the user's cache directory."""
    env = os.environ.get("VIGIL_CACHE_DIR")
    if env is not None:
        return Path(env) if env else None
    if os.geteuid() == 0:
        return Path("/var/cache/vigil")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vigil"


def cpu_flags() -> str:
    """The CPU's feature flags: compiled Hyperscan databases are specific to them."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return line.strip()
    except OSError:
        pass
    return platform.processor()


def cache_key(expressions: Sequence[bytes], flags: Sequence[int], first: int = 0) -> str:
    """A digest of everything the compiled database depends on (``first``: the match id
    of the first expression, the others following)."""
    h = hashlib.sha256()
    version = getattr(hyperscan, "__version__", "?")
    h.update(f"{version}|{platform.machine()}|{cpu_flags()}|{first}\n".encode())
    for expr, flag in zip(expressions, flags, strict=True):
        h.update(b"%d:%d:" % (flag, len(expr)))
        h.update(expr)
    return h.hexdigest()


def load(key: str) -> hyperscan.Database | None:
    """The cached database for ``key``, or None (a bad entry is removed)."""
    directory = cache_dir()
    if directory is None:
        return None
    path = directory / f"{key}.hsdb"
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    header = len(MAGIC) + 64
    digest = raw[len(MAGIC) : header].decode("ascii", "replace")
    payload = raw[header:]
    if raw[: len(MAGIC)] != MAGIC or hashlib.sha256(payload).hexdigest() != digest:
        log.warning("compiled-database cache %s is corrupt; rebuilding", path)
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    try:
        return hyperscan.loadb(payload, hyperscan.HS_MODE_BLOCK)
    except hyperscan.error as exc:
        log.warning("compiled-database cache %s unusable (%s); rebuilding", path, exc)
        with contextlib.suppress(OSError):
            path.unlink()
        return None


def store(key: str, db: hyperscan.Database) -> None:
    """Write ``db`` atomically; failures are logged and otherwise ignored."""
    directory = cache_dir()
    if directory is None:
        return
    try:
        payload = hyperscan.dumpb(db)
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".hsdb")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(MAGIC + hashlib.sha256(payload).hexdigest().encode() + payload)
            os.replace(tmp, directory / f"{key}.hsdb")
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _prune(directory)
    except (OSError, hyperscan.error) as exc:
        log.info("compiled-database cache not written: %s", exc)


def mtime(path: Path) -> float:
    """A file's modification time; 0 when it was removed meanwhile (by another pruner)."""
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _prune(directory: Path) -> None:
    # temporary files of writers at work (".tmp-") are not entries: never count them
    entries = sorted(
        (p for p in directory.glob("*.hsdb") if not p.name.startswith(".")),
        key=mtime,
        reverse=True,
    )
    for old in entries[KEEP:]:
        with contextlib.suppress(OSError):
            old.unlink()
