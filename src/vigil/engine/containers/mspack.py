"""Microsoft formats read through libmspack (Debian's libmspack0, which libclamav uses too):
CAB (stored, MSZIP, Quantum, LZX), CHM and SZDD.

libmspack is driven by ctypes through its public ABI (``mspack.h``): decompressor objects
are structs of function pointers. It reads and writes through an ``mspack_system`` of
I/O callbacks; the one here is memory-backed, so nothing touches the disk: the input is
read straight from the ``bytes`` given and each member is written to a buffer that keeps
at most ``limit + 1`` bytes. The bytes libmspack decodes only to throw away (the rest of
members over the limit, the way to later members) are budgeted per container. Settings
follow libclamav's (FIXMSZIP and SALVAGE on, so damaged cabinets give what can be read).
If the shared library is missing, the unpackers log one notice and yield nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from vigil.engine.containers.child import Child
from vigil.engine.filetype import FileType

__all__ = ["MAX_MEMBERS", "MAX_SKIP", "MIN_SKIP", "UNPACKERS"]

log = logging.getLogger(__name__)

# Members yielded per container at most (a CAB holds at most 65535 files by format).
MAX_MEMBERS = 1 << 16
# Bytes that libmspack may decode and throw away per container to reach the members
# extracted (past members too large to extract, or back from the start of a CAB folder
# when members go backwards): 4 x the limit, within these bounds (MSZIP/LZX decode at
# about 0.5 GiB/s), after which the rest of the container is abandoned.
MIN_SKIP = 64 << 20
MAX_SKIP = 1 << 30

_OFF_T = ctypes.c_int64  # off_t on LP64 Linux; checked by mspack_sys_selftest_internal
_ERR_OK = 0
_OPEN_READ = 0
_OPEN_WRITE = 1
_SEEK_START, _SEEK_CUR, _SEEK_END = 0, 1, 2
_CABD_PARAM_FIXMSZIP = 1
_CABD_PARAM_SALVAGE = 3
_INPUT_NAME = b"\x01vigil-input"  # names are opaque to libmspack: passed back to open()
_OUTPUT_NAME = b"\x01vigil-output"

# --- struct mspack_system -------------------------------------------------------------

_OPEN = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int)
_CLOSE = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_READ = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)
_WRITE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)
_SEEK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, _OFF_T, ctypes.c_int)
_TELL = ctypes.CFUNCTYPE(_OFF_T, ctypes.c_void_p)
# message(file, format, ...) is variadic: the callback takes the two named arguments and
# ignores the rest, which the SysV x86-64 and AAPCS64 calling conventions allow.
_MESSAGE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p)


class _System(ctypes.Structure):
    _fields_ = [
        ("open", _OPEN),
        ("close", _CLOSE),
        ("read", _READ),
        ("write", _WRITE),
        ("seek", _SEEK),
        ("tell", _TELL),
        ("message", _MESSAGE),
        ("alloc", ctypes.c_void_p),  # taken from mspack_default_system (malloc, free,
        ("free", ctypes.c_void_p),  # and a memcpy with the arguments swapped)
        ("copy", ctypes.c_void_p),
        ("null_ptr", ctypes.c_void_p),
    ]


# --- CAB -------------------------------------------------------------------------------


class _CabFolder(ctypes.Structure):
    pass


_CabFolder._fields_ = [
    ("next", ctypes.POINTER(_CabFolder)),
    ("comp_type", ctypes.c_int),
    ("num_blocks", ctypes.c_uint),
]


class _CabFile(ctypes.Structure):
    pass


_CabFile._fields_ = [
    ("next", ctypes.POINTER(_CabFile)),
    ("filename", ctypes.c_char_p),
    ("length", ctypes.c_uint),
    ("attribs", ctypes.c_int),
    ("time_h", ctypes.c_char),
    ("time_m", ctypes.c_char),
    ("time_s", ctypes.c_char),
    ("date_d", ctypes.c_char),
    ("date_m", ctypes.c_char),
    ("date_y", ctypes.c_int),
    ("folder", ctypes.c_void_p),
    ("offset", ctypes.c_uint),
]


class _Cabinet(ctypes.Structure):
    pass


_Cabinet._fields_ = [
    ("next", ctypes.POINTER(_Cabinet)),
    ("filename", ctypes.c_char_p),
    ("base_offset", _OFF_T),
    ("length", ctypes.c_uint),
    ("prevcab", ctypes.POINTER(_Cabinet)),
    ("nextcab", ctypes.POINTER(_Cabinet)),
    ("prevname", ctypes.c_char_p),
    ("nextname", ctypes.c_char_p),
    ("previnfo", ctypes.c_char_p),
    ("nextinfo", ctypes.c_char_p),
    ("files", ctypes.POINTER(_CabFile)),
    ("folders", ctypes.POINTER(_CabFolder)),
    ("set_id", ctypes.c_ushort),
    ("set_index", ctypes.c_ushort),
    ("header_resv", ctypes.c_ushort),
    ("flags", ctypes.c_int),
]


class _CabD(ctypes.Structure):
    pass


_P_CABD = ctypes.POINTER(_CabD)
_P_CAB = ctypes.POINTER(_Cabinet)
_CabD._fields_ = [
    ("open", ctypes.CFUNCTYPE(_P_CAB, _P_CABD, ctypes.c_char_p)),
    ("close", ctypes.CFUNCTYPE(None, _P_CABD, _P_CAB)),
    ("search", ctypes.CFUNCTYPE(_P_CAB, _P_CABD, ctypes.c_char_p)),
    ("append", ctypes.CFUNCTYPE(ctypes.c_int, _P_CABD, _P_CAB, _P_CAB)),
    ("prepend", ctypes.CFUNCTYPE(ctypes.c_int, _P_CABD, _P_CAB, _P_CAB)),
    (
        "extract",
        ctypes.CFUNCTYPE(ctypes.c_int, _P_CABD, ctypes.POINTER(_CabFile), ctypes.c_char_p),
    ),
    ("set_param", ctypes.CFUNCTYPE(ctypes.c_int, _P_CABD, ctypes.c_int, ctypes.c_int)),
    ("last_error", ctypes.CFUNCTYPE(ctypes.c_int, _P_CABD)),
]

# --- CHM -------------------------------------------------------------------------------


class _ChmSection(ctypes.Structure):
    _fields_ = [("chm", ctypes.c_void_p), ("id", ctypes.c_uint)]


class _ChmSecUncompressed(ctypes.Structure):
    _fields_ = [("base", _ChmSection), ("offset", _OFF_T)]


class _ChmSecCompressed(ctypes.Structure):
    _fields_ = [
        ("base", _ChmSection),
        ("content", ctypes.c_void_p),
        ("control", ctypes.c_void_p),
        ("rtable", ctypes.c_void_p),
        ("spaninfo", ctypes.c_void_p),
    ]


class _ChmFile(ctypes.Structure):
    pass


_ChmFile._fields_ = [
    ("next", ctypes.POINTER(_ChmFile)),
    ("section", ctypes.POINTER(_ChmSection)),
    ("offset", _OFF_T),
    ("length", _OFF_T),
    ("filename", ctypes.c_char_p),
]


class _ChmHeader(ctypes.Structure):
    _fields_ = [
        ("version", ctypes.c_uint),
        ("timestamp", ctypes.c_uint),
        ("language", ctypes.c_uint),
        ("filename", ctypes.c_char_p),
        ("length", _OFF_T),
        ("files", ctypes.POINTER(_ChmFile)),
        ("sysfiles", ctypes.POINTER(_ChmFile)),
        ("sec0", _ChmSecUncompressed),
        ("sec1", _ChmSecCompressed),
        ("dir_offset", _OFF_T),
        ("num_chunks", ctypes.c_uint),
        ("chunk_size", ctypes.c_uint),
        ("density", ctypes.c_uint),
        ("depth", ctypes.c_uint),
        ("index_root", ctypes.c_uint),
        ("first_pmgl", ctypes.c_uint),
        ("last_pmgl", ctypes.c_uint),
        ("chunk_cache", ctypes.c_void_p),
    ]


class _ChmD(ctypes.Structure):
    pass


_P_CHMD = ctypes.POINTER(_ChmD)
_P_CHM = ctypes.POINTER(_ChmHeader)
_ChmD._fields_ = [
    ("open", ctypes.CFUNCTYPE(_P_CHM, _P_CHMD, ctypes.c_char_p)),
    ("close", ctypes.CFUNCTYPE(None, _P_CHMD, _P_CHM)),
    (
        "extract",
        ctypes.CFUNCTYPE(ctypes.c_int, _P_CHMD, ctypes.POINTER(_ChmFile), ctypes.c_char_p),
    ),
    ("last_error", ctypes.CFUNCTYPE(ctypes.c_int, _P_CHMD)),
    ("fast_open", ctypes.CFUNCTYPE(_P_CHM, _P_CHMD, ctypes.c_char_p)),
    (
        "fast_find",
        ctypes.CFUNCTYPE(
            ctypes.c_int,
            _P_CHMD,
            _P_CHM,
            ctypes.c_char_p,
            ctypes.POINTER(_ChmFile),
            ctypes.c_int,
        ),
    ),
]

# --- SZDD ------------------------------------------------------------------------------


class _SzddHeader(ctypes.Structure):
    _fields_ = [("format", ctypes.c_int), ("length", _OFF_T), ("missing_char", ctypes.c_char)]


class _SzddD(ctypes.Structure):
    pass


_P_SZDDD = ctypes.POINTER(_SzddD)
_P_SZDD = ctypes.POINTER(_SzddHeader)
_SzddD._fields_ = [
    ("open", ctypes.CFUNCTYPE(_P_SZDD, _P_SZDDD, ctypes.c_char_p)),
    ("close", ctypes.CFUNCTYPE(None, _P_SZDDD, _P_SZDD)),
    ("extract", ctypes.CFUNCTYPE(ctypes.c_int, _P_SZDDD, _P_SZDD, ctypes.c_char_p)),
    ("decompress", ctypes.CFUNCTYPE(ctypes.c_int, _P_SZDDD, ctypes.c_char_p, ctypes.c_char_p)),
    ("last_error", ctypes.CFUNCTYPE(ctypes.c_int, _P_SZDDD)),
]

# --- loading ---------------------------------------------------------------------------


class _Lib:
    """libmspack's entry points and the C allocator functions of its default system."""

    def __init__(self, dll: ctypes.CDLL) -> None:
        self.dll = dll
        for kind, struct in (("cab", _CabD), ("chm", _ChmD), ("szdd", _SzddD)):
            create = getattr(dll, f"mspack_create_{kind}_decompressor")
            create.argtypes = [ctypes.POINTER(_System)]
            create.restype = ctypes.POINTER(struct)
            destroy = getattr(dll, f"mspack_destroy_{kind}_decompressor")
            destroy.argtypes = [ctypes.POINTER(struct)]
            destroy.restype = None
        selftest = dll.mspack_sys_selftest_internal
        selftest.argtypes = [ctypes.c_int]
        selftest.restype = ctypes.c_int
        if selftest(ctypes.sizeof(_OFF_T)) != _ERR_OK:
            raise OSError("libmspack was built with another off_t size")
        default = ctypes.POINTER(_System).in_dll(dll, "mspack_default_system")
        if not default:
            raise OSError("libmspack has no default system")
        self.alloc = default.contents.alloc
        self.free = default.contents.free
        self.copy = default.contents.copy
        if not (self.alloc and self.free and self.copy):
            raise OSError("libmspack's default system is incomplete")


