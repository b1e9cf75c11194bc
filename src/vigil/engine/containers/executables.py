"""Installers and script wrappers found inside executables: NSIS, AutoIt, InstallShield.

The scanner finds these by ClamAV's embedded file-type signatures during the raw scan of
an executable and hands over the data from the wrapper's start to the end of the file:

- ``NULSFT``: from the NSIS first header (4 bytes before ``\\xef\\xbe\\xad\\xdeNullsoftInst``);
- ``AUTOIT``: from the 16-byte marker before ``AU3!EA05`` / ``AU3!EA06``;
- ``ISHIELD_MSI``: from ``InstallShield\\0``.

``ishield`` (InstallShield before MSI) has no file type: libclamav tries it on the overlay
of every PE it parses, so the scanner calls it with the overlay's bytes.

Each unpacker yields what libclamav 1.4.6 extracts, in the same order and under its names
(``headers``, ``content.001`` ...; ``autoit.001`` ...; the file names an InstallShield
block carries). Every decompression is capped at ``limit + 1`` bytes, damaged input yields
the readable prefix, and nothing is written to disk.
"""

from __future__ import annotations

import logging
import lzma
import re
import struct
import zlib
from collections.abc import Callable, Generator, Iterator

import numpy as np

from vigil.engine.containers.child import Child
from vigil.engine.filetype import FileType
from vigil.native import _autoit, _nsis

__all__ = ["UNPACKERS", "autoit", "ishield", "ishield_msi", "nsis"]

log = logging.getLogger(__name__)

# Bounds on loops driven by counts in the input: a crafted header cannot make the Python
# side spin over millions of empty entries.
MAX_ENTRIES = 65536
_PIECE = 1 << 20  # decoded bytes asked for at once
_LZMA_DICT_MAX = 64 << 20  # NSIS' largest dictionary setting


def _cut(name: str, data: bytes, limit: int, compressed: int = -1) -> Child:
    """A child cut at ``limit`` bytes (flagged ``oversized``). NSIS's header script is only
    raw-scanned by libclamav (no typing, no unpacking): type ANY says so to the scanner."""
    raw_only = FileType.ANY if name == _NSIS_HEADERS else None
    return Child(name, data[:limit], len(data) > limit, compressed=compressed, ftype=raw_only)


# --------------------------------------------------------------------------- NSIS

_NSIS_FIRSTHEADER = 0x1C
_COMP_BZIP2, _COMP_LZMA, _COMP_ZLIB = 1, 2, 3


def _nsis_method(word: bytes) -> int:
    """Which compressor a block starts with: NSIS' bzip2 blocks open with ``1``, LZMA with
    its properties byte 0x5d (as a little-endian word, the flag bit masked); else zlib."""
    if word[:1] == b"1":
        return _COMP_BZIP2
    if int.from_bytes(word[:4], "little") & 0x7FFFFFFF == 0x5D:
        return _COMP_LZMA
    return _COMP_ZLIB


