"""RFC 2397 data: URIs in HTML (vigil.engine.containers.htmlembed), as libclamav's HTML
normaliser extracts them."""

from __future__ import annotations

import base64
import time

from vigil.engine.containers.htmlembed import data_uris

PAYLOAD = b"\x00\x01VIGIL-HARMLESS-HTML-TEST-PAYLOAD\xfe\xff"
B64 = base64.b64encode(PAYLOAD)


def found(html: bytes, **kw: bool) -> list[bytes]:
    return [c.data for c in data_uris(b"<html>" + html, 1 << 20, **kw)]


def test_any_tag_and_attribute() -> None:
    assert found(b'<a href="data:application/octet-stream;base64,' + B64 + b'">') == [PAYLOAD]
    assert found(b"<img src='data:image/png;base64," + B64 + b"'>") == [PAYLOAD]
    assert found(b"<div foo=data:;base64," + B64 + b" bar=1>") == [PAYLOAD]
    assert found(b'<a x = "data:text/plain,%41%42&amp;C">') == [b"ABC"]
    # libclamav's escape rules: "%4" takes the quote along, so the data runs on
    assert found(b'<a href="data:,%zz%4">') == [b"%0z@>"]


def test_mail_wrapper() -> None:
    out = found(b'<a href="data:Text/Plain;BASE64,' + B64 + b'">', as_mail=True)
    assert out == [
        b"From html-normalise\nContent-type: text/plain;base64\n"
        b"Content-transfer-encoding: base64\n\n" + B64
    ]


def test_what_libclamav_ignores() -> None:
    assert found(b'<a href="DATA:,' + PAYLOAD + b'">') == []
    assert found(b'<!-- <a href="data:,' + PAYLOAD + b'"> -->') == []
    assert found(b'<script>"<a href=\\"data:,' + PAYLOAD + b'\\">"</script>') == []
    assert found(b'<style><a href="data:,x"></style>') == []
    assert found(b'<a href=" data:,x">') == []
    assert found(b"x data:,x") == []


def test_bad_input_is_quick() -> None:
    cases = [
        b'<a x=1 y="2">' * 200_000 + b'<a href="data:,x">',
        b"<a " * 1_000_000 + b'<a href="data:,x">',
        b'<a href="data:,' + b"%41" * 1_000_000 + b'">',
        b'<a href="data:,' + b"&a" * 1_000_000 + b'">',
        b"<a " + b"x=data:, " * 200_000,
        b'<a href="data:;base64,' + b"QUFB" * 1_000_000,
    ]
    for html in cases:
        started = time.monotonic()
        for child in data_uris(html, 1 << 16):
            assert len(child.data) <= 1 << 16
        assert time.monotonic() - started < 5
