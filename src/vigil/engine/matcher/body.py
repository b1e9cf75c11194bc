"""Body patterns compiled for verification: regex segments plus a literal atom for Hyperscan.

Why atoms: Hyperscan scans every object once for one short literal per pattern (the rarest
run of fixed bytes); only patterns whose atom occurs are verified, at C speed, by the
compiled regular expressions built here. Parts joined by bounded gaps form one regex
*segment*; segments joined by unbounded gaps (``*``, ``{n-}``) are chained left to right,
each searched from the end of the previous one, so verification stays linear.
"""

from __future__ import annotations

import struct
import threading
import time
from dataclasses import dataclass

import regex

from vigil.engine.buffer import Buffer
from vigil.engine.signatures.pattern import Anchor, Gap, Pattern, Token, push
from vigil.native import _atomscore

__all__ = [
    "COMMON_BYTES",
    "CompiledPattern",
    "check_deadline",
    "compile_pattern",
    "scan_deadline",
    "widen",
]

# The current scan's deadline (MaxScanTime), per thread: verification uses the ``regex``
# module, which releases the GIL while it matches and stops at a timeout.
_state = threading.local()


def scan_deadline(deadline: float | None) -> None:
    """Set (or clear) the monotonic deadline of the scan running on this thread."""
    _state.deadline = deadline


def check_deadline() -> float | None:
    """Seconds left for the current scan (None: no limit); TimeoutError once it is over."""
    return _remaining()


def _remaining() -> float | None:
    deadline: float | None = getattr(_state, "deadline", None)
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("MaxScanTime")
    return left


# Bytes that fill executables and documents; atoms made of them hit everywhere, so they
# weigh less when choosing (ClamAV's own atom filter avoids 00 and FF for the same reason).
COMMON_BYTES = {0x00: 0.1, 0xFF: 0.2, 0x20: 0.5, 0x90: 0.4, 0xCC: 0.4, 0x01: 0.6, 0x0A: 0.6}
MAX_ATOM = 16
# Lookahead room beyond a window's last possible match end: right anchors (<= 33 bytes),
# (L) and wide (W) look at two bytes.
SLACK = 40

_B_LEFT = b" \\-./<@_"
_B_RIGHT = b"\\n\\r \"'\\-/=>_"
_ALNUM = b"A-Za-z0-9"


def _esc(b: int) -> bytes:
    return b"\\x%02x" % b


def _class(values: bytes, negated: bool) -> bytes:
    body = b"".join(_esc(v) for v in values)
    return b"[" + (b"^" if negated else b"") + body + b"]"


def _nib(value: int, mask: int) -> bytes:
    if mask == 0xF0:
        return b"[" + _esc(value) + b"-" + _esc(value | 0x0F) + b"]"
    return _class(bytes(h << 4 | value for h in range(16)), False)


def _wide_bytes(data: bytes) -> bytes:
    out = bytearray(len(data) * 2)
    out[0::2] = data
    return bytes(out)


def widen(tokens: list[Token] | tuple[Token, ...]) -> list[Token]:
    """UTF-16LE form of a token list (§2.5 ``w``): each byte-like token is followed by 00."""
    out: list[Token] = []
    for t in tokens:
        kind = t[0]
        if kind == "lit":
            push(out, ("lit", _wide_bytes(t[1])))  # type: ignore[arg-type]
        elif kind == "any":
            for _ in range(t[1]):  # type: ignore[call-overload]
                push(out, ("any", 1))
                push(out, ("lit", b"\x00"))
        elif kind in ("nib", "set"):
            push(out, t)
            push(out, ("lit", b"\x00"))
        elif kind == "strs":
            push(out, ("strs", tuple(_wide_bytes(x) for x in t[1]), t[2]))  # type: ignore[attr-defined]
        elif kind == "alt":
            push(out, ("alt", tuple(tuple(widen(list(br))) for br in t[1])))  # type: ignore[attr-defined]
        else:
            push(out, t)
    return out


