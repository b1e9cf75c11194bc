"""PDF unpacking (vigil.engine.containers.pdf): the objects libclamav extracts, its stream
filters, decryption with the empty password, and bad input that must end quickly."""

from __future__ import annotations

import base64
import hashlib
import shutil
import struct
import subprocess
import time
import zlib
from pathlib import Path

import pytest

from vigil.engine.containers.child import Child
from vigil.engine.containers.pdf import (
    ENCRYPTED_MARKER,
    OBFUSCATED_MARKER,
    _ascii85,
    _asciihex,
    _flate,
    _runlength,
    unpack_pdf,
)
from vigil.engine.database import load_database
from vigil.engine.scanner import Engine
from vigil.native import _lzw

PAYLOAD = b"\x00\x01VIGIL-HARMLESS-PDF-TEST-PAYLOAD-0123456789\xfe\xff"
LIMIT = 1 << 20
CLAMSCAN = shutil.which("clamscan")


def pdf(objects: list[bytes], trailer: bytes = b"") -> bytes:
    out = b"%PDF-1.4\n"
    for i, body in enumerate(objects, 1):
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    return out + b"trailer\n<< /Root 1 0 R " + trailer + b">>\nstartxref\n0\n%%EOF\n"


def stream(data: bytes, extra: bytes = b"") -> bytes:
    return b"<< /Length %d %s>>\nstream\n" % (len(data), extra) + data + b"\nendstream"


def lzw_encode(data: bytes) -> bytes:
    """A plain LZW encoder (9-12 bit codes, early change), for test data only."""
    table = {bytes([i]): i for i in range(256)}
    nxt, width, codes, word = 258, 9, [(256, 9)], b""
    for ch in data:
        cand = word + bytes([ch])
        if cand in table:
            word = cand
            continue
        codes.append((table[word], width))
        table[cand] = nxt
        nxt += 1
        if nxt + 1 > (1 << width) and width < 12:
            width += 1
        if nxt >= 4094:
            codes.append((256, width))
            table = {bytes([i]): i for i in range(256)}
            nxt, width = 258, 9
        word = bytes([ch])
    if word:
        codes.append((table[word], width))
    codes.append((257, width))
    bits = "".join(format(c, f"0{w}b") for c, w in codes)
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big")


def children(data: bytes, limit: int = LIMIT) -> list[Child]:
    return list(unpack_pdf(data, limit))


def payloads(data: bytes) -> list[bytes]:
    return [c.data for c in children(data) if not c.name.startswith("Heuristics.")]


CATALOG = b"<< /Type /Catalog >>"


# ---------------------------------------------------------------------------- filters


def test_filters_decode() -> None:
    assert _flate(zlib.compress(PAYLOAD), LIMIT) == (0, PAYLOAD)
    # a truncated or damaged stream gives what could be inflated
    big = bytes(range(256)) * 400
    status, out = _flate(zlib.compress(big)[:-200] + b"garbage", LIMIT)
    assert status == 0 and out[:10000] == big[:10000]
    # text before the zlib data is skipped up to the next line, as libclamav does
    assert _flate(b"junk\n" + zlib.compress(PAYLOAD), LIMIT) == (0, PAYLOAD)
    assert _flate(b"not zlib at all", LIMIT)[0] == 2
    assert _asciihex(PAYLOAD.hex().encode() + b">") == (0, PAYLOAD)
    assert _asciihex(b"41 42 43>") == (0, b"ABC")
    assert _asciihex(b"4142\n434445464748494a>")[0] == 2  # libclamav rejects line breaks
    assert _ascii85(base64.a85encode(PAYLOAD) + b"~>", LIMIT) == (0, PAYLOAD)
    assert _ascii85(b"<~" + base64.a85encode(PAYLOAD) + b"~>", LIMIT)[0] == 2
    assert _ascii85(b"z~>", LIMIT) == (0, bytes(4))
    assert _runlength(bytes([2]) + b"abc" + bytes([254, 0x78, 128]), LIMIT) == (0, b"abcxxx")
    assert _runlength(bytes([5]) + b"ab", LIMIT)[0] == 2


