"""ClamAV's hex body-signature grammar (signatures.md §2) and offsets (§3.1).

A pattern is parsed into *parts* separated by gaps; each part is a list of tokens. The matcher
turns parts into compiled regular expressions for verification and picks a literal *atom* per
pattern for the Hyperscan prefilter. Parse failures raise ``PatternError`` with a short reason
that the database loaders prefix with ``file:line``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from vigil.engine.signatures.common import is_number

__all__ = [
    "Anchor",
    "Gap",
    "Offset",
    "Part",
    "Pattern",
    "PatternError",
    "Token",
    "parse_checked",
    "parse_offset",
    "parse_pattern",
]

MAX_ANCHOR_DIST = 32  # AC_CH_MAXDIST: the furthest a [x-y] single-byte anchor may sit
MAX_ALT_DEPTH = 15
MAX_NUMBER = 0xFFFFFFFE  # ClamAV keeps gaps in 32 bits (and Python regex repeats stop below 2**32)
HEX = "0123456789abcdefABCDEF"


# The classes below pickle as constructor calls (``__reduce__``), as those of model.py do,
# for the same reason: the slots-dataclass default is slow on hundreds of thousands of them.


class PatternError(ValueError):
    """A body signature or offset that ClamAV would refuse to load."""


# Token kinds (a token is a small tuple so that patterns stay cheap to hold in bulk):
#   ("lit", bytes)              a run of exact bytes (adjacent runs are always merged)
#   ("any", n)                  n arbitrary bytes (??, {n} with n < 128)
#   ("nib", value, mask)        a byte whose masked bits equal value (h?, ?h)
#   ("set", bytes, negated)     one byte from (or not from) a set
#   ("strs", (b1, b2..), neg)   one of several equal-length strings (or none of them)
#   ("alt", (tokens...), ...)   generic alternative: each branch is a tuple of tokens
#   ("special", "B"|"L"|"W", negated)
Token = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class Gap:
    """Distance allowed between two parts: ``min`` bytes at least, ``max`` at most (None = any)."""

    min: int = 0
    max: int | None = None

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (Gap, (self.min, self.max))


@dataclass(frozen=True, slots=True)
class Anchor:
    """A single byte ``token`` that must lie ``lo``..``hi`` bytes before/after the pattern."""

    token: Token
    lo: int
    hi: int

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (Anchor, (self.token, self.lo, self.hi))


@dataclass(slots=True)
class Part:
    """A run of tokens matched contiguously, with optional single-byte edge anchors."""

    tokens: list[Token] = field(default_factory=list)
    left: Anchor | None = None
    right: Anchor | None = None

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (Part, (self.tokens, self.left, self.right))


@dataclass(slots=True)
class Pattern:
    """A parsed body signature: parts and the gaps between them."""

    parts: list[Part]
    gaps: list[Gap]

    @property
    def all_fixed(self) -> bool:
        """True when the pattern is a single run of exact bytes (ClamAV's Boyer-Moore case)."""
        p = self.parts[0]
        return (
            len(self.parts) == 1
            and p.left is None
            and p.right is None
            and all(t[0] == "lit" for t in p.tokens)
        )

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (Pattern, (self.parts, self.gaps))


def _hexval(c: str) -> int:
    return int(c, 16)


_HEX_RUN = re.compile(r"(?:[0-9a-fA-F]{2})+")
_NUMBER = re.compile(r"[0-9]+")


def _single_byte(t: Token) -> bool:
    return (t[0] == "lit" and len(t[1]) == 1) or t[0] == "nib"  # type: ignore[arg-type]


def push(tokens: list[Token], tok: Token) -> None:
    """Append a token, merging adjacent literal runs and adjacent arbitrary-byte runs."""
    if tokens and tok[0] in ("lit", "any") and tokens[-1][0] == tok[0]:
        tokens[-1] = (tok[0], tokens[-1][1] + tok[1])  # type: ignore[operator]
    else:
        tokens.append(tok)


class _Parser:
    """Recursive-descent reader of one hex signature string."""

    def __init__(self, text: str, brackets_as_gaps: bool) -> None:
        self.s = text
        self.i = 0
        self.brackets_as_gaps = brackets_as_gaps

    def error(self, reason: str) -> PatternError:
        return PatternError(reason)

    def parse(self) -> Pattern:
        s = self.s
        if not s:
            raise self.error("empty signature")
        parts: list[Part] = [Part()]
        gaps: list[Gap] = []
        pending_right: tuple[int, int] | None = None

        def new_part(gap: Gap) -> None:
            if pending_right is not None:
                raise self.error("a [x-y] anchor needs a byte after it")
            parts.append(Part())
            gaps.append(gap)

        while self.i < len(s):
            c = s[self.i]
            cur = parts[-1]
            if cur.right is not None and c not in "*{":
                raise self.error("a [x-y] anchor must be next to a single byte at an edge")
            if c == "*":
                self.i += 1
                new_part(Gap(0, None))
            elif c == "{":
                gap, repeat = self.read_brace()
                if repeat:
                    push(cur.tokens, ("any", repeat))
                else:
                    new_part(gap)
            elif c == "[":
                lo, hi = self.read_bracket()
                if self.brackets_as_gaps:
                    new_part(Gap(lo, hi if hi else None))
                    continue
                if cur.left is None and len(cur.tokens) == 1 and _single_byte(cur.tokens[0]):
                    cur.left = Anchor(cur.tokens[0], lo, hi)
                    cur.tokens.clear()
                elif cur.tokens and pending_right is None:
                    pending_right = (lo, hi)
                else:
                    raise self.error("a [x-y] anchor must be next to a single byte at an edge")
            elif pending_right is not None:
                # after HEX[x-y] only the single anchor byte may follow before the part ends
                cur.right = Anchor(self.read_byte_token(), *pending_right)
                pending_right = None
            elif c == "!" or c == "(":
                push(cur.tokens, self.read_group(depth=0))
            elif c in HEX or c == "?":
                m = _HEX_RUN.match(s, self.i)
                if m is not None:
                    self.i = m.end()
                    push(cur.tokens, ("lit", bytes.fromhex(m.group())))
                else:
                    push(cur.tokens, self.read_byte_token())
            else:
                raise self.error(f"unexpected character {c!r} at position {self.i}")
        if pending_right is not None:
            raise self.error("a [x-y] anchor needs a byte after it")
        for p in parts:
            if not p.tokens:
                raise self.error("empty part around a wildcard")
        return Pattern(parts, gaps)

    def read_byte_token(self) -> Token:
        s = self.s
        if self.i + 2 > len(s):
            raise self.error("odd number of hex digits")
        a, b = s[self.i], s[self.i + 1]
        self.i += 2
        if a == "?" and b == "?":
            return ("any", 1)
        if a == "?" and b in HEX:
            return ("nib", _hexval(b), 0x0F)
        if b == "?" and a in HEX:
            return ("nib", _hexval(a) << 4, 0xF0)
        if a in HEX and b in HEX:
            return ("lit", bytes((_hexval(a) * 16 + _hexval(b),)))
        raise self.error(f"bad hex byte {a + b!r}")

    def read_number(self) -> int | None:
        m = _NUMBER.match(self.s, self.i)
        if m is None:
            return None
        val = int(m.group())
        if val > MAX_NUMBER:
            raise self.error(f"number {val} too large")
        self.i = m.end()
        return val

    def read_brace(self) -> tuple[Gap, int]:
        """Read ``{n}``, ``{n-}``, ``{-n}`` or ``{n-m}``; small ``{n}`` becomes n wildcards."""
        self.i += 1
        lo = self.read_number()
        dash = self.i < len(self.s) and self.s[self.i] == "-"
        if dash:
            self.i += 1
        hi = self.read_number()
        if self.i >= len(self.s) or self.s[self.i] != "}":
            raise self.error("bad {} range")
        self.i += 1
        if not dash:
            if lo is None:
                raise self.error("bad {} range")
            if 0 < lo < 128:
                return Gap(), lo
            return Gap(lo, lo if lo else None), 0
        if lo is None and hi is None:
            raise self.error("bad {} range")
        if lo is None:
            return Gap(0, hi if hi else None), 0
        if hi is None:
            return Gap(lo, None), 0
        if hi and lo > hi:
            raise self.error(f"bad {{}} range: {lo} > {hi}")
        return Gap(lo, hi if hi else None), 0

    def read_bracket(self) -> tuple[int, int]:
        self.i += 1
        lo = self.read_number()
        hi = lo
        if self.i < len(self.s) and self.s[self.i] == "-":
            self.i += 1
            hi = self.read_number()
        if lo is None or hi is None or self.i >= len(self.s) or self.s[self.i] != "]":
            raise self.error("bad [] range")
        self.i += 1
        if lo > hi or hi > MAX_ANCHOR_DIST:
            raise self.error(f"bad [] range [{lo}-{hi}]: at most {MAX_ANCHOR_DIST}, low <= high")
        return lo, hi

    def read_group(self, depth: int) -> Token:
        """Read ``(..|..)``, ``!(..)`` or a ``(B)``/``(L)``/``(W)`` class."""
        s = self.s
        negated = s[self.i] == "!"
        if negated:
            self.i += 1
            if self.i >= len(s) or s[self.i] != "(":
                raise self.error("'!' must be followed by '('")
        if depth > MAX_ALT_DEPTH:
            raise self.error("alternatives nested too deeply")
        self.i += 1
        if s[self.i : self.i + 2] in ("B)", "L)", "W)"):
            cls = s[self.i]
            self.i += 2
            return ("special", cls, negated)
        branches: list[list[Token]] = [[]]
        nested = False
        while True:
            if self.i >= len(s):
                raise self.error("unterminated alternative")
            c = s[self.i]
            if c == ")":
                self.i += 1
                break
            if c == "|":
                self.i += 1
                branches.append([])
            elif c == "(" or c == "!":
                nested = True
                push(branches[-1], self.read_group(depth + 1))
            elif c == "{":
                gap, repeat = self.read_brace()
                if not repeat:
                    raise self.error("wildcard ranges are not allowed inside an alternative")
                push(branches[-1], ("any", repeat))
            elif c in "*[":
                raise self.error("wildcard ranges are not allowed inside an alternative")
            else:
                push(branches[-1], self.read_byte_token())
        if any(not b for b in branches):
            raise self.error("empty alternative")
        fixed = not nested and all(len(b) == 1 and b[0][0] == "lit" for b in branches)
        strs = tuple(bytes(b[0][1]) for b in branches if fixed)  # type: ignore[call-overload]
        if fixed and len({len(x) for x in strs}) == 1:
            if len(strs[0]) == 1:
                return ("set", bytes(sorted({x[0] for x in strs})), negated)
            return ("strs", strs, negated)
        if negated:
            raise self.error("a generic alternative cannot be negated")
        return ("alt", tuple(tuple(b) for b in branches))


def parse_pattern(text: str, *, brackets_as_gaps: bool = False) -> Pattern:
    """Parse a hex body signature; raises PatternError on anything ClamAV refuses."""
    text = text.strip()
    if _HEX_RUN.fullmatch(text):  # most signatures are plain hex: skip the tokenizer
        return Pattern([Part([("lit", bytes.fromhex(text))])], [])
    return _Parser(text, brackets_as_gaps).parse()


# The fast paths of parse_checked. Each builds exactly the Pattern _Parser builds for the
# shapes it knows, and gives up (None) on anything else, valid or not: the general path then
# parses it and refuses it with its own message. The tests compare both on many inputs.

# (possessive quantifiers: there is only one way to cut such a text, and trying the others
# on a long near-miss would take exponential time)
_HEX_CHUNK = r"(?:[0-9a-fA-F]{2})++"
_SIMPLE_SEP = r"\*|\{[0-9]*+-?[0-9]*+\}|(?:\?\?)++"
# hex runs joined by ``*``, ``{..}`` or ``??`` runs: nine in ten wildcard patterns in practice
_SIMPLE = re.compile(f"{_HEX_CHUNK}(?:(?:{_SIMPLE_SEP}){_HEX_CHUNK})*+")
_SIMPLE_SPLIT = re.compile(f"({_SIMPLE_SEP})")
# one token of a slightly wider set: also nibbles and hex-only alternatives, in any order
_FAST_TOKEN = re.compile(
    r"((?:[0-9a-fA-F]{2})++)"  # 1: literal run
    r"|((?:\?\?)++)"  # 2: arbitrary bytes
    r"|([0-9a-fA-F])\?"  # 3: high nibble
    r"|\?([0-9a-fA-F])"  # 4: low nibble
    r"|(\{[0-9]*+-?[0-9]*+\}|\*)"  # 5: range or any gap
    r"|(!?)\(((?:[0-9a-fA-F]{2})++(?:\|(?:[0-9a-fA-F]{2})++)*+)\)"  # 6, 7: alternative
)
_ANY_GAP = Gap(0, None)


def _range(text: str) -> Gap | int | None:
    """A ``*`` or ``{..}`` as _Parser reads it: a Gap, a count of arbitrary bytes (small
    ``{n}``), or None when _Parser would refuse it (or when it is too long to judge here)."""
    if text == "*":
        return _ANY_GAP
    lo_text, dash, hi_text = text[1:-1].partition("-")
    if len(lo_text) > 9 or len(hi_text) > 9:
        return None  # perhaps beyond MAX_NUMBER: left to _Parser
    if not dash:
        if not lo_text:
            return None
        lo = int(lo_text)
        if 0 < lo < 128:
            return lo
        return Gap(lo, lo if lo else None)
    if not lo_text:
        if not hi_text:
            return None
        hi = int(hi_text)
        return Gap(0, hi if hi else None)
    lo = int(lo_text)
    if not hi_text:
        return Gap(lo, None)
    hi = int(hi_text)
    if hi and lo > hi:
        return None
    return Gap(lo, hi if hi else None)


def _simple_pattern(text: str) -> Pattern | None:
    """Hex runs joined by simple wildcards (the text must match _SIMPLE)."""
    pieces = _SIMPLE_SPLIT.split(text)
    if len(pieces) == 1:
        return None  # all fixed: parse_checked's plain case, with its own minimum
    fromhex = bytes.fromhex
    first = pieces[0]
    tokens: list[Token] = [("lit", fromhex(first))]
    run = len(first)  # longest hex run of the current part, in digits
    parts: list[Part] = []
    gaps: list[Gap] = []
    for i in range(1, len(pieces), 2):
        sep = pieces[i]
        hex_text = pieces[i + 1]
        if sep[0] == "?":
            tokens.append(("any", len(sep) >> 1))
        else:
            gap = _range(sep)
            if gap is None:
                return None
            if type(gap) is int:
                tokens.append(("any", gap))
            else:
                if run < 4:
                    return None  # check_static refuses the part
                parts.append(Part(tokens))
                gaps.append(gap)  # type: ignore[arg-type]
                tokens = []
                run = 0
        tokens.append(("lit", fromhex(hex_text)))
        if len(hex_text) > run:
            run = len(hex_text)
    if run < 4:
        return None
    parts.append(Part(tokens))
    return Pattern(parts, gaps)


def _token_pattern(text: str) -> Pattern | None:
    """The wider set of _FAST_TOKEN, read token by token (with _Parser's merging)."""
    parts: list[Part] = []
    gaps: list[Gap] = []
    tokens: list[Token] = []
    pos = 0
    end = len(text)
    match = _FAST_TOKEN.match
    while pos < end:
        m = match(text, pos)
        if m is None:
            return None
        pos = m.end()
        kind = m.lastindex
        tok: Token
        if kind == 1:
            tok = ("lit", bytes.fromhex(m.group(1)))
        elif kind == 2:
            tok = ("any", (pos - m.start()) >> 1)
        elif kind == 3:
            tok = ("nib", int(m.group(3), 16) << 4, 0xF0)
        elif kind == 4:
            tok = ("nib", int(m.group(4), 16), 0x0F)
        elif kind == 5:
            gap = _range(m.group(5))
            if gap is None:
                return None
            if type(gap) is int:
                tok = ("any", gap)
            else:
                if not tokens:
                    return None  # empty part
                parts.append(Part(tokens))
                gaps.append(gap)  # type: ignore[arg-type]
                tokens = []
                continue
        else:
            branches = m.group(7).split("|")
            negated = bool(m.group(6))
            size = len(branches[0])
            if any(len(b) != size for b in branches):
                if negated:
                    return None  # a negated generic alternative: refused
                tok = ("alt", tuple((("lit", bytes.fromhex(b)),) for b in branches))
            elif size == 2:
                tok = ("set", bytes(sorted({int(b, 16) for b in branches})), negated)
            else:
                tok = ("strs", tuple(bytes.fromhex(b) for b in branches), negated)
        if tokens and tok[0] in ("lit", "any") and tokens[-1][0] == tok[0]:
            tokens[-1] = (tok[0], tokens[-1][1] + tok[1])  # type: ignore[operator]
        else:
            tokens.append(tok)
    if not tokens or (not parts and len(tokens) == 1 and tokens[0][0] == "lit"):
        return None  # an empty part, or all fixed (parse_checked's plain case)
    parts.append(Part(tokens))
    for part in parts:  # check_static
        count = 0
        run = 0
        for t in part.tokens:
            if t[0] == "lit":
                n = len(t[1])  # type: ignore[arg-type]
                count += n
                if n > run:
                    run = n
            elif t[0] == "any":
                count += t[1]  # type: ignore[operator]
            else:
                count += 1
        if count < 2 or run < 2:
            return None
    return Pattern(parts, gaps)


def parse_checked(text: str, *, brackets_as_gaps: bool = False, min_fixed_only: int) -> Pattern:
    """parse_pattern then check_static, with fast paths for the shapes that make up nearly
    all of a real database (plain hex; ``??``, nibbles, ``{}``, ``*`` and hex-only
    alternatives). The result, and the error for a refused signature, are the same."""
    try:
        data = bytes.fromhex(text)  # (cheaper than a regular expression)
    except ValueError:
        fast = _simple_pattern(text) if _SIMPLE.fullmatch(text) else _token_pattern(text)
        if fast is not None:
            return fast
    else:
        # fromhex skips spaces (left to _Parser, which strips them only at the ends)
        if len(data) >= min_fixed_only and len(data) * 2 == len(text):
            return Pattern([Part([("lit", data)])], [])
    pattern = parse_pattern(text, brackets_as_gaps=brackets_as_gaps)
    check_static(pattern, min_fixed_only=min_fixed_only)
    return pattern


def _fixed_run(tokens: list[Token]) -> int:
    return max((len(t[1]) for t in tokens if t[0] == "lit"), default=0)  # type: ignore[arg-type]


def element_count(tokens: list[Token] | tuple[Token, ...]) -> int:
    """Pattern elements: each byte of a literal, each arbitrary byte, each other token."""
    n = 0
    for t in tokens:
        if t[0] == "lit":
            n += len(t[1])  # type: ignore[arg-type]
        elif t[0] == "any":
            n += t[1]  # type: ignore[operator]
        else:
            n += 1
    return n


def check_static(pattern: Pattern, *, min_fixed_only: int) -> None:
    """Apply ClamAV's load-time checks: two fixed bytes per part, short all-fixed bodies.

    ``min_fixed_only`` is 3 for .ndb/.db bodies (the Boyer-Moore matcher refuses shorter
    all-fixed patterns) and 2 for logical subsignatures.
    """
    if pattern.all_fixed:
        if element_count(pattern.parts[0].tokens) < min_fixed_only:
            raise PatternError("signature is too short")
        return
    for part in pattern.parts:
        if element_count(part.tokens) < 2 or _fixed_run(part.tokens) < 2:
            raise PatternError("can't find a static subpattern of two fixed bytes")


# --------------------------------------------------------------------------- offsets


@dataclass(frozen=True, slots=True)
class Offset:
    """Where a match may start (§3.1): ``kind`` names the base, ``shift`` the extra window."""

    kind: str  # "any", "abs", "eof", "ep", "sec", "secall", "last", "vi", "macro"
    value: int = 0  # n (signed for EP), or the macro group
    section: int = 0
    shift: int = 0
    has_shift: bool = False

    @property
    def needs_exe(self) -> bool:
        return self.kind in ("ep", "sec", "secall", "last", "vi")

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (Offset, (self.kind, self.value, self.section, self.shift, self.has_shift))


ANY_OFFSET = Offset("any")


def _uint(text: str, what: str) -> int:
    if not is_number(text):
        raise PatternError(f"bad offset: {what} {text!r} is not a number")
    return int(text)


def parse_offset(text: str) -> Offset:
    """Parse an offset specification such as ``*``, ``10,5``, ``EOF-3``, ``EP+0``, ``S1+4``."""
    text = text.strip()
    if text == "*":
        return ANY_OFFSET
    if not text:
        raise PatternError("empty offset")
    if text.startswith("$"):
        if len(text) < 3 or not text.endswith("$"):
            raise PatternError(f"bad macro offset {text!r}")
        group = _uint(text[1:-1], "macro group")
        if group >= 32:
            raise PatternError(f"macro group {group} out of range")
        return Offset("macro", group)
    base, sep, shift_text = text.partition(",")
    shift = _uint(shift_text, "shift") if sep else 0

    def at(kind: str, value: int, section: int = 0) -> Offset:
        return Offset(kind, value, section, shift, bool(sep))

    if is_number(base):
        return at("abs", int(base))
    if base.startswith("EOF-"):
        return at("eof", _uint(base[4:], "EOF distance"))
    if base.startswith(("EP+", "EP-")):
        dist = _uint(base[3:], "EP distance")
        return at("ep", dist if base[2] == "+" else -dist)
    if base.startswith("SL+"):
        return at("last", _uint(base[3:], "SL distance"))
    if base.startswith("SE"):
        return at("secall", 0, _uint(base[2:], "section"))
    if base.startswith("S") and "+" in base:
        sec, _, dist_text = base[1:].partition("+")
        return at("sec", _uint(dist_text, "section distance"), _uint(sec, "section"))
    if base == "VI":
        if sep:
            raise PatternError("VI takes no shift")
        return Offset("vi")
    raise PatternError(f"bad offset {text!r}")