def _special(cls: str, negated: bool, where: str, wide: bool) -> bytes:
    """Regex for (B)/(L)/(W): zero-width at a part's edge, one consumed byte in the middle."""
    if where == "left":
        if cls == "B":
            rx = b"(?:\\A|(?<=[" + _B_LEFT + b"]))"
        elif cls == "L":
            rx = b"(?:\\A|(?<=\\n))"
        elif wide:
            rx = b"(?<![" + _ALNUM + b"]\\x00)"
        else:
            rx = b"(?<![" + _ALNUM + b"])"
        return (b"(?!" + rx + b")") if negated else rx
    if where == "right":
        if cls == "B":
            rx = b"(?=[" + _B_RIGHT + b"]|\\Z)"
        elif cls == "L":
            rx = b"(?=\\n|\\r\\n|\\Z)"
        elif wide:
            rx = b"(?![" + _ALNUM + b"]\\x00)"
        else:
            rx = b"(?![" + _ALNUM + b"])"
        return (b"(?!" + rx + b")") if negated else rx
    if cls == "B":
        body = b"[" + _B_LEFT + b"\\n\\r\"'=>]"
    elif cls == "L":
        body = b"\\n"  # in the middle only a bare newline counts (observed on 1.4.6)
    else:
        body = b"[^" + _ALNUM + b"]"
    return (b"(?!" + body + b")[\\s\\S]") if negated else body


def _token_rx(t: Token, wide: bool) -> tuple[bytes, int, int]:
    """Regex for one middle token, with its minimum and maximum width."""
    kind = t[0]
    if kind == "lit":
        lit: bytes = t[1]  # type: ignore[assignment]
        return b"".join(_esc(c) for c in lit), len(lit), len(lit)
    if kind == "any":
        n: int = t[1]  # type: ignore[assignment]
        return b"[\\s\\S]{%d}" % n, n, n
    if kind == "nib":
        return _nib(t[1], t[2]), 1, 1  # type: ignore[arg-type]
    if kind == "set":
        return _class(t[1], bool(t[2])), 1, 1  # type: ignore[arg-type]
    if kind == "strs":
        strs: tuple[bytes, ...] = t[1]  # type: ignore[assignment]
        alts = b"|".join(b"".join(_esc(c) for c in s) for s in strs)
        width = len(strs[0])
        if t[2]:
            return b"(?!(?:" + alts + b"))[\\s\\S]{%d}" % width, width, width
        return b"(?:" + alts + b")", width, width
    if kind == "alt":
        rxs = []
        lo, hi = 1 << 30, 0
        for branch in t[1]:  # type: ignore[attr-defined]
            rx, a, b = _tokens_rx(list(branch), wide, edges=False)
            rxs.append(rx)
            lo, hi = min(lo, a), max(hi, b)
        return b"(?:" + b"|".join(rxs) + b")", lo, hi
    if kind == "special":
        rx = _special(str(t[1]), bool(t[2]), "middle", wide)
        return rx, 1, 1
    raise AssertionError(kind)


def _tokens_rx(tokens: list[Token], wide: bool, edges: bool) -> tuple[bytes, int, int]:
    out: list[bytes] = []
    lo = hi = 0
    n = len(tokens)
    for i, t in enumerate(tokens):
        if edges and t[0] == "special" and (i == 0 or i == n - 1) and n > 1:
            out.append(_special(str(t[1]), bool(t[2]), "left" if i == 0 else "right", wide))
            continue
        rx, a, b = _token_rx(t, wide)
        out.append(rx)
        lo += a
        hi += b
    return b"".join(out), lo, hi


def _anchor_rx(anchor: Anchor, side: str, wide: bool) -> bytes:
    rx, _, _ = _token_rx(anchor.token, wide)
    if side == "right":
        return b"(?=[\\s\\S]{%d,%d}%s)" % (anchor.lo, anchor.hi, rx)
    # Python needs fixed-width lookbehinds: one per distance.
    alts = [b"(?<=%s[\\s\\S]{%d})" % (rx, k) for k in range(anchor.lo, anchor.hi + 1)]
    return b"(?:" + b"|".join(alts) + b")"


@dataclass(slots=True)
class Segment:
    """One regex covering parts joined by bounded gaps; ``maxlen`` bounds a match's length."""

    rx: regex.Pattern[bytes]
    maxlen: int
    gap_before: Gap  # the unbounded gap that precedes it (unused for the first)


