"""``vigil sigtool``: sigtool's options, output and exit codes, and bad input without tracebacks.

Most cases run in-process (fast); the differential ones run Debian's ``/usr/bin/sigtool`` on
the same inputs and compare.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import OFFICIAL, UNIT
from vigil.cli.main import main
from vigil.engine.signatures.cvd import read_cvd

FRESH = UNIT / "freshclam_testfiles"
SIGTOOL = shutil.which("sigtool", path="/usr/bin")


@dataclass
class Result:
    rc: int
    out: bytes
    err: str


def sigtool(monkeypatch: pytest.MonkeyPatch, cwd: Path, *args: str, stdin: bytes = b"") -> Result:
    """Run ``vigil sigtool`` in-process with byte-exact stdout."""
    out, err = io.BytesIO(), io.BytesIO()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(out, write_through=True))
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(err, write_through=True))
    rc = main(["sigtool", *args])
    sys.stdout.flush()
    sys.stderr.flush()
    return Result(rc, out.getvalue(), err.getvalue().decode())


def real(cwd: Path, *args: str, stdin: bytes = b"") -> Result:
    assert SIGTOOL is not None
    done = subprocess.run(
        [SIGTOOL, *args], cwd=cwd, input=stdin, capture_output=True, timeout=60, check=False
    )
    return Result(done.returncode, done.stdout, done.stderr.decode("latin-1"))


@pytest.fixture
def work(tmp_path: Path) -> Path:
    for n in (1, 2, 3, 6):
        shutil.copy(FRESH / f"test-{n}.cvd", tmp_path)
    shutil.copy(FRESH / "test-2.cdiff", tmp_path)
    return tmp_path


def _corrupt(work: Path) -> dict[str, Path]:
    """Bad containers: truncated, damaged header, wrong MD5, forged signature."""
    good = (work / "test-1.cvd").read_bytes()
    files = {
        "truncated": good[:600],
        "header": b"XYZ" + good[3:],
        "md5": good[:700] + bytes([good[700] ^ 1]) + good[701:],
        "forged": good.replace(b":ttQe", b":xtQe", 1),
        "short": good[:100],
    }
    paths = {}
    for name, data in files.items():
        paths[name] = work / f"{name}.cvd"
        paths[name].write_bytes(data)
    return paths


def test_hashes(monkeypatch: pytest.MonkeyPatch, work: Path) -> None:
    (work / "f.bin").write_bytes(b"hello\n")
    assert sigtool(monkeypatch, work, "--md5", "f.bin").out == (
        b"b1946ac92492d2347c6235b4d2611184:6:f.bin\n"
    )
    assert sigtool(monkeypatch, work, "--sha1", "f.bin").out.startswith(b"f572d396fae9206628714")
    assert sigtool(monkeypatch, work, "--md5", stdin=b"hello\n").out == (
        b"b1946ac92492d2347c6235b4d2611184\n"
    )
    missing = sigtool(monkeypatch, work, "--sha256", "f.bin", "nope")
    assert missing.rc == 1 and missing.out.count(b"\n") == 1
    assert missing.err == "ERROR: hashsig: Can't access file nope (No such file or directory)\n"


def test_mdb_and_imp(monkeypatch: pytest.MonkeyPatch, clam_exe: Path) -> None:
    res = sigtool(monkeypatch, clam_exe.parent, "--mdb", "clam.exe")
    assert res.out == b"512:23db1dd3f77fae25610b6a32701313ae:clam.exe\n"
    res = sigtool(monkeypatch, clam_exe.parent, "--imp", "clam.exe")
    assert res.out == b"98c88d882f01a3f6ac1e5f7dfd761624:39:clam.exe\n"
    res = sigtool(monkeypatch, clam_exe.parent, "--mdb", "clam.pdf")
    assert res.rc == 0 and res.err == "ERROR: hashpe: Not a valid PE file!\n"


def test_info(monkeypatch: pytest.MonkeyPatch, work: Path) -> None:
    res = sigtool(monkeypatch, work, "--info", "test-1.cvd")
    assert res.rc == 0
    lines = res.out.decode().splitlines()
    assert lines[:3] == ["File: test-1.cvd", "Build time: 22 Jun 2021 14:58 -0400", "Version: 1"]
    assert lines[-1] == "Verification OK."


@pytest.mark.parametrize("name", ["truncated", "header", "md5", "forged", "short", "missing"])
def test_info_bad_input(monkeypatch: pytest.MonkeyPatch, work: Path, name: str) -> None:
    _corrupt(work)
    res = sigtool(monkeypatch, work, "-i", f"{name}.cvd")
    assert res.rc == 1
    assert res.err.count("\n") == 1 and res.err.startswith("ERROR: cvdinfo: ")
    assert "Verification OK." not in res.out.decode()


def test_unpack_and_bad_unpack(monkeypatch: pytest.MonkeyPatch, work: Path) -> None:
    out = work / "out"
    out.mkdir()
    assert sigtool(monkeypatch, out, "-u", "../test-3.cvd").rc == 0
    members = dict(read_cvd((work / "test-3.cvd").read_bytes(), "test-3.cvd").members)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == members
    _corrupt(work)
    bad = work / "bad"
    bad.mkdir()
    for name in ("truncated", "md5", "forged", "header"):
        res = sigtool(monkeypatch, bad, "--unpack", f"../{name}.cvd")
        assert res.rc == 1 and res.err.startswith(f"ERROR: unpack: ../{name}.cvd is not a valid")
    assert not list(bad.iterdir())


def test_unpack_current(monkeypatch: pytest.MonkeyPatch, work: Path) -> None:
    (work / "db").mkdir()
    shutil.copy(work / "test-6.cvd", work / "db" / "test.cvd")
    out = work / "out"
    out.mkdir()
    assert sigtool(monkeypatch, out, "--unpack-current", "test", "--datadir", "../db").rc == 0
    assert (out / "test.ndb").is_file()
    assert sigtool(monkeypatch, out, "--unpack-current", "daily", "--datadir", "../db").rc == 1


def test_list_and_find(monkeypatch: pytest.MonkeyPatch, work: Path) -> None:
    names = sigtool(monkeypatch, work, "--list-sigs", "test-6.cvd").out.decode().split()
    assert sorted(set(names)) == [
        "Clamav.Test.File-6",
        "Eicar-Test-Signature",
        "Win.Trojan.EOL-1",
        "Win.Worm.Klez-1",
        "Win.Worm.Mydoom-9802011-0",
        "Win.Worm.Sobig-1",
    ]
    (work / "db").mkdir()
    shutil.copy(work / "test-6.cvd", work / "db")
    found = sigtool(monkeypatch, work, "--find-sigs", "Klez", "--datadir", "db")
    assert found.out.startswith(b"[test.ndb] Win.Worm.Klez-1:0:*:2d4000bd")
    bad = sigtool(monkeypatch, work, "-f", "(", "--datadir", "db")
    assert bad.rc == 1 and bad.err.startswith("ERROR: --find-sigs: Can't compile regex")
    assert sigtool(monkeypatch, work, "-l", "nothing-here").rc == 1


def test_decode_sigs(monkeypatch: pytest.MonkeyPatch, work: Path) -> None:
    sig = b"T:1:EP+1:41??4?{2-3}(42|43)!(44|45)46{1-2}47{-4}48{5-}*0a\n"
    res = sigtool(monkeypatch, work, "--decode-sigs", stdin=sig)
    assert res.out == (
        b"VIRUS NAME: T\nTARGET TYPE: PE\nOFFSET: EP+1\nDECODED SIGNATURE:\n"
        b"A{WILDCARD_IGNORE}{WILDCARD_NIBBLE_HIGH:0x40}{WILDCARD_ANY_STRING(LENGTH>=2&&<=3)}"
        b"{STRING_ALTERNATIVE:B|C}{EXCLUDING_STRING_ALTERNATIVE:D|E}"
        b"F{WILDCARD_ANY_STRING(LENGTH>=1&&<=2)}G{WILDCARD_ANY_STRING(LENGTH<=4)}H"
        b"{WILDCARD_ANY_STRING(LENGTH>=5)}{WILDCARD_ANY_STRING}\n\n"
    )
    ldb = b"L;Target:0;0|1;41::i;EOF-2:42::wa\n"
    out = sigtool(monkeypatch, work, "--decode-sigs", stdin=ldb).out.decode()
    assert " +-> SIGMOD: NOCASE\n" in out and " +-> OFFSET: EOF-2\n" in out
    assert "SIGMOD: WIDE ASCII" in out
    res = sigtool(monkeypatch, work, "--decode-sigs", stdin=b"garbage\n")
    assert res.rc == 1


def test_hex_dump(monkeypatch: pytest.MonkeyPatch, work: Path) -> None:
    assert sigtool(monkeypatch, work, "--hex-dump", stdin=b"AB").out == b"4142"


def test_run_cdiff_chain(monkeypatch: pytest.MonkeyPatch, work: Path) -> None:
    out = work / "out"
    out.mkdir()
    assert sigtool(monkeypatch, out, "-u", "../test-1.cvd").rc == 0
    for n in range(2, 7):
        assert sigtool(monkeypatch, out, "--run-cdiff", str(FRESH / f"test-{n}.cdiff")).rc == 0
    members = dict(read_cvd((work / "test-6.cvd").read_bytes(), "test-6.cvd").members)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == members


def test_run_cdiff_rejects_forged_and_misapplied(
    monkeypatch: pytest.MonkeyPatch, work: Path
) -> None:
    raw = (work / "test-2.cdiff").read_bytes()
    flipped = b"b" if raw[-3:-2] == b"a" else b"a"
    (work / "forged.cdiff").write_bytes(raw[:-3] + flipped + raw[-2:])
    out = work / "out"
    out.mkdir()
    assert sigtool(monkeypatch, out, "-u", "../test-1.cvd").rc == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    res = sigtool(monkeypatch, out, "-r", "../forged.cdiff")
    assert res.rc == 1 and "Incorrect digital signature" in res.err
    res = sigtool(monkeypatch, out, "-r", str(FRESH / "test-3.cdiff"))
    assert res.rc == 1 and res.err.count("\n") == 1 and "test.info line 4" in res.err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_verify_cdiff(monkeypatch: pytest.MonkeyPatch, work: Path) -> None:
    res = sigtool(monkeypatch, work, "--verify-cdiff", "test-2.cdiff", "test-1.cvd")
    assert res.rc == 0
    assert res.out == b"Verification: test-2.cdiff correctly applies to test-1.cvd\n"
    res = sigtool(monkeypatch, work, "--verify-cdiff", "test-2.cdiff", "test-3.cvd")
    assert res.rc == 1 and res.err.startswith("ERROR: verifydiff: Can't apply test-2.cdiff")


def test_diff(monkeypatch: pytest.MonkeyPatch, work: Path) -> None:
    res = sigtool(monkeypatch, work, "--diff", "test-1.cvd", "test-2.cvd")
    assert res.rc == 0 and res.out == b"Generated diff file test-2-2.script\n"
    out = work / "out"
    out.mkdir()
    assert sigtool(monkeypatch, out, "-u", "../test-1.cvd").rc == 0
    assert sigtool(monkeypatch, out, "-r", "../test-2-2.script").rc == 0
    members = dict(read_cvd((FRESH / "test-2.cvd").read_bytes(), "test-2.cvd").members)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == members
    res = sigtool(monkeypatch, work, "--diff", "test-1.cvd", "test-3.cvd")
    assert res.rc == 1 and res.err == "ERROR: makediff: The old CVD must be 2\n"


def test_build_unsigned_loads(monkeypatch: pytest.MonkeyPatch, work: Path) -> None:
    src = work / "src"
    src.mkdir()
    (src / "mine.hdb").write_bytes(b"44d88612fea8a8f36de82e1278abb02f:68:Test.Eicar\n")
    (src / "mine.ndb").write_bytes(b"Test.Body:0:*:414243\n")
    res = sigtool(monkeypatch, src, "--build", "mine.cvd", "--cvd-version", "3")
    assert res.rc == 0 and (src / "mine.cud").is_file()
    archive = read_cvd((src / "mine.cud").read_bytes(), "mine.cud")
    assert archive.header.version == 3 and archive.header.sigs == 2 and not archive.official
    assert [n for n, _ in archive.members][:2] == ["COPYING", "mine.info"]
    # --cvd-version defaults to the local version + 1; without one it is an error
    assert sigtool(monkeypatch, src, "-b", "mine", "--datadir", str(work / "none")).rc == 1


def test_build_signed(monkeypatch: pytest.MonkeyPatch, work: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (work / "key.pem").write_bytes(pem)
    (work / "mine.ndb").write_bytes(b"Test.Body:0:*:414243\n")
    args = ("-b", "mine", "--cvd-version", "1", "--private-key", "key.pem")
    assert sigtool(monkeypatch, work, *args).rc == 0
    archive = read_cvd((work / "mine.cvd").read_bytes(), "mine.cvd", verify=False)
    assert b"DSIG:" in dict(archive.members)["mine.info"]
    (work / "bad.pem").write_bytes(b"not a key")
    bad = sigtool(monkeypatch, work, "-b", "mine", "--cvd-version", "1", "--private-key", "bad.pem")
    assert bad.rc == 1 and bad.err.startswith("ERROR: build: Can't load the private key")


# --- differential against Debian's sigtool ----------------------------------------------------

differential = pytest.mark.skipif(SIGTOOL is None, reason="/usr/bin/sigtool is not installed")


@pytest.mark.differential
@differential
@pytest.mark.parametrize("name", ["test-1.cvd", "test-6.cvd", "truncated.cvd", "md5.cvd",
                                  "forged.cvd", "header.cvd", "none.cvd"])  # fmt: skip
def test_differential_info(monkeypatch: pytest.MonkeyPatch, work: Path, name: str) -> None:
    _corrupt(work)
    theirs = real(work, "--info", name)
    ours = sigtool(monkeypatch, work, "--info", name)
    assert (ours.rc, ours.out) == (theirs.rc, theirs.out)


@pytest.mark.differential
@differential
def test_differential_hashes(
    monkeypatch: pytest.MonkeyPatch, scanfiles: Path, clam_exe: Path
) -> None:
    files = sorted(p.name for p in scanfiles.iterdir())[:20]
    for option in ("--md5", "--sha1", "--sha256"):
        theirs = real(scanfiles, option, *files)
        ours = sigtool(monkeypatch, scanfiles, option, *files)
        assert (ours.rc, ours.out) == (theirs.rc, theirs.out)
    exes = sorted(p.name for p in scanfiles.glob("*.exe"))
    assert len(exes) >= 15  # packed samples too (petite, upack: sections out of file order)
    for exe in exes:
        # 1.4.6 shows section hashes only as "Section{i}: size:md5" debug lines on stderr, in
        # file-offset order; Vigil prints the same pairs as .mdb lines, in the same order
        theirs_mdb = [
            line.split(": ", 2)[2]
            for line in real(scanfiles, "--mdb", exe, "--debug").err.splitlines()
            if ": Section{" in line and "no data" not in line
        ]
        ours_mdb = [
            line.rsplit(":", 1)[0]
            for line in sigtool(monkeypatch, scanfiles, "--mdb", exe).out.decode().splitlines()
        ]
        assert ours_mdb == theirs_mdb and ours_mdb, exe


@pytest.mark.differential
@differential
def test_differential_decode_sigs(monkeypatch: pytest.MonkeyPatch, work: Path) -> None:
    import gzip

    lines = gzip.decompress((OFFICIAL / "daily.ndb.gz").read_bytes())
    lines += gzip.decompress((OFFICIAL / "main.ldb.gz").read_bytes())[:400_000].rsplit(b"\n", 1)[0]
    lines += b"\nX:0:*:41{0-}42{0}43{0-5}44(B)45:60:\nY:0:*:41::70\nZ=4142\n"
    theirs = real(work, "--decode-sigs", stdin=lines)
    ours = sigtool(monkeypatch, work, "--decode-sigs", stdin=lines)
    assert (ours.rc, ours.out) == (theirs.rc, theirs.out)


@pytest.mark.differential
@differential
@pytest.mark.parametrize("name", ["test-3.cvd", "test-6.cvd"])
def test_differential_unpack(monkeypatch: pytest.MonkeyPatch, work: Path, name: str) -> None:
    mine, ref = work / "mine", work / "ref"
    mine.mkdir()
    ref.mkdir()
    assert real(ref, "--unpack", os.path.join("..", name)).rc == 0
    assert sigtool(monkeypatch, mine, "--unpack", os.path.join("..", name)).rc == 0
    assert {p.name: p.read_bytes() for p in mine.iterdir()} == {
        p.name: p.read_bytes() for p in ref.iterdir()
    }


@pytest.mark.differential
@differential
def test_differential_list_sigs_of_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Plain database files: the same lines in the same (file) order as sigtool."""
    import gzip

    for name in ("daily.ndb", "main.ldb", "main.fp"):
        (tmp_path / name).write_bytes(gzip.decompress((OFFICIAL / f"{name}.gz").read_bytes()))
    crafted = {
        "x.hdb": "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test (Clam)\n",
        "x.imp": "98c88d882f01a3f6ac1e5f7dfd761624:39:Imp.Sig\n",
        "x.db": "Old.Style (Clam)=41424344\n",
        "x.crb": "Trusted.Cert;Trusted;0;;;;;;;;;;\n",
        "x.info": "whatever:1:2\n",
    }
    for name, text in crafted.items():
        (tmp_path / name).write_text(text)
    for name in ("daily.ndb", "main.ldb", "main.fp", *crafted):
        # sigtool wants a path with a separator ("Invalid filename" otherwise)
        theirs = real(tmp_path, f"--list-sigs=./{name}")
        ours = sigtool(monkeypatch, tmp_path, f"--list-sigs=./{name}")
        assert (ours.rc, ours.out) == (theirs.rc, theirs.out), name
    assert sigtool(monkeypatch, tmp_path, "--list-sigs=./main.ldb").out.count(b"\n") > 38_000


