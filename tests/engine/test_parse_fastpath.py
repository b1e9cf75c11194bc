"""The fast paths of body-pattern and logical-signature parsing against the general parser.

``parse_checked`` and the bare-hex shortcut of ``parse_ldb_line`` must build exactly what
``parse_pattern`` + ``check_static`` and ``parse_subsig`` build, and refuse exactly what they
refuse, with the same message. Inputs are random token sequences (seeded) plus edge cases.
"""

from __future__ import annotations

import random
import time

import pytest

from vigil.engine.signatures.common import SkipSig
from vigil.engine.signatures.ldb import parse_ldb, parse_ldb_line, parse_subsig, parse_tdb
from vigil.engine.signatures.pattern import (
    _SIMPLE,
    MAX_NUMBER,
    Pattern,
    PatternError,
    _simple_pattern,
    _token_pattern,
    check_static,
    parse_checked,
    parse_pattern,
)
from vigil.errors import SignatureError

Outcome = tuple[str, object]


def general(text: str, brackets_as_gaps: bool, min_fixed_only: int) -> Outcome:
    try:
        pattern = parse_pattern(text, brackets_as_gaps=brackets_as_gaps)
        check_static(pattern, min_fixed_only=min_fixed_only)
    except PatternError as exc:
        return ("error", str(exc))
    return ("ok", pattern)


def fast(text: str, brackets_as_gaps: bool, min_fixed_only: int) -> Outcome:
    try:
        return (
            "ok",
            parse_checked(text, brackets_as_gaps=brackets_as_gaps, min_fixed_only=min_fixed_only),
        )
    except PatternError as exc:
        return ("error", str(exc))


def _hex(rng: random.Random, lo: int = 1, hi: int = 5) -> str:
    text = "".join(f"{rng.randrange(256):02x}" for _ in range(rng.randint(lo, hi)))
    return text.upper() if rng.random() < 0.2 else text


_NUMBERS = (0, 1, 2, 5, 127, 128, 129, 300, 4096, MAX_NUMBER, MAX_NUMBER + 1, 99999999999)


def _num(rng: random.Random) -> str:
    n = rng.choice(_NUMBERS) if rng.random() < 0.5 else rng.randrange(200)
    return ("0" if rng.random() < 0.05 else "") + str(n)


def _alt(rng: random.Random, depth: int = 0) -> str:
    kind = rng.random()
    size = rng.randint(1, 3)
    if kind < 0.5:  # equal-length hex branches: a set or strings
        branches = [_hex(rng, size, size) for _ in range(rng.randint(1, 4))]
    elif kind < 0.75:  # unequal hex branches: a generic alternative
        branches = [_hex(rng, 1, 3) for _ in range(rng.randint(2, 4))]
    else:  # branches with wildcards, nibbles, nesting, or empty
        branches = [
            rng.choice(["??", "a?", "?7", "{2}", "", _hex(rng, 1, 2), "{2-3}"])
            + (_alt(rng, depth + 1) if depth < 2 and rng.random() < 0.3 else _hex(rng, 0, 2))
            for _ in range(rng.randint(1, 3))
        ]
    neg = "!" if rng.random() < 0.25 else ""
    return f"{neg}({'|'.join(branches)})"


