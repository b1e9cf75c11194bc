"""Fuzz target: the C extensions in vigil.native, through the entry points their .pyi
stubs list (decoders, decompressors and the in-place PE unpackers).

The first byte picks the entry point; numbers come from the next bytes, biased towards the
values that break bounds checks (0, 1, the buffer's length and one either side, large
values); the rest is the buffer. A C function must refuse bad arguments with ValueError
(or OverflowError from argument conversion), never crash or raise anything else. Coverage
inside C is not instrumented (the modules are built without -fsanitize=fuzzer), so this
target relies on the seeds and the mutations around them.
"""

from __future__ import annotations

import os

from _harness import Input, instrumented, main, traced

_ASAN = os.environ.get("VIGIL_FUZZ_NATIVE_DIR")
if _ASAN:  # modules rebuilt with AddressSanitizer (scripts/fuzz --asan) shadow the normal ones
    import vigil.native

    vigil.native.__path__.insert(0, _ASAN)

with instrumented(__name__):
    from vigil.native import (
        _arj,
        _autoit,
        _explode,
        _lzw,
        _nrv,
        _nsis,
        _office,
        _unpack_aplib,
        _unpack_aspack,
        _unpack_mew,
        _unpack_petite,
        _unpack_spin,
        _unpack_upack,
        _unpack_wwpack,
        _unpack_yc,
    )

PARAM_BYTES = 32
CAP = 1 << 20  # output limits stay under 1 MiB so a decoder cannot exhaust the fuzzer's RSS
KEYWORDS = (b"While", b"WEnd", b"If", b"Then", b"Else", b"EndIf", b"Func", b"EndFunc")
FUNCTIONS = (b"MsgBox", b"Run", b"FileWrite", b"StringLen")


class Args:
    """Numbers for one call, relative to the buffer they will index; they come from a
    fixed block of the input, so the buffer (the rest) can be cut before they are drawn."""

    def __init__(self, src: Input) -> None:
        self.src = Input(src.take(PARAM_BYTES))

    def num(self, size: int, *, signed: bool = False, bits: int = 32) -> int:
        kind = self.src.byte() % 10
        if kind == 0:
            return 0
        if kind == 1:
            return 1
        if kind == 2:
            return size
        if kind == 3:
            return max(0, size - 1)
        if kind == 4:
            return size + 1
        if kind == 5:
            return -1 if signed else (1 << bits) - 1
        if kind == 6:
            return self.src.int(1)
        if kind == 7:
            return self.src.int(2)
        if kind == 8:
            return self.src.int(4) % (1 << bits) - (1 << (bits - 1) if signed else 0)
        return self.src.int(2) % (size + 1)

    def cap(self) -> int:
        return self.src.int(3) % CAP

    def byte(self) -> int:
        return self.src.byte()


def _call(which: int, src: Input) -> None:
    a = Args(src)
    if which == 0:
        method, size, limit = a.byte() % 8, a.cap(), a.cap()
        _arj.decode(src.rest(), method, size, limit)
    elif which == 1:
        _autoit.decrypt_ea05(src.take(4096), a.src.int(4))
    elif which == 2:
        _autoit.decrypt_ea06(src.take(4096), a.src.int(4))
    elif which == 3:
        version, usize, cap = 5 + (a.byte() & 1), a.cap(), a.cap()
        _autoit.decompress(src.rest(), version, usize, cap)
    elif which == 4:
        _autoit.detokenise(src.rest(), a.cap(), KEYWORDS, FUNCTIONS)
    elif which == 5:
        flags, size, limit = a.src.int(4), a.cap(), a.cap()
        _explode.explode(src.rest(), flags, size, limit)
    elif which == 6:
        early, limit = bool(a.byte() & 1), a.cap()
        _lzw.lzw_decode(src.rest(), early, limit)
    elif which == 7:
        _lzw.rl_decode(src.rest(), a.cap())
    elif which in (8, 9, 10):
        dst = bytearray(a.src.int(2) % 65536)
        dsize = a.num(len(dst), signed=True, bits=64)
        fn = (_nrv.nrv2b, _nrv.nrv2d, _nrv.nrv2e)[which - 8]
        fn(src.rest(), dst, dsize)
    elif which in (11, 12, 13):
        dst = src.rest()
        dsize = a.num(len(dst), signed=True, bits=64)
        at = a.num(len(dst), signed=True, bits=64)
        if which == 11:
            _nrv.upx_header_after_imports(dst, dsize, at)
        elif which == 12:
            _nrv.upx_find_header(dst, dsize, at)
        else:
            _nrv.upx_check_header(dst, dsize, at)
    elif which == 14:
        kind = ("deflate", "bzip2")[a.byte() & 1]
        n = a.cap() + 1
        stream = _nsis.Stream(src.rest(), kind)
        for _ in range(64):
            if not stream.read(n) or stream.eof or stream.failed:
                break
    elif which == 15:
        data = src.rest()
        _office.ovba_decompress(data, a.num(len(data), signed=True, bits=64), a.cap())
    elif which == 16:
        _office.vba_normalize(src.rest(), a.cap())
    elif which == 17:
        dst = bytearray(a.src.int(2) % 65536)
        doff = a.num(len(dst), signed=True, bits=64)
        dsize = a.num(len(dst), signed=True, bits=64)
        _unpack_aplib.decode(src.rest(), dst, doff, dsize)
    elif which == 18:
        ep, version = a.num(0x10000), a.byte() % 4
        image = bytearray(src.rest())
        _unpack_aspack.decompress(image, ep % len(image) if image and ep else ep, version)
    elif which == 19:
        image = bytearray(src.rest())
        n = len(image)
        _unpack_mew.unpack(image, a.num(n), a.num(n), a.num(n), a.num(n), a.num(n), a.byte() & 1)
    elif which == 20:
        image = bytearray(src.rest())
        n = len(image)
        sections = [(a.num(n), a.num(n)) for _ in range(a.byte() % 4)]
        _unpack_petite.inflate(image, a.num(n), sections, a.num(n), a.num(n), a.byte() % 3)
    elif which == 21:
        n_sections = a.byte() % 4
        image = bytearray(src.rest())
        n = len(image)
        sections = [(a.num(n), a.num(n)) for _ in range(n_sections)]
        _unpack_spin.decrypt(image, sections, (a.num(n), a.num(n), a.num(n)), a.num(n))
    elif which == 22:
        upack, ep_bytes = bool(a.byte() & 1), a.src.take(8)
        image = bytearray(src.rest())
        n = len(image)
        _unpack_upack.unpack(image, upack, ep_bytes, a.num(n), a.num(n), a.num(n), a.num(n))
    elif which == 23:
        packer = src.take(a.byte() * 4)
        image = bytearray(src.rest())
        _unpack_wwpack.unpack(image, packer, a.num(len(image)))
    else:
        image = bytearray(src.rest())
        n = len(image)
        _unpack_yc.emulate(
            image, a.num(n), a.num(n, signed=True, bits=64), a.num(n, signed=True, bits=64),
            a.num(n), a.num(0x1000),
        )  # fmt: skip


ENTRY_POINTS = 25
_call = traced(__name__, _call)


def TestOneInput(data: bytes) -> None:
    src = Input(data)
    which = src.byte() % ENTRY_POINTS
    try:
        _call(which, src)
    except (ValueError, OverflowError):
        pass


if __name__ == "__main__":
    main(TestOneInput)
