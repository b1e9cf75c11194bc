"""The C JavaScript normaliser against the Python reference it was ported from, byte for byte.

``vigil.engine._jsnorm_py`` runs the same normaliser in Python. Both are fed the same pieces
(the tokenizer's state crosses piece ends, and several quirks only show there): the scripts
of ClamAV's reference pages as the HTML normaliser hands them over, and seeded generated and
mutated scripts (packers, escapes, slashes, nested scopes, 8-bit text) cut at random places.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from tests.engine.mutate import generated, mutated
from vigil.engine._jsnorm_py import _JsNormaliser
from vigil.engine.htmlnorm import normalise_html
from vigil.native import _htmlnorm, _jsnorm

SCANFILES = Path(__file__).parents[1] / "data" / "clamav-unit" / "htmlnorm_scanfiles"
REFERENCE_PAGES = sorted(SCANFILES.iterdir())
LIMIT = 1 << 24

PACKED = (
    b"eval(function(p,a,c,k,e,d){e=function(c){return c.toString(36)};"
    b"if(!''.replace(/^/,String)){while(c--){d[c.toString(a)]=k[c]||c.toString(a)}"
    b"k=[function(e){return d[e]}];e=function(){return'\\\\w+'};c=1};"
    b"while(c--){if(k[c]){p=p.replace(new RegExp('\\\\b'+e(c)+'\\\\b','g'),k[c])}}return p}"
    b"('0 1=\\'2\\';3(1+\"a b\");4 5(6){7 6*8}',9,9,'var|x|hello|alert|function|f|y|return|2'"
    b".split('|'),0,{}))"
)
PACKED_NAMED = (
    b"function q(p,a,c,k,e,r){return p}"
    b"q('a b c',36,3,'one|two|three'.split('|'),0,{});q('1 2 Z',62,3,'|x|y'.split('|'),0,{})"
)
# Pieces of script that reach every tokenizer mode and decoder.
ATOMS = [
    *(b"var ", b"function ", b"function(", b"return ", b"if(", b"else", b"new ", b"this."),
    *(b"a", b"b", b"x1", b"_$", b"foo", b"Bar", b"\\u0041b", b"a\\u", b"\\", b"\\x"),
    *(b"(", b")", b"{", b"}", b"[", b"]", b",", b";", b".", b":", b"?", b"~"),
    *(b"=", b"==", b"===", b"!==", b">>>=", b"<<", b"+", b"++", b"-", b"--", b"+=", b"&&"),
    *(b"/", b"/=", b"//", b"// c\n", b"/*", b"*/", b"/* c */", b"/re+g/gi", b"a/b/c"),
    *(b"'", b'"', b"'str'", b'"S T"', b"'it\\'s'", b'"q\\"x"', b"'\\\\'", b"'\\x41\\x4'"),
    *(b"'\\u00e9\\u0000\\uzz12'", b"'\\n\\t\\r\\0\\b\\v\\f'", b"'\\x'", b"'\\u12'", b"'a\\"),
    *(b"0", b"1", b"42", b"007", b"3.14", b"1.5e3", b"2.e-7", b"1.e", b".5", b"9" * 25),
    *(b"1.7976931348623157e309", b"0.000001", b"123456789.0", b"1.0E+2", b"5.5.5"),
    *(b" ", b"\t", b"\n", b"\r\n", b"\x00", b"\x0b", b"#", b"@", b"`", b"\x7f"),
    *(b"\xc3\xa9", b"\xe2\x82\xac", b"\xff", b"\x80"),
    *(b"'a'+'b'", b'"x"+"y"+"z"', b"'a' + b", b"unescape('%41%u0042%4')", b"unescape("),
    *(b"eval('x=1')", b'eval("var q=2;")', b"eval(x)", b"eval(", b"eval('eval(\\'y\\')')"),
    *(b"dF('%28%29%2A1')", b"dF('')", b"dF('abc3')", b"dF(", b"dF('%u0041%00x1')"),
    *(b"var a=[1,b],c={d:e};", b"function f(g,h){var i=g;return h}", b"}}}", b"{{{"),
    *(b"function(p,a,c,k,e,d){", b"(p,a,c,k,e,d)", b"'0 1 2',3,3,'a|b|c'", b".split('|')"),
    b"eval(function(p,a,c,k,e,d){}('0\\\\\\'1\\\\\\\"2\\\\3',4,4,'a|b||d',0,{}))",
    b"eval(function(p,a,c,k,e,r){}('0 1',2,2,'x|y'.split('|'),0,d[]));",
    PACKED,
    PACKED_NAMED,
]


def _c(pieces: list[bytes], limit: int = LIMIT) -> bytes:
    js = _jsnorm.Normaliser(limit)
    for piece in pieces:
        js.feed(piece)
    return js.finish()


def _py(pieces: list[bytes]) -> bytes:
    js = _JsNormaliser()
    for piece in pieces:
        js.process(piece)
    return js.finish()


def _assert_same(pieces: list[bytes]) -> None:
    assert _c(pieces) == _py(pieces), pieces


def _cut(r: random.Random, script: bytes) -> list[bytes]:
    if not script or r.random() < 0.3:
        return [script] if script else []
    cuts = sorted(r.randrange(len(script) + 1) for _ in range(r.randrange(1, 8)))
    bounds = [0, *cuts, len(script)]
    return [script[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


def _generated(r: random.Random) -> bytes:
    return generated(r, ATOMS, (3, 10, 40, 150), 0.9, 5)


def _mutated(r: random.Random, script: bytes) -> bytes:
    return mutated(r, script, ATOMS, 10, 20, 80)


def _page_scripts(page: bytes) -> list[list[bytes]]:
    """The scripts of a page, each as the pieces the HTML normaliser hands over."""
    scripts: list[list[bytes]] = [[]]

    def sink(piece: bytes | None) -> None:
        if piece is None:
            scripts.append([])
        else:
            scripts[-1].append(piece)

    _htmlnorm.normalise(page, True, 8 * len(page) + 65536, sink)
    return [s for s in scripts if s]


@pytest.mark.parametrize("page", REFERENCE_PAGES, ids=lambda p: p.name)
def test_reference_page_scripts(page: Path) -> None:
    for pieces in _page_scripts(page.read_bytes()):
        _assert_same(pieces)
        _assert_same([b"".join(pieces)])


def test_known_outputs() -> None:
    # Renaming, folding, unescape(), eval() and the packer, as clamscan writes them.
    assert _c([b"var Ab = 'x' + 'Y'; Ab(c.Ab);"]) == b'<script>var n000="xy";n000(c.ab);'
    assert _c([b"unescape('%41%u00e9')"]) == b'<script>"a\xc3\xa9"'
    assert _c([b"eval('var q=2;')"]) == b"<script>var n000=2;"
    unpacked = _c([PACKED])
    assert unpacked.startswith(b"<script>eval(function(n000,n001,n002,n003,n004,n005)")
    tail = b'return n000}(var n008="hello";alert(n008+"a b");function n009(n010){return n010*2}))'
    assert unpacked.endswith(tail)


@pytest.mark.parametrize("start", range(0, 800, 100))
def test_generated_and_mutated(start: int) -> None:
    scripts = [
        s for p in REFERENCE_PAGES for pieces in _page_scripts(p.read_bytes()) for s in pieces
    ]
    scripts += [PACKED, PACKED_NAMED]
    for seed in range(start, start + 100):
        r = random.Random(seed)
        kind = seed % 4
        if kind == 0:
            script = _generated(r)
        elif kind == 1:
            script = _mutated(r, r.choice(scripts))
        elif kind == 2:
            script = _mutated(r, r.choice([PACKED, PACKED_NAMED]) * r.randrange(1, 3))
        else:
            script = bytes(r.randrange(256) for _ in range(r.choice([1, 10, 100, 1000])))
        _assert_same(_cut(r, script))


def test_pieces_of_one_byte() -> None:
    # Every piece end at once: strings, names, numbers, comments and "//" cut everywhere.
    r = random.Random(7)
    for _ in range(20):
        script = _generated(r)
        _assert_same([script[i : i + 1] for i in range(len(script))])


def test_state_carries_into_the_decoders() -> None:
    # A name, number, string or comment left open at the end continues into decoded text.
    for tail in (b"abc", b"12", b"1.5e", b"/* x", b"//", b"'open", b'"a\\'):
        _assert_same([b"eval('q;r')" + tail])
        _assert_same([b"dF('%28%29x1');" + tail])
        _assert_same([PACKED + tail])


def test_deep_nesting_and_many_decodes() -> None:
    _assert_same([b"function f(a){" * 300 + b"var b=a;" + b"}" * 290 + b"b;a;f;"])
    _assert_same([b"function f(a){" * 3000 + b"a;b;f;x;" * 50 + b"}" * 1500 + b"a;b;f;x;"])
    _assert_same([b"eval('a;');dF('%62%63');unescape('%41');" * 300])


def test_crafted_scripts_stay_linear() -> None:
    # Each name read 100 000 levels deep used to walk every scope above it (10^10 steps);
    # each unclosed "function(p,a,c," made the packer search pass over the rest of the list.
    deep = b"function f(a){" * 100000 + b"a;x;" * 100000
    out = _c([deep])
    assert out.endswith(b"n199999;x;" * 100000)
    out = _c([b"function(p,a,c,k,e,d){" * 20000 + b"x;" * 100000])
    last = b"function(n119994,n119995,n119996,n119997,n119998,n119999){"
    assert out.endswith(last + b"x;" * 100000)


def test_big_script_is_fast_and_linear() -> None:
    # Half a million tokens; the Python reference is not run here (it takes seconds).
    script = b"var a1 = b.c + 'str' + 12.5; function f(x){return x*2}\n" * 10000
    out = _c([script[i : i + 8191] for i in range(0, len(script), 8191)])
    # "a1" is declared 10 000 times in one scope: the last number wins everywhere
    assert out.startswith(b'<script>var n29997=b.c+"str"+12.5;function n001(n002){return n002*2}')
    assert out.count(b"function") == 10000


def test_limit_cuts_decoded_text_and_output() -> None:
    # Each of 20 000 words expands to 1000 bytes: 20 MB unless the limit cuts it.
    table = b"w" * 1000
    bomb = b"eval(function(p,a,c,k,e,d){}('" + b"0 " * 20000 + b"',10,1,'" + table + b"',0,{}))"
    out = _c([bomb], limit=100000)
    assert 98000 < out.count(b"w") <= 100000  # the decoded text was cut, not the script
    assert out.startswith(b"<script>eval(function(n000,n001,n002,n003,n004,n005){}(" + b"w" * 1000)
    assert _c([bomb], limit=10**9).count(b"w") == 20000 * 1000
    assert len(_c([b"a;" * 100000], limit=1000)) == 1008


def test_html_pages_use_it() -> None:
    page = b"<html><script>var x = unescape('%41');</script></html>"
    assert normalise_html(page).script == b'<script>var n000="a";</script>'


def test_misuse_is_refused() -> None:
    js = _jsnorm.Normaliser(100)
    js.feed(b"a")
    assert js.finish() == b"<script>"
    with pytest.raises(RuntimeError, match="finished"):
        js.feed(b"b")
    with pytest.raises(RuntimeError, match="finished"):
        js.finish()
    with pytest.raises(ValueError, match="negative"):
        _jsnorm.Normaliser(-1)
    with pytest.raises(TypeError):
        _jsnorm.Normaliser(100).feed("text")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="not initialised"):
        _jsnorm.Normaliser.__new__(_jsnorm.Normaliser).feed(b"x")


def test_threads_share_nothing() -> None:
    # Each script has its own object; objects run in parallel with the GIL released.
    script = b"var a = 1; function b(c){return c+a}\n" * 2000
    expected = _c([script])
    results: list[bytes] = []

    def work() -> None:
        results.append(_c([script[i : i + 4096] for i in range(0, len(script), 4096)]))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 4