class _Stream:
    """Pulls bounded pieces out of one compressed NSIS stream: raw LZMA behind its 5-byte
    properties (Python's lzma), or NSIS' own deflate and bzip2 variants (C)."""

    def __init__(self, method: int, data: bytes, most: int = _LZMA_DICT_MAX) -> None:
        """``most``: the most bytes that will be read (bounds LZMA's dictionary)."""
        self.done = False
        self.failed = False
        self._lzma: lzma.LZMADecompressor | None = None
        self._native: _nsis.Stream | None = None
        self._input = data
        try:
            if method == _COMP_LZMA:
                self._lzma = _lzma_raw(data, most)
                self._input = data[5:]
            else:
                self._native = _nsis.Stream(data, "bzip2" if method == _COMP_BZIP2 else "deflate")
        except (ValueError, lzma.LZMAError) as exc:
            log.debug("NSIS: %s", exc)
            self.done = self.failed = True

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes; fewer at the end of the stream or where it breaks."""
        parts: list[bytes] = []
        want = size
        while want > 0 and not self.done:
            try:
                piece = self._pull(min(want, _PIECE))
            except (lzma.LZMAError, EOFError, ValueError) as exc:
                log.debug("NSIS: bad stream: %s", exc)
                self.done = self.failed = True
                break
            if not piece:
                self.done = True
                break
            parts.append(piece)
            want -= len(piece)
        return b"".join(parts)

    def _pull(self, want: int) -> bytes:
        if self._native is not None:
            piece = self._native.read(want)
            self.failed = self._native.failed
            return piece
        dec = self._lzma
        if dec is None or dec.eof:
            return b""
        if self._input:
            data, self._input = self._input, b""
            return dec.decompress(data, want)
        if dec.needs_input:
            return b""
        return dec.decompress(b"", want)


def _lzma_raw(data: bytes, most: int) -> lzma.LZMADecompressor:
    """A raw LZMA1 decoder from the 5 properties bytes (lc/lp/pb, dictionary size).
    liblzma reserves the whole dictionary up front, so it is cut to what can be used:
    no match reaches further back than the ``most`` bytes that will be decoded."""
    if len(data) < 5 or data[0] >= 9 * 5 * 5:
        raise ValueError("bad LZMA properties")
    props = data[0]
    dict_size = min(int.from_bytes(data[1:5], "little"), most, _LZMA_DICT_MAX)
    dict_size = max(dict_size, 4096)
    filt = {
        "id": lzma.FILTER_LZMA1,
        "dict_size": dict_size,
        "lc": props % 9,
        "lp": props // 9 % 5,
        "pb": props // 45,
    }
    return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[filt])


def _nsis_solid_guess(data: bytes, asz: int, trunc: bool) -> tuple[bool, int] | None:
    """ClamAV's guess: walk the block chain (size words, bit 31 = compressed); if it runs
    past the archive, the archive is one solid stream. Returns (solid, method), or None
    when the chain leaves the data (libclamav gives up then)."""
    comps = [0, 0, 0, 0]
    method = _COMP_ZLIB
    pos = 0
    buf = _NSIS_FIRSTHEADER
    solid = False
    blocks = 0
    while pos < (asz - 4) & 0xFFFFFFFF:
        if buf < 0 or buf + 4 > len(data):
            return None
        nextsz = int.from_bytes(data[buf : buf + 4], "little")
        if blocks == 0:
            method = _nsis_method(data[buf : buf + 4])
        buf += 4
        if nextsz & 0x80000000:
            nextsz &= 0x7FFFFFFF
            if buf + 4 > len(data):
                return None
            comps[_nsis_method(data[buf : buf + 4])] += 1
            nextsz = (nextsz - 4) & 0xFFFFFFFF
            pos = (pos + 4) & 0xFFFFFFFF
            buf += 4
        pos = (pos + 4 + nextsz) & 0xFFFFFFFF
        blocks += 1
        if pos > asz:
            solid = True
            break
        if blocks >= MAX_ENTRIES:
            break
        buf += nextsz if nextsz < 0x80000000 else nextsz - (1 << 32)
    if trunc and blocks >= 2:
        solid = False
    if not solid:
        b, lz, zl = comps[1], comps[2], comps[3]
        if b < lz:
            method = _COMP_ZLIB if lz < zl else _COMP_LZMA
        else:
            method = _COMP_ZLIB if b < zl else _COMP_BZIP2
    return solid, method


_NSIS_HEADERS = "headers"


def _nsis_name(number: int) -> str:
    return _NSIS_HEADERS if number == 0 else f"content.{number:03d}"


def nsis(data: bytes, limit: int) -> Iterator[Child]:
    """Blocks of an NSIS installer, from its first header (flags, signature, magic,
    header size, archive size). The first is the installer's decompressed header script
    (``headers``; libclamav only raw-scans it), then one child per file."""
    try:
        yield from _nsis_walk(data, limit)
    except Exception as exc:  # noqa: BLE001 - an unpacker never raises
        log.debug("NSIS: %s", exc)


def _nsis_walk(data: bytes, limit: int) -> Iterator[Child]:
    if len(data) < _NSIS_FIRSTHEADER:
        return
    flags, hsz, asz = struct.unpack_from("<I16xII", data, 0)
    log.debug("NSIS: flags=%x header size=%x archive size=%x", flags, hsz, asz)
    trunc = False
    if len(data) < asz:
        asz = len(data)
        trunc = True
    if asz < _NSIS_FIRSTHEADER:
        return
    asz -= _NSIS_FIRSTHEADER
    guess = _nsis_solid_guess(data, asz, trunc)
    if guess is None:
        return
    solid, method = guess
    log.debug("NSIS: solid=%s method=%d", solid, method)
    if solid:
        yield from _nsis_solid(data, asz, method, limit)
    else:
        yield from _nsis_blocks(data, asz, method, limit)


def _nsis_blocks(data: bytes, asz: int, method: int, limit: int) -> Iterator[Child]:
    """Non-solid: each block is a size word (bit 31: compressed) and its own stream."""
    pos = _NSIS_FIRSTHEADER
    for number in range(MAX_ENTRIES):
        if pos + 4 > len(data):
            return
        word = int.from_bytes(data[pos : pos + 4], "little")
        pos += 4
        if asz == 4:  # only the CRC is left
            return
        size = word & 0x7FFFFFFF
        if not size:
            continue
        if asz < 4 or size > asz - 4:
            return
        asz -= size + 4
        if pos + size > len(data):
            return
        block = data[pos : pos + size]
        pos += size
        name = _nsis_name(number)
        if word == size:  # stored
            yield _cut(name, block, limit)
            continue
        out = _Stream(method, block, limit + 1).read(limit + 1)
        if not out:  # nothing decodable: libclamav skips the block
            continue
        yield _cut(name, out, limit, compressed=size)


def _nsis_solid(data: bytes, asz: int, method: int, limit: int) -> Iterator[Child]:
    """Solid: one stream holding size-prefixed items, the header script first."""
    start = _NSIS_FIRSTHEADER
    if start + asz > len(data):
        return
    stream = _Stream(method, data[start : start + asz])
    for number in range(MAX_ENTRIES):
        word = stream.read(4)
        if len(word) < 4:
            return
        size = int.from_bytes(word, "little")
        if not size:
            continue
        out = stream.read(min(size, limit + 1))
        if not out:
            return
        if size > limit:
            yield _cut(_nsis_name(number), out, limit)
            return  # libclamav stops a solid archive at an oversized item
        yield _cut(_nsis_name(number), out, limit)
        if len(out) < size:  # the stream broke inside this item
            return


# --------------------------------------------------------------------------- AutoIt

_AU3_MARKER = bytes.fromhex("a3484bbe986c4aa9994c530a86d6487d")
_EA05_FILE = 0xCEB06DFF
_EA06_FILE = 0x52CA436B
_SCRIPT_MAGIC = ">>>AUTOIT SCRIPT<<<"


def autoit(data: bytes, limit: int) -> Iterator[Child]:
    """Files embedded in a compiled AutoIt v3 script (EA05 or EA06), from the 16-byte
    marker: each is decrypted, decompressed and yielded as ``autoit.NNN``; EA06's script
    itself comes out as the tokenised form's text."""
    try:
        if len(data) < 24:
            return
        version = data[23]
        if version == 0x35:
            yield from _autoit_files(data, 24, 5, limit)
        elif version == 0x36:
            yield from _autoit_files(data, 24, 6, limit)
    except Exception as exc:  # noqa: BLE001 - an unpacker never raises
        log.debug("autoit: %s", exc)


