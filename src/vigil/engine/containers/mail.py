"""Mail: MIME messages and mbox, uuencode, BinHex, TNEF.

Each unpacker yields what libclamav 1.4 saves from the format (observed with clamscan
--debug on the ClamAV test files): the parts of a message (mail_mime), the data and
resource forks of a BinHex file, the attachment data of a TNEF (winmail.dat) stream, the
file of a uuencoded text. None of them raises: damaged input yields what could be read.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterator

from vigil.engine.containers.child import Child
from vigil.engine.containers.mail_codecs import binhex_decode, is_uuencode_begin, uu_decode
from vigil.engine.containers.mail_mime import MailReader, mail_children, sanitise_name
from vigil.engine.filetype import FileType

__all__ = ["UNPACKERS"]

log = logging.getLogger(__name__)


def _mail(data: bytes, limit: int) -> Iterator[Child]:
    """A message or a mailbox (also MHTML, which libclamav hands to the same parser)."""
    try:
        yield from mail_children(data, limit)
    except (ValueError, IndexError, KeyError, RecursionError, MemoryError) as exc:
        log.debug("mail: %s", exc)


def _binhex(data: bytes, limit: int) -> Iterator[Child]:
    """The data fork, then the resource fork, of a BinHex 4.0 file (cli_binhex)."""
    try:
        found = binhex_decode(data, limit)
    except (ValueError, IndexError, MemoryError) as exc:
        log.debug("binhex: %s", exc)
        return
    if found is None:
        return
    name = sanitise_name(found.name or b"binhex")
    if found.data:
        yield Child(name, found.data, found.data_cut)
    if found.resource:
        yield Child(name + ".rsrc", found.resource)


_TNEF_SIGNATURE = 0x223E9F78
_LVL_MESSAGE = 1
_LVL_ATTACHMENT = 2
_ATT_ATTACHDATA = 0x800F
_ATT_ATTACHTITLE = 0x8010


class _TnefFile:
    """libclamav's one output file: attachment data is appended until a message-level
    attribute starts a new file; the first title names it (unnamed data is dropped then)."""

    def __init__(self) -> None:
        self.name: bytes | None = None
        self.chunks: list[bytes] = []
        self.size = 0

    def add(self, data: bytes, limit: int) -> None:
        room = limit + 1 - self.size
        if room > 0:
            self.chunks.append(data[:room])
            self.size += min(len(data), room)

    def child(self, limit: int, default: bytes | None) -> Child | None:
        name = self.name if self.name is not None else default
        if name is None or not self.size:
            return None
        data = b"".join(self.chunks)
        return Child(sanitise_name(name), data[:limit], len(data) > limit)


def _tnef(data: bytes, limit: int) -> Iterator[Child]:
    """Attachments of a TNEF stream (cli_tnef): only attAttachTitle and attAttachData are
    used. libclamav scans its output only when the walk ends cleanly (at the end, or at a
    truncated attribute header); a negative length, an attribute running past the end or
    an unknown level discards everything."""
    size = len(data)
    if size < 6 or struct.unpack_from("<I", data)[0] != _TNEF_SIGNATURE:
        return
    pos = 6
    out: list[Child] = []
    current: _TnefFile | None = None
    while pos < size:
        part = data[pos]
        pos += 1
        if part == 0 or pos + 8 > size:
            break  # the end, a truncated header, or a stray trailing newline
        tag = struct.unpack_from("<H", data, pos)[0]
        length = struct.unpack_from("<i", data, pos + 4)[0]
        pos += 8
        if length == 0:
            continue
        if length < 0 or part not in (_LVL_MESSAGE, _LVL_ATTACHMENT):
            return
        offset = pos
        if part == _LVL_MESSAGE:
            if current is not None:
                c = current.child(limit, None)  # an unnamed file is lost here
                if c is not None:
                    out.append(c)
            current = _TnefFile()
        elif tag == _ATT_ATTACHTITLE:
            if offset + length > size:
                return
            if current is None:
                current = _TnefFile()
            if current.name is None:
                current.name = data[offset : offset + length].split(b"\0", 1)[0]
        elif tag == _ATT_ATTACHDATA:
            if current is None:
                current = _TnefFile()
            current.add(data[offset : offset + length], limit)
        if offset + length > size:
            return
        pos = offset + length + 2  # the attribute and its checksum
    if current is not None:
        c = current.child(limit, b"tnef")
        if c is not None:
            out.append(c)
    yield from out


def _uuencoded(data: bytes, limit: int) -> Iterator[Child]:
    """The file of a uuencoded text that starts with its ``begin`` line (cli_uuencode)."""
    reader = MailReader(data)
    first = reader.gets_raw()
    if first is None or not is_uuencode_begin(first):
        return
    words = [w for w in first.split(b" ") if w]
    if len(words) < 3:
        return
    try:
        out, cut = uu_decode(reader.gets_all(), limit)
    except (ValueError, IndexError, MemoryError) as exc:
        log.debug("uuencode: %s", exc)
        return
    if out:
        yield Child(sanitise_name(words[2]), out, cut)


UNPACKERS: dict[FileType, Callable[[bytes, int], Iterator[Child]]] = {
    FileType.MAIL: _mail,
    FileType.MHTML: _mail,
    FileType.TNEF: _tnef,
    FileType.BINHEX: _binhex,
    FileType.UUENCODED: _uuencoded,
}
