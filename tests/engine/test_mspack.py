"""CAB, CHM and SZDD read through libmspack: members found and scanned, limits kept (cut
members, decoding budget), damaged input survived, a missing library tolerated.

Cabinets are built here with struct: stored folders, MSZIP folders (zlib raw deflate, one
stream per 32 KiB block, each primed with the block before) and LZX folders holding an
LZX "uncompressed block". SZDD files are built with literal-only or match-only LZSS. CHM
comes from the ClamAV sample only (no writer is at hand).
"""

from __future__ import annotations

import ctypes.util
import hashlib
import logging
import random
import shutil
import struct
import time
import zlib
from pathlib import Path

import pytest

from vigil.engine.containers import mspack
from vigil.engine.containers.child import Child
from vigil.engine.database import load_database
from vigil.engine.filetype import FileType
from vigil.engine.scanner import Engine

PAYLOAD = b"vigil mspack test payload\x00\x01\x02\xfe\xff" + bytes(range(64)) * 4
SIG_HEX = PAYLOAD[:40].hex()
CLAM_MD5 = "aa15bcf478d165efd2065190eb473bcb"
MIB = 1 << 20
FRAME = 32768
NONE, MSZIP, LZX16 = 0, 1, 3 | (16 << 8)

Block = tuple[bytes, int]  # (CFDATA payload, uncompressed length)


# --- builders ---------------------------------------------------------------------------


def stored(data: bytes) -> list[Block]:
    return [(data[i : i + FRAME], len(data[i : i + FRAME])) for i in range(0, len(data), FRAME)]


def mszip(data: bytes) -> list[Block]:
    blocks = []
    previous = b""
    for i in range(0, len(data), FRAME):
        chunk = data[i : i + FRAME]
        if previous:
            comp = zlib.compressobj(9, zlib.DEFLATED, -15, zdict=previous)
        else:
            comp = zlib.compressobj(9, zlib.DEFLATED, -15)
        blocks.append((b"CK" + comp.compress(chunk) + comp.flush(), len(chunk)))
        previous = chunk
    return blocks


def lzx_uncompressed(data: bytes) -> list[Block]:
    """One LZX frame (at most 32 KiB) holding an uncompressed block, no E8 translation."""
    assert len(data) <= FRAME
    bits = "0" + "011" + format(len(data) >> 8, "016b") + format(len(data) & 0xFF, "08b")
    bits += "0" * (-len(bits) % 16)
    words = b"".join(struct.pack("<H", int(bits[i : i + 16], 2)) for i in range(0, len(bits), 16))
    body = words + struct.pack("<III", 1, 1, 1) + data + b"\x00" * (len(data) & 1)
    return [(body, len(data))]


def cab(
    folders: list[tuple[int, list[Block]]],
    files: list[tuple[str, int, int, int]],
) -> bytes:
    """A cabinet: ``folders`` as (compression, blocks); ``files`` as (name, length, offset
    in the folder, folder index). Data blocks carry no checksum (0 means none)."""
    header_len = 36 + 8 * len(folders)
    records = b"".join(
        struct.pack("<IIHHHH", length, offset, index, 0x5021, 0, 0x20) + name.encode() + b"\0"
        for name, length, offset, index in files
    )
    start = header_len + len(records)
    folder_records = b""
    data = b""
    for comp, blocks in folders:
        folder_records += struct.pack("<IHH", start + len(data), len(blocks), comp)
        for payload, size in blocks:
            data += struct.pack("<IHH", 0, len(payload), size) + payload
    total = start + len(data)
    head = struct.pack(
        "<4sIIIIIBBHHHHH", b"MSCF", 0, total, 0, header_len, 0, 3, 1, len(folders), len(files),
        0, 1234, 0,
    )  # fmt: skip
    return head + folder_records + records + data


def szdd_literal(data: bytes, declared: int = -1) -> bytes:
    """SZDD with every byte a literal (a control byte of eight 1 bits per 8 bytes)."""
    body = b"".join(b"\xff" + data[i : i + 8] for i in range(0, len(data), 8))
    size = len(data) if declared < 0 else declared
    return b"SZDD\x88\xf0\x27\x33A\x00" + struct.pack("<I", size) + body


