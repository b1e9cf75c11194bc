"""Differential tests: the same databases and files through Debian's clamscan and Vigil.

Both must report the same lines (name and order, in all-match mode too). Skipped when the
real clamscan is not installed; the project's test command installs it.
"""

from __future__ import annotations

import base64
import gzip
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import OFFICIAL, UNIT
from vigil.engine.database import load_database
from vigil.engine.scanner import Engine, ScanOptions

CLAMSCAN = shutil.which("clamscan")
pytestmark = [
    pytest.mark.differential,
    pytest.mark.skipif(CLAMSCAN is None, reason="Debian's clamscan is not installed"),
]
PAD = b"\x00\x01\x02\xff\xfe\x80"


def clamscan(dbs: list[Path], files: list[Path], allmatch: bool) -> dict[str, list[str]]:
    """Run the real clamscan; map each file name to the names it reported (empty = OK)."""
    assert CLAMSCAN is not None
    # the clean-file cache would hide repeated contents in other contexts (lsig conditions)
    cmd = [CLAMSCAN, "--no-summary", "--bytecode=no", "--disable-cache"]
    for db in dbs:
        cmd += ["-d", str(db)]
    if allmatch:
        cmd.append("-z")
    proc = subprocess.run(
        cmd + [str(f) for f in files], capture_output=True, timeout=300, check=False
    )
    assert proc.returncode in (0, 1), proc.stderr.decode(errors="replace")
    out: dict[str, list[str]] = {str(f): [] for f in files}
    for raw in proc.stdout.decode("latin-1").splitlines():
        path, _, verdict = raw.rpartition(": ")
        if verdict.endswith(" FOUND"):
            out[path].append(verdict[: -len(" FOUND")])
    return out


def vigil(dbs: list[Path], files: list[Path], allmatch: bool) -> dict[str, list[str]]:
    engine = Engine(load_database(dbs))
    opts = ScanOptions(allmatch=allmatch)
    return {str(f): engine.scan(f.read_bytes(), opts).names for f in files}


def compare(dbs: list[Path], files: list[Path]) -> None:
    """Same lines from both scanners, in first-alert and all-match mode."""
    for allmatch in (False, True):
        theirs = clamscan(dbs, files, allmatch)
        ours = vigil(dbs, files, allmatch)
        assert ours == theirs, f"allmatch={allmatch}"