_loaded: _Lib | None = None
_load_failed = False
_load_lock = threading.Lock()


def _lib() -> _Lib | None:
    """libmspack, loaded once; None (with one logged notice) when it is absent."""
    global _loaded, _load_failed
    if _loaded is not None or _load_failed:
        return _loaded
    with _load_lock:
        if _loaded is None and not _load_failed:
            try:
                path = ctypes.util.find_library("mspack") or "libmspack.so.0"
                _loaded = _Lib(ctypes.CDLL(path))
            except (OSError, AttributeError, ValueError) as exc:
                _load_failed = True
                log.warning("libmspack is unavailable (%s): CAB/CHM/SZDD not unpacked", exc)
    return _loaded


# --- the memory-backed mspack_system -------------------------------------------------


class _Handle:
    __slots__ = ("token", "reading", "pos")

    def __init__(self, reading: bool) -> None:
        self.token = ctypes.c_long(0)  # its address is the mspack_file pointer
        self.reading = reading
        self.pos = 0


class _MemorySystem:
    """An mspack_system over one input buffer and one output sink.

    Reads copy from ``data`` (no copy of the whole input is made); writes keep at most
    ``cap`` bytes of the current member and count the rest (failing past the cap with
    ``abort`` set, which stops libmspack: for SZDD, which expands until the input ends).
    """

    def __init__(self, lib: _Lib, data: bytes) -> None:
        self.data = data
        self.base = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value or 0
        self.handles: dict[int, _Handle] = {}
        self.out = bytearray()
        self.written = 0
        self.cap = 0
        self.abort = False
        self.struct = _System(
            _OPEN(self._open),
            _CLOSE(self._close),
            _READ(self._read),
            _WRITE(self._write),
            _SEEK(self._seek),
            _TELL(self._tell),
            _MESSAGE(self._message),
            lib.alloc,
            lib.free,
            lib.copy,
            None,
        )

    def start_member(self, cap: int, abort: bool) -> None:
        self.out = bytearray()
        self.written = 0
        self.cap = cap
        self.abort = abort

    # Each callback runs inside libmspack: it must not raise, so errors become the
    # failure value the library expects.

    def _open(self, _self: int | None, name: bytes | None, mode: int) -> int | None:
        try:
            if name == _INPUT_NAME and mode == _OPEN_READ:
                handle = _Handle(True)
            elif name == _OUTPUT_NAME and mode == _OPEN_WRITE:
                handle = _Handle(False)
            else:
                return None
            address = ctypes.addressof(handle.token)
            self.handles[address] = handle
            return address
        except Exception:  # pragma: no cover - defensive
            return None

    def _close(self, file: int | None) -> None:
        if file is not None:
            self.handles.pop(file, None)

    def _read(self, file: int | None, buffer: int | None, size: int) -> int:
        try:
            handle = self.handles.get(file or 0)
            if handle is None or not handle.reading or buffer is None or size < 0:
                return -1
            n = min(size, len(self.data) - handle.pos)
            if n <= 0:
                return 0
            ctypes.memmove(buffer, self.base + handle.pos, n)
            handle.pos += n
            return n
        except Exception:  # pragma: no cover - defensive
            return -1

    def _write(self, file: int | None, buffer: int | None, size: int) -> int:
        try:
            handle = self.handles.get(file or 0)
            if handle is None or handle.reading or buffer is None or size < 0:
                return -1
            room = self.cap - len(self.out)
            if room > 0:
                self.out += ctypes.string_at(buffer, min(room, size))
            self.written += size
            if self.abort and self.written > self.cap:
                return -1
            return size
        except Exception:  # pragma: no cover - defensive
            return -1

    def _seek(self, file: int | None, offset: int, mode: int) -> int:
        try:
            handle = self.handles.get(file or 0)
            if handle is None or not handle.reading:
                return -1
            if mode == _SEEK_START:
                pos = offset
            elif mode == _SEEK_CUR:
                pos = handle.pos + offset
            elif mode == _SEEK_END:
                pos = len(self.data) + offset
            else:
                return -1
            if not 0 <= pos <= len(self.data):
                return -1
            handle.pos = pos
            return 0
        except Exception:  # pragma: no cover - defensive
            return -1

    def _tell(self, file: int | None) -> int:
        handle = self.handles.get(file or 0)
        if handle is None:
            return -1
        return handle.pos if handle.reading else self.written

    def _message(self, _file: int | None, fmt: bytes | None) -> None:
        try:
            log.debug("libmspack: %s", (fmt or b"").decode("latin-1"))
        except Exception:  # pragma: no cover - defensive
            pass


