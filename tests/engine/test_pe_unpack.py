"""Packed PE executables: UPX (NRV2B/2D/2E, LZMA), FSG, MEW, Upack, Petite, PESpin, yC,
WWPack and ASPack unpacking.

Fixtures are UPX-, FSG-, MEW- and PESpin-style files the tests pack themselves (small NRV
and aPLib encoders below, liblzma for MEW's LZMA);
the ClamAV samples are checked against the exact rebuilt images libclamav 1.4.6 writes
(their MD5s, as its ``--leave-temps`` shows), and, with the real clamscan, fixtures are
checked byte for byte through an .hdb signature on our rebuilt image.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import random
import shutil
import struct
import subprocess
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from vigil.engine.containers import pe_unpack
from vigil.engine.containers.pe_unpack import unpack_pe
from vigil.engine.database import load_database
from vigil.engine.executables import parse_pe
from vigil.engine.scanner import Engine
from vigil.native import (
    _nrv,
    _unpack_aplib,
    _unpack_aspack,
    _unpack_mew,
    _unpack_petite,
    _unpack_spin,
    _unpack_upack,
    _unpack_wwpack,
    _unpack_yc,
)

CLAMSCAN = shutil.which("clamscan")
BIG = 64 << 20

# --------------------------------------------------------------------------------------------
# A test-only NRV2B/2D/2E encoder (greedy, for small inputs).


class _Bits:
    """UPX's LE32 bit buffer: a 32-bit word is reserved where its first bit is written."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.slot = -1
        self.count = 32
        self.word = 0

    def bit(self, b: int) -> None:
        if self.count == 32:
            self._flush()
            self.slot = len(self.out)
            self.out += bytes(4)
            self.count = self.word = 0
        self.word |= (b & 1) << (31 - self.count)
        self.count += 1

    def _flush(self) -> None:
        if self.slot >= 0:
            struct.pack_into("<I", self.out, self.slot, self.word)

    def done(self) -> bytes:
        self._flush()
        return bytes(self.out)


def _gamma(w: _Bits, v: int) -> None:
    digits = bin(v)[3:]
    for i, c in enumerate(digits):
        w.bit(int(c))
        w.bit(int(i == len(digits) - 1))


def _gamma2(w: _Bits, v: int) -> None:
    """The NRV2D/2E offset code (two data bits per continuation bit)."""
    pairs = []
    u = v >> 1
    while u != 1:
        pairs.append((u + 2) & 3)
        u = (u + 2) >> 2
    for pair in reversed(pairs):
        w.bit(pair >> 1)
        w.bit(0)
        w.bit(pair & 1)
    w.bit(v & 1)
    w.bit(1)


def _tokens(data: bytes) -> Iterator[tuple[int, int]]:
    """(distance, length) matches of 4+ bytes, (0, byte) literals."""
    seen: dict[bytes, list[int]] = {}
    i = 0
    while i < len(data):
        best = (0, 0)
        for j in reversed(seen.get(data[i : i + 3], [])[-16:]):
            n = 0
            while i + n < len(data) and data[j + n] == data[i + n] and n < 0x200:
                n += 1
            if n > best[1]:
                best = (i - j, n)
        step = best[1] if best[1] >= 4 else 1
        for k in range(i, i + step):
            seen.setdefault(data[k : k + 3], []).append(k)
        yield best if step > 1 else (0, data[i])
        i += step


def nrv_compress(method: str, data: bytes) -> bytes:
    w = _Bits()
    last = 1
    for dist, value in _tokens(data):
        if not dist:
            w.bit(1)
            w.out.append(value)
            continue
        w.bit(0)
        far = int(dist > (0xD00 if method == "b" else 0x500))
        if method == "b":
            if dist == last:
                _gamma(w, 2)
            else:
                _gamma(w, ((dist - 1) >> 8) + 3)
                w.out.append((dist - 1) & 0xFF)
                last = dist
            code = value - 1 - far
            if code <= 3:
                w.bit(code >> 1)
                w.bit(code & 1)
            else:
                w.bit(0)
                w.bit(0)
                _gamma(w, code - 2)
            continue
        code = value - 1 - far if method == "d" else value - far
        if method == "d":
            flag, low = (code >> 1, code & 1) if code <= 3 else (0, 0)
        else:
            flag, low = (1, code - 2) if code <= 3 else (0, int(code <= 5))
        if dist == last:
            _gamma2(w, 2)
            w.bit(flag)
        else:
            raw = 2 * (dist - 1) + (1 - flag)
            _gamma2(w, (raw >> 8) + 3)
            w.out.append(raw & 0xFF)
            last = dist
        w.bit(low)
        if method == "d" and code > 3:
            _gamma(w, code - 2)
        elif method == "e" and not flag:
            if code <= 5:
                w.bit(code - 4)
            else:
                _gamma(w, code - 4)
    w.bit(0)
    (_gamma if method == "b" else _gamma2)(w, 0x1000002)
    w.out.append(0xFF)
    return w.done()


# --------------------------------------------------------------------------------------------
# UPX-style fixtures

NRV_STUB = {
    "b": bytes.fromhex("11db11c901db75078b1e83eefc"),
    "d": bytes.fromhex("83f0ff7478d1f889c5eb0b01db"),
    "e": bytes.fromhex("eb5231c983e8037211c1e0088a"),
}
IMPORTS_MAGIC = {"b": 0x108, "d": 0x11C, "e": 0x128, "lzma": 0xB16}
PAYLOAD = b"VIGIL-UNPACK-TEST-PAYLOAD:" + bytes(range(64)) * 4