def test_lzw_native() -> None:
    data = bytes(range(256)) * 50 + b"a" * 20000 + PAYLOAD
    assert _lzw.lzw_decode(lzw_encode(data), True, 1 << 20) == (data, False)
    out, damaged = _lzw.lzw_decode(lzw_encode(data), True, 100)
    assert out == data[:101] and not damaged
    assert _lzw.lzw_decode(b"\xff" * 20, True, 100) == (b"", True)
    assert _lzw.rl_decode(bytes([129, 0x41]) * 10, 5) == (b"A" * 6, False)


# ---------------------------------------------------------------------------- extraction


def test_streams_and_objects_libclamav_extracts() -> None:
    js = b"app.alert(1);" + PAYLOAD[2:]  # a NUL would end the string
    doc = pdf(
        [
            b"<< /Type /Catalog /OpenAction 7 0 R >>",
            stream(zlib.compress(PAYLOAD), b"/Filter /FlateDecode "),
            stream(lzw_encode(PAYLOAD), b"/Type /EmbeddedFile /Filter /LZWDecode "),
            stream(lzw_encode(b"not dumped"), b"/Filter /LZWDecode "),  # LZW alone: skipped
            stream(b"raw" + PAYLOAD),
            b"<< /S /JavaScript /JS (" + js + b") >>",
            b"<< /Type /Page /Contents 8 0 R >>",
            stream(zlib.compress(b"[(Hello) ( World)] TJ"), b"/Filter /FlateDecode "),
            stream(PAYLOAD, b"/Subtype /Image "),  # a non-JPEG image: skipped
        ]
    )
    got = {c.name: c.data for c in children(doc)}
    assert got["pdf obj 2 0"] == PAYLOAD
    assert got["pdf obj 3 0"] == PAYLOAD
    # "/Length 49 >>": libclamav fails on the ">>" after the space and takes the whole
    # stream, end of line included
    assert got["pdf obj 5 0"] == b"raw" + PAYLOAD + b"\n"
    assert got["pdf obj 6 0"].startswith(js)
    assert got["pdf obj 8 0 contents"] == b"hello world"
    assert "pdf obj 4 0" not in got and "pdf obj 9 0" not in got
    assert got["pdf obj 7 0"].strip().startswith(b"<< /Type /Page")  # /OpenAction target


def test_object_stream_objects() -> None:
    inner = b"<< /S /JavaScript /JS (" + PAYLOAD[2:] + b") >>"  # NUL ends a JS string
    head = b"3 0 "
    stm = zlib.compress(head + inner)
    first = len(head)
    doc = pdf([CATALOG, stream(stm, b"/Type/ObjStm /N 1 /First %d /Filter /FlateDecode " % first)])
    got = {c.name: c.data for c in children(doc)}
    assert got["pdf obj 3 0"] == PAYLOAD[2:]


def test_indirect_and_bogus_lengths() -> None:
    doc = b"%PDF-1.4\n1 0 obj<</Length 2 0 R>>stream\n" + PAYLOAD + b"\nendstream\nendobj\n"
    doc += b"2 0 obj 5 endobj\n3 0 obj<</Length 99999999999999999999>>stream\nxyz\nendstream endobj"
    first, second = payloads(doc)
    assert first.startswith(PAYLOAD) and second.startswith(b"xyz")


def test_obfuscated_name_marker() -> None:
    doc = pdf([CATALOG, stream(zlib.compress(PAYLOAD), b"/Filter /Fl#61teDecode ")])
    out = children(doc)
    assert [c.data for c in out[:-1]] == [PAYLOAD]
    assert out[-1] == Child(OBFUSCATED_MARKER, b"")


