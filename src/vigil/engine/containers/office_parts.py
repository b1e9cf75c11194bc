"""What lies inside OLE2 streams: VBA projects (MS-OVBA), Word 6 macros, OLE1 native
objects, PowerPoint's compressed embedded objects, MSO and HWP5 zlib streams.

Each parser takes bytes already read from the compound file and returns plain data;
every loop is bounded by the input length or a fixed record count, and damaged input
gives what could be decoded.
"""

from __future__ import annotations

import codecs
import logging
import struct
import zlib
from dataclasses import dataclass

from vigil.native import _office

__all__ = [
    "VbaModule",
    "decode_codepage",
    "hwp5_flags",
    "inflate",
    "mso_payload",
    "ole10_payload",
    "ppt_objects",
    "vba_decompress",
    "vba_modules",
    "vba_normalize",
    "word6_macros",
    "xls_images",
]

log = logging.getLogger(__name__)

MAX_RECORDS = 100_000  # dir records, PowerPoint records, Word 6 macro-table entries
MAX_MODULES = 10_000
DIR_LIMIT = 16 << 20  # a decompressed VBA dir stream is a few KiB in practice
_INFLATE_STEP = 1 << 16


def inflate(data: bytes, limit: int, wbits: int = zlib.MAX_WBITS) -> bytes:
    """At most ``limit`` + 1 bytes of a zlib (or, with ``wbits`` < 0, raw deflate) stream;
    a damaged stream gives the bytes decoded before the damage (hence the slices)."""
    dec = zlib.decompressobj(wbits)
    out: list[bytes] = []
    total = 0
    try:
        for pos in range(0, len(data), _INFLATE_STEP):
            chunk = dec.decompress(data[pos : pos + _INFLATE_STEP], limit + 1 - total)
            out.append(chunk)
            total += len(chunk)
            if total > limit or dec.eof:
                break
    except zlib.error as exc:
        log.debug("inflate: %s", exc)
    return b"".join(out)


# --------------------------------------------------------------------------- VBA (MS-OVBA)


def vba_decompress(data: bytes, offset: int, limit: int) -> bytes:
    """An MS-OVBA CompressedContainer from ``offset``; b"" when there is none there."""
    if not 0 <= offset < len(data):
        return b""
    try:
        return _office.ovba_decompress(data, offset, limit)
    except ValueError as exc:
        log.debug("vba: %s", exc)
        return b""


def vba_normalize(source: bytes, limit: int) -> bytes:
    """VBA source as libclamav matches it: lower case outside strings, blanks collapsed,
    line continuations joined."""
    return _office.vba_normalize(source, limit)


@dataclass(slots=True)
class VbaModule:
    """One module of a VBA project dir stream."""

    name: str = ""
    stream: str = ""  # the stream holding it, in the same storage as "dir"
    offset: int = 0  # where its compressed source starts in that stream


def decode_codepage(raw: bytes, codepage: int) -> str:
    """Text in a VBA project's code page (Latin-1 when Python does not know it)."""
    try:
        codec = codecs.lookup(f"cp{codepage}").name
    except LookupError:
        codec = "latin-1"
    return raw.decode(codec, "replace")


def vba_modules(dir_data: bytes) -> tuple[list[VbaModule], int]:
    """The modules a decompressed dir stream lists, and the project's code page.

    Records are (id, size, data); PROJECTVERSION (0x0009) alone declares a size of 4 for
    its 6 bytes of data. Parsing stops at the terminator (0x0010) or at damage."""
    modules: list[VbaModule] = []
    codepage = 1252
    current: VbaModule | None = None
    pos = 0
    end = len(dir_data)
    for _ in range(MAX_RECORDS):
        if pos + 6 > end:
            break
        rid, size = struct.unpack_from("<HI", dir_data, pos)
        pos += 6
        if rid == 0x0009:
            size = 6
        if size > end - pos:
            break
        body = dir_data[pos : pos + size]
        pos += size
        if rid == 0x0010:
            break
        if rid == 0x0003 and size == 2:
            codepage = struct.unpack("<H", body)[0]
        elif rid == 0x0019:
            if len(modules) >= MAX_MODULES:
                break
            current = VbaModule(name=decode_codepage(body, codepage))
            modules.append(current)
        elif current is None:
            continue
        elif rid == 0x0047 and size:
            current.name = body.decode("utf-16-le", "replace")
        elif rid == 0x001A and not current.stream:
            current.stream = decode_codepage(body, codepage)
        elif rid == 0x0032 and size:
            current.stream = body.decode("utf-16-le", "replace")
        elif rid == 0x0031 and size == 4:
            current.offset = struct.unpack("<I", body)[0]
        elif rid == 0x002B:
            current = None
    return [m for m in modules if m.stream], codepage


# --------------------------------------------------------------------------- Word 6 macros