def _name(raw: bytes | None) -> str:
    # Raw bytes kept (surrogateescape): .cdb name regexes match libclamav's raw names.
    return (raw or b"").decode("utf-8", "surrogateescape")


def _skip_budget(limit: int) -> int:
    return min(MAX_SKIP, max(4 * limit, MIN_SKIP))


class _Item(NamedTuple):
    """A member to extract; ``stream`` names the decoder state it shares (None: none)."""

    name: str
    length: int
    stream: object
    offset: int
    node: Any  # the library's file struct pointer, passed back to extract()


def _extract_all(
    system: _MemorySystem,
    items: list[_Item],
    extract: Callable[[Any], int],
    limit: int,
    what: str,
) -> Iterator[Child]:
    """Extract the members in order, each cut at ``limit + 1`` bytes kept.

    A member's decoder state carries on to the next member of its stream (a CAB folder,
    a CHM's LZX section), so decoding normally goes on to each member's end. Bytes
    decoded only to be thrown away (the rest of a member over the limit; reaching a
    member past ones not extracted, or back from the stream's start) are budgeted: an
    oversized member that would overspend is yielded empty, undecoded; an in-limit one
    ends the container. The last member of a stream stops decoding at the cut.
    """
    left = _skip_budget(limit)
    last_use = {item.stream: i for i, item in enumerate(items) if item.stream is not None}
    stream: object = None
    pos = 0
    for i, item in enumerate(items):
        oversized = item.length > limit
        gap = 0
        if item.stream is not None:
            gap = item.offset - pos if item.stream == stream and item.offset >= pos else item.offset
        can_stop = item.stream is None or last_use[item.stream] == i
        cost = gap + (item.length - limit if oversized and not can_stop else 0)
        if cost > left:
            if oversized:
                yield Child(item.name, b"", True, compressed=0, real=item.length)
                continue
            log.debug("%s: decoding up to the next member is over budget", what)
            return
        left -= cost
        system.start_member(limit + 1, abort=can_stop)
        err = extract(item.node)
        if err != _ERR_OK and system.written <= limit:
            log.debug("%s: extract error %d", what, err)
        longer = len(system.out) > limit
        with memoryview(system.out) as view:
            out = bytes(view[:limit])
        system.out = bytearray()
        yield Child(item.name, out, oversized or longer, 0, item.length)
        if item.stream is not None:
            stream, pos = item.stream, item.offset + item.length


