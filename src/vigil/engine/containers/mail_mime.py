"""MIME messages and mbox files, read the way libclamav's mail parser reads them.

libclamav (mbox.c, message.c; observed on 1.4.6) is lenient in its own ways, and whether a
virus is found depends on them, so this parser follows its rules rather than the RFCs:

* Only Content-Type, Content-Transfer-Encoding and Content-Disposition headers count. RFC
  822 comments are removed from header names ("Content-Type(x):" is a Content-Type) and
  folded lines are joined without a separator.
* The arguments of Content-Type and Content-Disposition go into one list per message and
  the *first* "boundary" wins, whichever header it came from (libclamav's argument list).
* A quoted argument ends at the next ';' even inside the quotes (``boundary="X;"`` is X).
* Parts continue after the closing boundary: the epilogue is kept as a part without
  headers, saved raw and never decoded.
* base64 ignores the rest of a line after '=', a part with a file name and no encoding
  is saved both raw and base64-decoded, text/plain inline parts are saved raw, a
  message/rfc822 part is saved only when it holds a non-7bit Content-Transfer-Encoding
  line, multipart/signed keeps only its text part, uuencoded blocks anywhere in the body
  of the outer message are decoded.

libclamav stops at fixed limits (headers per message, header bytes, folded lines in a row,
arguments per Content-Type, parts per multipart; MaxRecursion and MaxFiles) and, with
AlertExceedsMax, reports Heuristics.Limits.Exceeded.Email* there. This parser stops at
the same points, yields an empty marker child named by the heuristic where libclamav
raises it (see _Ctx.exceeded) and goes on as libclamav does without the alert.

Lines are read with libclamav's two line readers (see MailReader). Python loops over
header lines and over the few "special" body lines only: ordinary body lines are split and
added in bulk, boundary candidates are the lines starting with '-' or '(', marker lines
are found with bytes.find over the joined body, and bodies are decoded in bulk. Everything
is bounded: headers per message, arguments per header, parts per multipart, nesting depth,
children and total output bytes per message.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field

from vigil.engine.containers.child import Child
from vigil.engine.containers.mail_codecs import (
    b64_decode_lines,
    is_uuencode_begin,
    qp_decode_lines,
    simil,
    uu_decode,
    yenc_decode_lines,
)
from vigil.engine.filetype import FileType, builtin_rules

__all__ = ["MailReader", "mail_children", "sanitise_name"]

# libclamav's mime types and transfer encodings
NOMIME, APPLICATION, AUDIO, IMAGE, MESSAGE, MULTIPART, TEXT, VIDEO, MEXTENSION = range(9)
(NOENCODING, QUOTEDPRINTABLE, BASE64, EIGHTBIT, BINARY, UUENCODE, YENCODE, EEXTENSION, BINHEX) = (
    range(9)
)
# what parseEmailBody returns
OK, OK_NOT_SAVED, FAIL, MAXREC, MAXFILES = range(5)

_MIME_TYPES = {
    b"text": TEXT,
    b"multipart": MULTIPART,
    b"application": APPLICATION,
    b"audio": AUDIO,
    b"image": IMAGE,
    b"message": MESSAGE,
    b"video": VIDEO,
}
_ENCODINGS = (
    (b"7bit", NOENCODING),
    (b"text/plain", NOENCODING),
    (b"quoted-printable", QUOTEDPRINTABLE),
    (b"base64", BASE64),
    (b"8bit", EIGHTBIT),
    (b"binary", BINARY),
    (b"x-uuencode", UUENCODE),
    (b"x-yencode", YENCODE),
    (b"x-binhex", BINHEX),
    (b"us-ascii", NOENCODING),
    (b"x-uue", UUENCODE),
    (b"uuencode", UUENCODE),
)
PLAIN, ENRICHED, HTML, RICHTEXT, MIXED, ALTERNATIVE, DIGEST, SIGNED, PARALLEL = range(1, 10)
RELATED, REPORT, APPLEDOUBLE, ENCRYPTED, KNOWBOT = range(10, 15)
_SUBTYPES = {
    b"plain": PLAIN,
    b"enriched": ENRICHED,
    b"html": HTML,
    b"richtext": RICHTEXT,
    b"mixed": MIXED,
    b"alternative": ALTERNATIVE,
    b"digest": DIGEST,
    b"signed": SIGNED,
    b"parallel": PARALLEL,
    b"related": RELATED,
    b"report": REPORT,
    b"appledouble": APPLEDOUBLE,
    b"fax-message": MIXED,
    b"encrypted": ENCRYPTED,
    b"x-bfile": RELATED,
    b"knowbot": KNOWBOT,
    b"knowbot-metadata": KNOWBOT,
    b"knowbot-code": KNOWBOT,
    b"knowbot-state": KNOWBOT,
}
_IMMEDIATE = frozenset({MIXED, ALTERNATIVE, REPORT, DIGEST, APPLEDOUBLE, KNOWBOT, -1})
_KEPT = frozenset({RELATED, ENCRYPTED, SIGNED, PARALLEL})
_HEADERS = {b"content-type": 1, b"content-transfer-encoding": 2, b"content-disposition": 3}
CONTENT_TYPE, CONTENT_TRANSFER_ENCODING, CONTENT_DISPOSITION = 1, 2, 3
_USEFUL_ARGS = (b"name", b"filename", b"boundary", b"protocol", b"id", b"number", b"total", b"type")
_BINHEX_BANNER = b"(This file must be converted with BinHex 4.0)"

# libclamav's heuristic limits (HEURISTIC_EMAIL_*): beyond them it stops parsing
MAX_HEADERS = 1024
MAX_HEADER_BYTES = 256 * 1024
MAX_LINE_FOLDS = 256 * 1024
MAX_ARGUMENTS = 256
MAX_PARTS = 1024
# libclamav bounds nested multiparts and messages by MaxRecursion (17 by default) and the
# files saved from one message by MaxFiles (10000 by default)
MAX_DEPTH = 17
MAX_FILES = 10_000
# what libclamav reports (with AlertExceedsMax) when a message reaches those limits
EXCEEDED = "Heuristics.Limits.Exceeded."
LINE_FOLDS_EXCEEDED = EXCEEDED + "EmailLineFoldCnt"
HEADER_BYTES_EXCEEDED = EXCEEDED + "EmailHeaderBytes"
HEADERS_EXCEEDED = EXCEEDED + "EmailHeaders"
ARGUMENTS_EXCEEDED = EXCEEDED + "EmailMIMEArguments"
PARTS_EXCEEDED = EXCEEDED + "EmailMIMEPartsPerMessage"
RECURSION_EXCEEDED = EXCEEDED + "MaxRecursion"
FILES_EXCEEDED = EXCEEDED + "MaxFiles"
# our own bounds on what one message may produce
MAX_CHILDREN = 10_000
OUTPUT_FACTOR = 4  # total output bytes per message: this times the input, plus the limit

_GETLINE = re.compile(rb"[^\r\n]{0,998}(?:\r\n|\n\r|\r|\n)|[^\r\n]{1,999}")
_SPLIT_SEMI = re.compile(rb";+")
_SPLIT_SPACE = re.compile(rb" +")
_SPLIT_BLANK = re.compile(rb"[ \t]+")
_SPLIT_COLON = re.compile(rb":+")
_RFC2047 = re.compile(rb"=\?[^?]*\?(.)\?(.*?)\?=", re.S)
_COMMENT_TOKEN = re.compile(rb'\\.?|"|\(|\)|[^\\"()]+', re.S)
_WS = b" \t\n\v\f\r"


class MailReader:
    """libclamav's two line readers over one byte stream.

    ``gets`` is fmap_gets with a 1000-byte buffer: up to and including the next LF, at most
    999 bytes, cut at a NUL (a C string). ``getline`` is getline_from_mbox: CR, LF, CRLF or
    LFCR end a line, NULs are skipped, and a line of 999 bytes ends without its terminator
    (which then reads as an empty line). Both return the line without its end (cli_chomp).
    libclamav reads mailboxes, uuencoded blocks and the first line of a message with the
    first, the rest of a message with the second, so files with CR or LFCR line ends are
    split differently depending on where they are read."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def gets_raw(self) -> bytes | None:
        data, pos = self.data, self.pos
        if pos >= len(data):
            return None
        end = data.find(b"\n", pos, pos + 999)
        end = end + 1 if end >= 0 else min(pos + 999, len(data))
        self.pos = end
        line = data[pos:end]
        nul = line.find(b"\0")
        return line if nul < 0 else line[:nul]

    def gets(self) -> bytes | None:
        line = self.gets_raw()
        return None if line is None else line.rstrip(b"\r\n")

    def gets_all(self) -> Iterator[bytes]:
        """Lines read with ``gets`` until the end (the caller may stop early)."""
        while (line := self.gets()) is not None:
            yield line

    def getline_raw(self) -> bytes | None:
        m = _GETLINE.match(self.data, self.pos)
        if m is None:
            return None
        self.pos = m.end()
        line = m.group()
        return line.replace(b"\0", b"") if b"\0" in line else line

    def getline(self) -> bytes | None:
        line = self.getline_raw()
        return None if line is None else line.rstrip(b"\r\n")

    def peek(self) -> bytes:
        return self.data[self.pos : self.pos + 1]


