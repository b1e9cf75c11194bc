"""Shared fixtures: paths to the copied ClamAV test data and XOR-decoded samples."""

from __future__ import annotations

import atexit
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