def word6_macros(doc: bytes, limit: int) -> list[bytes]:
    """Word 6/95 (WordBasic) macros from a WordDocument stream, XOR-decoded.

    The FIB at 0x118 gives the macro table's offset and length; the table is a sequence
    of typed records, of which 0x01 lists the macros (24 bytes each: key at 1, length at
    12, offset at 20). libclamav reads it from any WordDocument stream, so does this."""
    if len(doc) < 0x120:
        return []
    offset, length = struct.unpack_from("<II", doc, 0x118)
    if length == 0 or offset >= len(doc):
        return []
    end = min(offset + length, len(doc))
    pos = offset + 1
    entries: list[tuple[int, int, int]] = []

    def u8(at: int) -> int | None:
        return doc[at] if at < len(doc) else None

    def u16(at: int) -> int | None:
        return struct.unpack_from("<H", doc, at)[0] if at + 2 <= len(doc) else None

    for _ in range(MAX_RECORDS):
        if pos >= end:
            break
        rid = doc[pos]
        pos += 1
        if rid == 0x01:
            count = u16(pos)
            if not count or pos + 2 + count * 24 > len(doc):
                break
            for i in range(count):
                at = pos + 2 + i * 24
                key = doc[at + 1]
                size, _state, where = struct.unpack_from("<3I", doc, at + 12)
                entries.append((key, size, where))
            break
        if rid == 0x03:
            first = u8(pos)
            if first is None:
                break
            pos += 1 + first * 14
            second = u8(pos)
            if second is None:
                break
            pos += 1
            if second == 0:
                pair = doc[pos : pos + 2]
                if len(pair) < 2:
                    break
                if pair[0] != 2:
                    continue
                second = pair[1]
                pos += 2
            if second:
                pos += second * 4 + 1
        elif rid == 0x05:
            count = u16(pos)
            if count is None:
                break
            pos += 2 + count * 12
        elif rid == 0x10:
            size = u16(pos)
            if size is None:
                break
            pos += 2
            unicode = size == 0xFFFF
            if unicode:
                size = u16(pos)
                if size is None:
                    break
                pos += 2
            if size and size < 0x8000:  # libclamav reads one name whatever the size
                n = u8(pos)
                if n is None:
                    break
                pos += 1 + (n * 2 + 1 if unicode else n) + 2
        elif rid == 0x11:
            count = u16(pos)
            if count is None:
                break
            pos += 2
            for _i in range(count):
                n = u8(pos + 2)
                if n is None:
                    break
                pos += 3 + n + 1
        else:  # 0x40 end, 0x12 and anything unknown
            break
    out = []
    for key, size, where in entries:
        if size == 0 or where + size > len(doc):
            continue  # libclamav drops a macro it cannot read whole
        body = doc[where : where + min(size, limit + 1)]
        if key:
            body = body.translate(bytes(b ^ key for b in range(256)))
        out.append(body)
    return out


# --------------------------------------------------------------------------- OLE1 objects


def ole10_payload(stream: bytes) -> bytes | None:
    """The file an "\\x01Ole10Native" stream wraps.

    Layout: total size (u32), then when the stream holds the whole object: a type word,
    NUL-terminated label and source path, 8 bytes, a NUL-terminated temporary path and the
    payload size (u32) before the payload. A stream shorter than its declared size holds
    the payload right after the first word (libclamav's reading)."""
    if len(stream) < 4:
        return None
    (total,) = struct.unpack_from("<I", stream)
    pos = 4
    size = total
    if len(stream) - total >= 4:
        pos += 2  # format id
        for skip in (0, 0, 8):  # label, source path, 8 bytes then the temporary path
            nul = stream.find(b"\x00", pos + skip)
            if nul < 0:
                return None
            pos = nul + 1
        if pos + 4 > len(stream):
            return None
        (size,) = struct.unpack_from("<I", stream, pos)
        pos += 4
    return stream[pos : pos + size]


# --------------------------------------------------------------------------- PowerPoint


