"""RTF embedded objects, as libclamav's rtf.c finds them.

libclamav walks the RTF group structure and, after an ``\\object`` control word, decodes
the hex text of each ``{\\*\\objdata ...}`` group (only the group's own text: control
words, their parameters and nested groups are skipped; any byte that is not a hex digit is
ignored). The decoded OLE1 object is: 8 bytes (version, format), a 4-byte class-name
length and the class name (at most 64 bytes), 8 bytes (topic and item names), a 4-byte data
size and the data. OLE2 data (``D0 CF``) is yielded as it is; anything else is native
data, and for a complete "Package" object its header (type, label, path, 8 bytes, temporary
path, size) is removed to yield the embedded file, as cli_scan_ole10 does. Several objects
may follow each other in one objdata group. ``\\bin`` is not special (nor in libclamav).

Observable quirks kept: ``\\object`` counts only when a non-space, non-letter follows it and
``\\objdata`` only when a space follows; once seen, ``\\object`` stays in force until a
closing brace at depth 0 resets the parser; a group ends at its closing brace, at another
``\\object``/``\\objdata`` at its own level, or at the end of the file.

The brace structure is computed with numpy in blocks (bounded memory for any nesting
depth); the object text is filtered with ``re`` and decoded by ``bytes.translate`` and
``binascii.unhexlify``.
"""

from __future__ import annotations

import binascii
import logging
import re
import struct
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from vigil.engine.containers.child import Child
from vigil.engine.filetype import FileType

__all__ = ["UNPACKERS", "unpack_rtf"]

log = logging.getLogger(__name__)

BLOCK = 1 << 20
MAX_OBJDATA = 10_000  # objdata groups looked at in one document
MAX_BACKTRACK = 1_000  # \object candidates examined backwards for one objdata
HEADER_SLACK = 1 << 20  # decoded bytes allowed beyond the size limit for OLE1 headers
INT64_MAX = (1 << 63) - 1
OLE_CHUNK = 8192  # libclamav's FILEBUFF, and the size of its RTF reads
MAX_CONTROLS = 100_000  # control words inside one objdata group

_OBJDATA = re.compile(rb"\\objdata ")
_OBJECT = rb"\\object(?=[^A-Za-z \t\n\x0b\x0c\r])"
_ACTION = re.compile(rb"\\objdata |" + _OBJECT)
# a control word (up to 32 letters, then a space or a parameter) or a control symbol
_PARAM = re.compile(rb"-?[0-9A-Za-z]*")
_CONTROL = re.compile(
    rb"\\(?:[A-Za-z]{1,32}(?![A-Za-z])(?:[ \t\n\x0b\x0c\r]|(-?[0-9A-Za-z]*))"
    rb"|[A-Za-z]{32}|[^A-Za-z]|\Z)",
    re.S,
)
_WORD_OR_SPACE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz \t\n\x0b\x0c\r")
_NOT_HEX = bytes(c for c in range(256) if chr(c) not in "0123456789abcdefABCDEF")
_OLE2 = b"\xd0\xcf"
_NOT_DIGIT = bytes(c for c in range(256) if not 0x30 <= c <= 0x39)
_DIGIT_TABLE = np.zeros(256, dtype=bool)
_DIGIT_TABLE[0x30:0x3A] = True
_HEX_TABLE = np.zeros(256, dtype=bool)
_HEX_TABLE[list(b"0123456789abcdefABCDEF")] = True


def _escaped(data: bytes, pos: int) -> bool:
    """Whether the byte at ``pos`` follows an odd run of backslashes."""
    span = 64
    while True:
        lo = max(0, pos - span)
        window = data[lo:pos]
        run = len(window) - len(window.rstrip(b"\\"))
        if run < len(window) or lo == 0:
            return run % 2 == 1
        span *= 16


def _param_overflow(param: bytes) -> int:
    """Where libclamav gives up on a control word's parameter (letters are skipped, digits
    accumulate into an int64): the index in ``param`` of the digit that would overflow, or
    -1. Such a word is not interpreted and the rest of the parameter is text."""
    digits = param.translate(None, _NOT_DIGIT)
    significant = digits.lstrip(b"0")
    if len(significant) <= 18:
        return -1
    length = 19 if int(significant[:19]) > INT64_MAX else 20
    if len(significant) < length:
        return -1
    nth = len(digits) - len(significant) + length - 1
    where = np.flatnonzero(_DIGIT_TABLE[np.frombuffer(param, dtype=np.uint8)])
    return int(where[nth])


