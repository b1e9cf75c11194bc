"""Office unpackers: OLE2 streams and what libclamav extracts from them (VBA, OLE1
objects, PowerPoint objects, Word 6 macros, MSO and HWP 5 streams), OneNote embedded
files, the encryption check; hostile compound files end quickly with bounded output.

The compound files are built here by a small MS-CFB writer; the payload is a harmless
marker found by an .ndb signature.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import struct
import subprocess
import time
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import UNIT
from vigil.engine.containers import extract
from vigil.engine.containers.child import Child
from vigil.engine.containers.office import is_encrypted_ole2
from vigil.engine.containers.office_onenote import FILE_DATA_STORE, ONE_MAGIC, PACKAGING_FORMAT
from vigil.engine.containers.office_parts import vba_normalize
from vigil.engine.database import load_database
from vigil.engine.filetype import FileType
from vigil.engine.scanner import Engine, ScanOptions
from vigil.native import _office

MARKER = b"VIGIL_OFFICE_TEST_MARKER_7f3a9c"
FREE, END, FATSECT, DIFSECT = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD, 0xFFFFFFFC
LIMIT = 1 << 20


# --------------------------------------------------------------------------- writers


def build_ole2(
    files: dict[str, bytes],
    *,
    shift: int = 9,
    extra_fat: int = 0,
    cutoff: int = 4096,
) -> bytes:
    """A compound file holding ``files`` ("storage/stream" paths): small streams in the
    mini stream, siblings chained through their right links, DIFAT sectors when the FAT
    needs more than the header's 109 slots (``extra_fat`` adds empty FAT sectors)."""
    ss = 1 << shift
    per = ss // 4
    entries: list[dict[str, object]] = [{"name": "Root Entry", "type": 5, "kids": []}]
    where: dict[tuple[str, ...], int] = {(): 0}

    def kids(i: int) -> list[int]:
        out = entries[i]["kids"]
        assert isinstance(out, list)
        return out

    for path, data in files.items():
        parts = tuple(path.split("/"))
        for n in range(1, len(parts)):
            if parts[:n] not in where:
                where[parts[:n]] = len(entries)
                entries.append({"name": parts[n - 1], "type": 1, "kids": []})
                kids(where[parts[: n - 1]]).append(where[parts[:n]])
        kids(where[parts[:-1]]).append(len(entries))
        entries.append({"name": parts[-1], "type": 2, "kids": [], "data": data})

    mini = bytearray()
    minifat: list[int] = []
    big: list[dict[str, object]] = []
    for e in entries:
        blob = e.get("data")
        if not isinstance(blob, bytes):
            continue
        if len(blob) < cutoff:
            n = math.ceil(len(blob) / 64)
            e["start"] = len(minifat) if n else END
            minifat += [len(minifat) + k + 1 for k in range(n - 1)] + [END] * bool(n)
            mini += blob + b"\0" * (-len(blob) % 64)
        else:
            big.append(e)

    def sectors(blob: bytes | bytearray) -> int:
        return math.ceil(len(blob) / ss)

    n_dir = sectors(b"\0" * 128 * len(entries))
    minifat_blob = struct.pack(f"<{len(minifat)}I", *minifat)
    big_data = [e["data"] for e in big]
    regions = [n_dir, sectors(minifat_blob), sectors(mini)]
    regions += [sectors(d) for d in big_data if isinstance(d, bytes)]
    n_data = sum(regions)
    f = 1
    while True:
        d = max(0, math.ceil((f + extra_fat - 109) / (per - 1)))
        if (f + extra_fat) * per >= n_data + f + extra_fat + d:
            break
        f += 1
    f += extra_fat
    d = max(0, math.ceil((f - 109) / (per - 1)))
    fat = [FATSECT] * f + [DIFSECT] * d
    starts = []
    for count in regions:
        starts.append(len(fat) if count else END)
        fat += [len(fat) + k + 1 for k in range(count - 1)] + [END] * bool(count)
    fat += [FREE] * (f * per - len(fat))
    dir_start, minifat_start, mini_start = starts[:3]
    for e, s in zip(big, starts[3:], strict=True):
        e["start"] = s
    entries[0]["start"] = mini_start
    entries[0]["size"] = len(mini)

    for i in range(len(entries)):  # siblings chained through their right links
        ks = kids(i)
        for a, b in zip(ks, ks[1:], strict=False):
            entries[a]["right"] = b

    def entry(i: int) -> bytes:
        e = entries[i]
        name = str(e["name"]).encode("utf-16-le") + b"\0\0"
        ks = kids(i)
        data = e.get("data")
        size = len(data) if isinstance(data, bytes) else int(e.get("size", 0))  # type: ignore[call-overload]
        return struct.pack(
            "<64sHBB3I16sI16sIII",
            name,
            len(name),
            e["type"],
            1,
            FREE,
            e.get("right", FREE),
            ks[0] if ks else FREE,
            b"",
            0,
            b"",
            e.get("start", END),
            size,
            0,
        )

    dir_blob = b"".join(entry(i) for i in range(len(entries)))
    difat = list(range(f))
    difat_sectors = []
    rest = difat[109:]
    for k in range(d):
        chunk = rest[k * (per - 1) : (k + 1) * (per - 1)]
        chunk += [FREE] * (per - 1 - len(chunk))
        chunk.append(f + k + 1 if k < d - 1 else END)
        difat_sectors.append(struct.pack(f"<{per}I", *chunk))
    head_difat = (difat[:109] + [FREE] * 109)[:109]
    header = struct.pack(
        "<8s16sHHHHH6sIIIIIIIII109I",
        bytes.fromhex("d0cf11e0a1b11ae1"),
        b"",
        0x3E,
        4 if shift == 12 else 3,
        0xFFFE,
        shift,
        6,
        b"",
        n_dir if shift == 12 else 0,
        f,
        dir_start,
        0,
        cutoff,
        minifat_start,
        sectors(minifat_blob),
        f if d else END,
        d,
        *head_difat,
    )
    header += b"\0" * (max(512, ss) - len(header))

    def pad(blob: bytes | bytearray) -> bytes:
        return bytes(blob) + b"\0" * (-len(blob) % ss)

    body = struct.pack(f"<{len(fat)}I", *fat) + b"".join(difat_sectors)
    body += pad(dir_blob) + pad(minifat_blob) + pad(mini)
    for stream in big_data:
        body += pad(stream) if isinstance(stream, bytes) else b""
    return header + body


