"""The compiled-database cache: a whole engine in one memory-mapped file.

Parsing and compiling ClamAV's official database takes tens of seconds; a daemon that
restarts or reloads an unchanged database should not pay that again. After a build, the
engine is written to ``<cache dir>/<key>.engine``:

- the serialized Hyperscan databases of the atoms (per target type, in chunks);
- the atom -> variant table and every variant's owner as flat integer arrays;
- every body and logical signature stored on its own, as its database line (parsed again)
  or, for one without a line (YARA), as a pickle, so that one is read back only when its
  atom first occurs on a scanned file (most never do);
- the hash tables as sorted fixed-width arrays and the hash names as one blob, used in
  place from the memory map (several daemons share the pages);
- the small rest (file-type rules, container signatures, notices, versions) pickled.

The key is a SHA-256 of the database files' names and contents, the load options, the
sources of the modules that shape the compiled form, and the Python, Hyperscan and CPU it
was built for, so any change makes a new entry. An entry that is truncated, corrupt
(CRC-32 per section) or of another format is removed and rebuilt, never trusted; entries
are written to a temporary file and renamed, so two daemons sharing the directory never
see a half-written one; a failed write (full disk, read-only directory) only costs the
cache: the engine keeps serving from memory.

The cache directory must be as trusted as the database itself: entries hold pickles.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import json
import logging
import mmap
import os
import pickle
import platform
import queue
import resource
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter
from pathlib import Path
from typing import Any, BinaryIO, Generic, NoReturn, TypeVar

import hyperscan
import numpy as np
import numpy.typing as npt

from vigil.engine import database as database_module
from vigil.engine.database import (
    DB_SUFFIXES,
    DatabaseOptions,
    load_database,
    load_database_deferred,
    suffix_of,
)
from vigil.engine.limits import Limits
from vigil.engine.matcher import cache as hs_cache
from vigil.engine.matcher.compile import (
    BODY,
    LSIG,
    MAGIC,
    AtomGroup,
    CompiledMatcher,
    Variant,
    make_variants,
)
from vigil.engine.matcher.hashes import HashStore, HashTable, NameTable
from vigil.engine.memory import no_gc, release_free_memory
from vigil.engine.scanner import Engine, Preparer, _Pcre
from vigil.engine.signatures.ldb import parse_ldb_line
from vigil.engine.signatures.model import BodySig, ContentSub, LogicalSig, PcreSub
from vigil.engine.signatures.ndb import parse_db, parse_ndb
from vigil.engine.signatures.pattern import parse_offset, parse_pattern
from vigil.errors import DatabaseError, SignatureError, VigilError

__all__ = ["open_engine", "database_key", "write_engine", "read_engine", "CacheError"]

log = logging.getLogger(__name__)

MAGIC_HEAD = b"VIGIL-ENGINE-2\n"
KEEP = 2  # newest engine entries kept (each can be hundreds of MB at full scale)
SEEN_KEEP = 16  # markers of database files already built kept (see _files_seen_name)
ALIGN = 4096
BASE = ALIGN  # where the sections start; the header comes after them
CHECK_CHUNK = 1 << 20  # sections this large are checked through read(), not the map
# Modules whose code decides what a compiled engine holds: a change to any of them makes
# older entries unusable (their bytes go into the key).
_SHAPING = (
    "signatures/pattern.py",
    "signatures/ndb.py",
    "signatures/ldb.py",
    "signatures/hdb.py",
    "signatures/model.py",
    "signatures/yara.py",
    "signatures/cdb.py",
    "signatures/ftm.py",
    "signatures/cvd.py",
    "signatures/ign.py",
    "matcher/body.py",
    "matcher/compile.py",
    "matcher/hashes.py",
    "database.py",
    "filetype.py",
    "compiled.py",
)

T = TypeVar("T")


class CacheError(VigilError):
    """A compiled-cache entry that cannot be used (it is then rebuilt)."""


# ---------------------------------------------------------------------------- the key


def _code_digest() -> bytes:
    base = Path(database_module.__file__).parent
    h = hashlib.sha256()
    for rel in _SHAPING:
        try:
            h.update((base / rel).read_bytes())
        except OSError:
            h.update(b"?" + rel.encode())
    return h.digest()


def _database_files(paths: Iterable[str | Path], every_file: bool = False) -> list[Path] | None:
    """Every file the loader may read for ``paths``; None when a path is missing (the
    loader then reports the error)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            try:
                entries = sorted(e for e in p.iterdir() if e.is_file())
            except OSError:
                return None
            files.extend(e for e in entries if every_file or suffix_of(e.name) in DB_SUFFIXES)
        elif p.is_file():
            files.append(p)
        else:
            return None
    return files