def sanitise_name(name: bytes) -> str:
    """A saved part's name as libclamav records it: characters other than letters,
    digits, '.' and '_' become '_'."""
    return re.sub(rb"[^0-9A-Za-z._]", b"_", name).decode("ascii")


# ---------------------------------------------------------------------------- small helpers


def _field(s: bytes, n: int, sep: re.Pattern[bytes]) -> bytes | None:
    """Field ``n`` of ``s`` split at runs of separators (cli_strtokbuf), None when missing
    or empty."""
    parts = sep.split(s)
    if n < len(parts) and parts[n]:
        return parts[n]
    return None


def rfc822comments(s: bytes) -> bytes | None:
    """``s`` without RFC 822 comments (quotes kept, backslash escapes resolved), or None
    when it has no '('."""
    if b"(" not in s:
        return None
    s = s.lstrip(_WS)
    out: list[bytes] = []
    level = 0
    inquote = False
    for m in _COMMENT_TOKEN.finditer(s):
        tok = m.group()
        if tok[:1] == b"\\":
            if len(tok) == 1:
                out.append(b"\\")  # a backslash at the very end is kept
            elif level == 0:
                out.append(tok[1:])
        elif tok == b'"':
            out.append(tok)
            inquote = not inquote
        elif tok == b"(":
            if inquote:
                out.append(tok)
            else:
                level += 1
        elif tok == b")":
            if inquote:
                out.append(tok)
            elif level:
                level -= 1
        elif level == 0:
            out.append(tok)
    return b"".join(out)


def _rfc2047(line: bytes) -> bytes:
    """Encoded words (=?charset?B|Q?text?=) decoded in place; unchanged if any is not B/Q."""
    if b"=?" not in line or b"?=" not in line:
        return line
    ok = True

    def word(m: re.Match[bytes]) -> bytes:
        nonlocal ok
        kind = m.group(1).lower()
        text = m.group(2)
        if kind == b"b":
            out = b64_decode_lines([text], 1 << 16)
        elif kind == b"q":
            out = qp_decode_lines([text], 1 << 16)
        else:
            ok = False
            return m.group()
        return out[:-1] if out.endswith(b"\n") else out

    out = _RFC2047.sub(word, line)
    return out if ok else line


def _rfc2231(arg: bytes) -> bytes:
    """libclamav's RFC 2231 handling of one argument (``name*=charset'lang'va%6Cue``)."""
    if b"*0*=" in arg:
        out = bytearray()
        i = 0
        while i < len(arg):
            c = arg[i]
            if c == 0x2A:  # '*': skip to the next '*'
                j = arg.find(b"*", i + 1)
                if j < 0:
                    break
                i = j + 1
                continue
            if c == 0x3D:
                out += b"=rfc2231failure"
                break
            out.append(c)
            i += 1
        return bytes(out)
    ptr = arg.find(b"*0=")
    contents = ptr >= 0
    if not contents:
        ptr = arg.find(b"*=")
    if ptr < 0:
        return bytes(c & 0x7F for c in arg) if max(arg, default=0) > 0x7F else arg
    value = arg[arg.index(b"=", ptr) + 1 :]
    if not contents:
        quotes = value.split(b"'", 2)
        if len(quotes) < 3:
            return b""  # "Invalid RFC2231 header"
        value = quotes[2]
    return arg[:ptr] + b"=" + re.sub(rb"%(.)(.)?", _pct, value)


def _pct(m: re.Match[bytes]) -> bytes:
    hi = _hexval(m.group(1)[0])
    lo = m.group(2)
    if lo is None:
        return bytes([hi])
    return bytes([((hi << 4) + _hexval(lo[0])) & 0xFF])


def _hexval(c: int) -> int:
    if 48 <= c <= 57:
        return c - 48
    if 65 <= c <= 70:
        return c - 55
    if 97 <= c <= 102:
        return c - 87
    return 0x3D


def _strstrip(s: bytes) -> bytes:
    """libclamav's strstrip: trailing characters that are not printable go."""
    end = len(s)
    while end and not (0x21 <= s[end - 1] <= 0x7E) and s[end - 1] not in b"\r\n":
        end -= 1
    return s[:end]


@functools.cache
def _mail_magic() -> re.Pattern[bytes]:
    """Line starts that libclamav's file-type table calls mail (cli_compare_ftm_file)."""
    raws = [
        r.raw
        for r in builtin_rules()
        if r.magic_type == 0 and r.result is FileType.MAIL and r.raw and r.position == 0
    ]
    return re.compile(b"|".join(re.escape(r) for r in raws))


# ------------------------------------------------------------------------------- messages


ENC_LINE, BOUNCE_LINE, BINHEX_LINE, YENC_LINE = range(4)


@dataclass
class _Msg:
    """One message or part: its MIME attributes, argument list, encodings and body lines
    (b"" for an empty line)."""

    mime: int = NOMIME
    subtype: bytes = b""
    disposition: bytes = b""
    args: list[bytes] = field(default_factory=list)
    encodings: list[int] = field(default_factory=list)
    body: list[bytes] = field(default_factory=list)
    bounce_ok: bool = True  # libclamav only spots bounce lines in messages given a context
    args_exceeded: bool = False  # a Content-Type had MAX_ARGUMENTS arguments (_took_args)
    marker_from: int = 0  # markers are looked for from this body line on
    markers_off: bool = False
    _marks: dict[int, int] = field(default_factory=dict)

    def set_body(self, body: list[bytes]) -> None:
        self.body = body
        self._marks = {}

    def marker(self, kind: int) -> int:
        """Index of the first body line of a kind libclamav remembers (message.c's
        messageIsEncoding), -1 when there is none: a Content-Transfer-Encoding line that
        is not 7bit, a bounce ("Received: ") line, a BinHex banner, a yEnc begin line."""
        found = self._marks.get(kind)
        if found is None:
            found = -1
            if not self.markers_off and len(self.body) > self.marker_from:
                if kind != BOUNCE_LINE or self.bounce_ok:
                    found = _find_marker(self.body, self.marker_from, len(self.body), kind)
            self._marks[kind] = found
        return found

    def has_marker(self) -> bool:
        return any(self.marker(k) >= 0 for k in range(4))

    def encoding(self) -> int:
        return self.encodings[0] if self.encodings else NOENCODING


def _find_marker(body: list[bytes], start: int, end: int, kind: int) -> int:
    """The first line of ``body[start:end]`` of a marker kind (see _Msg.marker)."""
    text = b"\n".join(body[start:end])
    pos = _find_in_text(text, kind)
    return -1 if pos < 0 else start + text.count(b"\n", 0, pos)


def _line_at(text: bytes, pos: int) -> tuple[int, bytes]:
    """The start of the line holding ``pos`` and the line."""
    begin = text.rfind(b"\n", 0, pos) + 1
    end = text.find(b"\n", pos)
    return begin, text[begin : end if end >= 0 else len(text)]


