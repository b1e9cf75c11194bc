"""The database directory: what is installed, the cool-down state, and atomic replacement.

A new file is written into a staging directory inside the database directory (same file
system), fsynced, optionally test-loaded, then renamed over its final name and the
directory fsynced. The stale twin (``X.cvd`` after a ``X.cld`` lands, or the reverse) is
removed only after that rename: a kill at any moment leaves either the old file, or both
files, and the loader then picks the newer version. So the directory always loads.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import io
import json
import os
import shutil
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vigil.engine.database import DatabaseOptions, load_database
from vigil.engine.signatures.cvd import HEADER_SIZE, CvdHeader, parse_cvd_header, read_cvd
from vigil.errors import DatabaseError
from vigil.update.errors import DirectoryError, TestLoadError, VerifyError, WriteError

__all__ = [
    "STAGING",
    "STATE_FILE",
    "Installed",
    "build_cld",
    "cool_down_until",
    "install",
    "installed",
    "locked",
    "read_members",
    "set_cool_down",
]

STAGING = ".vigil-update.tmp"
# Vigil's own file: freshclam's freshclam.dat is a private binary layout we do not write.
STATE_FILE = "vigil-update.json"
LOCK_FILE = ".vigil-update.lock"


@dataclass(frozen=True, slots=True)
class Installed:
    """The copy of one database that the loader would use (the newer of .cvd/.cld)."""

    path: Path
    header: CvdHeader


def installed(datadir: Path, name: str) -> Installed | None:
    """The newest readable ``name.cvd``/``name.cld``; an unreadable one counts as absent."""
    best: Installed | None = None
    for suffix in ("cvd", "cld"):
        path = datadir / f"{name}.{suffix}"
        try:
            with open(path, "rb") as fh:
                header = parse_cvd_header(fh.read(HEADER_SIZE), str(path))
        except (OSError, DatabaseError):
            continue
        if best is None or header.version >= best.header.version:
            best = Installed(path, header)
    return best


def read_members(path: Path, trusted_keys: str | None = None) -> dict[str, bytes]:
    """Members of an installed container, checked as the loader checks them."""
    try:
        data = path.read_bytes()
        return dict(read_cvd(data, str(path), trusted_keys=trusted_keys).members)
    except OSError as exc:
        raise VerifyError(f"{path}: cannot read: {exc.strerror}") from None
    except DatabaseError as exc:
        raise VerifyError(str(exc)) from None


def build_cld(name: str, members: dict[str, bytes], *, compress: bool) -> bytes:
    """A .cld as freshclam writes one: the ``.info`` header line, padded, then the tar.

    ``COPYING`` goes first because the loader recognises an uncompressed body by it.
    """
    info = members.get(f"{name}.info")
    if info is None:
        raise VerifyError(f"{name}: the patched database has no {name}.info")
    first = info.split(b"\n", 1)[0].rstrip(b"\r")
    if len(first) > HEADER_SIZE:
        raise VerifyError(f"{name}.info: header line is longer than {HEADER_SIZE} bytes")
    order = sorted(members, key=lambda n: n != "COPYING")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for member in order:
            data = members[member]
            entry = tarfile.TarInfo(member)
            entry.size = len(data)
            entry.mode = 0o644
            tar.addfile(entry, io.BytesIO(data))
    body = buf.getvalue()
    if compress:
        body = gzip.compress(body, mtime=0)
    return first.ljust(HEADER_SIZE, b" ") + body


def install(
    datadir: Path,
    filename: str,
    data: bytes,
    *,
    test_load: bool,
    stale: tuple[str, ...] = (),
    trusted_keys: str | None = None,
) -> None:
    """Put ``data`` in place as ``datadir/filename`` atomically, then drop ``stale`` names.

    The test load trusts the same extra keys (``trusted_keys``) as the daemon should.
    """
    staging = datadir / STAGING
    try:
        staging.mkdir(exist_ok=True)
        tmp = staging / filename
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        _cleanup(staging)
        raise WriteError(f"{datadir / filename}: cannot write: {exc.strerror}") from None
    try:
        if test_load:
            try:
                load_database([tmp], DatabaseOptions(pua=True, trusted_keys=trusted_keys))
            except DatabaseError as exc:
                raise TestLoadError(f"{filename}: failed to load the new database: {exc}") from None
        try:
            os.replace(tmp, datadir / filename)
            _fsync_dir(datadir)
        except OSError as exc:
            raise WriteError(f"{datadir / filename}: cannot replace: {exc.strerror}") from None
    finally:
        _cleanup(staging)
    for name in stale:
        try:
            (datadir / name).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise WriteError(f"{datadir / name}: cannot remove: {exc.strerror}") from None
    if stale:
        _fsync_dir(datadir)


def cool_down_until(datadir: Path) -> float:
    """The end of the current 429 cool-down (Unix time), 0 when there is none."""
    try:
        state = json.loads((datadir / STATE_FILE).read_text("utf-8"))
        return float(state.get("cool_down_until", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return 0.0


def set_cool_down(datadir: Path, until: float) -> None:
    """Remember a cool-down across runs; written atomically like the databases."""
    tmp = datadir / (STATE_FILE + ".tmp")
    try:
        tmp.write_text(json.dumps({"cool_down_until": until, "set_at": time.time()}), "utf-8")
        os.replace(tmp, datadir / STATE_FILE)
    except OSError as exc:
        raise WriteError(f"{datadir / STATE_FILE}: cannot write: {exc.strerror}") from None


@contextlib.contextmanager
def locked(datadir: Path) -> Iterator[None]:
    """Hold the directory's update lock, so two updaters never interleave."""
    if not datadir.is_dir():
        raise DirectoryError(f"{datadir}: database directory does not exist")
    try:
        fh = open(datadir / LOCK_FILE, "a+b")  # noqa: SIM115 - held for the whole block
    except OSError as exc:
        raise DirectoryError(f"{datadir}: cannot write to the directory: {exc.strerror}") from None
    with fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise DirectoryError(f"{datadir}: another update is running") from None
        yield


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _cleanup(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)
