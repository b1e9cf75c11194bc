"""ClamAV's pe_allmatch sets: alert-sigs files alert with their stem, broken-sigs do not."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import UNIT
from vigil.engine.database import load_database
from vigil.engine.scanner import Engine, ScanOptions

BASE = UNIT / "pe_allmatch"
# Signature kinds Vigil cannot evaluate yet: bytecode needs ClamAV's VM, icon groups need
# .idb fuzzy icon matching.
KNOWN_GAPS = {
    p.name: "bytecode signatures (.cbc) are not supported"
    for p in (BASE / "alert-sigs").glob("*.cbc")
} | {
    p.name: "IconGroup conditions need .idb icon matching"
    for p in (BASE / "alert-sigs").glob("*ICON*.ldb")
}


@pytest.fixture(scope="module")
def test_exe() -> bytes:
    return (BASE / "test.exe").read_bytes()


@pytest.mark.parametrize(
    "sig",
    [
        pytest.param(p, marks=pytest.mark.xfail(reason=KNOWN_GAPS[p.name], strict=True))
        if p.name in KNOWN_GAPS
        else p
        for p in sorted((BASE / "alert-sigs").iterdir())
    ],
    ids=lambda p: p.name,
)
def test_alert_sigs_alert_with_their_stem(sig: Path, test_exe: bytes) -> None:
    engine = Engine(load_database([sig]))
    names = engine.scan(test_exe, ScanOptions(allmatch=True)).names
    assert sig.name.rsplit(".", 1)[0] in names


@pytest.mark.parametrize("sig", sorted((BASE / "broken-sigs").iterdir()), ids=lambda p: p.name)
def test_broken_sigs_do_not_alert(sig: Path, test_exe: bytes) -> None:
    engine = Engine(load_database([sig]))
    assert engine.scan(test_exe, ScanOptions(allmatch=True)).names == []