def ovba_literal(source: bytes) -> bytes:
    """An MS-OVBA container with literal tokens only (a flag byte before every 8)."""
    out = bytearray(b"\x01")
    for c in range(0, len(source), 3640):
        chunk = source[c : c + 3640]
        body = bytearray()
        for g in range(0, len(chunk), 8):
            body += b"\x00" + chunk[g : g + 8]
        out += struct.pack("<H", 0xB000 | (len(body) + 2 - 3)) + body
    return bytes(out)


def dir_stream(modules: list[tuple[str, str, int]]) -> bytes:
    """A VBA project "dir" stream listing (module name, stream name, source offset)."""

    def rec(rid: int, body: bytes) -> bytes:
        return struct.pack("<HI", rid, len(body)) + body

    out = rec(0x0001, struct.pack("<I", 1)) + rec(0x0003, struct.pack("<H", 1252))
    out += rec(0x0004, b"VBAProject") + struct.pack("<HIIH", 0x0009, 4, 1, 2)
    out += rec(0x000F, struct.pack("<H", len(modules))) + rec(0x0013, b"\xff\xff")
    for name, stream, offset in modules:
        out += rec(0x0019, name.encode()) + rec(0x0047, name.encode("utf-16-le"))
        out += rec(0x001A, stream.encode()) + rec(0x0032, stream.encode("utf-16-le"))
        out += rec(0x0031, struct.pack("<I", offset)) + rec(0x0021, b"") + rec(0x002B, b"")
    return out + rec(0x0010, b"")


def vba_document(source: bytes, offset: int = 20) -> bytes:
    module = b"\xcc" * offset + ovba_literal(source)
    return build_ole2(
        {
            "WordDocument": b"\xec\xa5" + b"\0" * 0x200,
            "Macros/VBA/dir": ovba_literal(dir_stream([("Module1", "Module1", offset)])),
            "Macros/VBA/Module1": module,
            "Macros/VBA/_VBA_PROJECT": b"\xcc\x61" + b"\0" * 5,
        }
    )


def ppt_record(rtype: int, body: bytes, verinst: int = 0) -> bytes:
    return struct.pack("<HHI", verinst, rtype, len(body)) + body


