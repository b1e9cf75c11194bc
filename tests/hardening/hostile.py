"""Hostile files, built on the spot: bombs, absurd headers, huge object graphs, odd file kinds.

Nothing here is live malware: the only "virus" is the EICAR test string. Builders return
bytes (or create a special file) so that the tests and ``bench/hardening.py`` scan exactly the
same objects. Sizes are chosen so the whole set builds in a few seconds while still
exceeding every configured limit by far (see ``LIMITS``).
"""

from __future__ import annotations

import bz2
import io
import lzma
import os
import random
import shutil
import socket
import struct
import subprocess
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_HDB = "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n"

MiB = 1 << 20
BOMB = 128 * MiB  # what one bomb expands to: over 6 x MaxFileSize below
MAX_SCAN_TIME_MS = 10000

# The limits both daemons get (clamd.conf spelling); every bomb exceeds them by far.
LIMITS: tuple[tuple[str, str], ...] = (
    ("MaxScanTime", str(MAX_SCAN_TIME_MS)),
    ("MaxFileSize", "20M"),
    ("MaxScanSize", "80M"),
    ("MaxFiles", "2000"),
    ("MaxRecursion", "16"),
    ("MaxDirectoryRecursion", "20"),
    ("StreamMaxLength", "25M"),
    ("MaxThreads", "4"),
    ("CommandReadTimeout", "5"),
    ("SelfCheck", "0"),
)
MAX_FILE_SIZE = 20 * MiB
DEEP_DIRS = 1000


# --------------------------------------------------------------------------- streams


def zeros_then_eicar(total: int) -> Iterator[bytes]:
    """``total`` bytes of zeros with EICAR as the very last bytes, in 1 MiB pieces."""
    left = total - len(EICAR)
    block = bytes(MiB)
    while left > 0:
        n = min(left, MiB)
        yield block[:n]
        left -= n
    yield EICAR


def compress_stream(comp: object, pieces: Iterator[bytes]) -> bytes:
    """Feed ``pieces`` to a compressor with compress()/flush() (zlib, bz2, lzma, zstd)."""
    out = [comp.compress(p) for p in pieces]  # type: ignore[attr-defined]
    out.append(comp.flush())  # type: ignore[attr-defined]
    return b"".join(out)


def crc_of(pieces: Iterator[bytes]) -> tuple[int, int]:
    crc = size = 0
    for p in pieces:
        crc = zlib.crc32(p, crc)
        size += len(p)
    return crc, size


def gzip_bomb() -> bytes:
    return compress_stream(zlib.compressobj(9, zlib.DEFLATED, 31), zeros_then_eicar(BOMB))


def bzip2_bomb() -> bytes:
    return compress_stream(bz2.BZ2Compressor(9), zeros_then_eicar(BOMB))


def xz_bomb() -> bytes:
    return compress_stream(lzma.LZMACompressor(preset=1), zeros_then_eicar(BOMB))


def zstd_bomb() -> bytes:
    import zstandard

    return compress_stream(zstandard.ZstdCompressor().compressobj(), zeros_then_eicar(BOMB))


# --------------------------------------------------------------------------- ZIP


@dataclass
class RawMember:
    """One member for ``raw_zip``: already compressed, described by its header fields."""

    name: bytes
    method: int
    data: bytes
    crc: int
    size: int
    flags: int = 0


def raw_zip(members: list[RawMember], *, shared_local: bool = False) -> bytes:
    """A ZIP written field by field, so methods zipfile cannot write (Deflate64) and
    structures it refuses (every central entry naming one local entry) can be built."""
    out = bytearray()
    offsets: list[int] = []
    for i, m in enumerate(members):
        if shared_local and i:
            offsets.append(offsets[0])
            continue
        offsets.append(len(out))
        out += struct.pack(
            "<IHHHHHIIIHH",
            0x04034B50,
            20,
            m.flags,
            m.method,
            0,
            0x21,
            m.crc,
            len(m.data),
            m.size,
            len(m.name),
            0,
        )
        out += m.name + m.data
    cd_start = len(out)
    for m, off in zip(members, offsets, strict=True):
        out += struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            0x031E,
            20,
            m.flags,
            m.method,
            0,
            0x21,
            m.crc,
            len(m.data),
            m.size,
            len(m.name),
            0,
            0,
            0,
            0,
            0o100644 << 16,
            off,
        )
        out += m.name
    cd_size = len(out) - cd_start
    count = min(len(members), 0xFFFF)
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, cd_size, cd_start, 0)
    return bytes(out)