def database_key(paths: Iterable[str | Path], options: DatabaseOptions) -> str | None:
    """A digest of everything a compiled engine depends on, or None if a file is unreadable."""
    files = _database_files(paths)
    if files is None:
        return None
    h = hashlib.sha256(MAGIC_HEAD)
    h.update(_code_digest())
    h.update(
        f"{sys.version}|{getattr(hyperscan, '__version__', '?')}|{platform.machine()}|"
        f"{hs_cache.cpu_flags()}|{options!r}\n".encode()
    )
    if options.trusted_keys:
        # which keys are trusted decides which containers load: their bytes count too
        keys = _database_files([options.trusted_keys], every_file=True)
        if keys is None:
            return None
        files = files + keys
    digests = _file_digests(files)
    if digests is None:
        return None
    for f, digest in zip(files, digests, strict=True):
        h.update(f.name.encode("utf-8", "surrogateescape") + b"\0" + digest)
    return h.hexdigest()


def _files_seen_name(paths: Iterable[str | Path], options: DatabaseOptions) -> str | None:
    """A marker's name for these database files as they stand (names, sizes, times,
    inodes), or None when one cannot be examined. Cheap (no file is read): it only tells
    whether an entry was made or used for exactly these files before; the content key
    still decides which entry is right."""
    files = _database_files(paths)
    if files is None:
        return None
    h = hashlib.sha256(_code_digest())
    h.update(f"{sys.version}|{options!r}\n".encode())
    try:
        for f in files:
            st = f.stat()
            h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}|{st.st_dev}\n".encode())
    except OSError:
        return None
    return f"{h.hexdigest()}.seen"


def _writable(directory: Path) -> bool:
    """Whether a builder could write an entry there (a read-only cache is only read)."""
    while not directory.exists():
        if directory.parent == directory:
            return False
        directory = directory.parent
    return directory.is_dir() and os.access(directory, os.W_OK)


def _mark_seen(directory: Path, name: str | None) -> None:
    """Record that the current database files have an entry (see _files_seen_name)."""
    if name is None:
        return
    with contextlib.suppress(OSError):
        (directory / name).touch()
    markers = sorted(directory.glob("*.seen"), key=hs_cache.mtime, reverse=True)
    for old in markers[SEEN_KEEP:]:
        with contextlib.suppress(OSError):
            old.unlink()


KEY_BLOCK = 32 << 20  # bytes of a database file hashed as one piece for the key
KEY_READ = 1 << 20  # bytes read at once: the daemon's memory must not grow during RELOAD


def _block_digest(fd: int, lo: int) -> bytes:
    h = hashlib.sha256()
    left = KEY_BLOCK
    while left:
        data = os.pread(fd, min(left, KEY_READ), lo)
        if not data:
            break
        h.update(data)
        lo += len(data)
        left -= len(data)
    return h.digest()