def ppt_document(obj: bytes) -> bytes:
    stream = ppt_record(0x03E8, b"\0" * 40, 0x000F)
    stream += ppt_record(0x1011, struct.pack("<I", len(obj)) + zlib.compress(obj), 0x0010)
    stream += ppt_record(0x0FF5, b"\0" * 28)
    return build_ole2({"PowerPoint Document": stream, "Current User": b"\0" * 44})


def ole10_native(payload: bytes) -> bytes:
    inner = b"\x02\x00" + b"label.txt\0" + b"C:\\src\\label.txt\0" + b"\0\0\x03\0"
    temp = b"C:\\tmp\\label.txt\0"
    inner += struct.pack("<I", len(temp)) + temp + struct.pack("<I", len(payload)) + payload
    return struct.pack("<I", len(inner)) + inner


def word6_document(macro: bytes, key: int) -> bytes:
    table_at = 0x200
    macro_at = 0x300
    table = b"\xff" + b"\x01" + struct.pack("<H", 1)
    table += bytes([1, key]) + b"\0" * 10 + struct.pack("<III", len(macro), 0, macro_at)
    doc = bytearray(0x400 + len(macro))
    doc[0:2] = b"\xec\xa5"
    doc[0x118:0x120] = struct.pack("<II", table_at, len(table) + 1)
    doc[table_at : table_at + len(table) + 1] = table + b"\x40"
    doc[macro_at : macro_at + len(macro)] = bytes(b ^ key for b in macro)
    return build_ole2({"WordDocument": bytes(doc)})


def art(verinst: int, rtype: int, body: bytes) -> bytes:
    return struct.pack("<HHI", verinst, rtype, len(body)) + body


def xls_document(image: bytes) -> bytes:
    """A workbook whose drawing group stores ``image`` as a PNG BLIP (inside an FBSE
    entry), the drawing group split between MSODRAWINGGROUP and a CONTINUE record."""
    blip = art(0x6E00, 0xF01E, b"\x11" * 16 + b"\xff" + image)
    fbse = art(
        0x0062,
        0xF007,
        bytes([6, 6])
        + b"\x22" * 16
        + struct.pack("<HIIIBBBB", 0, len(blip), 1, 0, 0, 0, 0, 0)
        + blip,
    )
    group = art(0x000F, 0xF000, art(0x0000, 0xF006, b"\0" * 16) + art(0x001F, 0xF001, fbse))
    half = len(group) // 2

    def biff(opcode: int, body: bytes) -> bytes:
        return struct.pack("<HH", opcode, len(body)) + body

    book = biff(0x0809, b"\0" * 16) + biff(0x00EB, group[:half]) + biff(0x003C, group[half:])
    return build_ole2({"Workbook": book + biff(0x000A, b"")})


def compact_u64(value: int) -> bytes:
    for size in range(1, 8):
        if value < 1 << (7 * size):
            return ((value << size) | (1 << (size - 1))).to_bytes(size, "little")
    return b"\x80" + value.to_bytes(8, "little")


def onenote_store(payload: bytes) -> bytes:
    head = ONE_MAGIC + b"\x11" * 32 + bytes.fromhex("3fdd9a101b91f549a5d01791edc8aed8")
    blob = FILE_DATA_STORE + struct.pack("<QIQ", len(payload), 0, 0) + payload
    return head + b"\0" * 100 + blob + b"\0" * 64


def onenote_packaged(payload: bytes) -> bytes:
    head = ONE_MAGIC + b"\x11" * 32 + PACKAGING_FORMAT
    item = compact_u64(len(payload)) + payload
    if len(item) < 0x7FFF:
        blob = struct.pack("<I", len(item) << 17 | 2 << 3 | 2) + item
    else:
        blob = struct.pack("<I", 0x7FFF << 17 | 2 << 3 | 2) + compact_u64(len(item)) + item
    return head + b"\x12\x00\x01" * 10 + b"\0" * 50 + blob + b"\0" * 64


# --------------------------------------------------------------------------- helpers


def children(ftype: FileType, data: bytes, limit: int = LIMIT) -> list[Child]:
    return list(extract(ftype, data, limit))


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    db = tmp_path / "office.ndb"
    db.write_text(f"Vigil.Test.Office:0:*:{MARKER.hex()}\n")
    return Engine(load_database([db]))


def found(engine: Engine, data: bytes) -> list[str]:
    return engine.scan(data, ScanOptions()).names


PAYLOAD = b"harmless payload: " + MARKER + b"\n" * 40