class _Au3Keys:
    """The per-version constants of the file records (XOR masks and keystream seeds)."""

    def __init__(self, version: int, m4sum: int) -> None:
        self.version = version
        if version == 5:
            self.magic, self.name_len, self.path_len, self.size = _EA05_FILE, 0x29BC, 0x29AC, 0x45AA
            self.name_seed, self.data_seed = 0xA25E, (0x22AF + m4sum) & 0xFFFFFFFF
            self.chars = 1
        else:
            self.magic, self.name_len, self.path_len, self.size = _EA06_FILE, 0xADBC, 0xF820, 0x87BC
            self.name_seed, self.data_seed = 0xB33F, 0x2477
            self.chars = 2  # EA06 stores UTF-16 strings; the lengths count characters

    def decrypt(self, blob: bytes, seed: int) -> bytes:
        if self.version == 5:
            return _autoit.decrypt_ea05(blob, seed & 0xFFFFFFFF)
        return _autoit.decrypt_ea06(blob, seed & 0xFFFF)


def _autoit_files(data: bytes, pos: int, version: int, limit: int) -> Iterator[Child]:
    """libclamav's record walk: magic, tag, original path, then the (packed) data; a
    record it cannot use is skipped the way libclamav skips it."""
    if len(data) < pos + 16:
        return
    keys = _Au3Keys(version, sum(data[pos : pos + 16]))  # EA06 ignores the sum
    pos += 16
    files = 0
    for _ in range(MAX_ENTRIES):
        if pos + 8 > len(data):
            return
        magic, tag_len = struct.unpack_from("<II", data, pos)
        if magic != keys.magic:
            log.debug("autoit: no FILE magic, extraction complete")
            return
        tag_len ^= keys.name_len
        if tag_len * keys.chars >= 1 << 31:
            return
        pos += 8
        tag = data[pos : pos + tag_len * keys.chars]
        pos += tag_len * keys.chars
        if pos + 4 > len(data):
            return
        path_len = int.from_bytes(data[pos : pos + 4], "little") ^ keys.path_len
        if path_len * keys.chars >= 1 << 31:
            return
        pos += 4 + path_len * keys.chars
        if pos + 13 > len(data):
            return
        comp = data[pos]
        csize = int.from_bytes(data[pos + 1 : pos + 5], "little") ^ keys.size
        if csize >= 1 << 31:
            return
        pos += 13 + 16
        if not csize:
            continue
        if comp == 1 and csize < 4:
            continue  # libclamav does not step over the data here either
        if version == 6:
            files += 1
        if pos + csize > len(data):
            log.debug("autoit: truncated stream")
            return
        blob = keys.decrypt(data[pos : pos + csize], keys.data_seed)
        pos += csize
        script = version == 6 and _au3_is_script(keys, tag, tag_len)
        if comp == 1:
            if blob[:4] != (b"EA05" if version == 5 else b"EA06"):
                log.debug("autoit: bad magic or unsupported version")
                continue
            usize = int.from_bytes(blob[4:8], "big") or csize
            out = _autoit.decompress(blob, version, usize, limit + 1)
            if len(out) < min(usize, limit + 1):
                log.debug("autoit: decompression error after %d bytes", len(out))
                usize = len(out)
        else:
            out, usize = blob, csize
        if usize < 4:
            continue
        if version == 5:
            files += 1
        if script:
            out = _au3_detokenise(out, limit)
            usize = len(out)
        yield Child(
            f"autoit.{files:03d}",
            out[:limit],
            usize > limit or len(out) > limit,
            compressed=csize,
            real=usize,
        )