def ppt_objects(stream: bytes, limit: int) -> list[tuple[int, bytes]]:
    """Embedded OLE objects (ExOleObjStg, record type 0x1011) among the top-level records
    of a "PowerPoint Document" stream, with the offset of each.

    Instance 1 means compressed: a 4-byte decompressed size then a zlib stream; instance 0
    holds the compound file as it is. The walk ends, as libclamav's, at a record of
    length 0 (never a top-level record of a real presentation)."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    end = len(stream)
    for _ in range(MAX_RECORDS):
        if pos + 8 > end:
            break
        verinst, rtype, length = struct.unpack_from("<HHI", stream, pos)
        if length == 0:
            break
        pos += 8
        if rtype == 0x1011 and length >= 4:
            body = stream[pos : pos + length]
            if verinst >> 4 == 1 or body[4:5] == b"\x78":
                obj = inflate(body[4:], limit)
            else:
                obj = body[: limit + 1]
            if obj:
                out.append((pos + 4, obj))
        pos += length
    return out


# --------------------------------------------------------------------------- zlib streams


def mso_payload(stream: bytes, limit: int) -> bytes | None:
    """An MSO stream (4-byte size, then zlib with the default header 78 9C) inflated;
    None for other streams."""
    if len(stream) < 6 or stream[4:6] != b"\x78\x9c":
        return None
    return inflate(stream[4:], limit)


HWP5_SIGNATURE = b"HWP Document File"
HWP5_COMPRESSED = 0x1
HWP5_PASSWORD = 0x2
HWP5_PACKED = ("bin", "jscriptversion", "defaultjscript", "section", "viewtext", "docinfo")


def hwp5_flags(file_header: bytes) -> int | None:
    """The flags of an HWP 5 "FileHeader" stream (32-byte signature, version, flags);
    None when the stream is not one."""
    if not file_header.startswith(HWP5_SIGNATURE) or len(file_header) < 40:
        return None
    return int(struct.unpack_from("<I", file_header, 36)[0])


# --------------------------------------------------------------------------- Excel pictures

_BIFF_DRAWING_GROUP = 0x00EB
_BIFF_CONTINUE = 0x003C
_BIFF_EOF = 0x000A
_ART_DGG = 0xF000
_ART_BSTORE = 0xF001
_ART_FBSE = 0xF007
_FBSE_SIZE = 36  # btWin32, btMacOS, rgbUid[16], tag, size, cRef, foDelay, 4 bytes + cbName
_METAFILE_BLIPS = (0xF01A, 0xF01B, 0xF01C)  # EMF, WMF, PICT: a 34-byte metafile header
_BITMAP_BLIPS = (0xF01D, 0xF01E, 0xF01F, 0xF029, 0xF02A)  # JPEG, PNG, DIB, TIFF, JPEG


def _drawing_group(workbook: bytes) -> bytes:
    """The MSODRAWINGGROUP record data of a BIFF8 workbook stream, continuations joined.

    The drawing group belongs to the workbook globals, so the walk ends at their EOF
    record instead of going through every cell record of every sheet."""
    parts: list[bytes] = []
    pos = 0
    previous = -1
    for _ in range(MAX_RECORDS):
        if pos + 4 > len(workbook):
            break
        opcode, length = struct.unpack_from("<HH", workbook, pos)
        if opcode == _BIFF_EOF:
            break
        body = workbook[pos + 4 : pos + 4 + length]
        pos += 4 + length
        if opcode == _BIFF_DRAWING_GROUP or (
            opcode == _BIFF_CONTINUE and previous == _BIFF_DRAWING_GROUP and parts
        ):
            parts.append(body)
        if opcode != _BIFF_CONTINUE:
            previous = opcode
    return b"".join(parts)


def _art_header(data: bytes, pos: int) -> tuple[int, int, int, int] | None:
    """(version, instance, type, length) of an OfficeArt record header at ``pos``."""
    if pos + 8 > len(data):
        return None
    verinst, rtype, length = struct.unpack_from("<HHI", data, pos)
    return verinst & 0xF, verinst >> 4, rtype, length


def _blip_image(data: bytes, pos: int, end: int) -> bytes | None:
    """The picture inside a BLIP record at ``pos``: after one or two 16-byte UIDs (an odd
    instance has two) and a one-byte tag, or a 34-byte header for metafiles."""
    head = _art_header(data, pos)
    if head is None:
        return None
    _, instance, rtype, length = head
    if rtype in _METAFILE_BLIPS:
        skip = 16 * (1 + (instance & 1)) + 34
    elif rtype in _BITMAP_BLIPS:
        skip = 16 * (1 + (instance & 1)) + 1
    else:
        return None
    start = pos + 8 + skip
    if start > end:
        return None
    return data[start : start + min(length, end - start)]


def xls_images(workbook: bytes, limit: int) -> list[bytes]:
    """Pictures stored in a workbook's drawing group (libclamav scans them: PNG, JPEG and
    the other BLIP kinds of its blip store)."""
    data = _drawing_group(workbook)
    head = _art_header(data, 0)
    if head is None or head[0] != 0xF or head[2] != _ART_DGG:
        return []
    out: list[bytes] = []
    pos = 8
    for _ in range(MAX_RECORDS):
        head = _art_header(data, pos)
        if head is None:
            break
        ver, _, rtype, length = head
        if ver == 0xF and rtype == _ART_BSTORE:
            end = min(pos + 8 + length, len(data))
            at = pos + 8
            for _ in range(MAX_RECORDS):
                entry = _art_header(data, at)
                if entry is None or at >= end:
                    break
                if entry[2] == _ART_FBSE and at + 8 + _FBSE_SIZE <= end:
                    (size,) = struct.unpack_from("<I", data, at + 8 + 20)
                    name_len = data[at + 8 + 33]
                    blip = at + 8 + _FBSE_SIZE + name_len
                    image = _blip_image(data, blip, min(end, blip + size))
                elif 0xF018 <= entry[2] <= 0xF117:
                    image = _blip_image(data, at, end)
                else:
                    image = None
                if image:
                    out.append(image[: limit + 1])
                at += 8 + entry[3]
        pos += 8 + length
    return out