# --------------------------------------------------------------------------- OLE2


@pytest.mark.parametrize("shift", [9, 12])
def test_every_stream_by_path(shift: int) -> None:
    files = {
        "small": b"s" * 100,
        "big": bytes(range(256)) * 40,
        "Storage/Inner/\x01Ole": b"x" * 20,
        "Storage/\x05SummaryInformation": b"y" * 5000,
        "empty": b"",
    }
    got = {c.name: c.data for c in children(FileType.MSOLE2, build_ole2(files, shift=shift))}
    assert got == {
        "small": files["small"],
        "big": files["big"],
        "Storage/Inner/_1_Ole": files["Storage/Inner/\x01Ole"],
        "Storage/_5_SummaryInformation": files["Storage/\x05SummaryInformation"],
        "empty": b"",
    }


def test_difat_beyond_109_fat_sectors() -> None:
    data = build_ole2({"a": MARKER * 200, "b": b"tiny"}, extra_fat=130)
    got = {c.name: c.data for c in children(FileType.MSOLE2, data)}
    assert got == {"a": MARKER * 200, "b": b"tiny"}


def test_msi_names_are_unpacked() -> None:
    # "Binary.x" and the table marker, packed as MSI packs them
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz._"

    def pack(s: str) -> str:
        out = [
            chr(0x3800 + alphabet.index(s[i]) + (alphabet.index(s[i + 1]) << 6))
            for i in range(0, len(s) - 1, 2)
        ]
        if len(s) % 2:
            out.append(chr(0x4800 + alphabet.index(s[-1])))
        return "".join(out)

    data = build_ole2({pack("Data1.cab"): b"MSCF" + b"\0" * 60, "\u4840" + pack("File"): b"t"})
    assert sorted(c.name for c in children(FileType.MSOLE2, data)) == ["!File", "Data1.cab"]


def test_oversized_stream_is_cut() -> None:
    data = build_ole2({"big": b"z" * 50_000})
    (child,) = children(FileType.MSOLE2, data, limit=10_000)
    assert child.oversized and child.data == b"z" * 10_000


def test_ole10_native_payload(engine: Engine) -> None:
    data = build_ole2({"ObjectPool/_1/\x01Ole10Native": ole10_native(PAYLOAD)})
    kids = children(FileType.MSOLE2, data)
    assert [c.name for c in kids] == [
        "ObjectPool/_1/_1_Ole10Native/payload",
        "ObjectPool/_1/_1_Ole10Native",
    ]
    assert kids[0].data == PAYLOAD
    assert found(engine, data) == ["Vigil.Test.Office.UNOFFICIAL"]


def test_vba_module_source(engine: Engine) -> None:
    source = (
        b'Attribute VB_Name = "Module1"\r\nSub  AutoOpen()\r\n  X = "'
        + MARKER
        + b'"\r\nEnd Sub\r\n'
    )
    data = vba_document(source * 3)
    assert MARKER not in data
    kids = {c.name: c for c in children(FileType.MSOLE2, data)}
    module = kids["Macros/VBA/Module1/vba"]
    assert module.data == source * 3 and module.ftype is FileType.MSOLE2
    project = kids["Macros/VBA/vba_project"]
    assert project.ftype is FileType.SCRIPT
    assert b'sub autoopen()\r\n x = "' + MARKER + b'"' in project.data
    assert found(engine, data) == ["Vigil.Test.Office.UNOFFICIAL"]


def test_powerpoint_embedded_object(engine: Engine) -> None:
    inner = build_ole2({"\x01Ole10Native": ole10_native(PAYLOAD)})
    data = ppt_document(inner)
    assert MARKER not in data
    kids = children(FileType.MSOLE2, data)
    embedded = [c for c in kids if c.name.startswith("PowerPoint Document/ppt")]
    assert [c.data for c in embedded] == [inner]
    assert found(engine, data) == ["Vigil.Test.Office.UNOFFICIAL"]


def test_word6_macro(engine: Engine) -> None:
    data = word6_document(PAYLOAD, key=0x5A)
    assert MARKER not in data
    kids = {c.name: c.data for c in children(FileType.MSOLE2, data)}
    assert kids["WordDocument/macro1"] == PAYLOAD
    assert found(engine, data) == ["Vigil.Test.Office.UNOFFICIAL"]


