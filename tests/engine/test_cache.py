"""The compiled-database cache: hits, and bad entries rebuilt rather than trusted."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.engine.database import load_database
from vigil.engine.matcher import cache
from vigil.engine.scanner import Engine

SIG = "Cached:0:*:564947494c2d43414348452d54455354\n"  # VIGIL-CACHE-TEST
DATA = b"xx VIGIL-CACHE-TEST xx\x00\x01\x02"


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("VIGIL_CACHE_DIR", str(d))
    return d


def engine(tmp_path: Path) -> Engine:
    db = tmp_path / "c.ndb"
    db.write_text(SIG)
    return Engine(load_database([db]))


def test_second_build_uses_the_cache(tmp_path: Path, cache_dir: Path) -> None:
    assert engine(tmp_path).scan(DATA).names == ["Cached.UNOFFICIAL"]
    entries = sorted(cache_dir.glob("*.hsdb"))
    assert len(entries) == 2  # the target-0 atoms and the built-in file-type magic
    stamps = [e.stat().st_mtime_ns for e in entries]
    assert engine(tmp_path).scan(DATA).names == ["Cached.UNOFFICIAL"]
    assert [e.stat().st_mtime_ns for e in entries] == stamps  # read, not rewritten


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_bad_entries_are_rebuilt(tmp_path: Path, cache_dir: Path, damage: str) -> None:
    engine(tmp_path).scan(DATA)  # waits for the background compilation and its entries
    entries = sorted(cache_dir.glob("*.hsdb"))
    assert len(entries) == 2
    for entry in entries:
        raw = bytearray(entry.read_bytes())
        if damage == "truncate":
            raw = raw[: len(raw) // 2]
        elif damage == "flip":
            raw[-20] ^= 0xFF
        else:
            raw = bytearray(b"not a cache file at all")
        entry.write_bytes(bytes(raw))
    assert engine(tmp_path).scan(DATA).names == ["Cached.UNOFFICIAL"]
    for entry in entries:
        assert cache.load(entry.stem) is not None  # rewritten whole


def test_unwritable_cache_directory_is_harmless(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("VIGIL_CACHE_DIR", str(blocker / "sub"))
    assert engine(tmp_path).scan(DATA).names == ["Cached.UNOFFICIAL"]


def test_cache_can_be_disabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_CACHE_DIR", "")
    assert cache.cache_dir() is None
    assert engine(tmp_path).scan(DATA).names == ["Cached.UNOFFICIAL"]


def test_every_group_of_a_database_stays_cached(tmp_path: Path, cache_dir: Path) -> None:
    """One entry per atom group: a database with many target types keeps all of them, so
    a rebuild (say, after an update that changed only hash signatures) compiles nothing."""
    db = tmp_path / "t.ndb"
    db.write_text(
        "".join(f"Group.T{t}:{t}:*:{(b'VIGIL-GROUP-%02d-ATOM' % t).hex()}\n" for t in range(10))
    )
    Engine(load_database([db])).scan(DATA)
    entries = sorted(cache_dir.glob("*.hsdb"))
    assert len(entries) == 11  # ten target types and the file-type magic
    stamps = [e.stat().st_mtime_ns for e in entries]
    Engine(load_database([db])).scan(DATA)
    assert sorted(cache_dir.glob("*.hsdb")) == entries
    assert [e.stat().st_mtime_ns for e in entries] == stamps