def _au3_is_script(keys: _Au3Keys, tag: bytes, tag_len: int) -> bool:
    """EA06 marks the script itself with the tag ``>>>AUTOIT SCRIPT<<<``."""
    if len(tag) != 2 * len(_SCRIPT_MAGIC):
        return False
    clear = keys.decrypt(tag, tag_len + keys.name_seed)
    return clear.decode("utf-16-le", "replace") == _SCRIPT_MAGIC


def _au3_tables() -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """AutoIt's keyword and built-in function names, indexed by the ids EA06 tokens use
    (upper-cased, as libclamav prints them). They come from autoit-ripper (MIT), which
    keeps the interpreter's tables; without it, tokens by id end the decompilation."""
    try:
        from autoit_ripper.autoit_data import (
            FUNCTIONS,
            KEYWORDS,
        )
    except ImportError:  # pragma: no cover - the dependency is declared
        return (), ()
    keywords = tuple(k.upper().encode("ascii") for k in KEYWORDS)
    if keywords:
        keywords = (b"UNKNOWN_0", *keywords[1:])  # id 0 is no keyword
    return keywords, tuple(f.upper().encode("ascii") for f in FUNCTIONS)


_AU3_KEYWORDS, _AU3_FUNCTIONS = _au3_tables()


def _au3_detokenise(tokens: bytes, limit: int) -> bytes:
    """EA06 scripts are stored tokenised; libclamav scans them as source text."""
    # a token of n bytes prints at most 8n characters (a 5-byte function id, a long name)
    cap = min(limit + 1, 8 * len(tokens) + 64)
    return _autoit.detokenise(tokens, cap, _AU3_KEYWORDS, _AU3_FUNCTIONS)