def _file_digests(files: Sequence[Path]) -> list[bytes] | None:
    """Each file's digest (a SHA-256 of its blocks' SHA-256s), None if one is unreadable.

    The blocks are read and hashed on every core (``pread`` and hashlib release the GIL):
    the key comes before every start, and reading then hashing the official database's
    650 MB on one core took 0.5 s. Read, not mapped: a map of the files would count
    hundreds of MB in the daemon's resident memory during every RELOAD.
    """
    out: list[bytes] = []
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
        for f in files:
            try:
                fd = os.open(f, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return None
            jobs: list[Future[bytes]] = []
            try:
                size = os.fstat(fd).st_size
                jobs = [pool.submit(_block_digest, fd, lo) for lo in range(0, size, KEY_BLOCK)]
                whole = hashlib.sha256(b"%d\0" % len(jobs))
                for job in jobs:
                    whole.update(job.result())
            except OSError:
                return None
            finally:
                # every job has finished (or failed) once its result was asked for
                for job in jobs:
                    job.cancel()
                wait(jobs)
                os.close(fd)
            out.append(whole.digest())
    return out


# ---------------------------------------------------------------------------- lazy parts


class _Pickled(Sequence[T], Generic[T]):
    """Items stored one by one in a blob, rebuilt (once) when first asked for.

    Each is a pickle, or with ``lines`` possibly its database line (the kinds are in
    _LINE_PARSERS), parsed again. Storing lines saves pickling three hundred thousand
    signatures on every cold build (3 s at full scale); parsing one again costs about as
    much as unpickling it, and only the few whose atoms occur are ever rebuilt.
    """

    def __init__(
        self,
        blob: memoryview,
        offsets: npt.NDArray[np.uint64],
        lines: npt.NDArray[np.uint8] | None = None,
    ) -> None:
        self._blob = blob
        self._offsets = offsets
        self._lines = lines
        self._memo: list[T | None] = [None] * (len(offsets) - 1)
        if lines is not None and (
            len(lines) != len(self._memo) or (len(lines) and int(lines.max()) >= len(_LINE_PARSERS))
        ):
            raise CacheError("item kinds do not match the items")

    def __len__(self) -> int:
        return len(self._memo)

    def __getitem__(self, i: Any) -> Any:
        item = self._memo[i]
        if item is None:
            lo, hi = int(self._offsets[i]), int(self._offsets[i + 1])
            kind = 0 if self._lines is None else int(self._lines[i])
            if kind:
                item = _LINE_PARSERS[kind](str(self._blob[lo:hi], "latin-1"))
            else:
                item = pickle.loads(self._blob[lo:hi])
            self._memo[i] = item
        return item

    def __iter__(self) -> Iterator[T]:
        for i in range(len(self._memo)):
            yield self[i]


class _Variants(Sequence[Variant]):
    """Variants rebuilt from their signature when their atom first occurs."""

    def __init__(self, engine_parts: _Owners, magic: Sequence[Any]) -> None:
        self._p = engine_parts
        self._magic = magic
        self._memo: list[Variant | None] = [None] * len(engine_parts.kind)

    def __len__(self) -> int:
        return len(self._memo)

    def __getitem__(self, vi: Any) -> Any:
        v = self._memo[vi]
        if v is None:
            v = self._memo[vi] = self._build(vi)
        return v

    def _build(self, vi: int) -> Variant:
        p = self._p
        kind, owner, sub, alt = (
            int(p.kind[vi]),
            int(p.owner[vi]),
            int(p.sub[vi]),
            int(p.alt[vi]),
        )
        if kind == BODY:
            sig: BodySig = p.body[owner]
            return make_variants(sig.pattern, "", BODY, owner, 0, sig.target, sig.offset)[alt]
        if kind == LSIG:
            lsig: LogicalSig = p.lsigs[owner]
            cs = lsig.subsigs[sub]
            assert isinstance(cs, ContentSub)
            return make_variants(
                cs.pattern, cs.modifiers, LSIG, owner, sub, lsig.tdb.target, cs.offset
            )[alt]
        rule = self._magic[owner]
        pat = parse_pattern(rule.magic)
        return make_variants(pat, "", MAGIC, owner, 0, 0, parse_offset(rule.offset))[alt]


@dataclass(slots=True)
class _Owners:
    kind: npt.NDArray[np.uint8]
    owner: npt.NDArray[np.uint32]
    sub: npt.NDArray[np.uint16]
    alt: npt.NDArray[np.uint8]
    body: Sequence[BodySig]
    lsigs: Sequence[LogicalSig]


class _Atoms(Sequence[Sequence[int]]):
    """Variants per atom, as one flat array and the start of each atom's run."""

    def __init__(self, start: npt.NDArray[np.int64], flat: npt.NDArray[np.int32]) -> None:
        self._start = start
        self._flat = flat

    def __len__(self) -> int:
        return len(self._start) - 1

    def __getitem__(self, aid: Any) -> Any:
        return self._flat[self._start[aid] : self._start[aid + 1]].tolist()


class _Deferred(Mapping[int, Sequence[int]]):
    """The deferred variants of each logical signature, as one flat array and the start
    of each signature's run (signatures without any are absent)."""

    def __init__(self, start: npt.NDArray[np.int64], flat: npt.NDArray[np.int32]) -> None:
        self._start = start
        self._flat = flat
        self._len = int(np.count_nonzero(np.diff(start)))

    def __getitem__(self, li: int) -> Sequence[int]:
        if not 0 <= li < len(self._start) - 1:
            raise KeyError(li)
        lo, hi = int(self._start[li]), int(self._start[li + 1])
        if lo == hi:
            raise KeyError(li)
        return self._flat[lo:hi].tolist()  # type: ignore[no-any-return]

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[int]:
        return iter(np.flatnonzero(np.diff(self._start)).tolist())


def _csr(rows: Sequence[Sequence[int]]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """Rows of integers as (start of each row, all rows end to end)."""
    start = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, rows), dtype=np.int64, count=len(rows)), out=start[1:])
    flat = np.fromiter(chain.from_iterable(rows), dtype=np.int32, count=int(start[-1]))
    return start, flat


class _Pcres(Mapping[tuple[int, int], _Pcre]):
    """PCRE subsignatures, made when first asked for; ``broken`` ones never match."""

    def __init__(self, lsigs: Sequence[LogicalSig], keys: set[tuple[int, int]]) -> None:
        self._lsigs = lsigs
        self._keys = keys
        self._memo: dict[tuple[int, int], _Pcre] = {}

    def __getitem__(self, key: tuple[int, int]) -> _Pcre:
        pcre = self._memo.get(key)
        if pcre is None:
            if key not in self._keys:
                raise KeyError(key)
            sub = self._lsigs[key[0]].subsigs[key[1]]
            assert isinstance(sub, PcreSub)
            pcre = self._memo[key] = _Pcre(sub)
        return pcre

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self._keys)


# ---------------------------------------------------------------------------- writing


