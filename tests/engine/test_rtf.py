"""RTF embedded objects (vigil.engine.containers.rtf): OLE1 Package objects in \\objdata
groups as libclamav reads them, and bad input that must end quickly."""

from __future__ import annotations

import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

from vigil.engine.containers.child import Child
from vigil.engine.containers.rtf import unpack_rtf
from vigil.engine.database import load_database
from vigil.engine.scanner import Engine

PAYLOAD = b"\x00\x01VIGIL-HARMLESS-RTF-TEST-PAYLOAD-0123456789\xfe\xff"
LIMIT = 1 << 20
CLAMSCAN = shutil.which("clamscan")
HEAD = b"{\\rtf1\\ansi{\\fonttbl{\\f0 Times;}}\n"


def package(data: bytes) -> bytes:
    """OLE1 native data of a "Package" object holding ``data``."""
    tmp = b"C:\\tmp\\file.bin"
    return (
        struct.pack("<H", 2)
        + b"file.bin\x00C:\\x\\file.bin\x00"
        + struct.pack("<HHI", 0, 3, len(tmp) + 1)
        + tmp
        + b"\x00"
        + struct.pack("<I", len(data))
        + data
    )


def ole1(native: bytes, cls: bytes = b"Package\x00") -> bytes:
    return (
        struct.pack("<III", 0x501, 2, len(cls))
        + cls
        + struct.pack("<III", 0, 0, len(native))
        + native
    )


def objdata(hexdata: bytes) -> bytes:
    return HEAD + b"{\\object\\objemb{\\*\\objdata " + hexdata + b"}}}"


def children(data: bytes, limit: int = LIMIT) -> list[Child]:
    return list(unpack_rtf(data, limit))


def test_package_object() -> None:
    hexdata = ole1(package(PAYLOAD)).hex().encode()
    wrapped = b"\r\n".join(hexdata[i : i + 64] for i in range(0, len(hexdata), 64))
    assert [c.data for c in children(objdata(wrapped))] == [PAYLOAD]
    assert [c.data for c in children(objdata(hexdata.upper()))] == [PAYLOAD]
    # control words and nested groups inside the hex are skipped
    mixed = hexdata[:40] + b"\\par{\\*\\x abcdef}" + hexdata[40:]
    assert [c.data for c in children(objdata(mixed))] == [PAYLOAD]


def test_ole2_object_and_two_objects() -> None:
    ole2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + PAYLOAD
    two = ole1(ole2, b"Word.Document.8\x00") + ole1(package(PAYLOAD[::-1]))
    assert [c.data for c in children(objdata(two.hex().encode()))] == [ole2, PAYLOAD[::-1]]


def test_what_libclamav_ignores() -> None:
    hexdata = ole1(package(PAYLOAD)).hex().encode()
    assert children(HEAD + b"{\\objemb{\\*\\objdata " + hexdata + b"}}}") == []  # no \object
    assert children(HEAD + b"{\\object {\\*\\objdata " + hexdata + b"}}}") == []  # "object "
    assert children(HEAD + b"{\\object\\x{\\*\\objdata\n" + hexdata + b"}}}") == []
    # a header split across libclamav's text chunks right before its 8 skipped bytes
    assert children(objdata(hexdata[:50] + b"\\par " + hexdata[50:])) == []


def test_truncated_object_copies_whole_8k_blocks_only() -> None:
    big = bytes(range(256)) * 100
    hexdata = ole1(package(big)).hex().encode()
    assert children(objdata(hexdata[:5000])) == []
    out = children(objdata(hexdata[:30000]))
    assert [len(c.data) for c in out] == [8192]


def test_found_by_the_engine(tmp_path: Path) -> None:
    sig = tmp_path / "p.ndb"
    sig.write_text(f"Test.Payload:0:*:{PAYLOAD[2:30].hex()}\n")
    engine = Engine(load_database([sig]))
    assert engine.scan(objdata(ole1(package(PAYLOAD)).hex().encode())).names == [
        "Test.Payload.UNOFFICIAL"
    ]


def _quick(data: bytes, seconds: float = 5.0) -> list[Child]:
    started = time.monotonic()
    out = children(data)
    assert time.monotonic() - started < seconds
    return out


def test_bad_input() -> None:
    doc = objdata(ole1(package(PAYLOAD)).hex().encode())
    for cut in range(0, len(doc), 5):
        _quick(doc[:cut])
    _quick(b"{\\rtf1" + b"}" * 2_000_000 + doc)
    _quick(b"{\\rtf1" + b"{" * 1_000_000 + b"\\object\\x{\\*\\objdata 0105}" + b"}" * 1_000_000)
    _quick(b"{\\rtf1\\object\\x" + b"{\\*\\objdata 01" * 100_000)
    _quick(b"{\\rtf1{\\object\\x{\\*\\objdata " + b"\\par 01" * 300_000 + b"}}}")
    huge = ole1(package(b"")).hex().encode()[:-8] + b"ffffffff"  # a 4 GiB size, no data
    assert _quick(objdata(huge)) == []


@pytest.mark.differential
@pytest.mark.skipif(CLAMSCAN is None, reason="Debian's clamscan is not installed")
def test_like_clamscan(scanfiles: Path, tmp_path: Path) -> None:
    db = Path(__file__).parents[1] / "data" / "clamav-unit" / "clamav.hdb"
    sample = scanfiles / "clam.exe.rtf"
    assert CLAMSCAN is not None
    theirs = subprocess.run(
        [CLAMSCAN, "--no-summary", "--disable-cache", "-d", str(db), str(sample)],
        capture_output=True,
        timeout=120,
        check=False,
    ).stdout.decode()
    assert theirs.strip().endswith("ClamAV-Test-File.UNOFFICIAL FOUND")
    ours = Engine(load_database([db])).scan(sample.read_bytes()).names
    assert ours == ["ClamAV-Test-File.UNOFFICIAL"]
