"""Archives read through libarchive: 7z, RAR (v2-v5), ISO 9660 (with Joliet), XAR, LHA;
plus Unix ``ar`` members (pure struct) and zstd streams (libarchive's zstd filter).

libarchive (Debian's libarchive13, through the ``libarchive-c`` ctypes binding) reads the
archive straight from memory; each member is streamed in blocks and cut at ``limit + 1``
bytes. A member whose declared size is over the limit is not decoded (libclamav skips
those too) and comes out ``oversized`` and empty. libarchive decodes solid 7z/RAR blocks
as it goes, so skipping a member still costs CPU, and the LZMA dictionary fills as far as
the bytes decoded: :data:`MAX_SKIP` bounds that work per archive. Encrypted members are
yielded empty with ``encrypted=True``; an archive whose member list is encrypted yields
one such placeholder, nameless. If the shared library is missing, the unpackers log one
notice and yield nothing.
"""

from __future__ import annotations

import ctypes
import dataclasses
import importlib
import logging
import struct
import threading
from collections.abc import Callable, Iterator
from types import ModuleType

from vigil.engine.containers.child import Child
from vigil.engine.filetype import FileType

__all__ = ["MAX_ENTRIES", "MAX_SKIP", "MIN_SKIP", "UNPACKERS", "ar_members", "zstd_stream"]

log = logging.getLogger(__name__)
# libarchive-c logs the library's own warnings (bad CRCs of hostile files ...) at WARNING on
# this logger; they are ours to judge, so they never reach the user's terminal or log.
_libarchive_log = logging.getLogger("libarchive")
_libarchive_log.addHandler(logging.NullHandler())
_libarchive_log.propagate = False

# Entries looked at per archive (directories included), whatever the archive claims.
MAX_ENTRIES = 1 << 16
# Uncompressed bytes that libarchive may decode and throw away per 7z/RAR archive (skipping
# members not read: in a solid block that means decoding them) before the archive is
# abandoned: 4 x the limit, within these bounds (about 2 s of LZMA per GiB, and the
# decoder's dictionary grows up to the bytes decoded).
MIN_SKIP = 64 << 20
MAX_SKIP = 1 << 30
_BLOCK = 1 << 16

_ARCHIVE_OK = 0
_ARCHIVE_EOF = 1
_ARCHIVE_WARN = -20
_ARCHIVE_FATAL = -30
_AE_IFREG = 0o100000
_AE_IFMT = 0o170000

# 7z: the AES-256 + SHA-256 coder id, found in the encoded header of a -mhe archive.
_7Z_MAGIC = b"7z\xbc\xaf\x27\x1c"
_7Z_AES = b"\x06\xf1\x07\x01"
_RAR4_MAGIC = b"Rar!\x1a\x07\x00"
_RAR5_MAGIC = b"Rar!\x1a\x07\x01\x00"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class _Lib:
    """The loaded binding: libarchive-c's ffi module and the raw shared library."""

    def __init__(self, ffi: ModuleType) -> None:
        self.ffi = ffi
        raw = ffi.libarchive
        for name, argtypes, restype in (
            ("archive_entry_is_data_encrypted", [ctypes.c_void_p], ctypes.c_int),
            ("archive_entry_is_metadata_encrypted", [ctypes.c_void_p], ctypes.c_int),
            ("archive_read_has_encrypted_entries", [ctypes.c_void_p], ctypes.c_int),
            ("archive_entry_pathname_utf8", [ctypes.c_void_p], ctypes.c_char_p),
            ("archive_entry_pathname", [ctypes.c_void_p], ctypes.c_char_p),
            ("archive_entry_size_is_set", [ctypes.c_void_p], ctypes.c_int),
            ("archive_entry_size", [ctypes.c_void_p], ctypes.c_int64),
            ("archive_entry_filetype", [ctypes.c_void_p], ctypes.c_uint),
            ("archive_read_set_options", [ctypes.c_void_p, ctypes.c_char_p], ctypes.c_int),
        ):
            fn = getattr(raw, name)
            fn.argtypes = argtypes
            fn.restype = restype
        self.raw = raw


_loaded: _Lib | None = None
_load_failed = False
_load_lock = threading.Lock()


