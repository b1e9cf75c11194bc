"""The engine: compile a loaded database once, then scan many objects from many threads.

One object (a *layer*) is typed, raw-scanned (body patterns in one Hyperscan pass, then hash
signatures, then logical signatures), and, for text and HTML, scanned again in its
normalised forms (signatures.md §3.4, §3.5, §8, §9.1).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import hyperscan
import regex

from vigil.engine.buffer import Buffer
from vigil.engine.cleancache import CleanCache
from vigil.engine.containers import CONTAINER_TYPES, Child, extract, sniff
from vigil.engine.containers.executables import ishield
from vigil.engine.containers.htmlembed import data_uris
from vigil.engine.containers.native_formats import zip_overlapping_files
from vigil.engine.database import Database
from vigil.engine.executables import ExeInfo, parse_executable, section_hash_inputs
from vigil.engine.filetype import (
    TARGET_TYPES,
    FileType,
    MagicRule,
    builtin_rules,
    detect_type,
    outranks,
    utf16_to_ascii,
)
from vigil.engine.htmlnorm import normalise_html
from vigil.engine.limits import Limits
from vigil.engine.matcher.body import (
    CompiledPattern,
    check_deadline,
    compile_pattern,
    scan_deadline,
)
from vigil.engine.matcher.compile import (
    BODY,
    LSIG,
    MAGIC,
    CompiledMatcher,
    MatcherBuilder,
    Variant,
    compile_atoms,
    first_in_windows,
    make_variants,
    resolve_offset,
)
from vigil.engine.matcher.hashes import ALGORITHMS, HashStore
from vigil.engine.matcher.logical import byte_compare, evaluate, required, zero_state
from vigil.engine.memory import no_gc, release_free_memory
from vigil.engine.results import ScanResult
from vigil.engine.signatures.model import (
    BodySig,
    ByteCompareSub,
    CdbSig,
    ContentSub,
    Expr,
    LogicalSig,
    MacroSub,
    PcreSub,
)
from vigil.engine.signatures.pattern import PatternError, parse_offset, parse_pattern
from vigil.engine.textnorm import normalise_text

__all__ = ["Engine", "ScanOptions"]


log = logging.getLogger(__name__)

# clamscan never reports anything for objects of five bytes or fewer (observed on 1.4.6).
MIN_SCAN_SIZE = 6
SCAN_WINDOW = 131072  # ClamAV's raw-scan buffer; order of body matches follows its windows
GENERIC = frozenset({0})
TEXT_TARGETS = frozenset({0, 7})
HTML_TARGETS = frozenset({0, 3})
MARKER_PREFIX = "Heuristics."  # an empty child so named reports a heuristic
EXCEEDED_PREFIX = "Heuristics.Limits.Exceeded."  # ... reported only with AlertExceedsMax
MAIL_TARGETS = frozenset({0, 4})
MAIL_ONLY = frozenset({4})
OTHER_TARGET = 14
MAX_CHILD = 1 << 31  # no extracted object is held beyond 2 GiB, whatever MaxFileSize says
# archives whose members carry the metadata .cdb signatures test (not gzip/bzip2/xz)
MEMBER_ARCHIVES = frozenset(
    {
        FileType.ZIP,
        FileType.POSIX_TAR,
        FileType.OLD_TAR,
        FileType.CPIO_NEWC,
        FileType.CPIO_CRC,
        FileType.CPIO_ODC,
        FileType.CPIO_OLD,
        FileType.ARJ,
        FileType.MAIL,
    }
)
TEXT_TYPES = frozenset(
    {FileType.TEXT_ASCII, FileType.TEXT_UTF8, FileType.TEXT_UTF16LE, FileType.TEXT_UTF16BE}
)
HTML_TYPES = frozenset({FileType.HTML, FileType.HTML_UTF16})
SFX_TYPES = frozenset(
    {
        FileType.SFX,
        FileType.ZIPSFX,
        FileType.RARSFX,
        FileType.SEVEN_ZSFX,
        FileType.CABSFX,
        FileType.ARJSFX,
        FileType.EGGSFX,
    }
)
# scanraw does no embedded-type recognition in these (libclamav 1.4): their members are
# extracted and scanned instead
NO_TYPE_RECOGNITION = frozenset(
    {
        FileType.GZ,
        FileType.CPIO_OLD,
        FileType.ZIP,
        FileType.ZIPSFX,
        FileType.ARJSFX,
        FileType.RARSFX,
        FileType.EGGSFX,
        FileType.CABSFX,
        FileType.SEVEN_ZSFX,
        FileType.OLD_TAR,
        FileType.POSIX_TAR,
    }
)
OOXML_TYPES = frozenset(
    {FileType.OOXML_WORD, FileType.OOXML_PPT, FileType.OOXML_XL, FileType.OOXML_HWP}
)
# parsed after the raw scan (cli_magic_scan's second switch); the rest before it
POST_RAW_TYPES = frozenset({FileType.MSEXE, FileType.ELF, FileType.MACHO, FileType.PDF})
# embedded objects found by file-type signatures during a raw scan, and what they are
SFX_ARCHIVES = {
    FileType.ZIPSFX: FileType.ZIP,
    FileType.RARSFX: FileType.RAR,
    FileType.CABSFX: FileType.MSCAB,
    FileType.ARJSFX: FileType.ARJ,
    FileType.SEVEN_ZSFX: FileType.SEVEN_Z,
    FileType.EGGSFX: FileType.EGG,
}
EXE_WRAPPERS = frozenset({FileType.NULSFT, FileType.AUTOIT, FileType.ISHIELD_MSI})
EMBEDDED_KINDS = frozenset(SFX_ARCHIVES) | EXE_WRAPPERS | {FileType.ISO9660}
MAX_EMBEDDED_OBJ = 10  # libclamav's cap on embedded objects per layer (but see _collect)
ISO_PVD_OFFSET = 32768  # the ISO 9660 signature matches at the primary volume descriptor
# which switch turns each parser off (ScanArchive when not listed)
PARSER_SWITCH = {
    FileType.MSEXE: "scan_pe",
    FileType.ELF: "scan_elf",
    FileType.MACHO: "scan_elf",
    FileType.MSOLE2: "scan_ole2",
    FileType.PDF: "scan_pdf",
    FileType.HTML: "scan_html",
    FileType.HTML_UTF16: "scan_html",
    FileType.MAIL: "scan_mail",
    FileType.MHTML: "scan_mail",
    FileType.TNEF: "scan_mail",
    FileType.BINHEX: "scan_archive",
    FileType.SWF: "scan_swf",
    FileType.XML_WORD: "scan_xmldocs",
    FileType.XML_XL: "scan_xmldocs",
    FileType.XML_HWP: "scan_xmldocs",
    FileType.HWP3: "scan_hwp3",
    FileType.ONENOTE: "scan_onenote",
    FileType.RTF: "scan_archive",
}
ENCRYPTED_ARCHIVE_NAMES = {
    FileType.ZIP: "Heuristics.Encrypted.Zip",
    FileType.RAR: "Heuristics.Encrypted.RAR",
    FileType.SEVEN_Z: "Heuristics.Encrypted.7Zip",
    FileType.EGG: "Heuristics.Encrypted.EGG",
}
ENCRYPTED_DOC_NAMES = {
    FileType.PDF: "Heuristics.Encrypted.PDF",
    FileType.MSOLE2: "Heuristics.Encrypted.OLE2",
}
EXE_TYPES = {FileType.MSEXE: 1, FileType.ELF: 6, FileType.MACHO: 9, FileType.MACHO_UNIBIN: 9}
PCRE_TIMEOUT = 1.0  # seconds; stands in for PCREMatchLimit so one regex cannot stall a scan


@dataclass(frozen=True, slots=True)
class ScanOptions:
    """Per-scan switches."""

    allmatch: bool = False


class _Pcre:
    """A PCRE subsignature; its regex is compiled on first use, since compiled ``regex``
    patterns are large and most PCREs never get past their trigger."""

    __slots__ = ("sub", "flags", "anchored", "global_", "_rx")

    def __init__(self, sub: PcreSub) -> None:
        self.sub = sub
        flags = 0
        for f, val in (("i", regex.I), ("s", regex.S), ("m", regex.M), ("x", regex.X)):
            if f in sub.flags:
                flags |= val
        self.flags = flags
        self.anchored = "A" in sub.flags
        self.global_ = "g" in sub.flags
        self._rx: regex.Pattern[bytes] | None = None

    def check(self) -> None:
        """Compile once without keeping the result: raises regex.error if unusable."""
        regex.compile(self.sub.regex.encode("latin-1"), self.flags, cache_pattern=False)

    @property
    def rx(self) -> regex.Pattern[bytes]:
        if self._rx is None:
            self._rx = regex.compile(self.sub.regex.encode("latin-1"), self.flags)
        return self._rx


_layers = threading.local()


def _ancestors() -> list[str]:
    """CL_TYPE names of the containers above the object being scanned on this thread."""
    stack: list[str] | None = getattr(_layers, "stack", None)
    if stack is None:
        stack = _layers.stack = []
    return stack


def _guarded(children: Iterable[Child], ftype: FileType) -> Iterator[Child]:
    """An unpacker's children; a bug that makes one raise ends that container's members
    (logged), never the scan: what was extracted so far has been scanned."""
    it = iter(children)
    while True:
        try:
            child = next(it)
        except StopIteration:
            return
        except (TimeoutError, MemoryError):
            raise
        except Exception as exc:  # noqa: BLE001 - defence in depth around third-party formats
            # one line for the log; the traceback only in debug mode, never to a client
            log.warning("unpacking %s failed: %s: %s", ftype.value, type(exc).__name__, exc)
            log.debug("unpacking %s failed", ftype.value, exc_info=True)
            return
        yield child


def _zip_entry_span(data: Buffer, start: int) -> int:
    """How many bytes the ZIP local entry at ``start`` spans (header, name, extra field,
    compressed data, data descriptor); the rest of the data when the header does not say."""
    rest = len(data) - start
    if rest < 30:
        return rest
    (flags,) = struct.unpack_from("<H", data, start + 6)
    csize, _, nlen, xlen = struct.unpack_from("<IIHH", data, start + 18)
    if flags & 0x08 and csize == 0:
        return rest  # sizes only in the trailing descriptor
    return int(min(rest, 30 + nlen + xlen + csize + 24))


def _parent() -> str | None:
    """The type of the container of the object being scanned (None at the top)."""
    stack = _ancestors()
    return stack[-1] if stack else None


def _in_range(bounds: tuple[int, int] | None, value: int) -> bool:
    """A .cdb range: None = any; a bound of 0 is open on that side."""
    if bounds is None:
        return True
    lo, hi = bounds
    if lo == hi:
        return value == lo
    return (not lo or value >= lo) and (not hi or value <= hi)


def _containers_ok(container: str | None, intermediates: tuple[str, ...], up: list[str]) -> bool:
    """``Container`` (the immediate parent; CL_TYPE_ANY = the scan root) and
    ``Intermediates`` (ancestors, top-down, last = parent; CL_TYPE_ANY matches any)."""
    if container is not None:
        if container == "CL_TYPE_ANY":
            if up:
                return False
        elif not up or up[-1] != container:
            return False
    if intermediates:
        if len(up) < len(intermediates):
            return False
        for want, have in zip(reversed(intermediates), reversed(up), strict=False):
            if want != "CL_TYPE_ANY" and want != have:
                return False
    return True


@dataclass(slots=True)
class _Budget:
    """What one scan has used of MaxScanSize."""

    scanned: int = 0
    files: int = 0
    limited: bool = False  # a position-dependent limit cut the current layer short


class _Exe(NamedTuple):
    """The executable header of an object: for offsets, for hashes, and whether EOF-n works."""

    offsets: ExeInfo | None
    hashes: ExeInfo | None
    eof_ok: bool


NO_EXE = _Exe(None, None, True)


@dataclass(slots=True)
class _Embedded:
    """Where a raw pass saw embedded-object file types, for a host of type ``host``."""

    host: FileType
    found: list[tuple[int, FileType]]


@dataclass(slots=True)
class _LsigState:
    counts: list[int]
    first: list[int]  # start of the first match of each subsig, -1 if none
    last: list[int]  # start of the last match, what a byte compare reads (-1 if none)

    @classmethod
    def empty(cls, n: int) -> _LsigState:
        return cls([0] * n, [-1] * n, [-1] * n)


def _lsig_sub_hit(
    lsig: LogicalSig,
    lstate: dict[int, _LsigState],
    v: Variant,
    data: Buffer,
    hint: int,
    windows: list[tuple[int, int]],
) -> None:
    """Count the matches of one subsignature variant whose atom occurred (end ``hint``)."""
    cap = lsig.caps[v.sub]  # every hit for a subsignature a byte compare reads
    st = lstate.get(v.owner)
    if st is not None and st.counts[v.sub] >= cap:
        return
    starts: set[int] = set()
    for lo, hi in windows:
        if hint >= 0 and v.cp.atom_max_prefix is not None:
            lo = max(lo, hint - len(v.cp.atom) - v.cp.atom_max_prefix)
        if lo <= hi:
            starts.update(s for s, _ in v.cp.starts(data, lo, hi, cap))
    if not starts:
        return
    if st is None:
        n = len(lsig.subsigs)
        st = lstate[v.owner] = _LsigState.empty(n)
    prev = st.first[v.sub]
    st.counts[v.sub] = min(cap, st.counts[v.sub] + len(starts))
    first = min(starts)
    st.first[v.sub] = first if prev < 0 else min(prev, first)
    # the largest start over every form (wide and ASCII), as libclamav keeps it
    st.last[v.sub] = max(st.last[v.sub], max(starts))


@functools.lru_cache(maxsize=4096)
def _caseless_atom(atom: bytes) -> re.Pattern[bytes]:
    return re.compile(re.escape(atom), re.IGNORECASE)


def _atom_end(data: Buffer, cp: CompiledPattern) -> int | None:
    """End of the atom's first occurrence, as the atom scan reports it; -1 for a pattern
    without an atom, None when the atom does not occur."""
    atom = cp.atom
    if not atom:
        return -1
    if cp.caseless:
        m = _caseless_atom(atom).search(data)
        return None if m is None else m.end()
    pos = data.find(atom)
    return None if pos < 0 else pos + len(atom)


# Deferred atoms are looked up with one Hyperscan pass (compiling a database for them
# costs about 10 us an atom) rather than one search each once there are this many, over
# this many bytes of searching in all.
DEFERRED_SET_MIN = 8
DEFERRED_SET_BYTES = 1 << 23
ATOM_SET_CACHE = 32  # the same sets recur: files of one kind bring the same signatures
_atom_sets = threading.local()  # per thread: Hyperscan scratch cannot be shared


def _atom_ends(data: Buffer, keys: set[tuple[bytes, bool]]) -> dict[tuple[bytes, bool], int | None]:
    """End of the first occurrence of every atom (None where absent), in one pass."""
    order = tuple(sorted(keys))
    cache: OrderedDict[tuple[tuple[bytes, bool], ...], hyperscan.Database] | None
    cache = getattr(_atom_sets, "cache", None)
    if cache is None:
        cache = _atom_sets.cache = OrderedDict()
    db = cache.get(order)
    if db is None:
        db = cache[order] = compile_atoms(order)
        if len(cache) > ATOM_SET_CACHE:
            cache.popitem(last=False)
    else:
        cache.move_to_end(order)
    ends: dict[tuple[bytes, bool], int | None] = dict.fromkeys(order)

    def on_match(aid: int, _from: int, to: int, _flags: int, _ctx: object) -> None:
        ends[order[aid]] = to

    db.scan(data, match_event_handler=on_match)  # type: ignore[type-var]
    return ends


def _gate(expr: Expr, by_sub: Mapping[int, Sequence[Variant]]) -> int | None:
    """The content subsignature that gates a logical signature, or None for no gating.

    It must be required by the expression (see :func:`required`) and have an atom in every
    variant; among those, the one whose weakest atom is rarest wins. Gating needs another
    content subsignature to defer.
    """
    if len(by_sub) < 2:
        return None
    need = zero_state(expr)[0]
    best = -1.0
    best_si: int | None = None
    tied = False
    for si, vs in by_sub.items():  # in increasing order of subsignature
        if not need >> si & 1 or not vs:
            continue
        score = vs[0].cp.score if len(vs) == 1 else min(v.cp.score for v in vs)
        if score < 0:
            continue
        if best_si is None or score > best:
            best, best_si, tied = score, si, False
        elif score == best:
            tied = True
    if tied and need >> 8:
        # a tie goes to the first in the order of ``required``'s set, which is increasing
        # only while every index fits the smallest hash table (below 8)
        return _first_best(required(expr), by_sub)
    return best_si


def _first_best(order: Iterable[int], by_sub: Mapping[int, Sequence[Variant]]) -> int | None:
    """The first subsignature of ``order`` whose weakest atom is rarest (None: no atoms)."""
    best: tuple[float, int] | None = None
    for si in order:
        vs = by_sub.get(si)
        if not vs:
            continue
        score = min(v.cp.score for v in vs)
        if score < 0:
            continue
        if best is None or score > best[0]:
            best = (score, si)
    return None if best is None else best[1]


class Preparer:
    """The variants of body and logical signatures, prepared as the signatures are parsed.

    A loader calls ``feed`` after each database file, so that atom ids are assigned and
    full Hyperscan chunks start compiling (in threads) while later files are still being
    parsed; the Engine built from the same Database then only prepares what is left.
    Variant indices depend on the order the signatures were fed in, never on verdicts: a
    signature is still known by its position in ``Database.body``/``logical``.
    """

    def __init__(self) -> None:
        self.builder = MatcherBuilder()
        self.variants: list[Variant] = []
        self.macro_groups: dict[int, list[Variant]] = {}
        self.pcres: dict[tuple[int, int], _Pcre] = {}
        self.always: list[int] = []
        self.deferred: dict[int, list[int]] = {}
        self.notices: list[str] = []  # PCRE subsignatures that cannot match
        self._body = 0  # signatures of Database.body/logical prepared so far
        self._logical = 0

    def abandon(self) -> None:
        """Stop the compiles (the load failed)."""
        self.builder.abandon()

    def feed(self, db: Database) -> None:
        """Prepare the signatures added to ``db`` since the last call."""
        variants = self.variants
        add = variants.append
        index = self.builder.add
        macro_groups = self.macro_groups
        body = db.body
        for i in range(self._body, len(body)):
            sig = body[i]
            # make_variants(sig.pattern, "", ...) inlined: a body signature has one variant
            off = sig.offset
            v = Variant(compile_pattern(sig.pattern), BODY, i, 0, sig.target, off)
            if off.kind == "macro":
                macro_groups.setdefault(off.value, []).append(v)
            else:
                add(v)
                index(v)
        self._body = len(body)
        pcres = self.pcres
        always = self.always
        deferred = self.deferred
        logical = db.logical
        for li in range(self._logical, len(logical)):
            lsig = logical[li]
            by_sub: dict[int, list[Variant]] = {}
            target = lsig.tdb.target
            dependent = False
            for si, sub in enumerate(lsig.subsigs):
                if isinstance(sub, ContentSub):
                    if sub.modifiers:
                        by_sub[si] = make_variants(
                            sub.pattern, sub.modifiers, LSIG, li, si, target, sub.offset
                        )
                    else:  # make_variants inlined for the plain case (most subsignatures)
                        cp = compile_pattern(sub.pattern)
                        by_sub[si] = [Variant(cp, LSIG, li, si, target, sub.offset)]
                elif isinstance(sub, (ByteCompareSub, MacroSub)):
                    dependent = True
                elif isinstance(sub, PcreSub):
                    pcre = _Pcre(sub)
                    try:
                        pcre.check()
                    except regex.error as exc:
                        # PCRE2 syntax Python's regex lacks: the subsignature never matches
                        self.notices.append(f"{lsig.name}: PCRE not supported ({exc})")
                        continue
                    pcres[(li, si)] = pcre
            # a byte compare or macro reads where another subsignature matched: such
            # signatures (a few dozen in the official database) keep every subsignature in
            # the atom index, verified in the order the scan reports them
            gate = None if dependent else _gate(lsig.expr, by_sub)
            if gate is None:
                for vs in by_sub.values():
                    for v in vs:
                        index(v)
                    variants.extend(vs)
            else:
                later: list[int] = []
                for si, vs in by_sub.items():
                    if si != gate:
                        first = len(variants)
                        later.extend(range(first, first + len(vs)))
                    for v in vs:
                        index(v, si == gate)
                    variants.extend(vs)
                if later:
                    deferred[li] = later
            if zero_state(lsig.expr)[1]:  # true with no subsignature matched
                always.append(li)
        self._logical = len(logical)


class Engine:
    """A compiled database; ``scan`` is safe to call from several threads at once."""

    def __init__(
        self,
        db: Database,
        limits: Limits | None = None,
        *,
        background: bool = False,
        prep: Preparer | None = None,
    ) -> None:
        """Compile ``db``. With ``background`` the Hyperscan databases may still be
        compiling when this returns (a scan or ``write_engine`` waits for them): for a
        caller that has other work to do meanwhile. ``prep`` is a Preparer that has
        already been fed the signatures parsed so far (see Preparer)."""
        with no_gc():
            self._build(db, limits, background, prep)
        release_free_memory()

    def _build(
        self,
        db: Database,
        limits: Limits | None,
        background: bool = False,
        prep: Preparer | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.clean_cache = CleanCache() if self.limits.clean_cache else None
        # the compiled-cache entry this engine was read from (None: built in memory), so
        # that other processes can map the same engine
        self.source: Path | None = None
        self.source_id: tuple[int, int] | None = None  # its device and inode
        self.signatures = db.signatures
        self.notices = list(db.notices)
        self.db_versions = dict(db.versions)
        self.body: Sequence[BodySig] = db.body
        self.body_sources: Sequence[tuple[str, bool, bool] | None] | None = db.body_src
        # newest first, as libclamav keeps them (observed on 1.4.6)
        self.cdb = [
            (sig, re.compile(sig.name_regex.encode("latin-1")) if sig.name_regex else None)
            for sig in reversed(db.cdb)
        ]
        self.lsigs: Sequence[LogicalSig] = db.logical
        # what the compiled cache stores instead of pickles (see compiled.write_engine)
        self.lsig_sources: Sequence[tuple[str, bool] | None] | None = db.logical_src
        self.hashes: HashStore | None = db.hashes
        self.magic: list[MagicRule] = db.ftm if db.ftm is not None else builtin_rules()
        self.magic0 = [r for r in self.magic if r.magic_type == 0]
        prep = prep or Preparer()
        prep.feed(db)
        self.notices.extend(prep.notices)
        self.macro_groups: Mapping[int, Sequence[Variant]] = prep.macro_groups
        self.pcres: Mapping[tuple[int, int], _Pcre] = prep.pcres
        self.always_lsigs = prep.always
        self.deferred: Mapping[int, Sequence[int]] = prep.deferred
        variants = prep.variants
        index = prep.builder.add
        for mi, rule in enumerate(self.magic):
            if rule.magic_type != 1:
                continue
            try:
                pat = parse_pattern(rule.magic)
                off = parse_offset(rule.offset)
            except PatternError as exc:
                log.debug("file-type magic %r skipped: %s", rule.description, exc)
                continue
            vs = make_variants(pat, "", MAGIC, mi, 0, 0, off)
            for v in vs:
                index(v)
            variants.extend(vs)
        self.matcher = prep.builder.finish(variants, background)
        log.debug("prepared %d patterns (%d atoms)", len(variants), self.matcher.atoms)

    @classmethod
    def assemble(
        cls,
        *,
        limits: Limits | None,
        signatures: int,
        notices: list[str],
        db_versions: dict[str, tuple[int, int | None]],
        body: Sequence[BodySig],
        cdb: list[CdbSig],
        lsigs: Sequence[LogicalSig],
        hashes: HashStore | None,
        magic: list[MagicRule] | None,
        macro_groups: Mapping[int, Sequence[Variant]],
        pcres: Mapping[tuple[int, int], _Pcre],
        always_lsigs: list[int],
        deferred: Mapping[int, Sequence[int]],
        matcher: CompiledMatcher,
    ) -> Engine:
        """An engine from parts read back from a compiled-database cache (no parsing)."""
        engine = cls.__new__(cls)
        engine.limits = limits or Limits()
        engine.clean_cache = CleanCache() if engine.limits.clean_cache else None
        engine.source = None
        engine.source_id = None
        engine.signatures = signatures
        engine.notices = notices
        engine.db_versions = db_versions
        engine.body = body
        engine.cdb = [
            (sig, re.compile(sig.name_regex.encode("latin-1")) if sig.name_regex else None)
            for sig in reversed(cdb)
        ]
        engine.lsigs = lsigs
        engine.lsig_sources = None
        engine.body_sources = None
        engine.hashes = hashes
        engine.magic = magic if magic is not None else builtin_rules()
        engine.magic0 = [r for r in engine.magic if r.magic_type == 0]
        engine.macro_groups = macro_groups
        engine.pcres = pcres
        engine.always_lsigs = always_lsigs
        engine.deferred = deferred
        engine.matcher = matcher
        return engine

    # ------------------------------------------------------------------ public API

    def scan(self, data: Buffer, options: ScanOptions | None = None) -> ScanResult:
        """Scan one object held in memory (bytes, or a read-only mmap of a file)."""
        opts = options or ScanOptions()
        result = ScanResult()
        started = time.monotonic()
        limit_ms = self.limits.max_scantime
        scan_deadline(started + limit_ms / 1000 if limit_ms else None)
        try:
            self._scan_root(data, result, opts.allmatch)
        except TimeoutError:
            # MaxScanTime: what was found so far stands; the rest is not scanned (§9.3)
            if self.limits.alert_exceeds_max:
                result.weak.append("Heuristics.Limits.Exceeded.MaxScanTime")
        finally:
            scan_deadline(None)
        if result.weak:
            if opts.allmatch:
                # each heuristic once, as libclamav keeps them
                result.names.extend(dict.fromkeys(result.weak))
            elif not result.names:
                result.names.append(result.weak[0])
            result.weak.clear()
        result.scanned_bytes += len(data)
        result.seconds = time.monotonic() - started
        return result

    # ------------------------------------------------------------------ one object

    def _scan_root(self, data: Buffer, result: ScanResult, allmatch: bool) -> None:
        """The scanned object counts as the first file and towards MaxScanSize, as in
        libclamav: a root over MaxScanSize is not scanned (heuristic with AlertExceedsMax)."""
        limits = self.limits
        if limits.max_scansize and len(data) > limits.max_scansize:
            if limits.alert_exceeds_max:
                result.weak.append("Heuristics.Limits.Exceeded.MaxScanSize")
            return
        self._scan_layer(data, result, allmatch, 0, _Budget(len(data), 1))

    def _cap(self, budget: _Budget) -> int:
        """The most bytes one child may take: MaxFileSize; with MaxFileSize off, what is
        left of MaxScanSize (a child that could never be scanned is not inflated in memory).
        MaxFileSize itself is kept as the cap when set: unpackers copy libclamav's handling
        of members over it (a deflated ZIP member is trimmed to it and scanned)."""
        limits = self.limits
        if limits.max_filesize:
            return min(limits.max_filesize, MAX_CHILD)
        if limits.max_scansize:
            return min(MAX_CHILD, max(0, limits.max_scansize - budget.scanned))
        return MAX_CHILD

    def _scan_layer(
        self,
        data: Buffer,
        result: ScanResult,
        allmatch: bool,
        depth: int,
        budget: _Budget,
        forced: FileType | None = None,
    ) -> None:
        """One object and everything inside it; an allow-listed object clears what was
        found in it and below it (§5)."""
        before, weak = len(result.names), len(result.weak)
        clean = self.clean_cache
        key: tuple[object, ...] | None = None
        if clean is not None and not result.names and not result.weak:
            # clean_cache_check: a layer found clean before is skipped (never after an
            # alert: libclamav stops caching in a scan once anything was found)
            key = (
                hashlib.sha256(data).digest(),
                len(data),
                tuple(_ancestors()),
                forced,
                allmatch,
            )
            if key in clean:
                return
        limited = budget.limited
        budget.limited = False
        self._scan_object(data, result, allmatch, depth, budget, forced)
        if (len(result.names) > before or len(result.weak) > weak) and self.is_allowed(data):
            del result.names[before:]
            del result.weak[weak:]
        if key is not None and clean is not None:
            # a layer cut short by a limit that depends on where it sits (depth, what is
            # left of MaxFiles/MaxScanSize) is not known to be clean anywhere else
            if not budget.limited and not result.names and not result.weak:
                clean.add(key)
        budget.limited = budget.limited or limited

    def _scan_children(
        self,
        data: Buffer,
        ftype: FileType,
        result: ScanResult,
        allmatch: bool,
        depth: int,
        budget: _Budget,
        children: Iterable[Child] | None = None,
    ) -> bool:
        """Scan a container's members (§8, §9.1), or the ``children`` another step found;
        True when the scan should stop."""
        limits = self.limits
        names, weak = result.names, result.weak
        if limits.max_recursion and depth + 1 >= limits.max_recursion:
            budget.limited = True
            if limits.alert_exceeds_max:
                weak.append("Heuristics.Limits.Exceeded.MaxRecursion")
            return False
        cap = self._cap(budget)
        by_filesize = cap == min(limits.max_filesize or MAX_CHILD, MAX_CHILD)
        if not by_filesize:
            budget.limited = True  # members cut to what is left of MaxScanSize: positional
        if children is None:
            if ftype is FileType.ZIP and zip_overlapping_files(bytes(data)):
                # a ZIP whose members overlap (a bomb): nothing is extracted (unzip.c)
                if limits.heuristic_alerts:
                    weak.append("Heuristics.Zip.OverlappingFiles")
                return False
            children = extract(ftype, bytes(data), cap)
        count = 0
        for child in _guarded(children, ftype):
            check_deadline()  # MaxScanTime also between members
            if not child.data and child.name.startswith(MARKER_PREFIX) and not child.encrypted:
                # an unpacker's finding, e.g. Heuristics.PDF.ObfuscatedNameObject, or a limit
                # of its own format (Heuristics.Limits.Exceeded.EmailHeaders ...); flagged
                # oversized when libclamav gives the whole container up at that point
                wanted = (
                    limits.alert_exceeds_max
                    if child.name.startswith(EXCEEDED_PREFIX)
                    else limits.heuristic_alerts
                )
                if wanted:
                    weak.append(child.name)
                    if child.oversized:
                        return True
                continue
            count += 1
            if self.cdb and ftype in MEMBER_ARCHIVES:
                hits = self._cdb_hits(ftype, len(data), count, child)
                if hits:
                    if not allmatch:
                        names.append(hits[0])
                        return True
                    # libclamav checks a ZIP member's metadata twice, from the central
                    # directory and from the local header (observed on 1.4.6)
                    names.extend(hits * 2 if ftype is FileType.ZIP else hits)
            if child.encrypted:
                heuristic = self._encrypted(ftype)
                if heuristic:
                    weak.append(heuristic)
                continue
            budget.files += 1
            if limits.max_files and budget.files > limits.max_files:
                budget.limited = True
                if limits.alert_exceeds_max:
                    weak.append("Heuristics.Limits.Exceeded.MaxFiles")
                return False
            if child.oversized:
                budget.limited = True
                if not by_filesize:
                    # cut at what was left of MaxScanSize: that limit is what it exceeds
                    if limits.alert_exceeds_max:
                        weak.append("Heuristics.Limits.Exceeded.MaxScanSize")
                    return False
                if limits.alert_exceeds_max:
                    weak.append("Heuristics.Limits.Exceeded.MaxFileSize")
                continue
            if limits.max_scansize and budget.scanned + len(child.data) > limits.max_scansize:
                budget.limited = True
                if limits.alert_exceeds_max:
                    weak.append("Heuristics.Limits.Exceeded.MaxScanSize")
                return False
            budget.scanned += len(child.data)
            stack = _ancestors()
            stack.append(ftype.value)
            try:
                self._scan_layer(child.data, result, allmatch, depth + 1, budget, child.ftype)
            finally:
                stack.pop()
            if names and not allmatch:
                return True
        return False

    def _encrypted(self, ftype: FileType) -> str | None:
        """The Heuristics.Encrypted.* name for an unreadable encrypted member, when wanted."""
        limits = self.limits
        if ftype in ENCRYPTED_ARCHIVE_NAMES and limits.alert_encrypted_archive:
            return ENCRYPTED_ARCHIVE_NAMES[ftype]
        if ftype in ENCRYPTED_DOC_NAMES and limits.alert_encrypted_doc:
            return ENCRYPTED_DOC_NAMES[ftype]
        return None

    def _embedded(
        self,
        data: Buffer,
        ftype: FileType,
        found: list[tuple[int, FileType]],
        result: ScanResult,
        allmatch: bool,
        depth: int,
        budget: _Budget,
    ) -> bool:
        """Objects that the raw scan's file-type signatures found inside this one, handled
        as libclamav 1.4's scanraw does; True when the scan should stop.

        An ISO 9660 signature re-types the object and its image is read from there. An SFX
        archive or installer is handed to its parser from the match on (its own bytes are
        not raw-scanned again). The first offset that holds a valid PE header is scanned as
        a whole new object to the end of the data, and ends the list: any further embedded
        executables lie inside it and are found from there.
        """
        limits = self.limits
        size = len(data)
        seen: set[int] = set()
        for offset, kind in sorted(found, key=lambda x: x[0]):
            if offset <= 0 or offset in seen:
                continue
            seen.add(offset)
            if kind is FileType.ISO9660:
                if limits.scan_archive:
                    piece = bytes(data[max(0, offset - ISO_PVD_OFFSET) :])
                    if self._scan_children(piece, kind, result, allmatch, depth, budget):
                        return True
                continue
            if kind is FileType.MSEXE:
                if not limits.scan_pe or ftype not in (FileType.MSEXE, FileType.MSOLE2):
                    continue
                if size - offset > limits.max_embedded_pe:
                    continue
                with memoryview(data) as view:
                    if parse_executable(view[offset:]) is None:
                        continue
                if limits.max_recursion and depth + 2 > limits.max_recursion:
                    budget.limited = True
                    return False
                stack = _ancestors()
                stack.append(ftype.value)
                try:
                    # a layer for the slice, then one for the extracted executable
                    self._scan_layer(bytes(data[offset:]), result, allmatch, depth + 2, budget)
                finally:
                    stack.pop()
                return bool(result.names) and not allmatch
            if not limits.scan_archive:
                continue
            start, end = offset, size
            if limits.max_files and budget.files >= limits.max_files:
                budget.limited = True
                return False  # nothing more may be extracted in this scan
            members: Iterable[Child] | None = None
            if kind in SFX_ARCHIVES:
                as_type = SFX_ARCHIVES[kind]
                if ftype is as_type or as_type not in CONTAINER_TYPES:
                    continue
                if kind is FileType.ZIPSFX:
                    # one member per local header found, read from there: only its own
                    # bytes are copied, so a file full of headers stays linear
                    end = start + _zip_entry_span(data, start)
                    members = extract(kind, bytes(data[start:end]), self._cap(budget))
            elif kind in EXE_WRAPPERS:
                as_type = kind
                if ftype is not FileType.MSEXE or kind not in CONTAINER_TYPES:
                    continue
                if kind is FileType.NULSFT:
                    if offset <= 4:
                        continue
                    start = offset - 4  # the NSIS first header starts before its magic
            else:
                continue
            stack = _ancestors()
            stack.append(ftype.value)
            try:
                stop = self._scan_children(
                    bytes(data[start:end]), as_type, result, allmatch, depth + 1, budget, members
                )
            finally:
                stack.pop()
            if stop:
                return True
        return False

    def _cdb_hits(self, ftype: FileType, size: int, pos: int, child: Child) -> list[str]:
        """Container-metadata signatures matching one member (§6.1)."""
        real = child.real if child.real >= 0 else len(child.data)
        packed = child.compressed if child.compressed >= 0 else real
        name = child.name.encode("utf-8", "surrogateescape")
        out = []
        for sig, rx in self.cdb:
            if sig.container_type is not None and sig.container_type != ftype.value:
                continue
            if not (
                _in_range(sig.container_size, size)
                and _in_range(sig.size_in_container, packed)
                and _in_range(sig.size_real, real)
                and _in_range(sig.file_pos, pos)
                and (sig.encrypted is None or sig.encrypted == int(child.encrypted))
                and (rx is None or rx.search(name))
            ):
                continue
            out.append(sig.name)
        return out

    def _scan_object(
        self,
        data: Buffer,
        result: ScanResult,
        allmatch: bool,
        depth: int,
        budget: _Budget,
        forced: FileType | None = None,
    ) -> None:
        """Type the object and run ClamAV's passes over it (observed on 1.4.6).

        Archives, mail and documents: their members first (cli_magic_scan's first switch).
        Then the raw scan: executables and most types, one pass with the generic and the
        type's signatures; binary data, a generic pass, then a second one adding target 14
        ("other"); text, a raw generic pass, then the normalised text with targets 0 and 7;
        text that the file-type magic reveals as HTML is not scanned raw at all (hashes
        included): only its normalised forms are, with targets 0 and 3. Each pass reports
        body signatures, then hash signatures, then logical signatures. The first raw pass
        also finds embedded objects (SFX archives, installers, executables), scanned next.
        Executables and PDFs are unpacked last (the second switch).
        """
        limits = self.limits
        oversized = limits.oversized(len(data))
        if oversized is not None:
            result.weak.extend(oversized)
            return
        if len(data) < MIN_SCAN_SIZE:
            return
        names = result.names
        if forced is FileType.ANY:
            # raw only: no typing, no unpacking (e.g. an NSIS header script)
            found, _ = self._raw_scan(data, GENERIC, NO_EXE, None, True, allmatch)
            names.extend(found)
            return
        ftype: FileType
        if forced is not None:
            ftype = forced
        else:
            head = bytes(data[:1024])
            ftype = detect_type(head, self.magic0)
            if ftype in TEXT_TYPES or ftype is FileType.BINARY_DATA:
                ftype = self._head_magic(head, ftype)
                if ftype in HTML_TYPES and _parent() == FileType.AUTOIT.value:
                    # an AutoIt script that looks like HTML stays text (scanners.c)
                    ftype = FileType.TEXT_ASCII
        if ftype == FileType.IGNORED:
            return
        if ftype in CONTAINER_TYPES and ftype not in POST_RAW_TYPES and self._parse(ftype):
            # archives: members first, then the container's own raw pass
            if self._scan_children(data, ftype, result, allmatch, depth, budget):
                return
        elif (ftype is FileType.BINARY_DATA or ftype in TEXT_TYPES) and limits.scan_archive:
            unpack = sniff(bytes(data[:8]))
            if unpack is not None:
                members = unpack(bytes(data), self._cap(budget))
                if self._scan_children(data, ftype, result, allmatch, depth, budget, members):
                    return
        collect: _Embedded | None = None
        if ftype not in NO_TYPE_RECOGNITION:
            if not (ftype is FileType.ZIP and len(data) > limits.max_zip_type_rcg):
                host = FileType.ANY if ftype is FileType.TEXT_ASCII else ftype
                collect = _Embedded(host, [])

        def run(
            buf: Buffer, targets: frozenset[int], exe: _Exe, hashes: bool, first: bool = False
        ) -> bool:
            found, _ = self._raw_scan(
                buf, targets, exe, None, hashes, allmatch, collect if first else None
            )
            names.extend(found)
            if found and not allmatch:
                return True
            return first and self._after_raw(data, ftype, collect, result, allmatch, depth, budget)

        mail_targets: frozenset[int] | None = None
        if ftype in TEXT_TYPES:
            found, retype = self._raw_scan(data, GENERIC, NO_EXE, ftype, True, allmatch, collect)
            if retype in HTML_TYPES and ftype is FileType.TEXT_ASCII:
                # an HTML magic anywhere in ASCII text turns it into HTML (filetypes.c)
                ftype = retype
            else:
                names.extend(found)
                if found and not allmatch:
                    return
                if self._after_raw(data, ftype, collect, result, allmatch, depth, budget):
                    return
                # a mail magic past the first KB: parsed as mail after the raw scan, then
                # scanned with the mail signatures too (scanraw, cli_magic_scan)
                as_mail = (retype is FileType.MAIL and ftype is FileType.TEXT_ASCII) or (
                    retype is FileType.MHTML
                )
                if as_mail and limits.scan_mail:
                    assert retype is not None
                    if self._scan_children(data, retype, result, allmatch, depth, budget):
                        return
                # observed on 1.4.6: text re-typed as mail gets a pass with the generic and
                # mail signatures; a text part of a mail one with the mail signatures only
                if retype is FileType.MAIL and as_mail:
                    mail_targets = MAIL_TARGETS
                elif _parent() == FileType.MAIL.value:
                    mail_targets = MAIL_ONLY
        if ftype in HTML_TYPES:
            if limits.scan_html and len(data) <= limits.max_html_normalize:
                raw = bytes(data)
                if ftype is FileType.HTML_UTF16:
                    raw = utf16_to_ascii(raw)  # as ClamAV: the HTML parser sees ASCII
                forms = normalise_html(raw, max_notags=limits.max_html_notags)
                for form in (forms.nocomment, forms.notags, forms.script):
                    if form and run(form, HTML_TARGETS, NO_EXE, False):
                        return
                if forms.script and run(forms.script, TEXT_TARGETS, NO_EXE, False):
                    return
                # data: URIs, which libclamav decodes last (its rfc2397 directory)
                uris = data_uris(raw, self._cap(budget), as_mail=True)
                self._scan_children(data, ftype, result, allmatch, depth, budget, uris)
            return
        if ftype in TEXT_TYPES:
            if len(data) <= limits.max_script_normalize:
                norm = normalise_text(bytes(data))
                if norm and run(norm, TEXT_TARGETS, NO_EXE, False):
                    return
            if mail_targets is not None and limits.scan_mail:
                run(data, mail_targets, NO_EXE, False)
            return
        target = TARGET_TYPES.get(ftype, 0)
        if target == OTHER_TARGET:
            if run(data, GENERIC, NO_EXE, True, True):
                return
            run(data, frozenset({0, OTHER_TARGET}), NO_EXE, True)
            return
        exe = NO_EXE
        if ftype in EXE_TYPES:
            with memoryview(data) as view:  # released before a mapped file is closed
                info = parse_executable(view)
            ok = info is not None and info.target_ok
            exe = _Exe(info if ok else None, info, ok)
        if run(data, frozenset({0, target}), exe, True, True):
            return
        if exe.hashes is not None:
            found = self._pe_hash_scan(data, exe.hashes, allmatch)
            names.extend(found)
            if found and not allmatch:
                return
            if self._overlay(data, exe.hashes, result, allmatch, depth, budget):
                return
        if ftype in POST_RAW_TYPES and ftype in CONTAINER_TYPES and self._parse(ftype):
            self._scan_children(data, ftype, result, allmatch, depth, budget)

    def _overlay(
        self,
        data: Buffer,
        info: ExeInfo,
        result: ScanResult,
        allmatch: bool,
        depth: int,
        budget: _Budget,
    ) -> bool:
        """InstallShield files appended to a 32-bit PE (libclamav's cli_scanpe looks for
        them in the overlay, after the section hashes, before unpacking)."""
        if info.kind != "pe" or info.pe64 or not self.limits.scan_archive:
            return False
        overlay = max((s.raw_offset + s.raw_size for s in info.sections), default=0)
        if not 0 < overlay < len(data):
            return False
        members = ishield(bytes(data[overlay:]), self._cap(budget))
        return self._scan_children(data, FileType.MSEXE, result, allmatch, depth, budget, members)

    def _parse(self, ftype: FileType) -> bool:
        """Whether the parser of a type is switched on (ScanArchive, ScanPE, ...)."""
        if ftype is FileType.UUENCODED:
            return True  # libclamav decodes uuencoded files whatever the options
        switch = PARSER_SWITCH.get(ftype, "scan_archive")
        return bool(getattr(self.limits, switch))

    def _after_raw(
        self,
        data: Buffer,
        ftype: FileType,
        collect: _Embedded | None,
        result: ScanResult,
        allmatch: bool,
        depth: int,
        budget: _Budget,
    ) -> bool:
        """The embedded objects the first raw pass found; True when the scan should stop."""
        if collect is None or not collect.found:
            return False
        return self._embedded(data, ftype, collect.found, result, allmatch, depth, budget)

    def _head_magic(self, head: bytes, ftype: FileType) -> FileType:
        """Type-1 magic over the first KB of text or binary data (HTML, mail, ...).

        The winning rule follows ClamAV's ranking; with no hit the head is tried again as
        UTF-16, where an HTML hit means HTML_UTF16. SFX results do not re-type the object.
        """
        found = self._magic_hits(head, ftype)
        if found is None:
            again = self._magic_hits(utf16_to_ascii(head), ftype)
            if again in HTML_TYPES:
                return FileType.HTML_UTF16
            return ftype
        return found

    def _magic_hits(self, head: bytes, ftype: FileType) -> FileType | None:
        best: FileType | None = None
        variants = self.matcher.variants
        for vi, hint in self.matcher.candidates(head, (), magic=True):
            v = variants[vi]
            if v.kind != MAGIC:
                continue
            rule = self.magic[v.owner]
            if rule.required not in (ftype, FileType.ANY) or rule.result in SFX_TYPES:
                continue
            windows = resolve_offset(v.offset, len(head), None)
            if first_in_windows(v.cp, head, windows, hint) is None:
                continue
            if rule.result is FileType.IGNORED:
                return FileType.IGNORED
            if outranks(rule.result, best):
                best = rule.result
        return best

    def _raw_scan(
        self,
        data: Buffer,
        targets: frozenset[int],
        exe_ctx: _Exe,
        ftype: FileType | None,
        hashes: bool,
        allmatch: bool,
        collect: _Embedded | None = None,
    ) -> tuple[list[str], FileType | None]:
        """One pass over a buffer: the names found in ClamAV's order, and any re-typing.

        Without ``allmatch`` it stops at the first name. With ``collect``, the file-type
        signatures that reveal embedded objects (SFX archives, installers, executables,
        ISO images) record where they matched.
        """
        size = len(data)
        exe, eof_ok = exe_ctx.offsets, exe_ctx.eof_ok
        variants = self.matcher.variants
        body_hits: list[tuple[int, int, int, int]] = []
        lstate: dict[int, _LsigState] = {}
        retype: FileType | None = None
        lsigs = self.lsigs
        # the file-type magic matters only to re-type the object or to find embedded ones
        cands = self.matcher.candidates(data, targets, magic=ftype is not None or bool(collect))
        for n, (vi, hint) in enumerate(cands):
            if n & 63 == 63:
                check_deadline()
            v = variants[vi]
            if v.kind == MAGIC:
                if ftype is not None and retype is None:
                    rule = self.magic[v.owner]
                    if rule.required in (ftype, FileType.ANY):
                        windows = resolve_offset(v.offset, size, exe, eof_ok)
                        if first_in_windows(v.cp, data, windows, hint) is not None:
                            retype = rule.result
                if collect is not None:
                    self._collect(v, data, hint, exe, eof_ok, collect)
                continue
            if v.target not in targets:
                continue
            windows = resolve_offset(v.offset, size, exe, eof_ok)
            if not windows:
                continue
            if v.kind == BODY:
                m = first_in_windows(v.cp, data, windows, hint)
                if m is not None:
                    end = m[1]
                    # ClamAV scans 128 KiB windows, the type's matcher before the generic one
                    body_hits.append((end // SCAN_WINDOW, v.target == 0, end, v.owner))
                continue
            _lsig_sub_hit(lsigs[v.owner], lstate, v, data, hint, windows)
        if lstate and self.deferred:
            self._verify_deferred(lstate, data, exe, eof_ok)
        found: list[str] = []
        for *_, owner in sorted(body_hits):
            found.append(self.body[owner].name)
            if not allmatch:
                return found, retype
        if hashes:
            found.extend(self._hash_scan(data, allmatch))
            if found and not allmatch:
                return found[:1], retype
        for li in self.always_lsigs:
            if li not in lstate and lsigs[li].tdb.target in targets:
                n = len(lsigs[li].subsigs)
                lstate[li] = _LsigState.empty(n)
        # the type's logical signatures are evaluated before the generic ones
        for li in sorted(lstate, key=lambda i: (lsigs[i].tdb.target == 0, i)):
            if self._lsig_matches(li, lstate[li], data, exe, eof_ok, targets):
                found.append(lsigs[li].name)
                if not allmatch:
                    return found, retype
        return found, retype

    def _verify_deferred(
        self, lstate: dict[int, _LsigState], data: Buffer, exe: ExeInfo | None, eof_ok: bool
    ) -> None:
        """Verify the other subsignatures of the logical signatures whose gate matched.

        Only a signature's gate (a subsignature its expression cannot do without, with the
        rarest atom) is in the atom index; the rest are checked here, for the few
        signatures in play, exactly as if their atoms had been reported by the scan.
        """
        variants = self.matcher.variants
        size = len(data)
        todo = [(li, variants[vi]) for li in list(lstate) for vi in self.deferred.get(li, ())]
        if not todo:
            return
        # where each atom first ends: one search per distinct atom, or, when there are many
        # of them in a large buffer, one pass of a small Hyperscan database built for them
        ends: dict[tuple[bytes, bool], int | None] = {}
        keys = {(v.cp.atom, v.cp.caseless) for _, v in todo if v.cp.atom}
        if len(keys) >= DEFERRED_SET_MIN and len(keys) * size >= DEFERRED_SET_BYTES:
            ends = _atom_ends(data, keys)
        for li, v in todo:
            check_deadline()
            key = (v.cp.atom, v.cp.caseless)
            if key in ends:
                hint = ends[key]
            else:
                hint = ends[key] = _atom_end(data, v.cp)
            if hint is None:
                continue  # the atom is absent: no match can contain it
            windows = resolve_offset(v.offset, size, exe, eof_ok)
            if windows:
                _lsig_sub_hit(self.lsigs[li], lstate, v, data, hint, windows)

    def _collect(
        self,
        v: Variant,
        data: Buffer,
        hint: int,
        exe: ExeInfo | None,
        eof_ok: bool,
        collect: _Embedded,
    ) -> None:
        """Record the offsets of an embedded-object file-type signature (scanraw's list).

        As libclamav 1.4: SFX-and-later types in any host, executables only inside
        executables and OLE2 documents; no more once ten objects are listed, except ZIP
        entries.
        """
        rule = self.magic[v.owner]
        kind = rule.result
        host = collect.host
        if rule.required not in (FileType.ANY, host):
            return
        if kind is FileType.MSEXE:
            if host not in (FileType.MSEXE, FileType.MSOLE2):
                return
        elif kind not in EMBEDDED_KINDS:
            return
        # ZIP entries have no cap; other types stop once ten objects are listed
        room = MAX_CHILD if kind is FileType.ZIPSFX else MAX_EMBEDDED_OBJ - len(collect.found)
        if room <= 0:
            return
        for lo, hi in resolve_offset(v.offset, len(data), exe, eof_ok):
            if hint >= 0 and v.cp.atom_max_prefix is not None:
                lo = max(lo, hint - len(v.cp.atom) - v.cp.atom_max_prefix)
            if lo > hi:
                continue
            for start, _ in v.cp.starts(data, lo, hi, room):
                collect.found.append((start, kind))
                room -= 1
            if room <= 0:
                return

    def _lsig_matches(
        self,
        li: int,
        st: _LsigState,
        data: Buffer,
        exe: ExeInfo | None,
        eof_ok: bool,
        targets: frozenset[int],
    ) -> bool:
        lsig = self.lsigs[li]
        tdb = lsig.tdb
        if tdb.target not in targets:
            return False
        for si, sub in enumerate(lsig.subsigs):
            if isinstance(sub, ByteCompareSub):
                ref = st.last[sub.ref]
                if ref >= 0 and byte_compare(sub, data, ref):
                    st.counts[si] = 1
            elif isinstance(sub, MacroSub):
                prev = st.first[si - 1]
                if prev >= 0 and self._macro(sub, data, prev):
                    st.counts[si] = 1
            elif isinstance(sub, PcreSub):
                if evaluate(sub.trigger, st.counts)[0]:
                    pcre = self.pcres.get((li, si))
                    if pcre is not None:
                        st.counts[si] = self._pcre_count(pcre, data, exe, eof_ok)
        if not evaluate(lsig.expr, st.counts)[0]:
            return False
        # target description conditions (§4.2)
        if not _containers_ok(tdb.container, tdb.intermediates, _ancestors()):
            return False
        if tdb.icon_groups:
            return False  # icon matching needs .idb support, which Vigil lacks (as if none loaded)
        if tdb.handler_type is not None:
            return False  # a handler signature never alerts; its rescan comes with unpacking
        if tdb.file_size is not None and not tdb.file_size[0] <= len(data) <= tdb.file_size[1]:
            return False
        if tdb.entry_point is not None:
            if exe is None or exe.entry_point is None:
                return False
            if not tdb.entry_point[0] <= exe.entry_point <= tdb.entry_point[1]:
                return False
        if tdb.sections is not None:
            if exe is None or not tdb.sections[0] <= len(exe.sections) <= tdb.sections[1]:
                return False
        return True

    def _macro(self, sub: MacroSub, data: Buffer, prev_start: int) -> bool:
        for v in self.macro_groups.get(sub.group, ()):
            if v.cp.first(data, prev_start + sub.lo, prev_start + sub.hi) is not None:
                return True
        return False

    def _pcre_count(self, p: _Pcre, data: Buffer, exe: ExeInfo | None, eof_ok: bool) -> int:
        """How many hits a PCRE subsignature scores (§4.6 offsets and flags)."""
        sub = p.sub
        off = sub.offset
        encompass = "e" in sub.flags
        too_big = self.limits.pcre_max_filesize and len(data) > self.limits.pcre_max_filesize
        if too_big and not encompass:
            return 0
        if off.kind == "any":
            lo, hi, anchored = 0, len(data), p.anchored
        else:
            wins = resolve_offset(off, len(data), exe, eof_ok)
            if not wins:
                return 0
            lo, hi = wins[0]
            anchored = p.anchored or (not off.has_shift and "r" not in sub.flags)
        subject = data
        end = len(data)
        if encompass and off.kind != "any":
            end = min(len(data), lo + off.shift)
        try:
            timeout = min(PCRE_TIMEOUT, check_deadline() or PCRE_TIMEOUT)
            if anchored:
                return 1 if p.rx.match(subject, lo, end, concurrent=True, timeout=timeout) else 0
            count = 0
            matches = p.rx.finditer(
                subject, lo, end, overlapped=False, concurrent=True, timeout=timeout
            )
            for m in matches:
                if off.kind != "any" and off.has_shift and not encompass and m.start() > hi:
                    break
                count += 1
                if not p.global_:
                    break
            return count
        except TimeoutError:
            check_deadline()  # the whole scan's time is up: stop it
            log.debug("PCRE %r timed out", sub.regex[:60])
            return 0

    # ------------------------------------------------------------------ hashes

    def _hash_scan(self, data: Buffer, allmatch: bool) -> list[str]:
        """Whole-object hash signatures (§5)."""
        store = self.hashes
        found: list[str] = []
        if store is None:
            return found
        size = len(data)
        digests: dict[int, bytes] = {}
        for table in store.kinds("file"):
            if not table.wants(size):
                continue
            d = digests.get(table.width)
            if d is None:
                d = digests[table.width] = hashlib.new(ALGORITHMS[table.width], data).digest()
            found.extend(store.names[ni] for ni in table.lookup(d, size))
            if found and not allmatch:
                return found
        return found

    def _pe_hash_scan(self, data: Buffer, exe: ExeInfo, allmatch: bool) -> list[str]:
        """PE section hashes, then the import hash: libclamav checks them in its PE scan,
        after the raw pass (and after embedded files), observed on 1.4.6."""
        store = self.hashes
        found: list[str] = []
        if store is None or exe.kind != "pe":
            return found
        sections = store.kinds("section")
        for off, length in section_hash_inputs(exe) if sections else ():
            chunk = data[off : off + length]
            cache: dict[int, bytes] = {}
            for table in sections:
                if not table.wants(length):
                    continue
                d = cache.get(table.width)
                if d is None:
                    d = cache[table.width] = hashlib.new(ALGORITHMS[table.width], chunk).digest()
                found.extend(store.names[ni] for ni in table.lookup(d, length))
                if found and not allmatch:
                    return found
        if exe.imports is not None and not exe.pe64:  # PE32+ never alerts on imports
            imports = exe.imports
            isize = len(imports)
            for table in store.kinds("import"):
                if table.wants(isize):
                    d = hashlib.new(ALGORITHMS[table.width], imports).digest()
                    found.extend(store.names[ni] for ni in table.lookup(d, isize))
        return found if allmatch else found[:1]

    def is_allowed(self, data: Buffer) -> bool:
        """Whether the object's hash is on the allow-list (.fp/.sfp)."""
        store = self.hashes
        if store is None:
            return False
        size = len(data)
        for table in store.kinds("fp"):
            if table.wants(size):
                d = hashlib.new(ALGORITHMS[table.width], data).digest()
                if table.lookup(d, size):
                    return True
        return False
