"""Fuzz target: ``load_database`` on a directory holding one fuzzed file, then the engine
compiled from what loaded, then one scan with it.

The first byte picks the file's suffix. Loading may fail only with DatabaseError (which
includes SignatureError); a database that loads must compile into an Engine and scan.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

from _harness import Input, instrumented, main

with instrumented(__name__):
    from vigil.engine.database import DatabaseOptions, load_database
    from vigil.engine.scanner import Engine
    from vigil.errors import DatabaseError

SUFFIXES = (
    "hdb", "hsb", "hdu", "mdb", "msb", "imp", "fp", "sfp", "ndb", "ndu", "sdb", "db", "ldb",
    "ldu", "cdb", "ftm", "ign", "ign2", "yar", "yara", "cvd", "cld", "cud", "info", "pdb",
)  # fmt: skip
SAMPLE = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*" + bytes(
    range(256)
)

_DIR = Path(tempfile.mkdtemp(prefix="vigil-fuzz-db-"))
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)


def close() -> None:
    """Remove the scratch database directory (for in-process replays)."""
    shutil.rmtree(_DIR, ignore_errors=True)


def TestOneInput(data: bytes) -> None:
    src = Input(data)
    suffix = src.pick(SUFFIXES)
    pua = bool(src.byte() & 1)
    _DIR.mkdir(exist_ok=True)
    for old in _DIR.iterdir():
        old.unlink()
    (_DIR / f"fuzz.{suffix}").write_bytes(src.rest())
    try:
        db = load_database([_DIR], DatabaseOptions(pua=pua))
    except DatabaseError:
        return
    engine = Engine(db)
    engine.scan(SAMPLE)


if __name__ == "__main__":
    os.environ["VIGIL_CACHE_DIR"] = ""  # no compiled-database cache entries per input
    main(TestOneInput)
