"""Transfer decoders for mail: base64, quoted-printable, uuencode, yEnc and BinHex 4.0.

Each decoder reproduces the lenient behaviour of libclamav's mail code (observed on 1.4.6),
not the RFCs: base64 ignores everything after an ``=`` on each line and flushes a dangling
group the way libclamav does, quoted-printable keeps broken escapes as libclamav does, and
the BinHex decoder stops at the first character outside its alphabet. Everything is done
with C-backed primitives (binascii, bytes.translate, re, numpy); Python only loops over
lines or escape sequences, never over every byte.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "BinHexResult",
    "b64_decode_lines",
    "binhex_decode",
    "is_uuencode_begin",
    "qp_decode_lines",
    "simil",
    "uu_decode",
    "yenc_decode_lines",
]

_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VALUE = {c: i for i, c in enumerate(_B64_ALPHABET)}
_NOT_B64 = bytes(c for c in range(256) if c not in _B64_VALUE)
_AFTER_EQUALS = re.compile(rb"=[^\n]*")

# uuencode and base64 pack 6-bit groups the same way; only the alphabet differs. libclamav
# decodes a uuencoded character as (c - 32) and keeps the low six bits of each value.
_UU_TO_B64 = bytes(_B64_ALPHABET[(c - 32) & 0x3F] for c in range(256))
_UU_BEGIN = re.compile(rb"b(?i:egin )[0-9]{3} ")


def _flush_b64(rest: bytes) -> bytes:
    """libclamav's treatment of 1-3 base64 characters left at the end of a part."""
    vals = [_B64_VALUE[c] for c in rest]
    b1 = vals[0]
    if len(vals) == 1:
        return bytes([(b1 << 2) & 0xFF])
    b2 = vals[1]
    if len(vals) == 2:
        if not b2:
            return bytes([(b1 << 2) & 0xFF])
        out = [((b1 << 2) | (b2 >> 4)) & 0xFF]
        if (b2 << 4) & 0xFF:
            out.append((b2 << 4) & 0xFF)
        return bytes(out)
    b3 = vals[2]
    out = [((b1 << 2) | (b2 >> 4)) & 0xFF, ((b2 << 4) | (b3 >> 2)) & 0xFF]
    if b3 & 3:
        out.append((b3 << 6) & 0xFF)
    return bytes(out)


