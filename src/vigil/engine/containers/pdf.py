"""Documents: PDF streams, embedded files and JavaScript; RTF embedded objects (rtf.py).

The PDF unpacker reproduces what libclamav 1.4's pdf.c observably extracts, so that the
same objects reach the signatures in the same order:

* objects are found by their ``N G obj`` headers (never through the xref table), at most
  65,536 of them, followed by the objects of every ``/Type/ObjStm`` object stream;
* each object's dictionary names set flags (filters in order, /JavaScript, /OpenAction,
  /Contents, /EmbeddedFile, ...), and references such as ``/Contents 14 0 R`` move the flag
  to the referenced object;
* an object is extracted when libclamav dumps it: a stream without filters, a stream whose
  flags include Flate/ASCIIHex/ASCII85/DCT, an embedded file, JavaScript, an open or launch
  action or page contents; other images and LZW- or RunLength-only streams are not;
* stream filters are applied in order (Flate, ASCIIHex, ASCII85, LZW, RunLength; DCT, JPX,
  CCITT and JBIG2 stop the chain) and the data after the last filter that worked is yielded,
  the raw stream when none did; /DecodeParms predictors are not applied (neither does
  libclamav);
* /JS strings of JavaScript objects, raw objects that carry an action, and the text of the
  page-content operators (``[...(text)...] TJ``) normalised as libclamav does;
* encrypted documents are decrypted when the user password is empty (RC4, AESV2, AESV3;
  revisions 2-6) with the ``cryptography`` package; otherwise a marker child is yielded.

Heuristic results travel as marker children (empty data, name starting ``Heuristics.``):
``Heuristics.Encrypted.PDF`` (``encrypted=True``, yielded where libclamav raises it, only
for documents that cannot be decrypted) and ``Heuristics.PDF.ObfuscatedNameObject`` (after
the last object, as libclamav appends it). Every size is bounded by ``limit``; nothing here
raises.
"""

from __future__ import annotations

import binascii
import hashlib
import logging
import re
import struct
import zlib
from bisect import bisect_left
from collections.abc import Callable, Generator, Iterator
from typing import Any

import numpy as np

from vigil.engine.containers.child import Child
from vigil.engine.containers.rtf import UNPACKERS as RTF_UNPACKERS
from vigil.engine.filetype import FileType
from vigil.engine.textnorm import normalise_text
from vigil.native import _lzw

__all__ = ["ENCRYPTED_MARKER", "OBFUSCATED_MARKER", "UNPACKERS", "unpack_pdf"]

log = logging.getLogger(__name__)

ENCRYPTED_MARKER = "Heuristics.Encrypted.PDF"
OBFUSCATED_MARKER = "Heuristics.PDF.ObfuscatedNameObject"
MAX_OBJECTS = 64 * 1024  # libclamav's MAX_PDF_OBJECTS
OBJSTM_BUDGET = 256 * 1024 * 1024  # decoded object streams kept at once (libclamav: no cap)
MAX_NAME = 63
FAST_DICT_STEPS = 16
INT64_MAX = (1 << 63) - 1

# object flags (libclamav's enum pdf_objflags, bit numbers)
STREAM = 1 << 0
DICT = 1 << 1
EMBEDDED_FILE = 1 << 2
FILTER_AH = 1 << 3
FILTER_A85 = 1 << 4
FILTER_FLATE = 1 << 5
FILTER_LZW = 1 << 6
FILTER_RL = 1 << 7
FILTER_FAX = 1 << 8
FILTER_JBIG2 = 1 << 9
FILTER_DCT = 1 << 10
FILTER_JPX = 1 << 11
FILTER_CRYPT = 1 << 12
FILTER_UNKNOWN = 1 << 13
JAVASCRIPT = 1 << 14
OPENACTION = 1 << 15
HASFILTERS = 1 << 16
SIGNED = 1 << 17
IMAGE = 1 << 18
TRUNCATED = 1 << 19
FORCEDUMP = 1 << 20
FILTER_STANDARD = 1 << 21
LAUNCHACTION = 1 << 22
PAGE = 1 << 23
CONTENTS = 1 << 24

KNOWN_FILTERS = (
    FILTER_AH
    | FILTER_RL
    | FILTER_A85
    | FILTER_FLATE
    | FILTER_LZW
    | FILTER_FAX
    | FILTER_DCT
    | FILTER_JPX
    | FILTER_CRYPT
)
DUMP_MASK = (
    CONTENTS
    | FILTER_FLATE
    | FILTER_DCT
    | FILTER_AH
    | FILTER_A85
    | EMBEDDED_FILE
    | JAVASCRIPT
    | OPENACTION
    | LAUNCHACTION
)

# name-parser states
S_NONE, S_S, S_FILTER, S_JS, S_OPEN, S_LINEAR, S_LAUNCH, S_CONTENTS, S_ANY = range(9)
_REFERRING = {S_JS: JAVASCRIPT, S_OPEN: OPENACTION, S_CONTENTS: CONTENTS}

