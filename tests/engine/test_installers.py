"""Installers and script wrappers inside executables: NSIS, AutoIt, InstallShield.

Fixtures are built here in each format (with small encoders for the parts no library
writes: AutoIt's LZSS and keystreams, NSIS' header-less bzip2, InstallShield's XOR);
ClamAV's samples are checked against what libclamav itself extracts (``--leave-temps``).
"""

from __future__ import annotations

import bz2
import hashlib
import lzma
import random
import re
import shutil
import struct
import subprocess
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vigil.engine.containers import CONTAINER_TYPES, extract
from vigil.engine.containers import executables as ex
from vigil.engine.containers.child import Child
from vigil.engine.filetype import FileType
from vigil.native import _autoit, _nsis

PAYLOAD = b"vigil installer test payload: harmless bytes for a signature\n" * 20
LIMIT = 1 << 20
Unpacker = Callable[[bytes, int], Iterator[Child]]


def kids(unpack: Unpacker, data: bytes, limit: int = LIMIT) -> list[Child]:
    return list(unpack(data, limit))


# ----------------------------------------------------------------------------- NSIS


def lzma_block(data: bytes) -> bytes:
    """NSIS' LZMA: the 5 properties bytes, then the raw stream. The dictionary field says
    8 MiB (NSIS' default), which is how libclamav tells LZMA apart."""
    filt = {"id": lzma.FILTER_LZMA1, "dict_size": 1 << 16, "lc": 3, "lp": 0, "pb": 2}
    raw = lzma.compress(data, format=lzma.FORMAT_RAW, filters=[filt])
    return bytes([0x5D]) + (0x800000).to_bytes(4, "little") + raw


def deflate_block(data: bytes) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    return comp.compress(data) + comp.flush()


def nsis_stored_deflate(data: bytes) -> bytes:
    """Deflate as NSIS writes it for incompressible data: stored blocks with LEN only."""
    out = bytearray()
    for at in range(0, len(data), 0xFFFF):
        chunk = data[at : at + 0xFFFF]
        out += bytes([1 if at + 0xFFFF >= len(data) else 0]) + struct.pack("<H", len(chunk))
        out += chunk
    return bytes(out)


def nsis_bzip2(data: bytes) -> bytes:
    """NSIS' bzip2 from a standard one-block stream: the block mark '1' without the rest
    of the magic, the CRC and the randomised bit; the end mark 0x17 without its CRC."""
    std = bz2.compress(data, 9)
    bits = "".join(f"{b:08b}" for b in std)
    assert bits[32:80] == f"{0x314159265359:048b}"
    end = bits.rfind(f"{0x177245385090:048b}")
    body = "00110001" + bits[80 + 32 + 1 : end] + "00010111"
    body += "0" * (-len(body) % 8)
    return int(body, 2).to_bytes(len(body) // 8, "big")


def firstheader(archive: bytes, flags: int = 0, hsz: int = 0x1000) -> bytes:
    size = 0x1C + len(archive)
    return struct.pack("<II12sII", flags, 0xDEADBEEF, b"NullsoftInst", hsz, size) + archive


def nsis_blocks(blocks: list[tuple[bytes, bool]]) -> bytes:
    """A non-solid archive: (data, compressed) blocks, then a CRC word."""
    body = b"".join(
        struct.pack("<I", len(b) | (0x80000000 if packed else 0)) + b for b, packed in blocks
    )
    return firstheader(body + b"CRC!")


def nsis_solid(stream: bytes) -> bytes:
    return firstheader(stream + b"CRC!")


def items(*parts: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(p)) + p for p in parts)


HEADER_SCRIPT = b"\x00NSIS header script stand-in\x00" * 8


@pytest.mark.parametrize(
    "encode", [lzma_block, deflate_block, nsis_bzip2], ids=["lzma", "zlib", "bzip2"]
)
def test_nsis_non_solid(encode: Callable[[bytes], bytes]) -> None:
    data = nsis_blocks(
        [(encode(HEADER_SCRIPT), True), (encode(PAYLOAD), True), (b"stored file", False)]
    )
    got = kids(ex.nsis, data)
    assert [c.name for c in got] == ["headers", "content.001", "content.002"]
    assert [c.data for c in got] == [HEADER_SCRIPT, PAYLOAD, b"stored file"]


