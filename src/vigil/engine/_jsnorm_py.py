"""The Python JavaScript normaliser (ClamAV 1.4's js-norm.c), kept as the reference.

``vigil.native._jsnorm`` runs the same normaliser in C on the scan path; the tests compare the
two byte for byte. Nothing on the scan path imports this module.
"""

from __future__ import annotations

import enum
import functools
import re

_WS = b"\t\n\x0b\x0c\r "
# ClamAV's JS output folds case and turns every whitespace byte into a space.
_JS_CLEAN = bytes.maketrans(bytes(range(0x41, 0x5B)) + _WS, bytes(range(0x61, 0x7B)) + b" " * 6)

# --------------------------------------------------------------------------- JavaScript
#
# ClamAV's js-norm.c: a tokenizer, a scope tracker that renames declared variables to
# n000, n001, ... (so signatures survive renaming), folding of "a"+"b", and decoders for
# unescape(), eval("..."), dF("...") and the p,a,c,k,e,r packer. The tokenizer takes one
# regex match per token; the rest works per token.


class _T(enum.IntEnum):
    OTHER = 0  # operators and keywords: output as their text
    IDENT = 1
    UNNORM = 2  # a member name after '.': never renamed
    STRING = 3
    INT = 4
    FLOAT = 5
    FUNCTION = 6  # with a scope: the keyword; without: the marker closing a function
    VAR = 7
    DOT = 8
    PAR_OPEN = 9
    PAR_CLOSE = 10
    CURLY_OPEN = 11
    CURLY_CLOSE = 12
    BRACKET_OPEN = 13
    BRACKET_CLOSE = 14
    COMMA = 15
    SEMICOLON = 16
    PLUS = 17


class _Scope:
    __slots__ = ("ids", "parent", "fsm", "last", "brackets", "blocks")

    def __init__(self, parent: _Scope | None) -> None:
        self.ids: dict[bytes, int] = {}  # -1: used here but not declared here
        self.parent = parent
        self.fsm = _BASE
        self.last = _T.OTHER
        self.brackets = 0
        self.blocks = 0


class _Tok:
    __slots__ = ("kind", "text", "owned", "num", "scope")

    def __init__(
        self,
        kind: _T,
        text: bytes | None = None,
        *,
        owned: bool = False,
        num: float = 0,
        scope: _Scope | None = None,
    ) -> None:
        self.kind = kind
        self.text = text  # None for numbers and function tokens
        self.owned = owned  # ClamAV's "string" (not "cstring") value: literals, member names
        self.num = num
        self.scope = scope


# Declaration tracking states of a scope (js-norm.c's fsm_state).
_BASE, _IN_VAR, _IN_INIT, _WAIT_NAME, _WAIT_PARAMS, _IN_DECL = range(6)
# Tokenizer modes that survive the end of a buffer.
_INITIAL, _ML_COMMENT, _SL_COMMENT, _NUMBER, _DQ, _SQ, _IDENT = range(7)