def _find_in_text(text: bytes, kind: int) -> int:
    if kind == ENC_LINE:
        low = text.lower()
        pos = low.find(b"content-transfer-encoding")
        while pos >= 0:
            if pos == 0 or low[pos - 1] == 10:
                if b"7bit" not in _line_at(text, pos)[1]:
                    return pos
            pos = low.find(b"content-transfer-encoding", pos + 1)
        return -1
    if kind == BINHEX_LINE:
        pos = text.find(b"BinHex")
        while pos >= 0:
            begin, line = _line_at(text, pos)
            if simil(line, _BINHEX_BANNER) > 90:
                return begin
            nxt = text.find(b"\n", pos)
            if nxt < 0:
                return -1
            pos = text.find(b"BinHex", nxt)
        return -1
    needle = b"Received: " if kind == BOUNCE_LINE else b"=ybegin line="
    pos = text.find(needle)
    while pos > 0 and text[pos - 1] != 10:
        pos = text.find(needle, pos + 1)
    return pos


def _useful_arg(arg: bytes) -> bool:
    low = arg[:8].lower()
    return low.startswith(_USEFUL_ARGS)


def _add_argument(m: _Msg, arg: bytes | None) -> None:
    """messageAddArgument: keep useful ``key=value`` arguments, once each."""
    if arg is None:
        return
    arg = arg.lstrip(_WS)
    if not arg or not _useful_arg(arg):
        return
    low = arg.lower()
    if any(a.lower() == low for a in m.args):
        return
    p = _rfc2231(arg)
    if b"=" not in p:
        if p.startswith(b"filename") and len(p) > 8:
            p = p[:8] + b"=" + p[9:]  # libclamav's "possible data corruption fixed"
        else:
            return
    m.args.append(p)
    if p.lower().startswith((b"filename=", b"name=")) and m.mime == NOMIME:
        _set_mime_type(m, b"application")


def _add_arguments(m: _Msg, s: bytes) -> None:
    """messageAddArguments: ``key=value`` and ``key="value"`` pairs of one header field."""
    i = 0
    n = len(s)
    while i < n:
        c = s[i]
        if c in _WS or c == 0x3B:
            i += 1
            continue
        key = i
        eq = s.find(b"=", i)
        if eq < 0:
            eq = s.find(b":", i)
        if eq < 0:
            return  # "Can't parse header"
        i = eq + 1
        while i < n and s[i] in _WS:
            i += 1
        cptr = i
        if i < n:
            i += 1
        if cptr < n and s[cptr] == 0x22:
            kcopy = s[key:]
            sep = kcopy.find(b"=")
            if sep < 0:
                sep = kcopy.find(b":")
            name = kcopy[:sep]
            close = s.find(b'"', cptr + 1)
            i = n if close < 0 else close + 1
            if not _useful_arg(name):
                continue
            value = s[cptr + 1 :]
            q = value.find(b'"')
            if q >= 0:
                value = value[:q]
            _add_argument(m, name + b"=" + value)
        else:
            if cptr >= n:
                return  # "Ignoring empty field"
            while i < n and s[i] not in _WS:
                i += 1
            _add_argument(m, s[key:i])


def _find_argument(m: _Msg, name: bytes) -> bytes | None:
    """messageFindArgument: the value of the first argument starting with ``name``."""
    k = len(name)
    for arg in m.args:
        if arg[:k].lower() != name:
            continue
        rest = arg[k:].lstrip(_WS)
        if not rest.startswith(b"="):
            return None
        rest = rest[1:]
        if len(rest) > 1 and rest[0] == 0x22 and b'"' in rest[1:]:
            rest = rest[1:]
            return rest[: rest.index(b'"')]
        return rest
    return None


def _has_argument(m: _Msg, name: bytes) -> bool:
    k = len(name)
    for arg in m.args:
        if arg[:k].lower() == name:
            return arg[k:].lstrip(_WS).startswith(b"=")
    return False


def _get_filename(m: _Msg) -> bytes | None:
    name = _find_argument(m, b"filename")
    return name if name is not None else _find_argument(m, b"name")


def _set_mime_type(m: _Msg, kind: bytes | None) -> bool:
    """messageSetMimeType: True when the type was set."""
    if kind is None:
        return False
    start = 0
    while start < len(kind) and not (65 <= kind[start] <= 90 or 97 <= kind[start] <= 122):
        start += 1
    kind = kind[start:]
    if not kind:
        return False
    known = _MIME_TYPES.get(kind.lower())
    if known is not None:
        m.mime = known
        return True
    if m.mime != NOMIME:
        return False
    if kind[:2].lower() == b"x-":
        m.mime = MEXTENSION
    elif kind.lower() == b"plain":
        m.mime = TEXT
    else:
        best, guess = 0, APPLICATION
        for name, value in _MIME_TYPES.items():
            s = simil(name, kind)
            if s > best:
                best, guess = s, value
        m.mime = guess if best >= 50 else APPLICATION
    return True


def _set_encoding(m: _Msg, value: bytes, depth: int = 0) -> None:
    """messageSetEncoding: each word of the header is an encoding; unknown words are guessed
    by similarity, and hopeless ones enable both base64 and quoted-printable."""
    value = value.lstrip(b" \t")
    if value.lower() == b"8 bit":
        value = b"8bit"
    for word in _SPLIT_BLANK.split(value):
        if not word:
            continue
        first = word[:1].lower()
        best, closest = 0, b""
        for name, enc in _ENCODINGS:
            if (first != name[:1] and first != b"x") or name == b"uuencode":
                continue
            s = simil(word, name)
            if s == 100:
                if enc not in m.encodings:
                    m.encodings.append(enc)
                break
            if s > best:
                best, closest = s, name
        else:
            if depth > 2:
                continue
            if best >= 50:
                _set_encoding(m, closest, depth + 1)
            else:
                _set_encoding(m, b"base64", depth + 1)
                _set_encoding(m, b"quoted-printable", depth + 1)


_FIRST_WS = re.compile(rb"[ \t\n\v\f\r]")


def _set_type_and_subtype(m: _Msg, s: bytes | None) -> None:
    """The "type/subtype" words of a Content-Type (libclamav also accepts "foo/bar
    type/subtype": each word is tried until a type is recognised)."""
    while s:
        kind, slash, rest = s.lstrip(b"/").partition(b"/")
        ok = _set_mime_type(m, kind or None)
        if not slash or not rest:
            return
        s = rest
        if ok:
            s = _strstrip(s)
            if s.endswith(b'"'):
                s = _strstrip(s[:-1])
                size = len(s)
            else:
                size = len(s) - 1  # libclamav ignores a one-letter subtype
            if size > 0:
                m.subtype = (_field(s, 0, _SPLIT_SPACE) or b"") if b" " in s else s
        ws = _FIRST_WS.search(s)
        if ws is None:
            return
        s = s[ws.end() :]


def _parse_mime_header(m: _Msg, cmd: bytes, arg: bytes) -> None:
    """parseMimeHeader: apply one Content-* header to the message."""
    key = rfc822comments(cmd)
    command = _HEADERS.get((key if key is not None else cmd).lower(), 0)
    stripped = rfc822comments(arg)
    ptr = stripped if stripped is not None else arg
    if command == CONTENT_TYPE:
        if b"/" not in ptr:
            return  # "no subtype specified, assuming text/plain"
        if arg[:1] == b"/":
            _set_mime_type(m, b"application")
            m.subtype = b"octet-stream"
        else:
            ptr = ptr.lstrip(_WS)
            if ptr[:1] == b'"':
                ptr = ptr[1:]
            if ptr[:1] != b"/":
                _set_type_and_subtype(m, _field(ptr, 0, _SPLIT_SEMI))
        for count, part in enumerate(_SPLIT_SEMI.split(ptr)[1:], 1):
            if not part:
                continue
            if count >= MAX_ARGUMENTS:
                m.args_exceeded = True  # libclamav's EmailMIMEArguments; the rest is ignored
                break
            _add_arguments(m, part)
    elif command == CONTENT_TRANSFER_ENCODING:
        _set_encoding(m, ptr)
    elif command == CONTENT_DISPOSITION:
        first = _field(ptr, 0, _SPLIT_SEMI)
        if first:
            d = first.lstrip(_WS)
            m.disposition = _strstrip(d) if d else b""
            _add_argument(m, _field(ptr, 1, _SPLIT_SEMI))
        if not (_has_argument(m, b"filename") or _has_argument(m, b"file")):
            _add_argument(m, b"filename=unknown")


