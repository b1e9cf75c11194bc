"""The compiled-database cache: an engine read back from it scans exactly as the one built
from the database files, and a bad, stale or unwritable entry never changes a verdict."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import UNIT, fill_rich_db, scan_targets
from vigil.engine import compiled
from vigil.engine.compiled import open_engine, read_engine
from vigil.engine.database import DatabaseOptions, load_database
from vigil.engine.scanner import Engine, ScanOptions
from vigil.errors import SignatureError

ALLMATCH = ScanOptions(allmatch=True)
PAYLOAD = b"hello VIGIL-COMPILED-TEST payload"
SIG = "Compiled.Test:0:*:564947494c2d434f4d50494c45442d54455354\n"  # VIGIL-COMPILED-TEST


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("VIGIL_CACHE_DIR", str(d))
    return d


@pytest.fixture(scope="module")
def rich_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fill_rich_db(tmp_path_factory.mktemp("richdb"), keep=4000)


def test_cached_engine_scans_as_the_built_one(
    rich_db: Path, scanfiles: Path, cache_dir: Path
) -> None:
    built = Engine(load_database([rich_db]))
    first = open_engine([rich_db])  # miss: built, written, read back
    again = open_engine([rich_db])  # hit
    assert type(first.body).__name__ == type(again.body).__name__ == "_Pickled"
    assert again.source is not None and again.source.parent == cache_dir
    assert built.source is None
    assert again.signatures == built.signatures
    assert again.notices == built.notices
    found = 0
    for data in scan_targets(scanfiles):
        want = built.scan(data, ALLMATCH).names
        found += len(want)
        assert first.scan(data, ALLMATCH).names == want
        assert again.scan(data, ALLMATCH).names == want
        assert again.scan(data).names == built.scan(data).names
    assert found > 50  # the comparison is about real detections


def test_atom_groups_load_when_first_scanned_with(rich_db: Path, cache_dir: Path) -> None:
    """A mapped engine deserializes a target type's atoms only when a pass needs them."""
    open_engine([rich_db])
    engine = open_engine([rich_db])
    groups = engine.matcher.groups
    assert 1 in groups and 0 in groups  # PE and generic signatures
    assert not any(g.loaded for g in groups.values())
    assert engine.scan(b"plain text, nothing to see here\n" * 40).names == []
    assert groups[0].loaded and not groups[1].loaded  # text never meets the PE atoms
    assert engine.scan((UNIT / "pe_allmatch" / "test.exe").read_bytes()).names
    assert groups[1].loaded


