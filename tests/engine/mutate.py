"""Seeded input generators for the differential tests of the C normalisers against their
Python references: pieces of known syntax joined with a little junk, and mutations of real
inputs (flips, insertions, deletions, self-copies)."""

from __future__ import annotations

import random
from collections.abc import Sequence


def generated(
    r: random.Random, atoms: Sequence[bytes], counts: Sequence[int], p_atom: float, junk: int
) -> bytes:
    """``r.choice(counts)`` parts: an atom with probability ``p_atom``, else 1..junk-1
    random bytes."""
    parts = []
    for _ in range(r.choice(counts)):
        if r.random() < p_atom:
            parts.append(r.choice(atoms))
        else:
            parts.append(bytes(r.randrange(256) for _ in range(r.randrange(1, junk))))
    return b"".join(parts)


def mutated(
    r: random.Random,
    data: bytes,
    atoms: Sequence[bytes],
    rounds: int,
    cut: int,
    copy: int,
) -> bytes:
    """Up to ``rounds - 1`` edits: a flipped byte, an inserted atom, up to ``cut - 1``
    bytes deleted, or up to ``copy - 1`` bytes of the input copied elsewhere."""
    out = bytearray(data)
    for _ in range(r.randrange(1, rounds)):
        i = r.randrange(len(out) + 1)
        kind = r.randrange(4)
        if kind == 0 and i < len(out):
            out[i] = r.randrange(256)
        elif kind == 1:
            out[i:i] = r.choice(atoms)
        elif kind == 2:
            del out[i : i + r.randrange(1, cut)]
        else:
            j = r.randrange(len(out) + 1)
            out[i:i] = out[j : j + r.randrange(1, copy)]
    return bytes(out)