def b64_decode_lines(lines: Sequence[bytes], limit: int) -> bytes:
    """Base64 as libclamav decodes a mail part: each line is cut at its first ``=``,
    characters outside the alphabet are dropped, groups continue across lines, and at most
    ``limit`` bytes are produced."""
    text = _AFTER_EQUALS.sub(b"", b"\n".join(lines)).translate(None, _NOT_B64)
    keep = -(-max(limit, 0) // 3) * 4
    if len(text) > keep:
        text = text[:keep]
    full = len(text) & ~3
    out = binascii.a2b_base64(text[:full]) if full else b""
    if full < len(text):
        out += _flush_b64(text[full:])
    return out[:limit]


_QP_IRREGULAR = re.compile(rb"=(?![0-9A-Fa-f]{2}|\n)")
_QP_ESCAPE = re.compile(rb"=(\n|[0-9A-Fa-f](?:\n|[^\n])|[^0-9A-Fa-f\n](?=\n))")


def _hex(c: int) -> int:
    """libclamav's hex(): an invalid digit counts as '='."""
    if 48 <= c <= 57:
        return c - 48
    if 65 <= c <= 70:
        return c - 55
    if 97 <= c <= 102:
        return c - 87
    return 0x3D


def _qp_escape(m: re.Match[bytes]) -> bytes:
    seq = m.group(1)
    if seq == b"\n":
        return b""  # soft line break
    first = _hex(seq[0])
    if first == 0x3D:
        return b"="  # '=' and an invalid digit at the end of the line: the digit is lost
    if seq[1] == 10:
        return bytes([first, 10])  # a single digit before the end of the line
    return bytes([((first << 4) | _hex(seq[1])) & 0xFF])


def qp_decode_lines(lines: Sequence[bytes], limit: int) -> bytes:
    """Quoted-printable per line as libclamav does (every line ends with a newline unless it
    ends with a soft break ``=``); well-formed input goes through binascii.a2b_qp."""
    text = b"\n".join(lines) + b"\n"
    if _QP_IRREGULAR.search(text) is None:
        return binascii.a2b_qp(text)[:limit]
    return _QP_ESCAPE.sub(_qp_escape, text)[:limit]


def is_uuencode_begin(line: bytes) -> bool:
    """uuencode(5) ``begin NNN name`` as libclamav recognises it (a lowercase ``b``)."""
    return len(line) >= 10 and _UU_BEGIN.match(line) is not None


def uu_decode(lines: Iterable[bytes], limit: int) -> tuple[bytes, bool]:
    """Decode uuencoded lines (without line ends) up to the line that ends the block
    (``end``, an empty line or anything that is not a data line), which is consumed from
    ``lines``. Returns at most ``limit`` bytes and whether more was cut off."""
    chunks: list[bytes] = []
    batch: list[bytes] = []  # translated lines whose groups decode to exactly their length
    size = 0
    for line in lines:
        if not line or (line[0] & 0x3F) == 0x20:
            break
        reallen = (line[0] - 32) & 0xFF
        rest = len(line) - 1
        if reallen == 0 or reallen > 62 or reallen > rest:
            break  # also covers "end" and a new "begin" line
        groups = -(-reallen // 3)
        body = line[1 : 1 + 4 * groups].translate(_UU_TO_B64)
        if reallen % 3 == 0 and len(body) == 4 * groups:
            batch.append(body)
        else:
            if batch:
                chunks.append(binascii.a2b_base64(b"".join(batch)))
                batch = []
            full = rest & ~3  # libclamav decodes only whole groups; missing bytes are zeros
            body = body[: min(len(body), full)]
            decoded = binascii.a2b_base64(body) if body else b""
            chunks.append(decoded[:reallen].ljust(reallen, b"\0"))
        size += reallen
        if size > limit:
            break
    if batch:
        chunks.append(binascii.a2b_base64(b"".join(batch)))
    out = b"".join(chunks)
    return out[:limit], len(out) > limit


def yenc_decode_lines(lines: Sequence[bytes], limit: int) -> bytes:
    """yEnc data lines up to ``=yend``: ``=`` escapes subtract 64, other bytes 42."""
    out: list[bytes] = []
    size = 0
    for line in lines:
        if not line:
            continue
        if line.startswith(b"=yend "):
            break
        pieces = line.split(b"=")
        dec = [pieces[0].translate(_YENC_PLAIN)]
        for piece in pieces[1:]:
            if not piece:
                break  # '=' at the end of a line ends that line
            dec.append(piece[:1].translate(_YENC_ESCAPED) + piece[1:].translate(_YENC_PLAIN))
        chunk = b"".join(dec)
        out.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return b"".join(out)[:limit]


_YENC_PLAIN = bytes((c - 42) & 0xFF for c in range(256))
_YENC_ESCAPED = bytes((c - 64) & 0xFF for c in range(256))


# ---------------------------------------------------------------------------------- simil


def _common(a: str, b: str) -> int:
    """Characters shared by ``a`` and ``b`` by recursive longest common substrings
    (Ratcliff/Obershelp, as libclamav's simil() counts them)."""
    best = 0
    at_a = at_b = 0
    for i in range(len(a)):
        for j in range(len(b)):
            k = 0
            while i + k < len(a) and j + k < len(b) and a[i + k] == b[j + k]:
                k += 1
            if k > best:
                best, at_a, at_b = k, i, j
    if not best:
        return 0
    score = best
    la, lb = a[:at_a], b[:at_b]
    if (len(la) > 1 and lb) or (len(lb) > 1 and la):
        score += _common(la, lb)
    ra, rb = a[at_a + best :], b[at_b + best :]
    if (len(ra) > 1 and rb) or (len(rb) > 1 and ra):
        score += _common(ra, rb)
    return score


def simil(str1: bytes, str2: bytes) -> int:
    """How alike two short strings are, 0-100, case-insensitively (libclamav's simil();
    strings of 50 characters or more are never alike)."""
    a = str1.decode("latin-1").lower()
    b = str2.decode("latin-1").lower()
    if a == b:
        return 100
    a = a.rstrip()
    b = b.rstrip()
    if len(a) > 49 or len(b) > 49:
        return -5
    total = len(a) + len(b)
    return _common(a, b) * 200 // total if total else 0


# --------------------------------------------------------------------------------- BinHex

_HQX_ALPHABET = b"!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr"
_HQX_TABLE = bytes(_HQX_ALPHABET.index(c) if c in _HQX_ALPHABET else 0xFF for c in range(256))
_HQX_FLUSH = 8192 - 256  # libclamav hands decoded bytes on in blocks of this size
_HQX_CHUNK = 1 << 22  # input characters decoded per numpy pass (a multiple of 4)


@dataclass(frozen=True, slots=True)
class BinHexResult:
    """The forks of a BinHex file that libclamav would scan (None: not scanned); the data
    fork is cut at the limit (``data_cut``: it was longer)."""

    name: bytes
    data: bytes | None
    data_cut: bool
    resource: bytes | None


class _Rle:
    """The 0x90 run-length stage, applied to successive blocks of decoded bytes."""

    def __init__(self) -> None:
        self.in_run = (
            False  # the previous block ended with a marker: this one starts with its count
        )
        self.last = 0  # the last byte written, which a run repeats

    def expand(
        self, s: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
        """Values and repeat counts for the bytes of ``s`` (np.repeat gives the output)."""
        n = len(s)
        values = s.copy()
        repeats = np.ones(n, dtype=np.int64)
        if not n:
            return values, repeats
        idx = np.arange(n)
        carried = self.in_run
        first = 1 if carried else 0
        markers = np.zeros(n, dtype=bool)
        is90 = s[first:] == 0x90
        if is90.any():
            # in a run of 0x90 bytes, markers and counts alternate, starting with a marker
            local = idx[: n - first]
            starts = is90 & ~np.concatenate(([False], is90[:-1]))
            run_start = np.maximum.accumulate(np.where(starts, local, 0))
            markers[first:] = is90 & ((local - run_start) % 2 == 0)
        counts = np.zeros(n, dtype=bool)
        counts[1:] = markers[:-1]
        if carried:
            counts[0] = True
        literal = ~markers & ~counts
        m_idx = np.flatnonzero(markers[:-1])  # markers whose count is in this block
        c = s[m_idx + 1].astype(np.int64)
        zero = c == 0
        updates = literal.copy()
        updates[m_idx[zero]] = True
        values[m_idx[zero]] = 0x90
        c0 = int(s[0])
        if carried and c0 == 0:
            updates[0] = True
            values[0] = 0x90
        last_at = np.maximum.accumulate(np.where(updates, idx, -1))
        runs = m_idx[~zero]
        prev = np.where(runs > 0, last_at[np.maximum(runs - 1, 0)], -1)
        values[runs] = np.where(prev >= 0, values[np.maximum(prev, 0)], self.last)
        repeats[markers | counts] = 0
        repeats[m_idx[zero]] = 1
        repeats[runs] = c[~zero] - 1
        if carried:
            if c0 == 0:
                repeats[0] = 1
            else:
                values[0] = self.last
                repeats[0] = c0 - 1
        self.in_run = bool(markers[-1])
        if last_at[-1] >= 0:
            self.last = int(values[int(last_at[-1])])
        return values, repeats


def _hqx_bytes(vals: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Pack 6-bit values into bytes (a partial final group of k values gives k-1 bytes)."""
    n = len(vals)
    q = -(-n // 4)
    flat = np.zeros(q * 4, dtype=np.uint8)
    flat[:n] = vals
    v = flat.reshape(q, 4)
    out = np.empty((q, 3), dtype=np.uint8)
    out[:, 0] = (v[:, 0] << 2) | (v[:, 1] >> 4)
    out[:, 1] = (v[:, 1] << 4) | (v[:, 2] >> 2)
    out[:, 2] = (v[:, 2] << 6) | v[:, 3]
    return out.reshape(-1)[: (3 * n) // 4]


def _hqx_header(out: bytes | bytearray) -> tuple[bytes, int, int, int] | None:
    """Name, header length, data and resource fork sizes from the decoded stream."""
    if not out:
        return None
    namelen = out[0]
    hdrlen = 1 + namelen + 1 + 4 + 4 + 2
    if len(out) < hdrlen + 10:
        return None
    datalen = int.from_bytes(out[hdrlen : hdrlen + 4], "big")
    reslen = int.from_bytes(out[hdrlen + 4 : hdrlen + 8], "big")
    return bytes(out[1 : 1 + namelen]), hdrlen + 10, datalen, reslen


class _HqxOutput:
    """The decoded stream, kept only as far as it is needed, with libclamav's hand-overs:
    decoded bytes are passed on once at least _HQX_FLUSH of them are waiting (and at the end
    of the input); when decoding stops at a bad character, what waits is lost."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.need = 300  # enough for any header until the header is known
        self.produced = 0
        self.flushed = 0
        self.header: tuple[bytes, int, int, int] | None = None

    def add(
        self, values: npt.NDArray[np.uint8], repeats: npt.NDArray[np.int64], limit: int
    ) -> None:
        cum = np.cumsum(repeats) + self.produced
        while True:
            at = int(np.searchsorted(cum, self.flushed + _HQX_FLUSH, side="left"))
            if at >= len(cum):
                break
            self.flushed = int(cum[at])
        end = int(cum[-1]) if len(cum) else self.produced
        while len(self.out) < min(self.need, end):
            a = len(self.out)
            b = min(self.need, end)
            i0 = int(np.searchsorted(cum, a, side="right"))
            i1 = int(np.searchsorted(cum, b, side="left"))
            base = int(cum[i0] - repeats[i0])
            seg = np.repeat(values[i0 : i1 + 1], repeats[i0 : i1 + 1])
            self.out += seg[a - base : b - base].tobytes()
            if self.header is None:
                self.header = _hqx_header(self.out)
                if self.header is not None:
                    _, hdrlen, datalen, reslen = self.header
                    self.need = hdrlen + min(datalen, limit + 1) + 2
                    if 5 <= reslen <= limit:
                        self.need += reslen
        self.produced = end


def binhex_decode(data: bytes, limit: int) -> BinHexResult | None:
    """BinHex 4.0 as libclamav's cli_binhex reads it.

    The first line (the banner) is skipped; the stream must then start with ':'; line
    breaks and ':' are ignored; decoding stops at the first character outside the alphabet,
    and then only the bytes libclamav had already handed on count. The header gives the
    name and the sizes of the forks; a data fork longer than ``limit`` is reported cut
    (libclamav's size check refuses it), a resource fork longer than ``limit`` or shorter
    than 5 bytes is skipped."""
    m = re.search(rb"[\r\n]", data)
    if m is None:
        return None
    stream = data[m.start() :].translate(None, b"\r\n")
    if not stream.startswith(b":"):
        return None
    codes = np.frombuffer(stream.translate(None, b":").translate(_HQX_TABLE), dtype=np.uint8)
    bad = np.flatnonzero(codes == 0xFF)
    stopped = bad.size > 0
    if stopped:
        codes = codes[: int(bad[0])]
    rle = _Rle()
    state = _HqxOutput()
    for lo in range(0, len(codes), _HQX_CHUNK):
        state.add(*rle.expand(_hqx_bytes(codes[lo : lo + _HQX_CHUNK])), limit)
        if state.header is not None and len(state.out) >= state.need:
            if not stopped or state.flushed >= state.need:
                break  # everything that matters is decoded
    processed = state.flushed if stopped else state.produced
    header = state.header
    if header is None:
        return None
    name, hdrlen, datalen, reslen = header
    if processed <= hdrlen:
        return None  # libclamav: "file too short for header"
    out = state.out
    end = hdrlen + datalen
    if datalen > limit:
        return BinHexResult(name, bytes(out[hdrlen : hdrlen + limit]), True, None)
    if processed >= end:
        data_out: bytes | None = bytes(out[hdrlen:end])
    elif not stopped:
        return BinHexResult(name, bytes(out[hdrlen:processed]), False, None)  # partial fork
    else:
        return None
    res_out: bytes | None = None
    rstart = end + 2
    if 5 <= reslen <= limit and processed >= rstart:
        if processed >= rstart + reslen:
            res_out = bytes(out[rstart : rstart + reslen])
        elif not stopped:
            res_out = bytes(out[rstart:processed])
    return BinHexResult(name, data_out, False, res_out)
