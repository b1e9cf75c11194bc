"""Packed PE executables: UPX (NRV2B/2D/2E, LZMA), Petite, yC and WWPack unpacking.

Fixtures are UPX-style files the tests pack themselves (a small NRV encoder below);
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
from vigil.engine.executables import parse_pe
from vigil.native import _nrv, _unpack_aplib, _unpack_petite, _unpack_wwpack, _unpack_yc

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
# ClamAV's samples: the exact images libclamav rebuilds

REBUILT = {
    "clam-upx.exe": [("upx", "3b03bc19b1f39587a0650c7b6fe35d38")],
    "clam-wwpack.exe": [("wwpack", "7b8cd3dd6a198ec191afce0206665d2d")],
    "clam-petite.exe": [("petite", "8a2bf11929515746f3df244a4ac91c7c")],
    "clam-yc.exe": [
        ("yc", "8822fca1f7b0cb5506f15f8088956197"),
        ("upx", "3b03bc19b1f39587a0650c7b6fe35d38"),
    ],
}


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
