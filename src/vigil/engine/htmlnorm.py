"""HTML normalisation as ClamAV 1.4's htmlnorm.c does it (signatures.md §3.4), JS included.

Produces the three derived objects clamscan scans for an HTML file. The byte-level HTML state
machine runs in C (``vigil.native._htmlnorm``, GIL released); it hands the text of <script>
blocks, a piece at a time, to the C JavaScript normaliser (``vigil.native._jsnorm``), which
tokenizes each piece as it comes and decodes and renders the script at its end.
``vigil.engine._htmlnorm_py`` and ``vigil.engine._jsnorm_py`` keep both in Python as the
references the tests compare the C ports against.
"""

from __future__ import annotations

from dataclasses import dataclass

from vigil.native import _htmlnorm, _jsnorm

__all__ = ["HtmlForms", "normalise_html"]

# Differences from ClamAV, none of which shows in the three outputs:
# * data: URIs (RFC 2397) are parsed exactly as ClamAV parses them, but their decoded
#   bodies are not returned as child objects;
# * <style> blocks are not searched for embedded images.
# One bound ClamAV does not have: a script's decoded text (what the packer decoder makes)
# and its normalised output are each cut at _output_limit(page size) bytes.

_WS = b"\t\n\x0b\x0c\r "
_LOWER = bytes.maketrans(bytes(range(0x41, 0x5B)), bytes(range(0x61, 0x7B)))


def _lower(data: bytes | bytearray) -> bytes:
    return bytes(data).translate(_LOWER)


# ClamAV writes the script output through a buffer of this size.
_JS_BUFFER = 65536


# --------------------------------------------------------------------------- public API


@dataclass(frozen=True, slots=True)
class HtmlForms:
    """The normalised forms clamscan scans instead of raw HTML (each with targets 0 and 3).

    ``notags`` is None for inputs over MaxHTMLNoTags; ``script`` is None when the page has
    no <script>. ClamAV also scans ``script`` as TEXT_ASCII (target 7).
    """

    nocomment: bytes
    notags: bytes | None
    script: bytes | None


class _ScriptSink:
    """Collects the javascript output from the script pieces the HTML normaliser hands over."""

    def __init__(self, limit: int) -> None:
        self.script = bytearray()
        self.has_script = False
        self.limit = limit
        self.js: _jsnorm.Normaliser | None = None

    def __call__(self, piece: bytes | None) -> None:
        """Feed one piece of a script's text, or end the script (None)."""
        js = self.js
        if js is None:
            js = self.js = _jsnorm.Normaliser(self.limit)
        if piece is not None:
            js.feed(piece)
            return
        self.js = None
        self.flush(js)

    def flush(self, js: _jsnorm.Normaliser) -> None:
        """Render one script; scripts are separated by a newline."""
        piece = (b"\n" if self.script else b"") + js.finish()
        # ClamAV appends "</script>" unless its 64 KiB output buffer already ends with it.
        if len(piece) % _JS_BUFFER < 9 or not piece.endswith(b"</script>"):
            piece += b"</script>"
        self.script += piece
        self.has_script = True


# Each output is at most a few times the input (entities such as "&ne;" grow to 8 bytes,
# rewritten <script> tags are written twice); the C HTML normaliser refuses to go beyond
# this, the JS normaliser cuts its decoded text and its output there.
def _output_limit(size: int) -> int:
    return 8 * size + 65536


def normalise_html(data: bytes, *, max_notags: int = 8 * 1024 * 1024) -> HtmlForms:
    """ClamAV's nocomment.html, notags.html and javascript outputs for an HTML object."""
    limit = _output_limit(len(data))
    sink = _ScriptSink(limit)
    want_notags = len(data) <= max_notags
    nocomment, notags = _htmlnorm.normalise(data, want_notags, limit, sink)
    return HtmlForms(
        nocomment=nocomment,
        notags=notags,
        script=bytes(sink.script) if sink.has_script else None,
    )