def test_a_hit_parses_nothing(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "t.ndb"
    db.write_text(SIG)
    open_engine([db])
    (entry,) = cache_dir.glob("*.engine")
    stamp = entry.stat().st_mtime_ns

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("the database was parsed again")

    monkeypatch.setattr(compiled, "load_database", refuse)
    assert open_engine([db]).scan(PAYLOAD).names == ["Compiled.Test.UNOFFICIAL"]
    assert entry.stat().st_mtime_ns == stamp


def test_a_changed_database_gets_a_new_entry(tmp_path: Path, cache_dir: Path) -> None:
    db = tmp_path / "t.ndb"
    db.write_text(SIG)
    assert open_engine([db]).scan(PAYLOAD).names == ["Compiled.Test.UNOFFICIAL"]
    db.write_text(SIG.replace("Compiled.Test", "Compiled.Other"))
    assert open_engine([db]).scan(PAYLOAD).names == ["Compiled.Other.UNOFFICIAL"]
    db.write_text(SIG.replace("Compiled.Test", "Compiled.Third"))
    assert open_engine([db]).scan(PAYLOAD).names == ["Compiled.Third.UNOFFICIAL"]
    assert len(list(cache_dir.glob("*.engine"))) == compiled.KEEP


def test_options_are_part_of_the_key(tmp_path: Path, cache_dir: Path) -> None:
    db = tmp_path / "t.ndu"  # a PUA database: loaded only with PUA detection on
    db.write_text(SIG)
    assert open_engine([db]).scan(PAYLOAD).names == []
    pua = DatabaseOptions(pua=True)
    assert open_engine([db], pua).scan(PAYLOAD).names == ["Compiled.Test.UNOFFICIAL"]


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty", "old-format"])
def test_bad_entries_are_rebuilt_never_trusted(
    tmp_path: Path, cache_dir: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "t.ndb"
    db.write_text(SIG)
    open_engine([db])
    (entry,) = cache_dir.glob("*.engine")
    raw = bytearray(entry.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) * 2 // 3]
    elif damage == "flip":
        # a byte in the middle of the hash-name or signature data
        raw[len(raw) - 100] ^= 0x55
    elif damage == "garbage":
        raw = bytearray(os.urandom(len(raw)))
    elif damage == "empty":
        raw = bytearray()
    else:
        raw[: len(compiled.MAGIC_HEAD)] = b"VIGIL-ENGINE-0\n"
    entry.write_bytes(bytes(raw))
    with pytest.raises(compiled.CacheError):
        read_engine(entry)
    assert open_engine([db]).scan(PAYLOAD).names == ["Compiled.Test.UNOFFICIAL"]
    assert "rebuilding" in caplog.text
    read_engine(entry)  # rewritten whole


def test_unwritable_cache_serves_from_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("VIGIL_CACHE_DIR", str(blocker / "sub"))
    db = tmp_path / "t.ndb"
    db.write_text(SIG)
    engine = open_engine([db])
    assert engine.scan(PAYLOAD).names == ["Compiled.Test.UNOFFICIAL"]
    assert type(engine.body) is list  # the engine built in memory
    assert "serving from memory" in caplog.text


def test_full_disk_while_writing_leaves_nothing_behind(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "t.ndb"
    db.write_text(SIG)
    real_replace = os.replace

    def full(*_a: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(compiled.os, "replace", full)
    assert open_engine([db]).scan(PAYLOAD).names == ["Compiled.Test.UNOFFICIAL"]
    assert list(cache_dir.glob("*.engine")) == []
    assert [p for p in cache_dir.iterdir() if p.name.startswith(".tmp-")] == []
    monkeypatch.setattr(compiled.os, "replace", real_replace)
    open_engine([db])
    assert len(list(cache_dir.glob("*.engine"))) == 1


@pytest.mark.parametrize("when", [1, 3, 1000])
def test_a_write_failing_midway_leaves_nothing_behind(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch, when: int
) -> None:
    """The sections are written by a thread: its error (here the n-th write; 1000: the
    header's, written last) reaches open_engine, which serves from memory."""
    db = tmp_path / "t.ndb"
    db.write_text(SIG)
    real = compiled._pwrite_all
    calls = [0]

    def fails(fd: int, data: memoryview | bytes, offset: int) -> None:
        calls[0] += 1
        if calls[0] == when or (when == 1000 and len(data) == len(compiled.MAGIC_HEAD) + 20):
            raise OSError(28, "No space left on device")
        real(fd, data, offset)

    monkeypatch.setattr(compiled, "_pwrite_all", fails)
    engine = open_engine([db])
    assert engine.scan(PAYLOAD).names == ["Compiled.Test.UNOFFICIAL"]
    assert type(engine.body) is list  # built in memory
    assert list(cache_dir.glob("*.engine")) == []
    assert [p for p in cache_dir.iterdir() if p.name.startswith(".tmp-")] == []


def test_concurrent_builders_share_the_directory(tmp_path: Path, cache_dir: Path) -> None:
    db = tmp_path / "t.ndb"
    db.write_text(SIG)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            results.append(open_engine([db]).scan(PAYLOAD).names)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == [["Compiled.Test.UNOFFICIAL"]] * 4
    (entry,) = cache_dir.glob("*.engine")
    read_engine(entry)
    assert [p for p in cache_dir.iterdir() if p.name.startswith(".tmp-")] == []


def test_pruning_never_counts_files_being_written(tmp_path: Path) -> None:
    """Writers' temporary files are newer than every entry: counting them removed finished
    entries that other builders were about to map (seen with four concurrent builders)."""
    from vigil.engine.matcher import cache as hs_cache

    for suffix, prune, keep in (
        (".engine", compiled._prune, compiled.KEEP),
        (".hsdb", hs_cache._prune, hs_cache.KEEP),
    ):
        d = tmp_path / suffix.strip(".")
        d.mkdir()
        entries = [d / f"e{i}{suffix}" for i in range(keep)]
        for i, entry in enumerate(entries):
            entry.write_bytes(b"x")
            os.utime(entry, (1000 + i, 1000 + i))
        temps = [d / f".tmp-{i}{suffix}" for i in range(3)]
        for temp in temps:
            temp.write_bytes(b"x")
        prune(d)
        assert all(p.exists() for p in entries + temps)


def test_a_bad_database_is_still_reported(tmp_path: Path, cache_dir: Path) -> None:
    db = tmp_path / "t.ndb"
    db.write_text("Broken:0:*:zz\n")
    with pytest.raises(Exception, match="t.ndb:1"):
        open_engine([db])
    with pytest.raises(Exception, match="no such file"):
        open_engine([tmp_path / "missing.ndb"])


def test_isolated_build_writes_the_entry_in_a_child(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "t.ndb"
    db.write_text(SIG)

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("the daemon process parsed the database itself")

    monkeypatch.setattr(compiled, "load_database", refuse)
    engine = open_engine([db], isolate=True)
    assert engine.scan(PAYLOAD).names == ["Compiled.Test.UNOFFICIAL"]
    assert type(engine.body).__name__ == "_Pickled"
    assert len(list(cache_dir.glob("*.engine"))) == 1


class _Spy:
    """Records the builder children open_engine starts, and how each one ended."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.procs: list[object] = []
        real = compiled._ChildBuild.start.__func__  # type: ignore[attr-defined]

        def start(cls: type, paths: object, options: object) -> object:
            child = real(cls, paths, options)
            self.procs.append(child._proc)
            return child

        monkeypatch.setattr(compiled._ChildBuild, "start", classmethod(start))


def test_a_builder_starts_before_the_key_only_for_files_never_built(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New database files: the child starts building before the key is known. Files
    already built: no child at all. Files changed back to a content already built (the
    entry exists, the files are new to the cache): the early child is killed unused."""
    db = tmp_path / "t.ndb"
    db.write_text(SIG)
    spy = _Spy(monkeypatch)
    keys: list[int] = []
    real_key = compiled.database_key

    def key(*a: object, **k: object) -> str | None:
        keys.append(len(spy.procs))  # children started before the key was computed
        return real_key(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(compiled, "database_key", key)
    engine = open_engine([db], isolate=True)
    assert engine.scan(PAYLOAD).names == ["Compiled.Test.UNOFFICIAL"]
    assert keys == [1] and len(spy.procs) == 1
    assert len(list(cache_dir.glob("*.seen"))) == 1
    open_engine([db], isolate=True)  # a hit on files already seen
    assert len(spy.procs) == 1
    os.utime(db, ns=(1, 1))  # same content, other files as far as stat can tell
    again = open_engine([db], isolate=True)
    assert again.scan(PAYLOAD).names == ["Compiled.Test.UNOFFICIAL"]
    assert len(spy.procs) == 2
    killed = spy.procs[1]
    assert killed.returncode == -9  # type: ignore[attr-defined]
    assert len(list(cache_dir.glob("*.engine"))) == 1
    assert len(list(cache_dir.glob("*.seen"))) == 2
    assert [p.name for p in cache_dir.iterdir() if p.name.startswith(".")] == []


def test_files_replaced_while_the_early_builder_ran_are_never_stored_stale(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The early child parsed the old file; the file is then replaced (as an update does)
    before the parent hashes it: the old engine must not be stored under the new key."""
    old_sig = "Old.Sig:0:*:" + b"OLD-CONTENT-MARK".hex() + "\n"
    new_sig = "New.Sig:0:*:" + b"NEW-CONTENT-MARK".hex() + "\n"
    data = b"xx OLD-CONTENT-MARK NEW-CONTENT-MARK yy"
    db = tmp_path / "daily.ndb"
    db.write_text(old_sig)
    real_key = compiled.database_key
    calls = 0

    def key(*a: object, **k: object) -> str | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            # the child has parsed the old file once it stores a compiled atom group
            deadline = time.monotonic() + 60
            while not list(cache_dir.glob("*.hsdb")) and time.monotonic() < deadline:
                time.sleep(0.01)
            (tmp_path / "new.ndb").write_text(new_sig)
            os.replace(tmp_path / "new.ndb", db)
        return real_key(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(compiled, "database_key", key)
    first = open_engine([db], isolate=True)
    assert first.scan(data).names == ["New.Sig.UNOFFICIAL"]
    monkeypatch.setattr(compiled, "database_key", real_key)
    again = open_engine([db], isolate=True)  # a hit: the entry for the new content
    assert again.scan(data).names == ["New.Sig.UNOFFICIAL"]


def test_no_early_builder_for_a_cache_that_cannot_be_written(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "t.ndb"
    db.write_text(SIG)
    open_engine([db], isolate=True)
    for marker in cache_dir.glob("*.seen"):
        marker.unlink()
    spy = _Spy(monkeypatch)
    monkeypatch.setattr(compiled, "_writable", lambda _d: False)
    for _ in range(2):
        assert open_engine([db], isolate=True).scan(PAYLOAD).names == ["Compiled.Test.UNOFFICIAL"]
    assert spy.procs == []


def test_isolated_build_reports_a_bad_database(tmp_path: Path, cache_dir: Path) -> None:
    db = tmp_path / "t.ndb"
    db.write_text(SIG + "Broken:0:*:zz\n")
    with pytest.raises(SignatureError, match=r"t\.ndb:2"):
        open_engine([db], isolate=True)
    assert list(cache_dir.glob("*.engine")) == []


def test_isolated_build_falls_back_when_the_cache_is_unwritable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("VIGIL_CACHE_DIR", str(blocker / "sub"))
    db = tmp_path / "t.ndb"
    db.write_text(SIG)
    engine = open_engine([db], isolate=True)
    assert engine.scan(PAYLOAD).names == ["Compiled.Test.UNOFFICIAL"]
    assert type(engine.body) is list
    assert "building in memory" in caplog.text


def test_chunked_atom_groups_scan_as_one_database(
    rich_db: Path, scanfiles: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group split into many Hyperscan databases (compiled while variants are still
    being added) gives the verdicts of one database per group, built and read back."""
    from vigil.engine.matcher import compile as matcher_compile
    from vigil.engine.matcher.compile import MAGIC_GROUP

    whole = Engine(load_database([rich_db]))
    assert all(len(g.dbs) == 1 for g in whole.matcher.groups.values())
    monkeypatch.setattr(matcher_compile, "CHUNK_ATOMS", 7)
    split = Engine(load_database([rich_db]))
    groups = split.matcher.groups
    assert len(groups[1].dbs) == -(-len(groups[1].by_atom) // 7) > 10
    assert len(groups[MAGIC_GROUP].dbs) == 1  # the magic's order matters: never split
    mapped = open_engine([rich_db])
    assert len(mapped.matcher.groups[1].dbs) == len(groups[1].dbs)
    for data in scan_targets(scanfiles):
        want = whole.scan(data, ALLMATCH).names
        assert split.scan(data, ALLMATCH).names == want
        assert mapped.scan(data, ALLMATCH).names == want
        assert mapped.scan(data).names == split.scan(data).names == whole.scan(data).names


def test_unchecked_read_still_refuses_a_foreign_or_damaged_header(
    tmp_path: Path, cache_dir: Path
) -> None:
    """check=False (an entry just written, or passed on by the daemon) skips only the
    sections' checksums: a file that is not an intact entry is still refused."""
    db = tmp_path / "t.ndb"
    db.write_text(SIG)
    open_engine([db])
    (entry,) = cache_dir.glob("*.engine")
    raw = bytearray(entry.read_bytes())
    assert read_engine(entry, check=False).scan(PAYLOAD).names == ["Compiled.Test.UNOFFICIAL"]
    raw[-3] ^= 0x55  # the header, written last
    entry.write_bytes(bytes(raw))
    with pytest.raises(compiled.CacheError, match="header checksum"):
        read_engine(entry, check=False)
    entry.write_bytes(bytes(raw[: len(raw) // 2]))
    with pytest.raises(compiled.CacheError, match="truncated header"):
        read_engine(entry, check=False)


def test_chunks_report_atoms_in_the_order_they_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A macro reads the first match of the subsignature before it, which the first of its
    forms (``::wa``: wide and ASCII) to be reported records: chunked databases must report
    atoms in the order they end, as one database does, or the verdict depends on where
    the chunks are cut."""
    from vigil.engine.matcher import compile as matcher_compile

    (tmp_path / "m.ndb").write_text("Macro.Five:0:$5$:eeffee\n")
    (tmp_path / "t.ldb").write_text(
        "Early.Never;Target:0;0&1;41424344;${0-0}6$\n"  # gives the ASCII atom the first id
        "Test.MacroAfterWide;Target:0;0&1;41424344::wa;${0-4}5$\n"
    )
    data = b"A\0B\0C\0D\0" + b"." * 42 + b"ABCD" + b"\xee\xff\xee" + b"." * 20
    whole = Engine(load_database([tmp_path])).scan(data, ALLMATCH).names
    monkeypatch.setattr(matcher_compile, "CHUNK_ATOMS", 1)
    split = Engine(load_database([tmp_path]))
    assert len(split.matcher.groups[0].dbs) > 1
    assert split.scan(data, ALLMATCH).names == whole


def test_logical_signatures_are_stored_as_their_lines(
    rich_db: Path, scanfiles: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """An .ldb signature is stored as its line and parsed again when first used; one
    without a line (YARA) as a pickle. Either way it reads back equal to the built one."""
    db = tmp_path / "db"
    shutil.copytree(rich_db, db)
    (db / "r.yar").write_text(
        'rule TwoOf { strings: $a = "alpha1" $b = "bravo2" $c = "charlie3" condition: 2 of them }\n'
    )
    (db / "legacy.db").write_text("Legacy.Line=6c65676163792d6c696e65\n")  # legacy-line
    built = Engine(load_database([db]))
    open_engine([db])
    mapped = open_engine([db])
    body_kinds = set(mapped.body._lines.tolist())  # type: ignore[attr-defined]
    assert body_kinds == {compiled.NDB_OTHER, compiled.DB_OTHER}
    assert list(mapped.body) == list(built.body)
    kinds = mapped.lsigs._lines  # type: ignore[attr-defined]
    assert set(kinds.tolist()) == {0, compiled.LINE_OTHER}
    yara = {i for i, src in enumerate(built.lsig_sources or ()) if src is None}
    assert {i for i, k in enumerate(kinds.tolist()) if k == 0} == yara
    assert "YARA.TwoOf.UNOFFICIAL" in {built.lsigs[i].name for i in yara}
    assert list(mapped.lsigs) == list(built.lsigs)
    for data in (b"xx alpha1 yy charlie3", b"a legacy-line here"):
        assert mapped.scan(data, ALLMATCH).names == built.scan(data, ALLMATCH).names != []


def test_stored_lines_keep_the_official_flag() -> None:
    """The flag decides the name (".UNOFFICIAL" or not), so it is stored with the line,
    and so is the format of a body signature's line (.ndb-style or legacy .db)."""
    from vigil.engine.signatures.ldb import parse_ldb_line
    from vigil.engine.signatures.ndb import parse_db, parse_ndb

    line = "Sig.Name;Engine:51-255,Target:0;0&1;616263;646566"
    sigs = [parse_ldb_line(line, True), parse_ldb_line(line, False)]
    blob, offsets, kinds = compiled._stored(
        sigs, [(line, True), (line, False)], compiled._line_kind_ldb
    )
    assert kinds.tolist() == [compiled.LINE_OFFICIAL, compiled.LINE_OTHER]
    stored = compiled._Pickled(memoryview(blob), offsets, kinds)
    assert [s.name for s in stored] == ["Sig.Name", "Sig.Name.UNOFFICIAL"]
    assert list(stored) == sigs
    body_line, legacy_line = "Body.Sig:0:*:616263646566", "Legacy.Sig=616263646566"
    body = [
        parse_ndb(body_line, "t", official=True)[0],
        parse_ndb(body_line, "t", official=False)[0],
        parse_db(legacy_line, "t", official=True)[0],
        parse_db(legacy_line, "t", official=False)[0],
    ]
    sources = [(body_line, True, False), (body_line, False, False)]
    sources += [(legacy_line, True, True), (legacy_line, False, True)]
    blob, offsets, kinds = compiled._stored(body, sources, compiled._line_kind_body)
    assert kinds.tolist() == [3, 4, 5, 6]
    assert list(compiled._Pickled(memoryview(blob), offsets, kinds)) == body
    assert body[0].name == "Body.Sig" and body[3].name == "Legacy.Sig.UNOFFICIAL"
    # no sources (an engine assembled by hand): pickles
    blob, offsets, kinds = compiled._stored(sigs, None, compiled._line_kind_ldb)
    assert kinds.tolist() == [0, 0]
    assert list(compiled._Pickled(memoryview(blob), offsets, kinds)) == sigs


def test_workers_check_an_entry_replaced_since_the_daemon_mapped_it(
    tmp_path: Path, cache_dir: Path
) -> None:
    """Workers skip the sections' checksums only for the very file the daemon mapped: one
    put at that path since (another build, a restore, damage) is checked like any other."""
    import pickle

    from vigil.server.workers import WorkerPool

    db = tmp_path / "t.ndb"
    db.write_text(SIG)
    open_engine([db])
    engine = open_engine([db])
    assert engine.source is not None
    trusted = []
    for replace in (False, True):
        if replace:
            copy = engine.source.with_name("copy")
            shutil.copy(engine.source, copy)
            os.replace(copy, engine.source)
        pool = WorkerPool(1)
        pool.attach(engine)
        try:
            limits, same = pickle.loads(pool._limits_blob)
            assert limits == engine.limits
            trusted.append(same)
        finally:
            os.close(pool._entry_fd)
    assert trusted == [True, False]


def test_the_key_covers_every_block_of_every_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files are hashed in blocks on several threads: any byte of any block (and the file
    boundaries) still changes the key; an empty file is fine; an unreadable one gives no
    key."""
    monkeypatch.setattr(compiled, "KEY_BLOCK", 7)
    options = DatabaseOptions()
    db = tmp_path / "db"
    db.mkdir()
    (db / "a.ndb").write_bytes(bytes(range(50)))
    (db / "b.ndb").write_bytes(b"")
    keys = {compiled.database_key([db], options)}
    for at in (0, 6, 7, 49):
        raw = bytearray(range(50))
        raw[at] ^= 1
        (db / "a.ndb").write_bytes(bytes(raw))
        keys.add(compiled.database_key([db], options))
    (db / "a.ndb").write_bytes(bytes(range(49)))  # one block fewer... or a shorter last one
    keys.add(compiled.database_key([db], options))
    (db / "a.ndb").write_bytes(bytes(range(50)))
    assert compiled.database_key([db], options) in keys
    assert None not in keys and len(keys) == 6
    (db / "a.ndb").chmod(0)
    if os.geteuid() != 0:
        assert compiled.database_key([db], options) is None