@pytest.mark.parametrize(
    "encode", [lzma_block, deflate_block, nsis_bzip2], ids=["lzma", "zlib", "bzip2"]
)
def test_nsis_solid(encode: Callable[[bytes], bytes]) -> None:
    data = nsis_solid(encode(items(HEADER_SCRIPT, PAYLOAD, b"", b"third")))
    got = kids(ex.nsis, data)
    # an empty item still takes its number, as in libclamav
    assert [c.name for c in got] == ["headers", "content.001", "content.003"]
    assert [c.data for c in got] == [HEADER_SCRIPT, PAYLOAD, b"third"]


def test_nsis_deflate_stored_blocks_without_nlen() -> None:
    blob = random.Random(7).randbytes(200_000)
    data = nsis_solid(nsis_stored_deflate(items(HEADER_SCRIPT, blob)))
    assert [c.data for c in kids(ex.nsis, data)] == [HEADER_SCRIPT, blob]
    # a stock zlib stream (stored blocks with ~LEN) reads the same
    data = nsis_solid(deflate_block(items(HEADER_SCRIPT, blob)))
    assert [c.data for c in kids(ex.nsis, data)] == [HEADER_SCRIPT, blob]


def test_nsis_registered_and_reached_through_extract() -> None:
    assert FileType.NULSFT in CONTAINER_TYPES
    data = nsis_blocks([(lzma_block(HEADER_SCRIPT), True), (lzma_block(PAYLOAD), True)])
    assert [c.data for c in extract(FileType.NULSFT, data, LIMIT)] == [HEADER_SCRIPT, PAYLOAD]


def test_nsis_limits() -> None:
    big = bytes(3 * LIMIT)
    # non-solid: the big block is cut and flagged, the next one still comes
    blocks = [
        (lzma_block(HEADER_SCRIPT), True),
        (lzma_block(big), True),
        (lzma_block(PAYLOAD), True),
    ]
    got = kids(ex.nsis, nsis_blocks(blocks))
    assert [(len(c.data), c.oversized) for c in got] == [
        (len(HEADER_SCRIPT), False),
        (LIMIT, True),
        (len(PAYLOAD), False),
    ]
    # solid: libclamav stops at an oversized item
    data = nsis_solid(lzma_block(items(HEADER_SCRIPT, big, PAYLOAD)))
    got = kids(ex.nsis, data)
    assert [(c.name, c.oversized) for c in got] == [("headers", False), ("content.001", True)]


# ----------------------------------------------------------------------------- AutoIt

AU3_MARKER = bytes.fromhex("a3484bbe986c4aa9994c530a86d6487d")