def pe_header(sections: list[tuple[bytes, int, int, int, int]], entry: int, size: int) -> bytes:
    head = struct.pack("<4sHHIIIHH", b"PE\0\0", 0x14C, len(sections), 0, 0, 0, 0xE0, 0x10F)
    head += struct.pack("<HBBIIIIII", 0x10B, 8, 0, 0x1000, 0x1000, 0, entry, 0x1000, 0x2000)
    head += struct.pack(
        "<IIIHHHHHHIIIIHHIIIIII",
        0x400000, 0x1000, 0x200, 4, 0, 0, 0, 4, 0, 0, size, 0x400, 0, 2, 0,
        0x100000, 0x1000, 0x100000, 0x1000, 0, 16,
    )  # fmt: skip
    head = head.ljust(0x18 + 0xE0, b"\0")
    for name, vsize, rva, rsize, raw in sections:
        head += struct.pack("<8sIIII12xI", name, vsize, rva, rsize, raw, 0xE0000060)
    return head


def mz(pe: bytes) -> bytes:
    dos = bytearray(0x80)
    dos[:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, 0x80)
    return (bytes(dos) + pe).ljust(0x400, b"\0")


def upx_file(method: str = "b", header: str = "imports", skew: int = 0) -> bytes:
    """A UPX-packed-looking PE whose image holds PAYLOAD at the start of .text.

    ``header``: "imports" (UPX's copy of the original header after an import table the
    stub points at), "scan" (found by scanning back from the end), "none" (libclamav
    forges one)."""
    image = PAYLOAD.ljust(0x1000, b"\0") + (b"DATA" * 64).ljust(0x1000, b"\0")
    original = pe_header(
        [(b".text", 0x1000, 0x1000, 0x1000, 0x400), (b".data", 0x1000, 0x2000, 0x1000, 0x1400)],
        0x1000,
        0x3000,
    )
    if header == "imports":
        table = struct.pack("<II", 0x100, 0x200) + b"\x01kernel32.dll\0\x01ExitProcess\0\0\0"
        plain = image + table + bytes(4) + original
    elif header == "scan":
        plain = image + original + bytes(0x200)
    else:
        plain = image + b"\x11" * 0x300
    upx0_vsz = (len(plain) + 0xFFF) & ~0xFFF
    upx1_rva = 0x1000 + upx0_vsz
    if method == "lzma":
        filters = [{"id": lzma.FILTER_LZMA1, "lc": 3, "lp": 0, "pb": 2, "dict_size": 1 << 16}]
        stream = b"\0\0" + lzma.compress(plain, format=lzma.FORMAT_RAW, filters=filters)
    else:
        stream = nrv_compress(method, plain)
    stream = b"\xcc" * skew + stream
    stub_at = (len(stream) + 15) & ~15
    stub = bytearray(0xC00 if method == "lzma" else 0x200)
    stub[:2] = b"\x60\xbe"  # pushad; mov esi, UPX1 (+ skew)
    struct.pack_into("<I", stub, 2, 0x400000 + upx1_rva + skew)
    if method == "lzma":
        stub[0x2F : 0x2F + 20] = bytes.fromhex("5683c3045350c703 03000200 9090909090 555756")
        struct.pack_into("<I", stub, 0x21, len(plain))
    else:
        stub[0x69 : 0x69 + 13] = NRV_STUB[method]
    if header == "imports":
        at = IMPORTS_MAGIC[method] - skew
        stub[at - 2 : at] = b"\x8d\xbe"  # lea edi, [esi + imports]
        struct.pack_into("<i", stub, at, len(image))
    upx1 = (stream.ljust(stub_at, b"\0") + bytes(stub)).ljust(
        (stub_at + len(stub) + 0x1FF) & ~0x1FF, b"\0"
    )
    upx1_vsz = (len(upx1) + 0xFFF) & ~0xFFF
    sections = [
        (b"UPX0", upx0_vsz, 0x1000, 0, 0x400),
        (b"UPX1", upx1_vsz, upx1_rva, len(upx1), 0x400),
    ]
    return mz(pe_header(sections, upx1_rva + stub_at, upx1_rva + upx1_vsz)) + upx1


def aplib_compress(data: bytes) -> bytes:
    """A test-only encoder for FSG's aPLib variant: literals, 1-byte matches (offsets up
    to 127, length 2-3) and 4-bit single-byte copies; a tag byte is filled MSB first."""
    out = bytearray(data[:1])
    slot, count = -1, 8

    def bit(b: int) -> None:
        nonlocal slot, count
        if count == 8:
            slot, count = len(out), 0
            out.append(0)
        out[slot] |= b << (7 - count)
        count += 1

    i = 1
    while i < len(data):
        near = [d for d in range(1, min(i, 127) + 1) if data[i - d : i - d + 2] == data[i : i + 2]]
        if near and i + 1 < len(data):
            d = near[0]
            n = 3 if data[i - d + 2 : i - d + 3] == data[i + 2 : i + 3] and i + 2 < len(data) else 2
            for b in (1, 1, 0):
                bit(b)
            out.append(d << 1 | (n - 2))
            i += n
        elif data[i] == 0 or data[i] in data[max(0, i - 15) : i]:
            d = 0 if data[i] == 0 else i - data.rindex(data[i], max(0, i - 15), i)
            for b in (1, 1, 1, d >> 3 & 1, d >> 2 & 1, d >> 1 & 1, d & 1):
                bit(b)
            i += 1
        else:
            bit(0)
            out.append(data[i])
            i += 1
    for b in (1, 1, 0):
        bit(b)
    out.append(0)  # offset 0: the end
    return bytes(out) + bytes(4)


