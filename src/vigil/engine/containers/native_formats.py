"""ZIP, ARJ and SIS members, read with ``struct`` and decoded by zlib/bz2/lzma, inflate64
and the C decoders in vigil.native (implode, ARJ).

ZIP follows libclamav: the central directory gives the members, each read through its
local header (the local header's method and flags win; sizes come from the central
directory when a data descriptor follows the data), adjacent duplicates are extracted once
and more than five overlapping members (a non-recursive bomb) stop the extraction. Beyond
libclamav 1.4, local headers that the central directory does not list (or all of them,
when it is missing or broken) are recovered as libclamav 1.5 does, and zip64, data
descriptors without a central directory, LZMA and Zstandard are read.

Every decoder stops after ``limit + 1`` bytes, so a bomb costs at most that per member.
A ZIP member longer than the limit is cut as libclamav cuts it and scanned (not flagged
``oversized``: libclamav raises no MaxFileSize alert for it); ARJ and SIS members are
flagged. Damaged input yields the members (and member prefixes) that could be read, never
an exception. Member names are metadata only.
"""

from __future__ import annotations

import bz2
import importlib
import logging
import lzma
import struct
import zlib
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import inflate64

from vigil.engine.containers.child import Child
from vigil.engine.filetype import FileType
from vigil.native import _arj as arj_native
from vigil.native import _explode

__all__ = ["UNPACKERS", "unzip_single", "zip_overlapping_files"]

log = logging.getLogger(__name__)

try:  # optional (imported by name: it has no type stubs): Zstandard members are rare
    zstandard: Any = importlib.import_module("zstandard")
except ImportError:  # pragma: no cover - depends on the environment
    zstandard = None

MAX_MEMBERS = 100_000  # bounds the index built before extraction (memory)
MAX_PROBES = 200_000  # signatures tried per archive while indexing it (time)
NAME_MAX = 255  # libclamav matches .cdb names on at most 255 bytes
_CHUNK = 1 << 16  # compressed bytes fed per decoder call (bounds the output per call)
_CLAM_BLOCK = 8192  # libclamav's output buffer (BUFSIZ): it writes members in such blocks

# ---------------------------------------------------------------------------- ZIP

_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_END = struct.Struct("<4sHHHHIIH")
_END64_LOCATOR = struct.Struct("<4sIQI")
_END64 = struct.Struct("<4sQHHIIQQQQ")
_LOCAL_SIG = b"PK\x03\x04"
_CENTRAL_SIG = b"PK\x01\x02"
_END_SIG = b"PK\x05\x06"
_DESCRIPTOR_SIG = b"PK\x07\x08"
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_FULL32 = 0xFFFFFFFF

_ENCRYPTED = 0x0001
_DESCRIPTOR = 0x0008
_MASKED = 0x2000
_AES_EXTRA = 0x9901
_ZIP64_EXTRA = 0x0001
_OVERLAP_FUDGE = 2  # libclamav tolerates 2-byte overlaps (seen in real JARs)
_MAX_OVERLAPS = 5


class _Entry(NamedTuple):
    """One central directory record."""

    name: bytes
    flags: int
    method: int
    csize: int
    usize: int
    offset: int  # of the local header, in ``data``
    aes: bool


class _Member(NamedTuple):
    """A member read through its local header."""

    name: bytes
    offset: int  # local header
    start: int  # compressed data
    csize: int
    usize: int
    method: int
    flags: int
    aes: bool
    end: int  # where the next record may start (for the local header search)


class _Probes:
    """How many candidate signatures one archive may still try: a crafted file full of
    signatures costs a bounded amount of work before extraction starts."""

    def __init__(self, count: int = MAX_PROBES) -> None:
        self.left = count

    def take(self) -> bool:
        self.left -= 1
        return self.left >= 0