def _is_action(data: bytes, pos: int) -> bool:
    """Whether libclamav interprets the \\object or \\objdata word at ``pos``."""
    if _escaped(data, pos):
        return False
    if data.startswith(b"\\objdata ", pos):
        return True
    nxt = pos + 7
    if not data.startswith(b"\\object", pos) or nxt >= len(data):
        return False
    if data[nxt] in _WORD_OR_SPACE:
        return False
    if data[nxt] == 0x2D or 0x30 <= data[nxt] <= 0x39:
        m = _PARAM.match(data, nxt)
        assert m is not None
        return _param_overflow(m.group()) < 0
    return True


def _controls(text: bytes) -> Iterator[tuple[int, int]]:
    """Spans of the control words and symbols in ``text`` (a parameter that overflows
    ends its word early)."""
    pos = 0
    while True:
        m = _CONTROL.search(text, pos)
        if m is None:
            return
        end = m.end()
        if m.group(1) is not None and len(m.group(1)) > 18:
            cut = _param_overflow(m.group(1))
            if cut >= 0:
                end = m.start(1) + cut
        yield m.start(), end
        pos = max(end, m.start() + 1)


@dataclass(slots=True)
class _Objdata:
    pos: int  # the backslash of \objdata
    depth: int = 0
    end: int = -1  # the closing brace of its group (or the end of the data)


def _real_braces(a: np.ndarray, carry_bs: int) -> tuple[np.ndarray, np.ndarray]:
    """Local positions and steps (+1/-1) of the braces that are not escaped in a block;
    ``carry_bs`` is the run of backslashes that ended the previous block."""
    is_open = a == 0x7B
    is_close = a == 0x7D
    cand = np.flatnonzero(is_open | is_close)
    if cand.size == 0:
        return cand, np.zeros(0, dtype=np.int64)
    back = a == 0x5C
    idx = np.arange(a.size)
    last_other = np.maximum.accumulate(np.where(back, -1, idx))
    prev = cand - 1
    run = np.where(prev >= 0, prev - last_other[np.maximum(prev, 0)], 0)
    run = np.where((prev >= 0) & (last_other[np.maximum(prev, 0)] < 0), run + carry_bs, run)
    run = np.where(cand == 0, carry_bs, run)
    real = cand[run % 2 == 0]
    steps = np.where(is_open[real], 1, -1).astype(np.int64)
    return real, steps


def _trailing_backslashes(a: np.ndarray, carry: int) -> int:
    """The run of backslashes at the end of a block (continuing ``carry``)."""
    others = np.flatnonzero(a != 0x5C)
    if others.size == 0:
        return carry + a.size
    return a.size - 1 - int(others[-1])


def _structure(data: bytes, objdata: list[_Objdata]) -> list[_Objdata]:
    """One pass over the braces (clamped at depth 0 like libclamav's state stack): the
    depth of each objdata, whether \\object is in force there, and where its group ends."""
    active: list[_Objdata] = []
    pending: list[_Objdata] = []
    depth0 = 0
    last_reset = -1
    carry_bs = 0
    qi = 0
    for lo in range(0, len(data), BLOCK):
        hi = min(len(data), lo + BLOCK)
        if qi >= len(objdata) and not pending:
            break
        a = np.frombuffer(data, dtype=np.uint8, count=hi - lo, offset=lo)
        pos, steps = _real_braces(a, carry_bs)
        carry_bs = _trailing_backslashes(a, carry_bs)
        s = depth0 + np.cumsum(steps)
        after = s - np.minimum(np.minimum.accumulate(s), 0) if s.size else s
        before = np.concatenate(([depth0], after[:-1])) if s.size else s
        resets = pos[(steps < 0) & (before == 0)]
        # objdata words in this block
        while qi < len(objdata) and objdata[qi].pos < hi:
            od = objdata[qi]
            qi += 1
            local = od.pos - lo
            j = int(np.searchsorted(pos, local))
            od.depth = int(after[j - 1]) if j > 0 else depth0
            k = int(np.searchsorted(resets, local))
            reset_at = lo + int(resets[k - 1]) if k > 0 else last_reset
            if _object_in_force(data, reset_at, od.pos):
                active.append(od)
                pending.append(od)
        # groups closing in this block
        if pending and pos.size:
            closes = steps < 0
            cpos, cdep = pos[closes], before[closes]
            width = hi - lo + 1
            order = np.lexsort((cpos, cdep))
            keys = cdep[order] * width + cpos[order]
            still = []
            for od in pending:
                start = max(od.pos - lo + 1, 0)
                i = int(np.searchsorted(keys, od.depth * width + start))
                if i < keys.size and int(keys[i]) // width == od.depth:
                    od.end = lo + int(keys[i] % width)
                else:
                    still.append(od)
            pending = still
        if resets.size:
            last_reset = lo + int(resets[-1])
        if after.size:
            depth0 = int(after[-1])
    for od in pending:
        od.end = len(data)
    return active