def _token(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.35:
        return _hex(rng)
    if r < 0.45:
        return "??" * rng.randint(1, 3)
    if r < 0.5:
        return rng.choice("0123456789abcdefABCDEF") + "?" if rng.random() < 0.5 else "?" + "c"
    if r < 0.65:
        shape = rng.randrange(4)
        lo, hi = _num(rng), _num(rng)
        return ["{" + lo + "}", "{" + lo + "-}", "{-" + hi + "}", "{" + lo + "-" + hi + "}"][shape]
    if r < 0.72:
        return "*"
    if r < 0.85:
        return _alt(rng)
    if r < 0.9:
        return rng.choice(["(B)", "(L)", "(W)", "!(B)"])
    if r < 0.94:
        return f"[{rng.randrange(40)}-{rng.randrange(40)}]"
    return rng.choice(
        ["{}", "{-}", "(aa|)", "()", "!", "|", "x", " ", "a", "???", "{1-2-3}", "{a}"]
    )


def _random_patterns(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        text = "".join(_token(rng) for _ in range(rng.randint(1, 7)))
        if rng.random() < 0.03:
            text = " " + text + " "
        out.append(text)
    return out


EDGE_CASES = [
    "",
    "a",
    "aa",
    "aabb",
    "aabbcc",
    "AABBCC",
    "aabbc",
    "aa bb",
    " aabbcc ",
    "aabbcc\t",
    "aabb*ccdd",
    "aa*ccdd",
    "*aabb",
    "aabb*",
    "aabb**ccdd",
    "aabb{0}ccdd",
    "aabb{1}ccdd",
    "aabb{127}ccdd",
    "aabb{128}ccdd",
    "aabb{5-}ccdd",
    "aabb{-5}ccdd",
    "aabb{-0}ccdd",
    "aabb{0-0}ccdd",
    "aabb{5-3}ccdd",
    "aabb{3-5}ccdd",
    "aabb{5-0}ccdd",
    "aabb{}ccdd",
    "aabb{-}ccdd",
    f"aabb{{{MAX_NUMBER}}}ccdd",
    f"aabb{{{MAX_NUMBER + 1}}}ccdd",
    f"aabb{{0000000000{MAX_NUMBER}}}ccdd",
    "aabb{4294967294-}ccdd",
    "aabb??ccdd",
    "aabb???ccdd",
    "aa??{3}??bb{2}cc",
    "{3}aabb",
    "aabb{3}",
    "aa{3}bb",
    "a?bbcc",
    "?abbcc",
    "aab?cc",
    "aabbc?",
    "aabb(cc|dd)",
    "aabb!(cc|dd)",
    "aabb(ccdd|eeff)",
    "aabb!(ccdd|eeff)",
    "aabb(cc|ddee)",
    "aabb!(cc|ddee)",
    "aabb(cc)",
    "aabb(cc|cc|dd)",
    "aabb(dd|cc)eeff",
    "aabb(cc|)",
    "aabb(cc|d?)",
    "aabb((cc|dd)|ee)",
    "aabb(B)ccdd",
    "aabb!(W)",
    "aabb(cc|dd",
    "aa[1-2]bbcc",
    "aabbcc[1-2]dd",
    "aabbcc[1-40]dd",
    "aa{2}bb*cc??dd(ee|ff)00",
    "aa{2}bb*c",
    "aa*bb",
    "aabb*cc",
    "aabb*ccdd*ee",
]


@pytest.mark.parametrize("brackets_as_gaps", [False, True])
@pytest.mark.parametrize("min_fixed_only", [2, 3])
def test_edge_cases_match_general_parser(brackets_as_gaps: bool, min_fixed_only: int) -> None:
    for text in EDGE_CASES:
        want = general(text, brackets_as_gaps, min_fixed_only)
        assert fast(text, brackets_as_gaps, min_fixed_only) == want, text


def test_random_patterns_match_general_parser() -> None:
    accepted = 0
    for i, text in enumerate(_random_patterns(20240601, 6000)):
        bag = i % 5 == 0
        mini = 3 if i % 3 == 0 else 2
        want = general(text, bag, mini)
        assert fast(text, bag, mini) == want, text
        accepted += want[0] == "ok"
    # the generator must reach both outcomes often, or the comparison proves little
    assert 1000 < accepted < 5000


def test_fast_paths_cover_common_shapes() -> None:
    """The shapes of real databases are built by the fast paths themselves (not by the
    fallback), and equal what the general parser builds."""
    simple = ["aabb*ccdd", "aabb{4}ccdd", "aabb{4-8}ccdd{-20}eeff", "aabb????ccdd{200}eeff"]
    for text in simple:
        assert _simple_pattern(text) == general(text, False, 2)[1], text
    tokens = ["aabb(cc|dd)eeff", "aab?ccdd", "aabb!(ccdd|eeff)*0011", "aabb(cc|ddee)??ff"]
    for text in tokens:
        assert _token_pattern(text) == general(text, False, 2)[1], text
    built = 0
    for text in _random_patterns(99, 3000):
        for path in (_token_pattern, _simple_pattern):
            got = path(text) if path is _token_pattern or _SIMPLE.fullmatch(text) else None
            if got is not None:
                built += 1
                assert general(text, False, 2) == ("ok", got), text
    assert built > 300


def test_long_near_miss_is_fast() -> None:
    """A long pattern that almost fits a fast path fails it in linear time."""
    text = "".join(f"{i % 256:02x}" * 3 + "{2}" + "0000e8" + "??" for i in range(300)) + "5{W}"
    start = time.process_time()
    with pytest.raises(PatternError):
        parse_checked(text, min_fixed_only=2)
    alt = "aabb(" + "|".join(["ccdd"] * 3000) + "|x)"
    with pytest.raises(PatternError):
        parse_checked(alt, min_fixed_only=2)
    assert time.process_time() - start < 1.0


# --------------------------------------------------------------------------- .ldb lines

SUBSIGS = [
    "aabbccdd",
    "aabbccdd::i",
    "aabbccdd::w",
    "aabbccdd::iw",
    "aabbccdd::wi",
    "aabbccdd::ii",
    "aabbccdd::x",
    "aabbccdd:::i",
    "aabbccdd::",
    "aabb cc",
    "aa",
    "",
    "0:aabbccdd",
    "EP+0:aabbccdd",
    "EP+0:aabbccdd::i",
    "S1+4:aabb{2}ccdd",
    "aabb*ccdd::w",
    "aabb[1-2]ccdd::w",
    "aabb[1-2]ccdd",
    "aabb(cc|dd)ee::a",
    "0&1/aabb/",
    "${1-2}3$",
    "fuzzy_img#abcdef",
]


def _reference(line: str) -> Outcome:
    """parse_ldb_line's result rebuilt from parse_subsig alone (no shortcuts, no cache)."""
    fields = line.split(";")
    tdb = parse_tdb(fields[1])
    subs = []
    for i, s in enumerate(fields[3:]):
        try:
            subs.append(parse_subsig(s, i, tdb.target))
        except (ValueError, PatternError) as exc:
            return ("error", f"subsignature {i}: {exc}")
        except SkipSig as exc:
            return ("skip", str(exc))
    return ("ok", tuple(subs))


def _via_line(line: str, seen: dict[str, object]) -> Outcome:
    try:
        return ("ok", parse_ldb_line(line, True, seen).subsigs)  # type: ignore[arg-type]
    except ValueError as exc:
        return ("error", str(exc))
    except SkipSig as exc:
        return ("skip", str(exc))


def test_ldb_subsignatures_match_parse_subsig() -> None:
    rng = random.Random(5)
    seen: dict[str, object] = {}  # shared across lines, as parse_ldb shares it
    compared = 0
    for _ in range(1500):
        target = rng.choice([0, 1, 2, 6])
        picked = [rng.choice(SUBSIGS) for _ in range(rng.randint(1, 4))]
        if rng.random() < 0.5:
            pattern = _random_patterns(rng.randrange(1000), 1)[0]
            picked.insert(0, pattern + rng.choice(["", "::i", "::w", "::wa"]))
        expr = "&".join(str(i) for i in range(len(picked)))
        line = f"Sig;Engine:51-255,Target:{target};{expr};" + ";".join(picked)
        want = _reference(line)
        assert _via_line(line, seen) == want, line
        assert _via_line(line, {}) == want, line
        compared += 1
    assert compared > 1000


def test_cached_subsignature_still_checked_against_target() -> None:
    text = (
        "A;Engine:51-255,Target:1;0&1;EP+0:aabbccdd;aabbccdd::i\n"
        "B;Engine:51-255,Target:0;0&1;aabbccdd::i;EP+0:aabbccdd\n"
    )
    with pytest.raises(SignatureError) as info:
        parse_ldb(text, "t.ldb", official=False)
    assert str(info.value) == "t.ldb:2: B: subsignature 1: invalid offset type for target 0"


def test_equal_subsignatures_are_shared_and_equal() -> None:
    text = "A;Target:0;0&1;aabbccdd::i;eeff0011\nB;Target:0;0&1;aabbccdd::i;eeff0011\n"
    sigs, _ = parse_ldb(text, "t.ldb", official=False)
    assert sigs[0].subsigs == sigs[1].subsigs
    assert sigs[0].subsigs[0].modifiers == "i"  # type: ignore[union-attr]
    assert isinstance(sigs[0].subsigs[1].pattern, Pattern)  # type: ignore[union-attr]


def test_byte_compare_still_seen_after_cached_subsignatures() -> None:
    text = "A;Target:0;0&1;aabbccdd;eeff0011\nB;Target:0;0&1&2;aabbccdd;eeff0011;0(>>2#hb2#=12)\n"
    sigs, _ = parse_ldb(text, "t.ldb", official=False)
    assert sigs[1].caps[0] == 1 << 30 and sigs[1].caps[1] == 1
    bad = text + "C;Target:0;0&1;aabbccdd;1(>>2#hb2#=12)\n"
    with pytest.raises(SignatureError, match="t.ldb:3: C: subsignature 1: byte compare"):
        parse_ldb(bad, "t.ldb", official=False)


def test_huge_subsignature_index_is_a_clean_error() -> None:
    with pytest.raises(SignatureError, match="names subsignature 4796451403124 but there are 2"):
        parse_ldb("A;Target:1;0&4796451403124;aabb;ccdd\n", "t.ldb", official=False)
