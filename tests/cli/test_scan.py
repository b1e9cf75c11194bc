"""``vigil scan``: clamscan's interface, output lines, summary and exit codes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import UNIT

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def vigil(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vigil.cli.main", *args],
        input=stdin.decode("latin-1"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_help_and_version() -> None:
    assert vigil("--help").returncode == 0
    out = vigil("scan", "--help")
    assert out.returncode == 0 and "--database" in out.stdout
    version = vigil("-V")
    assert version.returncode == 0 and version.stdout.startswith("Vigil ")


def test_builtin_database_finds_eicar(tmp_path: Path) -> None:
    (tmp_path / "eicar.com").write_bytes(EICAR)
    (tmp_path / "clean.txt").write_text("nothing to see here\n")
    out = vigil("scan", str(tmp_path))
    assert out.returncode == 1, out.stderr
    assert f"{tmp_path}/eicar.com: Eicar-Signature.UNOFFICIAL FOUND" in out.stdout
    assert f"{tmp_path}/clean.txt: OK" in out.stdout
    assert "----------- SCAN SUMMARY -----------" in out.stdout
    assert re.search(r"^Infected files: 1$", out.stdout, re.M)
    assert re.search(r"^Scanned files: 2$", out.stdout, re.M)
    assert re.search(r"^Time: \d+\.\d{3} sec \(\d+ m \d+ s\)$", out.stdout, re.M)


def test_clean_exit_code_and_infected_only(tmp_path: Path) -> None:
    (tmp_path / "clean.txt").write_text("nothing to see here\n")
    out = vigil("scan", "-i", "--no-summary", str(tmp_path / "clean.txt"))
    assert out.returncode == 0
    assert out.stdout == ""


def test_missing_file_is_an_error_and_scan_goes_on(tmp_path: Path) -> None:
    (tmp_path / "eicar.com").write_bytes(EICAR)
    missing = tmp_path / "nope"
    out = vigil("scan", "--no-summary", str(missing), str(tmp_path / "eicar.com"))
    assert f"{missing}: No such file or directory" in out.stderr
    assert "FOUND" in out.stdout
    assert out.returncode == 1
    only_missing = vigil("scan", "--no-summary", str(missing))
    assert only_missing.returncode == 2


def test_bad_database_exits_2_with_file_and_line(tmp_path: Path) -> None:
    db = tmp_path / "bad.ndb"
    db.write_text("Good:0:*:41424344\nBad:0:*:4142zz\n")
    target = tmp_path / "f.txt"
    target.write_text("x\n")
    out = vigil("scan", "-d", str(db), str(target))
    assert out.returncode == 2
    assert f"{db}:2: " in out.stderr
    assert "Traceback" not in out.stderr


def test_recursion_and_allmatch(tmp_path: Path, clam_exe: Path) -> None:
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    shutil.copy(clam_exe, sub / "clam.exe")
    db = tmp_path / "sigs.hdb"
    db.write_text(
        "aa15bcf478d165efd2065190eb473bcb:544:Test.MD5.Hash:73\n"
        "aa15bcf478d165efd2065190eb473bcb:*:Test.MD5.Hash.NoSize:73\n"
    )
    flat = vigil("scan", "--no-summary", "-d", str(db), str(tmp_path / "a"))
    assert "FOUND" not in flat.stdout
    deep = vigil("scan", "--no-summary", "-r", "-z", "-d", str(db), str(tmp_path / "a"))
    assert deep.stdout.splitlines() == [
        f"{sub}/clam.exe: Test.MD5.Hash.UNOFFICIAL FOUND",
        f"{sub}/clam.exe: Test.MD5.Hash.NoSize.UNOFFICIAL FOUND",
    ]


def test_stdin_and_file_list(tmp_path: Path) -> None:
    out = vigil("scan", "--no-summary", "-", stdin=EICAR)
    assert out.stdout == "stdin: Eicar-Signature.UNOFFICIAL FOUND\n"
    (tmp_path / "e.com").write_bytes(EICAR)
    lst = tmp_path / "list"
    lst.write_text(f"{tmp_path / 'e.com'}\n")
    out = vigil("scan", "--no-summary", "-f", str(lst))
    assert out.stdout == f"{tmp_path / 'e.com'}: Eicar-Signature.UNOFFICIAL FOUND\n"


def test_max_filesize_skips_unless_alert_exceeds_max(tmp_path: Path) -> None:
    f = tmp_path / "eicar.com"
    f.write_bytes(EICAR)
    assert "OK" in vigil("scan", "--no-summary", "--max-filesize=10", str(f)).stdout
    out = vigil("scan", "--no-summary", "--max-filesize=10", "--alert-exceeds-max", str(f))
    assert "Heuristics.Limits.Exceeded.MaxFileSize FOUND" in out.stdout


@pytest.mark.differential
@pytest.mark.skipif(shutil.which("clamscan") is None, reason="Debian's clamscan is not installed")
def test_same_lines_as_clamscan(tmp_path: Path) -> None:
    """Per-file lines identical to the real clamscan's on a small tree."""
    files = tmp_path / "files"
    shutil.copytree(UNIT / "htmlnorm_scanfiles", files / "html")
    shutil.copy(UNIT / "pe_allmatch" / "test.exe", files / "test.exe")
    (files / "eicar.com").write_bytes(EICAR)
    db = tmp_path / "db"
    db.mkdir()
    (db / "t.ndb").write_text(
        "Eicar:0:0:58354f2150254041505b345c505a58353428505e2937434329377d24\n"
        "Html:3:*:68746d6c74657874746573747369676e6174757265\n"
    )
    shutil.copy(UNIT / "clamav.hdb", db / "clamav.hdb")
    args = ["--no-summary", "-r", "-d", str(db), str(files)]
    theirs = subprocess.run(["clamscan", *args], capture_output=True, text=True, check=False)
    ours = vigil("scan", *args)
    assert ours.returncode == theirs.returncode
    assert sorted(ours.stdout.splitlines()) == sorted(theirs.stdout.splitlines())


def test_non_utf8_file_names_are_printed_as_bytes(tmp_path: Path) -> None:
    name = os.fsdecode(b"bad\xff\xfename.com")
    (tmp_path / name).write_bytes(EICAR)
    proc = subprocess.run(
        [sys.executable, "-m", "vigil.cli.main", "scan", "--no-summary", str(tmp_path)],
        capture_output=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    assert proc.returncode == 1
    assert b"bad\xff\xfename.com: Eicar-Signature.UNOFFICIAL FOUND\n" in proc.stdout


def test_file_list_errors_are_clear(tmp_path: Path) -> None:
    out = vigil("scan", "--no-summary", "-f", str(tmp_path / "missing"))
    assert out.returncode == 2
    assert "--file-list: Can't open file" in out.stderr and "internal error" not in out.stderr
    (tmp_path / "e.com").write_bytes(EICAR)
    lst = tmp_path / "list"
    lst.write_bytes(b"/tmp/a\x00b\n" + str(tmp_path / "e.com").encode() + b"\n")
    out = vigil("scan", "--no-summary", "-f", str(lst))
    assert "Eicar-Signature.UNOFFICIAL FOUND" in out.stdout
    assert "internal error" not in out.stderr