def _object_in_force(data: bytes, reset_at: int, pos: int) -> bool:
    """An \\object word after the last reset and before ``pos``."""
    hi = pos
    for _ in range(MAX_BACKTRACK):
        at = data.rfind(b"\\object", reset_at + 1, hi)
        if at < 0:
            return False
        if _is_action(data, at):
            return True
        hi = at + 7 - 1
    return False


def _group_text(data: bytes, start: int, end: int, cap: int) -> tuple[bytes, list[int], int]:
    """An objdata group's own text between ``start`` and ``end`` (up to the next action
    word at its level; nested groups and control words left out): the decoded bytes,
    where each of libclamav's text chunks ends in them, and where the object ends.

    libclamav feeds the text in chunks (split at control words, braces and every 8 KiB of
    the file) and its OLE1 parser depends on those limits, so they are kept."""
    end = min(end, start + cap)
    parts: list[np.ndarray] = []
    depth = 0
    carry_bs = 0
    cut = end
    for lo in range(start, end, BLOCK):
        hi = min(end, lo + BLOCK)
        a = np.frombuffer(data, dtype=np.uint8, count=hi - lo, offset=lo)
        pos, steps = _real_braces(a, carry_bs)
        carry_bs = _trailing_backslashes(a, carry_bs)
        step = np.zeros(a.size, dtype=np.int64)
        step[pos] = steps
        level = depth + np.cumsum(step)
        keep = level == 0
        keep[pos] = False
        for m in _ACTION.finditer(data, lo, hi):
            p = m.start()
            if keep[p - lo] and _is_action(data, p):
                cut = p
                break
        if cut < hi:
            parts.append(np.where(keep[: cut - lo], a[: cut - lo], np.uint8(0x7B)))
            break
        parts.append(np.where(keep, a, np.uint8(0x7B)))
        depth = int(level[-1]) if level.size else depth
    text = b"".join(p.astype(np.uint8).tobytes() for p in parts)
    n = len(text)
    marks = np.zeros(n + 1, dtype=np.int8)
    bounds: list[int] = []
    for count, (c_start, c_end) in enumerate(_controls(text)):
        if count == MAX_CONTROLS:
            n = c_start  # absurdly many control words: the object ends here
            break
        marks[c_start] += 1
        marks[c_end] -= 1
        bounds += (c_start, c_end)
    if n == 0:
        return b"", [], cut
    t = np.frombuffer(text, dtype=np.uint8, count=n)
    in_control = np.cumsum(marks[:n], dtype=np.int8) > 0
    is_hex = _HEX_TABLE[t] & ~in_control
    filler = t == 0x7B
    flips = np.flatnonzero(filler[1:] != filler[:-1]) + 1
    first_chunk = -start % OLE_CHUNK or OLE_CHUNK
    chunks = np.arange(first_chunk, n, OLE_CHUNK)
    edges = np.unique(
        np.concatenate(([0], np.asarray(bounds, dtype=np.int64), flips, chunks)).clip(0, n - 1)
    )
    per_chunk = np.add.reduceat(is_hex, edges, dtype=np.int64)
    ends = (np.cumsum(per_chunk) // 2).tolist()
    digits = t[is_hex].tobytes()
    return binascii.unhexlify(digits[: len(digits) // 2 * 2]), ends, cut


def _copied(body: bytes, start: int, length: int) -> bytes:
    """ole_copy_file_data: ``length`` bytes from ``start`` in 8 KiB reads; a read that
    comes up short ends the copy (and is not written)."""
    avail = max(0, len(body) - start)
    if length > avail:
        length = avail // OLE_CHUNK * OLE_CHUNK
    return body[start : start + length]


def _package(size: int, body: bytes) -> tuple[str, bytes] | None:
    """cli_scan_ole10 on the 4-byte size and the native data: the embedded file of a
    complete Package object (its header removed), else the data as it is."""
    if len(body) < size:
        return "ole10", _copied(body, 0, size)
    label_end = body.find(b"\x00", 2)
    if label_end < 0:
        return None
    path_end = body.find(b"\x00", label_end + 1)
    if path_end < 0:
        return None
    temp_end = body.find(b"\x00", path_end + 1 + 8)
    if temp_end < 0:
        return None
    pos = temp_end + 1
    if len(body) - pos < 4:
        return None
    (length,) = struct.unpack_from("<I", body, pos)
    label = body[2:label_end] or body[label_end + 1 : path_end]
    return label.decode("latin-1"), _copied(body, pos + 4, length)


def _skip_zero(ends: list[int], pos: int) -> int:
    """WAIT_ZERO: 8 bytes, but only from a chunk that still holds 8; the rest of a shorter
    chunk is dropped (libclamav keeps no count across chunks there). -1 at the end."""
    while True:
        i = bisect_right(ends, pos)
        if i == len(ends):
            return -1
        if ends[i] - pos >= 8:
            return pos + 8
        pos = ends[i]


def _objects(buf: bytes, ends: list[int], limit: int) -> Iterator[Child]:
    """The OLE1 objects one after another in decoded objdata."""
    pos = 0
    n = len(buf)
    while pos < n:
        if n - pos < 12:
            return
        (desc_len,) = struct.unpack_from("<I", buf, pos + 8)
        pos += 12
        if desc_len > 64 or n - pos < desc_len:
            return  # libclamav's parser loses track of longer class names
        cls = buf[pos : pos + desc_len].split(b"\x00", 1)[0].decode("latin-1")
        pos = _skip_zero(ends, pos + desc_len)
        if pos < 0 or n - pos < 4:
            return
        (size,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        body = buf[pos : pos + size]
        pos += len(body)
        if not body:
            return
        if body[:2] == _OLE2:
            yield _child(cls or "ole2", body, limit)
        else:
            found = _package(size, body)
            if found is not None and found[1]:
                yield _child(found[0], found[1], limit)
        if len(body) < size:
            return


def _child(name: str, data: bytes, limit: int) -> Child:
    if len(data) > limit:
        return Child(name, data[:limit], oversized=True)
    return Child(name, data)


def unpack_rtf(data: bytes, limit: int) -> Iterator[Child]:
    """Embedded objects of an RTF document, in the order libclamav scans them."""
    try:
        words: list[_Objdata] = []
        for m in _OBJDATA.finditer(data):
            if not _escaped(data, m.start()):
                words.append(_Objdata(m.start()))
                if len(words) >= MAX_OBJDATA:
                    break
        if not words:
            return
        active = _structure(data, words)
        cap = 2 * (limit + HEADER_SLACK) * 8
        done: list[tuple[int, int, bytes, list[int]]] = []
        budget = 4 * len(data) + (64 << 20)  # bytes looked at for nested objdata groups
        for od in active:
            start = od.pos + len(b"\\objdata ")
            budget -= min(od.end, start + cap) - start
            if budget < 0:
                log.debug("rtf: too much nested objdata, the rest is skipped")
                break
            decoded, ends, cut = _group_text(data, start, od.end, cap)
            done.append((cut, -od.depth, decoded, ends))
        # an object is scanned when its group ends; nested groups end first
        for _, _, decoded, ends in sorted(done, key=lambda item: item[:2]):
            yield from _objects(decoded, ends, limit)
    except (ValueError, IndexError, MemoryError, struct.error, binascii.Error) as exc:
        log.debug("rtf: %s", exc)


UNPACKERS: dict[FileType, Callable[[bytes, int], Iterator[Child]]] = {
    FileType.RTF: unpack_rtf,
}
