"""Logical-signature evaluation: expressions over subsignature counts, and byte compares (§4)."""

from __future__ import annotations

from collections.abc import Sequence

from vigil.engine.buffer import Buffer
from vigil.engine.signatures.model import ByteCompareSub, Expr

__all__ = ["evaluate", "byte_compare", "required", "zero_state"]


def _compare(op: str, value: int, x: int) -> bool:
    if op == "=":
        return value == x
    if op == ">":
        return value > x
    return value < x


def evaluate(e: Expr, counts: Sequence[int]) -> tuple[bool, int, int]:
    """(truth, count, bitmask of subsignatures seen) of an expression node.

    A group's count is the sum of the counts of its true operands and its seen set their
    union; ``(group)>X,Y`` also needs Y distinct subsignatures seen (§4.3).
    """
    if e.index >= 0:
        c = counts[e.index] if e.index < len(counts) else 0
        ok = c > 0 if not e.mod else _compare(e.mod, c, e.x)
        return ok, c, (1 << e.index) if c > 0 else 0
    val = False
    total = 0
    seen = 0
    for i, child in enumerate(e.children):
        ok, c, s = evaluate(child, counts)
        if ok:
            total += c
            seen |= s
        if i == 0:
            val = ok
        elif e.ops[i - 1] == "&":
            val = val and ok
        else:
            val = val or ok
    if e.mod:
        val = _compare(e.mod, total if val else 0, e.x)
        if val and e.y >= 0:
            val = seen.bit_count() >= e.y
    return val, total, seen


def _zero_is_false(mod: str, x: int) -> bool:
    """Whether a node whose count (or group total) is 0 is false under ``mod``/``x``."""
    return not mod or not _compare(mod, 0, x)


def required(e: Expr) -> frozenset[int]:
    """Subsignatures that must match for ``e`` to be true, as :func:`evaluate` decides.

    A subsignature is required when a count of 0 for it makes the expression false
    whatever the other counts are. The scanner uses this to verify a logical signature's
    other subsignatures only once a required one has matched.
    """
    if e.index >= 0:
        return frozenset((e.index,)) if _zero_is_false(e.mod, e.x) else frozenset()
    out = frozenset[int]()
    for i, child in enumerate(e.children):
        need = required(child)
        if i == 0:
            out = need
        elif e.ops[i - 1] == "&":
            out = out | need  # the left fold is false when either side is
        else:
            out = out & need  # false only when both sides are
    # a false group counts 0: it stays false unless the modifier accepts 0
    return out if _zero_is_false(e.mod, e.x) else frozenset()


# zero_state's answers by expression identity: a database repeats a few thousand parsed
# (shared) expressions over all its logical signatures. Each entry holds its expression,
# so that the id cannot be reused while the entry exists.
_ZERO_MEMO_MAX = 1 << 12
_zero_memo: dict[int, tuple[Expr, int, bool]] = {}


def zero_state(e: Expr) -> tuple[int, bool]:
    """:func:`required` as a bitmask, and the truth :func:`evaluate` gives with every count
    0 (a database build asks both of every logical signature)."""
    hit = _zero_memo.get(id(e))
    if hit is not None and hit[0] is e:
        return hit[1], hit[2]
    need, truth = _zero_walk(e)
    if len(_zero_memo) >= _ZERO_MEMO_MAX:
        _zero_memo.clear()
    _zero_memo[id(e)] = (e, need, truth)
    return need, truth


def _zero_walk(e: Expr) -> tuple[int, bool]:
    mod = e.mod
    if e.index >= 0:
        if not mod or not _compare(mod, 0, e.x):
            return 1 << e.index, False
        return 0, True
    need = 0
    val = False
    ops = e.ops
    for i, child in enumerate(e.children):
        cneed, ok = _zero_walk(child)
        if i == 0:
            need, val = cneed, ok
        elif ops[i - 1] == "&":
            need |= cneed
            val = val and ok
        else:
            need &= cneed
            val = val or ok
    if not mod:
        return need, val
    # every total is 0, and so is every seen set: ``>X,Y`` holds only when Y is 0
    if _compare(mod, 0, e.x):
        return 0, e.y <= 0
    return need, False


_HEXDIGITS = b"0123456789abcdefABCDEF"
_DECDIGITS = b"0123456789"


def _text_number(raw: bytes, base: str, little: bool, exact: bool) -> int | None:
    if base == "a":
        if raw[:2].lower() == b"0x":
            raw, base = raw[2:], "h"
        else:
            base = "d"
    digits = _HEXDIGITS if base == "h" else _DECDIGITS
    n = 0
    while n < len(raw) and raw[n] in digits:
        n += 1
    if n == 0 or (exact and n != len(raw)):
        return None
    text = raw[:n]
    if base == "h" and little:
        if len(text) % 2:
            return None
        text = b"".join(text[i : i + 2] for i in range(len(text) - 2, -1, -2))
    return int(text, 16 if base == "h" else 10)


def byte_compare(sub: ByteCompareSub, data: Buffer, start: int) -> bool:
    """Whether the number read relative to ``start`` satisfies every comparison."""
    pos = start + sub.delta
    if pos < 0 or pos >= len(data):
        return False
    raw = data[pos : pos + sub.count]
    value: int | None
    if sub.base == "i":
        if len(raw) != sub.count:
            return False
        value = int.from_bytes(raw, "little" if sub.little else "big")
    else:
        if sub.exact and len(raw) != sub.count:
            return False
        value = _text_number(raw, sub.base, sub.little, sub.exact)
    if value is None:
        return False
    return all(_compare(op, value, x) for op, x in sub.comparisons)