def _blocks_in_some_order(text: list[str], blocks: list[list[str]]) -> bool:
    """True when ``text`` is the concatenation of all ``blocks`` in some order."""
    if not blocks:
        return not text
    for i, block in enumerate(blocks):
        if text[: len(block)] == block and _blocks_in_some_order(
            text[len(block) :], blocks[:i] + blocks[i + 1 :]
        ):
            return True
    return False


@pytest.mark.differential
@differential
@pytest.mark.parametrize("name", ["test-3.cvd", "test-6.cvd"])
def test_differential_list_sigs_of_containers(
    monkeypatch: pytest.MonkeyPatch, work: Path, name: str
) -> None:
    """sigtool lists a CVD in the order its temporary directory returns the unpacked files
    (readdir: hash order on ext4, creation order on tmpfs), so no fixed order can match it
    everywhere. Each member's block of names is the same, and Vigil uses archive order."""
    theirs = real(work, f"--list-sigs=./{name}")
    ours = sigtool(monkeypatch, work, f"--list-sigs=./{name}")
    assert theirs.rc == ours.rc == 0
    members = read_cvd((work / name).read_bytes(), name).members
    blocks = []
    for member, data in members:
        (work / member).write_bytes(data)
        listed = sigtool(monkeypatch, work, f"--list-sigs=./{member}").out.decode().splitlines()
        if listed:
            blocks.append(listed)
    assert ours.out.decode().splitlines() == [line for block in blocks for line in block]
    assert _blocks_in_some_order(theirs.out.decode().splitlines(), blocks)