def fsg2_file() -> bytes:
    """An FSG 2.0-style PE: xchg esp, [X] at the entry point; the stack it switches to
    holds the destination, the source and the table with the original entry point."""
    plain = (PAYLOAD + bytes(300) + PAYLOAD[::-1]).ljust(0x1800, b"\x90")
    stream = aplib_compress(plain)
    rva1 = 0x3000
    base = 0x400000
    body = bytearray(0x200) + stream
    table = len(body)
    body += struct.pack("<IIII", 0, 0, 0, base + 0x1234)  # old entry point at +12
    stack = len(body)
    body += struct.pack(
        "<8I", base + 0x1000, base + rva1 + 0x200, 0, 0, base + rva1 + table, 0, 0, 0
    )
    pointer = len(body)
    body += struct.pack("<I", base + rva1 + stack)
    entry = len(body)
    body += b"\x87\x25" + struct.pack("<I", base + rva1 + pointer) + bytes(0x200)
    body = body.ljust((len(body) + 0x1FF) & ~0x1FF, b"\0")
    sections = [(b"", 0x2000, 0x1000, 0, 0x400), (b"", 0x1000, rva1, len(body), 0x400)]
    return mz(pe_header(sections, rva1 + entry, 0x4000)) + bytes(body)


def only_child(data: bytes, limit: int = BIG) -> bytes:
    children = list(unpack_pe(data, limit))
    assert len(children) == 1
    assert not children[0].oversized
    return children[0].data


# --------------------------------------------------------------------------------------------
# Decoders