# --------------------------------------------------------------------------- InstallShield

_IS_MAGIC = b"InstallShield\x00"
_IS_BLOCK = struct.Struct("<260sIIQ9I")  # name, two words, packed size, nine words
_IS_KEY = bytes((0xEC, 0xCA, 0x79, 0xF8))  # ~(0x13, 0x35, 0x86, 0x07)
_NIBBLE_SWAP = bytes(((b >> 4) | (b << 4)) & 0xFF for b in range(256))
_IS_STEP = 1 << 20  # a multiple of the key's 1024-byte period


def ishield_msi(data: bytes, limit: int) -> Iterator[Child]:
    """Files of an MSI-based InstallShield setup: a count, then per file a 312-byte block
    (260-byte name, packed size) and a zlib stream hidden by a nibble swap and a XOR with
    the name mixed with a fixed key (repeating every 1024 bytes)."""
    try:
        yield from _ishield_msi(data, limit)
    except Exception as exc:  # noqa: BLE001 - an unpacker never raises
        log.debug("ishield-msi: %s", exc)


def _ishield_msi(data: bytes, limit: int) -> Iterator[Child]:
    pos = len(_IS_MAGIC)
    if data[:pos] != _IS_MAGIC or len(data) < pos + 0x20:
        return
    head = struct.unpack_from("<8I", data, pos)
    if any(head[2:]):
        return
    count = head[0]
    pos += 0x20
    for _ in range(min(count, MAX_ENTRIES)):
        if pos + _IS_BLOCK.size > len(data):
            return
        raw_name, _u1, _u2, csize, *_rest = _IS_BLOCK.unpack_from(data, pos)
        pos += _IS_BLOCK.size
        name = raw_name[:259].split(b"\x00", 1)[0]
        if csize > len(data) - pos:
            log.debug("ishield-msi: stream out of file")
            return
        if not name:
            return
        packed = data[pos : pos + csize]
        pos += csize
        yield _cut(
            name.decode("latin-1"), _is_inflate(packed, name, limit), limit, compressed=csize
        )


