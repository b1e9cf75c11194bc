"""Mutated real signature lines either load or fail with SignatureError, nothing else."""

from __future__ import annotations

import gzip
import random

import pytest

from tests.conftest import OFFICIAL
from vigil.engine.matcher.compile import make_variants
from vigil.engine.signatures.hdb import parse_hash_db
from vigil.engine.signatures.ldb import parse_ldb
from vigil.engine.signatures.model import ContentSub
from vigil.engine.signatures.ndb import parse_ndb
from vigil.engine.signatures.pattern import ANY_OFFSET
from vigil.errors import SignatureError

ALPHABET = "0123456789abcdef?*{}[]()|!-:;,/\\=<>&BLWiwfa$#xyz \t\x00\xff"


def _lines(name: str, n: int) -> list[str]:
    text = gzip.decompress((OFFICIAL / name).read_bytes()).decode("latin-1")
    return [ln for ln in text.split("\n")[:n] if ln and not ln.startswith("#")]


def _mutate(rng: random.Random, src: str) -> str:
    s = list(src)
    for _ in range(rng.randint(1, 4)):
        pos = rng.randrange(len(s) + 1)
        op = rng.random()
        if op < 0.4 and s:
            del s[min(pos, len(s) - 1)]
        elif op < 0.8:
            s.insert(pos, rng.choice(ALPHABET))
        else:
            s[pos:pos] = s[rng.randrange(len(s)) :][: rng.randint(1, 10)]
    return "".join(s) + "\n"


def _compile_all(pattern_subs: list[tuple[object, str]]) -> None:
    for pattern, mods in pattern_subs:
        for v in make_variants(pattern, mods, 0, 0, 0, 0, ANY_OFFSET):  # type: ignore[arg-type]
            assert v.cp.segments  # building the regexes must not fail either


@pytest.mark.parametrize("seed", range(4))
def test_mutated_ldb_and_ndb_lines(seed: int) -> None:
    rng = random.Random(seed)
    ldb = _lines("main.ldb.gz", 2000)
    ndb = _lines("daily.ndb.gz", 300)
    for i in range(1500):
        text = _mutate(rng, rng.choice(ldb if i % 2 else ndb))
        try:
            if i % 2:
                sigs, _ = parse_ldb(text, "f.ldb", official=False)
                _compile_all(
                    [
                        (s.pattern, s.modifiers)
                        for g in sigs
                        for s in g.subsigs
                        if isinstance(s, ContentSub)
                    ]
                )
            else:
                _compile_all([(s.pattern, "") for s in parse_ndb(text, "f.ndb", official=False)])
        except SignatureError as exc:
            assert str(exc).startswith(("f.ldb:1: ", "f.ndb:1: "))


def test_mutated_hash_lines() -> None:
    rng = random.Random(7)
    lines = _lines("main.hdb.gz", 500)
    sink: list[tuple[str, bytes, int, str]] = []
    for _ in range(3000):
        text = _mutate(rng, rng.choice(lines))
        try:
            parse_hash_db(text, "f.hdb", "hdb", lambda *a: sink.append(a), official=False)
        except SignatureError as exc:
            assert str(exc).startswith("f.hdb:1: ")