def _lib() -> _Lib | None:
    """The binding, loaded once; None (with one logged notice) when libarchive is absent."""
    global _loaded, _load_failed
    if _loaded is not None or _load_failed:
        return _loaded
    with _load_lock:
        if _loaded is None and not _load_failed:
            try:
                _loaded = _Lib(importlib.import_module("libarchive.ffi"))
            except (ImportError, OSError, AttributeError, ValueError) as exc:
                _load_failed = True
                log.warning("libarchive is unavailable (%s): 7z/RAR/ISO/XAR/LHA not unpacked", exc)
    return _loaded


def _retcode(exc: Exception) -> int:
    code = getattr(exc, "retcode", None)
    return code if isinstance(code, int) else _ARCHIVE_FATAL


def _entry_name(lib: _Lib, entry: int) -> str:
    raw = lib.raw.archive_entry_pathname_utf8(entry)
    if raw is not None:
        return bytes(raw).decode("utf-8", "surrogateescape")
    raw = lib.raw.archive_entry_pathname(entry)
    return "" if raw is None else bytes(raw).decode("utf-8", "surrogateescape")


def _read_member(lib: _Lib, archive: int, want: int) -> tuple[bytes, bool]:
    """Up to ``want`` bytes of the current member, and whether the archive broke (fatal)."""
    ffi = lib.ffi
    buf = ctypes.create_string_buffer(_BLOCK)
    parts: list[bytes] = []
    got = 0
    while got < want:
        try:
            n = ffi.read_data(archive, buf, min(_BLOCK, want - got))
        except Exception as exc:  # libarchive-c raises ArchiveError below ARCHIVE_WARN
            log.debug("libarchive data: %s", exc)
            return b"".join(parts), _retcode(exc) <= _ARCHIVE_FATAL
        if n <= 0:
            break
        parts.append(ctypes.string_at(buf, n))
        got += n
    return b"".join(parts), False


