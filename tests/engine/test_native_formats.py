"""ZIP (libclamav's reading, plus recovery from local headers), ARJ and SIS members, and
the C decoders behind them (implode, ARJ methods 1-4): fixtures built here, ClamAV's
samples differential against clamscan, and damaged input, bombs and fuzzing that must end
quickly, within bounded memory and without an exception."""

from __future__ import annotations

import base64
import bz2
import hashlib
import io
import random
import shutil
import struct
import subprocess
import time
import tracemalloc
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import inflate64
import pytest

from tests.conftest import UNIT
from vigil.engine.containers import CONTAINER_TYPES, Child, extract
from vigil.engine.containers import native_formats as nf
from vigil.engine.database import load_database
from vigil.engine.filetype import FileType
from vigil.engine.limits import Limits
from vigil.engine.scanner import Engine, ScanOptions
from vigil.native import _arj, _explode

PAYLOAD = b"Vigil native-formats test payload: harmless bytes, found by their MD5.\n" * 9
SIG = "Vigil.Test.NativePayload"
LIMIT = 1 << 20
CLAMSCAN = shutil.which("clamscan")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    f = tmp_path / "payload.hdb"
    f.write_text(f"{hashlib.md5(PAYLOAD).hexdigest()}:{len(PAYLOAD)}:{SIG}\n")
    return f


def members(unpack: object, data: bytes, limit: int = LIMIT) -> list[Child]:
    return list(unpack(data, limit))  # type: ignore[operator]


# ------------------------------------------------------------------ a ZIP writer


def local_header(
    name: bytes, comp: bytes, crc: int, usize: int, method: int, flags: int = 0, extra: bytes = b""
) -> bytes:
    return (
        struct.pack(
            "<IHHHHHIIIHH",
            0x04034B50,
            20,
            flags,
            method,
            0,
            0,
            crc,
            len(comp),
            usize,
            len(name),
            len(extra),
        )
        + name
        + extra
    )


def central_header(
    name: bytes, offset: int, method: int, crc: int, csize: int, usize: int, flags: int = 0
) -> bytes:
    head = struct.pack(
        "<IHHHHHHIIIHHHHHII",
        0x02014B50,
        20,
        20,
        flags,
        method,
        0,
        0,
        crc,
        csize,
        usize,
        len(name),
        0,
        0,
        0,
        0,
        0,
        offset,
    )
    return head + name


def end_record(count: int, size: int, offset: int) -> bytes:
    return struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, size, offset, 0)


def raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def make_zip(
    files: list[tuple[bytes, bytes, int, bytes]],
    central: bool = True,
    prefix: bytes = b"",
    flags: int = 0,
) -> bytes:
    """(name, data, method, compressed) members; offsets relative to the archive."""
    out = bytearray()
    cd = bytearray()
    for name, data, method, comp in files:
        crc = zlib.crc32(data)
        cd += central_header(name, len(out), method, crc, len(comp), len(data), flags)
        out += local_header(name, comp, crc, len(data), method, flags) + comp
    if central:
        out += cd + end_record(len(files), len(cd), len(out))
    return prefix + bytes(out)


def deflated(name: bytes, data: bytes) -> tuple[bytes, bytes, int, bytes]:
    return name, data, 8, raw_deflate(data)


def stored(name: bytes, data: bytes) -> tuple[bytes, bytes, int, bytes]:
    return name, data, 0, data


# ------------------------------------------------------------------ an implode encoder