def zip_streamed(method: int, name: str = "bomb.bin") -> bytes:
    """A single-member ZIP bomb written through zipfile's streaming writer."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z, z.open(name, "w", force_zip64=True) as f:
        for piece in zeros_then_eicar(BOMB):
            f.write(piece)
    return buf.getvalue()


def zip_deflate_bomb() -> bytes:
    return zip_streamed(zipfile.ZIP_DEFLATED)


def zip_bzip2_bomb() -> bytes:
    return zip_streamed(zipfile.ZIP_BZIP2)


def zip_lzma_bomb() -> bytes:
    return zip_streamed(zipfile.ZIP_LZMA)


def zip_deflate64_bomb() -> bytes:
    import inflate64

    d = inflate64.Deflater()
    data = b"".join(d.deflate(p) for p in zeros_then_eicar(BOMB)) + d.flush()
    crc, size = crc_of(zeros_then_eicar(BOMB))
    return raw_zip([RawMember(b"bomb.bin", 9, data, crc, size)])


def nested_zip_bomb(levels: int = 5, width: int = 16) -> bytes:
    """42.zip in small: ``width`` copies of the level below, ``levels`` deep, over a
    16 MiB member (16**5 * 16 MiB = 16 TiB expanded)."""
    kernel_pieces = list(zeros_then_eicar(16 * MiB))
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    kernel = compress_stream(comp, iter(kernel_pieces))
    crc, size = crc_of(iter(kernel_pieces))
    data = raw_zip([RawMember(b"0.bin", 8, kernel, crc, size)])
    for level in range(levels):
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        packed = c.compress(data) + c.flush()
        crc = zlib.crc32(data)
        data = raw_zip(
            [
                RawMember(f"{level}-{i}.zip".encode(), 8, packed, crc, len(data))
                for i in range(width)
            ]
        )
    return data


def overlapping_zip(entries: int = 4000) -> bytes:
    """Fifield's overlapping-files bomb: every central entry names the same local entry."""
    pieces = list(zeros_then_eicar(8 * MiB))
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    packed = compress_stream(c, iter(pieces))
    crc, size = crc_of(iter(pieces))
    members = [RawMember(f"f{i}".encode(), 8, packed, crc, size) for i in range(entries)]
    return raw_zip(members, shared_local=True)


def self_containing_zip() -> bytes:
    """The overlapping variant of a zip quine: one stored member whose data runs from just
    after its local header to the end of the file, so the member holds the central
    directory and end record of the archive that holds it (its CRC cannot be right: the
    CRC would have to cover itself)."""
    name = b"self.zip"
    head = 30 + len(name)
    cd_size = 46 + len(name)
    data_len = cd_size + 22
    local = struct.pack(
        "<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0x21, 0, data_len, data_len, len(name), 0
    )
    central = struct.pack(
        "<IHHHHHHIIIHHHHHII",
        0x02014B50,
        0x031E,
        20,
        0,
        0,
        0,
        0x21,
        0,
        data_len,
        data_len,
        len(name),
        0,
        0,
        0,
        0,
        0o100644 << 16,
        0,
    )
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, cd_size, head, 0)
    return local + name + central + name + end


def deep_nested_zip(depth: int = 1000) -> bytes:
    data = EICAR
    for level in range(depth):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
            z.writestr("eicar.com" if level == 0 else f"l{level}.zip", data)
        data = buf.getvalue()
    return data


def deep_nested_gzip(depth: int = 1000) -> bytes:
    data = EICAR
    for _ in range(depth):
        c = zlib.compressobj(1, zlib.DEFLATED, 31)
        data = c.compress(data) + c.flush()
    return data


