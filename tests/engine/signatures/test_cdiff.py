"""CDIFF scripts: the ClamAV test chain applies, signatures check, bad scripts fail by line."""

from __future__ import annotations

import gzip

import pytest

from tests.conftest import UNIT
from vigil.engine.signatures.cdiff import (
    apply_cdiff,
    make_cdiff,
    parse_cdiff,
    script_of,
    verify_cdiff,
)
from vigil.engine.signatures.cvd import read_cvd
from vigil.errors import DatabaseError, SignatureError

FRESH = UNIT / "freshclam_testfiles"


def _members(version: int) -> dict[str, bytes]:
    path = FRESH / f"test-{version}.cvd"
    return dict(read_cvd(path.read_bytes(), path.name).members)


@pytest.mark.parametrize("version", [2, 3, 4, 5, 6])
def test_test_chain_applies(version: int) -> None:
    raw = (FRESH / f"test-{version}.cdiff").read_bytes()
    got = apply_cdiff(_members(version - 1), raw, f"test-{version}.cdiff")
    assert got == _members(version)


@pytest.mark.parametrize("version", [2, 3, 4, 5, 6])
def test_footer_signature(version: int) -> None:
    raw = (FRESH / f"test-{version}.cdiff").read_bytes()
    parsed = parse_cdiff(raw, "x")
    assert parsed.version == version
    assert verify_cdiff(parsed)
    forged = raw[:-3] + (b"a" if raw[-3:-2] != b"a" else b"b") + raw[-2:]
    assert not verify_cdiff(parse_cdiff(forged, "x"))


def test_script_forms_are_equivalent() -> None:
    raw = (FRESH / "test-2.cdiff").read_bytes()
    text = script_of(raw, "x")
    old = _members(1)
    assert apply_cdiff(old, text, "x") == apply_cdiff(old, gzip.compress(text), "x")


def test_parse_rejects_bad_files() -> None:
    raw = (FRESH / "test-2.cdiff").read_bytes()
    with pytest.raises(DatabaseError, match="ClamAV-Diff"):
        parse_cdiff(b"garbage", "g.cdiff")
    with pytest.raises(DatabaseError, match="truncated"):
        parse_cdiff(raw[:100], "t.cdiff")
    with pytest.raises(DatabaseError, match="header says"):
        parse_cdiff(raw.replace(b":479:", b":478:", 1), "s.cdiff")


OLD = {"a.ndb": b"one\ntwo\nthree\n", "b.hdb": b"x\n"}


@pytest.mark.parametrize(
    ("script", "line", "reason"),
    [
        ("OPEN a.ndb\nDEL 2 tw\nDEL 9 x\nCLOSE\n", 3, "has no line 9"),
        ("OPEN a.ndb\nXCHG 1 uno 1\nCLOSE\n", 2, "not the expected one"),
        ("OPEN a.ndb\nOPEN b.hdb\n", 2, "OPEN while a.ndb is open"),
        ("OPEN a.ndb\nADD z\n", 1, "never closed"),
        ("ADD z\n", 1, "without an open database"),
        ("FROB a\n", 1, "unknown command"),
        ("UNLINK c.ndb\n", 1, "missing database"),
        ("OPEN ../etc\n", 1, "bad database name"),
        ("OPEN c.ndb\nDEL 1 x\nCLOSE\n", 2, "does not exist"),
        ("OPEN a.ndb\nDEL x one\nCLOSE\n", 2, "bad line number"),
        ("OPEN a.ndb\nDEL 1 one\nDEL 1 one\nCLOSE\n", 3, "edited twice"),
    ],
)
def test_bad_scripts_name_the_line(script: str, line: int, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason) as info:
        apply_cdiff(OLD, script.encode(), "s.script")
    assert info.value.lineno == line
    assert str(info.value).startswith(f"s.script:{line}: ")


def test_commands() -> None:
    script = b"# comment\nOPEN a.ndb\nXCHG 2 tw TWO\nDEL 3 three\nADD four\nCLOSE\n"
    script += b"MOVE a.ndb b.hdb 1 one 1 one\nUNLINK b.hdb\nOPEN c.ndb\nADD new\nCLOSE\n"
    got = apply_cdiff(OLD, script, "s")
    assert got == {"a.ndb": b"TWO\nfour\n", "c.ndb": b"new\n"}
    assert OLD["a.ndb"] == b"one\ntwo\nthree\n"


@pytest.mark.parametrize(
    "new",
    [
        {"a.ndb": b"one\ntwo\nthree\nfour\n", "b.hdb": b"x\n"},
        {"a.ndb": b"zero\none\ntwo\nthree\n"},
        {"a.ndb": b"one\nmid\ntwo\nthree\n", "b.hdb": b"x\n", "c.ldb": b"n\n"},
        {"a.ndb": b"three\n", "b.hdb": b"y\nx\nz\n"},
        {"a.ndb": b"", "b.hdb": b"x\n"},
    ],
)
def test_make_cdiff_round_trips(new: dict[str, bytes]) -> None:
    script = make_cdiff(OLD, new)
    assert apply_cdiff(OLD, script, "made") == new


def test_make_cdiff_matches_test_chain() -> None:
    old, new = _members(4), _members(5)
    assert apply_cdiff(old, make_cdiff(old, new), "made") == new