def implode(data: bytes, flags: int) -> bytes:
    """A small PKWARE implode encoder for the tests: fixed-length Shannon-Fano codes (8-bit
    literals, 6-bit lengths and distances) and greedy matches found with ``rfind``."""
    large, literal_tree = bool(flags & 2), bool(flags & 4)
    low = 7 if large else 6
    min_len = 3 if literal_tree else 2
    window = 8192 if large else 4096
    acc = 0
    nbits = 0

    def put(value: int, n: int) -> None:  # raw bits, LSB first
        nonlocal acc, nbits
        acc |= value << nbits
        nbits += n

    def code(symbol: int, length: int) -> None:  # uniform Shannon-Fano code, MSB first
        c = (1 << length) - 1 - symbol
        for i in range(length - 1, -1, -1):
            put((c >> i) & 1, 1)

    trees = (bytes([15]) + b"\xf7" * 16 if literal_tree else b"") + (bytes([3]) + b"\xf5" * 4) * 2
    i = 0
    while i < len(data):
        best, dist = 0, 0
        j = data.rfind(data[i : i + min_len], max(0, i - window), i + min_len - 1)
        if j >= 0 and j < i and i + min_len <= len(data):
            n = 0
            while i + n < len(data) and n < 63 + 255 + min_len and data[j + n] == data[i + n]:
                n += 1
            best, dist = n, i - j
        if best >= min_len:
            put(0, 1)
            d = dist - 1
            put(d & ((1 << low) - 1), low)
            code(d >> low, 6)
            length = best - min_len
            code(min(length, 63), 6)
            if length >= 63:
                put(length - 63, 8)
            i += best
        else:
            put(1, 1)
            if literal_tree:
                code(data[i], 8)
            else:
                put(data[i], 8)
            i += 1
    return trees + acc.to_bytes((nbits + 7) // 8, "little")


# ------------------------------------------------------------------ ZIP


TEXT = b"".join(b"line %d of a compressible text, %s\n" % (i, b"abc" * (i % 5)) for i in range(300))


def test_zip_methods(tmp_path: Path) -> None:
    lz = io.BytesIO()
    with zipfile.ZipFile(lz, "w", zipfile.ZIP_LZMA) as z:
        z.writestr("lzma.txt", TEXT)
    d64 = inflate64.Deflater()
    files = [
        stored(b"stored.txt", TEXT),
        deflated(b"deflate.txt", TEXT),
        (b"deflate64.txt", TEXT, 9, d64.deflate(TEXT) + d64.flush()),
        (b"bzip2.txt", TEXT, 12, bz2.compress(TEXT)),
    ]
    got = {c.name: c for c in members(nf._zip, make_zip(files))}
    for name, data, _, comp in files:
        child = got[name.decode()]
        assert child.data == data and not child.oversized
        assert (child.compressed, child.real) == (len(comp), len(data))
    (child,) = members(nf._zip, lz.getvalue())
    assert child.data == TEXT


def test_zip_zstandard() -> None:
    zstandard = pytest.importorskip("zstandard")
    comp = zstandard.ZstdCompressor().compress(TEXT)
    (child,) = members(nf._zip, make_zip([(b"z.txt", TEXT, 93, comp)]))
    assert child.data == TEXT


@pytest.mark.parametrize("flags", [0, 2, 4, 6])
def test_zip_implode(flags: int) -> None:
    data = TEXT + bytes(range(256)) * 3 + b"\x00" * 5000
    comp = implode(data, flags)
    assert _explode.explode(comp, flags, len(data), LIMIT) == data
    crc = zlib.crc32(data)
    body = local_header(b"i.txt", comp, crc, len(data), 6, flags) + comp
    cd = central_header(b"i.txt", 0, 6, crc, len(comp), len(data), flags)
    (child,) = members(nf._zip, body + cd + end_record(1, len(cd), len(body)))
    assert child.data == data


def test_zip_sample_members(scanfiles: Path) -> None:
    exe = (scanfiles / "clam.exe").read_bytes()
    for name in ("clam.zip", "clam.bz2.zip", "clam.d64.zip", "clam.impl.zip"):
        (child,) = members(nf._zip, (scanfiles / name).read_bytes())
        assert child.data == exe, name
    oneseg = (scanfiles / "clam.split.oneseg.zip").read_bytes()
    assert oneseg[:8] == b"PK\x07\x08PK\x03\x04"  # the spanning marker, then the member
    assert [c.data for c in members(nf._zip, oneseg)] == [exe]
    assert [c.data for c in members(nf.unzip_single, oneseg[4:])] == [exe]
    assert [c.data for c in members(nf._zip, oneseg[4:])] == [exe]  # absolute offsets


def test_zip_recovers_members_the_central_directory_misses() -> None:
    a, b = deflated(b"a.txt", b"first member"), deflated(b"b.bin", PAYLOAD)
    full = make_zip([a, b])
    no_cd = make_zip([a, b], central=False)
    listed_one = make_zip([a])
    cut = listed_one.index(b"PK\x01\x02")
    hidden_tail = local_header(b"b.bin", b[3], zlib.crc32(PAYLOAD), len(PAYLOAD), 8) + b[3]
    hidden = listed_one[:cut] + hidden_tail + listed_one[cut:]
    end = hidden.rindex(b"PK\x05\x06")
    hidden = hidden[: end + 16] + struct.pack("<I", cut + len(hidden_tail)) + hidden[end + 20 :]
    broken = bytearray(full)
    broken[broken.index(b"PK\x01\x02") + 2] = 0
    for data in (full, no_cd, hidden, bytes(broken)):
        assert [c.data for c in members(nf._zip, data)][-1] == PAYLOAD


def test_zip_offsets_shifted_by_a_prefix_or_a_cut() -> None:
    plain = make_zip([deflated(b"a.txt", TEXT), deflated(b"p.bin", PAYLOAD)])
    prefixed = b"MZ" + b"\x90" * 500 + plain  # offsets relative to the archive
    absolute = bytearray(plain)  # offsets as if 300 bytes came first, then cut away
    cd = absolute.index(b"PK\x01\x02")
    for pos in range(cd, absolute.index(b"PK\x05\x06"), 1):
        if absolute[pos : pos + 4] == b"PK\x01\x02":
            (off,) = struct.unpack_from("<I", absolute, pos + 42)
            struct.pack_into("<I", absolute, pos + 42, off + 300)
    end = absolute.index(b"PK\x05\x06")
    struct.pack_into("<I", absolute, end + 16, cd + 300)
    for data in (prefixed, bytes(absolute)):
        got = members(nf._zip, data)
        assert [c.name for c in got] == ["a.txt", "p.bin"] and got[1].data == PAYLOAD


def test_zip_data_descriptors_with_and_without_central_directory() -> None:
    comp = raw_deflate(PAYLOAD)
    crc = zlib.crc32(PAYLOAD)
    head = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 8, 8, 0, 0, 0, 0, 0, 5, 0) + b"p.bin"
    desc = struct.pack("<4sIII", b"PK\x07\x08", crc, len(comp), len(PAYLOAD))
    body = head + comp + desc
    cd = central_header(b"p.bin", 0, 8, crc, len(comp), len(PAYLOAD), 8)
    with_cd = body + cd + end_record(1, len(cd), len(body))
    second = body.replace(b"p.bin", b"q.bin")
    for data in (with_cd, body, body + second):
        got = members(nf._zip, data)
        assert all(c.data == PAYLOAD for c in got) and got
        assert got[0].compressed == len(comp) and got[0].real == len(PAYLOAD)
    assert len(members(nf._zip, body + second)) == 2
    stored_head = head[:8] + b"\x00\x00" + head[10:]  # stored, descriptor after the data
    desc0 = struct.pack("<4sIII", b"PK\x07\x08", crc, len(PAYLOAD), len(PAYLOAD))
    (child,) = members(nf._zip, stored_head + PAYLOAD + desc0)
    assert child.data == PAYLOAD