# Signature lines with data they should be tried on; every case runs through both scanners.
CASES: list[tuple[str, str, list[bytes]]] = [
    ("a.ndb", "Test_1:0:*:64[4-4]61616161{2}6262[3-6]65", [b"daaaaaaaaddbbbbbcce"]),
    (
        "b.ndb",
        "Test_5:0:*:6463{2-3}64646162(63|64|65)6361*6462????6261{-1}6362",
        [b"abdcabcddabccadbbdbacb", b"abdcabcddab"],
    ),
    ("c.ndb", "Test_7:0:*:6?6164?26?62{3}?26162?361", [b"abcadbabcadbabcacb"]),
    ("d.ndb", "Alt4:0:*:6161(6a6a|66(6767|6868)66|6969)6161", [b"aafhhfaa", b"aafhgfaa"]),
    ("e.ndb", "Neg:0:*:6161!(62|63)6161", [b"aadaa", b"aabaa"]),
    ("f.ndb", "R1:0:*:4141{2-3}4242", [b"AAxxBB", b"AAxBB", b"AAxxxxBB"]),
    ("g.ndb", "R2:0:*:4141{3-}4242", [b"AAxxxBB", b"AAxxBB"]),
    ("h.ndb", "OffR:0:2,3:414243", [b"--xABC", b"--xxxxABC", b"--ABC"]),
    ("i.ndb", "Eof:0:EOF-3:780d0a", [PAD + b"x\r\n", PAD + b"x\r\n\n"]),
    ("j.ndb", "B1:0:*:(B)6162636465(B)", [b" abcde ", b"xabcde ", b"-abcde\n"]),
    ("k.ndb", "L1:0:*:(L)6162636465(L)", [b"\nabcde\r\n", b"x\nabcde\n", b"abcde\rx"]),
    (
        "l.ndb",
        "M1:0:*:6162(B)6364(L)6566(W)6768",
        [b"ab.cd\nef-gh", b"ab.cd\r\nef-gh", b"abxcd\nefgh"],
    ),
    ("m.ldb", "T17;Engine:81-255,Target:0;0;6363636363::i", [b"cCcCc", b"ccccC"]),
    ("n.ldb", "T19;Engine:81-255,Target:0;0;6565656565::f", [b"s&eeeee&e", b"seeeeee"]),
    ("o.ldb", "T27;Engine:81-255,Target:0;0;7272727272::wi", [b"r\0R\0r\0R\0r\0", b"rRrRr"]),
    ("p.ldb", "T28;Engine:81-255,Target:0;0;7474747474::wa", [b"t\0t\0t\0t\0t\0", b"ttttt"]),
    ("q.ldb", "L3;Engine:51-255,Target:0;0>2;4141", [b"AAAA", b"AAA", b"AxAAxAA"]),
    (
        "r.ldb",
        "L4;Engine:51-255,Target:0;(0|1|2)>1,2;616161;626262;636363",
        [b"aaa aaa", b"aaa bbb", b"ccc bbb aaa"],
    ),
    ("s.ldb", "L2;Engine:51-255,Target:0;0&1=0;616161;626262", [b"aaa", b"aaabbb"]),
    (
        "t.ldb",
        "P;Engine:81-255,Target:0;0&1;6e6f74;3,8:0/12345678/e",
        [b"not12345678truly", b"not1234567truly"],
    ),
    ("u.ldb", "P2;Engine:81-255,Target:0;0&1;6e6f74;0/t[a-z]+y/g", [b"not truly tally"]),
    (
        "v.ldb",
        "BC;Engine:81-255,Target:0;0&1;4c454e3d;0(>>4#de3#>100)",
        [b"LEN=250;", b"LEN=050;", b"LEN=abc;"],
    ),
    (
        "w.ldb",
        "BC2;Engine:81-255,Target:0;0&1;4c454e3d;0(>>4#ib2#=258)",
        [b"LEN=\x01\x02xx", b"LEN=\x02\x01xx"],
    ),
    ("x.ldb", "EQ;Target:0;0==1;414243", [b"ABCx", b"ABCxABC"]),
    ("y.ldb", "MF;Engine:81-255,Target:0;0;414243::i*78797a::i", [b"ABCx", b"abcxyz"]),
    ("z.ndb", "Txt:7:*:68656c6c6f20776f726c64", [b"HELLO\t\t  World\r\n", b"hello_world"]),
    ("aa.ndb", "Raw:0:*:48454c4c4f", [b"HELLO\t\t  World\r\n"]),
    ("ab.ldb", "FS;Engine:51-255,Target:0,FileSize:10-20;0;41424344", [b"ABCD" * 3, b"ABCD" * 6]),
    # a byte compare reads the last match of the subsignature it names, over every form
    (
        "ac.ldb",
        "BCL;Engine:81-255,Target:0;0&1&2;6d61726b65722d6f6e65;414243;1(>>3#ib1#=88)",
        [b"ABCY--ABCX--marker-one", b"ABCX--ABCY--marker-one", b"ABCX--marker-one"],
    ),
    (
        "ad.ldb",
        "BCW;Engine:81-255,Target:0;0&1&2;6d61726b65722d6f6e65;414243::wa;1(>>3#ib1#=88)",
        [b"ABCX--A\0B\0C\0--marker-one", b"A\0B\0C\0--ABCX--marker-one"],
    ),
]


@pytest.mark.parametrize(("dbname", "line", "datas"), CASES, ids=[c[0] for c in CASES])
def test_signature_cases(tmp_path: Path, dbname: str, line: str, datas: list[bytes]) -> None:
    db = tmp_path / dbname
    db.write_text(line + "\n", encoding="latin-1")
    files = []
    for i, data in enumerate(datas):
        for suffix, payload in (("raw", data), ("pad", data + PAD)):
            f = tmp_path / f"f{i}.{suffix}"
            f.write_bytes(payload)
            files.append(f)
    compare([db], files)


def test_clam_exe_hashes(tmp_path: Path, clam_exe: Path) -> None:
    """T62-T69: hash signatures of every kind on clam.exe, in all-match order."""
    lines = {
        "a.hdb": "aa15bcf478d165efd2065190eb473bcb:544:Test.MD5.Hash:73\n"
        "aa15bcf478d165efd2065190eb473bcb:*:Test.MD5.Hash.NoSize:73\n"
        "aa15bcf478d165efd2065190eb473bcb:545:X\n",
        "b.hsb": "62dd70f5e7530e0239901ac186f1f9ae39292561:544:Test.Sha1.Hash:73\n",
        "c.mdb": "512:23db1dd3f77fae25610b6a32701313ae:Test.PESection.Hash:73\n",
        "d.imp": "98c88d882f01a3f6ac1e5f7dfd761624:39:Test.Import.Hash\n",
    }
    dbs = []
    for name, text in lines.items():
        (tmp_path / name).write_text(text)
        dbs.append(tmp_path / name)
    compare(dbs, [clam_exe])


