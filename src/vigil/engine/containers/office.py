"""Office documents: OLE2 (streams, VBA macros, embedded objects, MSI), OneNote.

An OLE2 compound file yields every stream reachable from its directory, named by its
path (control characters as ``_N_``, MSI's packed names unpacked), plus what libclamav
also extracts from some streams: the decompressed source of each VBA module and the
project's normalised source, Word 6 macros, the file inside an OLE1 "\\x01Ole10Native"
stream, PowerPoint's zlib-compressed embedded objects, inflated MSO and HWP 5 streams.
A OneNote section yields its embedded files (and pictures).

Bounds: sector chains stop at a cycle or after the sectors a stream needs; at most
100 000 directory entries and 100 storage levels; everything yielded from one document,
derived data included, totals at most twice its size plus twice the child limit plus
64 MiB, so shared sectors or stacked decompression cannot amplify the work.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterator
from functools import wraps

from vigil.engine.containers.child import Child
from vigil.engine.containers.office_ole2 import CompoundFile, DirEntry, Ole2Error, entry_name
from vigil.engine.containers.office_onenote import onenote_files
from vigil.engine.containers.office_parts import (
    DIR_LIMIT,
    HWP5_COMPRESSED,
    HWP5_PACKED,
    HWP5_PASSWORD,
    decode_codepage,
    hwp5_flags,
    inflate,
    mso_payload,
    ole10_payload,
    ppt_objects,
    vba_decompress,
    vba_modules,
    vba_normalize,
    word6_macros,
    xls_images,
)
from vigil.engine.filetype import FileType

__all__ = ["UNPACKERS", "is_encrypted_ole2"]

log = logging.getLogger(__name__)

Unpacker = Callable[[bytes, int], Iterator[Child]]

OLE10_SLACK = 1 << 16  # header bytes read beyond the limit before an OLE1 payload
VBA_HEADER = b"REM VBA project extracted from Microsoft Office document\n\n"
# streams whose presence makes libclamav extract everything first and look inside
_INSPECTED = frozenset(
    {"_vba_project", "powerpoint document", "worddocument", "\x01ole10native", "workbook", "book"}
)


def _never_raise(unpack: Unpacker) -> Unpacker:
    """The scanner's contract: an unpacker yields what it could read and never raises."""

    @wraps(unpack)
    def guarded(data: bytes, limit: int) -> Iterator[Child]:
        try:
            yield from unpack(data, limit)
        except Exception as exc:  # noqa: BLE001 - a parser bug must not end the scan
            log.debug("%s: %r", unpack.__name__, exc)

    return guarded


class _Budget:
    """Bytes one document may still yield."""

    def __init__(self, size: int, limit: int) -> None:
        self.left = 2 * size + 2 * (limit + 1) + (64 << 20)

    def take(self, child: Child) -> bool:
        self.left -= len(child.data)
        if self.left < 0:
            log.debug("office: output budget exhausted")
            return False
        return True


def _cut(name: str, data: bytes, limit: int, ftype: FileType | None = None) -> Child:
    return Child(name, data[:limit], len(data) > limit, ftype=ftype)