def many_members_zip(count: int = 100_000) -> bytes:
    """100 k one-byte stored members (EICAR as the last one)."""
    members = [RawMember(b"m%06d" % i, 0, b"x", zlib.crc32(b"x"), 1) for i in range(count - 1)]
    members.append(RawMember(b"last.com", 0, EICAR, zlib.crc32(EICAR), len(EICAR)))
    return raw_zip(members)


def named_members_zip(names: list[bytes]) -> bytes:
    return raw_zip([RawMember(n, 0, EICAR, zlib.crc32(EICAR), len(EICAR)) for n in names])


def traversal_zip(token: str) -> bytes:
    return named_members_zip(
        [
            f"../../../../../../tmp/vigil-escape-{token}".encode(),
            f"/tmp/vigil-abs-{token}".encode(),
            b"..\\..\\..\\windows\\x.com",
        ]
    )


def traversal_tar(token: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name in (f"../../../../tmp/vigil-tar-{token}", f"/tmp/vigil-tarabs-{token}"):
            info = tarfile.TarInfo(name)
            info.size = len(EICAR)
            t.addfile(info, io.BytesIO(EICAR))
        link = tarfile.TarInfo("evil-link")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        t.addfile(link)
    return buf.getvalue()


def bad_utf8_zip() -> bytes:
    return named_members_zip([b"\xff\xfe\xc3(bad-\xed\xa0\x80.com", b"ok/\x80\x81.txt"])


# --------------------------------------------------------------------------- 7z, CAB


def seven_zip_bomb() -> bytes | None:
    """A 7z of 128 MiB of zeros (needs the 7z program; None when it is missing)."""
    exe = shutil.which("7z") or shutil.which("7za") or shutil.which("7zr")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "bomb.bin"
        with open(src, "wb") as f:
            for piece in zeros_then_eicar(BOMB):
                f.write(piece)
        out = Path(d) / "bomb.7z"
        subprocess.run(
            [exe, "a", "-mx1", "-bd", str(out), str(src)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )
        return out.read_bytes()


def cab_bomb(total: int = BOMB) -> bytes:
    """A Microsoft cabinet with one MSZIP folder of 32 KiB blocks of zeros (EICAR last)."""
    block_in = 32768
    blocks = []
    left = total
    while left > 0:
        n = min(block_in, left)
        raw = bytes(n) if left > n or n < len(EICAR) else bytes(n - len(EICAR)) + EICAR
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        packed = b"CK" + c.compress(raw) + c.flush()
        blocks.append(struct.pack("<IHH", 0, len(packed), n) + packed)
        left -= n
    name = b"bomb.bin\0"
    header_size = 36
    folder_size = 8
    file_size = 16 + len(name)
    data_off = header_size + folder_size + file_size
    body = b"".join(blocks)
    cab_size = data_off + len(body)
    header = struct.pack(
        "<4sIIIIIBBHHHHH",
        b"MSCF",
        0,
        cab_size,
        0,
        header_size + folder_size,
        0,
        3,
        1,
        1,
        1,
        0,
        0,
        0,
    )
    folder = struct.pack("<IHH", data_off, len(blocks), 1)
    cfile = struct.pack("<IIHHHH", total, 0, 0, 0x5A21, 0, 0x20) + name
    return header + folder + cfile + body


# --------------------------------------------------------------------------- executables


def pe_header(nsections: int, sections: list[tuple[int, int, int, int]], entry: int) -> bytes:
    """A PE32 with ``nsections`` in its file header and the given (vaddr, vsize, raw_off,
    raw_size) section headers actually present."""
    dos = b"MZ" + b"\0" * 58 + struct.pack("<I", 0x40)
    coff = struct.pack("<4sHHIIIHH", b"PE\0\0", 0x14C, nsections, 0, 0, 0, 0xE0, 0x0102)
    opt = bytearray(0xE0)
    struct.pack_into("<H", opt, 0, 0x10B)
    struct.pack_into("<I", opt, 16, entry)
    struct.pack_into("<III", opt, 28, 0x400000, 0x1000, 0x200)
    struct.pack_into("<II", opt, 56, 0x7FFFFFFF, 0x200)
    struct.pack_into("<H", opt, 68, 2)
    struct.pack_into("<I", opt, 92, 16)
    # an import directory far past the end of the file
    struct.pack_into("<II", opt, 96 + 8, 0x7FFF0000, 0x1000)
    secs = b"".join(
        struct.pack("<8sIIIIIIHHI", b".s%d" % (i % 100), vs, va, rs, ro, 0, 0, 0, 0, 0xE0000020)
        for i, (va, vs, ro, rs) in enumerate(sections)
    )
    return dos + coff + bytes(opt) + secs + b"\xcc" * 512


def pe_huge_section_count() -> bytes:
    return pe_header(0xFFFF, [(0x1000, 0x1000, 0x200, 0x200)] * 3, 0x1000)


def pe_sections_past_eof() -> bytes:
    return pe_header(
        8, [(0x1000 * (i + 1), 0x10000000, 0x7FFFFF00, 0x7FFFFFFF) for i in range(8)], 0xFFFFFFF0
    )


def pe_overlapping_sections() -> bytes:
    """65535 real section headers, all covering the same bytes and the same addresses."""
    return pe_header(0xFFFF, [(0x1000, 0x100000, 0x0, 0x100000)] * 0xFFFF, 0x1000)


def elf_header(phoff: int, phnum: int, shoff: int, shnum: int, tail: bytes = b"") -> bytes:
    ident = b"\x7fELF\x02\x01\x01" + b"\0" * 9
    hdr = ident + struct.pack(
        "<HHIQQQIHHHHHH",
        2,
        0x3E,
        1,
        0x401000,
        phoff,
        shoff,
        0,
        64,
        56,
        phnum,
        64,
        shnum,
        0xFFFE,
    )
    return hdr + tail


def elf_absurd_counts() -> bytes:
    return elf_header(64, 0xFFFF, 0xFFFFFFFFFFFF, 0xFFFF, b"\0" * 256)


def elf_overlapping_segments() -> bytes:
    ph = struct.pack("<IIQQQQQQ", 1, 5, 0, 0x400000, 0x400000, 1 << 40, 1 << 40, 0x1000)
    sh = struct.pack("<IIQQQQIIQQ", 1, 1, 6, 0x401000, 0, 1 << 40, 0, 0, 16, 0)
    count = 4096
    tail = ph * count
    return elf_header(64, count, 64 + len(tail), count, tail + sh * count)


def macho_absurd() -> bytes:
    """64-bit Mach-O: 2**32-1 load commands claimed, a segment with 2**32-1 sections, and a
    zero-sized command (a naive walker loops forever on it)."""
    hdr = struct.pack("<IiiIIIII", 0xFEEDFACF, 0x01000007, 3, 2, 0xFFFFFFFF, 0xFFFFFFF0, 0, 0)
    seg = struct.pack(
        "<II16sQQQQiiII", 0x19, 72, b"__TEXT", 0, 1 << 40, 1 << 40, 1 << 40, 7, 5, 0xFFFFFFFF, 0
    )
    zero = struct.pack("<II", 0x2, 0)
    return hdr + seg + zero + b"\0" * 64


def macho_fat_absurd() -> bytes:
    arch = struct.pack(">iiIII", 0x01000007, 3, 0x7FFFFFF0, 0x7FFFFFFF, 12)
    return struct.pack(">II", 0xCAFEBABE, 20) + arch * 20 + b"\0" * 64


# --------------------------------------------------------------------------- PDF, mail, HTML


def pdf_objects(count: int = 100_000) -> bytes:
    parts = [b"%PDF-1.4\n"]
    for i in range(1, count + 1):
        parts.append(b"%d 0 obj\n<< /Type /Node /Next %d 0 R /V (%d) >>\nendobj\n" % (i, i + 1, i))
    parts.append(
        b"%d 0 obj\n<< /Length 68 >>\nstream\n" % (count + 1) + EICAR + b"\nendstream\nendobj\n"
    )
    parts.append(b"trailer\n<< /Root 1 0 R /Size %d >>\n%%%%EOF\n" % (count + 2))
    return b"".join(parts)


def pdf_deep_kids(depth: int = 50_000) -> bytes:
    """A /Pages tree 50 k levels deep whose last node points back to the root (a cycle)."""
    parts = [b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"]
    for i in range(2, depth + 2):
        kid = i + 1 if i < depth + 1 else 2
        parts.append(
            b"%d 0 obj\n<< /Type /Pages /Kids [%d 0 R] /Parent %d 0 R /Count 1 >>\nendobj\n"
            % (i, kid, max(2, i - 1))
        )
    parts.append(b"trailer\n<< /Root 1 0 R >>\n%%EOF\n")
    return b"".join(parts)


def pdf_cycles_and_filter_bomb() -> bytes:
    """Reference cycles, a /Length that refers to itself, and a stream FlateDecoded three
    times over that expands to 128 MiB."""
    data = compress_stream(zlib.compressobj(9), zeros_then_eicar(BOMB))
    for _ in range(2):
        data = zlib.compress(data, 9)
    objs = [
        b"1 0 obj\n<< /Type /Catalog /Pages 2 0 R /Next 3 0 R >>\nendobj\n",
        b"2 0 obj\n<< /Type /Pages /Kids [2 0 R 3 0 R] /Parent 3 0 R >>\nendobj\n",
        b"3 0 obj\n<< /A 1 0 R /B 2 0 R /C 3 0 R >>\nendobj\n",
        b"4 0 obj\n<< /Length 4 0 R >>\nstream\n" + b"A" * 100 + b"\nendstream\nendobj\n",
        b"5 0 obj\n<< /Length %d /Filter [/FlateDecode /FlateDecode /FlateDecode] >>\nstream\n"
        % len(data)
        + data
        + b"\nendstream\nendobj\n",
        b"6 0 obj\n<< /Type /ObjStm /N 1000000000 /First 999999999 /Length 10 >>\nstream\n"
        b"0123456789\nendstream\nendobj\n",
    ]
    return b"%PDF-1.5\n" + b"".join(objs) + b"trailer\n<< /Root 1 0 R >>\n%%EOF\n"


def mail_many_parts(parts: int = 10_000) -> bytes:
    out = [
        b"From: a@example.com\nTo: b@example.com\nSubject: parts\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="B"\n\npreamble\n'
    ]
    for i in range(parts - 1):
        out.append(b"--B\nContent-Type: text/plain\n\npart %d\n" % i)
    out.append(
        b"--B\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
    )
    import base64

    out.append(base64.encodebytes(EICAR) + b"--B--\n")
    return b"".join(out)


def mail_deep_nesting(depth: int = 1000) -> bytes:
    out = [b"From: a@example.com\nMIME-Version: 1.0\n"]
    for i in range(depth):
        out.append(b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i))
    out.append(b"Content-Type: text/plain\n\n" + EICAR + b"\n")
    for i in reversed(range(depth)):
        out.append(b"--b%d--\n" % i)
    return b"".join(out)


def nested_html(size: int = 10 * MiB) -> bytes:
    head = b"<html><body>"
    unit = b"<div><span><b>"
    n = (size - len(head)) // len(unit)
    return head + unit * n + EICAR


# --------------------------------------------------------------------------- corrupt


def small_samples() -> dict[str, bytes]:
    """One well-formed small file per format, each carrying EICAR, to truncate and corrupt."""
    out: dict[str, bytes] = {}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.txt", b"hello " * 200)
        z.writestr("eicar.com", EICAR)
    out["zip"] = buf.getvalue()
    out["gz"] = compress_stream(zlib.compressobj(9, zlib.DEFLATED, 31), iter([b"a" * 500, EICAR]))
    out["bz2"] = bz2.compress(b"a" * 500 + EICAR)
    out["xz"] = lzma.compress(b"a" * 500 + EICAR)
    tbuf = io.BytesIO()
    with tarfile.open(fileobj=tbuf, mode="w") as t:
        info = tarfile.TarInfo("eicar.com")
        info.size = len(EICAR)
        t.addfile(info, io.BytesIO(EICAR))
    out["tar"] = tbuf.getvalue()
    out["cab"] = cab_bomb(70_000)
    out["pdf"] = pdf_objects(20)
    out["mail"] = mail_many_parts(5)
    out["html"] = b"<html><body><script>" + EICAR + b"</script></body></html>"
    out["pe"] = pe_header(2, [(0x1000, 0x200, 0x200, 0x200)] * 2, 0x1000) + EICAR
    out["elf"] = elf_header(64, 1, 0, 0, struct.pack("<IIQQQQQQ", 1, 5, 0, 0, 0, 400, 400, 8))
    out["elf"] += EICAR
    return out


def truncated_and_corrupt() -> dict[str, bytes]:
    rng = random.Random(7)
    out: dict[str, bytes] = {}
    for fmt, data in small_samples().items():
        out[f"{fmt}-truncated"] = data[: max(8, len(data) // 2)]
        out[f"{fmt}-headonly"] = data[:4]
        bad = bytearray(data)
        for _ in range(12):
            pos = rng.randrange(min(len(bad), 64))
            bad[pos] = rng.randrange(256)
        out[f"{fmt}-corrupt"] = bytes(bad)
    return out


# --------------------------------------------------------------------------- the catalogue


@dataclass(frozen=True)
class Case:
    """One hostile object: ``make(dir)`` creates it and returns the path to SCAN."""

    name: str
    make: Callable[[Path], Path]
    root_only_skip: bool = False  # meaningless when the scanner runs as root


def _file(name: str, builder: Callable[[], bytes | None]) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        data = builder()
        if data is None:
            raise FileNotFoundError(f"{name}: the tool to build it is missing")
        p = d / name
        p.write_bytes(data)
        return p

    return make


def _fifo(d: Path) -> Path:
    p = d / "fifo"
    os.mkfifo(p)
    return p


def _fifo_in_dir(d: Path) -> Path:
    sub = d / "fifodir"
    sub.mkdir()
    os.mkfifo(sub / "pipe")
    (sub / "eicar.com").write_bytes(EICAR)
    return sub


def _devzero_link(d: Path) -> Path:
    p = d / "zero-link"
    p.symlink_to("/dev/zero")
    return p


def _devices_in_dir(d: Path) -> Path:
    sub = d / "devdir"
    sub.mkdir()
    (sub / "zero").symlink_to("/dev/zero")
    (sub / "null").symlink_to("/dev/null")
    (sub / "eicar.com").write_bytes(EICAR)
    return sub


def _dev_null(_d: Path) -> Path:
    return Path("/dev/null")


def _unreadable(d: Path) -> Path:
    p = d / "unreadable.com"
    p.write_bytes(EICAR)
    p.chmod(0)
    return p


def _socket_file(d: Path) -> Path:
    """A file nobody can open(), not even root: a bound Unix socket's inode."""
    p = d / "sockfile"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(p))
    s.close()
    return p


def _dangling(d: Path) -> Path:
    p = d / "dangling"
    p.symlink_to(d / "does-not-exist")
    return p


def _sparse(d: Path) -> Path:
    p = d / "sparse-2g"
    with open(p, "wb") as f:
        f.truncate(2 << 30)
        f.seek((2 << 30) - len(EICAR))
        f.write(EICAR)
    return p


def _bad_utf8_name(d: Path) -> Path:
    sub = d / "utf8dir"
    sub.mkdir()
    (sub / os.fsdecode(b"\xff\xfe\xc3(bad-\xed\xa0\x80.com")).write_bytes(EICAR)
    return sub


def _deep_dirs(d: Path) -> Path:
    top = d / "deepdirs"
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(DEEP_DIRS):  # os.makedirs recurses once per level
            os.mkdir("d", dir_fd=fd)
            sub = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = sub
        leaf = os.open("eicar.com", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(leaf, EICAR)
        os.close(leaf)
    finally:
        os.close(fd)
    return top


def remove_tree(top: Path) -> None:
    """Remove a tree deeper than shutil.rmtree's and os.walk's recursion allows."""
    stack = [str(top)]
    while stack:
        path = stack[-1]
        subdirs = []
        with os.scandir(path) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append(entry.path)
                else:
                    os.unlink(entry.path)
        if subdirs:
            stack.extend(subdirs)
        else:
            os.rmdir(path)
            stack.pop()


def cases(token: str, *, full: bool = True) -> list[Case]:
    """Every hostile case; ``token`` makes path-traversal targets unique to this run.
    ``full=False`` builds the nested HTML at 3 MiB instead of 10 (its scan time grows with
    its size whatever MaxScanTime says: see the tests)."""
    html_size = 10 * MiB if full else 3 * MiB
    out = [
        Case("gzip-bomb", _file("bomb.gz", gzip_bomb)),
        Case("bzip2-bomb", _file("bomb.bz2", bzip2_bomb)),
        Case("xz-bomb", _file("bomb.xz", xz_bomb)),
        Case("zstd-bomb", _file("bomb.zst", zstd_bomb)),
        Case("zip-deflate-bomb", _file("deflate.zip", zip_deflate_bomb)),
        Case("zip-deflate64-bomb", _file("deflate64.zip", zip_deflate64_bomb)),
        Case("zip-bzip2-bomb", _file("bzip2.zip", zip_bzip2_bomb)),
        Case("zip-lzma-bomb", _file("lzma.zip", zip_lzma_bomb)),
        Case("7z-bomb", _file("bomb.7z", seven_zip_bomb)),
        Case("cab-bomb", _file("bomb.cab", cab_bomb)),
        Case("nested-42-zip", _file("42.zip", nested_zip_bomb)),
        Case("overlapping-zip", _file("overlap.zip", overlapping_zip)),
        Case("self-containing-zip", _file("self.zip", self_containing_zip)),
        Case("zip-1000-deep", _file("deep.zip", deep_nested_zip)),
        Case("gzip-1000-deep", _file("deep.gz", deep_nested_gzip)),
        Case("dirs-1000-deep", _deep_dirs),
        Case("zip-100k-members", _file("many.zip", many_members_zip)),
        Case("pe-65535-sections", _file("sections.exe", pe_huge_section_count)),
        Case("pe-past-eof", _file("pasteof.exe", pe_sections_past_eof)),
        Case("pe-overlapping", _file("overlap.exe", pe_overlapping_sections)),
        Case("elf-absurd-counts", _file("counts.elf", elf_absurd_counts)),
        Case("elf-overlapping", _file("overlap.elf", elf_overlapping_segments)),
        Case("macho-absurd", _file("absurd.macho", macho_absurd)),
        Case("macho-fat-absurd", _file("fat.macho", macho_fat_absurd)),
        Case("pdf-100k-objects", _file("objects.pdf", pdf_objects)),
        Case("pdf-deep-kids", _file("kids.pdf", pdf_deep_kids)),
        Case("pdf-cycles-filter-bomb", _file("cycles.pdf", pdf_cycles_and_filter_bomb)),
        Case("mail-10k-parts", _file("parts.eml", mail_many_parts)),
        Case("mail-1000-deep", _file("deep.eml", mail_deep_nesting)),
        Case("html-nested", _file("nested.html", lambda: nested_html(html_size))),
        Case("zip-path-traversal", _file("traversal.zip", lambda: traversal_zip(token))),
        Case("tar-path-traversal", _file("traversal.tar", lambda: traversal_tar(token))),
        Case("zip-bad-utf8-names", _file("badnames.zip", bad_utf8_zip)),
        Case("file-bad-utf8-name", _bad_utf8_name),
        Case("fifo", _fifo),
        Case("fifo-in-dir", _fifo_in_dir),
        Case("dev-zero-symlink", _devzero_link),
        Case("devices-in-dir", _devices_in_dir),
        Case("dev-null", _dev_null),
        Case("unreadable-chmod-000", _unreadable, root_only_skip=True),
        Case("socket-file", _socket_file),
        Case("dangling-symlink", _dangling),
        Case("sparse-2gb", _sparse),
    ]
    for name, data in truncated_and_corrupt().items():
        out.append(Case(name, _file(name, lambda data=data: data)))  # type: ignore[misc]
    return out