def szdd_matches(groups: int, declared: int) -> bytes:
    """SZDD made of 18-byte matches into the space-filled window (144 bytes per 17)."""
    match = bytes([0xF0, 0x0F])  # window offset 0xFF0, length 15 + 3
    return (
        b"SZDD\x88\xf0\x27\x33A\x00"
        + struct.pack("<I", declared)
        + ((b"\x00" + match * 8) * groups)
    )


def names(children: list[Child]) -> list[tuple[str, bytes]]:
    return [(c.name, c.data) for c in children]


@pytest.fixture
def ndb(tmp_path: Path) -> Path:
    path = tmp_path / "payload.ndb"
    path.write_text(f"Test.Payload:0:*:{SIG_HEX}\n")
    return path


LEAD = b"A" * 50000
MIXED = cab(
    [
        (NONE, stored(LEAD + PAYLOAD)),
        (MSZIP, mszip(LEAD + PAYLOAD)),
        (LZX16, lzx_uncompressed(PAYLOAD)),
    ],
    [
        ("stored/lead", len(LEAD), 0, 0),
        ("stored/payload", len(PAYLOAD), len(LEAD), 0),
        ("mszip/lead", len(LEAD), 0, 1),
        ("mszip/payload", len(PAYLOAD), len(LEAD), 1),
        ("lzx/payload", len(PAYLOAD), 0, 2),
    ],
)


# --- CAB --------------------------------------------------------------------------------


def test_cab_stored_mszip_lzx() -> None:
    got = list(mspack._cab(MIXED, MIB))
    assert names(got) == [
        ("stored/lead", LEAD),
        ("stored/payload", PAYLOAD),
        ("mszip/lead", LEAD),
        ("mszip/payload", PAYLOAD),
        ("lzx/payload", PAYLOAD),
    ]
    assert {(c.compressed, c.oversized, c.encrypted) for c in got} == {(0, False, False)}
    assert [c.real for c in got] == [len(LEAD), len(PAYLOAD)] * 2 + [len(PAYLOAD)]


def test_cab_payload_found_by_the_scanner(ndb: Path) -> None:
    assert FileType.MSCAB in mspack.UNPACKERS
    data = cab([(MSZIP, mszip(PAYLOAD))], [("p.bin", len(PAYLOAD), 0, 0)])
    assert Engine(load_database([ndb])).scan(data).names == ["Test.Payload.UNOFFICIAL"]


def test_cab_members_over_the_limit_are_cut() -> None:
    """A member over the limit gives its first ``limit`` bytes; the member after it in the
    same folder still decodes from the right place."""
    got = list(mspack._cab(MIXED, 1000))
    assert [(c.name, len(c.data), c.oversized, c.real) for c in got] == [
        ("stored/lead", 1000, True, len(LEAD)),
        ("stored/payload", len(PAYLOAD), False, len(PAYLOAD)),
        ("mszip/lead", 1000, True, len(LEAD)),
        ("mszip/payload", len(PAYLOAD), False, len(PAYLOAD)),
        ("lzx/payload", len(PAYLOAD), False, len(PAYLOAD)),
    ]
    assert got[2].data == LEAD[:1000] and got[3].data == PAYLOAD


def test_cab_with_trailing_bytes_and_at_an_offset() -> None:
    expected = names(list(mspack._cab(MIXED, MIB)))
    assert names(list(mspack._cab(MIXED + b"\x00trailing garbage" * 100, MIB))) == expected
    sfx = b"MZ" + bytes(5000) + MIXED + b"overlay"
    offset = sfx.find(b"MSCF")
    assert names(list(mspack._cab(sfx[offset:], MIB))) == expected
    assert list(mspack._cab(sfx, MIB)) == []  # the caller passes data from "MSCF"


def _zero_frames(count: int) -> list[Block]:
    """MSZIP blocks of 32 KiB of zeros: about 56 bytes each."""
    first = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = b"CK" + first.compress(bytes(FRAME)) + first.flush()
    rest = zlib.compressobj(9, zlib.DEFLATED, -15, zdict=bytes(FRAME))
    block = b"CK" + rest.compress(bytes(FRAME)) + rest.flush()
    return [(head, FRAME)] + [(block, FRAME)] * (count - 1)