class Bits:
    """MSB-first bit writer in 16-bit big-endian words (AutoIt's LZSS input)."""

    def __init__(self) -> None:
        self.bits: list[str] = []

    def put(self, value: int, width: int) -> None:
        self.bits.append(format(value, f"0{width}b"))

    def data(self) -> bytes:
        text = "".join(self.bits)
        text += "0" * (-len(text) % 16)
        return int(text or "0", 2).to_bytes(len(text) // 8, "big") if text else b""


def lzss(tokens: list[bytes | tuple[int, int]], version: int, usize: int) -> bytes:
    """Encode literals (bytes) and (distance, length) matches."""
    out = Bits()
    match_flag = 1 if version == 5 else 0
    for tok in tokens:
        if isinstance(tok, bytes):
            for b in tok:
                out.put(1 - match_flag, 1)
                out.put(b, 8)
            continue
        dist, length = tok
        out.put(match_flag, 1)
        out.put(dist, 15)
        v = length - 3
        if v < 3:
            out.put(v, 2)
            continue
        out.put(3, 2)
        v -= 3
        if v < 7:
            out.put(v, 3)
            continue
        out.put(7, 3)
        v -= 7
        if v < 31:
            out.put(v, 5)
            continue
        out.put(31, 5)
        v -= 31
        if v < 255:
            out.put(v, 8)
            continue
        out.put(255, 8)
        v -= 255
        while v >= 255:
            out.put(255, 8)
            v -= 255
        out.put(v, 8)
    return b"EA0%d" % version + struct.pack(">I", usize) + out.data()


def au3_record(version: int, tag: str, path: str, body: bytes, seed_sum: int, comp: int) -> bytes:
    """One file record, encrypted the way AutoIt writes it (XOR keystreams are their own
    inverse, so the decoders encrypt too)."""
    if version == 5:
        crypt = _autoit.decrypt_ea05
        tag_b, path_b = tag.encode("latin-1"), path.encode("latin-1")
        head = struct.pack("<II", 0xCEB06DFF, len(tag_b) ^ 0x29BC)
        head += crypt(tag_b, len(tag_b) + 0xA25E)
        head += struct.pack("<I", len(path_b) ^ 0x29AC) + crypt(path_b, len(path_b) + 0xF25E)
        sizes = struct.pack("<BIII", comp, len(body) ^ 0x45AA, len(body) ^ 0x45AA, 0xC3D2)
        return head + sizes + bytes(16) + crypt(body, 0x22AF + seed_sum)
    crypt = _autoit.decrypt_ea06
    tag_b, path_b = tag.encode("utf-16-le"), path.encode("utf-16-le")
    head = struct.pack("<II", 0x52CA436B, len(tag) ^ 0xADBC)
    head += crypt(tag_b, (len(tag) + 0xB33F) & 0xFFFF)
    head += struct.pack("<I", len(path) ^ 0xF820) + crypt(path_b, (len(path) + 0xF479) & 0xFFFF)
    sizes = struct.pack("<BIII", comp, len(body) ^ 0x87BC, len(body) ^ 0x87BC, 0xA685)
    return head + sizes + bytes(16) + crypt(body, 0x2477)


def au3_file(version: int, records: list[bytes], garbage: bytes = bytes(range(16))) -> bytes:
    return AU3_MARKER + b"AU3!EA0%d" % version + garbage + b"".join(records)


def packed(data: bytes, version: int) -> bytes:
    """Literals for the first 40 bytes, then one long match when the data repeats."""
    return lzss([data], version, len(data))


@pytest.mark.parametrize("version", [5, 6])
def test_autoit_files(version: int) -> None:
    garbage = bytes(range(16))
    rep = b"abcdefgh" * 500
    body = lzss([b"abcdefgh", (8, len(rep) - 8)], version, len(rep))
    records = [
        au3_record(version, "FILE", "C:\\a.bin", packed(PAYLOAD, version), sum(garbage), 1),
        au3_record(version, "FILE", "C:\\b.bin", b"stored body", sum(garbage), 0),
        au3_record(version, "FILE", "C:\\c.bin", body, sum(garbage), 1),
    ]
    got = kids(ex.autoit, au3_file(version, records, garbage))
    assert [c.name for c in got] == ["autoit.001", "autoit.002", "autoit.003"]
    assert [c.data for c in got] == [PAYLOAD, b"stored body", rep]
    assert got[0].real == len(PAYLOAD)
    assert FileType.AUTOIT in CONTAINER_TYPES


def test_autoit_lzss_match_lengths() -> None:
    # every length class of the escalating length code, EA05 and EA06 polarity
    for version in (5, 6):
        for length in (3, 5, 6, 12, 13, 43, 44, 297, 298, 299, 552, 553, 1000):
            want = b"xy" + b"xy" * ((length + 1) // 2)
            want = want[: 2 + length]
            blob = lzss([b"xy", (2, length)], version, len(want))
            assert _autoit.decompress(blob, version, len(want), 1 << 20) == want


def test_autoit_keystreams_against_references() -> None:
    # EA05 is MT19937 (init_genrand): numpy's legacy generator uses the same seeding
    np = pytest.importorskip("numpy")
    raw = np.random.RandomState(0x22AF).randint(0, 2**32, size=1500, dtype=np.uint64)
    assert _autoit.decrypt_ea05(bytes(1500), 0x22AF) == bytes(((raw >> 1) & 0xFF).astype("u1"))
    # EA06: the lagged generator, stepped in Python for a few bytes
    words, seed = [], 0x2477
    for _ in range(17):
        seed = (1 - seed * 0x53A9B4FB) & 0xFFFFFFFF
        words.append(seed)
    a, b = 0, 10

    def step() -> int:
        nonlocal a, b

        def rol(v: int, n: int) -> int:
            return ((v << n) | (v >> (32 - n))) & 0xFFFFFFFF

        v = (rol(words[a], 9) + rol(words[b], 13)) & 0xFFFFFFFF
        words[a] = v
        a, b = (a - 1) % 17, (b - 1) % 17
        return v

    for _ in range(9):
        step()
    expect = bytearray()
    for _ in range(64):
        step()
        expect.append(step() >> 24)
    assert _autoit.decrypt_ea06(bytes(64), 0x2477) == bytes(expect)


def tok_str(op: int, text: str) -> bytes:
    n = len(text)
    units = text.encode("utf-16-le")
    mask = bytes([n & 0xFF, (n >> 8) & 0xFF]) * n
    return (
        bytes([op]) + struct.pack("<I", n) + bytes(x ^ y for x, y in zip(units, mask, strict=True))
    )


def test_autoit_ea06_script_is_detokenised() -> None:
    tokens = struct.pack("<I", 3)
    tokens += b"\x00" + struct.pack("<I", 32)  # keyword FUNC
    tokens += tok_str(0x34, "_MAIN") + b"\x47" + tok_str(0x33, "X") + b"\x48\x7f"
    tokens += tok_str(0x33, "Y") + b"\x41" + b"\x01" + struct.pack("<I", 0)  # ABS
    tokens += b"\x47\x05" + struct.pack("<i", -2) + b"\x49\x10" + struct.pack("<q", 1 << 40)
    tokens += b"\x4c\x20" + struct.pack("<d", 2.5) + b"\x48\x7f"
    tokens += tok_str(0x36, "hi") + tok_str(0x32, "CRLF") + tok_str(0x36, "\u4e2d\u6587")
    tokens += b"\x7f"
    garbage = bytes(16)
    script = au3_record(6, ">>>AUTOIT SCRIPT<<<", "C:\\s.tmp", packed(tokens, 6), 0, 1)
    got = kids(ex.autoit, au3_file(6, [script], garbage))
    assert got[0].data == (
        b"FUNC _MAIN( $X ) \n"
        b"$Y = ABS ( 0xfffffffe + 0x0000010000000000 * 2.5 ) \n"
        b'"hi" @CRLF "-N" \n'
    )


# ----------------------------------------------------------------------------- InstallShield

IS_SKEY = bytes((0xEC, 0xCA, 0x79, 0xF8))


def is_obfuscate(data: bytes, name: bytes) -> bytes:
    key = bytes(c ^ IS_SKEY[i & 3] for i, c in enumerate(name))
    out = bytearray()
    for i, c in enumerate(data):
        v = c ^ key[(i & 0x3FF) % len(key)]
        out.append(((v << 4) | (v >> 4)) & 0xFF)
    return bytes(out)


def is_msi(files: list[tuple[bytes, bytes]], count: int | None = None) -> bytes:
    out = bytearray(b"InstallShield\x00")
    out += struct.pack("<8I", len(files) if count is None else count, 0, 0, 0, 0, 0, 0, 0)
    for name, body in files:
        stream = is_obfuscate(zlib.compress(body), name)
        out += struct.pack("<260sIIQ9I", name, 6, 0, len(stream), 0, 1, 0, 0, 0, 0, 0, 0, 0)
        out += stream
    return bytes(out)


def test_ishield_msi() -> None:
    noise = random.Random(3).randbytes(5000)  # incompressible: the key wraps at 1024
    data = is_msi([(b"setup.ini", b"[Startup]\r\n"), (b"payload.msi", PAYLOAD + noise)])
    got = kids(ex.ishield_msi, data)
    assert [(c.name, c.data) for c in got] == [
        ("setup.ini", b"[Startup]\r\n"),
        ("payload.msi", PAYLOAD + noise),
    ]
    assert FileType.ISHIELD_MSI in CONTAINER_TYPES
    # the words after the count must be zero, else it is no setup header
    assert kids(ex.ishield_msi, data[:30] + b"\x01" + data[31:]) == []


def is_entry(name: bytes, body: bytes, path: bytes = b"Disk1") -> bytes:
    return b"\x00".join((name, path + b"\\" + name, b"0.0.0.0", b"%d" % len(body))) + b"\x00" + body


def is_cab_chunks(data: bytes, size: int = 4000) -> bytes:
    out = b""
    for at in range(0, len(data), size):
        chunk = deflate_block(data[at : at + size])
        out += struct.pack("<H", len(chunk)) + chunk
    return out


def is_hdr(files: list[tuple[bytes, int, int, int, int]]) -> bytes:
    """data1.hdr: (name, size, packed size, offset in its cabinet, cabinet number)."""
    data_off, dirs_off, dir_sz2 = 0x20, 0x100, 0x10
    names = b"".join(f[0] + b"\x00" for f in files)
    hdr = bytearray(struct.pack("<5I", 0x28635349, 0, 0, data_off, 0))
    hdr += bytes(data_off - len(hdr))
    objs = [0, 0, 0, dirs_off, 0, 0, 0, 0, 0, 0, len(files), dir_sz2]
    hdr += struct.pack("<12IHIHIIHII", *objs, 0, 0, 0, 0, 0, 0, 0, 0)
    hdr += bytes(data_off + dirs_off - len(hdr))
    name_base = dir_sz2 + len(files) * 87
    hdr += bytes(dir_sz2)
    at = name_base
    for name, size, csize, off, cab in files:
        hdr += struct.pack(
            "<HQQQ16sQIIIHIIIIIBH",
            4,
            size,
            csize,
            off,
            bytes(16),
            0,
            0,
            0,
            at,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            cab,
        )
        at += len(name) + 1
    return bytes(hdr + names)


def test_ishield_overlay() -> None:
    cab = is_cab_chunks(PAYLOAD)
    other = is_cab_chunks(b"second file" * 100)
    hdr = is_hdr(
        [(b"clam.bin", len(PAYLOAD), len(cab), 0, 1), (b"b.txt", 1100, len(other), len(cab), 1)]
    )
    overlay = (
        is_entry(b"plain.exe", b"MZ plain")
        + is_entry(b"data1.hdr", hdr)
        + is_entry(b"data1.cab", cab + other)
        + is_entry(b"setup.ini", b"[Setup]")
        + b"\x00"  # libclamav wants a byte after the last file
    )
    got = kids(ex.ishield, overlay)
    assert [(c.name, c.data) for c in got] == [
        ("plain.exe", b"MZ plain"),
        ("setup.ini", b"[Setup]"),
        ("clam.bin", PAYLOAD),
        ("b.txt", b"second file" * 100),
    ]
    # an unusable index: the header and cabinet are scanned as they are
    broken = overlay.replace(b"ISc(", b"ISc)")
    names = [c.name for c in kids(ex.ishield, broken)]
    assert names == ["plain.exe", "setup.ini", "data1.hdr", "data1.cab"]
    # not an InstallShield overlay at all
    assert kids(ex.ishield, b"\x00" * 64 + b"random overlay") == []


# ----------------------------------------------------------------------------- ClamAV samples

CLAM_MD5 = "aa15bcf478d165efd2065190eb473bcb"
CLAMSCAN = shutil.which("clamscan")


def wrapper_offset(data: bytes, ftype: FileType) -> int:
    """Where the scanner's file-type signature puts the unpacker's data."""
    if ftype is FileType.NULSFT:
        return data.find(b"\xef\xbe\xad\xdeNullsoftInst") - 4
    if ftype is FileType.AUTOIT:
        return data.find(AU3_MARKER + b"AU3!EA0")
    pat = re.compile(rb"InstallShield\x00.{292}\x06\x00{7}.{8}\x00{4}\x01", re.DOTALL)
    match = pat.search(data)
    assert match is not None
    return match.start()


SAMPLES = {
    "clam-nsis.exe": FileType.NULSFT,
    "clam.ea05.exe": FileType.AUTOIT,
    "clam.ea06.exe": FileType.AUTOIT,
    "clam_ISmsi_int.exe": FileType.ISHIELD_MSI,
    "clam_ISmsi_ext.exe": FileType.ISHIELD_MSI,
}


def sample_children(path: Path) -> list[Child]:
    data = path.read_bytes()
    ftype = SAMPLES[path.name]
    return list(extract(ftype, data[wrapper_offset(data, ftype) :], 100 << 20))


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_samples_yield_clam_exe(scanfiles: Path, name: str) -> None:
    got = sample_children(scanfiles / name)
    digests = {hashlib.md5(c.data).hexdigest() for c in got}
    if name == "clam_ISmsi_int.exe":
        # clam.exe sits in a cabinet inside this MSI: the MSI is what libclamav extracts
        assert "efa529f28de651b561dc36646733e7e6" in digests
    else:
        assert CLAM_MD5 in digests


@pytest.mark.parametrize("name", ["clam_IScab_ext.exe", "clam_IScab_int.exe"])
def test_ishield_overlay_samples(scanfiles: Path, name: str) -> None:
    data = (scanfiles / name).read_bytes()
    # the overlay of these PEs starts after the last section (.rsrc ends at 0x1c200)
    got = kids(ex.ishield, data[0x1C200:], 100 << 20)
    assert CLAM_MD5 in {hashlib.md5(c.data).hexdigest() for c in got}


def libclamav_extracted(path: Path, tmp: Path) -> list[str]:
    """md5 of every file libclamav's installer unpackers wrote (all-match mode)."""
    assert CLAMSCAN is not None
    db = tmp / "none.hdb"
    db.write_text("00000000000000000000000000000000:1:Vigil.Test.None\n")
    proc = subprocess.run(
        [
            CLAMSCAN,
            "--debug",
            "--leave-temps",
            f"--tempdir={tmp}",
            "--allmatch",
            "--disable-cache",
            "--no-summary",
            "-d",
            str(db),
            str(path),
        ],
        capture_output=True,
        timeout=300,
        check=False,
    )
    log = proc.stderr.decode("latin-1")
    files = re.findall(
        r"(?:ishield-msi: extracted to|autoit: (?:file|script) extracted to) (\S+)", log
    )
    out = [hashlib.md5(Path(f).read_bytes()).hexdigest() for f in files]
    for folder in sorted(tmp.rglob("nulsft-tmp*")):
        for f in sorted(folder.iterdir()):
            out.append(hashlib.md5(f.read_bytes()).hexdigest())
    return out


@pytest.mark.differential
@pytest.mark.skipif(CLAMSCAN is None, reason="Debian's clamscan is not installed")
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_samples_match_libclamav(scanfiles: Path, name: str, tmp_path: Path) -> None:
    theirs = libclamav_extracted(scanfiles / name, tmp_path)
    ours = [hashlib.md5(c.data).hexdigest() for c in sample_children(scanfiles / name)]
    assert theirs and sorted(ours) == sorted(theirs)


# ----------------------------------------------------------------------------- bad input


def fixtures() -> list[tuple[Unpacker, bytes]]:
    garbage = bytes(range(16))
    return [
        (ex.nsis, nsis_blocks([(lzma_block(HEADER_SCRIPT), True), (deflate_block(PAYLOAD), True)])),
        (ex.nsis, nsis_solid(lzma_block(items(HEADER_SCRIPT, PAYLOAD)))),
        (ex.nsis, nsis_solid(deflate_block(items(HEADER_SCRIPT, PAYLOAD)))),
        (ex.nsis, nsis_solid(nsis_bzip2(items(HEADER_SCRIPT, PAYLOAD)))),
        (
            ex.autoit,
            au3_file(5, [au3_record(5, "F", "p", packed(PAYLOAD, 5), sum(garbage), 1)], garbage),
        ),
        (ex.autoit, au3_file(6, [au3_record(6, "F", "p", packed(PAYLOAD, 6), 0, 1)], garbage)),
        (ex.ishield_msi, is_msi([(b"a.msi", PAYLOAD)])),
        (
            ex.ishield,
            is_entry(b"data1.hdr", is_hdr([(b"x", 1200, 1000, 0, 1)]))
            + is_entry(b"data1.cab", is_cab_chunks(PAYLOAD)),
        ),
    ]


def test_truncated_everywhere() -> None:
    for unpack, data in fixtures():
        for cut in sorted({*range(0, 64), *range(0, len(data), max(1, len(data) // 97))}):
            for child in unpack(data[:cut], LIMIT):
                assert len(child.data) <= LIMIT


def test_seeded_fuzz() -> None:
    rng = random.Random(20261125)
    started = time.monotonic()
    for unpack, data in fixtures():
        for _ in range(150):
            buf = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                at = rng.randrange(len(buf))
                buf[at] = rng.randrange(256) if rng.random() < 0.7 else buf[at] ^ 0x80
            for child in unpack(bytes(buf), 4096):
                assert len(child.data) <= 4096
    assert time.monotonic() - started < 60


def test_absurd_sizes_and_counts() -> None:
    # NSIS: archive size and block sizes far past the data
    assert kids(ex.nsis, firstheader(b"")[:24] + b"\xff\xff\xff\xff" + b"\xff" * 64) == []
    blocks = struct.pack("<I", 0xFFFFFFF0) + b"x" * 32
    assert all(len(c.data) <= 32 for c in kids(ex.nsis, firstheader(blocks)))
    # AutoIt: a packed size of 2 GiB, an uncompressed size of 4 GiB
    huge = au3_record(5, "F", "p", b"EA05\xff\xff\xff\xff" + bytes(64), 0, 1)
    got = kids(ex.autoit, au3_file(5, [huge], bytes(16)), 4096)
    assert all(len(c.data) <= 4096 for c in got)
    rec = bytearray(au3_record(6, "F", "p", b"body", 0, 1))
    rec[8 + 2 + 4 + 2 + 1 : 8 + 2 + 4 + 2 + 5] = struct.pack("<I", 0x7FFFFFF0 ^ 0x87BC)
    assert kids(ex.autoit, au3_file(6, [bytes(rec)])) == []
    # InstallShield: 4 billion files announced, one present
    assert len(kids(ex.ishield_msi, is_msi([(b"a", b"x")], count=0xFFFFFFFF))) == 1
    # an index announcing 4 billion entries
    hdr = bytearray(is_hdr([(b"x", 10, 10, 0, 1)]))
    struct.pack_into("<I", hdr, 0x20 + 40, 0xFFFFFFFF)
    overlay = is_entry(b"data1.hdr", bytes(hdr)) + is_entry(b"data1.cab", b"\x00" * 8)
    started = time.monotonic()
    kids(ex.ishield, overlay)
    assert time.monotonic() - started < 5


def test_decompression_bombs_stay_bounded() -> None:
    limit = 1 << 20
    zeros = bytes(48 << 20)
    bombs = [
        (ex.nsis, nsis_blocks([(lzma_block(b"h"), True), (lzma_block(zeros), True)])),
        (ex.nsis, nsis_solid(deflate_block(items(b"h", zeros)))),
        (ex.ishield_msi, is_msi([(b"bomb", zeros)])),
    ]
    # AutoIt: one literal, then a chain of maximal matches declaring 2 GiB
    chain: list[bytes | tuple[int, int]] = [b"A"] + [(1, 60000)] * 200
    bombs.append(
        (ex.autoit, au3_file(5, [au3_record(5, "F", "p", lzss(chain, 5, 0x7FFFFFFF), 120, 1)]))
    )
    del zeros
    for unpack, data in bombs:
        tracemalloc.start()
        started = time.monotonic()
        got = kids(unpack, data, limit)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert time.monotonic() - started < 10
        assert peak < 8 * limit + 4 * len(data), (unpack.__name__, peak)
        assert any(c.oversized for c in got)
        assert all(len(c.data) <= limit for c in got)


def test_native_streams_reject_garbage() -> None:
    for kind in ("deflate", "bzip2"):
        stream = _nsis.Stream(random.Random(1).randbytes(5000), kind)
        while stream.read(4096):
            pass
        assert stream.eof
    with pytest.raises(ValueError):
        _nsis.Stream(b"", "zstd")
    assert _autoit.decompress(b"EA05", 5, 100, 100) == b"\x00"  # literal read past the end
    assert _autoit.detokenise(b"\x01\x00", 10, (), ()) == b""


# ----------------------------------------------------------------------------- end to end

MAKENSIS = shutil.which("makensis")


def build_installer(tmp: Path, compressor: str, solid: bool, files: dict[str, bytes]) -> Path:
    """A real NSIS installer from Debian's makensis."""
    assert MAKENSIS is not None
    lines = [f"SetCompressor {'/SOLID ' if solid else ''}{compressor}"]
    lines += ['OutFile "setup.exe"', 'Name "t"', "RequestExecutionLevel user", "Section"]
    lines.append("SetOutPath $TEMP")
    for name, body in files.items():
        (tmp / name).write_bytes(body)
        lines.append(f"File {name}")
    lines.append("SectionEnd")
    (tmp / "setup.nsi").write_text("\n".join(lines) + "\n")
    subprocess.run(
        [MAKENSIS, "-V1", "setup.nsi"], cwd=tmp, check=True, capture_output=True, timeout=120
    )
    return tmp / "setup.exe"


@pytest.mark.skipif(MAKENSIS is None, reason="makensis is not installed")
@pytest.mark.parametrize("compressor", ["zlib", "bzip2", "lzma"])
@pytest.mark.parametrize("solid", [False, True], ids=["blocks", "solid"])
def test_makensis_installers(tmp_path: Path, compressor: str, solid: bool) -> None:
    from vigil.engine.database import load_database
    from vigil.engine.scanner import Engine

    other = b"".join(b"line %d of a compressible file\n" % i for i in range(3000))
    exe = build_installer(tmp_path, compressor, solid, {"a.txt": PAYLOAD, "b.txt": other})
    data = exe.read_bytes()
    got = list(ex.nsis(data[wrapper_offset(data, FileType.NULSFT) :], LIMIT))
    assert [c.name for c in got] == ["headers", "content.001", "content.002"]
    assert [c.data for c in got[1:]] == [PAYLOAD, other]
    db = tmp_path / "payload.hdb"
    db.write_text(f"{hashlib.md5(PAYLOAD).hexdigest()}:{len(PAYLOAD)}:Vigil.Test.Payload\n")
    assert Engine(load_database([db])).scan(data).names == ["Vigil.Test.Payload.UNOFFICIAL"]
    if CLAMSCAN is not None:
        (tmp_path / "clam").mkdir()
        theirs = libclamav_extracted(exe, tmp_path / "clam")
        assert sorted(hashlib.md5(c.data).hexdigest() for c in got) == sorted(theirs)


def test_keystreams_leave_shared_bytes_alone() -> None:
    # CPython shares its 1-byte bytes objects: a decoder must never write into its input's
    # copy made by PyBytes_FromStringAndSize(data, 1)
    for i in range(256):
        _autoit.decrypt_ea05(bytes([i]), 0x1234)
        _autoit.decrypt_ea06(bytes([i]), 0x1234)
    assert all(bytes([i])[0] == i for i in range(256))