class CompiledPattern:
    """A verifiable pattern: the atom that gates verification, and its regex segments.

    The segments are compiled on first use: most patterns of a large database are never
    verified on a given machine, and compiling 300 k regexes up front would cost minutes.
    """

    __slots__ = (
        "pattern",
        "parts",
        "wide",
        "caseless",
        "atom",
        "atom_max_prefix",
        "score",
        "_segments",
    )

    def __init__(
        self,
        pattern: Pattern,
        parts: list[list[Token]],
        wide: bool,
        caseless: bool,
        atom: bytes,
        atom_max_prefix: int | None,
        score: float = -1.0,
    ) -> None:
        self.pattern = pattern
        self.parts = parts
        self.wide = wide
        self.caseless = caseless
        self.atom = atom
        # where the atom sits: in the first segment at most this many bytes after its start
        # (None when it lies in a later segment)
        self.atom_max_prefix = atom_max_prefix
        self.score = score  # how rare the atom is (higher: fewer false candidates)
        self._segments: list[Segment] | None = None

    @property
    def segments(self) -> list[Segment]:
        segs = self._segments
        if segs is None:
            segs = self._segments = _build_segments(
                self.pattern, self.parts, self.wide, self.caseless
            )
        return segs

    @property
    def bounded(self) -> bool:
        return len(self.segments) == 1

    def first(
        self, data: Buffer, lo: int, hi: int, memo: dict[int, tuple[int, int, int]] | None = None
    ) -> tuple[int, int] | None:
        """The leftmost match starting in [lo, hi]; (start, end) of the whole chain.

        ``memo`` carries the later segments' searches from one call to the next (see
        :meth:`_chain`), so that listing many starts stays linear in the data.
        """
        seg = self.segments[0]
        end_limit = min(len(data), hi + seg.maxlen + SLACK)
        pos = lo
        while True:
            m = seg.rx.search(data, pos, end_limit, concurrent=True, timeout=_remaining())
            if m is None or m.start() > hi:
                return None
            end = self._chain(data, m.end(), memo)
            if end is not None:
                return m.start(), end
            if len(self.segments) > 1:
                # a later start cannot chain when the earliest did not (gaps are unbounded)
                return None
            pos = m.start() + 1

    def _chain(
        self, data: Buffer, end: int, memo: dict[int, tuple[int, int, int]] | None
    ) -> int | None:
        """Where the later segments end when the first ends at ``end``; None if they do not.

        Each later segment follows an unbounded gap, so its leftmost match from a position
        is also the leftmost from any later position up to that match's start: ``memo``
        keeps, per segment, the last search (from, start, end; start -1 when nothing was
        found, which holds for every later position too).
        """
        for i, seg in enumerate(self.segments[1:], 1):
            frm = end + seg.gap_before.min
            hit = memo.get(i) if memo is not None else None
            if hit is not None and hit[0] <= frm and (hit[1] < 0 or frm <= hit[1]):
                if hit[1] < 0:
                    return None
                end = hit[2]
                continue
            m = seg.rx.search(data, frm, concurrent=True, timeout=_remaining())
            if memo is not None:
                memo[i] = (frm, -1, -1) if m is None else (frm, m.start(), m.end())
            if m is None:
                return None
            end = m.end()
        return end

    def starts(self, data: Buffer, lo: int, hi: int, limit: int) -> list[tuple[int, int]]:
        """Up to ``limit`` matches with distinct starts in [lo, hi], as (start, end)."""
        out: list[tuple[int, int]] = []
        memo: dict[int, tuple[int, int, int]] = {}
        pos = lo
        while len(out) < limit:
            hit = self.first(data, pos, hi, memo)
            if hit is None:
                break
            out.append(hit)
            pos = hit[0] + 1
        return out


_WEIGHTS = [COMMON_BYTES.get(b, 1.0) for b in range(256)]
# the same weights, handed once to the C scorer (native doubles)
_atomscore.set_weights(struct.pack("256d", *_WEIGHTS), MAX_ATOM)


def _score_run(run: bytes) -> tuple[float, bytes]:
    """Best window of at most MAX_ATOM bytes within a run of fixed bytes.

    A window weighs the sum of its bytes' weights (from prefix sums, left to right); the
    first heaviest window wins, and its score adds 0.1 per distinct byte after the first.
    Done in C (the floats are bit for bit those of the Python arithmetic), but for a short
    run with a light byte, which is summed here as it always was.
    """
    scored = _atomscore.score_run(run)
    if scored is not None:
        return scored
    return sum(map(_WEIGHTS.__getitem__, run)) + (len(set(run)) - 1) * 0.1, run