def _rc4(key: bytes, data: bytes) -> bytes:
    pytest.importorskip("cryptography")
    from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4
    from cryptography.hazmat.primitives.ciphers import Cipher

    return Cipher(ARC4(key), mode=None).decryptor().update(data)


def encrypted_pdf(payload: bytes, user_password_empty: bool) -> bytes:
    """Revision 2 (40-bit RC4) with the empty user password (or a key that is not it)."""
    pad = bytes.fromhex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A")
    owner = b"\x11" * 32
    file_id = b"0123456789abcdef"
    perms = -4
    key = hashlib.md5(pad + owner + struct.pack("<i", perms) + file_id).digest()[:5]
    user = _rc4(key if user_password_empty else b"other", pad)
    objkey = hashlib.md5(key + b"\x02\x00\x00\x00\x00").digest()[:10]
    # libclamav decrypts every stream but writes the decrypted data only when a filter
    # worked on it, so the stream is compressed
    body = _rc4(objkey, zlib.compress(payload))
    encrypt = b"<< /Filter /Standard /V 1 /R 2 /Length 40 /P %d /O <%s> /U <%s> >>" % (
        perms,
        owner.hex().encode(),
        user.hex().encode(),
    )
    return pdf(
        [CATALOG, stream(body, b"/Filter /FlateDecode "), encrypt],
        b"/Encrypt 3 0 R /ID [<" + file_id.hex().encode() + b"><00>] ",
    )


def test_encrypted_with_empty_password_is_decrypted() -> None:
    got = children(encrypted_pdf(PAYLOAD, True))
    assert [c.data for c in got if c.name == "pdf obj 2 0"] == [PAYLOAD]
    assert not any(c.encrypted for c in got)


def test_encrypted_with_a_password_gives_the_marker() -> None:
    got = children(encrypted_pdf(PAYLOAD, False))
    assert got[0] == Child(ENCRYPTED_MARKER, b"", encrypted=True)
    assert PAYLOAD not in [c.data for c in got]


def test_found_by_the_engine(tmp_path: Path) -> None:
    sig = tmp_path / "p.ndb"
    sig.write_text(f"Test.Payload:0:*:{PAYLOAD[2:30].hex()}\n")
    engine = Engine(load_database([sig]))
    doc = pdf([CATALOG, stream(zlib.compress(PAYLOAD), b"/Filter /FlateDecode ")])
    assert engine.scan(doc).names == ["Test.Payload.UNOFFICIAL"]


# ---------------------------------------------------------------------------- bad input


def _quick(data: bytes, seconds: float = 5.0, limit: int = LIMIT) -> list[Child]:
    started = time.monotonic()
    out = children(data, limit)
    assert time.monotonic() - started < seconds
    assert all(len(c.data) <= limit for c in out)
    return out


def test_truncated_and_corrupt() -> None:
    doc = encrypted_pdf(PAYLOAD, True) + pdf(
        [CATALOG, stream(zlib.compress(PAYLOAD * 50), b"/Filter [/FlateDecode /A85] ")]
    )
    for cut in range(0, len(doc), 7):
        _quick(doc[:cut])
    for i in range(0, len(doc), 13):
        _quick(doc[:i] + b"\xff<<(/#" + doc[i + 3 :])


def test_absurd_structures() -> None:
    many = b"%PDF-1.4\n" + b"1 0 obj<</S/JavaScript/JS(x)>>endobj\n" * 100_000
    assert len(_quick(many)) == 64 * 1024  # libclamav's object limit
    _quick(b"%PDF-1.4\n1 0 obj" + b"<<" * 300_000 + b">>" * 299_999 + b"stream\nx\nendstream")
    _quick(b"%PDF-1.4\n1 0 obj<</S/JavaScript/JS(" + b"(" * 1_000_000 + b">>endobj")
    chain = b"x"
    for _ in range(100):
        chain = zlib.compress(chain)
    _quick(pdf([stream(chain, b"/Filter [" + b"/FlateDecode " * 100 + b"] ")]))
    # an object stream that lists more objects than it holds, and one that lists itself
    stm = zlib.compress(b"1 0 2 5 3 9 " + b"<<>>" * 5)
    _quick(pdf([stream(stm, b"/Type/ObjStm /N 1000000 /First 12 /Filter /FlateDecode ")]))