class _Writer:
    """Writes each section to the entry's file as it is added, from a thread.

    The big hash tables go to disk (and get their CRC: zlib and the writes release the
    GIL) while the caller pickles the signatures and Hyperscan finishes compiling. The
    header, which lists the sections, is written last: after the data, with its place
    recorded at the start of the file.
    """

    def __init__(self, fd: int) -> None:
        self.sections: dict[str, tuple[int, int, int]] = {}  # name -> offset, length, crc
        self.pos = 0
        self._fd = fd
        self._crcs: dict[str, int] = {}
        self._queue: queue.SimpleQueue[tuple[str, int, memoryview] | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="engine-writer", daemon=True)
        self._thread.start()

    def add(self, name: str, data: bytes | memoryview | npt.NDArray[Any]) -> None:
        if isinstance(data, np.ndarray):
            data = np.ascontiguousarray(data).data  # viewed, not copied: the tables are large
        raw = memoryview(data).cast("B")
        self.pos = -(-self.pos // ALIGN) * ALIGN
        self.sections[name] = (self.pos, raw.nbytes, 0)
        self._queue.put((name, self.pos, raw))
        self.pos += raw.nbytes

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            name, pos, raw = item
            if self._error is not None:
                continue  # drain: close() reports the first error
            try:
                self._crcs[name] = zlib.crc32(raw)
                _pwrite_all(self._fd, raw, BASE + pos)
            except BaseException as exc:  # noqa: BLE001 - re-raised by close()
                self._error = exc

    def close(self) -> dict[str, tuple[int, int, int]]:
        """Wait for every write; the sections with their CRCs (raises the first error)."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return {name: (pos, n, self._crcs[name]) for name, (pos, n, _) in self.sections.items()}


def _pwrite_all(fd: int, data: memoryview | bytes, offset: int) -> None:
    view = memoryview(data)
    while view.nbytes:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _joined(blobs: Sequence[bytes]) -> tuple[bytes, npt.NDArray[np.uint64]]:
    offsets = np.zeros(len(blobs) + 1, dtype=np.uint64)
    np.cumsum([len(b) for b in blobs], out=offsets[1:])
    return b"".join(blobs), offsets


# how an item stored as its line is parsed again (see _Pickled); 0 is a pickle
LINE_OFFICIAL, LINE_OTHER = 1, 2  # .ldb lines
NDB_OFFICIAL, NDB_OTHER, DB_OFFICIAL, DB_OTHER = 3, 4, 5, 6  # .ndb-style and legacy .db
_HERE = "compiled cache"


def _not_a_line(_line: str) -> Any:
    raise CacheError("a pickled item read as a line")


_LINE_PARSERS: tuple[Callable[[str], Any], ...] = (
    _not_a_line,  # kind 0 is a pickle
    lambda line: parse_ldb_line(line, True),
    lambda line: parse_ldb_line(line, False),
    lambda line: parse_ndb(line, _HERE, official=True)[0],
    lambda line: parse_ndb(line, _HERE, official=False)[0],
    lambda line: parse_db(line, _HERE, official=True)[0],
    lambda line: parse_db(line, _HERE, official=False)[0],
)


def _line_kind_ldb(src: tuple[str, bool]) -> int:
    return LINE_OFFICIAL if src[1] else LINE_OTHER


def _line_kind_body(src: tuple[str, bool, bool]) -> int:
    _, official, legacy = src
    if legacy:
        return DB_OFFICIAL if official else DB_OTHER
    return NDB_OFFICIAL if official else NDB_OTHER


def _stored(
    items: Sequence[Any],
    sources: Sequence[Any] | None,
    kind_of: Callable[[Any], int],
) -> tuple[bytes, npt.NDArray[np.uint64], npt.NDArray[np.uint8]]:
    """The signatures' blob: each one's database line where it has one, else its pickle;
    and the kind of each (see _LINE_PARSERS)."""
    n = len(items)
    if sources is None or len(sources) != n:
        sources = [None] * n
    elif None not in sources:  # every signature has its line (no YARA rule): in bulk
        lines = [src[0] for src in sources]
        try:
            blob = "".join(lines).encode("latin-1")
        except UnicodeEncodeError:
            pass  # one at a time below: such a line is pickled
        else:
            offsets = np.zeros(n + 1, dtype=np.uint64)
            np.cumsum(np.fromiter(map(len, lines), dtype=np.uint64, count=n), out=offsets[1:])
            kinds = np.fromiter(map(kind_of, sources), dtype=np.uint8, count=n)
            return blob, offsets, kinds
    kinds = np.zeros(n, dtype=np.uint8)
    blobs: list[bytes] = []
    for i, (item, src) in enumerate(zip(items, sources, strict=True)):
        if src is not None:
            try:
                blobs.append(src[0].encode("latin-1"))
                kinds[i] = kind_of(src)
                continue
            except UnicodeEncodeError:
                pass
        blobs.append(pickle.dumps(item, pickle.HIGHEST_PROTOCOL))
    blob, offsets = _joined(blobs)
    return blob, offsets, kinds


def _variant_owners(variants: Sequence[Variant]) -> dict[str, npt.NDArray[Any]]:
    n = len(variants)
    kind = np.fromiter(map(attrgetter("kind"), variants), dtype=np.uint8, count=n)
    owner = np.fromiter(map(attrgetter("owner"), variants), dtype=np.uint32, count=n)
    sub = np.fromiter(map(attrgetter("sub"), variants), dtype=np.uint16, count=n)
    # the ASCII form that follows a wide one (modifier "wa") has the same owner triple
    alt = np.zeros(n, dtype=np.uint8)
    if n > 1:
        same = (kind[1:] == kind[:-1]) & (owner[1:] == owner[:-1]) & (sub[1:] == sub[:-1])
        alt[1:] = same
    return {"v_kind": kind, "v_owner": owner, "v_sub": sub, "v_alt": alt}


def write_engine(engine: Engine, path: Path) -> None:
    """Write ``engine`` to ``path`` atomically (raises OSError on failure)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".engine")
    try:
        try:
            w = _Writer(fd)
            try:
                _write_sections(engine, w)
            finally:
                sections = w.close()
            header = pickle.dumps(sections, pickle.HIGHEST_PROTOCOL)
            at = -(-(BASE + w.pos) // ALIGN) * ALIGN
            _pwrite_all(fd, header, at)
            fixed = struct.pack("<QQI", at, len(header), zlib.crc32(header))
            _pwrite_all(fd, MAGIC_HEAD + fixed, 0)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_sections(engine: Engine, w: _Writer) -> None:
    # the largest first: the writer thread stores them while the rest is prepared
    tables: list[tuple[str, int, int]] = []
    store = engine.hashes
    if store is not None:
        for i, ((kind, width), table) in enumerate(sorted(store.tables.items())):
            tables.append((kind, width, i))
            w.add(f"h{i}_digests", table.digests.view(np.uint8))
            w.add(f"h{i}_sizes", table.sizes)
            w.add(f"h{i}_names", table.names)
            w.add(f"h{i}_size_set", np.asarray(table.size_set, dtype=np.uint32))
        nblob, noffsets = store.names.parts()
        w.add("names_blob", nblob)
        w.add("names_off", noffsets)
    matcher = engine.matcher
    for g, group in matcher.groups.items():
        start, flat = _csr(group.by_atom)
        w.add(f"atom_start{g}", start)
        w.add(f"atom_vars{g}", flat)
    deferred = engine.deferred
    start, flat = _csr([deferred.get(li, ()) for li in range(len(engine.lsigs))])
    w.add("defer_start", start)
    w.add("defer_vars", flat)
    for name, arr in _variant_owners(matcher.variants).items():
        w.add(name, arr)
    blob, offsets, kinds = _stored(engine.body, engine.body_sources, _line_kind_body)
    w.add("body_blob", blob)
    w.add("body_off", offsets)
    w.add("body_kind", kinds)
    blob, offsets, kinds = _stored(engine.lsigs, engine.lsig_sources, _line_kind_ldb)
    w.add("lsig_blob", blob)
    w.add("lsig_off", offsets)
    w.add("lsig_kind", kinds)
    macro = {g: [v.owner for v in vs] for g, vs in engine.macro_groups.items()}
    small = {
        "signatures": engine.signatures,
        "notices": engine.notices,
        "versions": engine.db_versions,
        "cdb": [sig for sig, _ in reversed(engine.cdb)],
        "magic": engine.magic,
        "always_vars": list(matcher.always),
        "groups": list(matcher.groups),
        "always_lsigs": engine.always_lsigs,
        "pcres": sorted(engine.pcres),
        "macro": macro,
        "tables": tables if store is not None else None,
    }
    w.add("small", pickle.dumps(small, pickle.HIGHEST_PROTOCOL))
    # last: the Hyperscan databases may still be compiling in the background until here
    for g, group in matcher.groups.items():
        for k, db in enumerate(group.dbs):
            w.add(f"hs{g}.{k}", hyperscan.dumpb(db))


# ---------------------------------------------------------------------------- reading


def read_engine(path: Path, limits: Limits | None = None, *, check: bool = True) -> Engine:
    """The engine stored at ``path``, its big tables used in place from a memory map.

    Raises CacheError for an entry that is not a complete, intact one of this format.
    ``check`` False skips the sections' checksums (the header's is always checked): for
    an entry this process or its builder has just written, or one the daemon checked
    before passing it to a worker; at full scale that is half a second of CPU each time.
    """
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            try:
                engine = _assemble(memoryview(mm), limits, fh, check)
            except CacheError:
                raise
            except Exception as exc:  # noqa: BLE001 - any damage means: rebuild
                raise CacheError(f"{path}: unusable: {type(exc).__name__}: {exc}") from None
    except (OSError, ValueError) as exc:
        raise CacheError(f"{path}: cannot map: {exc}") from None
    engine.source = path
    engine.source_id = (st.st_dev, st.st_ino)
    return engine


def _load_hs(blobs: Sequence[memoryview]) -> list[hyperscan.Database]:
    """A group's Hyperscan databases, deserialized when the group is first scanned with."""
    return [hyperscan.loadb(bytes(blob), hyperscan.HS_MODE_BLOCK) for blob in blobs]


def _chunks(sections: Mapping[str, object], group: int) -> list[str]:
    """The names of a group's Hyperscan sections, one per chunk (at least one)."""
    names = [f"hs{group}.0"]
    while f"hs{group}.{len(names)}" in sections:
        names.append(f"hs{group}.{len(names)}")
    return names


def _crc_of_file(fh: BinaryIO, lo: int, length: int) -> int:
    """CRC-32 of a file range, read through a small buffer: checking the whole entry this
    way does not fault its pages into the daemon's resident set as reading the map would."""
    buf = bytearray(CHECK_CHUNK)
    view = memoryview(buf)
    crc = 0
    fh.seek(lo)
    left = length
    while left:
        got = fh.readinto(view[: min(left, CHECK_CHUNK)])  # type: ignore[attr-defined]
        if not got:
            raise CacheError("truncated")
        crc = zlib.crc32(view[:got], crc)
        left -= got
    return crc


def _assemble(
    view: memoryview, limits: Limits | None, fh: BinaryIO | None = None, check: bool = True
) -> Engine:
    size = len(view)
    fixed = len(MAGIC_HEAD) + 20
    if size < fixed or bytes(view[: len(MAGIC_HEAD)]) != MAGIC_HEAD:
        raise CacheError("not a compiled engine of this format")
    at, hlen, hcrc = struct.unpack_from("<QQI", view, len(MAGIC_HEAD))
    if at < BASE or at + hlen > size:
        raise CacheError("truncated header")
    header = view[at : at + hlen]
    if zlib.crc32(header) != hcrc:
        raise CacheError("header checksum mismatch")
    sections: dict[str, tuple[int, int, int]] = pickle.loads(header)
    base = BASE

    def section(name: str) -> memoryview:
        offset, length, crc = sections[name]
        lo = base + offset
        if lo + length > size:
            raise CacheError(f"truncated section {name}")
        part = view[lo : lo + length]
        if not check:
            return part
        if fh is not None and length >= CHECK_CHUNK:
            actual = _crc_of_file(fh, lo, length)
        else:
            actual = zlib.crc32(part)
        if actual != crc:
            raise CacheError(f"checksum mismatch in section {name}")
        return part

    def array(name: str, dtype: Any) -> npt.NDArray[Any]:
        return np.frombuffer(section(name), dtype=dtype)

    small = pickle.loads(section("small"))
    body: _Pickled[BodySig] = _Pickled(
        section("body_blob"), array("body_off", np.uint64), array("body_kind", np.uint8)
    )
    lsigs: _Pickled[LogicalSig] = _Pickled(
        section("lsig_blob"), array("lsig_off", np.uint64), array("lsig_kind", np.uint8)
    )
    owners = _Owners(
        array("v_kind", np.uint8),
        array("v_owner", np.uint32),
        array("v_sub", np.uint16),
        array("v_alt", np.uint8),
        body,
        lsigs,
    )
    magic = small["magic"]
    variants = _Variants(owners, magic)
    groups = {
        g: AtomGroup(
            _Atoms(array(f"atom_start{g}", np.int64), array(f"atom_vars{g}", np.int32)),
            load=functools.partial(_load_hs, [section(name) for name in _chunks(sections, g)]),
        )
        for g in small["groups"]
    }
    matcher = CompiledMatcher.assemble(variants, groups, small["always_vars"])
    hashes: HashStore | None = None
    if small["tables"] is not None:
        names = NameTable.frozen(section("names_blob"), array("names_off", np.uint64))
        tables: dict[tuple[str, int], HashTable] = {}
        for kind, width, i in small["tables"]:
            tables[(kind, width)] = HashTable(
                width,
                array(f"h{i}_digests", f"S{width}"),
                array(f"h{i}_sizes", np.uint32),
                array(f"h{i}_names", np.uint32),
                array(f"h{i}_size_set", np.uint32),
            )
        hashes = HashStore(tables, names)
    macro_groups = {
        g: [
            make_variants(body[o].pattern, "", BODY, o, 0, body[o].target, body[o].offset)[0]
            for o in owners_of
        ]
        for g, owners_of in small["macro"].items()
    }
    return Engine.assemble(
        limits=limits,
        signatures=small["signatures"],
        notices=small["notices"],
        db_versions=small["versions"],
        body=body,
        cdb=small["cdb"],
        lsigs=lsigs,
        hashes=hashes,
        magic=magic,
        macro_groups=macro_groups,
        pcres=_Pcres(lsigs, {tuple(k) for k in small["pcres"]}),
        always_lsigs=small["always_lsigs"],
        deferred=_Deferred(array("defer_start", np.int64), array("defer_vars", np.int32)),
        matcher=matcher,
    )


# ---------------------------------------------------------------------------- the entry point


def _prune(directory: Path) -> None:
    """Keep the KEEP newest entries. Temporary files of writers still at work (``.tmp-``)
    are not entries: counting them would remove a finished entry another thread or daemon
    is about to map."""
    entries = sorted(
        (p for p in directory.glob("*.engine") if not p.name.startswith(".")),
        key=hs_cache.mtime,
        reverse=True,
    )
    for old in entries[KEEP:]:
        with contextlib.suppress(OSError):
            old.unlink()


def open_engine(
    paths: Sequence[str | Path],
    options: DatabaseOptions | None = None,
    limits: Limits | None = None,
    *,
    isolate: bool = False,
) -> Engine:
    """Load ``paths`` into an engine, through the compiled cache when there is one.

    A cache hit maps the stored engine (about a second at full scale). A miss parses and
    compiles as usual, writes the entry, and then serves from the entry just written, so
    that the parsed objects are freed; if the entry cannot be written the engine built in
    memory serves. With ``isolate`` (the daemon) a miss is built by a child process, so the
    daemon itself never holds the parsed database: its memory stays that of the mapped
    engine through start-up and every reload. Raises DatabaseError/SignatureError for a
    bad database, as the loader.
    """
    options = options or DatabaseOptions()
    directory = hs_cache.cache_dir()
    seen = None
    early: _ChildBuild | None = None
    if directory is not None and isolate:
        seen = _files_seen_name(paths, options)
        if seen is not None and not (directory / seen).exists() and _writable(directory):
            # files never built before (a first start, an update): a build is all but
            # certain, so the builder starts now, while the key is computed, not after
            early = _ChildBuild.start(paths, options)
    try:
        key = database_key(paths, options) if directory is not None else None
        if early is not None and _files_seen_name(paths, options) != seen:
            # a file changed while the early child may have been reading it: its engine
            # could be the old files' one, so it must not be stored under this key
            early.cancel()
            early = None
            key = database_key(paths, options)
        path = directory / f"{key}.engine" if directory is not None and key else None
        if path is not None and path.exists():
            try:
                engine = read_engine(path, limits)
                log.info("database loaded from the compiled cache %s", path)
                if directory is not None:
                    _mark_seen(directory, seen)
                return engine
            except CacheError as exc:
                log.warning("compiled cache %s; rebuilding", exc)
                with contextlib.suppress(OSError):
                    path.unlink()
        if path is not None and isolate:
            builder, early = early or _ChildBuild.start(paths, options), None
            if builder.finish(path):
                try:
                    engine = read_engine(path, limits, check=False)  # our builder wrote it
                    if directory is not None:
                        _mark_seen(directory, seen)
                    return engine
                except CacheError as exc:  # pragma: no cover - replaced under our feet
                    log.warning("compiled cache %s; building in memory", exc)
    finally:
        if early is not None:  # not needed after all (or the key could not be made)
            early.cancel()
    # the collector stays off until the parsed objects are freed again: the first
    # collection after a build would otherwise walk all of them (2 s at full scale)
    with no_gc():
        if path is None:
            return Engine(load_database(paths, options), limits)
        built = _build(paths, options, limits)
        try:
            write_engine(built, path)
        except OSError as exc:
            log.warning("compiled cache not written (%s); serving from memory", exc)
            return built
        _prune(path.parent)
        try:
            engine = read_engine(path, limits, check=False)  # written just now
        except CacheError as exc:  # pragma: no cover - replaced under our feet
            log.warning("compiled cache %s; serving from memory", exc)
            return built
        del built
    release_free_memory()
    return engine


def _build(paths: Sequence[str | Path], options: DatabaseOptions, limits: Limits | None) -> Engine:
    """Build an engine whose entry is about to be written.

    Three things run at once: the signature files are parsed and, after each file, its
    variants prepared (this thread); the hash files are parsed (another thread: their
    parser and sort are C that releases the GIL); and Hyperscan compiles each chunk of
    atoms as soon as it is complete (more threads), while later files are still being
    read. The write waits for the compiles.
    """
    prep = Preparer()
    try:
        db, finish = load_database_deferred(paths, options, prep.feed)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hash-parse") as pool:
            hashes = pool.submit(finish)
            # the engine only reads db.signatures here; the count is taken again below
            engine = Engine(db, limits, background=True, prep=prep)
            hashes.result()  # a bad hash file raises here, as the loader would have
    except BaseException:
        prep.abandon()
        raise
    engine.hashes = db.hashes
    engine.signatures = db.signatures
    return engine


class _ChildBuild:
    """A builder child process: it parses and compiles from the moment it starts, and is
    told where to write the entry only when the caller knows (the key of a large database
    takes a while to compute); a build that turns out not to be needed is killed before
    it has written anything."""

    def __init__(self, proc: subprocess.Popen[bytes] | None, errors: BinaryIO | None) -> None:
        self._proc = proc
        self._errors = errors  # the child's stderr: a file, never a pipe nobody reads
        self._started = time.monotonic()

    @classmethod
    def start(cls, paths: Sequence[str | Path], options: DatabaseOptions) -> _ChildBuild:
        request = pickle.dumps(([str(p) for p in paths], options))
        errors: BinaryIO | None = None
        with contextlib.suppress(OSError):  # no temporary file: the child's stderr is lost
            errors = tempfile.TemporaryFile()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "vigil.engine.compiled"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL if errors is None else errors,
            )
        except OSError as exc:
            if errors is not None:
                errors.close()
            log.warning("cannot start the database builder (%s); building in memory", exc)
            return cls(None, None)
        assert proc.stdin is not None
        with contextlib.suppress(OSError):  # a child that died is reported by finish()
            proc.stdin.write(request)
            proc.stdin.flush()
        return cls(proc, errors)

    def cancel(self) -> None:
        """Kill the child (it writes nothing before it is given the entry's path)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.communicate()
        if self._errors is not None:
            self._errors.close()
            self._errors = None

    def finish(self, path: Path) -> bool:
        """Have the entry written to ``path``; False if that could not be done (the caller
        then builds in memory). A bad database raises its error here, as a load would."""
        proc, self._proc = self._proc, None
        if proc is None:
            return False
        try:
            try:  # a child that stopped on a bad database has its reply ready already
                out, _ = proc.communicate(pickle.dumps(str(path)))
            except OSError:  # pragma: no cover - communicate copes with a closed pipe
                proc.kill()
                out, _ = proc.communicate()
            err = b""
            if self._errors is not None:
                with contextlib.suppress(OSError):
                    self._errors.seek(0)
                    err = self._errors.read()
        finally:
            if self._errors is not None:
                self._errors.close()
                self._errors = None
        return _child_reply(out, err, proc.returncode, self._started)


def _child_reply(out: bytes, err: bytes, code: int, started: float) -> bool:
    """What the builder child's one JSON line says: True if it wrote the entry."""
    try:
        reply = json.loads(out.decode("utf-8", "replace").strip().splitlines()[-1])
        if not isinstance(reply, dict):
            raise ValueError("not an object")
    except (ValueError, IndexError):
        tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        log.warning("database builder failed (exit %d: %s); building in memory", code, tail[0])
        return False
    if "error" in reply:
        if reply.get("kind") == "SignatureError":
            where, lineno, reason = reply["fields"]
            raise SignatureError(str(where), int(lineno), str(reason))
        if reply.get("kind") == "DatabaseError":
            raise DatabaseError(str(reply["error"]))
        log.warning("database builder: %s; building in memory", reply["error"])
        return False
    log.info(
        "database compiled by a child process in %.2f s (its peak memory %d MB)",
        time.monotonic() - started,
        int(reply.get("peak_kb", 0)) // 1024,
    )
    return bool(reply.get("written"))