def _is_inflate(packed: bytes, name: bytes, limit: int) -> bytes:
    """Undo the nibble swap and the XOR (in 1 MiB steps: the key's 1024-byte period keeps
    its phase) and inflate, keeping what inflates before any damage."""
    key = _xor(name, (_IS_KEY * (len(name) // 4 + 1))[: len(name)])
    one = (key * (1024 // len(key) + 1))[:1024]
    period = np.frombuffer(one * (min(len(packed), _IS_STEP) // 1024 + 1), np.uint8)
    dec = zlib.decompressobj()
    out: list[bytes] = []
    got = 0
    for at in range(0, len(packed), _IS_STEP):
        piece = np.frombuffer(packed[at : at + _IS_STEP].translate(_NIBBLE_SWAP), np.uint8)
        clear = (piece ^ period[: len(piece)]).tobytes()
        saved = dec.copy()
        try:
            part = dec.decompress(clear, limit + 1 - got)
        except zlib.error as exc:
            log.debug("ishield-msi: bad stream: %s", exc)
            out.append(_inflate_prefix(saved, clear, limit + 1 - got))
            break
        out.append(part)
        got += len(part)
        if got > limit or dec.eof:
            break
    return b"".join(out)


def _inflate_prefix(dec: zlib._Decompress, data: bytes, room: int) -> bytes:
    """What a stream yields before the point where it breaks (to within 4 KiB of input)."""
    out = bytearray()
    try:
        for at in range(0, len(data), 4096):
            out += dec.decompress(data[at : at + 4096], room - len(out))
            if len(out) >= room or dec.eof:
                break
    except zlib.error:
        pass
    return bytes(out)


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "little") ^ int.from_bytes(b, "little")).to_bytes(len(a), "little")


# InstallShield before MSI: a PE overlay of files, each after four NUL-terminated strings
# (name, path, version, decimal size). data1.hdr indexes files packed into dataN.cab
# ("ISc(" cabinets: chunks of raw deflate, each behind a 16-bit size).
_IS_STR_MAX = 2048
_IS_DECIMAL = re.compile(rb"[ \t\n\v\f\r]*[+-]?[0-9]+\Z")
_IS_CAB_NAME = re.compile(rb"data([ \t\n\v\f\r]*[+-]?[0-9]+)\.cab\Z", re.IGNORECASE)
_IS_HDR = struct.Struct("<5I")  # magic "ISc(", two words, data offset, data size
_IS_OBJECTS = struct.Struct("<12IHIHIIHII")
_IS_FILEITEM = struct.Struct("<HQQQ16sQIIIHIIIIIBH")
_IS_HDR_MAGIC = 0x28635349
_IS_MAX_CHUNKS = 1 << 20


def ishield(overlay: bytes, limit: int) -> Iterator[Child]:
    """Files of a pre-MSI InstallShield setup, from a PE's overlay (libclamav tries every
    PE overlay): the plain files as they come, then the files data1.hdr places in the
    dataN.cab cabinets; the header and cabinets themselves only when that index is
    unusable."""
    try:
        yield from _ishield_walk(overlay, limit)
    except Exception as exc:  # noqa: BLE001 - an unpacker never raises
        log.debug("ishield: %s", exc)


def _is_string(data: bytes, pos: int) -> bytes | None:
    end = data.find(b"\x00", pos, pos + _IS_STR_MAX)
    return None if end < 0 else data[pos:end]


def _ishield_walk(data: bytes, limit: int) -> Iterator[Child]:
    left = len(data)
    pos = 0
    hdr: tuple[int, int] | None = None
    cabs: list[tuple[int, int, int]] = []  # (number, offset, size)
    for _ in range(MAX_ENTRIES):
        strings: list[bytes] = []
        at = pos
        for _field in range(4):
            text = _is_string(data, at)
            if text is None:
                break
            strings.append(text)
            at += len(text) + 1
        if len(strings) < 4:
            break
        fname, _path, _version, size_text = strings
        if not _IS_DECIMAL.match(size_text):
            break
        fsize = int(size_text)
        head = at - pos
        if fsize < 0 or fsize >= left or head >= left - fsize:
            break
        left -= head + fsize
        pos = at
        lower = fname.lower()
        if lower.startswith(b"data"):
            if lower[4:] == b"1.hdr" and hdr is None:
                hdr = (pos, fsize)
                pos += fsize
                continue
            number = _is_cab_number(fname)
            if number is not None and _is_cab_new(cabs):
                cabs.append((number, pos, fsize))
                pos += fsize
                continue
        if fsize:
            yield _cut(fname.decode("latin-1"), data[pos : pos + fsize], limit)
        pos += fsize
    if not cabs and hdr is None:
        return
    complete = yield from _is_parse_hdr(data, hdr, cabs, limit)
    if complete:
        return
    if hdr is not None and hdr[1]:
        yield _cut("data1.hdr", data[hdr[0] : hdr[0] + hdr[1]], limit)
    for number, off, size in cabs:
        if size:
            yield _cut(f"data{number}.cab", data[off : off + size], limit)


def _is_cab_number(fname: bytes) -> int | None:
    match = _IS_CAB_NAME.match(fname)
    if match is None:
        return None
    number = int(match.group(1))
    return number if 0 < number < 65536 else None


def _is_cab_new(cabs: list[tuple[int, int, int]]) -> bool:
    """libclamav's duplicate test, kept as it behaves: it compares each slot's number with
    the slot's index, so in practice only a cabinet numbered like its slot blocks."""
    i = 0
    while i < len(cabs) and i != cabs[i][0]:
        i += 1
    return i == len(cabs)


def _is_parse_hdr(
    data: bytes, hdr: tuple[int, int] | None, cabs: list[tuple[int, int, int]], limit: int
) -> Generator[Child, None, bool]:
    """Files that data1.hdr places in the cabinets. Returns True when every entry could
    be handled (then libclamav does not scan the header and cabinets themselves)."""
    if hdr is None or not hdr[1] or not cabs:
        return False
    base, hdr_size = hdr
    if base + _IS_HDR.size > len(data) or hdr_size < _IS_HDR.size:
        return False
    magic, _u1, _u2, data_off, _data_sz = _IS_HDR.unpack_from(data, base)
    objs_at = base + data_off
    if objs_at + _IS_OBJECTS.size > len(data):
        return False
    if magic != _IS_HDR_MAGIC:
        return False
    objs = _IS_OBJECTS.unpack_from(data, objs_at)
    dirs_off, files_cnt, dir_sz2 = objs[3], objs[10], objs[11]
    off = base + data_off + dirs_off + dir_sz2
    complete = True
    for _ in range(min(files_cnt, MAX_ENTRIES)):
        if off + _IS_FILEITEM.size > len(data):
            return False  # this and every later entry lie outside the file
        item = _IS_FILEITEM.unpack_from(data, off)
        off += _IS_FILEITEM.size
        flags, size, csize, stream_off = item[0], item[1], item[2], item[3]
        name_off, has_dup, cabno = item[8], item[15], item[16]
        if flags != 4 or has_dup & 1 or not size:
            continue
        if csize > limit:
            continue  # libclamav skips a file packed larger than MaxFileSize
        cab = next((c for c in cabs if c[0] == cabno), None)
        if cab is None:
            complete = False
            continue
        _number, cab_off, cab_size = cab
        if stream_off > cab_size or csize > cab_size - stream_off:
            complete = False
            continue
        out = _is_extract_cab(data, cab_off + stream_off, csize, limit)
        if out is None:
            complete = False
            continue
        name_at = base + data_off + dirs_off + name_off
        name = _is_string(data, name_at) if name_at < base + hdr_size else None
        yield _cut((name or b"").decode("latin-1"), out, limit, compressed=csize)
    return complete


def _is_extract_cab(data: bytes, off: int, csize: int, limit: int) -> bytes | None:
    """One file of an ISc( cabinet: 16-bit sized chunks of raw deflate. None when the
    last chunk could not be read (libclamav then scans nothing of the file)."""
    out = bytearray()
    success = False
    for _ in range(_IS_MAX_CHUNKS):
        if not csize:
            break
        success = False
        if csize < 2 or off + 2 > len(data):
            break
        csize -= 2
        chunk_size = int.from_bytes(data[off : off + 2], "little")
        off += 2
        if not chunk_size:
            continue
        if csize < chunk_size or off + chunk_size > len(data):
            break
        csize -= chunk_size
        chunk = data[off : off + chunk_size]
        off += chunk_size
        room = limit + 1 - len(out)
        try:
            out += zlib.decompressobj(-zlib.MAX_WBITS).decompress(chunk, max(room, 1))[:room]
        except zlib.error as exc:
            log.debug("ishield: bad chunk: %s", exc)
            break
        success = True
        if len(out) > limit:
            break
    return bytes(out) if success else None


UNPACKERS: dict[FileType, Callable[[bytes, int], Iterator[Child]]] = {
    FileType.NULSFT: nsis,
    FileType.AUTOIT: autoit,
    FileType.ISHIELD_MSI: ishield_msi,
}
# ``ishield`` has no file type: the scanner calls it on every PE's overlay (see above).