def _took_args(m: _Msg) -> bool:
    """Whether the last headers parsed into ``m`` hit MAX_ARGUMENTS (the flag is cleared)."""
    hit, m.args_exceeded = m.args_exceeded, False
    return hit


def _parse_header(m: _Msg, line: bytes) -> bool:
    """parseEmailHeader: False when the line is no ``name: value`` header (libclamav then
    joins it with the next line)."""
    for sep in b":= ":
        if sep in line:
            break
    else:
        return False
    copy = _rfc2047(line)
    sepb = bytes([sep])
    stripped = copy.lstrip(sepb)
    cmd, found, rest = stripped.partition(sepb)
    cmd = _strstrip(cmd)
    if not cmd or not found or not rest:
        return False
    _parse_mime_header(m, cmd, rest)
    return True


def _header_command(line: bytes) -> int | None:
    """The Content-* header a line starts (0 for another header), None for no header."""
    if b":" not in line:
        return None
    cmd = _field(line, 0, _SPLIT_COLON)
    if cmd is None:
        return None
    key = rfc822comments(cmd)
    return _HEADERS.get((key if key is not None else cmd).lower(), 0)


def _useful_header(cmd_line: bytes) -> bool:
    cmd = (_field(cmd_line, 0, _SPLIT_COLON) or b"").lower()
    return cmd in (b"from", b"received", b"de")


def _only_semicolons(line: bytes) -> bool:
    return not line.strip(b" \t;")


def _newline_in_header(line: bytes) -> bool:
    return line.startswith((b"Message-Id: ", b"Date: "))


def _next_is_folded(lines: list[bytes], i: int) -> bool:
    """Whether line i+1 continues the header on line i (a blank start, or an '=' after a
    line ending with ';')."""
    if i + 1 >= len(lines):
        return False
    nxt = lines[i + 1]
    if not nxt:
        return False
    if nxt[0] in b" \t":
        return True
    if b"=" not in nxt:
        return False
    this = lines[i].rstrip(b" \t\r\n")
    return len(this) > 1 and this.endswith(b";")  # libclamav never looks at the first byte


def _add_str(body: list[bytes], line: bytes, mime: int) -> None:
    """messageAddStr: white-space-only lines become one space; two empty lines in a row
    are kept only in text messages."""
    if line:
        if line.isspace():
            line = b" "
    elif body and not body[-1] and mime != TEXT:
        return
    body.append(line)


# ------------------------------------------------------------------------------ boundaries


def boundary_start(line: bytes, boundary: bytes) -> bool:
    """boundaryStart: '--boundary', tolerating extra leading dashes and comments."""
    if not line:
        return False
    newline = line.rstrip(b" ")
    if newline[:1] not in (b"-", b"(") or not newline or b"-" not in newline:
        return False
    nocomment = rfc822comments(newline)
    ptr = nocomment if nocomment is not None else newline
    if ptr[:1] != b"-" or len(ptr) < 2:
        return False
    ptr = ptr[1:]
    if boundary in ptr[1:] or boundary in newline:
        for base in (ptr, line[1:]):
            k = 1
            while k <= len(base):
                if base[k:] == boundary:
                    return True
                if base[k : k + 1] != b"-":
                    break
                k += 1
        return False
    if ptr[:1] != b"-":
        return False
    return ptr[1:].lower() == boundary.lower()


def boundary_end(line: bytes, boundary: bytes) -> bool:
    """boundaryEnd: '--boundary--' (case-insensitive, trailing text allowed)."""
    p = line.rstrip(b" ")
    if not p.startswith(b"--"):
        return False
    n = len(boundary)
    return p[2 : 2 + n].lower() == boundary.lower() and p[2 + n : 4 + n] == b"--"


def _candidates(body: list[bytes]) -> list[int]:
    """Indexes of the lines that may be boundaries (they start with '-' or '(')."""
    return [i for i, line in enumerate(body) if line[:1] in _DASH_OR_PAREN]


_DASH_OR_PAREN = (b"-", b"(")


# ------------------------------------------------------------------------------- the parser


@dataclass
class _Ctx:
    """Per-scan state: the size limit, the output budget, the number of children, and the
    files libclamav leaves in its temporary directory to scan at the end."""

    limit: int
    budget: int
    children: int = 0
    files: int = 0  # libclamav's count of saved files (mctx->files), for MaxFiles
    deferred: list[Child] = field(default_factory=list)
    raised: set[str] = field(default_factory=set)

    def exceeded(self, name: str, halts: bool) -> Iterator[Child]:
        """The marker of a limit libclamav reports here with AlertExceedsMax: an empty child
        named by the heuristic, which the scanner reports only with that option.

        ``halts``: with the alert, libclamav gives the message up right after raising it
        (cli_mbox returns CL_VIRUS: no further part, no deferred file, no raw scan of the
        mail itself); such a marker has ``oversized=True``, for the scanner to end the layer
        when it reports it. Without the alert libclamav only stops at the limit and goes on,
        which is what this parser does after any marker. A name is yielded once per message
        (libclamav's evidence keeps "potentially unwanted" names unique), again only to
        halt."""
        if name in self.raised and not halts:
            return
        self.raised.add(name)
        yield Child(name, b"", oversized=halts)

    def child(self, name: bytes, data: bytes, oversized: bool = False) -> Child | None:
        if not data or self.children >= MAX_CHILDREN or self.budget <= 0:
            return None
        if len(data) > self.limit:
            data, oversized = data[: self.limit], True
        self.children += 1
        self.budget -= len(data)
        return Child(sanitise_name(name or b"attachment"), data, oversized)

    def save(self, child: Child | None, deferred: bool) -> Iterator[Child]:
        """Hand a child on now, or keep it for the end (libclamav scans some saved files
        only in its final directory scan, which a failed parse skips)."""
        if child is None:
            return
        if deferred:
            self.deferred.append(child)
        else:
            yield child


def _raw_text(lines: list[bytes], limit: int) -> bytes:
    """Lines as libclamav writes text: each followed by a newline, cut after ``limit``."""
    out: list[bytes] = []
    size = 0
    for i in range(0, len(lines), 4096):
        chunk = b"\n".join(lines[i : i + 4096]) + b"\n"
        out.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return b"".join(out)[: limit + 1]


def _decode(enc: int, lines: list[bytes], limit: int) -> bytes:
    if enc == BASE64:
        return b64_decode_lines(lines, limit + 1)
    if enc == QUOTEDPRINTABLE:
        return qp_decode_lines(lines, limit + 1)
    if enc == YENCODE:
        return yenc_decode_lines(lines, limit + 1)
    return _raw_text(lines, limit)


def _export(m: _Msg, ctx: _Ctx, caller_scans: bool, dry: bool = False) -> Iterator[Child]:
    """messageExport: the body once per declared encoding (a part with a file name and no
    encoding is saved raw and base64-decoded).

    Only the last copy is scanned at once, and a raw copy only when ``caller_scans`` (the
    others wait for the final directory scan). ``dry`` only applies what exporting does to
    the message (arguments and encodings added, the yEnc line used up), as libclamav's
    phishing pass does before the real export."""
    if not m.body:
        return
    if not m.encodings:
        filename = _find_argument(m, b"filename")
        if filename is None:
            filename = _find_argument(m, b"name")
            if filename is None:
                _add_argument(m, b"name=attachment")
            else:
                _set_encoding(m, b"7-bit")
        if not m.encodings:
            if not dry:
                c = ctx.child(filename or b"", _raw_text(m.body, ctx.limit))
                yield from ctx.save(c, not caller_scans)
            return
    i = 0
    while i < len(m.encodings) and i < 8:
        enc = m.encodings[i]
        yenc = m.marker(YENC_LINE)
        if (enc == YENCODE or i == 0) and yenc >= 0:
            line = m.body[yenc]
            at = line.find(b" name=")
            name = _strstrip(line[at + 6 :]) if at >= 0 else b""
            lines = m.body[yenc + 1 :]
            enc = YENCODE
            m._marks[YENC_LINE] = -1  # used up
        else:
            if enc == UUENCODE:
                enc = m.encodings[i] = NOENCODING  # the fast track decoded it already
            filename = _get_filename(m)
            if filename is None:
                _add_argument(m, b"name=attachment")
            elif enc == NOENCODING:
                _set_encoding(m, b"base64")
            name = filename or b""
            lines = m.body
        if not lines:
            return  # "Empty attachment not saved"
        last = i == len(m.encodings) - 1
        if not dry:
            c = ctx.child(name, _decode(enc, lines, ctx.limit))
            # only the first copy carries libclamav's scan context, and a raw copy loses it
            later = not caller_scans and (i > 0 or enc == NOENCODING)
            yield from ctx.save(c, not last or later)
        i += 1


