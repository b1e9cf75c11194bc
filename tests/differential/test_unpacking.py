"""ClamAV's test file inside every wrapper of ClamAV's own test samples: the same verdict as
the real clamscan, sample by sample, with the same database.

The samples are ClamAV's unit-test inputs (``clamav_hdb_scanfiles``, decoded from their
``.xor`` form) and, when Debian's ``clamav-testfiles`` package is installed, its files.
Each holds the 544-byte clam.exe somewhere (archived, compressed, mailed, packed,
embedded); ``clamav.hdb`` holds clam.exe's hash, so only a real extraction finds it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import UNIT
from vigil.engine.database import load_database
from vigil.engine.scanner import Engine

CLAMSCAN = shutil.which("clamscan")
DEBIAN_TESTFILES = Path("/usr/share/clamav-testfiles")
HDB = UNIT / "clamav.hdb"
pytestmark = [
    pytest.mark.differential,
    pytest.mark.skipif(CLAMSCAN is None, reason="clamscan (Debian's clamav) is not installed"),
]

# Samples whose wrapper Vigil cannot open yet, with the reason (strict: an unexpected pass
# fails, so this list shrinks as formats land).
KNOWN_GAPS: dict[str, str] = {}
# Where Vigil deliberately finds more: Debian builds ClamAV without its (non-free) unrar
# module, so clamscan reports RAR archives clean; Vigil reads RAR 3-5 through libarchive.
BEYOND_CLAMSCAN = {"clam-v3.rar": ["ClamAV-Test-File.UNOFFICIAL"]}

SAMPLES = sorted(p.name[: -len(".xor")] for p in (UNIT / "clamav_hdb_scanfiles").glob("*.xor"))
DEBIAN = sorted(p.name for p in DEBIAN_TESTFILES.glob("*")) if DEBIAN_TESTFILES.is_dir() else []


def clamscan_verdicts(paths: list[Path]) -> dict[str, list[str]]:
    assert CLAMSCAN is not None
    cmd = [CLAMSCAN, "--no-summary", "--bytecode=no", "--disable-cache", "-d", str(HDB)]
    proc = subprocess.run(
        cmd + [str(p) for p in paths], capture_output=True, timeout=300, check=False
    )
    assert proc.returncode in (0, 1), proc.stderr.decode(errors="replace")
    out: dict[str, list[str]] = {str(p): [] for p in paths}
    for line in proc.stdout.decode("latin-1").splitlines():
        path, _, verdict = line.rpartition(": ")
        if verdict.endswith(" FOUND"):
            out[path].append(verdict[: -len(" FOUND")])
    return out


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(load_database([HDB]))


@pytest.fixture(scope="module")
def expected(scanfiles: Path) -> dict[str, list[str]]:
    paths = [scanfiles / n for n in SAMPLES] + [DEBIAN_TESTFILES / n for n in DEBIAN]
    return clamscan_verdicts(paths)


def _check(path: Path, engine: Engine, expected: dict[str, list[str]]) -> None:
    if path.name in KNOWN_GAPS:
        pytest.xfail(KNOWN_GAPS[path.name])
    names = engine.scan(path.read_bytes()).names
    if path.name in BEYOND_CLAMSCAN:
        assert expected[str(path)] == []
        assert names == BEYOND_CLAMSCAN[path.name]
        return
    assert names == expected[str(path)]


@pytest.mark.parametrize("name", SAMPLES)
def test_unit_sample(
    name: str, scanfiles: Path, engine: Engine, expected: dict[str, list[str]]
) -> None:
    _check(scanfiles / name, engine, expected)


@pytest.mark.parametrize("name", DEBIAN)
def test_debian_testfile(name: str, engine: Engine, expected: dict[str, list[str]]) -> None:
    _check(DEBIAN_TESTFILES / name, engine, expected)