def test_mso_stream(engine: Engine) -> None:
    data = build_ole2({"Attachment": struct.pack("<I", len(PAYLOAD)) + zlib.compress(PAYLOAD)})
    assert MARKER not in data
    assert found(engine, data) == ["Vigil.Test.Office.UNOFFICIAL"]


def test_hwp5_compressed_stream(engine: Engine) -> None:
    header = b"HWP Document File".ljust(32, b"\0") + struct.pack("<II", 0x05000300, 1)
    deflate = zlib.compressobj(wbits=-15)
    packed = deflate.compress(PAYLOAD * 100) + deflate.flush()
    data = build_ole2({"FileHeader": header.ljust(256, b"\0"), "BodyText/Section0": packed})
    kids = {c.name: c.data for c in children(FileType.MSOLE2, data)}
    assert kids["BodyText/Section0"] == PAYLOAD * 100
    assert found(engine, data) == ["Vigil.Test.Office.UNOFFICIAL"]


def test_excel_pictures(engine: Engine) -> None:
    image = b"\x89PNG\r\n\x1a\n" + PAYLOAD
    data = xls_document(image)
    kids = {c.name: c.data for c in children(FileType.MSOLE2, data)}
    assert kids["Workbook/image1"] == image
    assert found(engine, data) == ["Vigil.Test.Office.UNOFFICIAL"]


def test_excel_pictures_of_clamav_sample() -> None:
    data = (UNIT / "other_scanfiles" / "has_png_and_jpeg.xls").read_bytes()
    images = [c.data for c in children(FileType.MSOLE2, data) if "/image" in c.name]
    assert [hashlib.sha256(i).hexdigest() for i in images] == [
        "4b947f2c5a9bff880100adc319690ab0da05792951e7355d76dfee1da17bb674",
        "b5c25a21cb9a59489c0629a14a06b492181d166c956e4244bb3da91476f39ecf",
    ]


def test_clean_document_is_clean(engine: Engine) -> None:
    assert found(engine, vba_document(b"Sub Foo()\r\nEnd Sub\r\n")) == []


# --------------------------------------------------------------------------- OneNote


@pytest.mark.parametrize("build", [onenote_store, onenote_packaged], ids=["store", "packaged"])
@pytest.mark.parametrize("size", [1, 544, 40_000])
def test_onenote_embedded_file(build: Callable[[bytes], bytes], size: int) -> None:
    payload = (PAYLOAD * (size // len(PAYLOAD) + 1))[:size]
    kids = children(FileType.ONENOTE, build(payload))
    assert [c.data for c in kids] == [payload]


def test_onenote_found(engine: Engine) -> None:
    assert found(engine, onenote_packaged(PAYLOAD)) == ["Vigil.Test.Office.UNOFFICIAL"]
    assert found(engine, onenote_store(PAYLOAD)) == ["Vigil.Test.Office.UNOFFICIAL"]


def test_onenote_truncated_and_oversized() -> None:
    data = onenote_store(PAYLOAD * 100)
    for cut in range(0, len(data), 97):
        children(FileType.ONENOTE, data[:cut])
    (child,) = children(FileType.ONENOTE, data, limit=100)
    assert child.oversized and len(child.data) == 100
    absurd = ONE_MAGIC + b"\0" * 64 + FILE_DATA_STORE + struct.pack("<QIQ", 1 << 62, 0, 0) + b"x"
    assert [c.data for c in children(FileType.ONENOTE, absurd)] == [b"x"]


# --------------------------------------------------------------------------- encryption


def _fib(flags: int) -> bytes:
    return struct.pack("<HH6xH", 0xA5EC, 0xC1, flags) + b"\0" * 0x200


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"WordDocument": _fib(0x0100)}, True),
        ({"WordDocument": _fib(0x0200)}, False),
        ({"EncryptionInfo": b"\x04\0\x04\0", "EncryptedPackage": b"\0" * 5000}, True),
        (
            {
                "Workbook": struct.pack("<HH", 0x0809, 4)
                + b"\0" * 4
                + struct.pack("<HH", 0x2F, 6)
                + b"\0" * 6
            },
            True,
        ),
        (
            {"Workbook": struct.pack("<HH", 0x0809, 4) + b"\0" * 4 + struct.pack("<HH", 0x0A, 0)},
            False,
        ),
        (
            {
                "Current User": struct.pack("<HHII", 0, 0x0FF6, 20, 20)
                + struct.pack("<I", 0xF3D1C4DF)
                + b"\0" * 24
            },
            True,
        ),
        (
            {
                "Current User": struct.pack("<HHII", 0, 0x0FF6, 20, 20)
                + struct.pack("<I", 0xE391C05F)
                + b"\0" * 24
            },
            False,
        ),
    ],
    ids=["word", "word-clear", "ooxml", "excel", "excel-clear", "ppt", "ppt-clear"],
)
def test_is_encrypted_ole2(files: dict[str, bytes], expected: bool) -> None:
    assert is_encrypted_ole2(build_ole2(files)) is expected