def test_zip64_extra_fields() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("p.bin", "w", force_zip64=True) as w:
            w.write(PAYLOAD)
    (child,) = members(nf._zip, buf.getvalue())
    assert child.data == PAYLOAD and child.real == len(PAYLOAD)


def test_zip_duplicates_disagreements_and_names() -> None:
    name, data, method, comp = deflated(b"p.bin", PAYLOAD)
    crc = zlib.crc32(PAYLOAD)
    body = local_header(name, comp, crc, len(data), method) + comp
    twice = central_header(name, 0, 8, crc, len(comp), len(data)) * 2
    dup = members(nf._zip, body + twice + end_record(2, len(twice), len(body)))
    assert [c.data for c in dup] == [PAYLOAD, b""]  # listed twice, extracted once
    # the local header's method wins; the central record gives the metadata
    other = central_header(b"../../x/other.txt", 0, 0, crc, 7, len(data))
    (child,) = members(nf._zip, body + other + end_record(1, len(other), len(body)))
    assert child.data == PAYLOAD and child.name == "../../x/other.txt"
    assert (child.compressed, child.real) == (7, len(PAYLOAD))
    long = b"d/" * 300 + b"\xff\xfename"
    (child,) = members(nf._zip, make_zip([deflated(long, PAYLOAD)]))
    assert child.name.encode("utf-8", "surrogateescape") == long[:255]


def test_zip_stored_member_that_is_really_deflated() -> None:
    comp = raw_deflate(PAYLOAD)
    crc = zlib.crc32(PAYLOAD)
    body = local_header(b"p.bin", comp, crc, len(PAYLOAD), 0) + comp
    cd = central_header(b"p.bin", 0, 0, crc, len(comp), len(PAYLOAD))
    got = members(nf._zip, body + cd + end_record(1, len(cd), len(body)))
    assert [c.data for c in got] == [PAYLOAD, comp]  # libclamav scans both forms


def test_zip_encrypted_members() -> None:
    enc = make_zip([deflated(b"p.bin", PAYLOAD)], flags=1)
    (child,) = members(nf._zip, enc)
    assert child.encrypted and child.data == b"" and child.real == len(PAYLOAD)
    aes_extra = struct.pack("<HHHH2sBH", 0x9901, 7, 2, 0x4541, b"AE", 3, 8)
    comp = raw_deflate(PAYLOAD)
    body = local_header(b"a.bin", comp, 0, len(PAYLOAD), 99, 1, aes_extra) + comp
    (child,) = members(nf._zip, body)
    assert child.encrypted and child.data == b""


def test_zip_overlapping_members_are_not_extracted() -> None:
    """Eight stored members whose data all run to the end of the archive: libclamav's
    non-recursive bomb check refuses the lot."""
    n, head = 8, 32  # 30-byte header + 2-byte name
    total = n * head + len(PAYLOAD)
    body = b""
    cd = b""
    for i in range(n):
        size = total - (i + 1) * head
        body += local_header(b"f%d" % i, b"\x00" * size, 0, size, 0)[:head]
        cd += central_header(b"f%d" % i, i * head, 0, 0, size, size)
    body += PAYLOAD
    bomb = body + cd + end_record(n, len(cd), len(body))
    assert members(nf._zip, bomb) == [] and nf.zip_overlapping_files(bomb)
    few = body + cd[: 3 * 48] + end_record(3, 3 * 48, len(body))  # 2 overlaps: allowed
    assert len(members(nf._zip, few)) == 3 and not nf.zip_overlapping_files(few)
    assert not nf.zip_overlapping_files(make_zip([deflated(b"p.bin", PAYLOAD)]))


