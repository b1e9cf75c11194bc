"""RFC 2397 ``data:`` URIs embedded in HTML, as libclamav's HTML normaliser extracts them.

libclamav (htmlnorm.c, cli_html_normalise) looks at every attribute value of every tag,
whatever the tag or attribute: a value that starts with ``data:`` exactly (lower case,
unquoted or after a single or double quote, right after the ``=``) is an inline datum. The
media type up to the first comma is lower-cased; the data runs to the closing quote (or, for
an unquoted value, to whitespace or ``>``). Inside the data ``%XX`` escapes are decoded and
character references are dropped (they go to the normalised text instead). Tags inside
comments (``<!...>``, which end at the first ``>``) and inside ``<script>``/``<style>`` are
not parsed; NUL bytes are ignored.

libclamav writes each datum as a small mail message, ``From html-normalise``, a
``Content-type:`` line with the media type, ``Content-transfer-encoding: base64`` when the
type contains ``;base64``, a blank line and the data, into the ``rfc2397`` directory of the
HTML layer. ``cli_scanhtml`` scans that directory last: after the ``nocomment`` form, the
``notags`` form (only within MaxHTMLNoTags) and the ``javascript`` form (as HTML, then as
ASCII text); each file is a new layer typed by its magic (mail), whose MIME parser yields the
decoded datum as a further layer. Nothing is extracted when the HTML exceeds
MaxHTMLNormalize (no normalisation at all).

``data_uris`` yields the decoded data (base64 leniently, as the mail parser does) by
default, or with ``as_mail=True`` the exact message libclamav writes, for a caller that
wants the mail layer in between.
"""

from __future__ import annotations

import binascii
import logging
import re
from collections.abc import Iterator

import numpy as np

from vigil.engine.containers.child import Child

__all__ = ["data_uris"]

log = logging.getLogger(__name__)

MAX_URIS = 10_000

_WS = b" \t\n\x0b\x0c\r"
_SKIP_WS = re.compile(rb"[ \t\n\x0b\x0c\r]*")
_TAG_NAME = re.compile(rb"[^ \t\n\x0b\x0c\r>]*")
_ARG_NAME = re.compile(rb"[^ \t\n\x0b\x0c\r=>]*")
# an attribute value: quoted (a whitespace or '>' inside ends the quoting, as in
# libclamav), or unquoted up to whitespace or '>'
_VALUE_PLAIN = re.compile(rb"[^ \t\n\x0b\x0c\r>]*")
_QUOTED_STOP = {q: re.compile(rb"[" + q + rb" \t\n\x0b\x0c>]") for q in (b"'", b'"')}
# Markup that cannot hold a data: URI, consumed in one regex match: text, comments, and
# tags other than <script>/<style> whose values are plain (quoted, possibly with the
# quoting dropped at a space or '>' as libclamav does, or unquoted) and do not start
# with data:. Anything else stops the match and is parsed by the states below.
_W = rb"[ \t\n\x0b\x0c]"
_NW = rb"[^ \t\n\x0b\x0c>]"
_VALUE = (
    rb"(?![\"']?data:)(?:\"[^\" \t\n\x0b\x0c>]*+(?:\"|[ \t\n\x0b\x0c>]"
    + _W
    + rb"*+"
    + _NW
    + rb"*+)"
    rb"|'[^' \t\n\x0b\x0c>]*+(?:'|[ \t\n\x0b\x0c>]" + _W + rb"*+" + _NW + rb"*+)"
    rb"|[^ \t\n\x0b\x0c>'\"]" + _NW + rb"*+)"
)
# attributes (names need no space before them after a quoted value, as in libclamav)
_ATTRS = (
    rb"(?:" + _W + rb"*+(?:[^ \t\n\x0b\x0c=>]++" + _W + rb"*+)?"
    rb"(?:=" + _W + rb"*+(?:" + _VALUE + rb"|(?=>)))?)*+"
)
_PLAIN_ATTRS = re.compile(_ATTRS)
_PLAIN_TAG = (
    rb"<"
    + _W
    + rb"*+(?:![^>]*+>|>|(?!(?i:script|style)[ \t\n\x0b\x0c>])[^ \t\n\x0b\x0c>!]"
    + _NW
    + rb"*+"
    + _ATTRS
    + rb">)"
)