class _Document:
    """One compound file being unpacked: its streams, their names, bounded reads."""

    def __init__(self, cf: CompoundFile, limit: int) -> None:
        self.cf = cf
        self.limit = limit
        self.streams = list(cf.streams())
        # entries may share sectors: what the parsers read is bounded as what is yielded
        self.reads_left = 4 * len(cf.data) + 4 * (limit + 1) + (64 << 20)

    @staticmethod
    def path(entry: DirEntry) -> str:
        return "/".join(entry_name(n) for n in entry.path)

    def named(self, lower: str) -> list[DirEntry]:
        """Streams of that name, each sector chain once (entries sharing one would give
        the parsers the same data again)."""
        seen: set[tuple[int, int]] = set()
        out = []
        for e in self.streams:
            if e.name.lower() == lower and (e.start, e.size) not in seen:
                seen.add((e.start, e.size))
                out.append(e)
        return out

    def read(self, entry: DirEntry, limit: int | None = None) -> tuple[bytes, bool]:
        if self.reads_left <= 0:
            return b"", False
        data, over = self.cf.read(entry, self.limit if limit is None else limit)
        self.reads_left -= len(data)
        return data, over

    # -------------------------------------------------------------- derived children
    def ole10(self) -> Iterator[Child]:
        for entry in self.named("\x01ole10native"):
            raw, _ = self.read(entry, self.limit + OLE10_SLACK)
            payload = ole10_payload(raw)
            if payload:
                yield _cut(self.path(entry) + "/payload", payload, self.limit)

    def vba(self) -> Iterator[Child]:
        """Each module's source (scanned by libclamav with the OLE2 target's signatures),
        then the project's normalised text (libclamav's "vba_project", a script)."""
        for dir_entry in self.named("dir"):
            raw, _ = self.read(dir_entry, DIR_LIMIT)
            modules, codepage = vba_modules(vba_decompress(raw, 0, DIR_LIMIT))
            if not modules:
                continue
            storage = dir_entry.path[:-1]
            siblings = {e.name.lower(): e for e in self.streams if e.path[:-1] == storage}
            project = [VBA_HEADER]
            size = len(VBA_HEADER)
            for module in modules:
                entry = siblings.get(module.stream.lower())
                if entry is None:
                    continue
                stream, _ = self.read(entry, self.limit + module.offset)
                source = vba_decompress(stream, module.offset, self.limit + 1)
                if not source:
                    continue
                yield _cut(self.path(entry) + "/vba", source, self.limit, FileType.MSOLE2)
                text = decode_codepage(source, codepage).encode()
                part = b"\n\nREM MODULENAME: %s\n%s" % (
                    module.name.encode(),
                    vba_normalize(text, self.limit + 1),
                )
                if size <= self.limit:
                    project.append(part)
                    size += len(part)
            if len(project) > 1:
                prefix = "/".join(entry_name(n) for n in storage)
                yield _cut(prefix + "/vba_project", b"".join(project), self.limit, FileType.SCRIPT)

    def powerpoint(self) -> Iterator[Child]:
        for entry in self.named("powerpoint document"):
            stream, _ = self.read(entry)
            for offset, obj in ppt_objects(stream, self.limit):
                yield _cut(f"{self.path(entry)}/ppt{offset:08x}.doc", obj, self.limit)

    def word6(self) -> Iterator[Child]:
        for entry in self.named("worddocument"):
            stream, _ = self.read(entry)
            for n, macro in enumerate(word6_macros(stream, self.limit), 1):
                yield _cut(f"{self.path(entry)}/macro{n}", macro, self.limit, FileType.MSOLE2)

    def excel(self) -> Iterator[Child]:
        books = self.named("workbook") or self.named("book")
        for entry in books:
            stream, _ = self.read(entry)
            for n, image in enumerate(xls_images(stream, self.limit), 1):
                yield _cut(f"{self.path(entry)}/image{n}", image, self.limit)

    # -------------------------------------------------------------- the streams
    def raw(self, hwp: int | None) -> Iterator[Child]:
        """Every stream; an MSO stream is followed by its inflated data, a compressed
        HWP 5 stream is replaced by its inflated data (libclamav scans only that)."""
        for entry in self.streams:
            data, over = self.read(entry)
            name = self.path(entry)
            if hwp is not None and hwp & HWP5_COMPRESSED and not hwp & HWP5_PASSWORD:
                if entry.name.lower().startswith(HWP5_PACKED):
                    inflated = inflate(data, self.limit, -15)
                    if inflated:
                        yield _cut(name, inflated, self.limit)
                        continue
            yield Child(name, data, over, real=entry.size)
            mso = mso_payload(data, self.limit)
            if mso:
                yield _cut(name + "/mso", mso, self.limit)