_KEYWORDS: dict[bytes, _T] = dict.fromkeys(
    b"""break case catch continue default delete do else finally for if in instanceof new
    return switch this throw try typeof void while with null true false abstract boolean byte
    char class const debugger double enum export extends final float goto implements import
    int interface long native package private protected public short static super
    synchronized throws transient volatile""".split(),
    _T.OTHER,
)
_KEYWORDS[b"var"] = _T.VAR
_KEYWORDS[b"function"] = _T.FUNCTION
_SPECIAL = {
    ord("("): _T.PAR_OPEN,
    ord(")"): _T.PAR_CLOSE,
    ord("["): _T.BRACKET_OPEN,
    ord("]"): _T.BRACKET_CLOSE,
    ord("{"): _T.CURLY_OPEN,
    ord("}"): _T.CURLY_CLOSE,
    ord(","): _T.COMMA,
    ord("."): _T.DOT,
    ord(";"): _T.SEMICOLON,
}
_JS_LEX = re.compile(
    rb"(?P<skip>[\x00-\x20#@`\x7f-\xff]+)"
    rb"|(?P<ml>/\*)"
    rb"|(?P<sl>//[^\n ]*)"
    rb"|(?P<op>>>>=|===|!==|>>>|<<=|>>=|<<|<=|==|>=|>>|\|\||--|!=|&&|\+\+|[-*/%+&^|]="
    rb"|[-=+&:/!><*|%?~^])"
    rb"|(?P<q>[\"'])"
    rb"|(?P<num>[0-9])"
    rb"|(?P<id>[A-Za-z_$\\])"
    rb"|(?P<sp>[()\[\]{},.;])"
)
_SL_REST = re.compile(rb"[^\n ]*")
_ID_RUN = re.compile(rb"(?:[0-9A-Za-z_$]|\\u)*")
# Digits, at most one '.', and after it digits and exponents (js-norm.c's parseNumber).
_NUM_RUN = re.compile(rb"[0-9]*(?:\.(?:[0-9]|[eE][-+0-9])*[eE]?)?")
_ATOI = re.compile(rb"[0-9]+")
_ATOF = re.compile(rb"[0-9]*\.?[0-9]*(?:[eE][-+]?[0-9]+)?")
_STRING_ESCAPE = re.compile(rb"\\(?:x([\s\S]{2})|x[\s\S]?|u([\s\S]{4})|u|([\s\S]))")
_SIMPLE_ESCAPES = {ord("0"): 0, ord("b"): 8, ord("t"): 9, ord("n"): 10, ord("v"): 11}
_SIMPLE_ESCAPES.update({ord("f"): 12, ord("r"): 13})
_UNESCAPE = re.compile(rb"%u([0-9A-Fa-f]{4})|%([0-9A-Fa-f]{2})")
_DE_PIECES = re.compile(rb"([A-Za-z0-9]+)|[^A-Za-z0-9]+")
_BACKSLASH_QUOTE = re.compile(rb"\\(?=['\"])")


def _hexval(c: int) -> int:
    """cli_hex2int: the value of a hex digit, -1 for anything else."""
    if 0x30 <= c <= 0x39:
        return c - 0x30
    c |= 0x20
    return c - 0x57 if 0x61 <= c <= 0x66 else -1


def _utf8(u: int) -> bytes:
    """str.c's output_utf8 for one UTF-16 unit; NUL becomes 0x01, as ClamAV never emits NUL."""
    u &= 0xFFFF
    if u == 0:
        return b"\x01"
    return chr(u).encode("utf-8", "surrogatepass")


def _literal_escape(m: re.Match[bytes]) -> bytes:
    hx, uni, other = m.group(1), m.group(2), m.group(3)
    if hx is not None:
        return bytes([((max(_hexval(hx[0]), 0) << 4) | _hexval(hx[1])) & 0xFF])
    if uni is not None:
        hi = [max(_hexval(c), 0) for c in uni[:3]]
        return _utf8((hi[0] << 12) | (hi[1] << 8) | (hi[2] << 4) | _hexval(uni[3]))
    if other is not None:
        return bytes([_SIMPLE_ESCAPES.get(other[0], other[0])])
    return b"\\"  # \x or \u without enough digits: the backslash stays, the letter goes


def _unescape_literal(text: bytes) -> bytes:
    """Decode JS string escapes as str.c's cli_textbuffer_append_normalize does."""
    if b"\\" in text:
        text = _STRING_ESCAPE.sub(_literal_escape, text)
    return text.replace(b"\x00", b"\x01")


def _percent_escape(m: re.Match[bytes]) -> bytes:
    if m.group(1) is not None:
        return _utf8(int(m.group(1), 16))
    return bytes([int(m.group(2), 16)])


def _unescape(text: bytes) -> bytes:
    """JavaScript's unescape() as str.c's cli_unescape implements it (%uXXXX becomes UTF-8)."""
    if b"%" in text:
        text = _UNESCAPE.sub(_percent_escape, text)
    return text.replace(b"\x00", b"\x01")


@functools.lru_cache(maxsize=4096)
def _sub_table(n: int) -> bytes:
    return bytes((b - n) & 0xFF for b in range(256))


@functools.lru_cache(maxsize=65536)
def _packer_index(word: bytes, base: int) -> int:
    """A packer word read as a number in ``base`` with ClamAV's digits (0-9, a-z, A-Z).

    Loops over the characters of one short word; the cache makes repeated words free.
    """
    val = 0
    for v in word:
        digit = v - 87 if v >= 0x61 else (v - 29 if v >= 0x41 else v - 0x30)
        val = (val * base + digit) & 0xFFFFFFFF
    return val