def test_is_encrypted_ole2_on_clamav_samples(scanfiles: Path) -> None:
    samples = sorted((UNIT / "other_scanfiles" / "ole2_encryption").iterdir())
    assert samples
    for sample in samples:
        assert is_encrypted_ole2(sample.read_bytes()), sample.name
    for clean in ("clam.ole.doc", "clam.ppt"):
        assert not is_encrypted_ole2((scanfiles / clean).read_bytes())
    assert not is_encrypted_ole2(b"not an ole2 file")


# --------------------------------------------------------------------------- the decoders


def test_ovba_spec_vectors() -> None:
    plain = bytes.fromhex(
        "0119b00061626364656667680069 6a6b6c6d6e6f70 0071727374757 62e".replace(" ", "")
    )
    assert _office.ovba_decompress(plain, 0, 100) == b"abcdefghijklmnopqrstuv."
    packed = bytes.fromhex(
        "012fb00023616161626364658266007061676869"
        "6a01380861 6b6c00306d6e6f700671027004107273747576107778797a003c".replace(" ", "")
    )
    out = b"#aaabcdefaaaaghijaaaaaklaaamnopqaaaaaaaaaaaarstuvwxyzaaa"
    assert _office.ovba_decompress(packed, 0, 1000) == out
    assert _office.ovba_decompress(packed, 0, 7) == out[:7]
    for cut in range(len(packed)):
        assert out.startswith(_office.ovba_decompress(packed[: cut + 1], 0, 1000))
    with pytest.raises(ValueError):
        _office.ovba_decompress(b"\x02abc", 0, 10)


def test_ovba_bomb_is_bounded() -> None:
    # every chunk: one literal then copy tokens of the longest length, repeated
    chunk = b"\xfea\xff\x0f"  # a literal, then a copy of 4098 bytes (cut at 4096)
    body = struct.pack("<H", 0xB000 | (len(chunk) - 1)) + chunk
    data = b"\x01" + body * 200_000
    start = time.perf_counter()
    out = _office.ovba_decompress(data, 0, 100_000)
    assert len(out) <= 100_000
    assert time.perf_counter() - start < 1


def test_vba_normalize() -> None:
    src = b'Sub  Foo()\r\n\tX = "KeepCase  Here" _\r\n  + 1\r\nEnd Sub'
    assert vba_normalize(src, 1000) == b'sub foo()\r\n x = "KeepCase  Here" + 1\r\nend sub'
    assert vba_normalize(src, 5) == b"sub f"


# --------------------------------------------------------------------------- bad input


