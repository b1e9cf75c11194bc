"""The C HTML normaliser against the Python reference it was ported from, byte for byte.

``vigil.engine._htmlnorm_py`` runs the same state machine in Python; every form must match on
ClamAV's reference pages and on seeded generated, mutated and piece-boundary inputs (the
normaliser reads 8191-byte pieces, and several quirks only show where a piece ends).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.engine.mutate import generated, mutated
from vigil.engine import _htmlnorm_py
from vigil.engine.htmlnorm import normalise_html
from vigil.native import _htmlnorm

SCANFILES = Path(__file__).parents[1] / "data" / "clamav-unit" / "htmlnorm_scanfiles"
REFERENCE_PAGES = sorted(SCANFILES.iterdir())

# Pieces of HTML that reach every state: tags, attributes and quoting, character and entity
# references (short, long, overflowing), 8-bit text, comments, scripts (plain and Script
# Encoder), styles, data: URIs, CR/LF/NUL and other control bytes.
ATOMS = [
    *(b"<", b">", b"</", b"<!--", b"-->", b"<!", b"=", b"'", b'"', b"&", b"&#", b"&#x", b";"),
    *(b"\\", b"\r", b"\n", b"\r\n", b"\t", b" ", b"  ", b"\x00", b"\x01", b"\x0b", b"\x1f"),
    *(b"a", b"B", b"img", b"a href", b"src", b"href", b"text", b"Word", b"12345", b"0000"),
    *(b"<script>", b"</script>", b"<style>", b"</style>", b"<STYLE>", b"<p>", b"<x y=z>"),
    b"<SCRIPT language=JScript.Encode>",
    b"<script language='vbscript.encode' x>",
    b'<%@ language="jscript.encode" %>',
    *(b"#@~^", b"#@~^AAAAAA==", b"#@~^CAAAAA==", b"#@~^//+/-*==", b"^#~@"),
    *(b"@#@&", b"@!", b"@*", b"@$", b"@", b"data:", b'"data:', b",", b"%41", b"%", b"%u1234"),
    *(b"&amp;", b"&lt;", b"&ne;", b"&Cap", b"&nbsp", b"&#65;", b"&#x41;", b"&#0;"),
    *(b"&#12345678901234567890;", b"&#xffffffffffffff", b"&#x0000000000000000000000041;"),
    *(b"&#x3002;", b"\xe3\x80\x82", b"\xef\xbc\x8e", b"\xef\xb9\x92", b"\xa1C", b"\xa1"),
    *(b"\xc3\xa9", b"\xff", b"\x80\x80"),
    *(b"var x = 'a' + \"b\";", b"eval('x')", b"unescape('%41')", b"//", b"/*", b"*/"),
    b"function(p,a,c,k,e,d){}",
    b"<img src=data:text/html,<b>x</b>>",
    b'<a href="data:text/plain;base64,SGV&amp;sbG8%41%4=">',
    b"<a href='data:image/png,AB\\'CD ef'>",
    *(b"<a href=data:", b'<a href="data:', b"<a href='data:x \"y\" z,q'>"),
    b'<a href="data:a b>c,d e\rf\ng" x>',
    *(b"<a href=dat", b"a:", b'<img src="\xe3\x80\x82\xa1C\xc3">', b'<a href="x\\"y">'),
    *(b"<a\thref=\tfoo\r>", b"<a href = x >", b'<a href="">', b"<img src=&ne;>"),
    *(b"<a href=http://x/y>", b"<img src='z'>", b'<a href="q" b=c>'),
]


def _generated(r: random.Random) -> bytes:
    return generated(r, ATOMS, (5, 20, 80, 300), 0.85, 6)


def _mutated(r: random.Random, page: bytes) -> bytes:
    return mutated(r, page, ATOMS, 20, 50, 200)


def _across_pieces(r: random.Random) -> bytes:
    """A token cut by the end of the first 8191-byte piece (no whitespace to cut at)."""
    head = r.choice([b"", b"<a href=", b"<script>", b"<style>", b"<p title='", b"&#", b"\xe3"])
    head = r.choice([head, b"<SCRIPT language=JScript.Encode>", b'<%@ language="jscript.encode">'])
    fill = r.choice([b"x", b"1", b"\x80", b"\x00", b"A"])
    body = b"".join(r.choice(ATOMS) for _ in range(r.randrange(1, 40)))
    return head + fill * (8191 - len(head) - r.randrange(24)) + body


def _assert_same(data: bytes) -> None:
    assert normalise_html(data) == _htmlnorm_py.normalise_html(data), data[:200]


@pytest.mark.parametrize("page", REFERENCE_PAGES, ids=lambda p: p.name)
def test_reference_pages(page: Path) -> None:
    _assert_same(page.read_bytes())


@pytest.mark.parametrize("start", range(0, 600, 100))
def test_generated_and_mutated(start: int) -> None:
    pages = [p.read_bytes() for p in REFERENCE_PAGES]
    for seed in range(start, start + 100):
        r = random.Random(seed)
        kind = seed % 4
        if kind == 0:
            data = _generated(r)
        elif kind == 1:
            data = _mutated(r, r.choice(pages))
        elif kind == 2:
            data = _across_pieces(r)
        else:
            data = bytes(r.randrange(256) for _ in range(r.choice([1, 10, 100, 1000])))
        _assert_same(data)


def test_repeated_pages_cross_pieces() -> None:
    # Pages several pieces long, so that pieces are cut at their last whitespace byte.
    for page in REFERENCE_PAGES:
        _assert_same(page.read_bytes() * 8)


def test_huge_number_in_script() -> None:
    # atoi saturates at LONG_MAX, cut to an int: -1 (clamscan 1.4.6 writes the same);
    # Python's int() refuses more than 4300 digits, which used to raise here.
    data = b"<script>x=" + b"7" * 5000 + b";</script>"
    assert normalise_html(data).script == b"<script>x=-1;</script>"
    _assert_same(data)


def test_notags_left_out_over_the_limit() -> None:
    assert _htmlnorm.normalise(b"<b>x</b>", False, 100, lambda piece: None) == (b"<b>x</b>", None)


def test_output_limit_is_enforced() -> None:
    with pytest.raises(ValueError, match="output limit"):
        _htmlnorm.normalise(b"<html>" + b"a" * 100, True, 50, lambda piece: None)


def test_script_sink_errors_propagate() -> None:
    def sink(piece: bytes | None) -> None:
        raise RuntimeError("sink")

    with pytest.raises(RuntimeError, match="sink"):
        _htmlnorm.normalise(b"<script>x</script>", True, 1000, sink)


def test_script_pieces_and_ends() -> None:
    pieces: list[bytes | None] = []
    _htmlnorm.normalise(b"<script>a=1</script>b<script>c</script>", True, 1000, pieces.append)
    assert pieces == [b"a=1</script>", None, b"c</script>", None]
