"""Shared fixtures: paths to the copied ClamAV test data and XOR-decoded samples."""

from __future__ import annotations

import atexit
import gzip
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Compiled-database caches made by the tests (also by the daemons they start) go to a
# private directory that is removed at the end, never to the user's or the system's cache.
_CACHE = tempfile.mkdtemp(prefix="vigil-test-cache-")
os.environ["VIGIL_CACHE_DIR"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)

DATA = Path(__file__).parent / "data"
UNIT = DATA / "clamav-unit"
OFFICIAL = DATA / "clamav-official-sample"


# The fixed key ClamAV's build uses to de-obfuscate its ``.xor`` test samples (see the README
# in tests/data/clamav-unit); the samples are stored obfuscated so that no scanner quarantines
# the source tree.
def fill_rich_db(d: Path, keep: int) -> Path:
    """Many kinds of signature that match the test files, written to ``d``: ClamAV's
    pe_allmatch alert and weak sets (body, logical with PCRE/byte-compare/macros, hashes
    of every kind), the unit-test signatures, and ``keep`` lines of the official main.ldb
    and daily.ndb."""
    d.mkdir(parents=True, exist_ok=True)
    for sub in ("alert-sigs", "weak-sigs"):
        for p in sorted((UNIT / "pe_allmatch" / sub).iterdir()):
            if p.suffix != ".cbc":
                shutil.copy(p, d / f"{sub}-{p.name}")
    shutil.copy(UNIT / "clamav.hdb", d / "clamav.hdb")
    shutil.copy(UNIT / "other_sigs" / "Clamav-Unit-Test-Signature.ndb", d / "unit.ndb")
    for name in ("main.ldb", "daily.ndb"):
        lines = gzip.decompress((OFFICIAL / f"{name}.gz").read_bytes()).splitlines(True)
        (d / f"official-{name}").write_bytes(b"".join(lines[:keep]))
    return d


def scan_targets(scanfiles: Path) -> list[bytes]:
    """ClamAV's pe_allmatch test.exe and the first 40 decoded hdb samples: files on which
    fill_rich_db's signatures report dozens of names."""
    files = [(UNIT / "pe_allmatch" / "test.exe").read_bytes()]
    files += [p.read_bytes() for p in sorted(scanfiles.iterdir())[:40] if p.is_file()]
    return files


XOR_KEY = (
    b"bhcftqarohcdiayfohalohkgmoefxrrgfnczssgybajvkzjaahpfrlqsratkhhfvpxytculmwgmtyzujlbjl"
    b"grhtwxhzpjazlibbwepffyjyfkjwzyofgpopoueurinpdujkphxwhnaxfkaiwrpzdqsnwughtejr"
)


def xor_decode(data: bytes) -> bytes:
    """Undo the XOR obfuscation of a ClamAV ``.xor`` sample."""
    key = (XOR_KEY * (len(data) // len(XOR_KEY) + 1))[: len(data)]
    mixed = int.from_bytes(data, "big") ^ int.from_bytes(key, "big")
    return mixed.to_bytes(len(data), "big")


@pytest.fixture(scope="session")
def scanfiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with every ``clamav_hdb_scanfiles/*.xor`` sample decoded."""
    out = tmp_path_factory.mktemp("scanfiles")
    for src in sorted((UNIT / "clamav_hdb_scanfiles").glob("*.xor")):
        (out / src.name[: -len(".xor")]).write_bytes(xor_decode(src.read_bytes()))
    return out


@pytest.fixture(scope="session")
def clam_exe(scanfiles: Path) -> Path:
    """ClamAV's harmless 544-byte test PE."""
    return scanfiles / "clam.exe"