def test_bombs_stay_within_the_limit() -> None:
    bomb = zlib.compress(bytes(64 << 20), 9)
    out = _quick(pdf([stream(bomb, b"/Filter /FlateDecode ")]), limit=1 << 20)
    assert out[0].oversized and len(out[0].data) == 1 << 20  # the over-limit marker
    assert out[1].data.startswith(bomb)  # then the raw stream, as libclamav scans it
    lzw_bomb = lzw_encode(bytes(4 << 20))
    out = _quick(pdf([stream(lzw_bomb, b"/Type /EmbeddedFile /Filter /LZWDecode ")]))
    assert out[0].oversized


# ---------------------------------------------------------------------------- differential

DIFF = [
    pytest.mark.differential,
    pytest.mark.skipif(CLAMSCAN is None, reason="Debian's clamscan is not installed"),
]


def clamscan(db: Path, path: Path) -> list[str]:
    assert CLAMSCAN is not None
    proc = subprocess.run(
        [CLAMSCAN, "--no-summary", "--disable-cache", "-d", str(db), str(path)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    return [
        line.rpartition(": ")[2][: -len(" FOUND")]
        for line in proc.stdout.decode("latin-1").splitlines()
        if line.endswith(" FOUND")
    ]


@pytest.mark.differential
@pytest.mark.skipif(CLAMSCAN is None, reason="Debian's clamscan is not installed")
def test_clam_pdf_like_clamscan(scanfiles: Path) -> None:
    db = Path(__file__).parents[1] / "data" / "clamav-unit" / "clamav.hdb"
    if not db.exists():
        pytest.skip("clamav.hdb not in the test data")
    sample = scanfiles / "clam.pdf"
    ours = Engine(load_database([db])).scan(sample.read_bytes()).names
    assert ours == clamscan(db, sample) == ["ClamAV-Test-File.UNOFFICIAL"]


@pytest.mark.differential
@pytest.mark.skipif(CLAMSCAN is None, reason="Debian's clamscan is not installed")
def test_crafted_pdfs_like_clamscan(tmp_path: Path) -> None:
    sig = tmp_path / "p.ndb"
    sig.write_text(f"Test.Payload:0:*:{PAYLOAD[2:30].hex()}\n")
    engine = Engine(load_database([sig]))
    cases = {
        "lzw_only": pdf([CATALOG, stream(lzw_encode(PAYLOAD), b"/Filter /LZWDecode ")]),
        "lzw_embedded": pdf(
            [CATALOG, stream(lzw_encode(PAYLOAD), b"/Type /EmbeddedFile /Filter /LZW ")]
        ),
        "ahx_newline": pdf(
            [CATALOG, stream(PAYLOAD.hex().encode()[:20] + b"\n" + PAYLOAD.hex().encode()[20:])]
        ),
        "a85_marker": pdf(
            [CATALOG, stream(b"<~" + base64.a85encode(PAYLOAD) + b"~>", b"/Filter /A85 ")]
        ),
        "encrypted": encrypted_pdf(PAYLOAD, True),
        "js": pdf([CATALOG, b"<< /S /JavaScript /JS (" + PAYLOAD[2:] + b") >>"]),
    }
    for name, data in cases.items():
        path = tmp_path / f"{name}.pdf"
        path.write_bytes(data)
        ours = [n for n in engine.scan(data).names if not n.startswith("Heuristics.")]
        assert ours == clamscan(sig, path), name
