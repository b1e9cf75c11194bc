"""Packed PE executables: the unpacked, rebuilt image of a packed file (UPX, FSG, MEW,
Upack, Petite, PESpin, yC, WWPack, ASPack).

libclamav unpacks a PE after its raw scan and scans the image it rebuilds (its own MZ/PE
headers in front of the decompressed sections) as a new file; signatures that hash or
match that image, or the executables embedded in it, only fire when the rebuild is byte
for byte the same. So this module follows libclamav 1.4's ``cli_scanpe`` closely: the
same header parse, the same packer checks in the same order (the first one that applies
decides), the same decompressor attempts sharing one output buffer, the same rebuild.

The bit-level decoders are C (``vigil.native``); Python only reads headers and moves
whole blocks. Every size is checked against the caller's limit before anything is
allocated, so a hostile header costs at most ``limit`` bytes.
"""

from __future__ import annotations

import logging
import lzma
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from vigil.engine.containers.child import Child
from vigil.native import (
    _nrv,
    _unpack_aplib,
    _unpack_aspack,
    _unpack_mew,
    _unpack_petite,
    _unpack_spin,
    _unpack_upack,
    _unpack_wwpack,
    _unpack_yc,
)

__all__ = ["unpack_pe"]

log = logging.getLogger(__name__)

_M32 = 0xFFFF_FFFF
_MAX_ALLOCATION = 1 << 30  # CLI_MAX_ALLOCATION: libclamav never allocates more

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_S32 = struct.Struct("<i")


def _u16(buf: bytes | bytearray, at: int) -> int:
    return int(_U16.unpack_from(buf, at)[0])


def _u32(buf: bytes | bytearray, at: int) -> int:
    return int(_U32.unpack_from(buf, at)[0])


def _s32(buf: bytes | bytearray, at: int) -> int:
    return int(_S32.unpack_from(buf, at)[0])


def _put32(buf: bytearray, at: int, value: int) -> None:
    _U32.pack_into(buf, at, value & _M32)


