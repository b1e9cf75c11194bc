"""The test vectors of signatures.md §10, through the whole engine (load, compile, scan)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.engine.database import load_database
from vigil.engine.scanner import Engine, ScanOptions
from vigil.errors import SignatureError

PAD = b"\x00\x01\x02\xff\xfe\x80"  # binary padding: clamscan ignores files of <= 5 bytes


def engine_for(tmp_path: Path, name: str, text: str) -> Engine:
    db = tmp_path / name
    db.write_text(text + "\n", encoding="latin-1")
    return Engine(load_database([db]))


def names(engine: Engine, data: bytes, allmatch: bool = True) -> list[str]:
    return engine.scan(data, ScanOptions(allmatch=allmatch)).names


def matches(tmp_path: Path, name: str, sig: str, data: bytes) -> bool:
    return bool(names(engine_for(tmp_path, name, sig), data + PAD))


WILDCARDS = [
    ("T1", "Test_1:0:*:64[4-4]61616161{2}6262[3-6]65", b"daaaaaaaaddbbbbbcce", True),
    ("T2", "Test_2:0:*:6262(6162|6364|6265|6465){2}6363", b"ebbbbbbbbeecccccddf", True),
    ("T3", "Test_3:0:*:616161*63636363*6565", b"aaaabbbbcccccdddddeeee", True),
    ("T4", "Test_4:0:*:6f??727374????7879", b"oprstuwxy", True),
    (
        "T5",
        "Test_5:0:*:6463{2-3}64646162(63|64|65)6361*6462????6261{-1}6362",
        b"abdcabcddabccadbbdbacb",
        True,
    ),
    (
        "T6",
        "Test_6:0:*:62????65666768*696a6b6162{2-3}656667[1-3]6b",
        b"abcdefghijkabcdefghijk",
        True,
    ),
    ("T7", "Test_7:0:*:6?6164?26?62{3}?26162?361", b"abcadbabcadbabcacb", True),
    (
        "T8",
        "Test_8:0:*:6464646464646464646464646464646464646464(35|36)",
        b"\x01" * 23 + b"d" * 20 + b"5" + b"\x01" * 13,
        True,
    ),
    ("T9a", "Alt1:0:*:6161(62|63|64)6161", b"aabaa", True),
    ("T9b", "Alt1:0:*:6161(62|63|64)6161", b"aacaa", True),
    ("T9c", "Alt1:0:*:6161(62|63|64)6161", b"aadaa", True),
    ("T10", "Alt1:0:*:6161(62|63|64)6161", b"aaeaa", False),
    ("T11a", "Alt2:0:*:6161(626262|636363|646464)6161", b"aabbbaa", True),
    ("T11b", "Alt2:0:*:6161(626262|636363|646464)6161", b"aadddaa", True),
    ("T12a", "Alt3:0:*:6161(6262|63636363|6464646464)6161", b"aabbaa", True),
    ("T12b", "Alt3:0:*:6161(6262|63636363|6464646464)6161", b"aaccccaa", True),
    ("T12c", "Alt3:0:*:6161(6262|63636363|6464646464)6161", b"aadddddaa", True),
    ("T13a", "Alt4:0:*:6161(6a6a|66(6767|6868)66|6969)6161", b"aajjaa", True),
    ("T13b", "Alt4:0:*:6161(6a6a|66(6767|6868)66|6969)6161", b"aafggfaa", True),
    ("T13c", "Alt4:0:*:6161(6a6a|66(6767|6868)66|6969)6161", b"aafhhfaa", True),
    ("T13d", "Alt4:0:*:6161(6a6a|66(6767|6868)66|6969)6161", b"aaiiaa", True),
    ("T14a", "Neg:0:*:6161!(62|63)6161", b"aadaa", True),
    ("T14b", "Neg:0:*:6161!(62|63)6161", b"aabaa", False),
    ("T47a", "R1:0:*:4141{2-3}4242", b"AAxxBB", True),
    ("T47b", "R1:0:*:4141{2-3}4242", b"AAxxxBB", True),
    ("T47c", "R1:0:*:4141{2-3}4242", b"AAxBB", False),
    ("T47d", "R1:0:*:4141{2-3}4242", b"AAxxxxBB", False),
    ("T48a", "R2:0:*:4141{3-}4242", b"AAxxxBB", True),
    ("T48b", "R2:0:*:4141{3-}4242", b"AAxxBB", False),
    ("T49a", "R3:0:*:4141{-2}4242", b"AABB", True),
    ("T49b", "R3:0:*:4141{-2}4242", b"AAxxBB", True),
    ("T49c", "R3:0:*:4141{-2}4242", b"AAxxxBB", False),
    ("T50a", "R4:0:*:4141*4242", b"BBAA", False),
    ("T50b", "R4:0:*:4141*4242", b"AABB", True),
]


@pytest.mark.parametrize(
    ("case", "sig", "data", "expected"), WILDCARDS, ids=[w[0] for w in WILDCARDS]
)
def test_wildcards(tmp_path: Path, case: str, sig: str, data: bytes, expected: bool) -> None:
    assert matches(tmp_path, "t.ndb", sig, data) is expected


MODIFIERS = [
    ("T15", "6161616161", b"aaaaa", True),
    ("T16", "6262626262", b"bBbBb", False),
    ("T17", "6363636363::i", b"cCcCc", True),
    ("T18", "6464646464::f", b"ddddd&e", True),
    ("T19", "6565656565::f", b"s&eeeee&e", True),
    ("T20", "6666666666::f", b"s&fffff", True),
    ("T21", "6767676767::f", b"sggggg", False),
    ("T22", "6868686868::f", b"hhhhhe", False),
    ("T23a", "(W)6969696969", b"iiiii", True),
    ("T23b", "6a6a6a(W)6a6a", b"jjj&jj", True),
    ("T23c", "6b6b6b6b6b(W)", b"kkkkk", True),
    ("T24a", "(W)6c6c6c6c6c", b"slllll", False),
    ("T24b", "6d6d6d6d6d(W)", b"mmmmme", False),
    ("T25a", "6e6e6e6e6e::fi", b"nNnNn", True),
    ("T25b", "6f6f6f6f6f::fi", b"soOoOo", False),
    ("T26", "7171717171::w", b"q\0q\0q\0q\0q\0", True),
    ("T27", "7272727272::wi", b"r\0R\0r\0R\0r\0", True),
    ("T28a", "7474747474::wa", b"t\0t\0t\0t\0t\0", True),
    ("T28b", "7474747474::wa", b"ttttt", True),
]


@pytest.mark.parametrize(
    ("case", "sub", "data", "expected"), MODIFIERS, ids=[m[0] for m in MODIFIERS]
)
def test_modifiers(tmp_path: Path, case: str, sub: str, data: bytes, expected: bool) -> None:
    sig = f"{case};Engine:81-255,Target:0;0;{sub}"
    assert matches(tmp_path, "t.ldb", sig, data) is expected


def test_text_is_also_scanned_lower_cased(tmp_path: Path) -> None:
    """T16 as observed on 1.4.6: a text file is matched through its normalised copy."""
    eng = engine_for(tmp_path, "t.ldb", "T16;Engine:81-255,Target:0;0;6262626262")
    assert names(eng, b"xbBbBbx") == ["T16.UNOFFICIAL"]
    assert names(eng, b"xbBbBbx" + PAD) == []


PCRE = [
    ("T29", "0", "basic", "r", b"notbasic", True),
    ("T30", "0", "true", "", b"nottrue", False),
    ("T31", "3,8", "12345678", "e", b"not12345678truly", True),
    ("T32", "4,8", "23456789", "e", b"not23456789truly", False),
    ("T33", "3,7", "34567890", "e", b"not34567890truly", False),
    ("T34", "2,2", "apie", "re", b"notapietruly", False),
    ("T35", "2,6", "atre", "re", b"notatretruly", True),
    ("T36", "2,6", "asad", "e", b"notasadtruly", True),
]


@pytest.mark.parametrize(
    ("case", "off", "rx", "flags", "data", "expected"), PCRE, ids=[p[0] for p in PCRE]
)
def test_pcre(
    tmp_path: Path, case: str, off: str, rx: str, flags: str, data: bytes, expected: bool
) -> None:
    sig = f"P;Engine:81-255,Target:0;0&1;6e6f74;{off}:0/{rx}/{flags}"
    assert matches(tmp_path, "t.ldb", sig, data) is expected


def test_pcre_escaped_slash_and_colon(tmp_path: Path) -> None:
    """T37."""
    eng = engine_for(
        tmp_path, "t.ldb", "regex;Engine:81-255,Target:0;1;68656c6c6f20;0/hello blee\\/blah: bleh/"
    )
    assert names(eng, b"hello blee/blah: bleh", allmatch=False) == ["regex.UNOFFICIAL"]


def test_pcre_offsets_and_case(tmp_path: Path) -> None:
    """T38-T40."""
    base = "L;Engine:81-255,Target:0;0&1;68656c6c6f20;"
    assert not names(engine_for(tmp_path, "a.ldb", base + "5:0/hello blee/"), b"MZ hello blee")
    assert names(engine_for(tmp_path, "b.ldb", base + "5:0/llo blee/"), b"MZ hello blee")
    data = b"MZ hello blee / BlAh" + PAD
    assert not names(engine_for(tmp_path, "c.ldb", base + "0/blah/"), data)
    assert names(engine_for(tmp_path, "d.ldb", base + "0/blah/i"), data)


def test_offsets(tmp_path: Path) -> None:
    """T41-T43."""
    eng = engine_for(tmp_path, "a.ndb", "Off0:0:0:4d5a9000")
    assert names(eng, b"MZ\x90\x00" + PAD)
    assert not names(eng, b"xMZ\x90\x00" + PAD)
    eng = engine_for(tmp_path, "b.ndb", "OffR:0:2,3:414243")
    assert names(eng, b"--xABC" + PAD)
    assert not names(eng, b"--xxxxABC" + PAD)
    assert names(eng, b"--ABC" + PAD)
    eng = engine_for(tmp_path, "c.ndb", "Eof:0:EOF-3:780d0a")
    assert names(eng, PAD + b"x\r\n")
    assert not names(eng, PAD + b"x\r\n\n")


@pytest.mark.parametrize(
    ("name", "line", "reason"),
    [
        ("a.ndb", "OffR:0:2,3:4142", "too short"),
        ("b.ndb", "Eof:0:EOF-2:0d0a", "too short"),
        ("c.ndb", "Bad:0:EP+0:41424344", "invalid offset type"),
        ("d.ndb", "R5:0:*:41??41", "static"),
        ("e.ldb", "L6;Target:0,FileSize:0-10;0;616161", "Engine"),
        ("f.ldb", "L7;Engine:51-255,Target:0;0&1;616161", "subsignature"),
        ("g.hdb", "aa15bcf478d165efd2065190eb473bcb:*:Test.MD5.Hash.NoSize", "functionality"),
        ("h.ndb", "X:0:*:41424", "hex"),
        ("i.ndb", "X:0:*:4142(43|44", "alternative"),
        ("j.ldb", "X;Engine:81-255,Target:0;0;414243::q", "modifier"),
    ],
)
def test_load_errors_name_file_and_line(tmp_path: Path, name: str, line: str, reason: str) -> None:
    db = tmp_path / name
    db.write_text("# a comment first\n" + line + "\n")
    with pytest.raises(SignatureError) as info:
        load_database([db])
    assert info.value.lineno == 2
    assert str(info.value).startswith(f"{db}:2: ")
    assert reason.lower() in str(info.value).lower()


def test_blank_line_is_an_error(tmp_path: Path) -> None:
    db = tmp_path / "x.ndb"
    db.write_text("A:0:*:414243\n\nB:0:*:444546\n")
    with pytest.raises(SignatureError, match=r"x\.ndb:2: blank line"):
        load_database([db])


LOGICAL = [
    ("T52a", "L1;Engine:51-255,Target:0;0&1;616161;626262", b"aaa bbb", True),
    ("T52b", "L1;Engine:51-255,Target:0;0&1;616161;626262", b"aaa", False),
    ("T53a", "L2;Engine:51-255,Target:0;0&1=0;616161;626262", b"aaa", True),
    ("T53b", "L2;Engine:51-255,Target:0;0&1=0;616161;626262", b"aaabbb", False),
    ("T54a", "L3;Engine:51-255,Target:0;0>2;4141", b"AAAA", True),
    ("T54b", "L3;Engine:51-255,Target:0;0>2;4141", b"AAA", False),
    ("T55a", "L4;Engine:51-255,Target:0;(0|1|2)>1,2;616161;626262;636363", b"aaa aaa", False),
    ("T55b", "L4;Engine:51-255,Target:0;(0|1|2)>1,2;616161;626262;636363", b"aaa bbb", True),
    ("T56", "L5;Target:0;0;616161", b"xaaax", True),
]


@pytest.mark.parametrize(("case", "sig", "data", "expected"), LOGICAL, ids=[x[0] for x in LOGICAL])
def test_logical(tmp_path: Path, case: str, sig: str, data: bytes, expected: bool) -> None:
    assert matches(tmp_path, "t.ldb", sig, data) is expected


def test_flevel_windows(tmp_path: Path) -> None:
    """clamscan 1.4.6 runs at functionality level 216 (§0)."""
    data = b"xxABCDxx" + PAD
    assert matches(tmp_path, "a.ndb", "A:0:*:41424344:216", data)
    assert not matches(tmp_path, "b.ndb", "A:0:*:41424344:217", data)
    assert not matches(tmp_path, "c.ndb", "A:0:*:41424344:1:215", data)
    assert matches(tmp_path, "d.ndb", "A:0:*:41424344:1:216", data)
    assert not matches(tmp_path, "e.ldb", "A;Engine:217-255,Target:0;0;41424344", data)
    assert matches(tmp_path, "f.ldb", "A;Engine:51-216,Target:0;0;41424344", data)


def test_text_normalisation_targets(tmp_path: Path) -> None:
    """T71-T73."""
    data = b"HELLO\t\t  World\r\n"
    assert names(engine_for(tmp_path, "a.ndb", "Txt:7:*:68656c6c6f20776f726c64"), data)
    assert names(engine_for(tmp_path, "b.ndb", "Raw:0:*:48454c4c4f"), data)
    assert not names(engine_for(tmp_path, "c.ndb", "Txt2:7:*:48454c4c4f"), data)