def test_cab_bomb_is_cut_and_budgeted(monkeypatch: pytest.MonkeyPatch) -> None:
    """64 MiB of zeros in ~115 KiB: the last member of a folder stops decoding at the cut;
    reaching a member behind a large one is allowed within the budget, and past it the
    rest of the cabinet is abandoned, quickly."""
    frames = _zero_frames(2048)
    size = 2048 * FRAME
    alone = cab([(MSZIP, frames)], [("bomb", size, 0, 0)])
    started = time.monotonic()
    [child] = mspack._cab(alone, MIB)
    assert (len(child.data), child.oversized, child.real) == (MIB, True, size)
    assert time.monotonic() - started < 0.5
    tail = cab([(MSZIP, frames)], [("bomb", size - 100, 0, 0), ("tail", 100, size - 100, 0)])
    assert [(c.name, len(c.data)) for c in mspack._cab(tail, MIB)] == [("bomb", MIB), ("tail", 100)]
    monkeypatch.setattr(mspack, "MIN_SKIP", MIB)
    started = time.monotonic()
    got = list(mspack._cab(tail, MIB))
    assert [(c.name, len(c.data), c.oversized) for c in got] == [("bomb", 0, True)]
    assert time.monotonic() - started < 0.5


def test_cab_bad_input() -> None:
    started = time.monotonic()
    for end in range(0, len(MIXED), 97):
        for child in mspack._cab(MIXED[:end], MIB):
            assert len(child.data) <= MIB
    rng = random.Random(7)
    for _ in range(200):
        bad = bytearray(MIXED)
        for _ in range(rng.randint(1, 4)):
            bad[rng.randrange(400 if rng.random() < 0.8 else len(bad))] = rng.randrange(256)
        for child in mspack._cab(bytes(bad), MIB):
            assert len(child.data) <= MIB
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    "patch",
    [
        lambda d: d[:28] + struct.pack("<HH", 1, 65535) + d[32:],  # 65535 files claimed
        lambda d: d[:8] + struct.pack("<I", 0xFFFFFFFF) + d[12:],  # cabinet length
        lambda d: d[:16] + struct.pack("<I", 0xFFFFFFF0) + d[20:],  # files offset
        lambda d: d[:36] + struct.pack("<IHH", 0xFFFFFF00, 65535, 1) + d[44:],  # folder
        lambda d: d[:44] + struct.pack("<II", 0xFFFFFFFF, 0xFFFFFFF0) + d[52:],  # file size
        lambda d: d[:36] + struct.pack("<IHH", 60, 1, 0x0F) + d[44:],  # unknown method
    ],
    ids=["files", "length", "files-offset", "folder", "file-size", "method"],
)
def test_cab_absurd_fields(patch: object) -> None:
    data = patch(cab([(MSZIP, mszip(PAYLOAD))], [("p", len(PAYLOAD), 0, 0)]))  # type: ignore[operator]
    started = time.monotonic()
    for child in mspack._cab(data, MIB):
        assert len(child.data) <= MIB
    assert time.monotonic() - started < 2


# --- SZDD -------------------------------------------------------------------------------


def test_szdd_literals_and_the_scanner(ndb: Path) -> None:
    data = szdd_literal(PAYLOAD)
    assert names(list(mspack._szdd(data, MIB))) == [("szdd", PAYLOAD)]
    assert Engine(load_database([ndb])).scan(data).names == ["Test.Payload.UNOFFICIAL"]


def test_szdd_limits() -> None:
    # declared over the limit: not decoded
    [child] = mspack._szdd(szdd_matches(1000, 144000), 1000)
    assert (child.data, child.oversized, child.real) == (b"", True, 144000)
    # a stream that expands past its declared size stops at that size, quickly
    started = time.monotonic()
    [child] = mspack._szdd(szdd_matches(60000, 100), MIB)
    assert (child.data, child.oversized, child.real) == (b" " * 100, False, 100)
    assert time.monotonic() - started < 0.5
    # trailing bytes are not part of the file
    [child] = mspack._szdd(szdd_literal(PAYLOAD) + b"\xffgarbage!" * 50, MIB)
    assert child.data == PAYLOAD