def _build_segments(
    pattern: Pattern, parts: list[list[Token]], wide: bool, caseless: bool
) -> list[Segment]:
    flags = regex.S | (regex.I if caseless else 0)
    segments: list[Segment] = []
    cur_rx: list[bytes] = []
    cur_max = 0
    gap_before = Gap()
    for idx, tokens in enumerate(parts):
        if idx > 0:
            gap = pattern.gaps[idx - 1]
            if gap.max is None:
                segments.append(
                    Segment(regex.compile(b"".join(cur_rx), flags), cur_max, gap_before)
                )
                cur_rx, cur_max, gap_before = [], 0, gap
            else:
                cur_rx.append(b"[\\s\\S]{%d,%d}?" % (gap.min, gap.max))
                cur_max += gap.max
        part = pattern.parts[idx]
        if part.left is not None:
            cur_rx.append(_anchor_rx(part.left, "left", wide))
        rx, _, hi = _tokens_rx(tokens, wide, edges=True)
        cur_rx.append(rx)
        cur_max += hi
        if part.right is not None:
            cur_rx.append(_anchor_rx(part.right, "right", wide))
    segments.append(Segment(regex.compile(b"".join(cur_rx), flags), cur_max, gap_before))
    return segments


_ONE_BYTE = frozenset(("nib", "set", "special"))  # token kinds that span one byte


def _max_width(tokens: list[Token] | tuple[Token, ...]) -> int:
    """Most bytes the tokens can span (an over-estimate is safe: edge classes count 1)."""
    n = 0
    for t in tokens:
        kind = t[0]
        if kind in ("lit", "strs"):
            n += len(t[1]) if kind == "lit" else len(t[1][0])  # type: ignore[arg-type,index]
        elif kind == "any":
            n += t[1]  # type: ignore[operator]
        elif kind == "alt":
            n += max(_max_width(list(br)) for br in t[1])  # type: ignore[attr-defined]
        else:
            n += 1
    return n


def compile_pattern(
    pattern: Pattern, *, wide: bool = False, caseless: bool = False, fullword: bool = False
) -> CompiledPattern:
    """Choose the atom of one pattern variant; its regexes are built when first needed."""
    pparts = pattern.parts
    if len(pparts) == 1 and not wide and not fullword:
        tokens = pparts[0].tokens
        if len(tokens) == 1 and tokens[0][0] == "lit":
            # one run of fixed bytes (three patterns in four): the loop below reduced to
            # what it does for it (edge anchors do not bear on the atom)
            run: bytes = tokens[0][1]  # type: ignore[assignment]
            scored = _atomscore.score_run(run)  # _score_run, inlined
            score, atom = _score_run(run) if scored is None else scored
            if score > -1.0:
                return CompiledPattern(
                    pattern, [tokens], False, caseless, atom, run.find(atom), score
                )
    return _compile_general(pattern, wide, caseless, fullword)


def _compile_general(
    pattern: Pattern, wide: bool, caseless: bool, fullword: bool
) -> CompiledPattern:
    """:func:`compile_pattern` for any pattern: the best-scoring run of every part wins."""
    parts = [p.tokens for p in pattern.parts]  # shared, not copied, unless transformed
    if fullword:
        parts = [list(p) for p in parts]
        parts[0].insert(0, ("special", "W", False))
        parts[-1].append(("special", "W", False))
    if wide:
        parts = [widen(p) for p in parts]
    score_run = _atomscore.score_run
    best_score = -1.0
    best_atom = b""
    best_off: int | None = None
    gaps = pattern.gaps
    prefix_max: int | None = 0  # max width from the first segment's start to this part
    for idx, tokens in enumerate(parts):
        if idx > 0:
            gap = gaps[idx - 1]
            if gap.max is None:
                prefix_max = None
            elif prefix_max is not None:
                prefix_max += gap.max
        width = 0  # max width of the part's tokens before the current one
        for tok in tokens:
            kind = tok[0]
            if kind == "lit":
                run: bytes = tok[1]  # type: ignore[assignment]
                scored = score_run(run)  # _score_run, inlined
                score, atom = _score_run(run) if scored is None else scored
                if score > best_score:
                    best_score, best_atom = score, atom
                    best_off = None if prefix_max is None else prefix_max + width + run.find(atom)
                width += len(run)
            elif prefix_max is None:
                pass
            elif kind == "any":
                width += tok[1]  # type: ignore[operator]
            elif kind in _ONE_BYTE:
                width += 1
            else:
                width += _max_width((tok,))
        if prefix_max is not None:
            prefix_max += width
    return CompiledPattern(pattern, parts, wide, caseless, best_atom, best_off, best_score)