def _cab(data: bytes, limit: int) -> Iterator[Child]:
    """Files of a cabinet that starts at ``data[0]`` ("MSCF"); trailing bytes are ignored.

    Members over the limit give their first ``limit`` bytes (libclamav scans that much of
    them). ``compressed`` is 0, as libclamav passes it to .cdb matching for CAB members.
    """
    lib = _lib()
    if lib is None or len(data) < 36:
        return
    system = _MemorySystem(lib, data)
    decomp = lib.dll.mspack_create_cab_decompressor(ctypes.byref(system.struct))
    if not decomp:
        return
    try:
        d = decomp.contents
        d.set_param(decomp, _CABD_PARAM_FIXMSZIP, 1)
        d.set_param(decomp, _CABD_PARAM_SALVAGE, 1)
        cab = d.open(decomp, _INPUT_NAME)
        if not cab:
            log.debug("cab: open failed (%d)", d.last_error(decomp))
            return
        try:
            items: list[_Item] = []
            node = cab.contents.files
            while node and len(items) < MAX_MEMBERS:
                info = node.contents
                name = _name(info.filename)
                items.append(_Item(name, info.length, info.folder, info.offset, node))
                node = info.next
            yield from _extract_all(
                system, items, lambda f: int(d.extract(decomp, f, _OUTPUT_NAME)), limit, "cab"
            )
        finally:
            d.close(decomp, cab)
    except Exception as exc:  # pragma: no cover - defensive
        log.debug("cab: %s", exc)
    finally:
        lib.dll.mspack_destroy_cab_decompressor(decomp)


