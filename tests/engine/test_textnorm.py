"""ASCII text normalisation for target-7 signatures (signatures.md §3.5, vector T71)."""

from __future__ import annotations

import pytest

from vigil.engine.textnorm import normalise_text


def test_t71_hello_world() -> None:
    assert normalise_text(b"HELLO\t\t  World\r\n") == b"hello world "


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", b""),
        (b"ABC xyz", b"abc xyz"),
        (b"a\x0b\x0cb", b"a b"),  # VT and FF are whitespace too
        (b"a \x01 b", b"a b"),  # a deleted byte does not split a whitespace run
        (b"a\x01b", b"ab"),
        (b"caf\xc3\xa9 \xff!", b"caf !"),  # 0x80-0xFF vanish
        (b"del\x7f", b"del\x7f"),  # DEL is copied
        (b"  lead", b" lead"),
        (b"[]{}~^_`@", b"[]{}~^_`@"),
    ],
)
def test_rules(data: bytes, expected: bytes) -> None:
    assert normalise_text(data) == expected


def test_bytes_are_classified_exactly_once() -> None:
    out = normalise_text(bytes(range(256)))
    assert out == b" !\"#$%&'()*+,-./0123456789:;<=>?@abcdefghijklmnopqrstuvwxyz[\\]^_`" + (
        b"abcdefghijklmnopqrstuvwxyz{|}~\x7f"
    )
