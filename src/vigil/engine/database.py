"""Reads database files and directories (the engine's only disk I/O) and dispatches by suffix.

ClamAV's rules (signatures.md §0, §1, §7): suffixes are matched case-insensitively; ignore
lists load first; of ``X.cvd`` and ``X.cld`` the newer version wins; PUA databases load only
when PUA detection is on; niche formats are skipped with one notice each.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from vigil.engine.filetype import MagicRule
from vigil.engine.matcher.hashes import HashBuilder, HashStore, NameTable
from vigil.engine.memory import no_gc
from vigil.engine.signatures.cdb import parse_cdb
from vigil.engine.signatures.cvd import cvd_version, read_cvd
from vigil.engine.signatures.ftm import parse_ftm
from vigil.engine.signatures.hdb import HASH_KINDS, parse_hash_db
from vigil.engine.signatures.ign import parse_ign
from vigil.engine.signatures.ldb import parse_ldb
from vigil.engine.signatures.model import BodySig, CdbSig, LogicalSig
from vigil.engine.signatures.ndb import parse_db, parse_ndb
from vigil.engine.signatures.yara import parse_yara
from vigil.errors import DatabaseError, SignatureError

__all__ = [
    "Database",
    "DatabaseOptions",
    "load_database",
    "load_database_deferred",
    "builtin_database_dir",
    "DB_SUFFIXES",
]

log = logging.getLogger(__name__)

CONTAINERS = ("cvd", "cld", "cud")
BODY = ("ndb", "ndu", "sdb")
LOGICAL = ("ldb", "ldu")
PUA_SUFFIXES = frozenset({"hdu", "hsu", "mdu", "msu", "ndu", "ldu"})
# Formats ClamAV loads that Vigil parses no further (yet): skipped with one notice each.
NICHE = frozenset(
    {
        "cbc",
        "pdb",
        "wdb",
        "gdb",
        "idb",
        "crb",
        "cfg",
        "pwdb",
        "cat",
        "ioc",
        "zmd",
        "rmd",
    }
)
YARA = ("yar", "yara")
DB_SUFFIXES = frozenset(
    set(HASH_KINDS)
    | set(CONTAINERS)
    | set(BODY)
    | set(LOGICAL)
    | NICHE
    | set(YARA)
    | {"db", "cdb", "ign", "ign2", "ftm", "info"}
)


@dataclass(frozen=True, slots=True)
class DatabaseOptions:
    """What to load: PUA databases, and whether unsigned files are refused."""

    pua: bool = False
    official_only: bool = False
    # VigilTrustedKeysDirectory: PEM public keys that may sign .cvd/.cld besides ClamAV's
    trusted_keys: str | None = None


@dataclass(slots=True)
class Database:
    """Everything parsed from the database files, ready to compile."""

    body: list[BodySig] = field(default_factory=list)
    logical: list[LogicalSig] = field(default_factory=list)
    # per logical signature: its .ldb line and whether its file is official, from which
    # ldb.parse_ldb_line gives it again; None for one that has no such line (YARA)
    logical_src: list[tuple[str, bool] | None] = field(default_factory=list)
    # per body signature: its line, whether its file is official, and whether it is a
    # legacy .db line (else .ndb-style), from which it is parsed again
    body_src: list[tuple[str, bool, bool] | None] = field(default_factory=list)
    cdb: list[CdbSig] = field(default_factory=list)
    ftm: list[MagicRule] | None = None
    hashes: HashStore | None = None
    signatures: int = 0
    notices: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    # container name ("daily", "main"...) -> (version, build time in Unix seconds or None)
    versions: dict[str, tuple[int, int | None]] = field(default_factory=dict)


def builtin_database_dir() -> Path:
    """The database shipped inside the package (EICAR and ClamAV's test-file signatures)."""
    return Path(str(resources.files("vigil") / "data" / "db"))


def suffix_of(name: str) -> str:
    """The loader suffix of a file name (lower case, without the dot)."""
    _, dot, ext = name.rpartition(".")
    return ext.lower() if dot else ""


# A hash file whose parsing waits: its bytes (or its path, read then), origin, suffix,
# whether it is official, and the names ignored when it was met.
_Pending = tuple[bytes | Path, str, str, bool, frozenset[str]]


class _Loader:
    def __init__(
        self,
        options: DatabaseOptions,
        defer_hashes: bool = False,
        on_signatures: Callable[[Database], None] | None = None,
    ) -> None:
        self.options = options
        # called whenever body or logical signatures were added (in batches of a large file)
        self.on_signatures = on_signatures
        self.db = Database()
        self.names = NameTable()
        self.hashes = HashBuilder(self.names)
        self.ignored: set[str] = set()
        self._noticed: set[str] = set()
        # hash files held back (None: parsed as they come): each is parsed, in the order
        # met, by one thread of its own while the other files are read (the parser is C
        # that releases the GIL); finish_hashes() collects them
        self.pending: list[Future[int]] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._hash_failed = False
        if defer_hashes:
            self.pending = []
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hash-files")

    def parse_hashes(self, item: _Pending) -> int:
        """Parse one hash file into the hash tables; its signature count."""
        raw, origin, sfx, official, ign = item
        # allow-list entries count as signatures too, as in clamscan's "Known viruses";
        # parsed block by block (a deferred file is read a block at a time, never whole)
        try:
            count = parse_hash_db(raw, origin, sfx, self.hashes.add, official=official, ignored=ign)
        except OSError as exc:
            raise DatabaseError(f"{origin}: cannot read: {exc.strerror}") from None
        self.hashes.end_file()
        return count

    def _parse_held(self, item: _Pending) -> int:
        if self._hash_failed:
            return 0  # an earlier file's error is the one reported: no need to go on
        try:
            return self.parse_hashes(item)
        except BaseException:
            self._hash_failed = True
            raise

    def abandon_hashes(self) -> None:
        """Stop the hash-file thread after the current file (the load failed)."""
        self._hash_failed = True
        pool, self._pool, self.pending = self._pool, None, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def finish_hashes(self) -> None:
        """Wait for the hash files held back; the first error in file order is raised."""
        pending, self.pending = self.pending or [], None
        pool, self._pool = self._pool, None
        try:
            for job in pending:
                self.db.signatures += job.result()
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def notice(self, text: str) -> None:
        if text not in self._noticed:
            self._noticed.add(text)
            self.db.notices.append(text)
            log.info("%s", text)

    def load_text(self, name: str, raw: bytes | Path, origin: str, official: bool) -> None:
        """Load one database file's contents according to its suffix (a path is given only
        for a hash file whose parsing is deferred: it is read when parsed)."""
        sfx = suffix_of(name)
        ign = frozenset(self.ignored)
        if sfx in PUA_SUFFIXES and not self.options.pua:
            return
        if sfx in NICHE:
            self.notice(f"{origin}: .{sfx} databases are not supported yet; skipped")
            return
        db = self.db
        if sfx in HASH_KINDS:
            item = (raw, origin, sfx, official, ign)
            if self.pending is not None and self._pool is not None:
                self.pending.append(self._pool.submit(self._parse_held, item))
            else:
                self.db.signatures += self.parse_hashes(item)
            return
        if isinstance(raw, Path):
            raw = _read(raw)
        text = raw.decode("latin-1")
        if sfx in BODY or sfx == "db":

            def take_body(sigs: list[BodySig], lines: list[str]) -> None:
                db.body.extend(sigs)
                db.body_src.extend((line, official, sfx == "db") for line in lines)
                db.signatures += len(sigs)
                if self.on_signatures is not None:
                    self.on_signatures(db)

            lines: list[str] = []
            if sfx == "db":
                sigs = parse_db(text, origin, official=official, ignored=ign, sources=lines)
            else:
                batch = take_body if self.on_signatures is not None else None
                sigs = parse_ndb(
                    text, origin, official=official, ignored=ign, sources=lines, batch=batch
                )
            take_body(sigs, lines)
        elif sfx in LOGICAL:

            def take_logical(lsigs: list[LogicalSig], lines: list[str]) -> None:
                db.logical.extend(lsigs)
                db.logical_src.extend((line, official) for line in lines)
                db.signatures += len(lsigs)
                if self.on_signatures is not None:
                    self.on_signatures(db)

            lines = []
            lsigs, skipped = parse_ldb(
                text,
                origin,
                official=official,
                ignored=ign,
                sources=lines,
                batch=take_logical if self.on_signatures is not None else None,
            )
            take_logical(lsigs, lines)
            for lineno, why in skipped:
                log.debug("%s:%d: signature skipped: %s", origin, lineno, why)
        elif sfx in YARA:
            yrules, yskipped = parse_yara(text, origin, official=official)
            yrules = [r for r in yrules if r.name.removesuffix(".UNOFFICIAL") not in ign]
            db.logical.extend(yrules)
            db.logical_src.extend([None] * len(yrules))
            db.signatures += len(yrules)
            for lineno, why in yskipped:
                self.notice(f"{origin}:{lineno}: YARA rule skipped: {why}")
            if self.on_signatures is not None:
                self.on_signatures(db)
        elif sfx == "cdb":
            cdb = parse_cdb(text, origin, official=official, ignored=ign)
            db.cdb.extend(cdb)
            db.signatures += len(cdb)
        elif sfx in ("ign", "ign2"):
            self.ignored |= parse_ign(text, origin)
        elif sfx == "ftm":
            lines = text.split("\n")
            if lines and lines[-1] == "":
                lines.pop()
            rules = parse_ftm(lines, origin)
            # newest first: a later file's rules take precedence (§1.8)
            db.ftm = rules + (db.ftm or [])
        elif sfx == "info":
            raise DatabaseError(f"{origin}: an .info file is only valid inside a CVD container")
        else:
            raise DatabaseError(f"{origin}: unsupported database file")

    def load_container(self, path: Path) -> None:
        data = _read(path)
        arch = read_cvd(data, str(path), trusted_keys=self.options.trusted_keys)
        if self.options.official_only and not arch.official:
            self.notice(f"{path}: not an official database; skipped (OfficialDatabaseOnly)")
            return
        stem = path.name.rsplit(".", 1)[0]
        self.db.versions[stem] = (arch.header.version, arch.header.build_secs)
        members = [(n, d) for n, d in arch.members if n != "COPYING" and suffix_of(n) != "info"]
        # ignore lists inside the container apply to the rest of it
        members.sort(key=lambda m: suffix_of(m[0]) not in ("ign", "ign2"))
        for name, raw in members:
            if suffix_of(name) in DB_SUFFIXES:
                self.load_text(name, raw, f"{path.name}/{name}", arch.official)
        self.db.files.append(str(path))

    def load_file(self, path: Path, *, explicit: bool) -> None:
        sfx = suffix_of(path.name)
        if sfx not in DB_SUFFIXES:
            if explicit:
                self.notice(f"{path}: unknown database suffix; skipped")
            return
        if sfx in CONTAINERS:
            self.load_container(path)
            return
        if self.options.official_only:
            self.notice(f"{path}: not an official database; skipped (OfficialDatabaseOnly)")
            return
        deferred = self.pending is not None and sfx in HASH_KINDS
        self.load_text(path.name, path if deferred else _read(path), str(path), official=False)
        self.db.files.append(str(path))

    def load_dir(self, path: Path) -> None:
        try:
            entries = sorted(p for p in path.iterdir() if p.is_file())
        except OSError as exc:
            raise DatabaseError(f"{path}: cannot read directory: {exc.strerror}") from None
        known = [p for p in entries if suffix_of(p.name) in DB_SUFFIXES]
        if not known:
            raise DatabaseError(f"{path}: no supported database files found")
        known = _newest_containers(known)
        # ignore lists first, so that they apply to every other file (§0)
        known.sort(key=lambda p: (suffix_of(p.name) not in ("ign", "ign2"), p.name))
        for p in known:
            self.load_file(p, explicit=False)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DatabaseError(f"{path}: cannot read: {exc.strerror}") from None


def _newest_containers(paths: list[Path]) -> list[Path]:
    """Of X.cvd and X.cld keep the one with the higher version (the .cld on a tie)."""
    by_stem: dict[str, list[Path]] = {}
    rest: list[Path] = []
    for p in paths:
        if suffix_of(p.name) in ("cvd", "cld"):
            by_stem.setdefault(p.name.rsplit(".", 1)[0], []).append(p)
        else:
            rest.append(p)
    for stem, group in by_stem.items():
        if len(group) == 1:
            rest.append(group[0])
            continue
        versions = []
        for p in group:
            with open(p, "rb") as fh:
                versions.append((cvd_version(fh.read(512), str(p)), suffix_of(p.name) == "cld", p))
        versions.sort()
        if versions[-1][0] == versions[-2][0]:
            log.warning("%s: the .cvd and .cld have the same version %d", stem, versions[-1][0])
        rest.append(versions[-1][2])
    return rest


def _load_all(loader: _Loader, paths: Iterable[str | Path]) -> None:
    plist = [Path(p) for p in paths]
    # ignore files named explicitly also apply to every other file
    plist.sort(key=lambda p: suffix_of(p.name) not in ("ign", "ign2"))
    for p in plist:
        if p.is_dir():
            loader.load_dir(p)
        elif p.exists():
            loader.load_file(p, explicit=True)
        else:
            raise DatabaseError(f"{p}: no such file or directory")


def load_database(paths: Iterable[str | Path], options: DatabaseOptions | None = None) -> Database:
    """Load database files and directories; raises DatabaseError/SignatureError on bad input."""
    loader = _Loader(options or DatabaseOptions())
    with no_gc():
        _load_all(loader, paths)
        loader.db.hashes = loader.hashes.build()
    return loader.db


def load_database_deferred(
    paths: Iterable[str | Path],
    options: DatabaseOptions | None = None,
    on_signatures: Callable[[Database], None] | None = None,
) -> tuple[Database, Callable[[], Database]]:
    """Load everything, the hash files in a thread of their own (from the first one met);
    the returned function waits for those and completes the same Database (hashes,
    signature count) that load_database gives. Meanwhile the caller can prepare and
    compile the body signatures: on two cores, the hash parser (C, without the GIL) uses
    the core that the Python parse of the other files leaves idle.

    ``on_signatures`` is called with the Database whenever body or logical signatures were
    added: after each such file and every BATCH_SIGS signatures of a large one (a
    scanner.Preparer's feed: the variants of the signatures read so far are prepared, and
    full chunks of atoms start compiling, while the rest are parsed).

    Errors are those of load_database, the first in file order: a bad file met first
    reports the hash files held back before it only if one of them is bad too.
    """
    loader = _Loader(options or DatabaseOptions(), defer_hashes=True, on_signatures=on_signatures)
    with no_gc():
        try:
            _load_all(loader, paths)
        except (DatabaseError, SignatureError):
            loader.finish_hashes()  # an earlier hash file's error comes first
            raise
        except BaseException:
            loader.abandon_hashes()
            raise

    def finish() -> Database:
        with no_gc():
            loader.finish_hashes()
            loader.db.hashes = loader.hashes.build()
        return loader.db

    return loader.db, finish