def _align_down(value: int, alignment: int) -> int:
    return (value // alignment) * alignment if alignment else value


def _align_up(value: int, alignment: int) -> int:
    if not alignment:
        return value
    return ((value // alignment + (value % alignment != 0)) * alignment) & _M32


def _inside(size: int, at: int, length: int) -> bool:
    """CLI_ISCONTAINED with the big buffer at offset 0: [at, at+length) non-empty and
    inside [0, size)."""
    return 0 < length <= size and 0 <= at < size and at + length <= size


def _inside_from(base: int, size: int, at: int, length: int) -> bool:
    """CLI_ISCONTAINED for plain numbers: [at, at+length) inside [base, base+size)."""
    return 0 < length <= size and base <= at and at + length <= base + size


class _TooBig(Exception):
    """An unpacker needs more than the caller's limit (libclamav's CLI_UNPSIZELIMITS)."""


class _Stop(Exception):
    """libclamav gives up on the whole file here (no later packer is tried)."""


def _check_limit(limit: int, *needed: int) -> None:
    if max(needed) > limit:
        raise _TooBig


# --------------------------------------------------------------------------------------------
# The rebuilt header libclamav puts in front of unpacked data. Signatures (and hashes) of the
# rebuilt file depend on every byte of it, so it is reproduced exactly: a DOS header and stub
# whose message names ClamAV, then a PE header whose fields the rebuild fills in.


def _dos_header() -> bytes:
    fields = struct.pack(
        "<2s13H8x2H20xI",
        b"MZ",
        0x90,  # e_cblp
        2,  # e_cp
        0,  # e_crlc
        4,  # e_cparhdr
        0x0F,  # e_minalloc
        0xFFFF,  # e_maxalloc
        0,  # e_ss
        0xB0,  # e_sp
        0,  # e_csum
        0,  # e_ip
        0,  # e_cs
        0x40,  # e_lfarlc
        0x1A,  # e_ovno
        0,
        0,
        0xD0,  # e_lfanew
    )
    # push cs; pop ds; mov ah, 9; mov dx, 0xd; int 21h; mov ax, 4cxxh; int 21h
    stub = bytes.fromhex("0e1fb409ba0d00cd21b44ccd21")
    message = (
        b"This file was created by ClamAV for internal use and should not be run.\r\n"
        b"ClamAV - A GPL virus scanner - http://www.clamav.net\r\n$"
    )
    return (fields + stub + message).ljust(0xD0, b"\0")


_DOS_HEADER = _dos_header()


def _optional_header(
    sections: int,
    entry: int,
    data_base: int,
    image_base: int,
    image_size: int,
    header_size: int,
) -> bytes:
    """PE signature, file header and the fixed part of the optional header (0x78 bytes)."""
    return struct.pack(
        "<4sHHIIIHHHBBIIIIIIIIIHHHHHHIIIIHHIIIIII",
        b"PE\0\0",
        0x14C,  # i386
        sections,
        0x4D414C43,  # TimeDateStamp "CLAM"
        0,
        0,
        0xE0,
        0x8F83,  # Characteristics
        0x10B,  # PE32
        0,
        0,
        0x1000,  # SizeOfCode
        0x1000,  # SizeOfInitializedData
        0,
        entry,
        0x1000,  # BaseOfCode
        data_base,
        image_base,
        0x1000,  # SectionAlignment
        0x200,  # FileAlignment
        1,
        0,
        0,
        0,
        3,
        10,
        0,
        image_size,
        header_size,
        0,
        2,  # Subsystem: GUI
        0,
        0x100000,
        0x1000,
        0x100000,
        0x1000,
        0,
        16,
    )


def _section_header(name: bytes, vsize: int, rva: int, rsize: int, raw: int) -> bytes:
    return struct.pack("<8sIIII12xI", name, vsize, rva, rsize, raw, _M32)


@dataclass(slots=True)
class _Out:
    """A section of an unpacked image: where it goes (rva, vsz) and where its data is in
    the unpacked buffer (raw, rsz)."""

    rva: int
    vsz: int = 0
    raw: int = 0
    rsz: int = 0


_MAX_REBUILT_SECTIONS = 96


def _rebuild(
    buf: bytes | bytearray,
    sections: list[_Out],
    base: int,
    ep: int,
    res_rva: int = 0,
    res_size: int = 0,
    align: int = 0,
) -> bytes | None:
    """libclamav's cli_rebuildpe(_align): a parsable (not runnable) PE around unpacked
    sections, each stored at a 0x200-aligned offset, with a ghost section covering any
    gap before the first one."""
    count = len(sections)
    rawbase = _align_up(0x148 + 0x80 + 0x28 * count, 0x200)
    ghost = sections[0].rva > _align_up(rawbase, 0x1000)
    if ghost:
        rawbase = _align_up(0x148 + 0x80 + 0x28 * (count + 1), 0x200)
    if count + ghost > _MAX_REBUILT_SECTIONS:
        return None
    sizes = [_align_up(_align_up(s.rsz, align), 0x200) for s in sections]
    if sum(sizes) > _MAX_ALLOCATION or rawbase + sum(sizes) > _MAX_ALLOCATION:
        return None
    datasize = _align_up(rawbase, 0x1000)
    table = bytearray()
    if ghost:
        gap = (sections[0].rva - datasize) & _M32
        table += _section_header(b"empty", gap, datasize, 0, 0)
        datasize = (datasize + _align_up(gap, 0x1000)) & _M32
    body = bytearray()
    offset = rawbase
    for index, (s, size) in enumerate(zip(sections, sizes, strict=True)):
        name = f".clam{index + 1:02d}".encode()[:7]
        vsz, rva, rsz = s.vsz, s.rva, s.rsz
        if align:
            vsz, rva, rsz = _align_up(vsz, align), _align_up(rva, align), _align_up(rsz, align)
        table += _section_header(name, vsz, rva, rsz, offset)
        chunk = bytes(buf[s.raw : s.raw + s.rsz])
        body += chunk.ljust(size, b"\0")
        offset += size
        datasize = (datasize + _align_up(_align_up(s.vsz, align), 0x1000)) & _M32
    head = _DOS_HEADER + _optional_header(count + ghost, ep, 0x1000, base, datasize, rawbase)
    head += struct.pack("<16xII104x", res_rva, res_size) + table
    return head.ljust(rawbase, b"\0") + bytes(body)


# --------------------------------------------------------------------------------------------
# Header parse: libclamav's cli_peheader as cli_scanpe calls it (sections lying wholly past the
# end of the file removed, truncated ones clipped).


@dataclass(slots=True)
class _Section:
    rva: int
    vsz: int
    raw: int
    rsz: int
    urva: int
    uvsz: int
    uraw: int
    ursz: int
    chr: int


@dataclass(slots=True)
class _PeInfo:
    sections: list[_Section]
    vep: int  # AddressOfEntryPoint
    ep: int  # its file offset
    image_base: int
    hdr_size: int
    min: int
    max: int
    e_lfanew: int
    opt_size: int
    res_rva: int
    res_size: int
    fsize: int


def _rawaddr(rva: int, sections: list[_Section], fsize: int, hdr_size: int) -> int | None:
    """cli_rawaddr: the file offset of an RVA (last matching section wins)."""
    if rva < hdr_size:
        return rva if rva < fsize else None
    for s in reversed(sections):
        if s.rsz and s.rva <= rva and s.rsz > rva - s.rva:
            return (rva - s.rva + s.raw) & _M32
    return None


def _peinfo(data: bytes) -> _PeInfo | None:
    size = len(data)
    if size < 64 or data[:2] not in (b"MZ", b"ZM"):
        return None
    lfanew = _u32(data, 60)
    if not lfanew or lfanew + 24 > size or data[lfanew : lfanew + 4] != b"PE\0\0":
        return None
    nsections, opt_size = _u16(data, lfanew + 6), _u16(data, lfanew + 20)
    if not nsections or opt_size < 96:
        return None
    opt = lfanew + 24
    if opt + 96 > size:
        return None
    if _u16(data, opt) == 0x20B:
        return None  # PE32+: libclamav does not unpack
    vep = _u32(data, opt + 16)
    image_base = _u32(data, opt + 28)
    salign, falign = _u32(data, opt + 32), _u32(data, opt + 36)
    hdr_size = _u32(data, opt + 60)
    ndirs = min(_u32(data, opt + 92), 16)
    if opt_size < 96 + 8 * ndirs or opt + 96 + 8 * ndirs > size:
        return None
    dirs = [tuple(struct.unpack_from("<II", data, opt + 96 + 8 * i)) for i in range(ndirs)]
    dirs += [(0, 0)] * (16 - ndirs)
    table = opt + opt_size
    if table + 40 * nsections > size:
        return None
    headers = [struct.unpack_from("<8xIIII12xI", data, table + 40 * i) for i in range(nsections)]
    hdr_size = _align_up(hdr_size, salign)
    if falign != 0x200:
        for h in headers:
            if falign and h[2] and h[3] % falign and not h[3] % 0x200:
                falign = 0x200
                break
    sections: list[_Section] = []
    lo = hi = 0
    remaining = nsections
    for uvsz, urva, ursz, uraw, chars in headers:
        s = _Section(
            rva=_align_down(urva, salign),
            vsz=_align_up(uvsz, salign),
            raw=_align_down(uraw, falign),
            rsz=_align_up(ursz, falign),
            urva=urva,
            uvsz=uvsz,
            uraw=uraw,
            ursz=ursz,
            chr=chars,
        )
        if s.rsz:
            if s.raw >= size or s.uraw >= size:
                if remaining == 1:
                    return None
                remaining -= 1
                continue  # removed, as libclamav does at scan time
            if s.raw + s.rsz > size:
                s.rsz = size - s.raw
            if s.uraw + s.ursz > size:
                s.ursz = size - s.uraw
        if not s.vsz and s.rsz:
            s.vsz = _align_up(s.ursz, salign)
        if urva >> 31 or uvsz >> 31 or (s.rsz and uraw >> 31) or s.ursz >> 31:
            return None
        if not sections:
            lo, hi = s.rva, s.rva + s.rsz
        else:
            lo = min(lo, s.rva)
            hi = max(hi, s.rva + s.rsz)
        sections.append(s)
    if not sections:
        return None
    ep = _rawaddr(vep, sections, size, hdr_size)
    if ep is None:
        return None
    return _PeInfo(
        sections=sections,
        vep=vep,
        ep=ep,
        image_base=image_base,
        hdr_size=hdr_size,
        min=lo,
        max=hi,
        e_lfanew=lfanew,
        opt_size=opt_size,
        res_rva=dirs[2][0],
        res_size=dirs[2][1],
        fsize=size,
    )


# --------------------------------------------------------------------------------------------
# UPX

_UPX_NRV2B = bytes.fromhex("11db11c901db75078b1e83eefc11db11c911c9752041 01db")
_UPX_NRV2D = bytes.fromhex("83f0ff7478d1f889c5eb0b01db75078b1e83eefc11db11c9")
_UPX_NRV2E = bytes.fromhex("eb5231c983e8037211c1e0088a064683f0ff7475d1f889c5")
_UPX_LZMA1_FIRST = bytes.fromhex("5683c3045350c703")
_UPX_LZMA1_SECOND = bytes.fromhex("9090905557565383")
_UPX_LZMA2 = bytes.fromhex("5683c3045350c703 03000200 9090909090 555756")

# Where each decompressor's stub keeps "lea edi, [esi + imports]" (the 32-bit operand's
# offset from the entry point), per method.
_UPX_MAGIC = {"b": (0x108, 0x110, 0xD5), "d": (0x11C, 0x124), "e": (0x128, 0x130)}
_UPX_LZMA_MAGIC = (0xB16, 0xB1E)

_NRV = {"b": _nrv.nrv2b, "d": _nrv.nrv2d, "e": _nrv.nrv2e}


class _UpxState:
    """The output buffer and size that libclamav's UPX attempts share."""

    __slots__ = ("dsize", "dst")

    def __init__(self, dsize: int) -> None:
        self.dsize = dsize
        self.dst = bytearray(dsize + 8192)


def _upx_rebuild(
    src: bytes,
    st: _UpxState,
    ep: int,
    upx0: int,
    upx1: int,
    magic: tuple[int, ...],
    dend: int,
) -> None:
    """libclamav's pefromupx: find UPX's copy of the original PE header (after the import
    table the stub points at, else by scanning back from the end), lay the sections out
    at aligned file offsets behind libclamav's DOS header; with no header at all, put a
    one-section header in front of the whole image."""
    dst, dsize, ssize = st.dst, st.dsize, len(src)
    base = (ep - upx1) & _M32
    valign = 0
    for candidate in magic:
        at = (base + candidate - 2) & _M32
        if _inside(ssize - 5, at, 2) and src[at : at + 2] == b"\x8d\xbe":
            valign = candidate
            break
    if not valign and _inside(ssize - 8, (base + 0x80) & _M32, 8):
        at = (base + 0x80) & _M32
        while True:
            at = src.find(b"\x8d\xbe", at, ssize - 8)
            if at < 0:
                break
            if src[at + 6 : at + 8] == b"\x8b\x07":  # lea edi, [esi+imports]; mov eax, [edi]
                valign = (at + 2 - ep + upx1) & _M32
                break
            at += 1

    pehdr = -1
    realstuffsz = 0
    at = (base + valign) & _M32
    if valign and _inside(ssize, at, 4):
        imports = _s32(src, at)
        realstuffsz = imports & _M32
        if realstuffsz < dsize:
            pehdr = _nrv.upx_header_after_imports(dst, dsize, imports)
            if pehdr < 0 or not _nrv.upx_check_header(dst, dsize, pehdr):
                pehdr = -1
    if pehdr < 0 and dend > 0xF8 + 0x28:
        pehdr = _nrv.upx_find_header(dst, dsize, dend - 0xF8 - 0x28)
        realstuffsz = pehdr
        if not pehdr:
            pehdr = -1

    if pehdr < 0:
        rebsz = _align_up(dend, 0x1000)
        head = _DOS_HEADER + _upx_fake_header(rebsz)
        dst[: dend + 0x200] = (head.ljust(0x200, b"\0") + dst[:dend])[: dend + 0x200]
        st.dsize = rebsz + 0x200
        return

    valign = _u32(dst, pehdr + 0x38)
    sectcnt = _u16(dst, pehdr + 6)
    table = pehdr + 0xF8
    foffset = _align_up(0xD0 + 0xF8 + 0x28 * sectcnt, valign)
    for index in range(sectcnt):
        entry = table + 0x28 * index
        vsize = _align_up(_u32(dst, entry + 8), valign)
        urva = _align_down(_u32(dst, entry + 12), valign)
        if not _inside_from(upx0, realstuffsz, urva, vsize):
            return  # "giving up rebuild", yet the decompressed data still counts
        struct.pack_into("<IIII", dst, entry + 8, vsize, urva, vsize, foffset)
        if foffset + vsize > _M32:
            return
        foffset += vsize
    _put32(dst, pehdr + 8, 0x4D414C43)
    _put32(dst, pehdr + 0x3C, valign)
    if foffset > dsize + 8192:
        return  # "wrong raw size": libclamav keeps the data as it is
    out = bytearray(foffset)
    out[:0xD0] = _DOS_HEADER
    header_len = 0xF8 + 0x28 * sectcnt
    out[0xD0 : 0xD0 + header_len] = dst[pehdr : pehdr + header_len]
    for index in range(sectcnt):
        entry = table + 0x28 * index
        offset1, offset2, offset3 = (
            _u32(dst, entry + 20),
            _u32(dst, entry + 16),
            _u32(dst, entry + 12),
        )
        if offset1 > foffset or offset2 > foffset or (offset1 + offset2) & _M32 > foffset:
            return
        start = (offset3 - upx0) & _M32
        if start > dsize:
            return
        out[offset1 : offset1 + offset2] = dst[start : start + offset2]
    dst[:foffset] = out
    st.dsize = foffset


def _upx_fake_header(rebsz: int) -> bytes:
    """The PE header libclamav forges when UPX's copy of the original is not found."""
    head = _optional_header(1, 0x1000, 0x1000, 0x400000, rebsz + 0x1000, 0x200)
    head += b"\0" * 0x80
    return head + struct.pack("<8sIIII12xI", b".clam01", rebsz, 0x1000, rebsz, 0x200, _M32)


def _upx_attempt(method: str, src: bytes, st: _UpxState, upx0: int, upx1: int, ep: int) -> bool:
    """One NRV attempt (upx_inflate2b/2d/2e): decode into the shared buffer, then rebuild."""
    dend = _NRV[method](src, st.dst, st.dsize)
    if dend < 0:
        return False
    _upx_rebuild(src, st, ep, upx0, upx1, _UPX_MAGIC[method], dend)
    return True


def _upx_lzma(
    src: bytes, st: _UpxState, strict: int, upx0: int, upx1: int, ep: int, properties: int
) -> bool:
    """upx_inflatelzma: raw LZMA after a 2-byte header, into the first ``strict`` bytes."""
    lc, lp, pb = properties & 0xFF, (properties >> 8) & 0xFF, (properties >> 16) & 0xFF
    if lc >= 9 or lp >= 5 or pb >= 5:
        return False
    filters = [
        {"id": lzma.FILTER_LZMA1, "lc": lc, "lp": lp, "pb": pb, "dict_size": max(strict, 4096)}
    ]
    try:
        out = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=filters).decompress(
            src[2:], max_length=strict
        )
    except (lzma.LZMAError, ValueError):
        return False
    st.dst[: len(out)] = out
    saved, st.dsize = st.dsize, strict
    _upx_rebuild(src, st, ep, upx0, upx1, _UPX_LZMA_MAGIC, strict)
    st.dsize = saved  # libclamav writes out the original size whatever the rebuild did
    return True


def _upx(data: bytes, pe: _PeInfo, index: int, ep_buf: bytes, limit: int) -> bytes | None:
    """cli_scanpe's UPX block: the output, or None when every decompressor failed."""
    sections = pe.sections
    upx0, upx1 = sections[index], sections[index + 1]
    ssize = upx1.rsz
    dsize = (upx0.vsz + upx1.vsz) & _M32
    _check_limit(limit, dsize, ssize)
    if ssize <= 0x19 or dsize <= ssize or dsize > _MAX_ALLOCATION:
        raise _Stop
    src = data[upx1.raw : upx1.raw + ssize]
    if len(src) != ssize:
        raise _Stop
    st = _UpxState(dsize)
    method = ""
    for name, pattern in (("b", _UPX_NRV2B), ("d", _UPX_NRV2D), ("e", _UPX_NRV2E)):
        if ep_buf[0x69 : 0x69 + 13] in pattern or ep_buf[0x71 : 0x71 + 13] in pattern:
            method = name
            break
    success = False
    if method:
        skew = (_u32(ep_buf, 2) - pe.image_base - upx1.rva) & _M32
        if skew >= 1 << 31:
            skew -= 1 << 32
        if ep_buf[1] != 0xBE or skew <= 0 or skew > 0xFFF or skew > ssize:
            skew = 0
        if _upx_attempt(method, src[skew:], st, upx0.rva, upx1.rva, (pe.vep - skew) & _M32):
            success = True
        elif skew and _upx_attempt(method, src, st, upx0.rva, upx1.rva, pe.vep):
            success = True
    for name in ("b", "d", "e"):
        if success or method == name:
            continue
        if _upx_attempt(name, src, st, upx0.rva, upx1.rva, pe.vep) or _upx_attempt(
            name, src[0x15:], st, upx0.rva, upx1.rva, (pe.vep - 0x15) & _M32
        ):
            success = True
    lzma_props = 0
    strict = 0
    if _UPX_LZMA2 in ep_buf[0x2F : 0x2F + 20]:
        strict, lzma_props = _u32(ep_buf, 0x21), 0x20003
    elif (
        _UPX_LZMA1_FIRST in ep_buf[0x39 : 0x39 + 8] and _UPX_LZMA1_SECOND in ep_buf[0x45 : 0x45 + 8]
    ):
        strict, lzma_props = _u32(ep_buf, 0x2B), _u32(ep_buf, 0x41)
    if lzma_props:
        skew = 0
        if ssize > 0x15 and ep_buf[0] == 0x60 and ep_buf[1] == 0xBE:
            skew = (_u32(ep_buf, 2) - upx1.rva - pe.image_base) & _M32
            if skew != 0x15:
                skew = 0
        if strict <= st.dsize:
            success = _upx_lzma(src[skew:], st, strict, upx0.rva, upx1.rva, pe.vep, lzma_props)
    if not success:
        return None
    return bytes(st.dst[: st.dsize])


# --------------------------------------------------------------------------------------------
# MEW 11 SE: the empty section and the MEW section laid out in one buffer, unpacked in place.


def _mew(data: bytes, pe: _PeInfo, i: int, ep_buf: bytes, limit: int) -> bytes | None:
    """cli_scanpe's MEW block: the rebuilt image, or None to try the next packer."""
    sections, base = pe.sections, pe.image_base
    fileoffset = (pe.vep + _s32(ep_buf, 1) + 5) & _M32
    if fileoffset not in (0x154, 0x158):
        return None
    tbuff = data[fileoffset : fileoffset + 0xB0]
    if len(tbuff) != 0xB0:
        return None
    packed, empty = sections[i + 1], sections[i]
    offdiff = (_u32(tbuff, 1) - base) & _M32
    # libclamav bounds ESI by the section's file offset here, not its size
    if offdiff <= packed.rva or offdiff >= (packed.rva + packed.raw - 4) & _M32:
        return None
    offdiff -= packed.rva
    if not packed.rsz:
        return None
    ssize, dsize = packed.vsz, empty.vsz
    if ssize + dsize > _M32 or offdiff >= ssize + dsize:
        return None
    _check_limit(limit, ssize, dsize)
    _check_limit(limit, ssize + dsize, packed.rsz)
    if packed.rsz < offdiff + 12 or packed.rsz > ssize:
        return None
    chunk = data[packed.raw : packed.raw + packed.rsz]
    if len(chunk) != packed.rsz:
        raise _Stop
    buf = bytearray(ssize + dsize)
    buf[dsize : dsize + packed.rsz] = chunk
    uselzma = 0
    if tbuff[0x7B] == 0xE8:  # call to the LZMA decoder
        target = (_u32(tbuff, 0x7C) + fileoffset + 0x80) & _M32
        if len(sections) < 2 or not _inside_from(sections[1].rva, sections[1].vsz, target, 4):
            return None
        uselzma = (_u32(tbuff, 0x7C) - (sections[0].rva - fileoffset - 0x80)) & _M32
    result = _unpack_mew.unpack(buf, offdiff, ssize, dsize, base, sections[0].rva, uselzma)
    if result is None:
        return None
    entry, parts = result
    out = [_Out(rva=rva, vsz=vsz, raw=raw, rsz=rsz) for raw, rva, rsz, vsz in parts]
    if not out:
        return None
    return _rebuild(buf, out, base, (entry - base) & _M32, align=0x1000)


# --------------------------------------------------------------------------------------------
# Upack: the file's start and its sections laid out as the stub expects, unpacked in place.


def _is_upack(pe: _PeInfo, ep_buf: bytes, upack: bool) -> bool:
    """cli_scanpe's Upack entry-point patterns (0.39 with 3 or 2 sections, 1.1/1.2)."""
    base, count = pe.image_base, len(pe.sections)
    esi = (_u32(ep_buf, 1) - base) & _M32
    if upack and count == 3:
        return ep_buf[0] == 0xBE and esi > pe.min and ep_buf[5:7] in (b"\xad\x50", b"\xff\x36")
    if not upack and count == 2:
        return (ep_buf[0] == 0x60 and ep_buf[1] == 0xE8 and _s32(ep_buf, 2) == 9) or (
            ep_buf[0] == 0xBE
            and esi < pe.min
            and _s32(ep_buf, 1) > _s32(_U32.pack(base), 0)
            and ep_buf[5:8] == b"\xad\x8b\xf8"
        )
    return False


def _upack(data: bytes, pe: _PeInfo, upack: bool, ep_buf: bytes, limit: int) -> bytes | None:
    """cli_scanpe's Upack block: the rebuilt image, or None to try the next packer."""
    s, base = pe.sections, pe.image_base
    if upack:
        extra, ssize, off, vma = s[2].vsz, s[0].ursz + s[0].uraw, s[0].rva, base + s[0].rva
    else:
        extra, ssize, off, vma = s[1].rva, s[1].uraw, 0, s[1].rva - s[1].uraw
    dsize = (s[0].vsz + s[1].vsz + extra) & _M32
    ssize, vma = ssize & _M32, vma & _M32
    _check_limit(limit, dsize, ssize, s[1].ursz)
    at1 = (s[1].rva - off) & _M32
    at2 = (s[2].rva - s[0].rva) & _M32 if upack else 0
    if (
        not _inside(dsize, at1, s[1].ursz)
        or (upack and not _inside(dsize, at2, ssize))
        or ssize > dsize
    ):
        return None
    dest = bytearray(dsize)
    head = data[:ssize]
    if len(head) != ssize:
        return None
    dest[:ssize] = head
    if upack:
        dest[at2 : at2 + ssize] = head
    body = data[s[1].uraw : s[1].uraw + s[1].ursz]
    if len(body) != s[1].ursz:
        return None
    dest[at1 : at1 + s[1].ursz] = body
    result = _unpack_upack.unpack(dest, upack, ep_buf[:8], vma, pe.ep, base, s[0].rva)
    if result is None:
        return None
    raw, size, entry = result
    return _rebuild(dest, [_Out(rva=s[0].rva, vsz=size, raw=raw, rsz=size)], base, entry)


# --------------------------------------------------------------------------------------------
# FSG (1.31, 1.33, 2.0): aPLib-compressed sections behind a table of destinations.


def _fsg_200(data: bytes, pe: _PeInfo, i: int, ep_buf: bytes, limit: int) -> bytes | None:
    sections, base = pe.sections, pe.image_base
    dst_sect, src_sect = sections[i], sections[i + 1]
    ssize, dsize = src_sect.rsz, dst_sect.vsz
    _check_limit(limit, dsize, ssize)
    if ssize <= 0x19 or dsize <= ssize:
        raise _Stop
    rva1, rsz1 = src_sect.rva, src_sect.rsz
    edx = (_u32(ep_buf, 2) - base) & _M32
    if not _inside_from(rva1, rsz1, edx, 4):
        return None
    src = data[src_sect.raw : src_sect.raw + ssize]
    if len(src) != ssize:
        raise _Stop
    at = edx - rva1
    if not _inside(ssize, at, 4):
        return None
    edx = (_u32(src, at) - base) & _M32
    if not _inside_from(rva1, rsz1, edx, 4):
        return None
    at = edx - rva1
    if not _inside(ssize, at, 32):
        return None
    edi = (_u32(src, at) - base) & _M32
    esi = (_u32(src, at + 4) - base) & _M32
    ebx = (_u32(src, at + 16) - base) & _M32
    if edi != dst_sect.rva or esi < rva1 or esi - rva1 >= rsz1:
        return None
    if not _inside_from(rva1, rsz1, ebx, 16):
        return None
    old_ep = (_u32(src, ebx + 12 - rva1) - base) & _M32
    dest = bytearray(dsize)
    if _unpack_aplib.decode(src[esi - rva1 :], dest, 0, dsize) is None:
        return None
    out = _rebuild(dest, [_Out(rva=edi, vsz=dsize, raw=0, rsz=dsize)], base, old_ep)
    return bytes(dest) if out is None else out


def _fsg_sections(src: bytes, dsize: int, sections: list[_Out], base: int, ep: int) -> bytes | None:
    """libclamav's unfsg_133: one aPLib stream per section, back to back."""
    dest = bytearray(dsize)
    spos = dpos = 0
    for s in sections:
        done = _unpack_aplib.decode(src[spos:], dest, dpos, dsize - dpos)
        if done is None:
            return None
        s.raw, s.rsz = dpos, done[1]
        spos += done[0]
        dpos += done[1]
    sections.sort(key=lambda s: s.rva)  # stable, like libclamav's bubble sort
    last = dsize
    for index, s in enumerate(sections):
        if index + 1 < len(sections):
            s.vsz = (sections[index + 1].rva - s.rva) & _M32
            last -= s.vsz
        else:
            s.vsz = last & _M32
    out = _rebuild(dest, sections, base, ep)
    return bytes(dest) if out is None else out


def _fsg_133(data: bytes, pe: _PeInfo, i: int, ep_buf: bytes, limit: int) -> bytes | None:
    sections, base = pe.sections, pe.image_base
    dst_sect, src_sect = sections[i], sections[i + 1]
    ssize, dsize = src_sect.rsz, dst_sect.vsz
    _check_limit(limit, dsize, ssize)
    if ssize <= 0x19 or dsize <= ssize:
        raise _Stop
    t = _rawaddr((_u32(ep_buf, 1) - base) & _M32, [], pe.fsize, pe.hdr_size)
    if t is None:
        return None
    gp = (src_sect.raw - t) & _M32
    _check_limit(limit, gp)
    support = data[t : t + gp]
    if not gp or len(support) != gp:
        raise _Stop
    if gp < 16:
        return None  # libclamav would read past the support data
    edi = (_u32(support, 4) - base) & _M32
    esi = (_u32(support, 8) - base) & _M32
    if esi < src_sect.rva or esi - src_sect.rva >= src_sect.rsz or edi != dst_sect.rva:
        return None
    rvas = [edi]
    at = 12
    while at < gp - 4:
        rva = _u32(support, at)
        if not rva:
            break
        rva = (rva - base - 1) & _M32
        rvas.append(rva)
        if rva < dst_sect.rva or rva - dst_sect.rva >= dst_sect.vsz:
            break
        at += 4
    if at >= gp - 4 or _u32(support, at):
        return None
    src = data[src_sect.raw : src_sect.raw + ssize]
    if len(src) != ssize:
        raise _Stop
    old_ep = (pe.vep + 161 + 6 + _u32(ep_buf, 163)) & _M32
    return _fsg_sections(
        src[esi - src_sect.rva :], dsize, [_Out(rva=r) for r in rvas], base, old_ep
    )


def _signed_byte(value: int) -> int:
    return value - 256 if value >= 0x80 else value


def _fsg_131(data: bytes, pe: _PeInfo, i: int, ep_buf: bytes, limit: int) -> bytes | None:
    sections, base = pe.sections, pe.image_base
    dst_sect, src_sect = sections[i], sections[i + 1]
    t = _rawaddr((_u32(ep_buf, 1) - base) & _M32, [], pe.fsize, pe.hdr_size)
    esi = (_u32(ep_buf, 11) - base) & _M32
    edi = (_u32(ep_buf, 6) - base) & _M32
    old_ep = (pe.vep - src_sect.rva) & _M32
    ssize, dsize = src_sect.rsz, dst_sect.vsz
    if t is None:
        return None
    # libclamav compares against the section's file offset here, not its size
    if esi < src_sect.rva or esi - src_sect.rva >= src_sect.raw or edi != dst_sect.rva:
        return None
    _check_limit(limit, dsize, ssize)
    if ssize <= 0x19 or dsize <= ssize:
        raise _Stop
    gp = (src_sect.raw - t) & _M32
    _check_limit(limit, gp)
    support = data[t : t + gp]
    if not gp or len(support) != gp:
        raise _Stop

    def word(at: int) -> int:
        # libclamav reads these through a signed char
        return (_signed_byte(support[at]) | (_signed_byte(support[at + 1]) << 8)) & _M32

    rvas = [edi]
    at = 0
    while gp >= 2 and at < gp - 2:
        rva = word(at)
        if rva in (1, 2):
            break
        rva = ((((rva - 2) << 12) & _M32) - base) & _M32
        rvas.append(rva)
        if rva < dst_sect.rva or rva - dst_sect.rva >= dst_sect.vsz:
            break
        at += 2
    if gp < 10 or at >= gp - 10 or _u32(support, at + 6) != 2:
        return None
    src = data[src_sect.raw : src_sect.raw + ssize]
    if len(src) != ssize:
        raise _Stop
    gp = 0xDA + 6 * (ep_buf[16] == 0xE8)
    at = (gp + 2 + old_ep) & _M32
    if not _inside(ssize, at, 4):
        return None  # libclamav would read outside the section
    old_ep = (pe.vep + gp + 6 + _u32(src, at)) & _M32
    return _fsg_sections(
        src[esi - src_sect.rva :], dsize, [_Out(rva=r) for r in rvas], base, old_ep
    )


# --------------------------------------------------------------------------------------------
# Petite 2.1/2.2: the sections loaded by RVA, unpacked in place, compacted and rebuilt.


def _petite(data: bytes, pe: _PeInfo, version: int, limit: int) -> bytes | None:
    sections = pe.sections
    dsize = (pe.max - pe.min) & _M32
    _check_limit(limit, dsize)
    image = bytearray(dsize)
    for s in sections:
        if not s.raw:
            continue
        at = (s.rva - pe.min) & _M32
        chunk = data[s.raw : s.raw + s.ursz]
        if not s.rsz or not _inside(dsize, at, s.ursz) or len(chunk) != s.ursz:
            raise _Stop
        image[at : at + s.ursz] = chunk
    used = sections[: len(sections) - (version == 1)]
    result = _unpack_petite.inflate(
        image, pe.min, [(s.rva, s.vsz) for s in used], pe.image_base, pe.vep, version
    )
    if result is None:
        return None
    unpacked, entry = result
    parts = [_Out(rva=rva, vsz=vsz, raw=raw, rsz=rsz) for rva, vsz, raw, rsz in unpacked]
    return _rebuild(image, parts, pe.image_base, entry, pe.res_rva, pe.res_size)


# --------------------------------------------------------------------------------------------
# PESpin 1.1: decryption layers over the whole file, then aPLib-compressed sections.

_PESPIN_EP = bytes.fromhex("e8000000008b1c2483c3")


def _is_pespin(pe: _PeInfo, ep_buf: bytes) -> bool:
    last = pe.sections[-1]
    end = (last.rva + last.rsz) & _M32
    return (
        len(pe.sections) > 1
        and pe.vep >= last.rva
        and 0x3217 - 4 <= end
        and pe.vep < (end - 0x3217 - 4) & _M32
        and ep_buf[4:14] == _PESPIN_EP
    )


def _pespin(data: bytes, pe: _PeInfo, limit: int) -> bytes | None:
    """libclamav's unspin: the rebuilt image, or None to try the next packer."""
    _check_limit(limit, pe.fsize)
    buf = bytearray(data)
    sections, last = pe.sections[:-1], pe.sections[-1]
    keys = _unpack_spin.decrypt(
        buf, [(s.raw, s.rsz) for s in sections], (last.raw, last.rsz, last.rva), pe.vep
    )
    if keys is None:
        return None
    compressed, resources = keys

    def flagged(bits: int, index: int) -> bool:
        return index < 32 and bool(bits >> index & 1)

    total = 0
    for index, s in enumerate(sections):
        if flagged(compressed, index):
            if total > limit or s.vsz > limit - total:
                return None  # libclamav's own MaxFileSize check: it just moves on
            total += s.vsz
    parts: list[bytes | bytearray] = []
    blobsz = 0
    for index, s in enumerate(sections):
        if flagged(compressed, index):
            if not 0 < s.vsz <= _MAX_ALLOCATION:
                return None
            grown = bytearray(s.vsz)
            if _unpack_aplib.decode(buf[s.raw : s.raw + s.rsz], grown, 0, s.vsz) is None:
                return None
            parts.append(grown)
            blobsz += s.vsz
        else:
            parts.append(buf[s.raw : s.raw + s.rsz])
            blobsz += s.rsz
    grown_mask = compressed & _M32
    index = next(
        (
            i
            for i, s in enumerate(sections)
            if s.rva <= resources and 0 < resources - s.rva <= s.rsz and resources - s.rva < s.vsz
        ),
        -1,
    )
    if resources and index >= 0 and not grown_mask & (1 << (index & 31)):
        # the resources section: its start stored, the rest compressed
        s = sections[index]
        offset = resources - s.rva
        res = bytearray(s.vsz) if s.vsz <= _MAX_ALLOCATION else None
        if res is not None:
            res[:offset] = buf[s.raw : s.raw + offset]
            window = buf[s.raw + offset : s.raw + s.rsz]
            if _unpack_aplib.decode(window, res, offset, s.vsz - offset) is None:
                res = None  # "failed to grow resources, continuing anyway"
        if res is None:
            blobsz += s.rsz
        else:
            parts[index] = res
            grown_mask |= 1 << (index & 31)
            blobsz += s.vsz
    if not 0 < blobsz <= _MAX_ALLOCATION:
        return None
    blob = bytearray()
    out = []
    for index, (s, part) in enumerate(zip(sections, parts, strict=True)):
        size = s.vsz if flagged(grown_mask, index) else s.rsz
        if len(part) < size:  # a flag aliased past 32 sections: libclamav reads on in the file
            part = buf[s.raw : s.raw + size].ljust(size, b"\0")
        out.append(_Out(rva=s.rva, vsz=s.vsz, raw=len(blob), rsz=size))
        blob += part[:size]
    return _rebuild(blob, out, 0x400000, 0x1000)


# --------------------------------------------------------------------------------------------
# yC: polymorphic byte decryptors over each section; the last (yC) section dropped.

_YC_SKIPPED_NAMES = frozenset(
    (0x63727372, 0x7273722E, 0x6F6C6572, 0x6C65722E, 0x6164652E, 0x6164722E, 0x6164692E, 0x736C742E)
)


def _yc_params(ep_buf: bytes) -> tuple[int, int]:
    """(ecx, offset) from one of the three yC 1.x entry stubs; ecx 0 when none matches."""
    ecx, offset = 0, 0
    if (
        ep_buf[:15] == bytes.fromhex("558bec535657 60e8000000005d81ed")
        and ep_buf[0x26 : 0x26 + 13] == bytes.fromhex("8d3a8bf733c0eb0490eb01c2ac")
        and ep_buf[0x13] == 0xB9
        and _u16(ep_buf, 0x18) == 0xE981
        and ep_buf[0x1E:0x22] == bytes.fromhex("8bd581c2")
    ):
        offset = 0
        if (0x6C - _u32(ep_buf, 0xF) + _u32(ep_buf, 0x22)) & _M32 == 0xC6:
            ecx = (_u32(ep_buf, 0x14) - _u32(ep_buf, 0x1A)) & _M32
    if (
        not ecx
        and ep_buf[:9] == bytes.fromhex("558bec83ec40535657")
        and ep_buf[0x17 : 0x17 + 8] == bytes.fromhex("e8000000005d81ed")
        and ep_buf[0x23] == 0xB9
    ):
        offset = 0x10
        if (0x6C - _u32(ep_buf, 0x1F) + _u32(ep_buf, 0x32)) & _M32 == 0xC6:
            ecx = (_u32(ep_buf, 0x24) - _u32(ep_buf, 0x2A)) & _M32
    if (
        not ecx
        and ep_buf[:9] == bytes.fromhex("60e8000000005d81ed")
        and ep_buf[0xD] == 0xB9
        and _u16(ep_buf, 0x12) == 0xBD8D
        and ep_buf[0x18:0x1B] == bytes.fromhex("8bf7ac")
    ):
        offset = -0x18
        if (0x66 - _u32(ep_buf, 0x9) + _u32(ep_buf, 0x14)) & _M32 == 0xAE:
            ecx = _u32(ep_buf, 0xE)
    return ecx, offset


def _yc(data: bytes, pe: _PeInfo, ecx: int, offset: int) -> bytes | None:
    """libclamav's yc_decrypt: the decryptor of the decryptors first, then every section
    but resources, relocations, exports, imports, TLS and yC's own."""
    buf = bytearray(data)
    fsize = len(buf)
    sections = pe.sections
    count = len(sections) - 1
    yc = (sections[count].raw + offset) & _M32
    if _unpack_yc.emulate(buf, fsize, yc + 0x93, yc + 0xC6, ecx, ecx):
        return None  # (libclamav also reports Heuristics.BoundsCheck for code 2)
    filesize = (fsize - sections[count].ursz) & _M32
    lfanew = pe.e_lfanew
    names = lfanew + pe.opt_size + 0x18
    decryptor = yc + (0x3EA if offset == -0x18 else 0x457)
    for i, s in enumerate(sections[:count]):
        name = _u32(buf, names + i * 0x28) if names + i * 0x28 + 4 <= fsize else 0
        if (
            not s.raw or not s.rsz or name in _YC_SKIPPED_NAMES or name & 0xFFFF == 0x4379  # "yC"
        ):
            continue
        max_emu = (filesize - s.raw) & _M32
        if max_emu > filesize:
            return None
        if _unpack_yc.emulate(buf, fsize, decryptor, s.raw, s.ursz, max_emu):
            return None
    if yc + 0xA0F + 4 > fsize or lfanew + 24 + 0x3C > fsize:
        return None  # libclamav would read or write outside the file
    struct.pack_into("<H", buf, lfanew + 6, count & 0xFFFF)
    buf[lfanew + 24 + 0x68 : lfanew + 24 + 0x70] = bytes(8)
    buf[lfanew + 24 + 16 : lfanew + 24 + 20] = buf[yc + 0xA0F : yc + 0xA13]
    _put32(buf, lfanew + 24 + 0x38, _u32(buf, lfanew + 24 + 0x38) - sections[count].vsz)
    return bytes(buf[:filesize])


# --------------------------------------------------------------------------------------------
# WWPack32: the sections laid out by RVA, blocks decompressed in place, headers patched.

_WWPACK_EP = bytes.fromhex("53558be833dbeb")
_WWPACK_EP_68 = bytes.fromhex("e800000000582d6d0000005060 33c9 5058 5050")


def _wwpack(data: bytes, pe: _PeInfo, limit: int) -> bytes | None:
    sections = pe.sections
    last = sections[-1]
    head, ssize = last.raw, 0
    for s in sections:
        head = min(head, s.raw)
        if s is last:
            break
        ssize = max(ssize, (s.rva + s.vsz) & _M32)
    if not head or not ssize or head > ssize:
        return None
    _check_limit(limit, ssize)
    image = bytearray(ssize)
    image[:head] = data[:head]
    for s in sections[:-1]:
        if not s.rsz:
            continue
        if not _inside(ssize, s.rva, s.rsz):
            return None  # "probably hacked/damaged"
        image[s.rva : s.rva + s.rsz] = data[s.raw : s.raw + s.rsz].ljust(s.rsz, b"\0")
    packer = data[last.raw : last.raw + last.rsz]
    if not last.rsz or len(packer) != last.rsz:
        raise _Stop
    if _unpack_wwpack.unpack(image, packer, last.rva):
        return None
    at = pe.e_lfanew
    if not _inside(ssize, at + 0x50, 4) or not _inside(len(packer), 0x295, 4):
        return None
    struct.pack_into("<H", image, at + 6, (len(sections) - 1) & 0xFFFF)
    _put32(image, at + 0x28, _u32(packer, 0x295) + last.rva + 0x299)
    _put32(image, at + 0x50, _u32(image, at + 0x50) - last.vsz)
    table = (_u32(image, at + 0x14) & 0xFFFF) + at + 0x18
    for s in sections[:-1]:
        if not _inside(ssize, table, 0x28):
            return None
        struct.pack_into("<IIII", image, table + 8, s.vsz, s.rva, s.vsz, s.rva)
        table += 0x28
    if not _inside(ssize, table, 0x28):
        return None
    image[table : table + 0x28] = bytes(0x28)
    return bytes(image)


# --------------------------------------------------------------------------------------------
# ASPack 2.x: the sections laid out by RVA, the stub's block table decompressed in place.

_ASPACK_EP = bytes.fromhex("60e803000000e9eb")
_ASPACK_PUSH_RET = bytes.fromhex("6800000000c3")
# (version code, where the stub's "push 0; ret" is, stub offset of the entry point's copy,
# how far past the entry point the stub's tables reach)
_ASPACK_VERSIONS = (
    (1, 0x3B9, 0x39B, 58 + 0x70E),  # 2.12
    (2, 0x41F, 0x401, 58 + 0x76A),  # after 2.12, before 2.42
    (3, 0x42B, 0x40D, 58 + 0x776),  # 2.42
)


def _aspack(data: bytes, pe: _PeInfo, ep_buf: bytes, epsize: int, limit: int) -> bytes | None:
    """cli_scanpe's ASPack block: the rebuilt image (or, as libclamav, the bare image when
    the rebuild fails), or None to try the next packer."""
    if not any(pe.ep + reach < pe.fsize for *_, reach in _ASPACK_VERSIONS):
        return None
    if ep_buf[:8] != _ASPACK_EP or epsize < 0x3BF:
        return None
    found = next(
        ((v, oep) for v, at, oep, _ in _ASPACK_VERSIONS if ep_buf[at : at + 6] == _ASPACK_PUSH_RET),
        None,
    )
    if found is None:
        return None
    version, oep_at = found
    sections = pe.sections
    ssize = max((s.rva + s.vsz) & _M32 for s in sections)
    if not ssize:
        return None
    _check_limit(limit, ssize)
    image = bytearray(ssize)
    for s in sections:
        if not s.rsz:
            continue
        chunk = data[s.raw : s.raw + s.rsz]
        if not _inside(ssize, s.rva, s.rsz) or len(chunk) != s.rsz:
            return None  # "probably hacked/damaged"
        image[s.rva : s.rva + s.rsz] = chunk
    ep = (pe.vep - 1) & _M32
    if not _unpack_aspack.decompress(image, ep, version):
        return None
    count = len(sections)
    if count > 2 and ep == sections[-2].rva and not sections[-1].rsz:
        count -= 2  # the stub's own two sections
    if ep + oep_at + 4 > ssize:
        return bytes(image)  # (libclamav would read the entry point past its buffer)
    out = [_Out(rva=s.rva, vsz=s.vsz, raw=s.rva, rsz=s.vsz) for s in sections[:count]]
    if not out:
        return bytes(image)
    rebuilt = _rebuild(image, out, pe.image_base, _u32(image, ep + oep_at))
    return bytes(image) if rebuilt is None else rebuilt


# --------------------------------------------------------------------------------------------
# The packer chain


def _unpack(data: bytes, limit: int) -> tuple[str, bytes] | None:
    try:
        return _chain(data, limit)
    except _Stop:
        return None


def _chain(data: bytes, limit: int) -> tuple[str, bytes] | None:
    """cli_scanpe's packer checks, in its order; the first unpacker that succeeds wins."""
    pe = _peinfo(data)
    if pe is None:
        return None
    sections, base = pe.sections, pe.image_base
    ep_buf = data[pe.ep : pe.ep + 4096]
    epsize = len(ep_buf)
    ep_buf = ep_buf.ljust(4096, b"\0")

    found = -1
    for i in range(len(sections) - 1):
        s, t = sections[i], sections[i + 1]
        if not s.rsz and s.vsz and t.rsz and t.vsz:
            found = i
            break

    out: bytes | None = None
    if found >= 0 and epsize >= 16 and ep_buf[0] == 0xE9:
        out = _mew(data, pe, found, ep_buf, limit)
        if out is not None:
            return "mew", out

    if epsize < 168:
        return None

    upack = pe.opt_size == 0x148
    if (found >= 0 or upack) and _is_upack(pe, ep_buf, upack):
        out = _upack(data, pe, upack, ep_buf, limit)
        if out is not None:
            return "upack", out

    if found >= 0:
        if ep_buf[0] == 0x87 and ep_buf[1] == 0x25:
            out = _fsg_200(data, pe, found, ep_buf, limit)
        if out is None and ep_buf[0] == 0xBE and (_u32(ep_buf, 1) - base) & _M32 < pe.min:
            out = _fsg_133(data, pe, found, ep_buf, limit)
        nxt = sections[found + 1]
        if (
            out is None
            and ep_buf[0] == 0xBB
            and (_u32(ep_buf, 1) - base) & _M32 < pe.min
            and ep_buf[5] == 0xBF
            and ep_buf[10] == 0xBE
            and pe.vep >= nxt.rva
            and pe.vep - nxt.rva > (nxt.rva - 0xE0) & _M32
        ):
            out = _fsg_131(data, pe, found, ep_buf, limit)
        if out is not None:
            return "fsg", out
        out = _upx(data, pe, found, ep_buf, limit)
        if out is not None:
            return "upx", out

    if epsize < 200:
        return None
    last = sections[-1]
    version = 0
    if ep_buf[0] == 0xB8:
        target = _u32(ep_buf, 1)
        if target == (last.rva + base) & _M32:
            version = 2
        elif len(sections) >= 2 and target == (sections[-2].rva + base) & _M32:
            version = 1
    if version and _u32(ep_buf, 0x80) != 0x163C988D:  # level 0 is not supported
        out = _petite(data, pe, version, limit)
        if out is not None:
            return "petite", out
    if _is_pespin(pe, ep_buf):
        out = _pespin(data, pe, limit)
        if out is not None:
            return "pespin", out
    if len(sections) > 1 and pe.vep == (last.rva + 0x60) & _M32:
        ecx, offset = _yc_params(ep_buf)
        if (
            0x800 < ecx < 0x2000
            and ep_buf[0x63 + offset : 0x66 + offset] == b"\xaa\xe2\xcc"
            and pe.fsize >= last.raw + 0xC6 + ecx + offset
        ):
            out = _yc(data, pe, ecx, offset)
            if out is not None:
                return "yc", out
    if (
        len(sections) > 1
        and pe.vep == last.rva
        and ep_buf[:7] == _WWPACK_EP
        and ep_buf[0x68 : 0x68 + 19] == _WWPACK_EP_68
    ):
        out = _wwpack(data, pe, limit)
        if out is not None:
            return "wwpack", out
    out = _aspack(data, pe, ep_buf, epsize, limit)
    if out is not None:
        return "aspack", out
    return None


def unpack_pe(data: bytes, limit: int) -> Iterator[Child]:
    """The rebuilt image of a packed 32-bit PE (one child), or nothing.

    Unpacking runs after the PE's own raw scan, as in libclamav. When an unpacker would
    need more than ``limit`` bytes, libclamav skips it (reporting the MaxFileSize limit
    when asked to): an empty child flagged ``oversized`` says so. Never raises.
    """
    try:
        result = _unpack(data, limit)
    except _TooBig:
        yield Child("unpacked", b"", oversized=True)
        return
    except Exception as exc:  # noqa: BLE001 - a hostile file must never break the scan
        log.debug("pe unpack: %s", exc)
        return
    if result is None:
        return
    name, out = result
    yield Child(name, out[:limit], len(out) > limit)
