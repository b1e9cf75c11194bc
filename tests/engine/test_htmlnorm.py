"""HTML normalisation (signatures.md §3.4, vectors T74/T75) against ClamAV's reference outputs.

``htmlnorm_reffiles`` holds libclamav's own expected outputs; the small cases below were
checked against clamscan 1.4.6 (``--leave-temps``), which the differential test repeats.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from vigil.engine.htmlnorm import HtmlForms, normalise_html

UNIT = Path(__file__).parents[1] / "data" / "clamav-unit"
SCANFILES = UNIT / "htmlnorm_scanfiles"
REFFILES = UNIT / "htmlnorm_reffiles"
# The .ref prefix names the input; the middle part names the output (as in check_htmlnorm.c).
INPUTS = {
    "buf": "htmlnorm_buf.html",
    "encode": "htmlnorm_encode.html",
    "js": "htmlnorm_js_test.html",
    "test": "htmlnorm_test.html",
    "urls": "htmlnorm_urls.html",
}


def _form(forms: HtmlForms, kind: str) -> bytes | None:
    return {"nocomment": forms.nocomment, "notags": forms.notags, "js": forms.script}[kind]


@pytest.mark.parametrize("ref", sorted(p.name for p in REFFILES.glob("*.ref")))
def test_reference_outputs(ref: str) -> None:
    prefix, kind, _ = ref.split(".")
    forms = normalise_html((SCANFILES / INPUTS[prefix]).read_bytes())
    assert _form(forms, kind) == (REFFILES / ref).read_bytes()


def test_t74_signature_text_in_both_forms() -> None:
    forms = normalise_html((SCANFILES / "htmlnorm_test.html").read_bytes())
    assert b"htmltexttestsignature" in forms.nocomment
    assert forms.notags is not None and b"htmltexttestsignature" in forms.notags


def test_t75_raw_layout_is_gone() -> None:
    forms = normalise_html((SCANFILES / "htmlnorm_test.html").read_bytes())
    for form in (forms.nocomment, forms.notags):
        assert form is not None and b"<body>\n\t" not in form


# (input, nocomment.html, notags.html, javascript) as clamscan 1.4.6 writes them.
CASES = {
    "comment ends at the first '>'": (
        b"<html>Hello <!-- hidden <b> --> World</html>\n",
        b"<html>hello --> world</html>",
        b" hello --> world ",
        None,
    ),
    "character references": (
        b"<html><p>&#64; &amp; &lt;x&gt; &fake; &ouml; &#x3002; &#256; &#65</p>\n",
        b"<html><p>@ & <x> &fake; \xf6 . &#x0100; A</p>",
        b" x ",
        None,
    ),
    "attributes and links": (
        b"<html><A HREF = 'x.COM' Title=Y\n data-x>link</a><IMG SRC=\"pic.png\">\n",
        b'<html><a href="x.com" title=y data-x>link</a><img src="pic.png">',
        b" x.COM link pic.png ",
        None,
    ),
    "script": (
        b'<html><script>\nfunction hello(name) { var greeting = "Hi " + "there"; '
        b"return greeting + name; }\n</script>\n",
        b'<html><script>functionhello(name){vargreeting="hi"+"there";returngreeting+name;}'
        b"</script>",
        b" ",
        b'<script>function n000(n001){var n002="hi there";return n002+n001;}</script>',
    ),
    "data: URI": (
        b'<html><img src="data:text/plain;base64,SGVsbG8=">after\n',
        b'<html><img src="data">after',
        b" after ",
        None,
    ),
    "NUL bytes vanish": (
        b"<html>a\x00b\x00\x00c <b>X\x00Y</b>\n",
        b"<html>abc <b>xy</b>",
        b" abc xy ",
        None,
    ),
    "8-bit text": (
        b"<html>caf\xc3\xa9 \xe2\x80\x99quote\xe2\x80\x99 end\n",
        b"<html>caf\xc3\xa9 \xe2\x80\x99quote\xe2\x80\x99 end",
        b" caf\xc3\xc3 \xe2\x80\x80quote\xe2\x80\x80 end ",  # ClamAV's notags repeats a byte
        None,
    ),
    "style": (
        b"<html><style>P { COLOR: Red }</style>text\n",
        b"<html><style>p{color:red}</style>text",
        b" text ",
        None,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_cases(case: str) -> None:
    data, nocomment, notags, script = CASES[case]
    assert normalise_html(data) == HtmlForms(nocomment, notags, script)


def test_max_notags() -> None:
    data = b"<html><b>bold</b>"
    assert normalise_html(data, max_notags=len(data)).notags == b" bold "
    assert normalise_html(data, max_notags=len(data) - 1).notags is None


def test_unfinished_style_split_across_pieces_stops_normalising() -> None:
    # ClamAV reads 8 KiB pieces; when "</style>" is completed by the next piece, it measures
    # the style text backwards from there, finds a negative length and gives up (output so
    # far is kept).
    data = b"<html><style>a</style>\n" + b"X" * 9000 + b" tail"
    forms = normalise_html(data)
    assert forms.nocomment == b"<html><style>a</style>"


def test_large_input_is_fast_enough() -> None:
    data = b"<html><body>" + b"<p class=x>Some text &amp; more text</p>\n" * 20000
    forms = normalise_html(data)
    assert forms.nocomment.count(b"<p class=x>") == 20000


@pytest.mark.differential
@pytest.mark.parametrize("name", sorted(p.name for p in SCANFILES.glob("*.html")))
def test_against_clamscan(name: str, tmp_path: Path) -> None:
    if shutil.which("clamscan") is None:
        pytest.skip("clamscan is not installed")
    subprocess.run(
        [
            "clamscan",
            "--leave-temps",
            f"--tempdir={tmp_path}",
            "-d",
            str(UNIT / "clamav.hdb"),
            str(SCANFILES / name),
        ],
        capture_output=True,
        check=False,
    )
    [outdir] = list(tmp_path.glob(f"*-{name}.*/{name}.*/html-tmp.*"))
    forms = normalise_html((SCANFILES / name).read_bytes())
    for form, file in ((forms.nocomment, "nocomment.html"), (forms.notags, "notags.html")):
        assert form == (outdir / file).read_bytes()
    script = outdir / "javascript"
    assert forms.script == (script.read_bytes() if script.exists() else None)
