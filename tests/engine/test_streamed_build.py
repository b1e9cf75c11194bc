"""The builder prepares variants while the files are still being parsed (batches of a
large file handed to a Preparer, full atom chunks compiling at once): the engine it
makes scans exactly as one built from a whole loaded database, and a bad line met after
some batches is reported as before, with nothing left running."""

from __future__ import annotations

import gzip
import threading
from pathlib import Path

import pytest

from tests.conftest import OFFICIAL, fill_rich_db, scan_targets
from vigil.engine import compiled
from vigil.engine.database import Database, DatabaseOptions, load_database
from vigil.engine.matcher import compile as matcher_compile
from vigil.engine.matcher.compile import Variant
from vigil.engine.scanner import Engine, Preparer, ScanOptions
from vigil.engine.signatures import ldb, ndb
from vigil.engine.signatures.ldb import parse_ldb
from vigil.engine.signatures.ndb import parse_ndb
from vigil.errors import SignatureError

ALLMATCH = ScanOptions(allmatch=True)


def _official(name: str, keep: int) -> str:
    lines = gzip.decompress((OFFICIAL / f"{name}.gz").read_bytes()).splitlines(True)
    return b"".join(lines[:keep]).decode("latin-1")


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ndb, "BATCH_SIGS", 13)
    monkeypatch.setattr(ldb, "BATCH_SIGS", 13)


@pytest.mark.usefixtures("small_batches")
def test_ndb_batches_make_the_whole_file() -> None:
    text = _official("daily.ndb", 300)
    whole_lines: list[str] = []
    whole = parse_ndb(text, "daily.ndb", official=True, sources=whole_lines)
    got: list[object] = []
    got_lines: list[str] = []
    calls = 0

    def take(sigs: list[object], lines: list[str]) -> None:
        nonlocal calls
        calls += 1
        assert len(sigs) == len(lines) == 13
        got.extend(sigs)
        got_lines.extend(lines)

    lines: list[str] = []
    rest = parse_ndb(text, "daily.ndb", official=True, sources=lines, batch=take)
    assert calls == len(whole) // 13 > 10
    assert got + list(rest) == whole
    assert got_lines + lines == whole_lines


@pytest.mark.usefixtures("small_batches")
def test_ldb_batches_make_the_whole_file() -> None:
    text = _official("main.ldb", 3000)
    whole, whole_skipped = parse_ldb(text, "main.ldb", official=True)
    got: list[object] = []

    def take(sigs: list[object], lines: list[str]) -> None:
        assert lines == []  # no sources asked for: the lines are not collected
        got.extend(sigs)

    rest, skipped = parse_ldb(text, "main.ldb", official=True, batch=take)
    assert len(got) >= 13 * 100
    assert got + rest == whole
    assert skipped == whole_skipped


@pytest.mark.usefixtures("small_batches")
def test_a_bad_line_after_batches_names_its_own_line() -> None:
    lines = _official("daily.ndb", 200).split("\n")
    lines.insert(150, "Broken.Sig:0:*:zz")
    taken = 0

    def take(sigs: list[object], _lines: list[str]) -> None:
        nonlocal taken
        taken += len(sigs)

    with pytest.raises(SignatureError) as err:
        parse_ndb("\n".join(lines), "x.ndb", official=False, batch=take)
    assert err.value.lineno == 151
    assert taken >= 13 * 10


@pytest.fixture
def db_dir(tmp_path: Path) -> Path:
    """Body and logical signatures that match ClamAV's test files, with large official
    slices so that every file is handed over in several batches."""
    return fill_rich_db(tmp_path / "db", keep=2500)


def _key(v: Variant) -> tuple[object, ...]:
    return (v.kind, v.owner, v.sub, v.target, v.cp.atom, v.cp.caseless, v.offset)


def _variants(engine: Engine) -> list[tuple[object, ...]]:
    return sorted(map(_key, engine.matcher.variants), key=repr)


def _deferred(engine: Engine) -> dict[int, list[tuple[object, ...]]]:
    variants = engine.matcher.variants
    return {
        li: sorted((_key(variants[vi]) for vi in vis), key=repr)
        for li, vis in engine.deferred.items()
    }


@pytest.mark.usefixtures("small_batches")
def test_streamed_engine_scans_as_the_loaded_one(
    db_dir: Path, scanfiles: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = Engine(load_database([db_dir]))
    monkeypatch.setattr(matcher_compile, "CHUNK_ATOMS", 50)
    fed: list[int] = []

    class Counting(Preparer):
        def feed(self, db: Database) -> None:
            fed.append(len(db.body) + len(db.logical))
            super().feed(db)

    monkeypatch.setattr(compiled, "Preparer", Counting)
    streamed = compiled._build([db_dir], DatabaseOptions(), None)
    # batches of the large files reached the preparer while they were being parsed
    assert len(fed) > 40 and fed == sorted(fed)
    assert streamed.signatures == whole.signatures
    assert streamed.notices == whole.notices
    assert [s.name for s in streamed.body] == [s.name for s in whole.body]
    # the same variants, each once, whatever order they were prepared in
    assert _variants(streamed) == _variants(whole)
    assert _deferred(streamed) == _deferred(whole)
    assert streamed.always_lsigs == whole.always_lsigs
    assert set(streamed.pcres) == set(whole.pcres)
    found = 0
    for data in scan_targets(scanfiles):
        want = whole.scan(data, ALLMATCH).names
        found += len(want)
        assert streamed.scan(data, ALLMATCH).names == want
        assert streamed.scan(data).names == whole.scan(data).names
    assert found > 50


@pytest.mark.usefixtures("small_batches")
def test_a_bad_file_after_batches_stops_the_compiles(
    db_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(matcher_compile, "CHUNK_ATOMS", 50)
    (db_dir / "zz-bad.ldb").write_text("Bad.Sig;Target:0;0;zz\n")
    before = set(threading.enumerate())
    with pytest.raises(SignatureError) as err:
        compiled._build([db_dir], DatabaseOptions(), None)
    assert err.value.lineno == 1 and err.value.path.endswith("zz-bad.ldb")
    assert set(threading.enumerate()) <= before