def _chm(data: bytes, limit: int) -> Iterator[Child]:
    """The files of a CHM help file (not the ``::`` system files, as libclamav).

    The uncompressed members come first, then the LZX-compressed ones in offset order
    (libclamav goes in name order): the shared decoder then only moves forward, where in
    name order a crafted file could make it decode the content again for every member.
    Members over the limit give their first ``limit`` bytes; ``compressed`` is 0.
    """
    lib = _lib()
    if lib is None or len(data) < 0x60:
        return
    system = _MemorySystem(lib, data)
    decomp = lib.dll.mspack_create_chm_decompressor(ctypes.byref(system.struct))
    if not decomp:
        return
    try:
        d = decomp.contents
        chm = d.open(decomp, _INPUT_NAME)
        if not chm:
            log.debug("chm: open failed (%d)", d.last_error(decomp))
            return
        try:
            items: list[_Item] = []
            node = chm.contents.files
            while node and len(items) < MAX_MEMBERS:
                info = node.contents
                lzx = bool(info.section) and info.section.contents.id == 1
                name = _name(info.filename)
                items.append(_Item(name, info.length, 1 if lzx else None, info.offset, node))
                node = info.next
            items.sort(key=lambda item: (item.stream is not None, item.offset))
            yield from _extract_all(
                system, items, lambda f: int(d.extract(decomp, f, _OUTPUT_NAME)), limit, "chm"
            )
        finally:
            d.close(decomp, chm)
    except Exception as exc:  # pragma: no cover - defensive
        log.debug("chm: %s", exc)
    finally:
        lib.dll.mspack_destroy_chm_decompressor(decomp)


