"""The fast paths of compiling body patterns give exactly what the plain code gives.

Atom choice (``compile_pattern``: a fast path for single runs, running widths in the
general path, window scoring in C), the one-walk analysis of a logical expression
(``zero_state``) and the choice of a gating subsignature (``_gate``) are each checked
against a plain reference, written here as the code first was, on random and edge-case
inputs. The result decides which atoms Hyperscan compiles and which subsignatures wait,
so it must not move by a single float bit.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Mapping, Sequence
from itertools import accumulate

import pytest

from vigil.engine import scanner
from vigil.engine.matcher.body import (
    MAX_ATOM,
    CompiledPattern,
    _compile_general,
    _score_run,
    compile_pattern,
    widen,
)
from vigil.engine.matcher.compile import LSIG, Variant, make_variants
from vigil.engine.matcher.logical import evaluate, required, zero_state
from vigil.engine.signatures.ldb import parse_expr
from vigil.engine.signatures.model import Expr
from vigil.engine.signatures.pattern import (
    Offset,
    Pattern,
    PatternError,
    Token,
    parse_offset,
    parse_pattern,
)
from vigil.native import _atomscore

WEIGHTS = [
    {0x00: 0.1, 0xFF: 0.2, 0x20: 0.5, 0x90: 0.4, 0xCC: 0.4, 0x01: 0.6, 0x0A: 0.6}.get(b, 1.0)
    for b in range(256)
]
COMMON = b"\x00\xff \x90\xcc\x01\n"


# ---------------------------------------------------------------- references (plain code)


def _ref_score(run: bytes) -> tuple[float, bytes]:
    if len(run) <= MAX_ATOM:
        return sum(WEIGHTS[b] for b in run) + (len(set(run)) - 1) * 0.1, run
    prefix = list(accumulate((WEIGHTS[b] for b in run), initial=0.0))
    sums = [b - a for a, b in zip(prefix, prefix[MAX_ATOM:], strict=False)]
    i = sums.index(max(sums))
    window = run[i : i + MAX_ATOM]
    return prefix[i + MAX_ATOM] - prefix[i] + (len(set(window)) - 1) * 0.1, window


def _ref_width(tokens: Sequence[Token]) -> int:
    n = 0
    for t in tokens:
        if t[0] == "lit":
            n += len(t[1])  # type: ignore[arg-type]
        elif t[0] == "strs":
            n += len(t[1][0])  # type: ignore[index]
        elif t[0] == "any":
            n += t[1]  # type: ignore[operator]
        elif t[0] == "alt":
            n += max(_ref_width(list(br)) for br in t[1])  # type: ignore[attr-defined]
        else:
            n += 1
    return n


def _ref_compile(
    pattern: Pattern, wide: bool, caseless: bool, fullword: bool
) -> tuple[object, ...]:
    parts = [p.tokens for p in pattern.parts]
    if fullword:
        parts = [list(p) for p in parts]
        parts[0].insert(0, ("special", "W", False))
        parts[-1].append(("special", "W", False))
    if wide:
        parts = [widen(p) for p in parts]
    best: tuple[float, bytes, int | None] = (-1.0, b"", None)
    prefix_max: int | None = 0
    for idx, tokens in enumerate(parts):
        if idx > 0:
            gap = pattern.gaps[idx - 1]
            if gap.max is None:
                prefix_max = None
            elif prefix_max is not None:
                prefix_max += gap.max
        for t_i, tok in enumerate(tokens):
            if tok[0] != "lit":
                continue
            run: bytes = tok[1]  # type: ignore[assignment]
            score, atom = _ref_score(run)
            if score > best[0]:
                off = None
                if prefix_max is not None:
                    off = prefix_max + _ref_width(tokens[:t_i]) + run.find(atom)
                best = (score, atom, off)
        if prefix_max is not None:
            prefix_max += _ref_width(tokens)
    return (parts, wide, caseless, best[1], best[2], repr(best[0]))


def _fields(cp: CompiledPattern) -> tuple[object, ...]:
    return (cp.parts, cp.wide, cp.caseless, cp.atom, cp.atom_max_prefix, repr(cp.score))


def _ref_required(e: Expr) -> frozenset[int]:
    def zero_false(mod: str, x: int) -> bool:
        return not mod or not {"=": 0 == x, ">": 0 > x, "<": 0 < x}[mod]

    if e.index >= 0:
        return frozenset((e.index,)) if zero_false(e.mod, e.x) else frozenset()
    out = frozenset[int]()
    for i, child in enumerate(e.children):
        need = _ref_required(child)
        if i == 0:
            out = need
        elif e.ops[i - 1] == "&":
            out = out | need
        else:
            out = out & need
    return out if zero_false(e.mod, e.x) else frozenset()


def _ref_gate(expr: Expr, by_sub: Mapping[int, Sequence[Variant]]) -> int | None:
    if len(by_sub) < 2:
        return None
    best: tuple[float, int] | None = None
    for si in _ref_required(expr):
        vs = by_sub.get(si)
        if not vs:
            continue
        score = min(v.cp.score for v in vs)
        if score < 0:
            continue
        if best is None or score > best[0]:
            best = (score, si)
    return None if best is None else best[1]


# ---------------------------------------------------------------- random inputs


def _run(rng: random.Random) -> bytes:
    alphabet = rng.choice((bytes(range(256)), COMMON + b"AB", COMMON, b"AAAB", b"\x00\x00C"))
    n = rng.choice((1, 2, 3, 15, 16, 17, 18, 31, 32, 33, 40, 100, 300))
    return bytes(rng.choice(alphabet) for _ in range(n))


def _hex(run: bytes) -> str:
    return run.hex()


def _byte_token(rng: random.Random) -> str:
    return rng.choice(("??", "4?", "?a", rng.choice(("00", "ff", "41", "90"))))


def _part(rng: random.Random) -> str:
    out = []
    for _ in range(rng.randint(1, 5)):
        k = rng.random()
        if k < 0.45:
            out.append(_hex(_run(rng)))
        elif k < 0.6:
            out.append(_byte_token(rng))
        elif k < 0.7:
            out.append(f"{{{rng.randint(1, 20)}}}")
        elif k < 0.8:
            w = rng.randint(1, 3)
            alts = "|".join(_hex(bytes(rng.randrange(256) for _ in range(w))) for _ in range(3))
            out.append(("!" if rng.random() < 0.3 else "") + "(" + alts + ")")
        elif k < 0.88:
            out.append("(41|4243|44??45)")
        elif k < 0.94:
            out.append(rng.choice(("(B)", "(L)", "(W)")))
        else:
            out.append("[" + rng.choice(("41", "42", "00", "ff")) + "]")
    return "".join(out)


def _pattern_text(rng: random.Random) -> str:
    text = _part(rng)
    for _ in range(rng.choice((0, 0, 1, 2, 4))):
        gap = rng.choice(("*", "{5-}", "{2-7}", "{-9}", "{0-3}", f"{{{rng.randint(200, 900)}}}"))
        text += gap + _part(rng)
    if rng.random() < 0.1:
        text = "41[1-4]" + text
    return text


def _patterns(seed: int, n: int) -> list[Pattern]:
    rng = random.Random(seed)
    out: list[Pattern] = []
    while len(out) < n:
        try:
            out.append(parse_pattern(_pattern_text(rng)))
        except PatternError:
            continue
    return out


EDGE_RUNS = [
    b"A",
    b"\x00",
    COMMON,
    b"\x00" * 17,
    b"A" * 16 + b"\x00",
    b"\x00" + b"A" * 16,
    b"\x00" * 16 + b"A",
    b"\x90" * 40 + b"ABC" + b"\xcc" * 40,
    bytes(range(256)),
    b"\x00\x01" * 50 + b"xyz" * 6,
]


# ---------------------------------------------------------------- tests


def test_c_scorer_matches_python() -> None:
    rng = random.Random(11)
    runs = EDGE_RUNS + [b"", b"AB", b"\x00A"] + [_run(rng) for _ in range(4000)]
    short_light = 0
    for run in runs:
        got = _atomscore.score_run(run)
        if got is None:  # left to Python's sum(): a short run with a light byte
            assert len(run) <= MAX_ATOM and any(WEIGHTS[b] != 1.0 for b in run)
            short_light += 1
            continue
        want = _ref_score(run)
        assert got == want, run
        assert struct.pack("d", got[0]) == struct.pack("d", want[0])
    assert short_light > 100


def test_c_scorer_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="256 doubles"):
        _atomscore.set_weights(b"\x00" * 8, MAX_ATOM)
    with pytest.raises(ValueError, match="width"):
        _atomscore.set_weights(struct.pack("256d", *WEIGHTS), 0)
    with pytest.raises(TypeError):
        _atomscore.score_run("AAAA")  # type: ignore[arg-type]
    # a refused table leaves the weights in use as they were
    assert _atomscore.score_run(b"\x00" * 20) == _ref_score(b"\x00" * 20)


def test_score_run_matches_reference() -> None:
    rng = random.Random(5)
    for run in EDGE_RUNS + [_run(rng) for _ in range(4000)]:
        got, want = _score_run(run), _ref_score(run)
        assert got == want and repr(got[0]) == repr(want[0]), run


@pytest.mark.parametrize("run", EDGE_RUNS + [b"", b"AB", b"\x00A\x00"])
def test_single_run_fast_path_matches_general(run: bytes) -> None:
    pattern = Pattern([parse_pattern("41").parts[0]], [])
    pattern.parts[0].tokens = [("lit", run)]
    for caseless in (False, True):
        fast = compile_pattern(pattern, caseless=caseless)
        slow = _compile_general(pattern, False, caseless, False)
        assert _fields(fast) == _fields(slow)
        assert fast.parts[0] is pattern.parts[0].tokens  # shared, as the general path does


def test_compile_pattern_matches_reference() -> None:
    pats = _patterns(7, 1500)
    fast_paths = 0
    for i, pattern in enumerate(pats):
        flags = [(False, False, False), (i % 3 == 0, i % 2 == 0, i % 5 == 0)]
        for wide, caseless, fullword in flags:
            got = compile_pattern(pattern, wide=wide, caseless=caseless, fullword=fullword)
            want = _ref_compile(pattern, wide, caseless, fullword)
            assert _fields(got) == want, (pattern, wide, caseless, fullword)
        tokens = pattern.parts[0].tokens
        fast_paths += len(pattern.parts) == 1 and len(tokens) == 1 and tokens[0][0] == "lit"
    assert fast_paths > 50  # the fast path was exercised, not only the general one


def test_make_variants_plain_and_with_modifiers() -> None:
    pattern = parse_pattern("41424344{2-5}00ff4545(41|42)4647484950")
    off: Offset = parse_offset("*")
    for mods in ("", "i", "w", "wa", "iwf", "fa"):
        vs = make_variants(pattern, mods, LSIG, 3, 1, 7, off)
        wide = "w" in mods
        forms = [wide] + ([False] if wide and "a" in mods else [])
        assert len(vs) == len(forms)
        for v, w in zip(vs, forms, strict=True):
            want = _ref_compile(pattern, w, "i" in mods, "f" in mods)
            assert _fields(v.cp) == want
            assert (v.kind, v.owner, v.sub, v.target, v.offset) == (LSIG, 3, 1, 7, off)


def _expr(rng: random.Random, depth: int) -> Expr:
    if depth == 0 or rng.random() < 0.35:
        mod = rng.choice(("", "", "=", ">", "<"))
        return Expr(index=rng.randrange(12), mod=mod, x=rng.randint(0, 2) if mod else 0)
    children = tuple(_expr(rng, depth - 1) for _ in range(rng.randint(1, 4)))
    ops = tuple(rng.choice("&|") for _ in children[1:])
    mod = rng.choice(("", "", "", "=", ">", "<"))
    return Expr(
        children=children,
        ops=ops,
        mod=mod,
        x=rng.randint(0, 2) if mod else 0,
        y=rng.choice((-1, -1, 0, 1, 2)) if mod else -1,
    )


def test_zero_state_matches_required_and_evaluate() -> None:
    rng = random.Random(9)
    texts = ["0", "0&1&2", "0|1", "(0|1)&2", "0>2", "0=0", "(0&1)>1,1", "(0|1)>0,0", "0<1"]
    exprs = [parse_expr(t) for t in texts] + [_expr(rng, 4) for _ in range(1500)]
    for e in exprs:
        for _ in range(2):  # the second answer comes from the memo
            need, truth = zero_state(e)
            assert need == sum(1 << i for i in required(e)) == sum(1 << i for i in _ref_required(e))
            assert truth == evaluate(e, [0] * 12)[0]


def _variant(score: float) -> Variant:
    cp = CompiledPattern(parse_pattern("41"), [], False, False, b"A", 0, score)
    return Variant(cp, LSIG, 0, 0, 0, parse_offset("*"))


def test_gate_matches_reference() -> None:
    rng = random.Random(13)
    scores = (-1.0, 4.1, 4.1, 5.2, 16.0, 16.0)
    cases = 0
    for _ in range(3000):
        e = _expr(rng, 3)
        by_sub: dict[int, list[Variant]] = {}
        for si in sorted(rng.sample(range(12), rng.randint(1, 8))):
            by_sub[si] = [_variant(rng.choice(scores)) for _ in range(rng.choice((1, 1, 2)))]
        want = _ref_gate(e, by_sub)
        assert scanner._gate(e, by_sub) == want
        cases += want is not None
    assert cases > 250


def test_gate_tie_follows_set_order_beyond_eight() -> None:
    """Indices 1 and 9 share a slot of the smallest hash table: 9 comes first when the
    set is built with it first, so a tie between them goes to 9, as before."""
    e = parse_expr("9&1")
    assert list(_ref_required(e)) == [9, 1]
    by_sub = {1: [_variant(16.0)], 9: [_variant(16.0)]}
    assert scanner._gate(e, by_sub) == _ref_gate(e, by_sub) == 9
    by_sub = {1: [_variant(16.1)], 9: [_variant(16.0)]}
    assert scanner._gate(e, by_sub) == 1