def _atoi(text: bytes) -> int:
    """C's atoi: strtol saturating at 64 bits, then truncated to a 32-bit int."""
    m = _ATOI.match(text)
    digits = m.group().lstrip(b"0") if m else b""
    # Over 19 digits saturates anyway (and int() refuses more than 4300 of them).
    val = min(int(digits or b"0"), (1 << 63) - 1) if len(digits) <= 19 else (1 << 63) - 1
    return ((val + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _atof(text: bytes) -> float:
    m = _ATOF.match(text)
    try:
        return float(m.group()) if m else 0.0
    except ValueError:
        return 0.0


def _alnum(c: int) -> bool:
    return 0x30 <= c <= 0x39 or 0x41 <= (c & ~0x20) <= 0x5A


class _JsNormaliser:
    """One script's normaliser; feed it text with ``process`` and collect ``finish``."""

    def __init__(self) -> None:
        self.uniq = 0
        self.glob = _Scope(None)
        self.current = self.glob
        self.tokens: list[_Tok] = []
        self.mode = _INITIAL
        self.pending = bytearray()

    # ---------------------------------------------------------------- tokenizer

    def process(self, buf: bytes) -> None:
        """Tokenize one buffer; a token cut by its end continues with the next buffer."""
        pos, n = 0, len(buf)
        while pos < n:
            mode = self.mode
            if mode == _INITIAL:
                pos = self._initial(buf, pos)
            elif mode == _ML_COMMENT:
                end = buf.find(b"*/", pos)
                if end < 0:
                    return
                pos = end + 2
                self.mode = _INITIAL
            elif mode == _SL_COMMENT:
                m = _SL_REST.match(buf, pos)
                pos = m.end() if m else pos
                self.mode = _INITIAL
            elif mode == _IDENT:
                pos = self._identifier(buf, pos)
            elif mode == _NUMBER:
                pos = self._number(buf, pos)
            else:
                pos = self._string(buf, pos)

    def _initial(self, buf: bytes, pos: int) -> int:
        m = _JS_LEX.match(buf, pos)
        assert m is not None  # the alternatives cover every byte
        group = m.lastgroup
        if group == "sl" and m.end() == pos + 2 == len(buf):
            # "//" that ends a buffer: ClamAV's comment then carries on into the next one
            # (a comment with text after it in the same buffer ends with the buffer).
            self.mode = _SL_COMMENT
            return m.end()
        if group == "skip" or group == "sl":
            return m.end()
        if group == "ml":
            self.mode = _ML_COMMENT
            return m.end()
        if group == "op":
            text = m.group()
            self._take(_Tok(_T.PLUS if text == b"+" else _T.OTHER, text))
            return m.end()
        if group == "q":
            self.mode = _DQ if buf[pos] == 0x22 else _SQ
            return self._string(buf, pos + 1)
        if group == "num":
            self.mode = _NUMBER
            return self._number(buf, pos)
        if group == "id":
            self.mode = _IDENT
            return self._identifier(buf, pos)
        self._take(_Tok(_SPECIAL[buf[pos]], m.group()))
        return m.end()

    def _string(self, buf: bytes, pos: int) -> int:
        quote = b'"' if self.mode == _DQ else b"'"
        end = buf.find(quote, pos)
        while end > pos and buf[end - 1] == 0x5C:
            end = buf.find(quote, end + 1)
        if end < 0:
            self.pending += _unescape_literal(buf[pos:])
            return len(buf)
        self.pending += _unescape_literal(buf[pos:end])
        text = bytes(self.pending)
        self.pending.clear()
        self.mode = _INITIAL
        self._take(_Tok(_T.STRING, text, owned=True))
        return end + 1

    def _identifier(self, buf: bytes, pos: int) -> int:
        m = _ID_RUN.match(buf, pos)
        assert m is not None
        self.pending += m.group().replace(b"\\u", b"\\")
        end, n = m.end(), len(buf)
        if end == n:
            return n
        if buf[end] == 0x5C:
            # A backslash not followed by 'u' ends the name and is dropped; ClamAV also
            # drops the character after it when that is the buffer's last one.
            end = n if end + 2 >= n else end + 1
        text = bytes(self.pending)
        self.pending.clear()
        self.mode = _INITIAL
        self._take(_Tok(_KEYWORDS.get(text, _T.IDENT), text))
        return end

    def _number(self, buf: bytes, pos: int) -> int:
        m = _NUM_RUN.match(buf, pos)
        assert m is not None
        run = m.group()
        end, n = m.end(), len(buf)
        self.pending += run
        if end == n:
            if not run or run[-1] not in b"eE":
                return n
            end -= 1  # ClamAV re-reads a final lone 'e' as the start of the next token
        text = bytes(self.pending)
        self.pending.clear()
        self.mode = _INITIAL
        if b"." in run:
            self._take(_Tok(_T.FLOAT, num=_atof(text)))
        else:
            self._take(_Tok(_T.INT, num=_atoi(text)))
        return end

    # ---------------------------------------------------------------- scopes

    def _take(self, tok: _Tok) -> None:
        """Track declarations and scopes for one token, then store it (cli_js_process_buffer)."""
        cur = self.current
        kind = tok.kind
        lexed = kind
        if kind == _T.VAR:
            cur.fsm = _IN_VAR
        elif kind == _T.IDENT:
            text = tok.text or b""
            fsm = cur.fsm
            if cur.last == _T.DOT:
                tok.kind, tok.owned = _T.UNNORM, True
            elif fsm in (_BASE, _IN_INIT, _WAIT_PARAMS):
                cur.ids.setdefault(text, -1)
            elif fsm in (_IN_VAR, _IN_DECL):
                cur.ids[text] = self.uniq
                self.uniq += 1
                cur.fsm, cur.brackets = _IN_INIT, 0
            else:  # waiting for the function's name
                cur.ids[text] = self.uniq
                self.uniq += 1
                cur.fsm = _WAIT_PARAMS
        elif kind == _T.PAR_OPEN:
            if cur.fsm in (_WAIT_NAME, _WAIT_PARAMS):
                cur.fsm = _IN_DECL
        elif kind == _T.PAR_CLOSE:
            if cur.fsm == _WAIT_PARAMS:
                cur.fsm = _BASE
        elif kind == _T.CURLY_OPEN:
            if cur.fsm in (_WAIT_NAME, _WAIT_PARAMS, _IN_DECL):
                cur.fsm = _BASE
            cur.blocks += 1
        elif kind == _T.CURLY_CLOSE:
            if cur.blocks > 0:
                cur.blocks -= 1
            if not cur.blocks and cur.parent is not None:
                self.tokens.append(tok)
                tok = _Tok(_T.FUNCTION)  # marks the end of the function's scope
                self.current = cur = cur.parent
        elif kind == _T.BRACKET_OPEN:
            cur.brackets += 1
        elif kind == _T.BRACKET_CLOSE:
            if cur.brackets > 0:
                cur.brackets -= 1
        elif kind == _T.COMMA:
            # A comma ends an initializer only outside brackets and blocks: var x=[4,y];
            if cur.fsm == _IN_INIT and not cur.brackets and not cur.blocks:
                cur.fsm = _IN_VAR
        elif kind == _T.SEMICOLON:
            if not cur.brackets and not cur.blocks:
                cur.fsm = _BASE
        elif kind == _T.FUNCTION:
            self.current = cur = _Scope(cur)
            cur.fsm = _WAIT_NAME
            tok.scope = cur
        elif kind == _T.STRING:
            toks = self.tokens
            if len(toks) > 1 and toks[-1].kind == _T.PLUS and toks[-2].kind == _T.STRING:
                toks.pop()
                prev = toks[-1]
                prev.text = (prev.text or b"") + (tok.text or b"")
                return
        self.tokens.append(tok)
        cur.last = lexed

    # ---------------------------------------------------------------- decoders

    def finish(self) -> bytes:
        """Close what is open, run the folders and decoders, and render the script."""
        if self.mode in (_DQ, _SQ):
            self.process(b'"' if self.mode == _DQ else b"'")
        balance = 0
        for tok in self.tokens:
            if tok.kind == _T.PAR_OPEN:
                balance += 1
            elif tok.kind == _T.PAR_CLOSE and balance:
                balance -= 1
        self.tokens.extend(_Tok(_T.PAR_CLOSE, b")") for _ in range(balance))
        self._fold_unescape()
        self._run_decoders()
        return self._render()

    def _fold_unescape(self) -> None:
        toks = self.tokens
        i = 0
        while i < len(toks):
            if (
                i + 2 < len(toks)
                and toks[i].kind == _T.IDENT
                and toks[i].text == b"unescape"
                and toks[i + 1].kind == _T.PAR_OPEN
                and toks[i + 2].kind == _T.STRING
                and i + 4 <= len(toks)
            ):
                text = _unescape(toks[i + 2].text or b"")
                toks[i : i + 4] = [_Tok(_T.STRING, text, owned=True)]
            i += 1

    def _enter(self, tok: _Tok) -> None:
        if tok.kind == _T.FUNCTION:
            if tok.scope is not None:
                self.current = tok.scope
            elif self.current.parent is not None:
                self.current = self.current.parent

    def _run_decoders(self) -> None:
        i = 0
        while i < len(self.tokens):
            toks = self.tokens
            tok = toks[i]
            found: tuple[int, int, bytes, bool] | None = None
            if tok.kind == _T.FUNCTION and i + 13 < len(toks):
                name: bytes | None = None
                i += 1
                if toks[i].kind == _T.IDENT:
                    name = toks[i].text
                    i += 1
                if self._packer_params(toks, i):
                    found = self._unpack(toks, i, name)
            elif i + 2 < len(toks) and tok.kind == _T.IDENT and toks[i + 1].kind == _T.PAR_OPEN:
                if tok.text == b"dF":
                    found = self._decode_df(toks, i + 2)
                elif tok.text == b"eval":
                    found = self._decode_eval(toks, i + 2)
            if found is not None:
                begin, end, text, append = found
                if end < len(toks) and toks[end].kind == _T.SEMICOLON:
                    end += 1
                self.tokens = []
                self.process(text)
                nested, self.tokens = self.tokens, toks
                if begin < len(toks) and end <= len(toks):
                    toks[begin:end] = [] if append else nested
                if append:
                    toks.extend(nested)
            if i < len(self.tokens):
                self._enter(self.tokens[i])
            i += 1

    @staticmethod
    def _packer_params(toks: list[_Tok], i: int) -> bool:
        # ClamAV means to match "(p,a,c,k,e,r)" or "(p,a,c,k,e,d)", but its loop stops
        # after three names: "(p,a,c," is what it really checks.
        if toks[i].kind != _T.PAR_OPEN:
            return False
        for k, name in enumerate((b"p", b"a", b"c")):
            ident, comma = toks[i + 1 + 2 * k], toks[i + 2 + 2 * k]
            if ident.kind != _T.IDENT or ident.text != name or comma.kind != _T.COMMA:
                return False
        return True

    @staticmethod
    def _collect(toks: list[_Tok], k: int) -> tuple[list[int], int]:
        """Where six comma-separated arguments starting at ``k`` begin."""
        params: list[int] = []
        for j in range(6):
            if k >= len(toks):
                break
            params.append(k)
            k += 1
            stop = _T.COMMA if j != 5 else _T.PAR_CLOSE
            while k < len(toks) and toks[k].kind != stop:
                k += 1
            k += 1
        return params, k

    def _unpack(
        self, toks: list[_Tok], start: int, name: bytes | None
    ) -> tuple[int, int, bytes, bool] | None:
        """Dean Edwards' packer: find the packed call(s) and expand the word table."""
        nesting, k, cnt = 1, start, len(toks)
        while k < cnt:
            if toks[k].kind == _T.FUNCTION:
                nesting += 1 if toks[k].scope is not None else -1
                if not nesting:
                    break
            k += 1
        if nesting:
            return None
        out = bytearray()
        first = last = -1
        if name is not None:
            while k + 2 < cnt:
                if (
                    toks[k].kind == _T.IDENT
                    and toks[k].text == name
                    and toks[k + 1].kind == _T.PAR_OPEN
                ):
                    params, k = self._collect(toks, k + 2)
                    if len(params) == 6:
                        if first < 0:
                            first = params[0]
                        last = params[5]
                        self._unpack_call([toks[p] for p in params], out)
                k += 1
        else:
            while k < cnt and toks[k].kind != _T.PAR_OPEN:
                k += 1
            k += 1
            if k >= cnt:
                return None
            params, k = self._collect(toks, k)
            if len(params) == 6:
                first, last = params[0], params[5]
                self._unpack_call([toks[p] for p in params], out)
        if first < 0 or last < 0:
            return None
        end = last + 1
        if (
            end + 2 < cnt
            and toks[end].kind == _T.BRACKET_OPEN
            and toks[end + 1].kind == _T.BRACKET_CLOSE
            and toks[end + 2].kind == _T.PAR_CLOSE
        ):
            end += 3
        elif end < cnt:
            end += 1
        return first, end, bytes(out), False

    @staticmethod
    def _unpack_call(params: list[_Tok], out: bytearray) -> None:
        packed = params[0].text
        base = int(params[1].num) if params[1].kind == _T.INT else -1
        table = params[3].text if params[3].owned else None
        if packed is None or table is None:
            return
        words = table.split(b"|")
        params[3].text = words[0]  # ClamAV splits the table in place
        for m in _DE_PIECES.finditer(packed):
            word = m.group(1)
            if word is None:
                out += _BACKSLASH_QUOTE.sub(b"", m.group())
                continue
            idx = _packer_index(word, base)
            out += words[idx] if idx < len(words) and words[idx] else word

    @staticmethod
    def _decode_df(toks: list[_Tok], start: int) -> tuple[int, int, bytes, bool] | None:
        """scriptasylum's dF(): unescape, shift every byte down, unescape again."""
        tok = toks[start]
        if tok.kind != _T.STRING or not tok.text:
            return None
        text = tok.text
        shift = (text[-1] - 0x30) & 0xFF
        tok.text = text[:-1]
        step = _unescape(text[:-1]).translate(_sub_table(shift))
        return start - 2, start + 2, _unescape(step.split(b"\x00", 1)[0]), True

    @staticmethod
    def _decode_eval(toks: list[_Tok], start: int) -> tuple[int, int, bytes, bool] | None:
        tok = toks[start]
        text = tok.text if tok.owned else None
        if start + 1 >= len(toks) or text is None or toks[start + 1].kind != _T.PAR_CLOSE:
            return None
        tok.text = None
        return start - 2, start + 2, text, False

    # ---------------------------------------------------------------- output

    def _render(self) -> bytes:
        out = bytearray(b"<script>")
        self.current = self.glob
        last = 0
        for tok in self.tokens:
            if tok.kind == _T.FUNCTION:
                self._enter(tok)
                if tok.scope is None:
                    continue
            last = self._render_token(tok, out, last)
        return bytes(out)

    def _render_token(self, tok: _Tok, out: bytearray, last: int) -> int:
        kind = tok.kind
        if kind == _T.STRING:
            out += b'"' + (tok.text or b"").translate(_JS_CLEAN) + b'"'
            return 0x22
        if kind in (_T.INT, _T.FLOAT, _T.IDENT, _T.FUNCTION):
            if _alnum(last):
                out += b" "
            if kind == _T.INT:
                out += b"%d" % tok.num
                return 0x30
            if kind == _T.FLOAT:
                out += (b"%g" % tok.num).translate(_JS_CLEAN)
                return 0x30
            if kind == _T.FUNCTION:
                out += b"function"
            elif tok.text is not None:
                ident = self._lookup(tok.text)
                out += b"n%03d" % ident if ident >= 0 else tok.text.translate(_JS_CLEAN)
            return 0x61
        text = tok.text
        if text is None:
            return 0
        if text and _alnum(last) and _alnum(text[0]):
            out += b" "
        out += text.translate(_JS_CLEAN)
        return text[-1] if text else 0

    def _lookup(self, name: bytes) -> int:
        scope: _Scope | None = self.current
        while scope is not None:
            ident = scope.ids.get(name, -1)
            if ident >= 0:
                return ident
            scope = scope.parent
        return -1