def test_pe_allmatch_ndb(tmp_path: Path) -> None:
    """Every body signature of pe_allmatch (EP, Sx, SE, VI offsets) on test.exe."""
    sigs = sorted((UNIT / "pe_allmatch").glob("*-sigs/*.ndb"))
    compare(sigs, [UNIT / "pe_allmatch" / "test.exe"])


def test_pe_allmatch_hashes() -> None:
    """Every file, section and import hash signature of pe_allmatch on test.exe."""
    sigs = [
        p
        for p in sorted((UNIT / "pe_allmatch" / "alert-sigs").iterdir())
        if p.suffix in (".hdb", ".hsb", ".mdb", ".msb", ".imp")
    ]
    compare(sigs, [UNIT / "pe_allmatch" / "test.exe"])


def test_official_sample(tmp_path: Path) -> None:
    """The real official signatures load and give clamscan's verdicts on a few files."""
    dbdir = tmp_path / "db"
    dbdir.mkdir()
    for gz in OFFICIAL.glob("*.gz"):
        (dbdir / gz.name[:-3]).write_bytes(gzip.decompress(gz.read_bytes()))
    files = [UNIT / "pe_allmatch" / "test.exe", UNIT / "logo.png"]
    files += sorted((UNIT / "htmlnorm_scanfiles").iterdir())[:5]
    compare([dbdir], files)


def test_versioninfo_logical_signature(tmp_path: Path, scanfiles: Path) -> None:
    """T61: a logical signature over two VI (PE VersionInfo) subsignatures."""
    db = tmp_path / "vi.ldb"
    db.write_text(
        "Clam-VI-Test:Target;Engine:52-255,Target:1;(0&1);"
        "VI:43006f006d00700061006e0079004e0061006d0065000000000063006f006d00700061006e007900;"
        "VI:500072006f0064007500630074004e0061006d0065000000000063006c0061006d00\n"
    )
    files = [scanfiles / "clam_ISmsi_ext.exe", scanfiles / "clam_ISmsi_int.exe"]
    compare([db], files)
    assert vigil([db], files, False)[str(files[0])] == ["Clam-VI-Test:Target.UNOFFICIAL"]


def test_html_is_scanned_only_normalised(tmp_path: Path) -> None:
    """T74/T75: target-3 signatures see the normalised forms; raw HTML is not scanned."""
    db = tmp_path / "h.ndb"
    db.write_text(
        "Html:3:*:68746d6c74657874746573747369676e6174757265\nHtmlRaw:0:*:3c626f64793e0a09\n"
    )
    files = sorted((UNIT / "htmlnorm_scanfiles").iterdir())
    compare([db], files)


YARA_RULES = [
    'rule TextRule { strings: $a = "hello yara" condition: $a }',
    'rule TwoOf { strings: $a = "alpha1" $b = "bravo2" $c = "charlie3" condition: 2 of them }',
    'rule AllOf { strings: $a = "alpha1" $b = "bravo2" condition: all of them }',
    "rule Hex { strings: $h = { 61 6c ?? 68 61 31 } condition: $h }",
    'rule NoCase { strings: $a = "HELLO YARA" nocase condition: $a }',
    'rule Wide { strings: $a = "wide1" wide condition: $a }',
    'rule Counted { strings: $a = "alpha1" condition: #a > 1 }',
    'rule AndNot { strings: $a = "alpha1" $b = "zulu9" condition: $a and not $b }',
]


@pytest.mark.parametrize("rule", YARA_RULES, ids=[r.split()[1] for r in YARA_RULES])
def test_yara_rules(tmp_path: Path, rule: str) -> None:
    db = tmp_path / "r.yar"
    db.write_text(rule + "\n")
    datas = [
        b"xx hello yara xx alpha1 yy bravo2 alpha1\n",
        b"HeLLo YaRa charlie3 alpha1 zulu9",
        b"w\0i\0d\0e\x001\0 and more bytes",
    ]
    files = []
    for i, data in enumerate(datas):
        f = tmp_path / f"f{i}.bin"
        f.write_bytes(data + PAD)
        files.append(f)
    compare([db], files)


def test_archives_as_clamscan(scanfiles: Path) -> None:
    """clam.exe inside the archive formats Vigil unpacks so far, found as clamscan finds it."""
    names = [
        "clam.zip",
        "clam.bz2.zip",
        "clam.exe.bz2",
        "clam.tar.gz",
        "clam.exe_and_mail.tar.gz",
        "clam_cache_emax.tgz",
        "clam.newc.cpio",
        "clam.odc.cpio",
        "clam.bin-be.cpio",
        "clam.bin-le.cpio",
    ]
    compare([UNIT / "clamav.hdb"], [scanfiles / n for n in names])