def _child_main() -> NoReturn:
    """The builder process. On stdin: a pickled (paths, options), at once, then the
    entry's path as a pickled str when the parent knows it (EOF instead: not needed). One
    JSON line on stdout."""
    logging.basicConfig(level=logging.WARNING, format="vigil builder: %(message)s")
    stdin = sys.stdin.buffer
    paths, options = pickle.load(stdin)
    reply: dict[str, Any]
    try:
        # no cyclic collection at all, not even after the build: everything built stays
        # alive until the process ends, and a collection would walk millions of objects
        # for nothing (the first one after the build took 2.3 s at full scale)
        gc.disable()
        engine = _build(paths, options, None)
        try:
            path = Path(pickle.load(stdin))
        except EOFError:
            os._exit(0)  # the parent found an entry after all
        try:
            write_engine(engine, path)
            _prune(path.parent)
            reply = {"written": True}
        except OSError as exc:
            reply = {"error": f"cannot write {path}: {exc}", "kind": "OSError"}
    except SignatureError as exc:
        reply = {
            "error": str(exc),
            "kind": "SignatureError",
            "fields": [exc.path, exc.lineno, exc.reason],
        }
    except DatabaseError as exc:
        reply = {"error": str(exc), "kind": "DatabaseError"}
    reply["peak_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(reply), flush=True)
    # the entry is written: skip freeing millions of objects one by one on the way out
    os._exit(0)


if __name__ == "__main__":
    _child_main()