def _check_urls(m: _Msg, ctx: _Ctx) -> None:
    """libclamav's phishing pass (checkURLs, on by default) exports text messages once to
    look for links; only what that export changes in the message matters here."""
    for _ in _export(m, ctx, False, dry=True):
        pass


def _save_text_part(m: _Msg, ctx: _Ctx) -> Iterator[Child]:
    """saveTextPart: the message as a file named "textportion"."""
    _add_argument(m, b"filename=textportion")
    ctx.files += bool(m.body)
    yield from _export(m, ctx, False)


def _export_binhex(m: _Msg, ctx: _Ctx) -> Iterator[Child]:
    """exportBinhexMessage: the whole body, raw (the BinHex unpacker decodes it)."""
    if m.encoding() == NOENCODING:
        _set_encoding(m, b"x-binhex")
    ctx.files += bool(m.body)
    yield from _export(m, ctx, False)


def _is_bounce_start(line: bytes) -> bool:
    if not 6 <= len(line) < 72:
        return False
    if line.startswith((b"From ", b">From ")):
        rest = line[4:]
        return rest.count(b" ") >= 6 and sum(rest.count(d) for d in b"0123456789") >= 11
    return _mail_magic().match(line) is not None


_BOUNCE_FIRST = frozenset(b">F")


def _bounce_starts(text: list[bytes]) -> list[int]:
    """Indexes of the lines that isBounceStart accepts (a mail header line, or an mbox
    "From " line with enough spaces and digits)."""
    first = _BOUNCE_FIRST | _mail_magic_first()
    return [
        i
        for i, line in enumerate(text)
        if 6 <= len(line) < 72 and line[0] in first and _is_bounce_start(line)
    ]


@functools.cache
def _mail_magic_first() -> frozenset[int]:
    return frozenset(
        r.raw[0]
        for r in builtin_rules()
        if r.magic_type == 0 and r.result is FileType.MAIL and r.raw and r.position == 0
    )


def _bounces(text: list[bytes], ctx: _Ctx) -> Iterator[Child]:
    """Bounced messages inside a non-MIME body, saved with a "Received:" line in front so
    that they are scanned as mail again (the non-MIME bounce logic of parseEmailBody)."""
    starts = _bounce_starts(text)
    if not starts:
        return
    is_start = set(starts)
    n = len(text)
    definitely = False
    t = 0
    while t < n:
        if definitely:
            while t < n and not text[t]:
                t += 1
            if t >= n:
                break
            definitely = False
        else:
            k = bisect.bisect_left(starts, t)
            if k == len(starts):
                break
            t = starts[k]
        la = t + 1
        if la >= n:
            break  # a single line is not worth saving
        if la in is_start:
            definitely = True  # don't save worthless header lines
            t += 1
            continue
        while la < n and text[la]:
            s = text[la]
            if s[:13].lower() == b"content-type:" and b"text/plain" not in s.lower():
                break
            la += 1
        if la < n and not text[la]:
            t = la + 1  # a bounce that is not MIME encoded: not scanned
            continue
        while la < n:
            s = text[la]
            if (
                s[:13].lower() == b"content-type:"
                and b"multipart/" not in s
                and b"message/rfc822" not in s
                and b"text/plain" not in s
            ):
                break
            la += 1
        if la >= n:
            break  # plain text, which must be clean
        out = [b"Received: by clamd (bounce)"]
        inheader = True
        top = -1
        while True:
            if not text[t] and inheader:
                inheader = False
                top = t
            out.append(text[t])
            t += 1
            if t >= n:
                break
            if not inheader and t in is_start:
                definitely = True
                break
        ctx.files += 1
        yield from ctx.save(ctx.child(b"bounce", _raw_text(out, ctx.limit)), False)
        if top >= 0:
            t = top
        t += 1


def _export_bounce(body: list[bytes], start: int, ctx: _Ctx) -> Iterator[Child]:
    """exportBounceMessage: the bounced message from its last From:/Received: header, when
    it declares an encoded or attached part."""
    found = False
    for t in range(start, len(body)):
        line = body[t]
        cmd = _field(line, 0, _SPLIT_COLON) if line else None
        if cmd is None:
            continue
        command = _HEADERS.get(cmd.lower(), 0)
        if command == CONTENT_TRANSFER_ENCODING:
            if b"7bit" not in line and b"8bit" not in line:
                found = True
                break
        elif command == CONTENT_DISPOSITION:
            found = True
            break
        elif command == CONTENT_TYPE:
            found = b"text/plain" not in line
            break
        elif cmd.lower() in (b"from", b"received"):
            start = t
    if found:
        ctx.files += 1
        yield from ctx.save(ctx.child(b"bounce", _raw_text(body[start:], ctx.limit)), True)


def _message_text(m: _Msg, limit: int) -> list[bytes]:
    """messageToText: the body as text lines, decoded once per encoding."""
    if not m.encodings:
        return list(m.body)
    out: list[bytes] = []
    for enc in m.encodings:
        if enc in (NOENCODING, BINARY, EIGHTBIT):
            out.extend(m.body)
        elif enc == UUENCODE:
            return []
        else:
            lines = m.body
            if enc == BASE64:  # libclamav stops after the first line with '='
                cut = next((i for i, ln in enumerate(lines) if b"=" in ln), len(lines) - 1)
                lines = lines[: cut + 1]
            out.extend(_decode(enc, lines, limit).split(b"\n"))
    return out


def _text_part(parts: list[_Msg | None]) -> int:
    """getTextPart: the HTML part, else the last text part, else -1."""
    found = -1
    for i, p in enumerate(parts):
        if p is not None and p.mime == TEXT:
            if p.subtype.lower() == b"html":
                return i
            found = i
    return found


@dataclass
class _Multi:
    """State shared by the parts of one multipart (libclamav's mainMessage, rc, aText)."""

    main: _Msg | None
    rc: int = OK
    text: list[bytes] | None = None


def _do_multipart(a: _Msg | None, st: _Multi, ctx: _Ctx, depth: int) -> Iterator[Child]:
    """do_multipart: save or descend into one part of a multipart."""
    if a is None or st.rc != OK:
        return
    mime = a.mime
    if mime == NOMIME:
        if st.main is not None:
            if a.marker(BINHEX_LINE) >= 0:
                yield from _export_binhex(st.main, ctx)
            st.main = None
        elif a.marker(BINHEX_LINE) >= 0:
            yield from _export_binhex(a, ctx)
            a.set_body([])
    elif mime == TEXT:
        dtype = a.disposition.lower()
        if dtype != b"attachment":
            if dtype not in (b"", b"inline"):
                return  # "Text type ... is not supported"
            st.main = None
            plain = _SUBTYPES.get(a.subtype.lower()) == PLAIN
            if not (plain and a.encoding() == NOENCODING):
                _check_urls(a, ctx)
                _add_argument(a, b"filename=mixedtextportion")
    elif mime == MESSAGE:
        if a.encoding() in (NOENCODING, EIGHTBIT, BINARY) and a.marker(ENC_LINE) < 0:
            return  # "Unencoded multipart/message will not be scanned"
        # saved as a file and typed by its content, like any part (libclamav does not
        # force mail: a message starting with something else is scanned as text)
        yield from _save_text_part(a, ctx)
        return
    elif mime == MULTIPART:
        st.rc = yield from _parse_body(a, st.text, ctx, depth + 1)
        return
    # libclamav does not count the parts it would add to the text (no MIME type, or plain
    # inline text without a file name)
    if a.body and not (mime == NOMIME or (mime == TEXT and not _has_argument(a, b"filename"))):
        ctx.files += 1
    yield from _export(a, ctx, True)