def test_container_conditions(tmp_path: Path) -> None:
    """T60 and Intermediates: logical signatures that depend on the parent layers."""
    import gzip
    import io
    import tarfile
    import zipfile

    text = b"CLAMAV-TEST-STRING-NOT-EICAR" + PAD
    db = tmp_path / "c.ldb"
    hexs = text[:28].hex()
    db.write_text(
        f"InZip;Engine:81-255,Container:CL_TYPE_ZIP,Target:0;0;0:{hexs}\n"
        f"AtRoot;Engine:81-255,Container:CL_TYPE_ANY,Target:0;0;0:{hexs}\n"
        f"GzTar;Engine:81-255,Intermediates:CL_TYPE_GZ>CL_TYPE_POSIX_TAR,Target:0;0;0:{hexs}\n"
        f"AnyTar;Engine:81-255,Intermediates:CL_TYPE_ANY>CL_TYPE_POSIX_TAR,Target:0;0;0:{hexs}\n"
    )
    plain = tmp_path / "plain.bin"
    plain.write_bytes(text)
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as z:
        z.writestr("t.bin", text)
    (tmp_path / "t.zip").write_bytes(zbuf.getvalue())
    tbuf = io.BytesIO()
    with tarfile.open(fileobj=tbuf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        info = tarfile.TarInfo("t.bin")
        info.size = len(text)
        t.addfile(info, io.BytesIO(text))
    (tmp_path / "t.tar").write_bytes(tbuf.getvalue())
    (tmp_path / "t.tar.gz").write_bytes(gzip.compress(tbuf.getvalue()))
    files = [plain, tmp_path / "t.zip", tmp_path / "t.tar", tmp_path / "t.tar.gz"]
    compare([db], files)


def test_cdb_container_metadata(tmp_path: Path, scanfiles: Path) -> None:
    db = tmp_path / "m.cdb"
    db.write_text(
        "ByName:CL_TYPE_ZIP:*:clam\\.exe:*:*:*:*:*:*\n"
        "BySize:*:*:*:*:544:0:1:*:*\n"
        "WrongType:CL_TYPE_RAR:*:*:*:*:*:*:*:*\n"
        "SizeRange:CL_TYPE_POSIX_TAR:*:*:*:500-600:*:*:*:*\n"
        "NotThere:CL_TYPE_ZIP:*:nothing\\.here:*:*:*:*:*:*\n"
    )
    files = [
        scanfiles / n
        for n in ("clam.zip", "clam.tar.gz", "clam.exe.bz2", "clam.newc.cpio", "clam.bin-le.cpio")
    ]
    compare([db], files)


MAIL_MARKER = b"vigil-harmless-mail-pass-marker"


def test_mail_and_mhtml_passes(tmp_path: Path) -> None:
    """How often a marker is reported in all-match mode shows which passes run: a mail's text
    part gets an extra pass with the mail signatures only; text that a later magic re-types
    as MHTML is parsed as mail but gets no mail pass, nor do its parts."""
    db = tmp_path / "m.ndb"
    db.write_text(f"Vigil.Test.Mail:0:*:{MAIL_MARKER.hex()}\n")
    blob = base64.b64encode(b"\x00\x01\x02 " + MAIL_MARKER + b" \x03")
    mail = tmp_path / "m1.eml"
    mail.write_bytes(
        b"From: a@b.c\nTo: d@e.f\nSubject: x\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="B"\n\n--B\nContent-Type: text/plain\n\n'
        b"hello " + MAIL_MARKER + b" world\n--B\nContent-Type: application/octet-stream\n"
        b"Content-Transfer-Encoding: base64\n\n" + blob + b"\n--B--\n"
    )
    late = tmp_path / "m2.txt"
    late.write_bytes(
        b"hello\nthere\n" + b"a" * 1500 + b"\nFrom: x@y.z\nMIME-Version: 1.0\n"
        b"Content-Type: text/plain\n\n" + MAIL_MARKER + b"\n"
    )
    compare([db], [mail, late])


def test_data_uri_through_its_mail_layer(tmp_path: Path) -> None:
    """libclamav saves each data: URI as a small mail message whose part holds the data:
    in all-match mode a marker is reported for the message and for its part."""
    db = tmp_path / "m.ndb"
    db.write_text(f"Vigil.Test.Mail:0:*:{MAIL_MARKER.hex()}\n")
    page = tmp_path / "u.html"
    page.write_bytes(b'<html><a href="data:text/plain,hello ' + MAIL_MARKER + b'">x</a></html>')
    compare([db], [page])