@pytest.mark.parametrize("method", ["b", "d", "e"])
def test_nrv_round_trip(method: str) -> None:
    rng = random.Random(7)
    decode = {"b": _nrv.nrv2b, "d": _nrv.nrv2d, "e": _nrv.nrv2e}[method]
    for _ in range(40):
        parts: list[bytes] = []
        while sum(map(len, parts)) < 3000:
            pick = rng.random()
            if pick < 0.3:
                parts.append(rng.randbytes(rng.randint(1, 40)))
            elif pick < 0.6 and parts:
                parts.append(rng.choice(parts))
            else:
                parts.append(bytes([rng.randint(0, 3)]) * rng.randint(1, 300))
        data = b"".join(parts)
        packed = nrv_compress(method, data)
        out = bytearray(len(data) + 16)
        assert decode(packed, out, len(out)) == len(data)
        assert bytes(out[: len(data)]) == data
        # the output bound holds: one byte short fails instead of overflowing
        small = bytearray(len(data) - 1)
        assert decode(packed, small, len(small)) == -1
        for cut in (0, 1, 5, len(packed) // 2, len(packed) - 1):
            assert decode(packed[:cut], bytearray(len(data)), len(data)) == -1


def test_nrv_hostile_streams_are_bounded() -> None:
    rng = random.Random(3)
    out = bytearray(1 << 16)
    for _ in range(3000):
        junk = rng.randbytes(rng.randint(0, 200))
        for decode in (_nrv.nrv2b, _nrv.nrv2d, _nrv.nrv2e):
            assert -1 <= decode(junk, out, len(out)) <= len(out)
    # a run of "copy again" codes: each 0 bit doubles a length, nothing overflows
    assert _nrv.nrv2b(b"\0" * 4096, out, len(out)) == -1
    assert _nrv.nrv2b(b"\xff" * 4096, out, 16) == -1


def test_other_decoders_survive_junk() -> None:
    rng = random.Random(5)
    for _ in range(2000):
        junk = rng.randbytes(rng.randint(0, 300))
        out = bytearray(4096)
        result = _unpack_aplib.decode(junk, out, 0, len(out))
        assert result is None or result[1] <= len(out)
        image = bytearray(rng.randbytes(4096))
        assert _unpack_wwpack.unpack(image, junk.ljust(0x2B2, b"\x01"), 0x1000) in (0, 1)
        assert _unpack_yc.emulate(image, 4096, rng.randint(0, 5000), 0, 300, 300) in (0, 1, 2)
        sections = [(0x1000, 0x1000), (0x2000, 0x1000)]
        image[0x11B8 : 0x11B8 + len(junk)] = junk
        result = _unpack_petite.inflate(image, 0x1000, sections, 0x400000, 0x2000, 2)
        assert result is None or len(result[0]) <= 96
    assert _unpack_aplib.decode(b"", bytearray(4), 0, 4) is None
    assert _unpack_aplib.decode(b"A\x00", bytearray(4), 0, 4) is None
    assert _unpack_aplib.decode(b"xyz", bytearray(4), 2, 5) is None  # window past the buffer


# --------------------------------------------------------------------------------------------
# UPX fixtures


@pytest.mark.parametrize("method", ["b", "d", "e", "lzma"])
@pytest.mark.parametrize("header", ["imports", "scan"])
def test_upx_rebuilds_the_original_sections(method: str, header: str) -> None:
    packed = upx_file(method, header)
    assert PAYLOAD not in packed
    out = only_child(packed)
    info = parse_pe(out)
    assert info is not None
    # original .text and .data, at file offsets aligned to their section alignment
    assert [(s.virtual_address, s.raw_offset) for s in info.sections] == [
        (0x1000, 0x1000),
        (0x2000, 0x2000),
    ]
    assert out[0x1000 : 0x1000 + len(PAYLOAD)] == PAYLOAD
    assert out[0xD0 + 8 : 0xD0 + 12] == b"CLAM"


@pytest.mark.parametrize("method", ["b", "d", "e"])
def test_upx_skewed_stream(method: str) -> None:
    assert only_child(upx_file(method, "imports", 0x15)) == only_child(upx_file(method))


@pytest.mark.parametrize("method", ["b", "lzma"])
def test_upx_without_original_header_gets_a_forged_one(method: str) -> None:
    out = only_child(upx_file(method, "none"))
    info = parse_pe(out)
    assert info is not None and len(info.sections) == 1
    assert out[0x1C8:0x1CF] == b".clam01"
    assert out[0x200 : 0x200 + len(PAYLOAD)] == PAYLOAD


def test_upx_limits() -> None:
    packed = upx_file("b")
    (child,) = unpack_pe(packed, 0x2000)  # UPX0 + UPX1 are larger than this
    assert child.oversized and child.data == b""
    # absurd UPX0 size: refused before any allocation (libclamav's MaxFileSize check)
    bomb = bytearray(packed)
    struct.pack_into("<I", bomb, 0x80 + 0x18 + 0xE0 + 8, 0x7FFF0000)
    start = time.monotonic()
    (child,) = unpack_pe(bytes(bomb), BIG)
    assert child.oversized and time.monotonic() - start < 1
    # same with a limit above it: libclamav's own size sanity check stops it
    assert list(unpack_pe(bytes(bomb), 1 << 31)) == []


def test_not_packed_or_not_pe() -> None:
    assert list(unpack_pe(b"", BIG)) == []
    assert list(unpack_pe(b"MZ" + bytes(200), BIG)) == []
    assert list(unpack_pe(b"\x7fELF" + bytes(4000), BIG)) == []
    plain = mz(pe_header([(b".text", 0x1000, 0x1000, 0x200, 0x400)], 0x1000, 0x2000))
    assert list(unpack_pe(plain + bytes(0x200), BIG)) == []


def test_truncated_and_corrupted_upx_never_raise(strict_unpack: list[str]) -> None:
    packed = upx_file("e")
    rng = random.Random(11)
    start = time.monotonic()
    for cut in range(0, len(packed), 97):
        list(unpack_pe(packed[:cut], BIG))
    for _ in range(1500):
        bad = bytearray(packed)
        for _ in range(rng.randint(1, 8)):
            bad[rng.randrange(len(bad))] = rng.randrange(256)
        for child in unpack_pe(bytes(bad), 1 << 20):
            assert len(child.data) <= 1 << 20
    assert time.monotonic() - start < 60
    assert strict_unpack == []


def test_fsg_rebuilds_one_section() -> None:
    out = only_child(fsg2_file())
    info = parse_pe(out)
    assert info is not None and len(info.sections) == 1
    assert out[0x1C8:0x1CF] == b".clam01"
    section = info.sections[0]
    assert section.virtual_address == 0x1000
    assert out[section.raw_offset : section.raw_offset + len(PAYLOAD)] == PAYLOAD
    assert PAYLOAD[::-1] in out
    assert struct.unpack_from("<I", out, 0xD0 + 0x28)[0] == 0x1234  # original entry point


# --------------------------------------------------------------------------------------------
# MEW fixtures: an empty section, then the MEW section with the streams; the entry point
# jumps into the header, where the loader's "mov esi, streams" sits at file offset 0x154.

BASE = 0x400000
MEW_HEAD = 0x154  # the loader's place in the header (Win9x-compatible variant)
LZMA_PROPS = [{"id": lzma.FILTER_LZMA1, "lc": 4, "lp": 0, "pb": 2, "dict_size": 1 << 16}]


def _with_calls(data: bytes) -> bytes:
    """Sprinkles E8 call opcodes (with absolute targets) through a payload."""
    return b"".join(b"\xe8" + struct.pack(">I", 0x401000 + 16 * i) + data[i : i + 16]
                    for i in range(0, len(data), 16))  # fmt: skip


def mew_file(method: str = "mew5") -> bytes:
    """A MEW 11-style PE: "mew5" (two aPLib streams, one per rebuilt section), "lzma" or
    "lzma-special" (an aPLib loader, then LZMA blocks with their probability table inside
    the image; "special" also converts the call targets back)."""
    dsize = 0xC000 if method.startswith("lzma") else 0x3000
    s1_rva = 0x1000 + dsize
    vma = BASE + 0x1000
    offdiff = 0x10
    pad = bytearray(offdiff)
    entry = BASE + 0x1234
    if method == "mew5":
        first, second = PAYLOAD + b"first section", (b"DATA" * 40) + PAYLOAD[::-1]
        streams = (
            struct.pack("<III", 0, entry, vma)
            + aplib_compress(first)[:-4]
            + struct.pack("<I", vma + 0x1000)
            + aplib_compress(second)[:-4]
            + bytes(4)
        )
    else:
        special = method == "lzma-special"
        pad[8] = 0x50 if special else 0  # the byte libclamav looks at: "push eax"
        plain = _with_calls(PAYLOAD) + PAYLOAD
        packed = lzma.compress(plain, format=lzma.FORMAT_RAW, filters=LZMA_PROPS)
        block = struct.pack("<III", len(plain), vma, len(packed)) + b"\0" + packed
        header = struct.pack("<I", len(plain)) if special else b""
        header += struct.pack("<I", vma + 0x4000)  # the probabilities, in the image
        tail = b"" if special else bytes(16)  # a zero block size ends the list
        streams = (
            struct.pack("<III", 0, entry, vma + 0xB000)
            + aplib_compress(b"loader code " * 8)[:-4]
            + bytes(4)
            + header
            + block
            + tail
            + bytes(32)
        )
    body = bytearray(pad + streams)
    stub_at = len(body)
    vep = s1_rva + stub_at
    body += b"\xe9" + struct.pack("<i", MEW_HEAD - (vep + 5)) + bytes(0x200)
    body = body.ljust((len(body) + 0x1FF) & ~0x1FF, b"\0")
    s1_vsz = (len(body) + 0xFFF) & ~0xFFF
    sections = [(b"", dsize, 0x1000, 0, 0), (b"MEW", s1_vsz, s1_rva, len(body), 0x400)]
    head = bytearray(mz(pe_header(sections, vep, s1_rva + s1_vsz)))
    struct.pack_into("<I", head, MEW_HEAD + 1, BASE + s1_rva + offdiff)  # mov esi, streams
    if method != "mew5":
        # call to the LZMA decoder at the start of the MEW section
        struct.pack_into("<B", head, MEW_HEAD + 0x7B, 0xE8)
        struct.pack_into("<I", head, MEW_HEAD + 0x7C, s1_rva - (MEW_HEAD + 0x80))
    return bytes(head) + bytes(body)


@pytest.mark.parametrize("method", ["mew5", "lzma", "lzma-special"])
def test_mew_rebuilds_the_streams(method: str) -> None:
    packed = mew_file(method)
    assert PAYLOAD not in packed
    out = only_child(packed)
    info = parse_pe(out)
    assert info is not None
    assert struct.unpack_from("<I", out, 0xD0 + 0x28)[0] == 0x1234  # original entry point
    if method == "mew5":
        assert [(s.virtual_address, s.raw_offset) for s in info.sections] == [
            (0x1000, 0x400),
            (0x2000, 0x1400),
        ]
        assert out[0x400 : 0x400 + len(PAYLOAD)] == PAYLOAD
        assert PAYLOAD[::-1] in out
        return
    assert len(info.sections) == 1 and info.sections[0].raw_offset == 0x200
    image = out[0x200:]
    if method == "lzma":
        assert image.startswith(_with_calls(PAYLOAD) + PAYLOAD)
    else:
        # the call targets are relative again (the first, to 0x401000, sits at offset 0)
        assert PAYLOAD[16:32] in image and image[:1] == b"\xe8"
        assert struct.unpack_from("<I", image, 1)[0] == 0x401000 - 1
    # the probability table was left in the image, as libclamav leaves it
    assert image[0x4000 : 0x4000 + 0x6E6C] != bytes(0x6E6C)


# --------------------------------------------------------------------------------------------
# PESpin fixtures: the stub's layers, built by applying each decryption's inverse.


def _summit(data: bytes) -> int:
    """PESpin's checksum (test-only copy of the C one)."""
    m = 0xFFFFFFFF
    eax = ebx = m
    for byte in data:
        eax ^= (byte << 8) & 0xFF00
        eax = (eax >> 3) & 0x1FFFFFFF
        for _ in range(4):
            eax ^= (ebx >> 8) & 0xFF
            eax = (eax + 0x7801A108) & m
            eax ^= ebx
            n = ebx & 31
            eax = ((eax >> n) | (eax << (32 - n))) & m
            eax, ebx = ebx, eax
    return ebx


def _lfsr(buf: bytearray, at: int, size: int, key: int, poly: int, on_odd: bool) -> None:
    for i in range(size):
        odd = key & 1
        key >>= 1
        if bool(odd) == on_odd:
            key ^= poly
        buf[at + i] ^= key & 0xFF


# A byte decryptor as PESpin writes it (xor/add cl/rol/sub/inc, nops, then stosb), and its
# inverse for building the fixture.
SPIN_CODE = (
    bytes.fromhex("345a 02c1 c0c003 2c11 fec0 90 eb0000 0a00 f8").ljust(0x24, b"\x90") + b"\xaa"
)


def _spin_encrypt(buf: bytearray, at: int, size: int) -> None:
    for i in range(size):
        cl = (size - i) & 0xFF
        v = buf[at + i]
        v = (v - 1) & 0xFF  # inc
        v = (v + 0x11) & 0xFF  # sub 0x11
        v = ((v >> 3) | (v << 5)) & 0xFF  # rol 3
        v = (v - cl) & 0xFF  # add al, cl
        buf[at + i] = v ^ 0x5A


def pespin_file(resources: bool = True) -> bytes:
    """A PESpin 1.1-style PE: .text xored, poly-encrypted and aPLib-compressed; .rsrc
    stored up to 0x20 bytes, then compressed; the stub's layers around its parameters."""
    text_plain = (PAYLOAD + b"pespin text").ljust(0x600, b"\x90")
    text = aplib_compress(text_plain)
    rsrc_plain = b"RSRC-HEAD".ljust(0x20, b"\0") + PAYLOAD[::-1] * 2
    rsrc = rsrc_plain[:0x20] + aplib_compress(rsrc_plain[0x20:])
    text_raw = bytearray(text.ljust((len(text) + 0x1FF) & ~0x1FF, b"\0"))
    rsrc_raw = bytearray(rsrc.ljust((len(rsrc) + 0x1FF) & ~0x1FF, b"\0"))
    e = 0x100  # the stub's offset in its section
    stub = bytearray(e + 0x3400)
    raw_text, raw_rsrc = 0x400, 0x400 + len(text_raw)
    raw_spin = raw_rsrc + len(rsrc_raw)
    fsize = raw_spin + len(stub)
    sections = [
        (b".text", 0x1000, 0x1000, len(text_raw), raw_text),
        (b".rsrc", 0x1000, 0x2000, len(rsrc_raw), raw_rsrc),
        (b".spin", 0x4000, 0x3000, len(stub), raw_spin),
    ]
    head = mz(pe_header(sections, 0x3000 + e, 0x7000))
    key8, key_a, key_b, key_x = 0x91, 0x47B3F060, 0x43A806DB, 0x3523A0F5
    p = stub
    p[e + 0 : e + 14] = bytes.fromhex("eb02 0000 e800000000 8b1c2483c3")
    p[e + 0xDB] = 0xBB
    p[e + 0xDC] = key8
    p[e + 0xE0] = 0xB9
    struct.pack_into("<I", p, e + 0xE1, 0x11FE)
    struct.pack_into("<II", p, e + 0x26EB, key_a, 0)
    struct.pack_into("<I", p, e + 0x26EB + 5, 0x5A0)
    struct.pack_into("<I", p, e + 0x429, fsize - 0x400)  # checksum of the headers
    struct.pack_into("<I", p, e + 0x3217, (key_x + _summit(head[:0x400])) & 0xFFFFFFFF)
    struct.pack_into("<I", p, e + 0x3207, 0b01)  # .text xored
    struct.pack_into("<I", p, e + 0x644, 0x180)
    struct.pack_into("<I", p, e + 0x650, key_b)
    struct.pack_into("<I", p, e + 0x28DD, 0x1A1)
    p[e + 0x28EC : e + 0x28EC + 0x25] = SPIN_CODE
    struct.pack_into("<I", p, e + 0x6F1, 0b01)  # .text poly-encrypted
    p[e + 0x755 : e + 0x755 + 0x25] = SPIN_CODE
    struct.pack_into("<I", p, e + 0x3061, 0b01)  # .text compressed
    struct.pack_into("<I", p, e + 0x2FEE, 0x2020 if resources else 0)
    # the layers, last one first
    _spin_encrypt(text_raw, 0, len(text_raw))
    _spin_encrypt(p, e + 0x6D4, 0x1A1)
    _lfsr(p, e + 0x28D3, 0x180, key_b, 0xED43AF32, True)
    _lfsr(text_raw, 0, len(text_raw), key_x, 0xED43AF31, False)
    _lfsr(p, e + 0x2D5, 0x5A0, key_a, 0x8C328834, True)
    for i in range(0x11FE):
        p[e + 0x1FE5 + 0x11FE - 1 - i] ^= (key8 - i) & 0xFF
    data = head + bytes(text_raw) + bytes(rsrc_raw) + bytes(stub)
    assert len(data) == fsize
    return data


@pytest.mark.parametrize("resources", [True, False])
def test_pespin_peels_the_layers(resources: bool) -> None:
    packed = pespin_file(resources)
    assert PAYLOAD not in packed
    out = only_child(packed)
    info = parse_pe(out)
    assert info is not None
    assert [(s.virtual_address, s.raw_offset) for s in info.sections] == [
        (0x1000, 0x400),
        (0x2000, 0x1400),
    ]
    assert out[0x400 : 0x400 + len(PAYLOAD)] == PAYLOAD
    assert (PAYLOAD[::-1] * 2 in out) == resources


# --------------------------------------------------------------------------------------------
# ClamAV's samples: the exact images libclamav rebuilds

REBUILT = {
    "clam-upx.exe": [("upx", "3b03bc19b1f39587a0650c7b6fe35d38")],
    "clam-wwpack.exe": [("wwpack", "7b8cd3dd6a198ec191afce0206665d2d")],
    "clam-petite.exe": [("petite", "8a2bf11929515746f3df244a4ac91c7c")],
    "clam-yc.exe": [
        ("yc", "8822fca1f7b0cb5506f15f8088956197"),
        ("upx", "3b03bc19b1f39587a0650c7b6fe35d38"),
    ],
    "clam-mew.exe": [("mew", "eb55c7b07f6c22b7c09ea52a8eeaddec")],
    "clam-upack.exe": [("upack", "de4f18d10798acf90ab81dc899dffb14")],
    "clam-aspack.exe": [("aspack", "4a4477a6d2d866b38806e9bfa5a6bb2e")],
    "clam-pespin.exe": [("pespin", "ea58113cd88ec4715020f5189529d35b")],
}
NEW_PACKERS = ["clam-mew.exe", "clam-upack.exe", "clam-aspack.exe", "clam-pespin.exe"]


@pytest.mark.parametrize("name", sorted(REBUILT))
def test_samples_rebuild_like_libclamav(scanfiles: Path, clam_exe: Path, name: str) -> None:
    data = (scanfiles / name).read_bytes()
    for kind, md5 in REBUILT[name]:
        (child,) = unpack_pe(data, BIG)
        assert child.name == kind
        assert hashlib.md5(child.data).hexdigest() == md5
        data = child.data
    target = clam_exe.read_bytes()
    if target in data:
        return  # clamscan finds it as an embedded PE
    # else inside a ZIP appended to the unpacked program
    archive = zipfile.ZipFile(io.BytesIO(data[data.index(b"PK\x03\x04") :]))
    assert archive.read("clam.exe") == target


@pytest.mark.parametrize("name", ["clam-fsg.exe", "clam.exe", "clam-nsis.exe"])
def test_unpacked_samples_yield_nothing(scanfiles: Path, name: str) -> None:
    # clam-fsg.exe is not FSG-packed: clam.exe sits in it as is
    assert list(unpack_pe((scanfiles / name).read_bytes(), BIG)) == []


@pytest.fixture
def strict_unpack(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records exceptions that unpack_pe swallows: on damaged input every bound is
    checked explicitly, so none should happen (only the limit signal)."""
    seen: list[str] = []
    inner = pe_unpack._unpack

    def watched(data: bytes, limit: int) -> tuple[str, bytes] | None:
        try:
            return inner(data, limit)
        except pe_unpack._TooBig:
            raise
        except Exception as exc:
            seen.append(repr(exc))
            raise

    monkeypatch.setattr(pe_unpack, "_unpack", watched)
    return seen


def test_fuzzed_samples_never_raise(scanfiles: Path, strict_unpack: list[str]) -> None:
    rng = random.Random(2024)
    samples = [(scanfiles / n).read_bytes() for n in sorted(REBUILT)]
    start = time.monotonic()
    for round_ in range(3000):
        bad = bytearray(samples[round_ % len(samples)])
        if round_ % 5 == 0:
            bad = bad[: rng.randrange(len(bad))]
        else:
            for _ in range(rng.randint(1, 6)):
                bad[rng.randrange(len(bad))] = rng.randrange(256)
        for child in unpack_pe(bytes(bad), 1 << 20):
            assert len(child.data) <= 1 << 20
    assert time.monotonic() - start < 90
    assert strict_unpack == []


# --------------------------------------------------------------------------------------------
# Differential: clamscan must find our rebuilt image's MD5 inside the packed fixture, i.e.
# libclamav rebuilt the same bytes.


@pytest.mark.differential
@pytest.mark.skipif(CLAMSCAN is None, reason="Debian's clamscan is not installed")
def test_clamscan_rebuilds_the_same_bytes(tmp_path: Path) -> None:
    cases = {
        f"{method}-{header}-{skew}": upx_file(method, header, skew)
        for method in ("b", "d", "e", "lzma")
        for header in ("imports", "scan", "none")
        for skew in (0, 0x15)
    }
    cases["fsg2"] = fsg2_file()
    cases.update({f"mew-{m}": mew_file(m) for m in ("mew5", "lzma", "lzma-special")})
    cases.update({f"pespin-{r}": pespin_file(r) for r in (True, False)})
    lines = []
    digests = {}
    for name, packed in cases.items():
        (tmp_path / f"{name}.exe").write_bytes(packed)
        out = only_child(packed)
        digests[f"Rebuilt.{name}.UNOFFICIAL"] = hashlib.md5(out).hexdigest()
        lines.append(f"{digests[f'Rebuilt.{name}.UNOFFICIAL']}:{len(out)}:Rebuilt.{name}")
    db = tmp_path / "rebuilt.hdb"
    db.write_text("\n".join(lines) + "\n")
    assert CLAMSCAN is not None
    proc = subprocess.run(
        [CLAMSCAN, "--no-summary", "--disable-cache", "-d", str(db), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    found = dict(line.rsplit(": ", 1) for line in proc.stdout.splitlines())
    for name in cases:
        # fixtures that differ only in packing rebuild the same image: any of its names
        verdict = found[str(tmp_path / f"{name}.exe")].removesuffix(" FOUND")
        assert digests.get(verdict) == digests[f"Rebuilt.{name}.UNOFFICIAL"], name


# --------------------------------------------------------------------------------------------
# MEW, Upack, ASPack, PESpin: scanner, bad input, fuzzing, and libclamav on mutated samples


def test_payload_found_by_the_scanner(tmp_path: Path) -> None:
    ndb = tmp_path / "payload.ndb"
    ndb.write_text(f"Test.Payload:0:*:{PAYLOAD.hex()}\n")
    engine = Engine(load_database([ndb]))
    for packed in (mew_file("mew5"), mew_file("lzma"), mew_file("lzma-special"), pespin_file()):
        assert PAYLOAD not in packed
        assert engine.scan(packed).names == ["Test.Payload.UNOFFICIAL"]


def _lfanew(data: bytes) -> int:
    return int(struct.unpack_from("<I", data, 0x3C)[0])


@pytest.mark.parametrize("name", NEW_PACKERS)
def test_absurd_section_sizes_cost_nothing(scanfiles: Path, name: str) -> None:
    """Each section's size in turn made absurd: refused before anything is allocated
    (MaxFileSize: an empty oversized child) or not unpacked at all, quickly."""
    data = (scanfiles / name).read_bytes()
    lfanew = _lfanew(data)
    count, opt_size = (
        struct.unpack_from("<H", data, lfanew + 6)[0],
        struct.unpack_from("<H", data, lfanew + 20)[0],
    )
    table = lfanew + 24 + opt_size
    for index in range(count):
        for field in (8, 16):  # VirtualSize, SizeOfRawData
            bomb = bytearray(data)
            struct.pack_into("<I", bomb, table + 40 * index + field, 0x7FFF0000)
            start = time.monotonic()
            for child in unpack_pe(bytes(bomb), 1 << 20):
                assert child.oversized or len(child.data) <= 1 << 20
            assert time.monotonic() - start < 2


def _mutants(data: bytes, seed: int, count: int) -> Iterator[bytes]:
    """Seeded mutations, mostly inside the sections' data (where the packed streams and
    the stubs' parameters are), and truncations."""
    info = pe_unpack._peinfo(data)
    assert info is not None
    spans = [(s.raw, s.rsz) for s in info.sections if s.rsz] or [(0, len(data))]
    rng = random.Random(seed)
    for round_ in range(count):
        if round_ % 10 == 0:
            yield data[: rng.randrange(len(data))]
            continue
        bad = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            raw, size = rng.choice(spans) if rng.random() < 0.85 else (0, len(data))
            at = min(raw + rng.randrange(size), len(bad) - 1)
            bad[at] = (
                rng.randrange(256) if rng.random() < 0.7 else bad[at] ^ (1 << rng.randrange(8))
            )
        yield bytes(bad)


FUZZED = {
    **{name: None for name in NEW_PACKERS},
    "mew-lzma-special": lambda: mew_file("lzma-special"),
    "mew-lzma": lambda: mew_file("lzma"),
    "mew5": lambda: mew_file("mew5"),
    "pespin": pespin_file,
}


@pytest.mark.parametrize("name", sorted(FUZZED))
def test_new_packers_fuzzed(scanfiles: Path, strict_unpack: list[str], name: str) -> None:
    make = FUZZED[name]
    data = make() if make else (scanfiles / name).read_bytes()
    start = time.monotonic()
    rebuilt = 0
    for bad in _mutants(data, 4242, 2500):
        for child in unpack_pe(bad, 1 << 20):
            assert len(child.data) <= 1 << 20
            rebuilt += 1
    assert rebuilt  # some mutants still unpack: the deep paths were reached
    assert time.monotonic() - start < 60
    assert strict_unpack == []


def test_new_decoders_survive_junk() -> None:
    rng = random.Random(9)
    for _ in range(3000):
        junk = bytearray(rng.randbytes(rng.randint(1, 0x400)))
        size = len(junk)
        dsize = rng.randrange(size)
        result = _unpack_mew.unpack(
            junk, rng.randrange(size), size - dsize, dsize, 0x400000, 0x1000, rng.choice([0, 5])
        )
        assert result is None or len(result[1]) <= 96
        result2 = _unpack_upack.unpack(
            bytearray(junk), rng.random() < 0.5, bytes(junk[:8]).ljust(8, b"\0"),
            rng.randrange(0x2000), rng.randrange(size), 0x400000, rng.randrange(size),
        )  # fmt: skip
        assert result2 is None or result2[1] <= size
        version = rng.randint(1, 3)
        assert _unpack_aspack.decompress(bytearray(junk), rng.randrange(size), version) in (
            True,
            False,
        )
        sections = [(rng.randrange(size), rng.randrange(size)) for _ in range(rng.randint(1, 4))]
        last = (rng.randrange(size), rng.randrange(size), 0x5000)
        keys = _unpack_spin.decrypt(bytearray(junk), sections, last, 0x5000 + rng.randrange(64))
        assert keys is None or len(keys) == 2
    # arguments out of range: refused, not misread
    assert _unpack_mew.unpack(bytearray(16), 0, 8, 8, 1 << 40, 0, 0) is None
    assert _unpack_aspack.decompress(bytearray(16), 0, 7) is False
    assert _unpack_spin.decrypt(bytearray(16), [], (0, 16, 0), 0) is None


def test_mew_lzma_bomb_is_bounded() -> None:
    """A block claiming 4 GB of output from a tiny stream: the output never leaves the
    image, whatever the header says."""
    packed = bytearray(mew_file("lzma"))
    at = packed.index(struct.pack("<I", len(_with_calls(PAYLOAD) + PAYLOAD)))
    struct.pack_into("<I", packed, at, 0xFFFFFFFF)
    start = time.monotonic()
    for child in unpack_pe(bytes(packed), 1 << 20):
        assert len(child.data) <= 1 << 20
    assert time.monotonic() - start < 2


def _clamscan_rebuilds(directory: Path, db: Path) -> tuple[dict[str, str], dict[str, bool]]:
    """clamscan's verdict per file, and whether libclamav rebuilt (or decompressed) an
    image from it (its debug log, split at each file it opens)."""
    assert CLAMSCAN is not None
    proc = subprocess.run(
        [CLAMSCAN, "--debug", "--no-summary", "--disable-cache", "-d", str(db), str(directory)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    verdicts = {
        Path(line.rsplit(": ", 1)[0]).name: line.rsplit(": ", 1)[1].removesuffix(" FOUND")
        for line in proc.stdout.splitlines()
    }
    rebuilt: dict[str, bool] = {}
    current = ""
    for line in proc.stderr.splitlines():
        if "Checking realpath of " in line:
            current = Path(line.split("Checking realpath of ", 1)[1].strip()).name
        elif "Scanning rebuilt PE file" in line or "Scanning decompressed file" in line:
            rebuilt[current] = True
    return verdicts, rebuilt


@pytest.mark.differential
@pytest.mark.skipif(CLAMSCAN is None, reason="Debian's clamscan is not installed")
def test_clamscan_agrees_on_mutated_samples(scanfiles: Path, tmp_path: Path) -> None:
    """Damaged MEW/Upack/ASPack/PESpin files: libclamav rebuilds an image exactly when we
    do, and the same bytes (an .hdb of our images' MD5s names each one)."""
    lines, ours = [], {}
    for name in NEW_PACKERS:
        data = (scanfiles / name).read_bytes()
        for index, bad in enumerate(_mutants(data, 77, 60)):
            file = f"{name}-{index}.exe"
            (tmp_path / file).write_bytes(bad)
            children = [c for c in unpack_pe(bad, BIG) if c.data]
            if children:
                digest = hashlib.md5(children[0].data).hexdigest()
                ours[file] = digest
                lines.append(f"{digest}:{len(children[0].data)}:Rebuilt.{digest}")
            else:
                ours[file] = ""
    db = tmp_path / "rebuilt.hdb"
    db.write_text("\n".join(lines or ["0" * 32 + ":1:Nothing"]) + "\n")
    verdicts, rebuilt = _clamscan_rebuilds(tmp_path, db)
    assert sum(map(bool, ours.values())) > 40  # enough of them still unpack
    for file, digest in ours.items():
        assert rebuilt.get(file, False) == bool(digest), file
        if digest:
            assert verdicts[file] == f"Rebuilt.{digest}.UNOFFICIAL", file
