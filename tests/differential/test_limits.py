"""Every scan limit, with and without AlertExceedsMax, against the real clamscan.

Each case builds a small container around a harmless marker that a one-line .ndb signature
finds, scans it with clamscan (the limit given as its command-line option) and with Vigil's
engine (the same limit in ``Limits``), in first-match and all-match mode, and requires the
same names in the same order.
"""

from __future__ import annotations

import gzip
import io
import shutil
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import UNIT, xor_decode
from vigil.engine.database import load_database
from vigil.engine.limits import Limits
from vigil.engine.scanner import Engine, ScanOptions

CLAMSCAN = shutil.which("clamscan")
pytestmark = [
    pytest.mark.differential,
    pytest.mark.skipif(CLAMSCAN is None, reason="clamscan (Debian's clamav) is not installed"),
]

MARKER = b"vigil-harmless-limit-test-marker"
SIG = f"Vigil.Test.Marker:0:*:{MARKER.hex()}\n"
HDB = (UNIT / "clamav.hdb").read_text()
PCRE_WORD = b"vigil-pcre-probe"
LDB = (
    f"Vigil.Test.Pcre;Engine:81-255,Target:0;0&1;{PCRE_WORD.hex()};"
    f"0/{PCRE_WORD.decode()}-[0-9]{{3}}/\n"
)