def _bounded(ftype: FileType, data: bytes, limit: int = LIMIT, seconds: float = 3.0) -> list[Child]:
    """Unpack without an exception, within ``seconds``, never holding much more than a
    few children's worth of memory."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        total = 0
        kids = []
        for child in extract(ftype, data, limit):
            assert len(child.data) <= limit
            total += len(child.data)
            kids.append(Child(child.name, b"", child.oversized))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < seconds
    assert peak < 8 * limit + 4 * len(data) + (16 << 20)
    assert total <= 2 * len(data) + 2 * (limit + 1) + (64 << 20)
    return kids


def _sample_documents() -> list[bytes]:
    return [
        vba_document(b"Sub X()\r\nEnd Sub\r\n" * 50),
        ppt_document(build_ole2({"a": b"b" * 5000})),
        xls_document(b"\x89PNG\r\n\x1a\n" + b"p" * 3000),
        word6_document(b"macro" * 100, 7),
        build_ole2({"s": b"s" * 100, "Storage/b": b"b" * 9000}, shift=12),
    ]


@pytest.mark.parametrize("doc", range(5))
def test_truncated_everywhere(doc: int) -> None:
    data = _sample_documents()[doc]
    for cut in sorted({*range(0, 600, 7), *range(0, len(data), max(1, len(data) // 97))}):
        _bounded(FileType.MSOLE2, data[:cut])


@pytest.mark.parametrize("doc", range(5))
def test_corrupted_bytes(doc: int) -> None:
    data = bytearray(_sample_documents()[doc])
    for pos in range(24, len(data), max(1, len(data) // 200)):
        for value in (0x00, 0xFF, 0x7F):
            saved = data[pos]
            data[pos] = value
            _bounded(FileType.MSOLE2, bytes(data), seconds=2)
            data[pos] = saved


@pytest.mark.parametrize(
    ("offset", "fmt", "value"),
    [
        (30, "<H", 30),  # sector shift
        (30, "<H", 5),
        (32, "<H", 0),  # mini sector shift
        (32, "<H", 15),
        (44, "<I", 0xFFFFFFFF),  # FAT sector count
        (48, "<I", 0x7FFFFFFF),  # first directory sector
        (56, "<I", 0),  # mini stream cutoff
        (56, "<I", 0xFFFFFFFF),
        (60, "<I", 0xFFFFFFF0),  # first miniFAT sector
        (68, "<I", 0),  # DIFAT start with a huge count
        (72, "<I", 0xFFFFFFFF),
        (76, "<I", 0xFFFFFFFF),  # first FAT sector
    ],
)
def test_absurd_header_fields(offset: int, fmt: str, value: int) -> None:
    data = bytearray(vba_document(b"Sub X()\r\nEnd Sub\r\n"))
    struct.pack_into(fmt, data, offset, value)
    _bounded(FileType.MSOLE2, bytes(data))


def _dir_offset(data: bytes | bytearray, index: int) -> int:
    dir_start: int = struct.unpack_from("<I", data, 48)[0]
    return 512 + dir_start * 512 + 128 * index


def test_directory_loops_and_absurd_sizes() -> None:
    base = build_ole2({"A/b": b"x" * 5000, "A/c": b"y" * 100, "d": b"z" * 10})
    for index in range(1, 5):
        for field, value in (
            (76, 0),
            (76, index),
            (72, 0),
            (68, 0),
            (120, 0xFFFFFFFF),
            (116, 0xFFFFFFF0),
        ):
            data = bytearray(base)
            struct.pack_into("<I", data, _dir_offset(base, index) + field, value)
            _bounded(FileType.MSOLE2, bytes(data))


def test_fat_cycle_with_huge_declared_size() -> None:
    data = bytearray(build_ole2({"big": b"q" * 8192}))
    start = struct.unpack_from("<I", data, _dir_offset(data, 1) + 116)[0]
    fat_sector = struct.unpack_from("<I", data, 76)[0]
    last = start + 15
    struct.pack_into("<I", data, 512 + fat_sector * 512 + 4 * last, start)  # back to the start
    struct.pack_into("<I", data, _dir_offset(data, 1) + 120, 0xFFFFFFFF)
    (child,) = _bounded(FileType.MSOLE2, bytes(data), limit=1 << 20)
    got = [c for c in extract(FileType.MSOLE2, bytes(data), 1 << 20)][0]
    assert got.data == b"q" * 8192 and not child.oversized


def test_deep_and_wide_directories() -> None:
    deep = "/".join(["s"] * 300) + "/leaf"
    kids = _bounded(FileType.MSOLE2, build_ole2({deep: b"deep", "top": b"top"}))
    assert [c.name for c in kids] == ["top"]  # beyond 100 levels, as libclamav
    wide = build_ole2({f"S{i % 7}/stream{i}": bytes([i % 256]) * 10 for i in range(3000)})
    assert len(_bounded(FileType.MSOLE2, wide)) == 3000


def test_shared_sectors_do_not_amplify() -> None:
    # a thousand entries all pointing at the same 1 MiB chain
    base = bytearray(build_ole2({f"s{i}": b"" for i in range(1000)} | {"big": b"b" * (1 << 20)}))
    big = _dir_offset(base, 1001)
    start, size = struct.unpack_from("<II", base, big + 116)
    for i in range(1, 1001):
        struct.pack_into("<II", base, _dir_offset(base, i) + 116, start, size)
    kids = _bounded(FileType.MSOLE2, bytes(base), limit=4 << 20, seconds=5)
    assert len(kids) < 1001


def test_shared_sectors_do_not_amplify_parsers() -> None:
    # a thousand "PowerPoint Document" entries sharing one 4 MiB stream without objects
    files = {f"S{i}/PowerPoint Document": b"" for i in range(1000)}
    base = bytearray(build_ole2(files | {"big": b"\0" * (4 << 20)}))
    start, size = struct.unpack_from("<II", base, _dir_offset(base, 2001) + 116)
    for i in range(2, 2001, 2):
        struct.pack_into("<II", base, _dir_offset(base, i) + 116, start, size)
    _bounded(FileType.MSOLE2, bytes(base), limit=4 << 20, seconds=5)


@pytest.mark.parametrize("kind", ["ppt", "mso", "hwp", "onenote"])
def test_decompression_bombs(kind: str) -> None:
    bomb = b"\0" * (64 << 20)
    if kind == "ppt":
        data = ppt_document(bomb)
    elif kind == "mso":
        data = build_ole2({"x": struct.pack("<I", len(bomb)) + zlib.compress(bomb)})
    elif kind == "hwp":
        header = b"HWP Document File".ljust(32, b"\0") + struct.pack("<II", 0x05000300, 1)
        deflate = zlib.compressobj(9, wbits=-15)
        data = build_ole2(
            {"FileHeader": header, "BinData/Bin0001": deflate.compress(bomb) + deflate.flush()}
        )
    else:
        data = onenote_store(b"\0" * (8 << 20))
    kids = _bounded(FileType.ONENOTE if kind == "onenote" else FileType.MSOLE2, data, seconds=5)
    assert any(c.oversized for c in kids)


def test_not_ole2_at_all() -> None:
    for data in (
        b"",
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\xff" * 600,
    ):
        assert _bounded(FileType.MSOLE2, data) == []
    assert _bounded(FileType.ONENOTE, b"\xe4\x52" + b"\0" * 100) == []


# --------------------------------------------------------------------------- clamscan

CLAMSCAN = shutil.which("clamscan")
SAMPLES = [
    "clam.ole.doc",
    "clam.ppt",
    "clam.exe.2007.one",
    "clam.exe.2010.one",
    "clam.exe.webapp-export.one",
]


@pytest.mark.differential
@pytest.mark.skipif(CLAMSCAN is None, reason="Debian's clamscan is not installed")
@pytest.mark.parametrize("allmatch", [False, True], ids=["first", "allmatch"])
def test_samples_match_clamscan(scanfiles: Path, allmatch: bool) -> None:
    assert CLAMSCAN is not None
    db = UNIT / "clamav.hdb"
    files = [scanfiles / name for name in SAMPLES]
    cmd = [CLAMSCAN, "--no-summary", "--disable-cache", "--bytecode=no", "-d", str(db)]
    cmd += ["-z"] * allmatch + [str(f) for f in files]
    proc = subprocess.run(cmd, capture_output=True, timeout=300, check=False)
    theirs: dict[str, list[str]] = {str(f): [] for f in files}
    for line in proc.stdout.decode("latin-1").splitlines():
        path, _, verdict = line.rpartition(": ")
        if verdict.endswith(" FOUND"):
            theirs[path].append(verdict[: -len(" FOUND")])
    engine = Engine(load_database([db]))
    ours = {
        str(f): engine.scan(f.read_bytes(), ScanOptions(allmatch=allmatch)).names for f in files
    }
    assert ours == theirs
    assert all(theirs.values())


@pytest.mark.differential
@pytest.mark.skipif(CLAMSCAN is None, reason="Debian's clamscan is not installed")
def test_excel_picture_hash_matches_clamscan(tmp_path: Path) -> None:
    assert CLAMSCAN is not None
    sample = UNIT / "other_scanfiles" / "has_png_and_jpeg.xls"
    images = [c.data for c in children(FileType.MSOLE2, sample.read_bytes()) if "/image" in c.name]
    db = tmp_path / "png.hdb"
    db.write_text(f"{hashlib.md5(images[1]).hexdigest()}:{len(images[1])}:Vigil.Test.Png\n")
    cmd = [CLAMSCAN, "--no-summary", "--disable-cache", "--bytecode=no", "-d", str(db), str(sample)]
    proc = subprocess.run(cmd, capture_output=True, timeout=300, check=False)
    assert proc.stdout.decode().strip().endswith("Vigil.Test.Png.UNOFFICIAL FOUND")
    assert Engine(load_database([db])).scan(sample.read_bytes(), ScanOptions()).names == [
        "Vigil.Test.Png.UNOFFICIAL"
    ]