def test_szdd_bad_input() -> None:
    good = szdd_literal(PAYLOAD)
    for end in range(len(good)):
        for child in mspack._szdd(good[:end], MIB):
            assert len(child.data) <= len(PAYLOAD)
    assert list(mspack._szdd(b"SZDD\x88\xf0\x27\x33B" + bytes(20), MIB)) == []  # method
    assert list(mspack._szdd(b"not szdd at all", MIB)) == []


# --- CHM --------------------------------------------------------------------------------


def test_chm_sample_members(scanfiles: Path) -> None:
    got = {c.name: c for c in mspack._chm((scanfiles / "clam.chm").read_bytes(), MIB)}
    assert hashlib.md5(got["/clam.exe.txt"].data).hexdigest() == CLAM_MD5
    assert not any(name.startswith("::") for name in got)  # system files stay out
    assert len(got) == 15 and all(len(c.data) == c.real for c in got.values())
    cut = {c.name: c for c in mspack._chm((scanfiles / "clam.chm").read_bytes(), 300)}
    assert cut["/#SYSTEM"].oversized and len(cut["/#SYSTEM"].data) == 300
    assert cut["/#SYSTEM"].data == got["/#SYSTEM"].data[:300]
    assert cut["/clam.exe.txt"].oversized and cut["/clam.chm.hhk"].data == got["/clam.chm.hhk"].data


def test_chm_bad_input(scanfiles: Path) -> None:
    good = (scanfiles / "clam.chm").read_bytes()
    started = time.monotonic()
    for end in range(0, len(good), 211):
        for child in mspack._chm(good[:end], MIB):
            assert len(child.data) <= MIB
    rng = random.Random(11)
    for _ in range(150):
        bad = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            bad[rng.randrange(len(bad))] = rng.randrange(256)
        for child in mspack._chm(bytes(bad), MIB):
            assert len(child.data) <= MIB
    assert time.monotonic() - started < 10
    assert list(mspack._chm(b"ITSF" + bytes(200), MIB)) == []


# --- a missing library ------------------------------------------------------------------


def test_missing_library_logs_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(mspack, "_loaded", None)
    monkeypatch.setattr(mspack, "_load_failed", False)
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: "/nonexistent/libmspack.so.0")
    with caplog.at_level(logging.WARNING, logger=mspack.__name__):
        for unpack in mspack.UNPACKERS.values():
            assert list(unpack(MIXED, MIB)) == []
    assert len([r for r in caplog.records if "libmspack is unavailable" in r.message]) == 1


def test_garbage_and_empty() -> None:
    for unpack in mspack.UNPACKERS.values():
        for data in (b"", b"MSCF", b"\x00" * 100, bytes(range(256)) * 8):
            assert list(unpack(data, MIB)) == []


# --- ClamAV samples, and clamscan ---------------------------------------------------------


@pytest.mark.parametrize(
    ("sample", "name"),
    [("clam.cab", "clam.exe"), ("clam.chm", "/clam.exe.txt"), ("clam.exe.szdd", "szdd")],
)
def test_samples_unpack_to_clam_exe(scanfiles: Path, sample: str, name: str) -> None:
    unpack = {"cab": mspack._cab, "chm": mspack._chm, "szdd": mspack._szdd}[sample[-4:].strip(".")]
    got = {c.name: c.data for c in unpack((scanfiles / sample).read_bytes(), MIB)}
    assert hashlib.md5(got[name]).hexdigest() == CLAM_MD5


@pytest.mark.differential
@pytest.mark.skipif(shutil.which("clamscan") is None, reason="Debian's clamscan is not installed")
def test_samples_as_clamscan(scanfiles: Path) -> None:
    from tests.conftest import UNIT
    from tests.differential.test_clamscan import compare

    names = ["clam.cab", "clam.chm", "clam.exe.szdd"]
    compare([UNIT / "clamav.hdb"], [scanfiles / n for n in names])