def _vint(data: bytes, pos: int) -> tuple[int, int]:
    """A RAR5 variable-length integer at ``pos``: (value, position after it)."""
    value = 0
    for shift in range(0, 70, 7):
        if pos >= len(data):
            raise ValueError("truncated vint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    raise ValueError("vint too long")


def _rar5_encryption(data: bytes) -> tuple[bool, frozenset[str]]:
    """(headers encrypted, names of encrypted file entries) of a RAR5 archive, from its
    block headers: libarchive 3.6 neither flags nor refuses RAR5 encryption."""
    names: set[str] = set()
    pos = len(_RAR5_MAGIC)
    try:
        for _ in range(4 * MAX_ENTRIES):
            size, p = _vint(data, pos + 4)  # after the header CRC32
            end = p + size
            if size == 0 or end > len(data):
                break
            htype, p = _vint(data, p)
            hflags, p = _vint(data, p)
            extra = datasize = 0
            if hflags & 1:
                extra, p = _vint(data, p)
            if hflags & 2:
                datasize, p = _vint(data, p)
            if htype == 4:  # archive encryption header: everything after it is encrypted
                return True, frozenset(names)
            if htype == 5:  # end of archive
                break
            if htype == 2 and 0 < extra <= end - p:
                fflags, p = _vint(data, p)
                _unpacked, p = _vint(data, p)
                _attributes, p = _vint(data, p)
                p += 4 * (bool(fflags & 2) + bool(fflags & 4))  # mtime, data CRC32
                _compression, p = _vint(data, p)
                _host, p = _vint(data, p)
                namelen, p = _vint(data, p)
                name = data[p : p + namelen].decode("utf-8", "surrogateescape")
                rec = end - extra
                while rec < end:
                    rsize, q = _vint(data, rec)
                    rtype, _ = _vint(data, q)
                    if rtype == 1:  # file encryption record
                        names.add(name)
                        break
                    if rsize == 0:
                        break
                    rec = q + rsize
            pos = end + datasize
    except ValueError:
        pass
    return False, frozenset(names)


def _header_encrypted(data: bytes) -> bool:
    """An archive whose member list itself is encrypted (7z -mhe, RAR -hp)."""
    if data.startswith(_7Z_MAGIC) and len(data) >= 32:
        offset, size = struct.unpack_from("<QQ", data, 12)
        start = 32 + offset
        if 0 < size <= len(data) and start + size <= len(data):
            header = data[start : start + size]
            return header[0] == 0x17 and _7Z_AES in header  # an encoded header, AES
    if data.startswith(_RAR4_MAGIC) and len(data) >= 12:
        return bool(data[10] & 0x80)  # main header flag MHD_PASSWORD
    if data.startswith(_RAR5_MAGIC):
        return _rar5_encryption(data)[0]
    return False


def _archive_members(
    data: bytes,
    limit: int,
    formats: tuple[str, ...],
    solid: bool = False,
    encrypted: frozenset[str] = frozenset(),
    options: bytes = b"",
    basename: bool = False,
) -> Iterator[Child]:
    """Regular members of an archive that one of libarchive's ``formats`` reads
    (``options``: libarchive read options; ``basename``: names without their folders)."""
    lib = _lib()
    if lib is None or not data:
        return
    ffi = lib.ffi
    try:
        archive = ffi.read_new()
    except Exception as exc:
        log.debug("libarchive: %s", exc)
        return
    entry = None
    try:
        entry = ffi.entry_new()
        for fmt in formats:
            ffi.get_read_format_function(fmt)(archive)
        if options and lib.raw.archive_read_set_options(archive, options) < _ARCHIVE_WARN:
            log.debug("libarchive: options %r refused", options)
        ffi.read_open_memory(archive, data, len(data))  # no copy: c_void_p takes bytes
        for child in _walk(lib, archive, entry, data, limit, solid, encrypted):
            if basename:
                child = dataclasses.replace(child, name=child.name.rpartition("/")[2])
            yield child
    except Exception as exc:
        log.debug("libarchive %s: %s", "/".join(formats), exc)
    finally:
        if entry is not None:
            ffi.entry_free(entry)
        try:
            ffi.read_free(archive)
        except Exception as exc:
            log.debug("libarchive free: %s", exc)


def _skip_budget(limit: int) -> int:
    return min(MAX_SKIP, max(4 * limit, MIN_SKIP))


def _walk(
    lib: _Lib,
    archive: int,
    entry: int,
    data: bytes,
    limit: int,
    solid: bool,
    encrypted: frozenset[str],
) -> Iterator[Child]:
    """The members. In ``solid`` formats skipping a member decodes it, so the bytes
    skipped are budgeted and the archive is abandoned before a skip would exceed it.
    ``encrypted``: names known to be encrypted that libarchive may not flag."""
    ffi = lib.ffi
    raw = lib.raw
    budget = _skip_budget(limit) if solid else -1
    for seen in range(MAX_ENTRIES):
        try:
            code = ffi.read_next_header2(archive, entry)  # OK, EOF or WARN; raises below
        except Exception as exc:
            code = _retcode(exc)
            log.debug("libarchive header: %s", exc)
        if code == _ARCHIVE_EOF or code <= _ARCHIVE_FATAL:
            if seen == 0 and (
                raw.archive_read_has_encrypted_entries(archive) > 0 or _header_encrypted(data)
            ):
                yield Child("", b"", encrypted=True)  # what the member list hides
            return
        if raw.archive_entry_filetype(entry) & _AE_IFMT != _AE_IFREG:
            continue
        name = _entry_name(lib, entry)
        size = raw.archive_entry_size(entry) if raw.archive_entry_size_is_set(entry) else -1
        if (
            raw.archive_entry_is_data_encrypted(entry) > 0
            or raw.archive_entry_is_metadata_encrypted(entry) > 0
            or name in encrypted
        ):
            yield Child(name, b"", real=size, encrypted=True)
            left = size
        elif code < _ARCHIVE_WARN:  # FAILED/RETRY: this member cannot be read, the next may
            left = max(size, 0)
        elif size > limit:  # not decoded, as libclamav skips such members
            yield Child(name, b"", True, real=size)
            left = size
            if solid:
                # libarchive < 3.7.5 loses its place skipping an unread first member of a
                # solid 7z block whose size is a multiple of 64 KiB (libarchive PR 2245):
                # one byte read first makes it skip by decoding instead.
                _read_member(lib, archive, 1)
        else:
            out, broken = _read_member(lib, archive, limit + 1 if size < 0 else size)
            yield Child(name, out[:limit], len(out) > limit, real=size)
            if broken:
                return
            left = size - len(out) if size >= 0 else (-1 if len(out) > limit else 0)
        if budget >= 0 and left != 0:
            budget -= left
            if left < 0 or budget < 0:
                log.debug("libarchive: skipping %d more bytes is over budget", left)
                return


def _seven_z(data: bytes, limit: int) -> Iterator[Child]:
    return _archive_members(data, limit, ("7zip",), solid=True)


def _rar(data: bytes, limit: int) -> Iterator[Child]:
    names = _rar5_encryption(data)[1] if data.startswith(_RAR5_MAGIC) else frozenset()
    return _archive_members(data, limit, ("rar", "rar5"), solid=True, encrypted=names)


def _iso9660(data: bytes, limit: int) -> Iterator[Child]:
    """Files of an ISO 9660 image (Joliet and Rock Ridge images too), named as libclamav
    names them for .cdb signatures: the primary volume's identifier, without folders."""
    options = b"iso9660:!joliet,iso9660:!rockridge"
    return _archive_members(data, limit, ("iso9660",), options=options, basename=True)


def _xar(data: bytes, limit: int) -> Iterator[Child]:
    return _archive_members(data, limit, ("xar",))


def _lha(data: bytes, limit: int) -> Iterator[Child]:
    return _archive_members(data, limit, ("lha",))


def zstd_stream(data: bytes, limit: int) -> Iterator[Child]:
    """A zstd stream (concatenated frames) decoded by libarchive's zstd filter ("raw" format).

    ClamAV 1.4 has no type for zstd; whoever types "28 B5 2F FD" files may register this.
    """
    if not data.startswith(_ZSTD_MAGIC):
        return
    lib = _lib()
    if lib is None:
        return
    ffi = lib.ffi
    try:
        archive = ffi.read_new()
    except Exception as exc:
        log.debug("libarchive: %s", exc)
        return
    entry = None
    try:
        entry = ffi.entry_new()
        ffi.get_read_filter_function("zstd")(archive)
        ffi.get_read_format_function("raw")(archive)
        ffi.read_open_memory(archive, data, len(data))  # no copy: c_void_p takes bytes
        ffi.read_next_header2(archive, entry)
        if ffi.filter_count(archive) < 2:  # "raw" alone passes any input through as is
            return
        out, _broken = _read_member(lib, archive, limit + 1)
        if out:
            yield Child("zstd", out[:limit], len(out) > limit)
    except Exception as exc:
        log.debug("zstd: %s", exc)
    finally:
        if entry is not None:
            ffi.entry_free(entry)
        try:
            ffi.read_free(archive)
        except Exception as exc:
            log.debug("libarchive free: %s", exc)


_AR_MAGIC = b"!<arch>\n"
_AR_HEADER = 60


def _ar_int(field: bytes, base: int = 10) -> int:
    text = field.strip()
    return int(text, base) if text else 0


def ar_members(data: bytes, limit: int) -> Iterator[Child]:
    """Members of a Unix ``ar`` archive (static libraries, .deb packages).

    GNU long names (the ``//`` table and ``/N`` references) and BSD ``#1/N`` names are
    resolved; the symbol tables (``/``, ``/SYM64/``, ``__.SYMDEF*``) are not members.
    """
    if not data.startswith(_AR_MAGIC):
        return
    pos = len(_AR_MAGIC)
    longnames = b""
    while pos + _AR_HEADER <= len(data):
        header = data[pos : pos + _AR_HEADER]
        if header[58:60] != b"`\n":
            return
        try:
            size = _ar_int(header[48:58])
        except ValueError:
            return
        if size < 0:
            return
        raw_name = header[0:16].rstrip(b" ")
        start = pos + _AR_HEADER
        end = min(start + size, len(data))
        pos = start + size + (size & 1)
        if raw_name == b"//":
            longnames = data[start:end]
            continue
        if raw_name in (b"/", b"/SYM64/") or raw_name.startswith(b"__.SYMDEF"):
            continue
        body_start = start
        if raw_name.startswith(b"#1/"):  # BSD: the name leads the data
            try:
                namelen = _ar_int(raw_name[3:])
            except ValueError:
                return
            namelen = min(namelen, end - start)
            name = data[start : start + namelen].rstrip(b"\x00")
            body_start = start + namelen
        elif raw_name.startswith(b"/") and raw_name[1:].isdigit():  # GNU long name
            offset = int(raw_name[1:])
            stop = longnames.find(b"/\n", offset)
            name = longnames[offset : stop if stop >= 0 else offset + 4096]
        else:
            name = raw_name[:-1] if raw_name.endswith(b"/") else raw_name
        body = data[body_start : min(body_start + limit + 1, end)]
        name_text = name.decode("utf-8", "surrogateescape")
        yield Child(name_text, body[:limit], len(body) > limit, real=start + size - body_start)


UNPACKERS: dict[FileType, Callable[[bytes, int], Iterator[Child]]] = {
    FileType.SEVEN_Z: _seven_z,
    FileType.RAR: _rar,
    FileType.ISO9660: _iso9660,
    FileType.XAR: _xar,
    FileType.LHA_LZH: _lha,
}