def _first_part(
    msg: _Msg, boundary: bytes, cands: list[int], ctx: _Ctx
) -> Generator[Child, None, int]:
    """Where the parts start: the first boundary line, or a line before it followed by a
    Content-Transfer-Encoding line; a BinHex banner before it saves the whole body."""
    body = msg.body
    first = next((c for c in cands if boundary_start(body[c], boundary)), len(body))
    # only marker lines before the first boundary matter here
    lo = msg.marker_from
    enc_line = binhex_line = -1
    if not msg.markers_off and first + 1 > lo:
        enc_line = _find_marker(body, lo, first + 1, ENC_LINE)
        binhex_line = _find_marker(body, lo, first + 1, BINHEX_LINE)
    for j in sorted({binhex_line, enc_line - 1}):
        if not 0 <= j < first or not body[j]:
            continue
        if j == binhex_line:
            yield from _export_binhex(msg, ctx)
        elif msg.encoding() == NOENCODING:
            return j  # "Found MIME attachment before the first MIME section"
    return first


def _part_headers(a: _Msg, body: list[bytes], t: int) -> tuple[int, bool, bool]:
    """Parse a part's headers from line ``t``; the line after them, whether they ended
    (libclamav takes everything up to an empty line as headers, boundaries included) and
    whether a header had too many arguments (EmailMIMEArguments)."""
    n = len(body)
    hit = False
    while t < n:
        line = body[t]
        if not line:
            nxt = body[t + 1] if t + 1 < n else b""
            if nxt:
                if a.encoding() == NOENCODING and a.mime == APPLICATION and b"base64" in nxt:
                    _set_encoding(a, b"base64")  # "Ignoring fake end of headers"
                    t += 1
                    continue
                if nxt.startswith((b"Content", b"filename=")):
                    t += 1
                    continue
            return t + 1, True, hit
        if line[0] in _WS:
            _add_argument(a, line)  # the part starts with a continuation line
            if a.mime == NOMIME:
                _set_mime_type(a, b"application")
            t += 1
            continue
        if len(line) > 1000:
            t += 1
            continue
        nocomment = rfc822comments(line)
        folded = [nocomment if nocomment is not None else line]
        ended = False
        while _next_is_folded(body, t):
            t += 1
            if len(body[t]) == 1:
                ended = True  # "headers not terminated by blank line"
                break
            folded.append(body[t])
        _parse_header(a, b"".join(folded))
        hit = _took_args(a) or hit
        t += 1
        if ended:
            return t, True, hit
    return t, False, hit


def _args_halt(subtype: int, kept: list[_Msg | None], st: _Multi) -> bool:
    """Whether the VIRUS status that EmailMIMEArguments gives a multipart whose parts are
    kept ends the message: it does unless a part is parsed next, which overwrites it
    (multipart/signed and parallel, multipart/related with a text or multipart part; a
    subtype libclamav does not handle, when there is text to save)."""
    if subtype in (SIGNED, PARALLEL):
        return False
    if subtype == RELATED:
        return _text_part(kept) < 0 and not any(p is not None and p.mime == MULTIPART for p in kept)
    if subtype == ENCRYPTED:
        return True
    return not kept and st.text is None


def _parse_multipart(
    msg: _Msg, text_in: list[bytes] | None, ctx: _Ctx, depth: int
) -> Generator[Child, None, int | None]:
    """The multipart branch of parseEmailBody; None when the message turns out not to be
    multipart after all (no boundary argument, no boundary line)."""
    boundary = _find_argument(msg, b"boundary")
    if boundary is None:
        return None
    boundary = boundary.rstrip(b"\r\n")
    if not msg.subtype:
        msg.subtype = b"alternative"
    body = msg.body
    n = len(body)
    cands = _candidates(body)
    t = yield from _first_part(msg, boundary, cands, ctx)
    if t >= n:
        return None
    subtype = _SUBTYPES.get(msg.subtype.lower(), -1)
    st = _Multi(msg, OK, text_in)
    kept: list[_Msg | None] = []
    inhead = True
    parts = 0
    args_hit = False  # a part of a multipart whose parts are kept had too many arguments
    while t < n and parts < MAX_CHILDREN:
        parts += 1
        a = _Msg()
        t += 1
        while t < n and not body[t]:
            t += 1
        if t >= n:
            # "Empty part": kept (and counted) unless the main message is still there
            # without a BinHex banner
            if st.main is None or st.main.marker(BINHEX_LINE) >= 0:
                kept.append(a)
            break
        if inhead:
            t, ended, hit = _part_headers(a, body, t)
            inhead = not ended
            if hit:
                if subtype in _IMMEDIATE:
                    # libclamav's status becomes VIRUS: no further part is saved and the
                    # multipart, hence the whole message, ends there
                    yield from ctx.exceeded(ARGUMENTS_EXCEEDED, True)
                else:
                    args_hit = True  # whether it ends the message is known after the loop
        if not inhead:
            end = n
            k = bisect.bisect_left(cands, t)
            while k < len(cands):
                c = cands[k]
                if boundary_end(body[c], boundary):
                    end = c  # the epilogue that follows is read as one more part
                    break
                if boundary_start(body[c], boundary):
                    end = c
                    inhead = True
                    break
                k += 1
            a.set_body(body[t:end])
            t = end
        if subtype in _IMMEDIATE:
            yield from _do_multipart(a, st, ctx, depth)
            if st.rc == OK_NOT_SAVED:
                st.rc = OK
        elif subtype in _KEPT:
            kept.append(a)
    parts_hit = len(kept) >= MAX_PARTS
    if args_hit:
        yield from ctx.exceeded(ARGUMENTS_EXCEEDED, not parts_hit and _args_halt(subtype, kept, st))
    if parts_hit:
        yield from ctx.exceeded(PARTS_EXCEEDED, True)
        # libclamav (alert off) drops the parts and goes on with the whole body as text
        return None
    kind = MIXED if subtype in (KNOWBOT, -1) else subtype
    if st.rc == MAXREC:
        return MAXREC
    if not kept and st.text is None:
        return OK_NOT_SAVED
    rc = st.rc
    if kind in (RELATED, DIGEST, ALTERNATIVE, REPORT, ENCRYPTED, MIXED, APPLEDOUBLE):
        if kind == RELATED:
            html = _text_part(kept)
            part = kept[html] if html >= 0 else None
            if part is not None:
                if part.body:
                    st.text = (st.text or []) + _message_text(part, ctx.limit)
            else:
                html = next(
                    (i for i, p in enumerate(kept) if p is not None and p.mime == MULTIPART), -1
                )
                part = kept[html] if html >= 0 else None
            if part is not None:
                st.rc = yield from _parse_body(part, st.text, ctx, depth + 1)
                if st.rc == OK:
                    kept[html] = None
        if st.text:
            st.main = None
        for p in kept:
            yield from _do_multipart(p, st, ctx, depth + 1)
            if st.rc == MAXREC:
                break
            if st.rc == OK_NOT_SAVED:
                st.rc = OK
        rc = st.rc
    elif kind in (SIGNED, PARALLEL):
        if kept:
            part = kept[max(_text_part(kept), 0)]
            if part is not None:
                rc = yield from _parse_body(part, st.text, ctx, depth + 1)
    else:
        rc = FAIL  # "Unexpected mime sub type"
    if st.text and text_in is None:
        ctx.files += 1
        yield from ctx.save(ctx.child(b"textpart", _raw_text(st.text, ctx.limit)), True)
    return rc


