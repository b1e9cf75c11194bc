"""``vigil sigtool --test-sigs DB FILE``: golden output taken from sigtool 1.4.6, and a
differential run against Debian's sigtool on the same inputs when it is installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.test_sigtool import SIGTOOL, real, sigtool

TEXT = b"hello world EICAR-ish test string AAAA hello\n"
BIN = b"abcXabcYabcZ hello HELLO h\x00e\x00l\x00l\x00o\x00 end"
NDB = b"""Hello.Body:0:*:68656c6c6f
World.Off:0:6:776f726c64
NoMatch:0:*:deadbeef
"""
LDB = b"""Case.I;Engine:51-255,Target:0;0;68656c6c6f::i
Both.WA;Engine:51-255,Target:0;0|1;68656c6c6f::wa;616263
Off.L;Target:0;0;EOF-20:68656c6c6f
Pcre.X;Target:0;0&1;616263;0/ab+c/i
"""
BAD = b"""Hello.Body:0:*:68656c6c6f\r
Wild:0:*:61??63
Star:0:*:61*5a
Alt:0:*:(58|59)616263
Pe.Only:1:*:616263
"""
DATABASES = {"t.ndb": NDB, "t.ldb": LDB, "bad.ndb": BAD, "e.db": b"Eq.Sig=616263\n"}
TARGETS = {"t.txt": TEXT, "u.bin": BIN, "empty.txt": b"", "over.txt": b"aaaa abab hello"}


@pytest.fixture
def work(tmp_path: Path) -> Path:
    for name, data in {**DATABASES, **TARGETS}.items():
        (tmp_path / name).write_bytes(data)
    return tmp_path


def test_body_signatures(monkeypatch: pytest.MonkeyPatch, work: Path) -> None:
    r = sigtool(monkeypatch, work, "--test-sigs", "t.ndb", "t.txt")
    assert r.rc == 0
    assert r.out.decode() == (
        "VIRUS NAME: Hello.Body\nTARGET TYPE: ANY FILE\nOFFSET: *\nSUBSIG: 68656c6c6f\n"
        "MATCH: ** YES ** (2 matches at offsets: 39 0)\n"
        "VIRUS NAME: World.Off\nTARGET TYPE: ANY FILE\nOFFSET: 6\nSUBSIG: 776f726c64\n"
        "MATCH: ** YES/CHECK OFFSET ** (1 match at offset: 6)\n"
        "VIRUS NAME: NoMatch\nTARGET TYPE: ANY FILE\nOFFSET: *\nSUBSIG: deadbeef\n"
        "MATCH: ** NO **\n"
    )


def test_logical_signatures_ignore_modifiers(monkeypatch: pytest.MonkeyPatch, work: Path) -> None:
    r = sigtool(monkeypatch, work, "--test-sigs", "t.ldb", "u.bin")
    assert r.rc == 0
    out = r.out.decode()
    assert out.startswith(
        "VIRUS NAME: Case.I\nTDB: Engine:51-255,Target:0\nLOGICAL EXPRESSION: 0\n"
        " * SUBSIG ID 0\n +-> OFFSET: ANY\n +-> SIGMOD: NOCASE\n +-> SUBSIG: 68656c6c6f\n"
        "MATCH: ** YES/CHECK OFFSET ** (1 match at offset: 13)\n"
    )
    assert " +-> SIGMOD: WIDE ASCII\n" in out
    assert "(3 matches at offsets: 8 4 0)\n" in out
    assert " +-> OFFSET: EOF-20\n" in out
    assert out.endswith(
        " +-> SUBSIG: 0/ab+c/i\nMATCH: ** YES/CHECK OFFSET ** (1 match at offset: 0)\n"
    )


def test_unloadable_patterns_and_crlf(monkeypatch: pytest.MonkeyPatch, work: Path) -> None:
    r = sigtool(monkeypatch, work, "--test-sigs", "bad.ndb", "u.bin")
    assert r.rc == 0
    out = r.out.decode()
    assert "SUBSIG: 68656c6c6f\nMATCH: ** YES ** (1 match at offset: 13)\n" in out
    assert "SUBSIG: 61??63\nVIRUS NAME: Star\n" in out  # no MATCH line for either
    assert "SUBSIG: 61*5a\nVIRUS NAME: Alt\n" in out
    assert "MATCH: ** YES ** (2 matches at offsets: 7 3)\n" in out
    assert out.endswith("TARGET TYPE: PE\nOFFSET: *\nSUBSIG: 616263\n"
                        "MATCH: ** YES ** (3 matches at offsets: 8 4 0)\n")  # fmt: skip
    assert r.err.count("ERROR: matchsig: Can't parse signature") == 2


def test_overlapping_matches_and_db_format(monkeypatch: pytest.MonkeyPatch, work: Path) -> None:
    (work / "o.ndb").write_bytes(b"Over:0:*:6161\n")
    r = sigtool(monkeypatch, work, "--test-sigs", "o.ndb", "over.txt")
    assert r.out.decode().endswith("(3 matches at offsets: 2 1 0)\n")
    r = sigtool(monkeypatch, work, "--test-sigs", "e.db", "u.bin")
    assert r.out.decode() == (
        "VIRUS NAME: Eq.Sig\nSUBSIG: 616263\nMATCH: ** YES ** (3 matches at offsets: 8 4 0)\n"
    )


def test_empty_target_prints_no_match_lines(monkeypatch: pytest.MonkeyPatch, work: Path) -> None:
    r = sigtool(monkeypatch, work, "--test-sigs", "t.ndb", "empty.txt")
    assert r.rc == 0
    assert b"MATCH" not in r.out and r.out.count(b"VIRUS NAME") == 3


def test_stops_at_empty_line_and_unsupported_lines(
    monkeypatch: pytest.MonkeyPatch, work: Path
) -> None:
    (work / "gap.ndb").write_bytes(b"A:0:*:68656c6c6f\n\nB:0:*:776f726c64\n")
    r = sigtool(monkeypatch, work, "--test-sigs", "gap.ndb", "t.txt")
    assert r.rc == 0 and b"VIRUS NAME: A\n" in r.out and b"VIRUS NAME: B" not in r.out
    (work / "c.ndb").write_bytes(b"# comment\nA:0:*:68656c6c6f\n")
    r = sigtool(monkeypatch, work, "--test-sigs", "c.ndb", "t.txt")
    assert r.rc == 1 and r.out == b"decodesig: Not supported signature format\n"
    (work / "h.hdb").write_bytes(b"0123:4:Hash.Sig\n")
    r = sigtool(monkeypatch, work, "--test-sigs", "h.hdb", "t.txt")
    assert r.rc == 1 and r.out == b"TOKENS COUNT: 3\n"


def test_argument_errors(monkeypatch: pytest.MonkeyPatch, work: Path) -> None:
    r = sigtool(monkeypatch, work, "--test-sigs", "t.ndb")
    assert r.rc == 1 and "ERROR: --test-sigs requires two arguments" in r.err
    r = sigtool(monkeypatch, work, "--test-sigs", "missing.ndb", "t.txt")
    assert r.rc == 1 and "ERROR: testsigs: Can't open file missing.ndb" in r.err
    r = sigtool(monkeypatch, work, "--test-sigs=t.ndb", "missing.txt")
    assert r.rc == 1 and "Can't open file missing.txt" in r.err


@pytest.mark.differential
@pytest.mark.skipif(SIGTOOL is None, reason="/usr/bin/sigtool is not installed")
@pytest.mark.parametrize("db", sorted(DATABASES))
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_differential_test_sigs(
    monkeypatch: pytest.MonkeyPatch, work: Path, db: str, target: str
) -> None:
    mine = sigtool(monkeypatch, work, "--test-sigs", db, target)
    theirs = real(work, f"--test-sigs={db}", target)
    assert (mine.rc, mine.out) == (theirs.rc, theirs.out)
