"""Loading with the hash files parsed last (the builder's order, so that Hyperscan compiles
meanwhile) gives the database load_database gives, and the same first error."""

from __future__ import annotations

import gzip
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import OFFICIAL, UNIT
from vigil.engine.database import Database, load_database, load_database_deferred
from vigil.errors import SignatureError


def _fingerprint(db: Database) -> tuple[object, ...]:
    tables: list[object] = []
    if db.hashes is not None:
        for key, t in sorted(db.hashes.tables.items()):
            tables.append(
                (
                    key,
                    t.digests.tobytes(),
                    np.asarray(t.sizes).tobytes(),
                    np.asarray(t.names).tobytes(),
                )
            )
        blob, offsets = db.hashes.names.parts()
        tables.append((bytes(blob), offsets.tobytes()))
    return (
        db.signatures,
        [s.name for s in db.body],
        [s.name for s in db.logical],
        [s.name for s in db.cdb],
        db.notices,
        db.files,
        tables,
    )


def _hash_lines(rng: random.Random, n: int, tag: str) -> str:
    out = []
    for i in range(n):
        width = rng.choice((16, 20, 32))
        out.append(f"{rng.randbytes(width).hex()}:{rng.randint(1, 99999)}:{tag}.{i}")
    return "\n".join(out) + "\n"


@pytest.fixture
def mixed_db(tmp_path: Path) -> Path:
    """Hash, body, logical, container-metadata and ignore files side by side."""
    rng = random.Random(4)
    d = tmp_path / "db"
    d.mkdir()
    (d / "a.hdb").write_text(_hash_lines(rng, 300, "Hdb"))
    (d / "b.hsb").write_text(_hash_lines(rng, 300, "Hsb"))
    (d / "c.mdb").write_text(
        "".join(f"{rng.randint(1, 9999)}:{rng.randbytes(16).hex()}:Mdb.{i}\n" for i in range(50))
    )
    (d / "d.ign2").write_text("Hsb.7\nHdb.3\n")
    shutil.copy(UNIT / "clamav.hdb", d / "unit.hdb")
    lines = gzip.decompress((OFFICIAL / "main.ldb.gz").read_bytes()).splitlines(True)
    (d / "official.ldb").write_bytes(b"".join(lines[:500]))
    lines = gzip.decompress((OFFICIAL / "daily.ndb.gz").read_bytes()).splitlines(True)
    (d / "official.ndb").write_bytes(b"".join(lines[:500]))
    return d


def test_same_database_as_load_database(mixed_db: Path) -> None:
    want = load_database([mixed_db])
    partial, finish = load_database_deferred([mixed_db])
    assert partial.hashes is None  # nothing hashed yet
    got = finish()
    assert got is partial
    assert _fingerprint(got) == _fingerprint(want)
    assert want.hashes is not None and sum(len(t.sizes) for t in want.hashes.tables.values()) > 600


def test_a_bad_hash_file_is_reported_by_finish(mixed_db: Path) -> None:
    with (mixed_db / "a.hdb").open("a") as fh:
        fh.write("not:a:valid:hash:line:at:all\n")
    with pytest.raises(SignatureError) as want:
        load_database([mixed_db])
    _, finish = load_database_deferred([mixed_db])
    with pytest.raises(SignatureError) as got:
        finish()
    assert str(got.value) == str(want.value)
    assert got.value.lineno == 301


@pytest.mark.parametrize("first_bad", ["hash", "body"])
def test_the_first_error_in_file_order_wins(mixed_db: Path, first_bad: str) -> None:
    """A bad hash file before a bad body file is reported first, as in one pass."""
    with (mixed_db / "official.ndb").open("a") as fh:
        fh.write("Broken.Ndb:0:*:zz\n")
    if first_bad == "hash":
        with (mixed_db / "a.hdb").open("a") as fh:
            fh.write("broken\n")
    with pytest.raises(SignatureError) as want:
        load_database([mixed_db])
    with pytest.raises(SignatureError) as got:
        load_database_deferred([mixed_db])
    assert str(got.value) == str(want.value)
    assert Path(got.value.path).name == ("a.hdb" if first_bad == "hash" else "official.ndb")