def _extra_fields(extra: bytes) -> dict[int, bytes]:
    """The first 64 extra fields by tag (real headers carry a few; the cap bounds the
    work a crafted 64 KB extra block costs)."""
    fields: dict[int, bytes] = {}
    pos = 0
    while pos + 4 <= len(extra) and len(fields) < 64:
        tag, size = struct.unpack_from("<HH", extra, pos)
        fields.setdefault(tag, extra[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return fields


def _zip64_sizes(field: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    """Replace the 0xFFFFFFFF fields that a zip64 extra field carries, in its order."""
    values = [v for (v,) in _U64.iter_unpack(field[: len(field) // 8 * 8])]
    out = []
    for value in (usize, csize, offset):
        if value == _FULL32 and values:
            value = values.pop(0)
        out.append(value)
    return out[0], out[1], out[2]


def _clean_name(raw: bytes) -> bytes:
    """The name as libclamav matches it: up to a NUL, at most 255 bytes."""
    return raw.split(b"\x00", 1)[0][:NAME_MAX]


def _find_central(data: bytes, probes: _Probes) -> tuple[int, int] | None:
    """(start of the central directory, shift to add to its offsets), searching the end
    of central directory record from the end of the data backwards (libclamav's order).

    The shift is non-zero for a ZIP given with bytes before it (offsets relative to the
    archive) or without the bytes it was written after (absolute offsets).
    """
    pos = len(data)
    while probes.take():
        end = data.rfind(_END_SIG, 0, pos)
        if end < 0:
            return None
        pos = end
        if end + _END.size - 2 > len(data):  # (libclamav does not need the comment length)
            continue
        record = data[end : end + _END.size].ljust(_END.size, b"\x00")
        _, _, _, _, count, size, offset, _ = _END.unpack(record)
        actual = end - size
        loc = end - _END64_LOCATOR.size
        if (offset == _FULL32 or size == _FULL32 or count == 0xFFFF) and loc >= 0:
            sig, _, end64, _ = _END64_LOCATOR.unpack_from(data, loc)
            if sig == b"PK\x06\x07":
                for at in (end64, loc - _END64.size):
                    if 0 <= at <= len(data) - _END64.size and data[at : at + 4] == b"PK\x06\x06":
                        fields = _END64.unpack_from(data, at)
                        size, offset = fields[8], fields[9]
                        actual = at - size
                        break
        for start in (offset, actual):
            if 0 <= start <= len(data) - _CENTRAL.size and data[start : start + 4] == _CENTRAL_SIG:
                return start, start - offset
    return None


def _central_entries(data: bytes, start: int, shift: int) -> list[_Entry]:
    """The records of the central directory, up to the first one that is not one."""
    entries: list[_Entry] = []
    pos = start
    size = len(data)
    while len(entries) < MAX_MEMBERS and pos + _CENTRAL.size <= size:
        fields = _CENTRAL.unpack_from(data, pos)
        if fields[0] != _CENTRAL_SIG:
            break
        flags, method, csize, usize = fields[3], fields[4], fields[8], fields[9]
        nlen, xlen, clen, offset = fields[10], fields[11], fields[12], fields[16]
        at = pos + _CENTRAL.size
        if at + nlen >= size:  # libclamav: the name must be followed by something
            break
        name = data[at : at + nlen]
        extras = _extra_fields(data[at + nlen : at + nlen + xlen])
        if _ZIP64_EXTRA in extras:
            usize, csize, offset = _zip64_sizes(extras[_ZIP64_EXTRA], usize, csize, offset)
        entries.append(
            _Entry(name, flags, method, csize, usize, offset + shift, _AES_EXTRA in extras)
        )
        pos = at + nlen + xlen + clen
        if pos > size:
            break
    return entries


def _descriptor_size(data: bytes, start: int, probes: _Probes) -> tuple[int, int]:
    """(csize, usize) of a member whose sizes follow its data and that no central
    directory describes: the first signed data descriptor whose size field matches its
    distance, else the data up to the next ZIP signature (usize unknown: -1)."""
    pos = data.find(_DESCRIPTOR_SIG, start)
    while pos >= 0 and probes.take():
        dist = pos - start
        if pos + 16 <= len(data) and _U32.unpack_from(data, pos + 8)[0] == dist:
            return dist, _U32.unpack_from(data, pos + 12)[0]
        if pos + 24 <= len(data) and _U64.unpack_from(data, pos + 8)[0] == dist:
            return dist, _U64.unpack_from(data, pos + 16)[0]
        pos = data.find(_DESCRIPTOR_SIG, pos + 1)
    ends = [p for p in (data.find(_LOCAL_SIG, start), data.find(_CENTRAL_SIG, start)) if p >= 0]
    return (min(ends) if ends else len(data)) - start, -1


def _local(data: bytes, offset: int, entry: _Entry | None, probes: _Probes) -> _Member | None:
    """The member whose local header is at ``offset``, or None (libclamav's checks: the
    signature, and a name and extra field that fit in the data)."""
    size = len(data)
    if offset < 0 or offset + _LOCAL.size > size:
        return None
    sig, _, flags, method, _, _, _, csize, usize, nlen, xlen = _LOCAL.unpack_from(data, offset)
    if sig != _LOCAL_SIG:
        return None
    at = offset + _LOCAL.size
    if size - at <= nlen or size - at - nlen <= xlen:
        return None
    name = data[at : at + nlen]
    extras = _extra_fields(data[at + nlen : at + nlen + xlen])
    start = at + nlen + xlen
    field = extras.get(_ZIP64_EXTRA, b"")
    if len(field) >= 16 and (usize == _FULL32 or csize == _FULL32):
        usize, csize = _U64.unpack_from(field, 0)[0], _U64.unpack_from(field, 8)[0]
    elif field:
        usize, csize, _ = _zip64_sizes(field, usize, csize, 0)
    aes = _AES_EXTRA in extras or bool(entry and entry.aes)
    if flags & _DESCRIPTOR:
        if entry is not None:
            csize, usize = entry.csize, entry.usize
        elif not csize:
            csize, usize = _descriptor_size(data, start, probes)
    end = start + csize
    if end > size:  # truncated, or a lie that would hide the headers after it
        end = start
    elif flags & _DESCRIPTOR:
        end += 16 if data[end : end + 4] == _DESCRIPTOR_SIG else 12
    return _Member(name, offset, start, csize, usize, method, flags, aes, min(end, size))


def _overlapping(members: list[_Member]) -> bool:
    """libclamav's non-recursive bomb check: more than five members overlapping the
    previous one (by local header offset), exact duplicates aside."""
    ordered = sorted(members, key=lambda m: m.offset)
    overlaps = 0
    for prev, cur in zip(ordered, ordered[1:], strict=False):
        # a member whose data would run past the end counts as its header only
        # (libclamav drops it)
        prev_end = min(prev.end, prev.start + prev.csize)
        if cur.offset + _OVERLAP_FUDGE < prev_end:
            overlaps += 1
            dup = (cur.offset, cur.start, cur.csize) == (prev.offset, prev.start, prev.csize)
            if not dup and overlaps > _MAX_OVERLAPS:
                return True
    return False


def _scan_local_headers(data: bytes, taken: list[_Member], probes: _Probes) -> list[_Member]:
    """Members whose local headers lie outside every member already known."""
    spans = sorted((m.offset, max(m.end, m.offset + 1)) for m in taken)
    gaps: list[tuple[int, int]] = []
    pos = 0
    for start, end in spans:
        if start > pos:
            gaps.append((pos, start))
        pos = max(pos, end)
    gaps.append((pos, len(data)))
    found: list[_Member] = []
    for lo, hi in gaps:
        at = data.find(_LOCAL_SIG, lo, hi)
        while at >= 0 and len(taken) + len(found) < MAX_MEMBERS and probes.take():
            member = _local(data, at, None, probes)
            if member is None:
                at = data.find(_LOCAL_SIG, at + 1, hi)
                continue
            found.append(member)
            at = data.find(_LOCAL_SIG, max(member.end, at + 1), hi)
    return found


def _feed(
    step: Callable[[memoryview, int], bytes], comp: memoryview, limit: int, done: Callable[[], bool]
) -> bytes:
    """Run a streaming decoder over ``comp`` in chunks until ``limit + 1`` bytes, its end
    or an error; what was decoded before an error is kept. ``step(chunk, room)`` returns
    at most ``room`` bytes; once it has returned that many, decoding stops, so input it
    held back is never needed."""
    out: list[bytes] = []
    have = 0
    for pos in range(0, len(comp), _CHUNK):
        try:
            piece = step(comp[pos : pos + _CHUNK], limit + 1 - have)
        except (zlib.error, OSError, ValueError, EOFError, lzma.LZMAError) as exc:
            log.debug("zip member: %s", exc)
            break
        out.append(piece)
        have += len(piece)
        if have > limit or done():
            break
    return b"".join(out)


def _inflate(comp: memoryview, limit: int) -> bytes:
    inflater = zlib.decompressobj(-15)

    def step(chunk: memoryview, room: int) -> bytes:
        return inflater.decompress(chunk, room)

    return _feed(step, comp, limit, lambda: inflater.eof)


def _inflate64(comp: memoryview, limit: int) -> bytes:
    """Deflate64 through ``inflate64``, which has no output bound: small input steps (at
    most ~26000 output bytes per input byte) keep each call's output near the limit."""
    inflater = inflate64.Inflater()
    out: list[bytes] = []
    have = 0
    pos = 0
    while pos < len(comp) and have <= limit and not inflater.eof:
        step = max(64, min(_CHUNK, (limit + 1 - have) // 32768))
        try:
            piece = inflater.inflate(bytes(comp[pos : pos + step]))
        except (ValueError, OSError, EOFError) as exc:
            log.debug("zip deflate64: %s", exc)
            break
        pos += step
        out.append(piece)
        have += len(piece)
    return b"".join(out)


def _bunzip2(comp: memoryview, limit: int) -> bytes:
    decoder = bz2.BZ2Decompressor()

    def step(chunk: memoryview, room: int) -> bytes:
        return decoder.decompress(chunk, max_length=room)

    return _feed(step, comp, limit, lambda: decoder.eof)


def _unlzma(comp: memoryview, usize: int, flags: int, limit: int) -> bytes:
    """ZIP's LZMA: 2 version bytes, a 2-byte properties size, 5 properties bytes and a raw
    LZMA stream, given to liblzma as an .lzma ("alone") stream with a dictionary no larger
    than the output we keep (so a huge declared dictionary costs nothing)."""
    if len(comp) < 9 or bytes(comp[2:4]) != b"\x05\x00":
        return b""
    dict_size = min(_U32.unpack_from(comp, 5)[0], max(1 << 12, limit + 1))
    known = -1 if flags & 0x0002 or usize < 0 else usize  # bit 1: end marker present
    header = bytes(comp[4:5]) + _U32.pack(dict_size) + struct.pack("<q", known)
    decoder = lzma.LZMADecompressor(lzma.FORMAT_ALONE, memlimit=max(64 << 20, 2 * dict_size))
    try:
        decoder.decompress(header)
    except lzma.LZMAError as exc:
        log.debug("zip lzma: %s", exc)
        return b""

    def step(chunk: memoryview, room: int) -> bytes:
        return decoder.decompress(chunk, max_length=room)

    return _feed(step, comp[9:], limit, lambda: decoder.eof)


def _unzstd(comp: memoryview, limit: int) -> bytes:
    if zstandard is None:
        log.debug("zip zstd: zstandard is not installed")
        return b""
    try:
        reader = zstandard.ZstdDecompressor(max_window_size=1 << 27).stream_reader(comp)
        out = bytearray()
        while len(out) <= limit:
            piece = reader.read(min(1 << 20, limit + 1 - len(out)))
            if not piece:
                break
            out += piece
        return bytes(out)
    except zstandard.ZstdError as exc:
        log.debug("zip zstd: %s", exc)
        return b""


def _decode(method: int, flags: int, comp: memoryview, usize: int, limit: int) -> bytes | None:
    """Up to ``limit + 1`` decoded bytes of a member; None for a method not supported."""
    if method == 0:
        return bytes(comp[: limit + 1])
    if method == 8:
        return _inflate(comp, limit)
    if method == 9:
        return _inflate64(comp, limit)
    if method == 12:
        return _bunzip2(comp, limit)
    if method == 14:
        return _unlzma(comp, usize, flags, limit)
    if method == 93:
        return _unzstd(comp, limit)
    if method == 6:
        return _explode.explode(comp, flags, max(usize, 0), limit + 1)
    return None


def _name(raw: bytes) -> str:
    return _clean_name(raw).decode("utf-8", "surrogateescape")


def _trim(out: bytes, method: int, limit: int) -> bytes:
    """A member cut as libclamav cuts one longer than MaxFileSize: stored data at the
    limit, decompressed data at the last whole 8 KiB output block within it. What is left
    is scanned like any member, with no MaxFileSize alert (libclamav 1.4)."""
    if len(out) <= limit:
        return out
    return out[:limit] if method == 0 else out[: limit - limit % _CLAM_BLOCK]


def _member_children(
    data: bytes, member: _Member, meta: _Entry | None, limit: int
) -> Iterator[Child]:
    """The child (or children) of one member; metadata from the central record if any."""
    name = _name(meta.name if meta is not None else member.name)
    csize = meta.csize if meta is not None else member.csize
    usize = meta.usize if meta is not None else member.usize
    encrypted = bool(member.flags & _ENCRYPTED) or member.aes or member.method == 99
    if encrypted:
        yield Child(name, b"", False, csize, usize, True)
        return
    if member.flags & _MASKED or member.csize <= 0:
        yield Child(name, b"", False, csize, usize)
        return
    comp = memoryview(data)[member.start : member.start + member.csize]
    if member.method == 0 and member.csize < member.usize:
        # libclamav: a "stored" member shorter than its size may really be deflated;
        # when it inflates, both forms are scanned, else neither
        inflater = zlib.decompressobj(-15)
        try:
            inflated = inflater.decompress(comp, limit + 1)
        except zlib.error as exc:
            log.debug("zip member %r: %s", name[:200], exc)
            yield Child(name, b"", False, csize, usize)
            return
        yield Child(name, _trim(inflated, 8, limit), False, csize, usize)
    out: bytes | None
    try:
        out = _decode(member.method, member.flags, comp, member.usize, limit)
    except (MemoryError, ValueError, OverflowError) as exc:
        log.debug("zip member %r: %s", name[:200], exc)
        out = b""
    if out is None:
        log.debug("zip member %r: method %d not supported", name[:200], member.method)
        out = b""
    yield Child(name, _trim(out, member.method, limit), False, csize, usize)


class _Index(NamedTuple):
    listed: list[tuple[_Entry, _Member | None]]  # central records, in their order
    extra: list[_Member]  # members found only by their local headers
    overlapping: bool  # libclamav's non-recursive bomb condition


def _index(data: bytes) -> _Index:
    """Every member of a ZIP, before anything is extracted (as libclamav does)."""
    probes = _Probes()
    try:
        found = _find_central(data, probes)
        entries = _central_entries(data, *found) if found else []
        listed: list[tuple[_Entry, _Member | None]] = []
        for entry in entries:
            member = _local(data, entry.offset, entry, probes)
            if member is None and found and found[1]:
                member = _local(data, entry.offset - found[1], entry, probes)
            listed.append((entry, member))
        members = [m for _, m in listed if m is not None]
        if _overlapping(members):
            return _Index(listed, [], True)
        extra = _scan_local_headers(data, members, probes)
        return _Index(listed, extra, _overlapping(members + extra))
    except (struct.error, ValueError, MemoryError) as exc:
        log.debug("zip: %s", exc)
        return _Index([], [], False)


def zip_overlapping_files(data: bytes) -> bool:
    """Whether more than five members of this ZIP overlap: libclamav then extracts
    nothing and, with heuristic alerts on, reports Heuristics.Zip.OverlappingFiles."""
    return _index(data).overlapping


def _zip(data: bytes, limit: int) -> Iterator[Child]:
    """Members listed by the central directory (in its order; a duplicate or a record
    whose local header is unreadable gives its metadata only), then members found only by
    their local headers, in file order. Nothing when members overlap (a bomb)."""
    index = _index(data)
    if index.overlapping:
        log.debug("zip: overlapping members (a non-recursive bomb): not extracted")
        return
    seen: set[tuple[int, int, int]] = set()
    for entry, member in index.listed:
        key = None if member is None else (member.offset, member.start, member.csize)
        if member is None or key in seen:  # unreadable, or listed twice: extracted once
            encrypted = bool((entry.flags if member is None else member.flags) & _ENCRYPTED)
            yield Child(_name(entry.name), b"", False, entry.csize, entry.usize, encrypted)
            continue
        seen.add((member.offset, member.start, member.csize))
        yield from _member_children(data, member, entry, limit)
    for member in sorted(index.extra, key=lambda m: m.offset):
        yield from _member_children(data, member, None, limit)


def unzip_single(data: bytes, limit: int) -> Iterator[Child]:
    """The one member whose local header starts ``data``: libclamav's reading of a ZIP
    signature found inside another object (a self-extractor, CL_TYPE_ZIPSFX)."""
    try:
        member = _local(data, 0, None, _Probes())
    except (struct.error, ValueError) as exc:
        log.debug("zip: %s", exc)
        return
    if member is not None:
        yield from _member_children(data, member, None, limit)


# ---------------------------------------------------------------------------- ARJ

_ARJ_ID = b"\x60\xea"
_ARJ_HEADER_MAX = 2600  # libclamav: 30 + 10 + 512 (name) + 2048 (comment)
_ARJ_FIXED = struct.Struct("<BBBBBBBBIIIIHHBB")  # the 30 bytes every basic header has
_ARJ_GARBLED = 0x01


class _ArjHeader(NamedTuple):
    name: bytes
    flags: int
    method: int
    csize: int
    usize: int
    data: int  # offset of the member's data (after the extended headers)


def _arj_header(data: bytes, pos: int) -> _ArjHeader | None:
    """The header at ``pos`` (main or file header), or None at the end marker or on
    damage. The basic header CRC is not required (libclamav does not check it)."""
    if data[pos : pos + 2] != _ARJ_ID or pos + 4 > len(data):
        return None
    (size,) = struct.unpack_from("<H", data, pos + 2)
    base = pos + 4
    if size == 0 or size > _ARJ_HEADER_MAX or base + size + 2 > len(data) or size < 30:
        return None
    fields = _ARJ_FIXED.unpack_from(data, base)
    first, flags, method = fields[0], fields[4], fields[5]
    csize, usize = fields[9], fields[10]
    if first < 30 or first > size:
        return None
    name = data[base + first : base + size].split(b"\x00", 1)[0]
    if zlib.crc32(data[base : base + size]) != int.from_bytes(
        data[base + size : base + size + 4], "little"
    ):
        log.debug("arj: header CRC mismatch at %d", pos)
    at = base + size + 4
    while True:  # extended headers: size, data, CRC; a zero size ends them
        if at + 2 > len(data):
            return None
        (ext,) = struct.unpack_from("<H", data, at)
        at += 2
        if ext == 0:
            break
        at += ext + 4
    return _ArjHeader(name, flags, method, csize, usize, at)


def _arj(data: bytes, limit: int) -> Iterator[Child]:
    """Members after the main header, until the end marker, damage or (as in libclamav)
    a member declared larger than the limit."""
    try:
        main = _arj_header(data, 0)
        if main is None:
            return
        pos = main.data
        for _ in range(MAX_MEMBERS):
            head = _arj_header(data, pos)
            if head is None:
                return
            pos = head.data + head.csize
            name = head.name.decode("utf-8", "surrogateescape")
            garbled = bool(head.flags & _ARJ_GARBLED)
            if head.usize > limit:
                # libclamav skips it by its declared size and, not moving past its data,
                # finds no further header: the archive ends here
                yield Child(name, b"", True, head.csize, head.usize, garbled)
                return
            if garbled:
                yield Child(name, b"", False, head.csize, head.usize, True)
                continue
            body = memoryview(data)[head.data : head.data + head.csize]
            if head.method == 0:
                out = bytes(body[: limit + 1])
            elif 1 <= head.method <= 4:
                out = arj_native.decode(body, head.method, head.usize, limit + 1)
            else:
                log.debug("arj member %r: method %d not supported", name[:200], head.method)
                out = b""
            yield Child(name, out[:limit], len(out) > limit, head.csize, head.usize)
    except (struct.error, ValueError, MemoryError) as exc:
        log.debug("arj: %s", exc)


# ---------------------------------------------------------------------------- SIS

_SIS_HEADER = struct.Struct("<4I8HI4HI9I")  # 4 UIDs, then the 68-byte header
_SIS_UID3 = 0x10000419
_SIS9_UID1 = 0x10201A7A
_SIS_ER6 = 0x10003A12  # UID2 of EPOC release 6 packages (one more size per file)
_SIS_NOCOMPRESS = 0x0008
_SIS_LANGS = 100  # libclamav's language table
_SIS_NAME_MAX = 400  # bytes of a UTF-16 name that libclamav reads
# record types
_SIS_FILE, _SIS_LANGFILE, _SIS_OPTIONS, _SIS_IF, _SIS_ELSEIF = 0, 1, 2, 3, 4
_SIS_FT_NULL = 4  # a file record that installs nothing


def _sis_string(data: bytes, ptr: int, length: int) -> str:
    """A header string as libclamav reads it: the low bytes of UTF-16 units."""
    raw = data[ptr : ptr + min(length, _SIS_NAME_MAX)]
    return raw[::2].split(b"\x00", 1)[0].decode("latin-1")


def _sis_unpack(comp: memoryview, compressed: bool, limit: int) -> bytes:
    if not compressed:
        return bytes(comp[: limit + 1])
    inflater = zlib.decompressobj()

    def step(chunk: memoryview, room: int) -> bytes:
        return inflater.decompress(chunk, room)

    return _feed(step, comp, limit, lambda: inflater.eof)


def _sis(data: bytes, limit: int) -> Iterator[Child]:
    """Files of an EPOC (pre-9.x) package: each file record gives one (or, for
    multi-language records, one per language) zlib stream, or raw data when the package
    says it is not compressed; Symbian 9 packages are handed to ``_sis9``."""
    try:
        if len(data) < _SIS_HEADER.size:
            return
        head = _SIS_HEADER.unpack_from(data, 0)
        if head[0] == _SIS9_UID1:
            yield from _sis9(data, limit)
            return
        if head[2] != _SIS_UID3:
            return
        uid2, langs, nfiles, flags = head[1], head[5], head[6], head[13]
        pfiles = head[19]
        if not 0 < langs < _SIS_LANGS or pfiles < _SIS_HEADER.size:
            return
        compressed = not flags & _SIS_NOCOMPRESS
        er6 = uid2 == _SIS_ER6
        pos = pfiles
        for _ in range(min(nfiles, MAX_MEMBERS)):
            if pos + 4 > len(data):
                return
            (kind,) = _U32.unpack_from(data, pos)
            pos += 4
            if kind in (_SIS_FILE, _SIS_LANGFILE):
                count = 1 if kind == _SIS_FILE else langs
                nwords = 6 + count * (3 if er6 else 2)
                if pos + 4 * nwords > len(data):
                    return
                words = struct.unpack_from(f"<{nwords}I", data, pos)
                pos += 4 * nwords + (8 if er6 else 0)  # release 6: MIME type length, ptr
                ftype, _, slen, sptr = words[0], words[1], words[2], words[3]
                lens, ptrs = words[6 : 6 + count], words[6 + count : 6 + 2 * count]
                reals = words[6 + 2 * count : 6 + 3 * count] if er6 else (-1,) * count
                if ftype == _SIS_FT_NULL:
                    continue
                name = _sis_string(data, sptr, slen)
                for length, ptr, real in zip(lens, ptrs, reals, strict=True):
                    if not length or ptr < _SIS_HEADER.size or ptr + length > len(data):
                        continue  # empty, inside the header or outside the file
                    out = _sis_unpack(memoryview(data)[ptr : ptr + length], compressed, limit)
                    yield Child(name, out[:limit], len(out) > limit, length, real)
            elif kind == _SIS_OPTIONS:
                if pos + 4 > len(data):
                    return
                pos += 4 + _U32.unpack_from(data, pos)[0] * langs * 8
            elif kind in (_SIS_IF, _SIS_ELSEIF):
                if pos + 4 > len(data):
                    return
                pos += 4 + _U32.unpack_from(data, pos)[0]
    except (struct.error, ValueError, MemoryError) as exc:
        log.debug("sis: %s", exc)


# Symbian 9 fields: (type, length) then the data, padded to 4 bytes
_SIS9_ARRAY, _SIS9_COMPRESSED, _SIS9_CONTENTS = 2, 3, 12
_SIS9_DATA, _SIS9_DATAUNIT, _SIS9_FILEDATA = 30, 31, 32


def _sis9_field(data: bytes, pos: int, end: int) -> tuple[int, int, int] | None:
    """(type, start of data, end of data) of the field at ``pos``, within ``end``."""
    if pos + 8 > end:
        return None
    kind, length = struct.unpack_from("<II", data, pos)
    start = pos + 8
    if length & 0x80000000:  # a 63-bit length: 32 more bits follow
        if start + 4 > end:
            return None
        length = (length & 0x7FFFFFFF) | _U32.unpack_from(data, start)[0] << 31
        start += 4
    if start + length > end:
        return None
    return kind, start, start + length


def _sis9_elements(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """The fields of a SISArray (element type first, each element without its type)."""
    if start + 4 > end:
        return
    (kind,) = _U32.unpack_from(data, start)
    pos = start + 4
    while pos + 4 <= end:
        (length,) = _U32.unpack_from(data, pos)
        body = pos + 4
        if length & 0x80000000 or body + length > end:
            return
        yield kind, body, body + length
        pos = body + length + (-length % 4)


def _sis9(data: bytes, limit: int) -> Iterator[Child]:
    """SISContents > SISData > array of SISDataUnit > array of SISFileData > SISCompressed
    (algorithm 0 raw, 1 zlib). Sibling fields are skipped by their lengths."""
    top = _sis9_field(data, 16, len(data))
    if top is None or top[0] != _SIS9_CONTENTS:
        return
    pos, end = top[1], top[2]
    count = 0
    while (field := _sis9_field(data, pos, end)) is not None:
        kind, start, stop = field
        pos = stop + (-(stop - start) % 4)
        if kind != _SIS9_DATA:
            continue
        units = _sis9_field(data, start, stop)
        if units is None or units[0] != _SIS9_ARRAY:
            continue
        for ukind, ustart, ustop in _sis9_elements(data, units[1], units[2]):
            files = _sis9_field(data, ustart, ustop) if ukind == _SIS9_DATAUNIT else None
            if files is None or files[0] != _SIS9_ARRAY:
                continue
            for fkind, fstart, fstop in _sis9_elements(data, files[1], files[2]):
                comp = _sis9_field(data, fstart, fstop) if fkind == _SIS9_FILEDATA else None
                if comp is None or comp[0] != _SIS9_COMPRESSED or comp[2] - comp[1] < 12:
                    continue
                algorithm, usize = struct.unpack_from("<IQ", data, comp[1])
                body = memoryview(data)[comp[1] + 12 : comp[2]]
                out = _sis_unpack(body, algorithm == 1, limit)
                count += 1
                yield Child(f"sis9x{count:02d}", out[:limit], len(out) > limit, len(body), usize)
                if count >= MAX_MEMBERS:
                    return


UNPACKERS: dict[FileType, Callable[[bytes, int], Iterator[Child]]] = {
    FileType.ZIP: _zip,
    FileType.ARJ: _arj,
    FileType.SIS: _sis,
    # a ZIP local header found inside another object: libclamav reads that one member
    FileType.ZIPSFX: unzip_single,
}