def _parse_body(
    msg: _Msg, text_in: list[bytes] | None, ctx: _Ctx, depth: int
) -> Generator[Child, None, int]:
    """parseEmailBody: decide from the message's type what to save and what to descend
    into; returns libclamav's status (FAIL for message types it does not scan)."""
    if depth > MAX_DEPTH:
        return MAXREC
    if ctx.files >= MAX_FILES:
        return MAXFILES
    rc = OK
    text: list[bytes] | None = None
    if msg.body:
        mime = msg.mime
        sub = msg.subtype.lower()
        if mime == TEXT and _SUBTYPES.get(sub) == PLAIN:
            mime = NOMIME  # "text/plain: Assume no attachments"
            msg.subtype = b""
        elif mime == MESSAGE and sub == b"rfc822-headers":
            mime = NOMIME
            msg.subtype = b""
        if mime == MULTIPART:
            result = yield from _parse_multipart(msg, text_in, ctx, depth)
            if result is not None:
                return result
        elif mime in (NOMIME, TEXT):
            if mime == NOMIME:
                lines = _message_text(msg, ctx.limit)
                if text_in is not None:
                    text_in.extend(lines)
                    text = text_in
                else:
                    text = lines
            _check_urls(msg, ctx)
        elif mime == MESSAGE:
            rc = FAIL
            if sub in (b"rfc822", b"delivery-status"):
                inner, stop = _parse_headers(msg.body, msg.has_marker())
                if stop is not None:
                    # libclamav returns VIRUS from here, which ends the whole message
                    yield from ctx.exceeded(stop, True)
                if inner is not None:
                    msg.set_body([])
                    if inner.body:
                        rc = yield from _parse_body(inner, None, ctx, depth + 1)
            elif sub == b"disposition-notification":
                rc = OK
            else:
                return FAIL  # message/partial, external-body and others are not scanned
        elif mime not in (AUDIO, VIDEO, IMAGE):
            # application, and anything unknown: "assume application"
            ctx.files += 1
            yield from _export(msg, ctx, False)
            msg.set_body([])
    if text is not None and text_in is None:
        yield from _bounces(text, ctx)
    if msg.body:
        enc_line = msg.marker(ENC_LINE)
        bounce_line = msg.marker(BOUNCE_LINE) if enc_line >= 0 else -1
        if enc_line >= 0 and bounce_line >= 0:
            yield from _export_bounce(msg.body, bounce_line, ctx)
            rc = OK  # libclamav overwrites the status here (FAIL included)
        else:
            if msg.mime == MESSAGE:
                save = enc_line >= 0
            elif enc_line >= 0:
                # "a bounce message with no header"
                head = [b"Received: by clamd (bounce)", *msg.body[enc_line:]]
                ctx.files += 1
                yield from ctx.save(ctx.child(b"bounce", _raw_text(head, ctx.limit)), True)
                save = False
            else:
                save = True
            if save:
                yield from _save_text_part(msg, ctx)
    return rc


def _parse_headers(lines: list[bytes], source_marked: bool) -> tuple[_Msg | None, str | None]:
    """parseEmailHeaders: the headers at the top of ``lines`` (an mbox message, or the body
    of a message/rfc822 message) and the body after them; None when there are no headers.
    The second value names the first limit libclamav raises here (too many arguments in a
    header, which only cuts that header, or a limit that stops the headers and leaves the
    message without a body), for the caller to report.

    libclamav looks for marker lines in the new body (from its second line) only when the
    message it came from had one (``source_marked``)."""
    ret = _Msg(bounce_ok=False)
    any_headers = False
    args_hit: str | None = None  # too many arguments: reported, but the headers go on
    full: list[bytes] | None = None  # the header being joined, in pieces
    full_len = 0  # libclamav's fulllinelength: its lines plus one byte each
    quotes = 0  # parity of the '"' in it
    semi = False
    folds = 0
    count = 0
    n = len(lines)
    i = 0
    while i < n:
        line = lines[i]
        i += 1
        if line:
            if _only_semicolons(line):
                if semi:
                    continue
                semi = True
            else:
                semi = False
            folds = folds + 1 if line[0] in b" \t" else 0
            if folds >= MAX_LINE_FOLDS:
                return (ret if any_headers else None), args_hit or LINE_FOLDS_EXCEEDED
        if not line:
            if not any_headers:
                break
            # the body starts at the next line that is not empty, a repeated ';' line
            # (dropped) or a stray header; libclamav still counts folds on the way
            while i < n:
                nxt = lines[i]
                if nxt:
                    if _only_semicolons(nxt):
                        if semi:
                            i += 1
                            continue
                        semi = True
                    else:
                        semi = False
                    folds = folds + 1 if nxt[0] in b" \t" else 0
                    if folds >= MAX_LINE_FOLDS:
                        return ret, args_hit or LINE_FOLDS_EXCEEDED
                    if not _newline_in_header(nxt):
                        break
                i += 1
            ret.set_body(lines[i:])
            ret.markers_off = not source_marked
            ret.marker_from = 1
            return ret, args_hit
        if full is None:
            if line[0] in b" \t":
                continue
            command = _header_command(line)
            if command is None:
                if line.startswith(b"From "):
                    any_headers = True
                continue
            if command == 0:
                if not any_headers:
                    any_headers = _useful_header(line)
                continue
            any_headers = True
            full, full_len, quotes = [line], len(line) + 1, line.count(b'"') & 1
        else:
            full.append(line)
            full_len += len(line) + 1
            quotes ^= line.count(b'"') & 1
        if full_len > MAX_HEADER_BYTES:
            return ret, args_hit or HEADER_BYTES_EXCEEDED
        if _next_is_folded(lines, i - 1):
            continue
        if quotes:
            continue
        joined = b"".join(full)
        nocomment = rfc822comments(joined)
        if nocomment is not None:
            joined = nocomment
            quotes = joined.count(b'"') & 1
        full = [joined]
        count += 1
        if count > MAX_HEADERS:
            return ret, args_hit or HEADERS_EXCEEDED
        if not _parse_header(ret, joined):
            continue
        if _took_args(ret):
            args_hit = args_hit or ARGUMENTS_EXCEEDED
        full = None
    return (ret if any_headers else None), args_hit


def _body_line(msg: _Msg, body: list[bytes], line: bytes, state: list[bool]) -> None:
    """One line of the outer body (parseEmailFile): blank lines collapse unless the
    message is text, the first line may be a stray header, white space becomes one space."""
    body_empty, last_blank = state
    if line:
        if body_empty:
            if _newline_in_header(line):
                return
            state[0] = False
        state[1] = False
        body.append(b" " if line.isspace() else line)
    else:
        if last_blank and msg.mime != TEXT:
            return
        state[1] = True
        if body and not body[-1] and msg.mime != TEXT:
            return
        body.append(b"")


def _getlines(seg: bytes) -> list[bytes]:
    """``seg`` split as getline_from_mbox would read it (``seg`` starts a line)."""
    if b"\0" in seg:
        seg = seg.replace(b"\0", b"")
    lf = seg.replace(b"\r\n", b"\n")
    lines = lf.split(b"\n") if b"\r" not in lf else _EOL_SPLIT.split(seg)
    if lines and not lines[-1]:
        lines.pop()
    if lines and max(map(len, lines)) >= 999:
        split: list[bytes] = []
        for line in lines:
            if len(line) < 999:
                split.append(line)
                continue
            split.extend(line[i : i + 999] for i in range(0, len(line), 999))
            if len(line) % 999 == 0:
                split.append(b"")  # the line end left over reads as an empty line
        lines = split
    return lines


_EOL_SPLIT = re.compile(rb"\r\n|\n\r|\r|\n")
_SPECIAL_FIRST = frozenset(b" \t;\x0b\x0c")


def _add_body_lines(
    msg: _Msg, body: list[bytes], lines: list[bytes], state: list[bool], sem: list[int]
) -> bool:
    """_body_line over many lines: runs of ordinary lines are added in one go and only
    empty lines and lines starting with white space or ';' go through the line rules.
    False when libclamav's folded-line limit stops the message."""
    specials = [i for i, line in enumerate(lines) if not line or line[0] in _SPECIAL_FIRST]
    specials.append(len(lines))
    prev = 0
    for i in specials:
        if i > prev:
            run = lines[prev:i]
            if state[0]:
                k = 0
                while k < len(run) and _newline_in_header(run[k]):
                    k += 1
                run = run[k:]
                if run:
                    state[0] = False
            if run:
                body.extend(run)
                state[1] = False
            sem[0] = sem[1] = 0
        if i == len(lines):
            break
        prev = i + 1
        line = lines[i]
        if line:
            if _only_semicolons(line):
                if sem[0]:
                    continue
                sem[0] = 1
            else:
                sem[0] = 0
            sem[1] = sem[1] + 1 if line[0] in b" \t" else 0
            if sem[1] >= MAX_LINE_FOLDS:
                return False
        _body_line(msg, body, line, state)
    return True


def _next_uu_begin(data: bytes, low: bytes, pos: int) -> int:
    """Where the next line that starts a uuencoded block begins (-1: none); ``low`` is
    ``data`` in lower case, ``pos`` a line start."""
    at = low.find(b"begin ", pos)
    while at >= 0:
        if data[at] == 0x62 and (at == pos or data[at - 1] in b"\r\n"):
            if is_uuencode_begin(data[at : at + 10]):
                return at
        at = low.find(b"begin ", at + 1)
    return -1


