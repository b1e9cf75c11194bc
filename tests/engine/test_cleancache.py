"""The clean-result cache: identical clean objects are scanned once, and nothing that could
be found elsewhere is ever taken for clean."""

from __future__ import annotations

import io
import threading
import zipfile
from pathlib import Path

import pytest

from vigil.engine.cleancache import CleanCache
from vigil.engine.database import load_database
from vigil.engine.limits import Limits
from vigil.engine.scanner import Engine, ScanOptions

PAYLOAD = b"-- VIGIL-CLEANCACHE-PAYLOAD --"
NDB = "Cache.Payload:0:*:" + PAYLOAD.hex() + "\n"
# alerts on the payload only inside a ZIP (the container is part of the cache key)
LDB = "Cache.InZip;Engine:51-255,Container:CL_TYPE_ZIP,Target:0;0;" + b"INZIP-ONLY".hex() + "\n"


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _engine(tmp_path: Path, **limits: int | bool) -> Engine:
    (tmp_path / "c.ndb").write_text(NDB)
    (tmp_path / "c.ldb").write_text(LDB)
    return Engine(load_database([tmp_path / "c.ndb", tmp_path / "c.ldb"]), Limits(**limits))  # type: ignore[arg-type]


def test_identical_members_are_scanned_once(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    member = bytes(range(256)) * 4096
    data = _zip({f"m{i}": member for i in range(20)})
    assert engine.scan(data).names == []
    cache = engine.clean_cache
    assert cache is not None
    assert cache.hits == 19  # the first member scanned, the other 19 skipped
    assert len(cache) == 2  # the member and the ZIP
    assert engine.scan(data).names == []
    assert cache.hits == 20  # the whole ZIP at once


def test_cached_clean_content_still_alerts_where_its_container_matters(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    content = b"xx INZIP-ONLY xx"
    assert engine.scan(content).names == []  # clean at the top: cached
    assert engine.scan(_zip({"a": content})).names == ["Cache.InZip.UNOFFICIAL"]


def test_a_layer_cut_by_recursion_is_not_cached(tmp_path: Path) -> None:
    engine = _engine(tmp_path, max_recursion=2)
    inner = _zip({"p": PAYLOAD})
    outer = _zip({"inner.zip": inner})
    assert engine.scan(outer).names == []  # the payload sits too deep to be reached
    assert engine.scan(inner).names == ["Cache.Payload.UNOFFICIAL"]


def test_a_layer_cut_by_max_files_is_not_cached(tmp_path: Path) -> None:
    engine = _engine(tmp_path, max_files=4)
    inner = _zip({"a": b"one", "p": PAYLOAD})
    # MaxFiles is spent before the payload: root, x1, x2, inner.zip, then "a" is the 5th
    assert engine.scan(_zip({"x1": b"1", "x2": b"2", "inner.zip": inner})).names == []
    # the same inner.zip, under the same kind of container, with files to spare
    assert engine.scan(_zip({"inner.zip": inner})).names == ["Cache.Payload.UNOFFICIAL"]


def test_a_layer_cut_by_max_scansize_is_not_cached(tmp_path: Path) -> None:
    big = bytes(range(256)) * 10
    inner = _zip({"a": big, "p": PAYLOAD})
    first = _zip({"big": big, "inner.zip": inner})
    # room for the root, "big" and inner.zip, not for inner.zip's members as well
    limit = len(first) + len(big) + len(inner) + 10
    engine = _engine(tmp_path, max_scansize=limit, max_filesize=0)
    assert engine.scan(first).names == []
    assert engine.scan(_zip({"inner.zip": inner})).names == ["Cache.Payload.UNOFFICIAL"]


def test_detections_are_never_cached(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    for _ in range(3):
        assert engine.scan(PAYLOAD).names == ["Cache.Payload.UNOFFICIAL"]
        assert engine.scan(_zip({"p": PAYLOAD})).names == ["Cache.Payload.UNOFFICIAL"]
    all_match = ScanOptions(allmatch=True)
    both = _zip({"a": b"clean", "p": PAYLOAD, "b": b"clean"})
    assert engine.scan(both, all_match).names == ["Cache.Payload.UNOFFICIAL"]


def test_disabled_cache(tmp_path: Path) -> None:
    engine = _engine(tmp_path, clean_cache=False)
    assert engine.clean_cache is None
    assert engine.scan(_zip({"a": b"x", "b": b"x"})).names == []


def test_least_recently_used_entries_go_first() -> None:
    cache = CleanCache(max_entries=3)
    for key in "abc":
        cache.add(key)
    assert "a" in cache  # now the most recent
    cache.add("d")
    assert "b" not in cache
    assert all(k in cache for k in "acd")
    assert len(cache) == 3
    cache.clear()
    assert len(cache) == 0


def test_concurrent_scans_share_the_cache(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    clean = _zip({f"m{i}": b"same" * 1000 for i in range(10)})
    dirty = _zip({"a": b"same" * 1000, "p": PAYLOAD})
    seen: list[list[str]] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(20):
            a, b = engine.scan(clean).names, engine.scan(dirty).names
            with lock:
                seen.extend([a, b])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen.count([]) == 80
    assert seen.count(["Cache.Payload.UNOFFICIAL"]) == 80


@pytest.mark.parametrize("allmatch", [False, True])
def test_verdicts_equal_with_and_without_the_cache(tmp_path: Path, allmatch: bool) -> None:
    cached, plain = _engine(tmp_path), _engine(tmp_path, clean_cache=False)
    opts = ScanOptions(allmatch=allmatch)
    samples = [
        _zip({"a": b"x" * 100, "b": b"x" * 100, "c": PAYLOAD, "d": b"x" * 100}),
        _zip({"n": _zip({"a": b"x" * 100, "p": PAYLOAD}), "m": b"x" * 100}),
        b"x" * 100,
        _zip({"z": b"INZIP-ONLY", "y": b"INZIP-ONLY"}),
    ]
    for _ in range(2):
        for data in samples:
            assert cached.scan(data, opts).names == plain.scan(data, opts).names
