"""Gated logical signatures: only a required subsignature is in the atom index, the others
are verified once it matched. The verdicts must be exactly those of verifying everything."""

from __future__ import annotations

import random
from itertools import product
from pathlib import Path

import pytest

from vigil.engine import scanner
from vigil.engine.compiled import open_engine
from vigil.engine.database import load_database
from vigil.engine.matcher.logical import evaluate, required
from vigil.engine.scanner import Engine, ScanOptions
from vigil.engine.signatures.ldb import parse_expr

WORDS = [b"http://", b"exec", b"GetProcAddress", b"ABCD", b"wxyz", b"\x01\x02\x03\x04", b"zz"]


@pytest.mark.parametrize(
    ("text", "need"),
    [
        ("0&1&2", {0, 1, 2}),
        ("0|1", set()),
        ("(0|1)&2", {2}),
        ("0&(1>2)", {0, 1}),
        ("0<2&1", {1}),
        ("0=0&1", {1}),
        ("(0&1)=0", set()),
        ("(0&1)>1,2", {0, 1}),
        ("0&1|2", set()),
        ("2|0&1", {1}),
    ],
)
def test_required(text: str, need: set[int]) -> None:
    assert required(parse_expr(text)) == need


def _random_expr(rng: random.Random, indices: list[int]) -> str:
    if len(indices) == 1:
        i = indices[0]
        mod = rng.choice(["", "", "", f">{rng.randint(0, 2)}", f"={rng.randint(0, 2)}", "<2"])
        return f"{i}{mod}"
    cut = rng.randint(1, len(indices) - 1)
    left = _random_expr(rng, indices[:cut])
    right = _random_expr(rng, indices[cut:])
    body = f"({left}{rng.choice('&&|')}{right})"
    r = rng.random()
    if r < 0.15:
        return body + f">{rng.randint(0, 2)}"
    if r < 0.25:
        return body + f"={rng.randint(0, 2)}"
    return body


def test_required_never_contradicts_evaluate() -> None:
    """Whenever an expression is true, every subsignature it requires has a count."""
    rng = random.Random(5)
    for _ in range(400):
        n = rng.randint(1, 5)
        expr = parse_expr(_random_expr(rng, list(range(n))))
        need = required(expr)
        for counts in product(range(3), repeat=n):
            if evaluate(expr, list(counts))[0]:
                assert all(counts[i] > 0 for i in need)


def _subsig(rng: random.Random) -> str:
    word = rng.choice(WORDS)
    hexed = word.hex()
    if rng.random() < 0.2:
        hexed += "{0-4}" + rng.choice(WORDS).hex()
    offset = rng.choice(["*"] * 6 + ["0", "EOF-64", "10,40"])
    mods = rng.choice(["", "", "", "::i", "::w", "::wa", "::iwa"])
    return f"{offset}:{hexed}{mods}" if offset != "*" else hexed + mods


def _database(rng: random.Random, count: int) -> str:
    lines = []
    for k in range(count):
        n = rng.randint(2, 5)
        expr = _random_expr(rng, list(range(n)))
        try:
            parse_expr(expr)
        except Exception:  # noqa: BLE001 - regenerate anything the parser refuses
            continue
        subs = [_subsig(rng) for _ in range(n)]
        if rng.random() < 0.15:
            # a byte compare reading where an earlier subsignature first matched
            ref = rng.randrange(n)
            subs.append(f"{ref}(>>{rng.randint(0, 3)}#ib1#>{rng.randint(0, 120)})")
            expr = f"({expr})&{n}"
        lines.append(f"Gate.Test{k};Engine:81-255,Target:0;{expr};{';'.join(subs)}")
    return "\n".join(lines) + "\n"


def _sample(rng: random.Random) -> bytes:
    parts = []
    for _ in range(rng.randint(0, 12)):
        w = rng.choice(WORDS)
        if rng.random() < 0.3:
            w = w.swapcase()
        if rng.random() < 0.3:
            w = b"".join(bytes((c, 0)) for c in w)
        parts.append(w)
        parts.append(rng.randbytes(rng.randint(0, 20)))
    return b"".join(parts)


@pytest.mark.parametrize("one_pass", [False, True], ids=["searches", "hyperscan-pass"])
def test_gating_gives_the_verdicts_of_full_verification(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_pass: bool
) -> None:
    if one_pass:  # deferred atoms found by one Hyperscan pass, whatever their number
        monkeypatch.setattr(scanner, "DEFERRED_SET_MIN", 1)
        monkeypatch.setattr(scanner, "DEFERRED_SET_BYTES", 0)
    rng = random.Random(11)
    (tmp_path / "g.ldb").write_text(_database(rng, 300))
    db = load_database([tmp_path / "g.ldb"])
    gated = Engine(db)
    assert gated.deferred, "the random database must exercise gating"
    monkeypatch.setattr(scanner, "_gate", lambda expr, by_sub: None)
    plain = Engine(db)
    assert not plain.deferred
    assert gated.matcher.atoms <= plain.matcher.atoms
    seen = 0
    for _ in range(400):
        data = _sample(rng)
        want = plain.scan(data, ScanOptions(allmatch=True)).names
        assert gated.scan(data, ScanOptions(allmatch=True)).names == want
        assert gated.scan(data).names == plain.scan(data).names
        seen += bool(want)
    assert seen > 50  # the samples do trigger signatures


def test_the_compiled_cache_keeps_the_gates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(3)
    (tmp_path / "g.ldb").write_text(_database(rng, 120))
    monkeypatch.setenv("VIGIL_CACHE_DIR", str(tmp_path / "cache"))
    built = Engine(load_database([tmp_path / "g.ldb"]))
    mapped = open_engine([tmp_path / "g.ldb"])
    assert mapped.source is not None  # read back from the entry
    assert {li: list(v) for li, v in mapped.deferred.items()} == {
        li: list(v) for li, v in built.deferred.items()
    }
    for _ in range(150):
        data = _sample(rng)
        opts = ScanOptions(allmatch=True)
        assert mapped.scan(data, opts).names == built.scan(data, opts).names


def test_byte_compares_read_the_offset_full_verification_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A byte compare on a ``wa`` subsignature depends on which form is verified first:
    its signature is not gated, so the offset it reads is the one it always read."""
    marker = b"marker_one_unique"
    line = f"BC.Test;Engine:81-255,Target:0;0&1&2;{marker.hex()};414243::wa;1(>>3#ib1#=88)"
    (tmp_path / "bc.ldb").write_text(line + "\n")
    db = load_database([tmp_path / "bc.ldb"])
    gated = Engine(db)
    assert not gated.deferred
    monkeypatch.setattr(scanner, "_gate", lambda expr, by_sub: None)
    plain = Engine(db)
    pad = b"\xee" * 40
    for data in (
        b"ABCX" + pad + b"A\0B\0C\0" + pad + marker,
        b"A\0B\0C\0" + pad + b"ABCX" + pad + marker,
    ):
        for allmatch in (False, True):
            opts = ScanOptions(allmatch=allmatch)
            assert gated.scan(data, opts).names == plain.scan(data, opts).names