def _read_body(
    reader: MailReader, msg: _Msg, body: list[bytes], state: list[bool], sem: list[int], ctx: _Ctx
) -> Iterator[Child]:
    """The rest of the outer body, in blocks between uuencoded ``begin`` lines; each
    uuencoded block is decoded as libclamav's fast track does (read with fmap_gets)."""
    data = reader.data
    low = data.lower() if data.find(b"egin ", reader.pos) >= 0 else b""
    while reader.pos < len(data):
        at = _next_uu_begin(data, low, reader.pos) if low else -1
        end = at if at >= 0 else len(data)
        lines = _getlines(data[reader.pos : end])
        reader.pos = end
        if not _add_body_lines(msg, body, lines, state, sem):
            yield from ctx.exceeded(LINE_FOLDS_EXCEEDED, True)
            return
        if at < 0:
            return
        line = reader.getline() or b""
        sem[0] = sem[1] = 0
        state[0] = False
        name = _field(line, 2, _SPLIT_SPACE)
        if name is None:
            body.append(line)
            state[1] = False
            continue
        data_out, cut = uu_decode(reader.gets_all(), ctx.limit)
        yield from ctx.save(ctx.child(name, data_out, cut), True)


def _parse_email_file(
    reader: MailReader, first: bytes, ctx: _Ctx
) -> Generator[Child, None, _Msg | None]:
    """parseEmailFile: the headers and body of a single message; uuencoded blocks in the
    body are decoded on the way (libclamav's "fast track visa")."""
    msg = _Msg(bounce_ok=False)
    in_header = True
    last_was_blank = False
    any_headers = False
    boundary: bytes | None = None
    sem = [0, 0]  # the last line was only ';' and blanks, consecutive folded lines
    header: list[bytes] = []
    quotes = 0  # parity of the '"' in the header being joined
    header_bytes = 0
    header_count = 0
    body: list[bytes] = []
    state = [True, False]  # body still empty, last body line blank
    stopped = False
    pending: bytes | None = first.rstrip(b"\r\n")
    while True:
        if pending is None:
            line = reader.getline()
            if line is None:
                break
        else:
            line, pending = pending, None
        if line:
            if _only_semicolons(line):
                if sem[0]:
                    continue
                sem[0] = 1
            else:
                sem[0] = 0
            sem[1] = sem[1] + 1 if line[0] in b" \t" else 0
            if sem[1] >= MAX_LINE_FOLDS:
                yield from ctx.exceeded(LINE_FOLDS_EXCEEDED, True)
                stopped = True
                break
        if last_was_blank:
            last_was_blank = False
            if boundary is not None and boundary_start(line, boundary):
                # "a header line with space that should be blank": this line is body
                in_header = False
                _body_line(msg, body, line, state)
                break
        if line and line[0] in _WS and not _strstrip(line):
            # a line of white space only: not the end of the headers for RFC 2822, but
            # some mail readers take it as such, so libclamav makes a best guess
            if header:
                header_count += 1
                if header_count > MAX_HEADERS:
                    yield from ctx.exceeded(HEADERS_EXCEEDED, True)
                    stopped = True
                    break
                joined = b"".join(header)
                header, quotes = [], 0
                parsed = _parse_header(msg, joined)
                if _took_args(msg):
                    yield from ctx.exceeded(ARGUMENTS_EXCEEDED, True)
                if not parsed:
                    continue
            if boundary is None:
                boundary = _find_argument(msg, b"boundary")
            if boundary is not None:
                last_was_blank = True
                continue
        if not line and not header:
            if any_headers:
                in_header = False  # "End of header information"
                break
            continue  # junk before the headers
        if not header:
            if line[0] in b" \t":
                continue  # continuation of a header that does not matter
            command = _header_command(line)
            if command is None:
                if line.startswith(b"From "):
                    any_headers = True
                continue
            if command == 0:
                if not any_headers:
                    any_headers = _useful_header(line)
                continue
            any_headers = True
            header.append(line)
            quotes ^= line.count(b'"') & 1
        elif line:
            header.append(line)
            quotes ^= line.count(b'"') & 1
        header_bytes += len(line)
        if header_bytes > MAX_HEADER_BYTES:
            yield from ctx.exceeded(HEADER_BYTES_EXCEEDED, True)
            stopped = True
            break
        if reader.peek() in (b" ", b"\t"):
            continue  # folded: the next line continues this header
        if header[-1].endswith(b";") or (line and quotes):
            continue  # the header goes on on the next line
        joined = b"".join(header)
        header_count += 1
        if header_count > MAX_HEADERS:
            yield from ctx.exceeded(HEADERS_EXCEEDED, True)
            stopped = True
            break
        parsed = _parse_header(msg, joined)
        if _took_args(msg):
            yield from ctx.exceeded(ARGUMENTS_EXCEEDED, True)
        if not parsed:
            header = [joined]
            continue
        header, quotes = [], 0
    if not any_headers:
        return None
    if not in_header and not stopped:
        yield from _read_body(reader, msg, body, state, sem, ctx)
    msg.set_body(body)
    return msg


def _mbox(reader: MailReader, first: bytes, ctx: _Ctx) -> Generator[Child, None, int]:
    """A Unix mailbox, read with fmap_gets: a message starts at each "From " line that
    follows an empty line."""
    current: list[bytes] = []
    last_empty = False
    line: bytes | None = first.rstrip(b"\r\n")
    while line is not None:
        if last_empty and line.startswith(b"From "):
            msg, stop = _parse_headers(current, _Msg(body=current).has_marker())
            current = []
            if stop is not None:
                yield from ctx.exceeded(stop, True)  # the rest of the mailbox is skipped
            if msg is None:
                line = reader.gets()
                continue
            if msg.body:
                rc = yield from _parse_body(msg, None, ctx, 0)
                if rc == FAIL:
                    line = reader.gets()
                    continue
        else:
            last_empty = not line
        if line[:1] == b"b" and is_uuencode_begin(line):
            name = _field(line, 2, _SPLIT_SPACE)
            if name is not None:
                data, cut = uu_decode(reader.gets_all(), ctx.limit)
                yield from ctx.save(ctx.child(name, data, cut), True)
                line = reader.gets()
                continue
        _add_str(current, line, NOMIME)
        line = reader.gets()
    msg, stop = _parse_headers(current, _Msg(body=current).has_marker())
    if stop is not None:
        yield from ctx.exceeded(stop, True)
    if msg is not None and msg.body:
        return (yield from _parse_body(msg, None, ctx, 0))
    return OK


def _single(reader: MailReader, first: bytes, ctx: _Ctx) -> Generator[Child, None, int]:
    """One message: a CommuniGate "P I" preamble and blank lines at the top are skipped."""
    line: bytes | None = first
    if first.startswith(b"P I "):
        while (line := reader.gets_raw()) is not None and line[:1] not in b"\r\n":
            pass
    while line is not None and line[:1] in b"\r\n":
        line = reader.getline_raw()
    if line is None:
        return OK
    msg = yield from _parse_email_file(reader, line, ctx)
    if msg is not None and msg.body:
        return (yield from _parse_body(msg, None, ctx, 0))
    return OK


def mail_children(data: bytes, limit: int) -> Iterator[Child]:
    """Every object libclamav's mail parser saves from a message or mailbox: decoded parts,
    raw text parts, nested messages, uudecoded files and bounces (all typed by content)."""
    ctx = _Ctx(limit, OUTPUT_FACTOR * len(data) + limit)
    reader = MailReader(data)
    first = reader.gets_raw()
    if first is None:
        return
    if first.startswith(b"From "):
        rc = yield from _mbox(reader, first, ctx)
    else:
        rc = yield from _single(reader, first, ctx)
    if rc == MAXREC:
        yield from ctx.exceeded(RECURSION_EXCEEDED, False)
    elif rc == MAXFILES:
        yield from ctx.exceeded(FILES_EXCEEDED, False)
    if rc in (OK, OK_NOT_SAVED):
        # libclamav's final scan of its temporary directory (skipped when parsing failed)
        yield from ctx.deferred