@_never_raise
def _ole2(data: bytes, limit: int) -> Iterator[Child]:
    try:
        cf = CompoundFile(data)
    except (Ole2Error, struct.error) as exc:
        log.debug("ole2: %s", exc)
        return
    doc = _Document(cf, limit)
    budget = _Budget(len(data), limit)
    hwp = None
    for entry in doc.named("fileheader"):
        head, _ = doc.read(entry, 64)
        hwp = hwp5_flags(head)
        if hwp is not None:
            break
    parts: list[Iterator[Child]] = []
    if any(e.name.lower() in _INSPECTED for e in doc.streams):
        # libclamav's order when it finds something to look into: OLE1 objects, VBA,
        # PowerPoint objects, Word 6 macros and Excel pictures first, then every stream
        parts = [doc.ole10(), doc.vba(), doc.powerpoint(), doc.word6(), doc.excel(), doc.raw(None)]
    else:
        parts = [doc.raw(hwp)]
    for part in parts:
        for child in part:
            if not budget.take(child):
                return
            yield child


@_never_raise
def _onenote(data: bytes, limit: int) -> Iterator[Child]:
    budget = _Budget(len(data), limit)
    for name, body, over in onenote_files(data, limit):
        child = Child(name, body, over)
        if not budget.take(child):
            return
        yield child


# --------------------------------------------------------------------------- encryption

_FIB_IDENT = 0xA5EC
_FIB_ENCRYPTED = 0x0100
_PPT_ENCRYPTED_TOKEN = 0xF3D1C4DF
_XLS_BOF = 0x0809
_XLS_FILEPASS = 0x002F
_XLS_EOF = 0x000A


def _xls_filepass(stream: bytes) -> bool:
    """A FILEPASS record in the workbook globals (before their EOF)."""
    pos = 0
    for _ in range(4096):
        if pos + 4 > len(stream):
            return False
        rid, size = struct.unpack_from("<HH", stream, pos)
        if pos == 0 and rid != _XLS_BOF:
            return False
        if rid == _XLS_FILEPASS:
            return True
        if rid == _XLS_EOF:
            return False
        pos += 4 + size
    return False


def is_encrypted_ole2(data: bytes) -> bool:
    """Whether an OLE2 document is password-protected.

    Encrypted OOXML (an "EncryptionInfo" or "EncryptedPackage" stream), Word with the
    FIB's fEncrypted bit (0x0100 of the flags at 0x0A, ident 0xA5EC), Excel with a
    FILEPASS record in the globals, PowerPoint whose "Current User" atom carries the
    encrypted header token 0xF3D1C4DF. (ClamAV 1.4 raises no alert for any of them; 1.5
    reports "Heuristics.Encrypted.OLE2" with --alert-encrypted-doc from similar checks.)"""
    try:
        cf = CompoundFile(data)
    except (Ole2Error, struct.error, ValueError):
        return False
    try:
        for entry in cf.streams():
            name = entry.name.lower()
            if name in ("encryptioninfo", "encryptedpackage"):
                return True
            if name == "worddocument":
                head, _ = cf.read(entry, 12)
                if len(head) >= 12:
                    ident, flags = struct.unpack_from("<H8xH", head)
                    if ident == _FIB_IDENT and flags & _FIB_ENCRYPTED:
                        return True
            elif name in ("workbook", "book"):
                head, _ = cf.read(entry, 1 << 16)
                if _xls_filepass(head):
                    return True
            elif name == "current user":
                head, _ = cf.read(entry, 16)
                if (
                    len(head) >= 16
                    and struct.unpack_from("<I", head, 12)[0] == _PPT_ENCRYPTED_TOKEN
                ):
                    return True
    except (ValueError, struct.error) as exc:
        log.debug("ole2 encryption check: %s", exc)
    return False


UNPACKERS: dict[FileType, Unpacker] = {
    FileType.MSOLE2: _ole2,
    FileType.ONENOTE: _onenote,
}