# name -> (flag set, state it applies from, state it leads to, heuristic name)
_ACTIONS: dict[bytes, tuple[int, int, int, bool]] = {
    b"ASCIIHexDecode": (FILTER_AH, S_FILTER, S_FILTER, True),
    b"ASCII85Decode": (FILTER_A85, S_FILTER, S_FILTER, True),
    b"A85": (FILTER_A85, S_FILTER, S_FILTER, True),
    b"AHx": (FILTER_AH, S_FILTER, S_FILTER, True),
    b"EmbeddedFile": (EMBEDDED_FILE, S_NONE, S_NONE, True),
    b"FlateDecode": (FILTER_FLATE, S_FILTER, S_FILTER, True),
    b"Fl": (FILTER_FLATE, S_FILTER, S_FILTER, True),
    b"Image": (IMAGE, S_NONE, S_NONE, True),
    b"LZWDecode": (FILTER_LZW, S_FILTER, S_FILTER, True),
    b"LZW": (FILTER_LZW, S_FILTER, S_FILTER, True),
    b"RunLengthDecode": (FILTER_RL, S_FILTER, S_FILTER, True),
    b"RL": (FILTER_RL, S_FILTER, S_FILTER, True),
    b"CCITTFaxDecode": (FILTER_FAX, S_FILTER, S_FILTER, True),
    b"CCF": (FILTER_FAX, S_FILTER, S_FILTER, True),
    b"JBIG2Decode": (FILTER_DCT, S_FILTER, S_FILTER, True),
    b"DCTDecode": (FILTER_DCT, S_FILTER, S_FILTER, True),
    b"DCT": (FILTER_DCT, S_FILTER, S_FILTER, True),
    b"JPXDecode": (FILTER_JPX, S_FILTER, S_FILTER, True),
    b"Crypt": (FILTER_CRYPT, S_FILTER, S_NONE, True),
    b"Standard": (FILTER_STANDARD, S_FILTER, S_FILTER, True),
    b"Sig": (SIGNED, S_ANY, S_NONE, True),
    b"V": (SIGNED, S_ANY, S_NONE, True),
    b"R": (SIGNED, S_ANY, S_NONE, True),
    b"Linearized": (DICT, S_NONE, S_LINEAR, True),
    b"Filter": (HASFILTERS, S_ANY, S_FILTER, True),
    b"JavaScript": (JAVASCRIPT, S_ANY, S_JS, True),
    b"Length": (DICT, S_FILTER, S_NONE, True),
    b"S": (DICT, S_NONE, S_S, True),
    b"Type": (DICT, S_NONE, S_NONE, True),
    b"OpenAction": (OPENACTION, S_ANY, S_OPEN, True),
    b"Launch": (LAUNCHACTION, S_ANY, S_LAUNCH, True),
    b"Page": (PAGE, S_NONE, S_NONE, True),
    b"Contents": (CONTENTS, S_NONE, S_CONTENTS, True),
    b"Author": (DICT, S_NONE, S_NONE, False),
    b"Producer": (DICT, S_NONE, S_NONE, False),
    b"CreationDate": (DICT, S_NONE, S_NONE, False),
    b"ModDate": (DICT, S_NONE, S_NONE, False),
    b"Creator": (DICT, S_NONE, S_NONE, False),
    b"Title": (DICT, S_NONE, S_NONE, False),
    b"Keywords": (DICT, S_NONE, S_NONE, False),
    b"Subject": (DICT, S_NONE, S_NONE, False),
    b"Pages": (DICT, S_NONE, S_NONE, False),
    b"Colors": (DICT, S_NONE, S_NONE, False),
    b"RichMedia": (DICT, S_NONE, S_NONE, False),
    b"AcroForm": (DICT, S_NONE, S_NONE, False),
    b"XFA": (DICT, S_NONE, S_NONE, False),
}
# filters counted towards "more than 2 filters" do not matter here; the decoders do
_FILTER_FLAGS = frozenset(
    {FILTER_AH, FILTER_A85, FILTER_FLATE, FILTER_LZW, FILTER_RL, FILTER_FAX}
    | {FILTER_DCT, FILTER_JPX, FILTER_CRYPT}
)

# encryption methods (libclamav's enum enc_method)
ENC_UNKNOWN, ENC_NONE, ENC_IDENTITY, ENC_V2, ENC_AESV2, ENC_AESV3 = range(6)
_PADDING = bytes.fromhex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A")

# filter outcomes (libclamav: CL_SUCCESS, CL_BREAK, anything else)
OK, BREAK, FAIL = range(3)

_PDF_WS = b"\x00\t\n\x0c\r "
_C_SPACE = b"\t\n\x0b\x0c\r "
_OBJ = re.compile(rb"[\x00\t\n\x0c\r ]obj")
_OBJ_HEADER = re.compile(rb"(\d+)[\x00\t\n\x0c\r ]*([\t\n\x0b\x0c\r +-])(\d+)[\x00\t\n\x0c\r ]*\Z")
_STRTOL = re.compile(rb"[\t\n\x0b\x0c\r ]*([+-]?\d+)")
_DIGITS = re.compile(rb"\d*")
_NAME = re.compile(rb"/((?:#[0-9A-Fa-f]{2}|[^\t\n\r /><\[\](#])*)")
_NAME_HEX = re.compile(rb"#([0-9A-Fa-f]{2})")
_LT_PAIR = re.compile(rb"<(?=<)")
# pdf_nextobject: inside the current token / after it
_IN_TOKEN = re.compile(rb"[^\n\r%\x20\t\[\x0b\x0c</(]*")
_BETWEEN = re.compile(rb"(?:[\x20\t\[\x0b\x0c<]|(?:[\n\r]|%[^\r\n\x00]*[\r\n\x00])[\r\n\x00]*)*")
_AHX_PAIRS = re.compile(rb"(?:[ ]*[0-9A-Fa-f]{2})*[ ]*")
_EARLY = re.compile(rb"/EarlyChange[\x00\t\n\x0b\x0c\r ]*([+-]?\d+)")
_TJ_TEXT = re.compile(rb"\(([^)]*)(?:\)|\Z)")
_STR_ESCAPE = re.compile(rb"\\(\r\n?|[0-9].{0,2}|.)?", re.S)
_HEX = frozenset(b"0123456789abcdefABCDEF")


def _strtol(buf: bytes, pos: int, end: int) -> int | None:
    """cli_strntol_wrap: optional C whitespace and sign, then decimal digits; None when
    there are no digits or the value does not fit a long."""
    if pos < 0 or pos >= end:
        return None
    m = _STRTOL.match(buf, pos, end)
    if m is None:
        return None
    value = int(m.group(1))
    if value > INT64_MAX or value < -INT64_MAX - 1:
        return None
    return value