def ten_gb_of_zeros() -> tuple[bytes, int]:
    """A raw deflate stream of 10 GiB of zeros, built from one repeated 16 MiB block."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(bytes(1 << 24)) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(bytes(1 << 24)) + c.flush(zlib.Z_FULL_FLUSH)
    return first + block * 639 + c.flush(), 640 << 24


def zip64_member(name: bytes, comp: bytes, usize: int) -> bytes:
    extra = struct.pack("<HHQQ", 1, 16, usize, len(comp))
    head = local_header(name, comp, 0, 0, 8, 0, extra)
    head = head[:18] + struct.pack("<II", 0xFFFFFFFF, 0xFFFFFFFF) + head[26:]
    return head + comp


def test_single_member_bomb_is_cut_at_the_limit(db: Path) -> None:
    comp, usize = ten_gb_of_zeros()
    data = zip64_member(b"zeros", comp, usize)
    started = time.monotonic()
    tracemalloc.start()
    (child,) = members(nf._zip, data, LIMIT)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # cut as libclamav cuts it (whole 8 KiB blocks) and scanned, with no alert
    assert not child.oversized and len(child.data) == LIMIT and child.real == usize
    assert peak < 8 * LIMIT
    # (the 10 MB archive itself must fit in MaxFileSize)
    loud = Engine(load_database([db]), Limits(max_filesize=16 * LIMIT, alert_exceeds_max=True))
    assert loud.scan(data).names == []
    assert time.monotonic() - started < 10


def test_long_members_are_cut_like_libclamav() -> None:
    data = bytes(range(256)) * 200  # 51200 bytes
    zipped = make_zip([stored(b"s", data), deflated(b"d", data)])
    got = members(nf._zip, zipped, 20000)
    assert [len(c.data) for c in got] == [20000, 16384]  # stored: the limit; else 8 KiB
    assert not any(c.oversized for c in got) and got[1].data == data[:16384]
    arj = make_arj([(b"big", 0, data, len(data), 0), (b"p.bin", 0, PAYLOAD, len(PAYLOAD), 0)])
    (child,) = members(nf._arj, arj, 20000)  # libclamav reads no further member
    assert child.oversized and child.name == "big"
    sis = make_sis([(b"big", data), (b"p.bin", PAYLOAD)])
    assert [c.oversized for c in members(nf._sis, sis, 20000)] == [True, False]


def test_nested_bomb_stays_bounded(db: Path) -> None:
    """42.zip-style: 16 x 16 leaves of 10 GiB each (2.5 TiB), 10 MiB on disk."""
    comp, usize = ten_gb_of_zeros()
    layer = zip64_member(b"zeros", comp, usize)
    for _ in range(2):
        layer = make_zip([deflated(b"l%d.zip" % i, layer) for i in range(16)])
    engine = Engine(load_database([db]), Limits(max_filesize=LIMIT, max_scansize=64 * LIMIT))
    started = time.monotonic()
    tracemalloc.start()
    assert engine.scan(layer).names == []
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 64 * LIMIT
    assert time.monotonic() - started < 30


# ------------------------------------------------------------------ ARJ


ARJ_METHOD1 = (
    "AFhQbpEn/o+oB6Y5XaA0JCom8RBRBxtTmzmhn6lWb6gAAggeCYTgqLRkVJTisOJ6xVcJfFjaZYZi+MPrxlCgbPTXcQ4X"
    "Hm5yv/4YwZ46xfJ4tZ4th4tp4vo8X2eKjpR0o6UdKOlHSjpR09uk"
)
ARJ_METHOD4 = (
    "OxpM5pNggMJyNQgMxpPB0OpyMogNhpNxlEAwHQgOhoMogOJ1NJjNYgMRyN53NwgMxvPAgNR1NpwOYgN52MpywDxsMJ6P"
    "IgMhvM4K8wijH8IIoy/CCKM/wgijT8IIo1/CCKNvwgi//70//70//70//70//70//70//70//70/9z0g"
)
FOX = b"".join(
    b"vigil arj fixture line %d: the quick brown fox jumps over the lazy dog\n" % (i % 7)
    for i in range(40)
)


def arj_header(
    name: bytes, method: int, csize: int, usize: int, flags: int = 0, kind: int = 0
) -> bytes:
    fixed = struct.pack(
        "<BBBBBBBBIIIIHHBB", 30, 11, 1, 2, flags, method, kind, 0, 0, csize, usize, 0, 0, 0, 0, 0
    )
    basic = fixed + name + b"\x00" + b"\x00"
    return (
        b"\x60\xea"
        + struct.pack("<H", len(basic))
        + basic
        + struct.pack("<I", zlib.crc32(basic))
        + b"\x00\x00"
    )


def make_arj(files: list[tuple[bytes, int, bytes, int, int]]) -> bytes:
    """(name, method, compressed, size, flags) members after a main header."""
    out = arj_header(b"test.arj", 0, 0, 0, kind=2)
    for name, method, comp, size, flags in files:
        out += arj_header(name, method, len(comp), size, flags) + comp
    return out + b"\x60\xea\x00\x00"


def test_arj_methods() -> None:
    m1 = base64.b64decode(ARJ_METHOD1)
    m4 = base64.b64decode(ARJ_METHOD4)
    assert _arj.decode(m1, 1, len(FOX), LIMIT) == FOX
    assert _arj.decode(m4, 4, len(FOX), LIMIT) == FOX
    data = make_arj(
        [
            (b"one.txt", 1, m1, len(FOX), 0),
            (b"two.txt", 2, m1, len(FOX), 0),
            (b"three.txt", 3, m1, len(FOX), 0),
            (b"four.txt", 4, m4, len(FOX), 0),
            (b"dir", 0, b"", 0, 0),
            (b"p.bin", 0, PAYLOAD, len(PAYLOAD), 0),
            (b"secret.bin", 1, m1, len(FOX), 1),
        ]
    )
    got = members(nf._arj, data)
    assert [c.data for c in got[:4]] == [FOX] * 4
    assert got[4].data == b"" and got[5].data == PAYLOAD
    assert got[6].encrypted and got[6].data == b"" and got[6].real == len(FOX)
    assert (got[0].compressed, got[0].real) == (len(m1), len(FOX))


def test_arj_sample(scanfiles: Path) -> None:
    exe = (scanfiles / "clam.exe").read_bytes()
    (child,) = members(nf._arj, (scanfiles / "clam.arj").read_bytes())
    assert child.name == "clam.exe" and child.data == exe and child.compressed == 269


# ------------------------------------------------------------------ SIS


def make_sis(
    files: list[tuple[bytes, bytes]], compressed: bool = True, extra_records: bytes = b""
) -> bytes:
    """An EPOC release 6 package with one simple-file record per (name, data)."""
    header_size = 84
    records = bytearray(extra_records)
    blobs = bytearray()
    count = len(files) + (1 if extra_records else 0)
    base = header_size + 2  # after the header and the language list
    record_size = 4 * (1 + 6 + 3) + 8
    strings_at = base + len(extra_records) + record_size * len(files)
    for name, data in files:
        body = zlib.compress(data) if compressed else data
        uname = name.decode().encode("utf-16-le")
        name_at = strings_at + len(blobs)
        blobs += uname
        body_at = strings_at + len(blobs)
        blobs += body
        records += (
            struct.pack("<10I", 0, 0, 0, len(uname), name_at, 0, 0, len(body), body_at, len(data))
            + b"\x00" * 8
        )
    head = struct.pack(
        "<4I8HI4HI9I",
        0x10000000,
        0x10003A12,
        0x10000419,
        0,
        0,
        1,
        count,
        0,
        0,
        0,
        0,
        0,
        0,
        0 if compressed else 8,
        0,
        1,
        0,
        0,
        header_size,
        base,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    )
    return head + struct.pack("<H", 1) + bytes(records) + bytes(blobs)


def test_sis_files() -> None:
    for compressed in (True, False):
        data = make_sis([(b"c:\\sys\\bin\\a.txt", TEXT), (b"p.bin", PAYLOAD)], compressed)
        got = members(nf._sis, data)
        assert [(c.name, c.data) for c in got] == [
            ("c:\\sys\\bin\\a.txt", TEXT),
            ("p.bin", PAYLOAD),
        ]
    option = struct.pack("<II", 2, 1) + b"\x00" * 8  # one option, one language
    got = members(nf._sis, make_sis([(b"p.bin", PAYLOAD)], extra_records=option))
    assert [c.data for c in got] == [PAYLOAD]


def test_sis_sample(scanfiles: Path) -> None:
    exe = (scanfiles / "clam.exe").read_bytes()
    (child,) = members(nf._sis, (scanfiles / "clam.sis").read_bytes())
    assert child.data == exe and child.name.endswith("\\clam.exe")
    assert (child.compressed, child.real) == (262, 544)


def test_sis9_files() -> None:
    def pad(body: bytes) -> bytes:
        return body + b"\x00" * (-len(body) % 4)

    def field(kind: int, body: bytes) -> bytes:
        return struct.pack("<II", kind, len(body)) + pad(body)

    def array(kind: int, bodies: list[bytes]) -> bytes:  # elements carry no type
        return field(
            2,
            struct.pack("<I", kind) + b"".join(struct.pack("<I", len(b)) + pad(b) for b in bodies),
        )

    def compressed(data: bytes) -> bytes:
        return field(3, struct.pack("<IQ", 1, len(data)) + zlib.compress(data))

    unit = array(32, [compressed(PAYLOAD), compressed(TEXT)])
    controller = field(3, struct.pack("<IQ", 0, 10) + b"controller")
    contents = field(12, controller + field(30, array(31, [unit])))
    sis9 = struct.pack("<4I", 0x10201A7A, 0, 0x12345678, 0) + contents
    assert [c.data for c in members(nf._sis, sis9)] == [PAYLOAD, TEXT]


# ------------------------------------------------------------------ scanner and registry


def test_registered_types() -> None:
    assert {FileType.ZIP, FileType.ARJ, FileType.SIS, FileType.ZIPSFX} <= CONTAINER_TYPES
    zipped = make_zip([deflated(b"p.bin", PAYLOAD)])
    assert [c.data for c in extract(FileType.ZIPSFX, zipped, LIMIT)] == [PAYLOAD]


@pytest.mark.parametrize(
    "build",
    [
        lambda: make_zip([deflated(b"a.txt", TEXT), deflated(b"p.bin", PAYLOAD)]),
        lambda: make_arj([(b"p.bin", 0, PAYLOAD, len(PAYLOAD), 0)]),
        lambda: make_sis([(b"p.bin", PAYLOAD)]),
    ],
    ids=["zip", "arj", "sis"],
)
def test_payload_found_by_the_scanner(db: Path, build: object) -> None:
    engine = Engine(load_database([db]))
    assert engine.scan(build()).names == [f"{SIG}.UNOFFICIAL"]  # type: ignore[operator]


# ------------------------------------------------------------------ damaged input


def damaged(data: bytes, seed: int) -> Iterator[bytes]:
    """Truncations at many points and random byte flips."""
    rng = random.Random(seed)
    for cut in sorted(
        {*range(0, min(len(data), 120)), *rng.sample(range(len(data)), min(60, len(data)))}
    ):
        yield data[:cut]
    for _ in range(150):
        flipped = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            flipped[rng.randrange(len(flipped))] = rng.randrange(256)
        yield bytes(flipped)


@pytest.mark.parametrize(
    ("sample", "unpack"),
    [
        ("clam.zip", nf._zip),
        ("clam.bz2.zip", nf._zip),
        ("clam.d64.zip", nf._zip),
        ("clam.impl.zip", nf._zip),
        ("clam.split.oneseg.zip", nf._zip),
        ("clam.arj", nf._arj),
        ("clam.sis", nf._sis),
    ],
)
def test_damaged_samples(scanfiles: Path, sample: str, unpack: object) -> None:
    data = (scanfiles / sample).read_bytes()
    started = time.monotonic()
    for i, bad in enumerate(damaged(data, len(sample))):
        for child in members(unpack, bad, 4096):
            assert len(child.data) <= 4096, i
    assert time.monotonic() - started < 20


def test_absurd_fields() -> None:
    comp = raw_deflate(PAYLOAD)
    huge = local_header(b"p.bin", comp, 0, len(PAYLOAD), 8)
    huge = huge[:18] + struct.pack("<II", 0xFFFFFFF0, 0xFFFFFFF0) + huge[26:] + comp
    # sizes beyond the end: the data there is read (libclamav skips the member)
    assert [c.data for c in members(nf._zip, huge)] == [PAYLOAD]
    cd = central_header(b"p", 0xFFFFFF00, 8, 0, 10, 10)
    bogus = huge + cd + end_record(0xFFFF, 0xFFFFFFFF, len(huge))
    assert len(members(nf._zip, bogus)) <= 2
    long_name = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, 0, 4, 4, 0xFFFF, 0xFFFF)
    assert members(nf._zip, long_name + b"abcd") == []
    arj = make_arj([(b"x", 1, b"\xff" * 50, 0xFFFFFFFF, 0), (b"y", 7, b"abc", 3, 0)])
    got = members(nf._arj, arj, 1 << 33)
    assert len(got) == 2 and got[1].data == b"" and len(got[0].data) <= 200 * 256
    sis = make_sis([(b"p.bin", PAYLOAD)])
    sis = sis[:20] + struct.pack("<H", 0xFFFF) + sis[22:]  # 65535 file records
    assert [c.data for c in members(nf._sis, sis)] == [PAYLOAD]


def test_signature_floods_are_cheap() -> None:
    """Files packed with ZIP signatures: the index costs a bounded number of probes."""
    floods = [
        b"PK\x03\x04PK\x05\x06PK\x07\x08\x08\x00" * 300_000,
        b"PK\x03\x04\x14\x00\x08\x00\x08\x00" + b"PK\x07\x08" * 1_000_000,
        b"PK\x05\x06" * 1_000_000,
        (b"PK\x03\x04" + bytes(26)) * 100_000,  # 100000 empty members
    ]
    started = time.monotonic()
    for flood in floods:
        assert all(c.data == b"" for c in members(nf._zip, flood))
    assert time.monotonic() - started < 15


# ------------------------------------------------------------------ the C decoders


def test_c_decoders_fuzz() -> None:
    """Random and truncated streams with every option: no crash, output within bounds."""
    rng = random.Random(4)
    m1 = base64.b64decode(ARJ_METHOD1)
    m4 = base64.b64decode(ARJ_METHOD4)
    imploded = [implode(TEXT, flags) for flags in range(0, 8, 2)]
    started = time.monotonic()
    for i in range(3000):
        size = rng.choice([0, 1, 100, 5000, 1 << 40])
        limit = rng.choice([0, 1, 64, 4096, 1 << 16])
        kind = rng.randrange(4)
        src = rng.choice([m1, m4, *imploded])
        if kind == 0:
            blob = rng.randbytes(rng.randrange(64))
        elif kind == 1:
            blob = src[: rng.randrange(len(src) + 1)]
        else:
            flipped = bytearray(src)
            for _ in range(rng.randint(1, 6)):
                flipped[rng.randrange(len(flipped))] = rng.randrange(256)
            blob = bytes(flipped)
        out = _explode.explode(blob, rng.randrange(8), size, limit)
        assert len(out) <= limit, i
        out = _arj.decode(blob, rng.randint(1, 4), size, limit)
        assert len(out) <= min(size, limit), i
    assert time.monotonic() - started < 20


def test_c_decoders_arguments() -> None:
    with pytest.raises(ValueError):
        _arj.decode(b"", 5, 1, 1)
    with pytest.raises(ValueError):
        _arj.decode(b"", 1, 1, -1)
    with pytest.raises(ValueError):
        _explode.explode(b"", 0, 1, -1)
    assert _explode.explode(memoryview(implode(TEXT, 0)), 0, 0, 1 << 30) == TEXT
    m4 = bytearray(base64.b64decode(ARJ_METHOD4))
    assert _arj.decode(m4, 4, len(FOX), 1 << 62) == FOX
    # a size larger than the stream: zero bits after the end, then decoding gives up
    assert _arj.decode(m4, 4, 1 << 62, 1 << 62).startswith(FOX)


# ------------------------------------------------------------------ differential


def clamscan(db: Path, files: list[Path], allmatch: bool = False) -> dict[str, list[str]]:
    assert CLAMSCAN is not None
    proc = subprocess.run(
        [CLAMSCAN, "--no-summary", "--bytecode=no", "--disable-cache", "-d", str(db)]
        + (["-z"] if allmatch else [])
        + [str(f) for f in files],
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode in (0, 1), proc.stderr.decode(errors="replace")
    out: dict[str, list[str]] = {str(f): [] for f in files}
    for line in proc.stdout.decode("latin-1").splitlines():
        path, _, verdict = line.rpartition(": ")
        if verdict.endswith(" FOUND"):
            out[path].append(verdict[: -len(" FOUND")])
    return out


def duplicate_entries(name: bytes, data: bytes) -> bytes:
    """Two central records for one local header."""
    comp = raw_deflate(data)
    crc = zlib.crc32(data)
    body = local_header(name, comp, crc, len(data), 8) + comp
    cd = central_header(name, 0, 8, crc, len(comp), len(data)) * 2
    return body + cd + end_record(2, len(cd), len(body))


def disagreeing_headers(name: bytes, data: bytes) -> bytes:
    """The central record says stored, 7 bytes, another name; the local header is right."""
    comp = raw_deflate(data)
    crc = zlib.crc32(data)
    body = local_header(name, comp, crc, len(data), 8) + comp
    cd = central_header(b"other.txt", 0, 0, crc, 7, len(data))
    return body + cd + end_record(1, len(cd), len(body))


@pytest.mark.differential
@pytest.mark.skipif(CLAMSCAN is None, reason="Debian's clamscan is not installed")
def test_same_container_metadata_as_clamscan(scanfiles: Path, tmp_path: Path) -> None:
    """.cdb signatures see the sizes, names and encryption flag that libclamav sees."""
    exe = (scanfiles / "clam.exe").read_bytes()
    cdb = tmp_path / "t.cdb"
    cdb.write_text(
        "Vigil.Cdb.Enc:CL_TYPE_ZIP:*:clam\\.exe:*:544:1:*:*:*\n"
        "Vigil.Cdb.Size:CL_TYPE_ZIP:*:clam\\.exe:256:544:0:1:*:*\n"
        "Vigil.Cdb.Other:CL_TYPE_ZIP:*:^other\\.txt$:7:544:*:1:*:*\n"
    )
    crafted = {
        "encrypted.zip": make_zip([deflated(b"clam.exe", exe)], flags=1),
        "duplicate.zip": duplicate_entries(b"clam.exe", exe),
        "disagreeing.zip": disagreeing_headers(b"clam.exe", exe),
    }
    files = [scanfiles / "clam.zip", scanfiles / "clam.impl.zip"]
    for name, data in crafted.items():
        (tmp_path / name).write_bytes(data)
        files.append(tmp_path / name)
    engine = Engine(load_database([cdb]))
    for allmatch in (False, True):
        if allmatch:
            # libclamav tests the central record and then the local header; a child
            # carries one set of metadata, so a disagreeing pair is compared first-alert
            files.remove(tmp_path / "disagreeing.zip")
        theirs = clamscan(cdb, files, allmatch)
        ours = {str(f): engine.scan(f.read_bytes(), ScanOptions(allmatch)).names for f in files}
        assert ours == theirs
        assert theirs[str(tmp_path / "encrypted.zip")][0] == "Vigil.Cdb.Enc.UNOFFICIAL"


def arj_zeros(n: int) -> bytes:
    """An ARJ method-4 stream of 1 + 256 * n zero bytes (a literal, then n matches)."""
    bits = "0" + "0" * 8 + ("1" * 14 + "0" + "0" * 9) * n
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big")


@pytest.mark.differential
@pytest.mark.skipif(CLAMSCAN is None, reason="Debian's clamscan is not installed")
def test_same_limits_as_clamscan(scanfiles: Path, tmp_path: Path) -> None:
    """Members over MaxFileSize: ZIP members cut and scanned; an ARJ member skipped by its
    declared size, ending the archive; a SIS member skipped."""
    exe = (scanfiles / "clam.exe").read_bytes()
    rng = random.Random(3)
    text = bytearray(b"filler text line\n" * 12000)  # 204000 bytes
    offsets = (98000, 98290, 150000)  # 98304 = 12 blocks of 8 KiB fit in 100000
    for at in offsets:
        text[at : at + 16] = rng.randbytes(16)
    db = tmp_path / "t.ndb"
    db.write_text("".join(f"Cut.At{at}:0:*:{text[at : at + 16].hex()}\n" for at in offsets))
    hdb = UNIT / "clamav.hdb"
    zeros = arj_zeros(400)
    assert _arj.decode(zeros, 4, 1 + 256 * 400, LIMIT) == bytes(1 + 256 * 400)
    samples = {
        "cut.zip": (make_zip([deflated(b"t.txt", bytes(text))]), db),
        "cut-bz2.zip": (make_zip([(b"t.txt", bytes(text), 12, bz2.compress(text))]), db),
        "big-first.arj": (
            make_arj([(b"z", 4, zeros, 1 + 256 * 400, 0), (b"clam.exe", 0, exe, len(exe), 0)]),
            hdb,
        ),
        "big-last.arj": (
            make_arj([(b"clam.exe", 0, exe, len(exe), 0), (b"z", 4, zeros, 1 + 256 * 400, 0)]),
            hdb,
        ),
        "big-first.sis": (make_sis([(b"z", bytes(102401)), (b"clam.exe", exe)]), hdb),
    }
    for name, (data, sigs) in samples.items():
        path = tmp_path / name
        path.write_bytes(data)
        for alert in (False, True):
            limits = Limits(max_filesize=100000, alert_exceeds_max=alert)
            engine = Engine(load_database([sigs]), limits)
            cmd = [CLAMSCAN or "", "--no-summary", "--bytecode=no", "--disable-cache"]
            cmd += ["-d", str(sigs), "--max-filesize=100000", str(path)]
            if alert:
                cmd.append("--alert-exceeds-max=yes")
            out = subprocess.run(cmd, capture_output=True, timeout=300, check=False)
            theirs = [
                line.rpartition(": ")[2][: -len(" FOUND")]
                for line in out.stdout.decode("latin-1").splitlines()
                if line.endswith(" FOUND")
            ]
            assert engine.scan(data).names == theirs, (name, alert)


@pytest.mark.differential
@pytest.mark.skipif(CLAMSCAN is None, reason="Debian's clamscan is not installed")
def test_same_verdicts_as_clamscan(scanfiles: Path, tmp_path: Path) -> None:
    exe = (scanfiles / "clam.exe").read_bytes()
    crafted = {
        "stored.zip": make_zip([stored(b"clam.exe", exe)]),
        "prefixed.zip": b"\x90" * 300 + make_zip([deflated(b"clam.exe", exe)]),
        "traversal.zip": make_zip([deflated(b"../../../tmp/clam.exe", exe)]),
        "encrypted.zip": make_zip([deflated(b"clam.exe", exe)], flags=1),
        "two.zip": make_zip([deflated(b"a.txt", TEXT), deflated(b"clam.exe", exe)]),
        "stored.arj": make_arj([(b"clam.exe", 0, exe, len(exe), 0)]),
        "garbled.arj": make_arj([(b"clam.exe", 0, exe, len(exe), 1)]),
        "plain.sis": make_sis([(b"clam.exe", exe)], compressed=False),
        "packed.sis": make_sis([(b"a.txt", TEXT), (b"clam.exe", exe)]),
        "duplicate.zip": duplicate_entries(b"clam.exe", exe),
        "disagreeing.zip": disagreeing_headers(b"clam.exe", exe),
    }
    files = [
        scanfiles / name
        for name in (
            "clam.zip",
            "clam.bz2.zip",
            "clam.d64.zip",
            "clam.impl.zip",
            "clam.split.oneseg.zip",
            "clam.arj",
            "clam.sis",
        )
    ]
    for name, data in crafted.items():
        (tmp_path / name).write_bytes(data)
        files.append(tmp_path / name)
    db = UNIT / "clamav.hdb"
    theirs = clamscan(db, files)
    engine = Engine(load_database([db]))
    ours = {str(f): engine.scan(f.read_bytes(), ScanOptions()).names for f in files}
    assert ours == theirs
    assert theirs[str(tmp_path / "encrypted.zip")] == []
    assert theirs[str(scanfiles / "clam.impl.zip")] == ["ClamAV-Test-File.UNOFFICIAL"]