def zipped(members: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in members:
            z.writestr(name, data)
    return buf.getvalue()


def filler(n: int, seed: int) -> bytes:
    """``n`` bytes that compress and hold no marker."""
    return (bytes([65 + seed % 26]) * 61 + b"\n") * (n // 62) + b"." * (n % 62)


def nested(depth: int) -> bytes:
    data = b"head " + MARKER + b" tail\n"
    for level in range(depth):
        data = zipped([(f"level{level}.zip" if level else "marker.txt", data)])
    return data


def encrypted_zip() -> bytes:
    """A ZIP whose only member claims traditional PKWARE encryption (flag bit 0)."""
    raw = zipped([("secret.txt", b"x" * 100 + MARKER)], zipfile.ZIP_STORED)
    out = bytearray(raw)
    local = out.find(b"PK\x03\x04")
    central = out.find(b"PK\x01\x02")
    out[local + 6] |= 1
    out[central + 8] |= 1
    return bytes(out)


CLAM_EXE = UNIT / "clamav_hdb_scanfiles" / "clam.exe.xor"


def pe_with_embedded_pe() -> bytes:
    """ClamAV's test PE twice: the second copy is an embedded PE at offset 544."""
    exe = xor_decode(CLAM_EXE.read_bytes())
    return exe + exe


def html_marker() -> bytes:
    """The marker only appears once the HTML is normalised (lower-cased), in the
    comment-free and in the tag-free form."""
    return b"<html><body>" + MARKER.upper() + b"</body></html>\n"


def script_marker() -> bytes:
    """Text whose marker only appears in the normalised (lower-cased) form."""
    return b"plain text line\n" + MARKER.upper() + b"\n" + b"x" * 200 + b"\n"


def pcre_probe() -> bytes:
    """Binary data (a text file's normalised pass runs PCREs on pieces of its buffer)."""
    return bytes(range(256)) * 12 + PCRE_WORD + b"-123\n"


# (id, container builder, clamscan options, Limits fields)
CASES: list[tuple[str, Callable[[], bytes], list[str], dict[str, object]]] = [
    (
        "max-filesize member",
        lambda: zipped([("small.txt", filler(500, 1)), ("big.txt", filler(5000, 2) + MARKER)]),
        ["--max-filesize=3000"],
        {"max_filesize": 3000},
    ),
    (
        "max-filesize marker in small member",
        lambda: zipped([("big.txt", filler(5000, 2)), ("small.txt", MARKER)]),
        ["--max-filesize=3000"],
        {"max_filesize": 3000},
    ),
    (
        "max-scansize",
        lambda: zipped(
            [(f"m{i}.txt", filler(1500, i) + (MARKER if i == 3 else b"")) for i in range(4)]
        ),
        ["--max-scansize=4000"],
        {"max_scansize": 4000},
    ),
    (
        "max-files",
        lambda: zipped(
            [(f"m{i}.txt", filler(100, i) + (MARKER if i == 4 else b"")) for i in range(5)]
        ),
        ["--max-files=3"],
        {"max_files": 3},
    ),
    (
        "max-files marker first",
        lambda: zipped(
            [(f"m{i}.txt", filler(100, i) + (MARKER if i == 0 else b"")) for i in range(5)]
        ),
        ["--max-files=3"],
        {"max_files": 3},
    ),
    (
        "max-scansize root",
        lambda: MARKER + b"\n" + b"x" * 20000 + b"\n",
        ["--max-scansize=10000"],
        {"max_scansize": 10000},
    ),
    (
        "max-scansize counts the container",
        lambda: zipped(
            [("a.txt", filler(5000, 1)), ("b.txt", filler(5000, 2)), ("c.txt", MARKER)],
            zipfile.ZIP_STORED,
        ),
        ["--max-scansize=10100"],
        {"max_scansize": 10100},
    ),
    (
        "max-files counts the root",
        lambda: gzip.compress(MARKER),
        ["--max-files=1"],
        {"max_files": 1},
    ),
    (
        "max-files boundary",
        lambda: zipped(
            [(f"m{i}.bin", filler(100, i) + (MARKER if i == 2 else b"")) for i in range(3)]
        ),
        ["--max-files=3"],
        {"max_files": 3},
    ),
    ("max-recursion", lambda: nested(6), ["--max-recursion=3"], {"max_recursion": 3}),
    ("max-recursion reached", lambda: nested(3), ["--max-recursion=3"], {"max_recursion": 3}),
    ("max-recursion within", lambda: nested(2), ["--max-recursion=3"], {"max_recursion": 3}),
    ("max-recursion one", lambda: nested(1), ["--max-recursion=1"], {"max_recursion": 1}),
    ("within limits", lambda: nested(4), [], {}),
    (
        "encrypted zip",
        encrypted_zip,
        ["--alert-encrypted-archive=yes"],
        {"alert_encrypted_archive": True},
    ),
    ("encrypted zip without alert", encrypted_zip, [], {}),
    ("embedded pe", pe_with_embedded_pe, [], {}),
    (
        "max-embeddedpe",
        pe_with_embedded_pe,
        ["--max-embeddedpe=100"],
        {"max_embedded_pe": 100},
    ),
    ("html normalised", html_marker, [], {}),
    (
        "max-htmlnormalize",
        html_marker,
        ["--max-htmlnormalize=20"],
        {"max_html_normalize": 20},
    ),
    ("max-htmlnotags", html_marker, ["--max-htmlnotags=20"], {"max_html_notags": 20}),
    ("script normalised", script_marker, [], {}),
    ("pcre", pcre_probe, [], {}),
    ("pcre-max-filesize", pcre_probe, ["--pcre-max-filesize=1000"], {"pcre_max_filesize": 1000}),
    (
        "max-scriptnormalize",
        script_marker,
        ["--max-scriptnormalize=20"],
        {"max_script_normalize": 20},
    ),
]


def clamscan(dbs: list[Path], target: Path, options: list[str], allmatch: bool) -> list[str]:
    assert CLAMSCAN is not None
    cmd = [CLAMSCAN, "--no-summary", "--bytecode=no", "--disable-cache", *options]
    for db in dbs:
        cmd += ["-d", str(db)]
    if allmatch:
        cmd.append("-z")
    proc = subprocess.run([*cmd, str(target)], capture_output=True, timeout=120, check=False)
    assert proc.returncode in (0, 1), proc.stderr.decode(errors="replace")
    names = []
    for line in proc.stdout.decode("latin-1").splitlines():
        _, _, verdict = line.rpartition(": ")
        if verdict.endswith(" FOUND"):
            names.append(verdict[: -len(" FOUND")])
    return names


@pytest.mark.parametrize("alert", [False, True], ids=["quiet", "alert-exceeds-max"])
@pytest.mark.parametrize(
    ("build", "options", "fields"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_limit_as_clamscan(
    tmp_path: Path,
    build: Callable[[], bytes],
    options: list[str],
    fields: dict[str, object],
    alert: bool,
) -> None:
    db = tmp_path / "marker.ndb"
    db.write_text(SIG)
    hdb = tmp_path / "clam.hdb"
    hdb.write_text(HDB)
    ldb = tmp_path / "pcre.ldb"
    ldb.write_text(LDB)
    target = tmp_path / "sample.bin"
    target.write_bytes(build())
    limits = Limits(alert_exceeds_max=alert, **fields)  # type: ignore[arg-type]
    engine = Engine(load_database([db, hdb, ldb]), limits)
    extra = ["--alert-exceeds-max=yes"] if alert else []
    for allmatch in (False, True):
        theirs = clamscan([db, hdb, ldb], target, options + extra, allmatch)
        ours = engine.scan(target.read_bytes(), ScanOptions(allmatch=allmatch)).names
        assert ours == theirs, f"allmatch={allmatch}"