def _as_int32(value: int) -> int:
    """A long returned through an ``int`` (pdf_readint): the low 32 bits, signed."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _next_object(buf: bytes, pos: int, end: int) -> int:
    """pdf_nextobject: where the next token after the current one starts, or -1."""
    if pos >= end:
        return -1
    m = _IN_TOKEN.match(buf, pos, end)
    assert m is not None
    pos = m.end()
    if pos >= end:
        return -1
    c = buf[pos]
    if c in b"/(":
        return pos
    if c not in b"\n\r%":
        pos += 1  # whitespace, '[' or '<' ends the current token
    m = _BETWEEN.match(buf, pos, end)
    assert m is not None
    pos = m.end()
    if pos >= end or buf[pos] in b"\n\r%":
        return -1  # a comment or line break that runs to the end
    return pos


def _next_line(buf: bytes, pos: int, end: int) -> int:
    """decode_nextlinestart: just past the first run of line-break characters."""
    cr = buf.find(b"\r", pos, end)
    lf = buf.find(b"\n", pos, end)
    hits = [p for p in (cr, lf) if p >= 0]
    if not hits:
        return end
    p = min(hits)
    while p < end and buf[p] in b"\r\n":
        p += 1
    return p


def _read_digits_end(buf: bytes, pos: int, end: int) -> int:
    m = _DIGITS.match(buf, pos, end)
    return m.end() if m else pos


def _paren_end(buf: bytes, pos: int, end: int) -> int:
    """Index just past the ')' closing a literal string whose body starts at ``pos``
    (nested parentheses count, a backslash escapes the next byte); -1 if unterminated."""
    close = buf.find(b")", pos, end)
    if close < 0:
        return -1
    if buf.find(b"(", pos, close) < 0 and buf.find(b"\\", pos, close) < 0:
        return close + 1
    a = np.frombuffer(buf, dtype=np.uint8, count=end - pos, offset=pos)
    idx = np.arange(a.size)
    back = a == 0x5C
    # a byte is escaped when an odd run of backslashes precedes it
    last_other = np.maximum.accumulate(np.where(back, -1, idx))
    run = idx - last_other  # backslashes ending at each index (0 for others)
    escaped = np.zeros(a.size, dtype=bool)
    escaped[1:] = (run[:-1] % 2) == 1
    step = np.zeros(a.size, dtype=np.int64)
    step[(a == 0x28) & ~escaped] = 1
    step[(a == 0x29) & ~escaped] = -1
    depth = 1 + np.cumsum(step)
    hit = np.flatnonzero(depth == 0)
    if hit.size == 0:
        return -1
    return pos + int(hit[0]) + 1


def _dict_end_slow(buf: bytes, q: int, opens: int, end1: int) -> int:
    """The rest of the dictionary-end search, vectorised (see _dict_end)."""
    base = q - 1
    if end1 + 1 > len(buf) or base >= end1:
        return -1
    a = np.frombuffer(buf, dtype=np.uint8, count=end1 + 1 - base, offset=base)
    n = a.size
    gt = a == 0x3E
    gt[0] = False  # the byte before q was consumed already
    lt = a == 0x3C
    pair = np.zeros(n, dtype=bool)
    pair[:-1] = lt[:-1] & lt[1:]
    cum_pairs = np.concatenate(([0], np.cumsum(pair, dtype=np.int64)))
    idx = np.arange(n)
    starts = gt & ~np.concatenate(([False], gt[:-1]))
    run_start = np.maximum.accumulate(np.where(starts, idx, 0))
    even = ((idx - run_start) % 2) == 0
    nxt = np.concatenate((gt[1:], [False]))
    events = np.flatnonzero(gt & even & (idx < n - 1))  # '>' positions within [q, end1)
    if events.size == 0:
        return -1
    is_close = nxt[events]
    # the loop runs while q < end1 - 1: no event after one that leaves q >= end1 - 1
    stop = np.flatnonzero(events + base + 2 >= end1 - 1)
    if stop.size:
        events = events[: stop[0] + 1]
        is_close = is_close[: stop[0] + 1]
    prev = np.concatenate(([0], events[:-1] + 1))
    seg_opens = cum_pairs[events] - cum_pairs[prev]
    delta = np.where(is_close, seg_opens - 1, 0)
    depth = opens + np.cumsum(delta)
    hit = np.flatnonzero(is_close & (depth == 0))
    if hit.size == 0:
        return -1
    return base + int(events[hit[0]])


def _dict_end(buf: bytes, q: int, obj_end: int) -> int:
    """Where libclamav's pdf_parseobj sees a dictionary (its body starting at ``q``) end:
    the position of the closing ``>>``, or -1 for a broken dictionary. Nested ``<<`` are
    counted the way it counts them (overlapping pairs, only before a ``>>``)."""
    end1 = obj_end - 1
    opens = 1
    steps = 0
    while q < end1 - 1 and opens > 0:
        if steps == FAST_DICT_STEPS:
            return _dict_end_slow(buf, q, opens, end1)
        steps += 1
        close = buf.find(b">", q, end1)
        if close < 0:
            return -1
        if buf[close + 1 : close + 2] == b">":
            opens += len(_LT_PAIR.findall(buf, q - 1, close)) - 1
            if opens == 0:
                return close
        q = close + 2
    return -1


# ---------------------------------------------------------------------------- filters


def _inflate(src: bytes, cap: int) -> tuple[bytes, bool, bool]:
    """zlib data: (output, at most cap + 1 bytes; error; stream end). On corrupt input the
    output is the decodable prefix (the failing chunk is fed again in smaller pieces)."""
    d = zlib.decompressobj()
    parts: list[bytes] = []
    total = 0
    pos = 0
    step = 1 << 16
    while pos < len(src) and total <= cap:
        chunk = src[pos : pos + step]
        snap = d.copy()
        try:
            piece = d.decompress(chunk, cap + 1 - total)
        except zlib.error:
            if step == 1:
                return b"".join(parts), True, False
            d = snap
            step = max(1, step >> 4)
            continue
        parts.append(piece)
        total += len(piece)
        if d.eof:
            return b"".join(parts), False, True
        if d.unconsumed_tail:
            break  # the output cap was reached
        pos += len(chunk)
    return b"".join(parts), False, False


def _flate(content: bytes, cap: int) -> tuple[int, bytes]:
    if content[:1] == b"\r":
        if len(content) == 1:
            return OK, content
        content = content[1:]
    out, err, ended = _inflate(content, cap)
    if not out and (err or ended):
        # nothing from the start: libclamav skips to the next line and tries again
        rest = content[_next_line(content, 0, len(content)) :]
        if not rest:
            return FAIL, b""  # zlib cannot make progress on no input
        out, err, _ = _inflate(rest, cap)
        if not out:
            return (FAIL if err else BREAK), b""
    if not out:
        return (FAIL if err else BREAK), b""
    return OK, out


def _lzw_filter(content: bytes, cap: int, early: bool) -> tuple[int, bytes]:
    if content[:1] == b"\r":
        if len(content) == 1:
            return OK, content
        content = content[1:]
    out, damaged = _lzw.lzw_decode(content, early, cap)
    if not out and damaged:
        out, damaged = _lzw.lzw_decode(content[_next_line(content, 0, len(content)) :], early, cap)
    if not out:
        return (FAIL if damaged else BREAK), b""
    return OK, out


def _runlength(content: bytes, cap: int) -> tuple[int, bytes]:
    out, damaged = _lzw.rl_decode(content, cap)
    if damaged:
        return FAIL, b""
    if not out:
        return BREAK, b""
    return OK, out


def _asciihex(content: bytes) -> tuple[int, bytes]:
    """Pairs of hex digits, spaces (only) between pairs, '>' ends; libclamav gives up on
    any other byte unless it is within the last three."""
    n = len(content)
    m = _AHX_PAIRS.match(content)
    assert m is not None
    pos = m.end()
    out = binascii.unhexlify(content[: m.end()].translate(None, b" "))
    if pos + 1 >= n or content[pos] == 0x3E:
        return OK, out
    if n - pos >= 4:
        return FAIL, b""
    tail = bytearray()
    i = pos
    while i + 1 < n:
        c = content[i]
        if c == 0x20:
            i += 1
            continue
        if c == 0x3E:
            break
        if c in _HEX and content[i + 1] in _HEX:
            tail.append(int(content[i : i + 2], 16))
            i += 2
            continue
        i += 1
    return OK, out + bytes(tail)


def _ascii85(content: bytes, cap: int) -> tuple[int, bytes]:
    """ASCII85 as libclamav decodes it: up to "~>" (the last partial group is dropped
    when the marker is missing), 'z' only between groups, other bytes an error; group
    values wrap at 32 bits instead of failing."""
    marker = content.find(b"~>")
    body = (content if marker < 0 else content[:marker]).translate(None, _C_SPACE)
    if not body:
        return OK, b""
    a = np.frombuffer(body, dtype=np.uint8)
    is_z = a == 0x7A
    if np.any(((a < 0x21) | (a > 0x75)) & ~is_z):
        return FAIL, b""
    digits = a[~is_z].astype(np.uint64) - 0x21
    zpos = np.flatnonzero(is_z)
    before = zpos - np.arange(zpos.size)  # digits before each 'z'
    if np.any(before % 5):
        return FAIL, b""  # a 'z' inside a group
    whole = digits.size // 5
    partial = digits.size % 5
    if marker >= 0 and partial == 1:
        return FAIL, b""
    if (whole + zpos.size) * 4 > cap + 4:
        return FAIL, b""  # over the size limit
    weights = np.array([85**4, 85**3, 85**2, 85, 1], dtype=np.uint64)
    values = (digits[: whole * 5].reshape(whole, 5) * weights).sum(axis=1) & 0xFFFFFFFF
    # groups and 'z' in document order: a 'z' goes before the group that follows it
    keys = np.concatenate((np.arange(whole) * 5, before))
    units = np.concatenate((values, np.zeros(zpos.size, dtype=np.uint64)))
    zfirst = np.concatenate((np.ones(whole, dtype=np.int64), np.zeros(zpos.size, dtype=np.int64)))
    order = np.lexsort((zfirst, keys))
    out = units[order].astype(">u4").tobytes()
    if marker >= 0 and partial > 1:
        tail = digits[whole * 5 :]
        total = 0
        for d in tail.tolist():
            total = total * 85 + d
        total = total * 85 ** (5 - partial) + (0xFFFFFF >> ((partial - 2) * 8))
        out += bytes((total >> (24 - 8 * i)) & 0xFF for i in range(partial - 1))
    return OK, out


def _contents_text(data: bytes) -> bytes:
    """pdf_scan_contents: from the first line that starts with '[', the bytes inside
    (...) pairs, normalised as text (lower case, one space per whitespace run)."""
    if data[:1] == b"[":
        start = 1
    else:
        start = data.find(b"\n[")
        if start < 0:
            return b""
        start += 2
    text = b"".join(m.group(1) for m in _TJ_TEXT.finditer(data, start))
    return normalise_text(text)


# ---------------------------------------------------------------------------- crypto


def _crypto() -> Any:
    """The ``cryptography`` ciphers, or None when the package is missing (then encrypted
    documents are only detected)."""
    try:
        from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    except ImportError:  # pragma: no cover - depends on the environment
        return None
    return ARC4, Cipher, algorithms, modes


def _rc4(key: bytes, data: bytes) -> bytes | None:
    lib = _crypto()
    if lib is None or not data or not 5 <= len(key) * 8 <= 2048:
        return None
    arc4, cipher, _, _ = lib
    dec = cipher(arc4(key), mode=None).decryptor()
    return bytes(dec.update(data) + dec.finalize())


def _aes_cbc(key: bytes, iv: bytes, data: bytes, encrypt: bool) -> bytes | None:
    lib = _crypto()
    if lib is None or len(key) not in (16, 24, 32) or len(data) % 16:
        return None
    _, cipher, algorithms, modes = lib
    c = cipher(algorithms.AES(key), modes.CBC(iv))
    op = c.encryptor() if encrypt else c.decryptor()
    return bytes(op.update(data) + op.finalize())


def _aes_decrypt(data: bytes, key: bytes, has_iv: bool) -> bytes | None:
    """libclamav's aes_256cbc_decrypt: too short or a bad key leaves zeros; the padding
    is removed only when it is consistent."""
    if len(key) not in (16, 24, 32) or len(data) < 32:
        return bytes(len(data))
    iv, body = (data[:16], data[16:]) if has_iv else (bytes(16), data)
    blocks = len(body) // 16 * 16
    out = _aes_cbc(key, iv, body[:blocks], False)
    if out is None:
        return None
    if has_iv and out:
        pad = out[-1]
        if pad <= 16 and (pad < 2 or out[-(pad - 1) :] == bytes([pad]) * (pad - 1)):
            out = out[: len(out) - pad]
    return out


def _hash_r6(salt: bytes, udata: bytes) -> bytes | None:
    """ISO 32000-2 algorithm 2.B for the empty password (libclamav's compute_hash_r6)."""
    k = hashlib.sha256(salt + udata).digest()
    i = 0
    last = 0
    while i < 64 or i < last + 32:
        k1 = (k + udata) * 64
        e = _aes_cbc(k[:16], k[16:32], k1, True)
        if e is None:
            return None
        mod = sum(e[:16]) % 3
        k = (hashlib.sha256, hashlib.sha384, hashlib.sha512)[mod](e).digest()
        last = e[-1]
        i += 1
    return k[:32]


# ---------------------------------------------------------------------------- objects


class _ObjStm:
    __slots__ = ("buf", "first", "n", "current_pair", "found")

    def __init__(self, buf: bytes, first: int, n: int) -> None:
        self.buf = buf
        self.first = first
        self.n = n
        self.current_pair = 0
        self.found = 0


class _Obj:
    __slots__ = (
        "key",
        "buf",
        "start",
        "size",
        "flags",
        "filters",
        "stream",
        "stream_size",
        "in_objstm",
        "index",
    )

    def __init__(self, key: int, buf: bytes, start: int, size: int, in_objstm: bool) -> None:
        self.key = key
        self.buf = buf
        self.start = start
        self.size = size
        self.flags = 0
        self.filters: list[int] = []
        self.stream = -1
        self.stream_size = 0
        self.in_objstm = in_objstm
        self.index = -1

    @property
    def end(self) -> int:
        return self.start + self.size

    @property
    def name(self) -> str:
        return f"pdf obj {self.key >> 8} {self.key & 0xFF}"


class _Pdf:
    """One document: its objects, flags and encryption state."""

    def __init__(self, data: bytes, limit: int) -> None:
        self.file = data
        self.limit = limit
        self.map = b""
        self.objs: list[_Obj] = []
        self.by_key: dict[int, list[int]] = {}
        self.escaped_names = False
        self.encrypted = False
        self.decryptable = False
        self.enc_key_id = -1
        self.file_id: bytes | None = None
        self.key = b""
        self.enc_stream = ENC_UNKNOWN
        self.enc_string = ENC_UNKNOWN
        self.enc_embedded = ENC_UNKNOWN
        self.cf: tuple[bytes, int, int] | None = None
        self.objstm_bytes = 0

    # -------------------------------------------------------------- top level

    def run(self) -> Iterator[Child]:
        head = self.file[:1032].find(b"%PDF-")
        if head < 0 or len(self.file) - head < 8:
            return
        self._trailer()
        self.map = self.file[head:] if head else self.file
        self._find_objects()
        for obj in list(self.objs):
            self._parse(obj)
        self._handle_encryption()
        if self.encrypted and not self.decryptable:
            yield Child(ENCRYPTED_MARKER, b"", encrypted=True)
        i = 0
        while i < len(self.objs):  # object streams append to the list while it is walked
            yield from self._extract(self.objs[i])
            i += 1
        if self.escaped_names:
            yield Child(OBFUSCATED_MARKER, b"")

    def _trailer(self) -> None:
        """The trailer within the last 2 KiB: /Encrypt reference and the file /ID."""
        data = self.file
        lo = max(0, len(data) - 2048)
        eof = data.rfind(b"%%EOF", lo + 1)
        if eof < 0:
            return
        sx = data.rfind(b"startxref", lo + 1, eof)
        if sx < 0:
            return
        self._parse_trailer(data, lo, len(data))

    def _parse_trailer(self, buf: bytes, lo: int, hi: int) -> None:
        enc = buf.find(b"/Encrypt", lo, hi)
        if enc < 0:
            return
        self.encrypted = True
        if buf.startswith(b"/EncryptMetadata", enc):
            enc = buf.find(b"/Encrypt", enc + 16, hi)
        if enc >= 0:
            q = _next_object(buf, enc + 8, hi)
            objid = _strtol(buf, q, hi) if q >= 0 and buf[q : q + 1].isdigit() else None
            q2 = _next_object(buf, q, hi) if objid is not None else -1
            gen = _strtol(buf, q2, hi) if q2 >= 0 and buf[q2 : q2 + 1].isdigit() else None
            q3 = _next_object(buf, q2, hi) if gen is not None else -1
            if objid is not None and gen is not None and q3 >= 0 and buf[q3] == 0x52:
                self.enc_key_id = ((objid << 8) | (gen & 0xFF)) & 0xFFFFFFFF
        file_id, _ = _read_string(buf, lo, hi, b"/ID", noescape=False)
        if file_id is not None:
            self.file_id = file_id

    # -------------------------------------------------------------- finding objects

    def _find_objects(self) -> None:
        buf = self.map
        size = len(buf)
        offset = 0
        while len(self.objs) < MAX_OBJECTS:
            m = _OBJ.search(buf, offset)
            if m is None:
                return
            ws = m.start()
            obj_end = m.end()
            key = self._header(buf, offset, ws)
            if key is None:
                offset = obj_end
                continue
            endobj = buf.find(b"endobj", obj_end)
            if endobj < 0:
                obj = _Obj(key, buf, obj_end, size - obj_end, False)
                obj.flags |= TRUNCATED
                self._add(obj)
                return
            self._add(_Obj(key, buf, obj_end, endobj - obj_end, False))
            offset = endobj + 6

    @staticmethod
    def _header(buf: bytes, start: int, ws: int) -> int | None:
        """``objid genid`` before the whitespace that precedes "obj"."""
        lo = max(start, ws - 64)
        m = _OBJ_HEADER.search(buf, lo, ws)
        if m is None:
            return None
        b = m.start(1)
        objid, gen = int(m.group(1)), int(m.group(3))
        if m.group(2) == b"-" and gen:
            return None  # strtol reads the sign: a negative generation
        if b > start:
            if b == lo:
                return None  # digits run on beyond any number strtol can hold
            before = buf[b - 1]
            if before == 0x2D and objid:
                return None
            if before not in _C_SPACE and before not in b"+-":
                if not (b - 5 > start and buf[b - 5 : b] == b"%%EOF"):
                    return None
                # a revision starting right after %%EOF: libclamav reads the id from
                # a span that ends two bytes before the generation number (sic)
                value = _strtol(buf, b, m.start(3) - 2)
                if value is None or value < 0:
                    return None
                objid = value
        if objid > INT64_MAX or gen > INT64_MAX:
            return None
        return ((objid << 8) | (gen & 0xFF)) & 0xFFFFFFFF

    def _add(self, obj: _Obj) -> None:
        obj.index = len(self.objs)
        self.objs.append(obj)
        self.by_key.setdefault(obj.key, []).append(obj.index)

    def _find(self, near: _Obj, key: int) -> _Obj | None:
        """find_obj: the first object with that id from ``near`` on, else from the start."""
        hits = self.by_key.get(key)
        if not hits:
            return None
        i = bisect_left(hits, near.index)
        return self.objs[hits[i] if i < len(hits) else hits[0]]

    # -------------------------------------------------------------- parsing one object

    def _parse(self, obj: _Obj) -> None:
        """pdf_parseobj: stream bounds, dictionary names and the flags they set."""
        buf, start, end = obj.buf, obj.start, obj.end
        if obj.size <= 0:
            return
        if not obj.in_objstm:
            s = buf.find(b"stream", start, end)
            if s >= 0 and s + 6 - start < obj.size:
                idx = s + 6
                left = end - idx
                if left >= 2 and buf[idx : idx + 2] == b"\r\n":
                    idx += 2
                    left -= 2
                    if left > 2 and buf[idx] == 0x0A:
                        idx += 1
                elif left and buf[idx] == 0x0A:
                    idx += 1
                es = buf.find(b"endstream", idx, end)
                obj.flags |= STREAM
                obj.stream = idx
                obj.stream_size = (es if es >= 0 else end) - idx
        open_at = buf.find(b"<<", start, end)
        if open_at < 0:
            return
        body = open_at + 2
        close = _dict_end(buf, body, end)
        if close < 0:
            return
        obj.flags |= DICT
        self._names(obj, body, close)

    def _names(self, obj: _Obj, lo: int, hi: int) -> None:
        buf = obj.buf
        state = S_NONE
        for m in _NAME.finditer(buf, lo, hi):
            raw = m.group(1)
            escapes = b"#" in raw
            name = _NAME_HEX.sub(lambda h: bytes([int(h.group(1), 16)]), raw) if escapes else raw
            state = self._name(obj, name[:MAX_NAME], escapes, state)
            if state == S_LINEAR:
                state = S_NONE
                h = _as_int32(self._read_int(buf, lo, hi, b"/H"))
                if 0 < h < len(self.map):
                    self._parse_trailer(self.map, max(0, h - 1024), h)
            if state in _REFERRING and m.end() < hi:
                self._reference(obj, m.end(), hi, _REFERRING[state])
                state = S_NONE

    def _name(self, obj: _Obj, name: bytes, escapes: bool, state: int) -> int:
        """handle_pdfname: the state after one name, and the flags it sets."""
        act = _ACTIONS.get(name)
        if act is None:
            if state == S_FILTER and not obj.flags & (SIGNED | KNOWN_FILTERS):
                obj.flags |= FILTER_UNKNOWN
            return state
        flag, frm, to, heuristic = act
        if state == S_FILTER and flag & KNOWN_FILTERS and len(obj.filters) < 64:
            obj.filters.append(flag)
        if heuristic and escapes:
            self.escaped_names = True
        if frm in (state, S_ANY):
            obj.flags |= flag
            return to
        return S_NONE if state == S_S else state

    def _reference(self, obj: _Obj, pos: int, hi: int, flag: int) -> None:
        """``/Contents 14 0 R`` and the like: the flag moves to the referenced object."""
        buf = obj.buf
        q = _next_object(buf, pos, hi)
        if q < 0 or not buf[q : q + 1].isdigit():
            return
        objid = _strtol(buf, q, hi)
        if objid is None:
            return
        q = _read_digits_end(buf, q, hi)
        q2 = _next_object(buf, q, hi)
        if q2 < 0 or not buf[q2 : q2 + 1].isdigit():
            return
        gen = _strtol(buf, q2, hi)
        if gen is None:
            return
        q3 = _next_object(buf, q2, hi)
        if q3 < 0 or buf[q3] != 0x52:
            return
        other = self._find(obj, ((objid << 8) | (gen & 0xFF)) & 0xFFFFFFFF)
        if other is not None:
            obj.flags &= ~flag
            other.flags |= flag

    # -------------------------------------------------------------- dictionary values

    def _read_int(self, buf: bytes, lo: int, hi: int, key: bytes) -> int:
        q = _get_dict(buf, lo, hi, key)
        if q < 0:
            return -1
        value = _strtol(buf, q, hi)
        return -1 if value is None else value

    def _find_length(self, obj: _Obj, lo: int, hi: int) -> int:
        """find_length: /Length, direct or through an indirect object."""
        buf = obj.buf
        if hi - lo < 8:
            return 0
        at = buf.find(b"/Length", lo, hi)
        if at < 0:
            return 0
        value_at = _next_object(buf, at + 1, hi)
        if value_at < 0:
            return 0
        length = _strtol(buf, value_at, hi)
        if length is None or length < 0:
            return 0
        q = _read_digits_end(buf, value_at, hi)
        if q < hi and buf[q] == 0x20:
            gen = _strtol(buf, q + 1, hi)
            if gen is None or gen < 0:
                return 0
            q = _read_digits_end(buf, q + 1, hi)
            if hi - q < 2:
                return 0
            if buf[q : q + 2] == b" R":
                other = self._find(obj, ((length << 8) | (gen & 0xFF)) & 0xFFFFFFFF)
                if other is None:
                    return 0
                ob = other.buf
                v = _next_object(ob, other.start, len(ob))
                if v < 0:
                    return 0
                length_ = _strtol(ob, v, len(ob))
                if length_ is None or length_ < 0:
                    return 0
                length = length_
        if obj.in_objstm:
            return length
        if value_at + length + 5 > len(self.map):
            length = max(0, len(self.map) - value_at - 5)
        return length

    # -------------------------------------------------------------- encryption

    def _handle_encryption(self) -> None:
        """pdf_handle_enc: the key for an empty user (or R6 owner) password."""
        if self.enc_key_id < 0 or self.file_id is None or not self.objs:
            return
        obj = self._find(self.objs[0], self.enc_key_id)
        if obj is None:
            return
        buf, q, hi = obj.buf, obj.start, obj.end
        self.enc_stream = self.enc_string = self.enc_embedded = ENC_UNKNOWN
        std = buf.find(b"/Standard", q, hi)
        if std < 0:
            return
        length = self._read_int(buf, std, hi, b"/Length")
        if length == -1:
            length = self._read_int(buf, q, hi, b"/Length")
        length = _as_int32(length) & 0xFFFFFFFF
        if length < 40:
            length = 40
        rev = _as_int32(self._read_int(buf, q, hi, b"/R"))
        if rev == -1 or not 2 <= rev <= 6:
            return
        perms = _as_int32(self._read_int(buf, q, hi, b"/P"))
        if rev < 6 and perms == -1:
            return
        oulen = 32 if rev < 5 else 48
        encrypt_meta = True
        ue = oe = None
        if rev in (2, 3):
            self.enc_stream = self.enc_string = self.enc_embedded = ENC_V2
        else:
            encrypt_meta = _read_bool(buf, q, hi, b"/EncryptMetadata", True)
            stmf = _read_value(buf, q, hi, b"/StmF")
            strf = _read_value(buf, q, hi, b"/StrF")
            eff = _read_value(buf, q, hi, b"/EFF")
            cf = _get_dict(buf, q, hi, b"/CF")
            self.cf = (buf, cf, hi) if cf >= 0 else None
            self.enc_stream = self._enc_method(stmf, ENC_IDENTITY)
            self.enc_string = self._enc_method(strf, ENC_IDENTITY)
            self.enc_embedded = self._enc_method(eff, self.enc_stream)
            if rev == 4:
                length = 128
            else:
                length = 256
                ue, _ = _read_string(buf, q, hi, b"/UE", noescape=False)
                oe, _ = _read_string(buf, q, hi, b"/OE", noescape=False)
        if length == 0xFFFFFFFF:
            length = 40
        o, _ = _read_string(buf, q, hi, b"/O", noescape=False)
        if o is None or len(o) < oulen or any(o[oulen:]):
            return
        u, _ = _read_string(buf, q, hi, b"/U", noescape=False)
        if u is None or len(u) < oulen or any(u[oulen:]):
            return
        if length % 8:
            return
        if rev == 6 and oe is not None:
            self._owner_r6(o, u, oe)
        if not self.key:
            self._user(rev, o, u, perms, encrypt_meta, ue, length)
        if self.key:
            self.decryptable = True

    def _enc_method(self, name: bytes | None, default: int) -> int:
        """parse_enc_method: a crypt filter's /CFM from the /CF dictionary."""
        if name is None:
            return default
        if name == b"Identity":
            return ENC_IDENTITY
        if self.cf is None:
            return default
        buf, lo, hi = self.cf
        q = _get_dict(buf, lo, hi, name)
        if q < 0:
            return default
        cfm = _read_value(buf, q, hi, b"/CFM")
        if cfm is None:
            return ENC_UNKNOWN
        for prefix, method in ((b"V2", ENC_V2), (b"AESV2", ENC_AESV2), (b"AESV3", ENC_AESV3)):
            if cfm.startswith(prefix):
                return method
        return ENC_NONE if cfm.startswith(b"None") else ENC_UNKNOWN

    def _owner_r6(self, o: bytes, u: bytes, oe: bytes) -> None:
        check = _hash_r6(o[32:40], u[:48])
        if check is None or check != o[:32]:
            return
        inter = _hash_r6(o[40:48], u[:48])
        if inter is None or len(oe) != 32:
            return
        key = _aes_cbc(inter, bytes(16), oe, False)
        if key is not None:
            self.key = key

    def _user(
        self,
        rev: int,
        o: bytes,
        u: bytes,
        perms: int,
        encrypt_meta: bool,
        ue: bytes | None,
        length: int,
    ) -> None:
        fid = self.file_id or b""
        if rev in (2, 3, 4):
            seed = _PADDING + o[:32] + struct.pack("<I", perms & 0xFFFFFFFF) + fid
            if rev >= 4 and not encrypt_meta:
                seed += b"\xff\xff\xff\xff"
            digest = hashlib.md5(seed).digest()
            length = min(length, 128)
            if rev >= 3:
                for _ in range(50):
                    digest = hashlib.md5(digest[: length // 8]).digest()
            if rev == 2:
                length = 40
            key = digest[: length // 8]
            if rev == 2:
                ok = _rc4(key, _PADDING) == u[:32]
            else:
                check = hashlib.md5(_PADDING + fid).digest()
                for i in range(20):
                    check = _rc4(bytes(b ^ i for b in key), check) or b""
                ok = len(check) == 16 and check == u[:16]
            if ok:
                self.key = key
        elif rev == 5:
            if hashlib.sha256(u[32:40]).digest() == u[:32] and ue is not None and len(ue) == 32:
                found = _aes_cbc(hashlib.sha256(u[40:48]).digest(), bytes(16), ue, False)
                if found is not None:
                    self.key = found
        elif rev == 6 and ue is not None:
            valid = _hash_r6(u[32:40], b"")
            if valid is None or valid != u[:32]:
                return
            inter = _hash_r6(u[40:48], b"")
            if inter is None or len(ue) != 32:
                return
            found = _aes_cbc(inter, bytes(16), ue, False)
            if found is not None:
                self.key = found

    def _decrypt(self, key_id: int, data: bytes, method: int) -> bytes | None:
        """decrypt_any: None when the method cannot decrypt."""
        if not data or not self.key:
            return None
        if method in (ENC_V2, ENC_AESV2):
            seed = self.key + bytes(
                [
                    (key_id >> 8) & 0xFF,
                    (key_id >> 16) & 0xFF,
                    (key_id >> 24) & 0xFF,
                    key_id & 0xFF,
                    0,
                ]
            )
            if method == ENC_AESV2:
                seed += b"sAlT"
            objkey = hashlib.md5(seed).digest()[: min(len(self.key) + 5, 16)]
            if method == ENC_V2:
                return _rc4(objkey, data)
            return _aes_decrypt(data, objkey, True)
        if method == ENC_AESV3:
            return _aes_decrypt(data, self.key, True)
        if method == ENC_IDENTITY:
            return data
        return None

    def _method_for(self, obj: _Obj) -> int:
        if obj.flags & EMBEDDED_FILE:
            return self.enc_embedded
        if obj.flags & STREAM:
            return self.enc_stream
        return self.enc_string

    # -------------------------------------------------------------- extraction

    def _extract(self, obj: _Obj) -> Iterator[Child]:
        """pdf_extract_obj: the object's child (and its page-content text) when libclamav
        dumps it."""
        flags = obj.flags
        if (not flags & STREAM or flags & HASFILTERS) and not flags & DUMP_MASK:
            return
        if flags & IMAGE and not flags & FILTER_DCT:
            return
        out: bytes | None
        if flags & STREAM and not obj.in_objstm:
            out = yield from self._stream(obj)
        elif flags & JAVASCRIPT:
            out = self._javascript(obj)
        else:
            out = obj.buf[obj.start : obj.end]
        if not out:
            return
        yield self._child(obj.name, out)
        if flags & CONTENTS:
            text = _contents_text(out)
            if text:
                yield self._child(obj.name + " contents", text)

    def _child(self, name: str, data: bytes) -> Child:
        if len(data) > self.limit:
            return Child(name, data[: self.limit], oversized=True)
        return Child(name, data)

    def _stream(self, obj: _Obj) -> Generator[Child, None, bytes | None]:
        """The stream after its filters (pdf_decodestream); children for filter results
        over the size limit are yielded as oversized markers on the way."""
        buf, start = obj.buf, obj.start
        length = self._find_length(obj, start, obj.stream)
        orig = length
        size = obj.stream_size
        length = min(length, size)
        if not obj.flags & FILTER_FLATE and length == 0:
            # libclamav looks at the end of the stream from the object's start (sic)
            length = size
            q = start + size - 1
            if length > 0 and 0 <= q < len(buf):
                if buf[q] == 0x0A:
                    length -= 1
                    if length > 0 and q > 0 and buf[q - 1] == 0x0D:
                        length -= 1
                elif buf[q] == 0x0D:
                    length -= 1
        elif size > length + 2:
            length = size
        del orig
        if length == 0:
            length = size
            if length == 0:
                return None
        raw = buf[obj.stream : obj.stream + length]
        xref = buf.find(b"/XRef", start, obj.stream) >= 0
        parms = _get_dict(buf, start, obj.stream, b"/DecodeParms")
        if parms < 0:
            parms = _get_dict(buf, start, obj.stream, b"/DP")
        early = True
        if parms >= 0:
            m = _EARLY.search(buf, parms, obj.stream)
            if m is not None:
                early = int(m.group(1)) != 0
        objstm: tuple[int, int] | None = None
        if _get_dict(buf, start, obj.stream, b"/Type/ObjStm") >= 0:
            first = _as_int32(self._read_int(buf, start, obj.stream, b"/First"))
            total = _as_int32(self._read_int(buf, start, obj.stream, b"/Length"))
            count = _as_int32(self._read_int(buf, start, obj.stream, b"/N"))
            if first != -1 and total != -1 and count != -1:
                objstm = (first & 0xFFFFFFFFFFFFFFFF, count & 0xFFFFFFFFFFFFFFFF)
        content, success, ok = yield from self._filters(obj, raw, xref, early)
        if objstm is not None and ok:
            self._object_stream(content, *objstm)
        return content if success else raw

    def _filters(
        self, obj: _Obj, raw: bytes, xref: bool, early: bool
    ) -> Generator[Child, None, tuple[bytes, int, bool]]:
        """pdf_decodestream_internal: (content, filters that worked, no error)."""
        content = raw
        if self.decryptable and not obj.flags & FILTER_CRYPT and not xref:
            dec = self._decrypt(obj.key, content, self._method_for(obj))
            if dec is None:
                return raw, 0, False
            content = dec
        success = 0
        ok = True
        cap = self.limit
        for flt in obj.filters:
            if flt == FILTER_A85:
                status, new = _ascii85(content, cap)
            elif flt == FILTER_RL:
                status, new = _runlength(content, cap)
            elif flt == FILTER_FLATE:
                status, new = _flate(content, cap)
            elif flt == FILTER_AH:
                status, new = _asciihex(content)
            elif flt == FILTER_LZW:
                status, new = _lzw_filter(content, cap, early)
            elif flt == FILTER_CRYPT:
                dec = self._decrypt(obj.key, content, ENC_IDENTITY)
                status, new = (OK, dec) if dec is not None else (FAIL, b"")
            else:  # DCT, JPX, CCITT, JBIG2: not decoded, the chain stops here
                status, new = BREAK, content
            if status == OK and len(new) > cap:
                # libclamav refuses a filter result over MaxFileSize (and may alert)
                yield Child(obj.name, new[:cap], oversized=True)
                status, new = FAIL, b""
            if status != FAIL:
                content = new
            if not content:
                break
            if status != OK:
                ok = status == BREAK
                break
            success += 1
        return content, success, ok

    def _object_stream(self, buf: bytes, first: int, count: int) -> None:
        """pdf_find_and_parse_objs_in_objstm: objects listed by (id, offset) pairs."""
        if not first or not buf or not count or first >= len(buf):
            return
        if self.objstm_bytes + len(buf) > OBJSTM_BUDGET:
            log.debug("pdf: object stream budget exhausted")
            return
        self.objstm_bytes += len(buf)
        stm = _ObjStm(buf, first, count)
        for _ in range(min(count, MAX_OBJECTS)):
            if len(self.objs) >= MAX_OBJECTS:
                return
            obj = self._next_in_objstm(stm)
            if obj is None:
                return
            self._add(obj)
            self._parse(obj)

    @staticmethod
    def _next_in_objstm(stm: _ObjStm) -> _Obj | None:
        buf = stm.buf
        n = len(buf)
        pos = stm.current_pair
        objid = _strtol(buf, pos, n)
        if objid is None or objid < 0:
            return None
        pos = _skip_ws(buf, _read_digits_end(buf, pos, n), stm.first)
        off = _strtol(buf, pos, n)
        if off is None or off < 0 or stm.first + off > n:
            return None
        start = stm.first + off
        stm.found += 1
        pos = _read_digits_end(buf, pos, n)
        stm.current_pair = _skip_ws(buf, pos, stm.first)
        if stm.found < stm.n and pos < n:
            q = _skip_ws(buf, _read_digits_end(buf, stm.current_pair, n), stm.first)
            nxt = _strtol(buf, q, n)
            if nxt is None or nxt < 0 or nxt <= off or stm.first + nxt > n:
                return None
            size = nxt - off
        else:
            size = n - start
        return _Obj(((objid << 8) & 0xFFFFFFFF), buf, start, size, True)

    def _javascript(self, obj: _Obj) -> bytes:
        """/JS strings after each /JavaScript name, with what follows each string up to
        the next token (libclamav writes that too)."""
        buf, q, end = obj.buf, obj.start, obj.end
        parts: list[bytes] = []
        total = 0
        while q < end:
            at = buf.find(b"/JavaScript", q, end)
            if at < 0:
                break
            q = at + 11
            js, qend = _read_string(buf, q, end, b"/JS", noescape=not self.decryptable)
            q = qend
            if js is None:
                continue
            js = js.split(b"\x00", 1)[0]
            if self.decryptable:
                dec = self._decrypt(obj.key, js, self.enc_string)
                if dec is not None:
                    js = dec
            if total <= self.limit:
                parts.append(js)
                total += len(js)
            if q < end:
                q2 = _next_object(buf, q, end)
                if q2 < 0:
                    q2 = end - 1
                q3 = buf.find(b")", q, end)
                if 0 <= q3 < q2:
                    q2 = q3
                while q2 > q and buf[q2 - 1] == 0x20:
                    q2 -= 1
                if q2 > q and total <= self.limit:
                    parts.append(buf[q - 1 : q2])
                    total += q2 - q + 1
        return b"".join(parts)


def _skip_ws(buf: bytes, pos: int, end: int) -> int:
    while pos < end and buf[pos] in _PDF_WS:
        pos += 1
    return pos


def _get_dict(buf: bytes, lo: int, hi: int, key: bytes) -> int:
    """pdf_getdict: where the value of the first ``key`` in [lo, hi) starts, or -1."""
    if hi - lo <= 0:
        return -1
    at = buf.find(key, lo, hi)
    if at < 0:
        return -1
    q = _next_object(buf, at + 1, hi)
    if q < 0:
        return -1
    while q > at and buf[q - 1] in b"<\n":
        q -= 1
    return q


def _read_value(buf: bytes, lo: int, hi: int, key: bytes) -> bytes | None:
    """pdf_readval: a name value, without its slash."""
    q = _get_dict(buf, lo, hi, key)
    if q < 0:
        return None
    while q < hi and buf[q] == 0x20:
        q += 1
    if q >= hi or buf[q] != 0x2F:
        return None
    q += 1
    e = q
    while (
        e < hi and buf[e] != 0 and buf[e] != 0x2F and not (e + 1 < hi and buf[e : e + 2] == b">>")
    ):
        e += 1
    while e > q and buf[e - 1] in _C_SPACE:
        e -= 1
    return buf[q:e]


def _read_bool(buf: bytes, lo: int, hi: int, key: bytes, default: bool) -> bool:
    q = _get_dict(buf, lo, hi, key)
    if q < 0 or hi - q < 5:
        return default
    if buf.startswith(b"true", q):
        return True
    if buf.startswith(b"false", q):
        return False
    return default


def _unescape(body: bytes) -> bytes:
    """Literal-string escapes as libclamav's pdf_readstring decodes them."""

    def one(m: re.Match[bytes]) -> bytes:
        s = m.group(1)
        if s is None:
            return b"\\"
        c = s[:1]
        if c in b"nrtbf" and len(s) == 1:
            return {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}[c]
        if c in b"()\\" and len(s) == 1:
            return c
        if c in b"\r\n":
            return b""
        if c.isdigit():
            if len(s) == 3:  # three bytes taken as octal digits, whatever they are
                return bytes([(64 * (s[0] - 48) + 8 * (s[1] - 48) + (s[2] - 48)) & 0xFF])
            return s[1:]  # too close to the end: the digit alone is dropped
        return b"\\" + s

    return _STR_ESCAPE.sub(one, body)


def _read_string(
    buf: bytes, lo: int, hi: int, key: bytes, noescape: bool
) -> tuple[bytes | None, int]:
    """pdf_readstring: a literal or hex string value and where its parsing stopped."""
    q = _get_dict(buf, lo, hi, key)
    if q < 0 or q >= hi:
        return None, lo
    if buf[q] == 0x28:
        close = _paren_end(buf, q + 1, hi)
        if close < 0 or close >= hi:
            return None, lo
        body = buf[q + 1 : close - 1]
        return (body if noescape else _unescape(body)), close
    if buf[q] == 0x3C and hi - q >= 3:
        s = q + 1
        while s < hi and buf[s] == 0x0A:
            s += 1
        e = buf.find(b">", s + 1, hi)
        if e < 0:
            return None, lo
        try:
            return binascii.unhexlify(buf[s:e]), e
        except (binascii.Error, ValueError):
            return None, e
    return None, lo


def unpack_pdf(data: bytes, limit: int) -> Iterator[Child]:
    """Children of a PDF document, in libclamav's order (see the module docstring)."""
    try:
        yield from _Pdf(data, limit).run()
    except (ValueError, IndexError, OverflowError, MemoryError, RecursionError) as exc:
        log.debug("pdf: %s", exc)


UNPACKERS: dict[FileType, Callable[[bytes, int], Iterator[Child]]] = {
    FileType.PDF: unpack_pdf,
    **RTF_UNPACKERS,
}