def _szdd(data: bytes, limit: int) -> Iterator[Child]:
    """The one file of an SZDD ("SZDD\\x88\\xf0\\x27\\x33") or QBasic SZDD archive."""
    lib = _lib()
    if lib is None or len(data) < 12:
        return
    system = _MemorySystem(lib, data)
    decomp = lib.dll.mspack_create_szdd_decompressor(ctypes.byref(system.struct))
    if not decomp:
        return
    try:
        d = decomp.contents
        header = d.open(decomp, _INPUT_NAME)
        if not header:
            log.debug("szdd: open failed (%d)", d.last_error(decomp))
            return
        try:
            length = max(header.contents.length, 0)
            if length > limit:  # not decoded, as libclamav skips it
                yield Child("szdd", b"", True, real=length)
                return
            # libmspack expands until the input ends: the output stops at the size the
            # header declares (bytes after the stream are not part of the file).
            system.start_member(length, abort=True)
            err = d.extract(decomp, header, _OUTPUT_NAME)
            if err != _ERR_OK and system.written <= length:
                log.debug("szdd: extract error %d", err)
            yield Child("szdd", bytes(system.out), real=length)
        finally:
            d.close(decomp, header)
    except Exception as exc:  # pragma: no cover - defensive
        log.debug("szdd: %s", exc)
    finally:
        lib.dll.mspack_destroy_szdd_decompressor(decomp)


UNPACKERS: dict[FileType, Callable[[bytes, int], Iterator[Child]]] = {
    FileType.MSCAB: _cab,
    FileType.MSCHM: _chm,
    FileType.MSSZDD: _szdd,
}