def _code_element(name: bytes) -> bytes:
    """A <script> or <style> element with plain attributes: libclamav reads no tags inside
    it but comments (to the next '>') and closing tags, up to ``</name``."""
    close = rb"<" + _W + rb"*+/(?i:" + name + rb")(?=[ \t\n\x0b\x0c>])"
    return (
        rb"<"
        + _W
        + rb"*+(?i:"
        + name
        + rb")(?=[ \t\n\x0b\x0c>])"
        + _ATTRS
        + rb">"
        + rb"(?:[^<]++|(?!"
        + close
        + rb")<(?:"
        + _W
        + rb"*+![^>]*+>)?)*+"
        + rb"(?:"
        + close
        + rb">?)?"
    )


_PLAIN_RUN = re.compile(
    rb"(?:[^<]++|"
    + _PLAIN_TAG
    + rb"|"
    + _code_element(b"script")
    + rb"|"
    + _code_element(b"style")
    + rb")*+"
)
_IN_CODE = re.compile(rb"<" + _W + rb"*+[!/>]")
_TYPE_END = re.compile(rb"[,'\" \t\n\x0b\x0c>]")  # '\r' is dropped there
_ENTITY = rb"&(?:#(?:[xX][0-9A-Fa-f]*|[0-9]*);?|[A-Za-z0-9_:\-]{0,1024};?)"
_ESCAPE = rb"%(?:[0-9A-Fa-f]{2}|[0-9A-Fa-f].|.)"
_DATA_TOKEN = {
    q: re.compile(rb"(?:[^%&" + stop + rb"]++|" + _ESCAPE + rb"|" + _ENTITY + rb")*+", re.S)
    for q, stop in (
        (b"", rb" \t\n\x0b\x0c\r>"),
        (b'"', rb'"'),
        (b"'", rb"'"),
    )
}
_DECODE = re.compile(rb"(" + _ENTITY + rb")|%(?:([0-9A-Fa-f]{2})|([0-9A-Fa-f]).|.)", re.S)
_CHAINED = re.compile(rb"%[0-9A-Fa-f]?%")
_HEX_VALUE = np.full(256, -1, dtype=np.int16)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX_VALUE[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _HEX_VALUE[_c] = 10 + _i
_B64_JUNK = bytes(
    c
    for c in range(256)
    if chr(c) not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
)


def _decode_data(raw: bytes, at_end: bool) -> bytes:
    """%XX escapes (a lone '%' and its next byte give "%0", a hex digit and any byte
    give that digit times 16), character references gone; an escape that ends the whole
    document writes nothing (libclamav's state machine would emit it on the next byte)."""
    if b"%" not in raw and b"&" not in raw:
        return raw
    if b"&" not in raw and _CHAINED.search(raw) is None:
        return _decode_escapes(raw, at_end)
    last: list[tuple[int, int]] = []

    def one(m: re.Match[bytes]) -> bytes:
        if m.group(1) is not None:
            out = b""
        elif m.group(2) is not None:
            out = bytes([int(m.group(2), 16)])
        elif m.group(3) is not None:
            out = bytes([int(m.group(3), 16) * 16])
        else:
            out = b"%0"
        last[:] = [(m.end(), len(out))]
        return out

    decoded = _DECODE.sub(one, raw)
    if at_end and last and last[0][0] == len(raw) and last[0][1]:
        decoded = decoded[: -last[0][1]]
    return decoded


def _decode_escapes(raw: bytes, at_end: bool) -> bytes:
    """The same for data whose escapes do not touch each other, vectorised."""
    a = np.frombuffer(raw, dtype=np.uint8)
    pct = np.flatnonzero(a == 0x25)
    pct = pct[pct + 1 < a.size]  # a '%' at the very end is pending, never written
    if pct.size == 0:
        return raw.rstrip(b"%") if at_end else raw
    out = a.copy()
    keep = np.ones(a.size, dtype=bool)
    first = a[pct + 1]
    is_hex = _HEX_VALUE[first] >= 0
    full = pct[is_hex]
    if full.size:
        second = _HEX_VALUE[a[np.minimum(full + 2, a.size - 1)]]
        value = _HEX_VALUE[a[full + 1]] * 16 + np.where(second >= 0, second, 0)
        out[full] = value.astype(np.uint8)
        keep[full + 1] = False
        keep[np.minimum(full + 2, a.size - 1)] = False
    lone = pct[~is_hex]
    out[lone + 1] = 0x30  # '%' and its byte become "%0"
    result = out[keep].tobytes()
    if at_end:
        tail = int(pct[-1]) + (3 if is_hex[-1] else 2)
        if tail >= a.size:
            result = result[: -(1 if is_hex[-1] else 2)]
    return result


def _base64(data: bytes) -> bytes:
    """Lenient base64, as a MIME body: other bytes ignored, missing padding tolerated."""
    text = data.translate(None, _B64_JUNK)
    pad = text.find(b"=")
    if pad >= 0:
        text = text[:pad]
    text = text[: len(text) - (len(text) % 4 == 1)]
    text += b"=" * (-len(text) % 4)
    try:
        return binascii.a2b_base64(text)
    except binascii.Error:
        return b""


def _mail(mediatype: bytes, data: bytes) -> bytes:
    head = b"From html-normalise\nContent-type: " + mediatype + b"\n"
    if b";base64" in mediatype:
        head += b"Content-transfer-encoding: base64\n"
    return head + b"\n" + data


class _Scanner:
    """libclamav's tag and attribute states, one tag at a time."""

    def __init__(self, raw: bytes) -> None:
        # NUL bytes never reach the parser; carriage returns are dropped everywhere but
        # inside the data itself, which is read from ``self.data`` (with them)
        self.data = raw.replace(b"\x00", b"")
        self.buf = self.data.replace(b"\r", b"")
        crs = np.flatnonzero(np.frombuffer(self.data, dtype=np.uint8) == 0x0D)
        self.crs = crs  # positions in ``data``
        self.crs_stripped = crs - np.arange(crs.size)  # where each would sit in ``buf``
        self.found: list[tuple[bytes, bytes]] = []

    def _to_data(self, pos: int) -> int:
        if not self.crs.size:
            return pos
        return pos + int(np.searchsorted(self.crs_stripped, pos, side="right"))

    def _to_buf(self, pos: int) -> int:
        if not self.crs.size:
            return pos
        return pos - int(np.searchsorted(self.crs, pos, side="left"))

    def run(self) -> list[tuple[bytes, bytes]]:
        buf = self.buf
        n = len(buf)
        pos = 0
        in_code = b""  # b"script" or b"style" while inside one
        while len(self.found) < MAX_URIS:
            if not in_code:
                plain = _PLAIN_RUN.match(buf, pos)
                assert plain is not None
                lt = plain.end()
                if lt >= n:
                    break
            else:
                code = _IN_CODE.search(buf, pos)
                if code is None:
                    break
                lt = code.start()
            p = self._ws(lt + 1)
            if p >= n:
                break
            c = buf[p]
            if c == 0x21:  # '!': a comment or declaration, up to the next '>'
                gt = buf.find(b">", p + 1)
                if gt < 0:
                    break
                pos = gt + 1
                continue
            if c == 0x3E:
                pos = p + 1
                continue
            if in_code and c != 0x2F:
                pos = p + 1
                continue
            m = _TAG_NAME.match(buf, p)
            assert m is not None
            name = m.group().lower()
            q = m.end()
            if q >= n:
                break
            if buf[q] != 0x3E and not in_code:
                q = self._args(q)
            elif buf[q] == 0x3E:
                q += 1
            if name == b"/script":
                in_code = b""
            elif name == b"/style" and in_code == b"style":
                in_code = b""
            elif name in (b"script", b"style"):
                in_code = name
            pos = q
        return self.found

    def _ws(self, pos: int) -> int:
        m = _SKIP_WS.match(self.buf, pos)
        assert m is not None
        return m.end()

    def _args(self, pos: int) -> int:
        """Attributes up to the '>' ending the tag; returns the position after it."""
        buf = self.buf
        n = len(buf)
        while pos < n and len(self.found) < MAX_URIS:
            plain = _PLAIN_ATTRS.match(buf, pos)  # plain attributes in one go
            assert plain is not None
            pos = self._ws(plain.end())
            if pos >= n:
                return n
            if buf[pos] == 0x3E:
                return pos + 1
            m = _ARG_NAME.match(buf, pos)
            assert m is not None
            pos = m.end()
            if pos >= n:
                return n
            if buf[pos] == 0x3E:
                return pos + 1
            if buf[pos] != 0x3D:  # whitespace: maybe "name = value"
                pos = self._ws(pos)
                if pos >= n or buf[pos] != 0x3D:
                    continue
            pos = self._value(self._ws(pos + 1))
        return n

    def _value(self, pos: int) -> int:
        """One attribute value starting at ``pos``; records a data: URI."""
        buf = self.buf
        n = len(buf)
        quote = b""
        start = pos
        if pos < n and buf[pos] in b"'\"":
            quote = buf[pos : pos + 1]
            start = pos + 1
        if buf.startswith(b"data:", start):
            return self._datum(start + 5, quote)
        if not quote:
            m = _VALUE_PLAIN.match(buf, pos)
            assert m is not None
            return m.end()
        # a quoted value ends at its quote; whitespace or '>' inside drops the quoting
        m2 = _QUOTED_STOP[quote].search(buf, start)
        if m2 is None:
            return n
        if buf[m2.start()] == quote[0]:
            return m2.end()
        m3 = _VALUE_PLAIN.match(buf, self._ws(m2.end()))  # unquoted from here on
        assert m3 is not None
        return m3.end()

    def _datum(self, pos: int, quote: bytes) -> int:
        """The media type and data after ``data:``."""
        buf = self.buf
        n = len(buf)
        mediatype = bytearray()
        while True:
            m = _TYPE_END.search(buf, pos)
            if m is None:
                return n
            mediatype += buf[pos : m.start()].lower()
            c = buf[m.start() : m.start() + 1]
            pos = m.end()
            if c == b",":
                break
            if c in (b"'", b'"'):
                if quote == c:
                    return pos  # the value ended before any data
                mediatype += b'"'
                continue
            # whitespace or '>'
            if not quote:
                return m.start()
            mediatype += b" " if c != b">" else b">"
            quote = b""
            pos = self._ws(pos)
        # the data, with its carriage returns (the first bytes after the comma are still
        # read as markup: carriage returns there vanish, a line feed reads as a space)
        raw = self.data
        at = self._to_data(pos)
        if at < len(raw) and raw[at] == 0x0A:
            if not quote:
                self.found.append((bytes(mediatype), b""))
                return pos + 1
            head = b" "
            at += 1
        else:
            head = b""
        m2 = _DATA_TOKEN[quote].match(raw, at)
        assert m2 is not None
        end = m2.end()
        data = head + _decode_data(m2.group(), end == len(raw))
        self.found.append((bytes(mediatype), data))
        if end >= len(raw):
            return n
        # the byte that ended the data is consumed (a carriage return is not in ``buf``)
        return self._to_buf(end) + (raw[end] != 0x0D)


def data_uris(raw: bytes, limit: int, *, as_mail: bool = False) -> Iterator[Child]:
    """The ``data:`` URIs of an HTML document, decoded, in document order (see the module
    docstring for what libclamav honours); ``as_mail`` yields libclamav's mail wrappers."""
    if b"data:" not in raw and (
        (b"\x00" not in raw and b"\r" not in raw)
        or b"data:" not in raw.replace(b"\x00", b"").replace(b"\r", b"")
    ):
        return
    try:
        found = _Scanner(raw).run()
    except (ValueError, IndexError, MemoryError, re.error) as exc:
        log.debug("html data uris: %s", exc)
        return
    for mediatype, data in found:
        if as_mail:
            out = _mail(mediatype, data)
        elif b";base64" in mediatype:
            out = _base64(data)
        else:
            out = data
        if not out:
            continue
        if len(out) > limit:
            yield Child("rfc2397", out[:limit], oversized=True)
        else:
            yield Child("rfc2397", out)
