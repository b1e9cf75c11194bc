"""Signatures -> one compiled matcher: a Hyperscan literal set of atoms plus verifiers.

Every body pattern (an .ndb signature, a content subsignature of an .ldb signature, a
file-type magic of type 1) becomes one or more *variants* (``wa`` gives a wide and an ASCII
one). Each variant contributes one literal atom; identical atoms are compiled once. A scan
runs Hyperscan once per buffer; only variants whose atom occurred are verified.
"""

from __future__ import annotations

import functools
import os
import threading
from binascii import hexlify
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import hyperscan

from vigil.engine.buffer import Buffer
from vigil.engine.executables import ExeInfo
from vigil.engine.matcher import cache
from vigil.engine.matcher.body import CompiledPattern, compile_pattern
from vigil.engine.signatures.pattern import Offset, Pattern

__all__ = [
    "BODY",
    "LSIG",
    "MAGIC",
    "MACRO",
    "MAGIC_GROUP",
    "AtomGroup",
    "CHUNK_ATOMS",
    "MatcherBuilder",
    "compile_atoms",
    "Variant",
    "CompiledMatcher",
    "resolve_offset",
]

# variant owner kinds
BODY, LSIG, MAGIC, MACRO = 0, 1, 2, 3
# A bare ``SEx`` offset alerts only in files smaller than this (observed on 1.4.6, §3.1).
SE_BARE_LIMIT = 262144


@dataclass(slots=True)
class Variant:
    """One verifiable pattern and what it belongs to."""

    cp: CompiledPattern
    kind: int  # BODY, LSIG, MAGIC or MACRO
    owner: int  # index of the body sig / logical sig / magic rule / macro group
    sub: int  # subsignature index for LSIG
    target: int
    offset: Offset


def resolve_offset(
    off: Offset, size: int, exe: ExeInfo | None, eof_ok: bool = True
) -> list[tuple[int, int]]:
    """Windows [lo, hi] in which a match may start, for one object (§3.1).

    ``eof_ok`` is False for an executable whose header did not parse: libclamav then fails
    every relative offset, ``EOF-n`` included (observed on 1.4.6).
    """
    kind = off.kind
    if kind == "any":
        return [(0, size)]
    base: int | None
    if kind == "abs":
        base = off.value
    elif kind == "eof":
        if not eof_ok:
            return []
        base = size - off.value
    else:
        if exe is None:
            return []
        if kind == "ep":
            base = None if exe.entry_point is None else exe.entry_point + off.value
        elif kind == "sec":
            secs = exe.sections
            base = secs[off.section].raw_offset + off.value if off.section < len(secs) else None
        elif kind == "last":
            base = exe.sections[-1].raw_offset + off.value if exe.sections else None
        elif kind == "secall":
            if off.section >= len(exe.sections):
                return []
            if not off.has_shift and size >= SE_BARE_LIMIT:
                return []
            sec = exe.sections[off.section]
            return [(sec.raw_offset, sec.raw_offset + sec.raw_size + off.shift)]
        elif kind == "vi":
            return [(p, p) for p in exe.version_info]
        else:
            return []
    if base is None or base < 0 or base > size:
        return []
    return [(base, base + off.shift)]


MAGIC_GROUP = -1  # the group of the file-type magic variants


class AtomGroup:
    """The atoms of one group of variants and their Hyperscan databases.

    Variants are grouped by target type (file-type magic on its own): an object is scanned
    only with the groups its pass can use, so a text file never pays for the hundreds of
    thousands of atoms of PE signatures. A large group is split into databases of at most
    CHUNK_ATOMS atoms (see MatcherBuilder). A group read back from the compiled cache loads
    its databases on first use: a daemon whose workers do the scanning, or a worker that
    never meets a PE file, never holds those atoms in memory.
    """

    __slots__ = ("by_atom", "_dbs", "_load", "_lock")

    def __init__(
        self,
        by_atom: Sequence[Sequence[int]],
        dbs: Sequence[hyperscan.Database] | None = None,
        load: Callable[[], Sequence[hyperscan.Database]] | None = None,
    ) -> None:
        if dbs is None and load is None:
            raise ValueError("an atom group needs its databases or a way to load them")
        self.by_atom = by_atom  # atom id -> variant indices
        self._dbs = dbs
        self._load = load
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._dbs is not None

    @property
    def dbs(self) -> Sequence[hyperscan.Database]:
        """The group's databases; their match ids are the group's atom ids."""
        dbs = self._dbs
        if dbs is None:
            with self._lock:
                if self._dbs is None:
                    assert self._load is not None
                    self._dbs = self._load()
                    self._load = None
                dbs = self._dbs
        return dbs


def _atom_exprs(keys: Sequence[tuple[bytes, bool]]) -> tuple[list[bytes], list[int]]:
    """Hyperscan expressions and flags for (atom, caseless) literals, reported once each.

    Atoms are escaped byte by byte (\\xHH, formatted in C by hexlify): python-hyperscan's
    literal mode cuts at NUL bytes."""
    exprs = [b"\\x" + hexlify(atom, b" ").replace(b" ", b"\\x") for atom, _ in keys]
    base = hyperscan.HS_FLAG_SINGLEMATCH
    caseless = base | hyperscan.HS_FLAG_CASELESS
    flags = [caseless if cl else base for _, cl in keys]
    return exprs, flags


def _compile_exprs(exprs: list[bytes], flags: list[int], first: int) -> hyperscan.Database:
    db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    db.compile(
        expressions=exprs,
        ids=list(range(first, first + len(exprs))),
        elements=len(exprs),
        flags=flags,
    )
    return db


def compile_atoms(keys: Sequence[tuple[bytes, bool]], first: int = 0) -> hyperscan.Database:
    """A block-mode database of the literals; match id ``first + i`` is ``keys[i]``."""
    return _compile_exprs(*_atom_exprs(keys), first)


def _compile_chunk(keys: Sequence[tuple[bytes, bool]], first: int) -> hyperscan.Database:
    exprs, flags = _atom_exprs(keys)
    cache_id = cache.cache_key(exprs, flags, first)
    db = cache.load(cache_id)
    if db is None:
        db = _compile_exprs(exprs, flags, first)
        cache.store(cache_id, db)
    return db


# Atoms per Hyperscan database of a group. Hyperscan's compile time grows faster than the
# number of literals (at full scale: 200 k atoms in one database 7.1 s of CPU, in chunks
# of 50 k 5.0 s), and separate chunks compile on separate cores, the first while the
# signatures are still being read; the price is one more scan call per chunk.
CHUNK_ATOMS = 50_000


class MatcherBuilder:
    """Assigns atom ids as variants arrive and compiles each group's atoms in chunks.

    A chunk of CHUNK_ATOMS atoms is final as soon as it is full (ids are assigned in
    order of first appearance and never change), so its compile starts at once, in a
    thread (Hyperscan compiles without the GIL), while the caller goes on preparing
    variants. The file-type magic group is never split: the order in which its atoms are
    reported matters (the first magic that matches re-types an object).
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1))
        self._ids: dict[int, dict[tuple[bytes, bool], int]] = {}
        self._keys: dict[int, list[tuple[bytes, bool]]] = {}
        self._by_atom: dict[int, list[list[int]]] = {}
        self._jobs: dict[int, list[Future[hyperscan.Database]]] = {}
        self._always: list[int] = []
        self.count = 0  # variants added so far: the next one's index

    def add(self, v: Variant, indexed: bool = True) -> int:
        """Add the next variant (its index is returned); ``indexed`` False leaves its atom
        out of the index: the scanner verifies such a variant itself."""
        vi = self.count
        self.count += 1
        if not indexed:
            return vi
        atom = v.cp.atom
        if not atom:
            self._always.append(vi)
            return vi
        g = MAGIC_GROUP if v.kind == MAGIC else v.target
        ids = self._ids.get(g)
        if ids is None:
            ids = self._ids[g] = {}
            self._keys[g] = []
            self._by_atom[g] = []
            self._jobs[g] = []
        key = (atom, v.cp.caseless)
        aid = ids.get(key)
        if aid is None:
            keys = self._keys[g]
            aid = ids[key] = len(keys)
            keys.append(key)
            self._by_atom[g].append([vi])
            if g != MAGIC_GROUP and len(keys) % CHUNK_ATOMS == 0:
                self._submit(g, len(keys) - CHUNK_ATOMS)
        else:
            self._by_atom[g][aid].append(vi)
        return vi

    def _submit(self, g: int, first: int) -> None:
        chunk = self._keys[g][first : first + CHUNK_ATOMS]
        self._jobs[g].append(self._pool.submit(_compile_chunk, chunk, first))

    def abandon(self) -> None:
        """Drop the chunks not yet compiling and wait for those that are (a failed load)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._jobs.clear()

    def finish(self, variants: Sequence[Variant], background: bool = False) -> CompiledMatcher:
        """The matcher over ``variants`` (those added, in order). With ``background`` it is
        returned before the last databases are compiled: a group waits for them when first
        used, so the caller (writing the compiled cache) overlaps the compiles."""
        if len(variants) != self.count:
            raise ValueError("the variants are not those added to the builder")
        # the unfinished chunks, the largest first so that small ones fill the other cores
        tails = sorted(self._keys, key=lambda g: -(len(self._keys[g]) % CHUNK_ATOMS or 1))
        for g in tails:
            n = len(self._keys[g])
            done = len(self._jobs[g]) * CHUNK_ATOMS
            if g == MAGIC_GROUP:
                self._jobs[g].append(self._pool.submit(_compile_chunk, self._keys[g], 0))
            elif n > done:
                self._submit(g, done)
        self._pool.shutdown(wait=not background)
        groups = {
            g: AtomGroup(self._by_atom[g], load=functools.partial(_results, self._jobs[g]))
            for g in sorted(self._keys)
        }
        self._ids.clear()
        self._keys.clear()
        return CompiledMatcher.assemble(variants, groups, self._always)


def _end(hit: tuple[int, int]) -> int:
    return hit[1]


def _results(jobs: Sequence[Future[hyperscan.Database]]) -> list[hyperscan.Database]:
    return [job.result() for job in jobs]


class CompiledMatcher:
    """The immutable, shareable result of compiling every body pattern of a database:
    made by MatcherBuilder.finish, or from a compiled cache entry's parts (assemble)."""

    @classmethod
    def assemble(
        cls, variants: Sequence[Variant], groups: Mapping[int, AtomGroup], always: list[int]
    ) -> CompiledMatcher:
        """A matcher from parts read back from a compiled-database cache."""
        matcher = cls.__new__(cls)
        matcher._adopt(variants, groups, always)
        return matcher

    def _adopt(
        self, variants: Sequence[Variant], groups: Mapping[int, AtomGroup], always: list[int]
    ) -> None:
        self.variants = variants
        self.groups = groups
        self.always = always
        self.atoms = sum(len(g.by_atom) for g in groups.values())
        self._local = threading.local()

    def _scratch(self, group: int, chunk: int) -> hyperscan.Scratch:
        """One scratch space per thread and database: Hyperscan's must not be shared."""
        scratches: dict[tuple[int, int], hyperscan.Scratch] | None
        scratches = getattr(self._local, "scratch", None)
        if scratches is None:
            scratches = self._local.scratch = {}
        s = scratches.get((group, chunk))
        if s is None:
            s = scratches[(group, chunk)] = hyperscan.Scratch(self.groups[group].dbs[chunk])
        return s

    def candidates(
        self, data: Buffer, targets: Iterable[int] = (), magic: bool = True
    ) -> list[tuple[int, int]]:
        """(variant index, end of the atom's first occurrence or -1) for every candidate.

        Only the groups of ``targets`` are scanned, and the file-type magic with ``magic``;
        the atomless variants are always listed (the caller checks their target).
        """
        out: list[tuple[int, int]] = [(vi, -1) for vi in self.always]
        if not data:
            return out
        wanted = [MAGIC_GROUP] if magic else []
        wanted.extend(sorted(t for t in targets if t in self.groups))
        hits: dict[int, int] = {}

        def on_match(aid: int, _from: int, to: int, _flags: int, _ctx: object) -> None:
            hits[aid] = to

        for g in wanted:
            group = self.groups.get(g)
            if group is None:
                continue
            hits.clear()
            dbs = group.dbs
            for k, db in enumerate(dbs):
                db.scan(data, match_event_handler=on_match, scratch=self._scratch(g, k))  # type: ignore[type-var]
            by_atom = group.by_atom
            # in the order their atoms end, as one database reports them: the first form
            # of a subsignature to match records its first position (a macro reads it)
            items = hits.items() if len(dbs) == 1 else sorted(hits.items(), key=_end)
            for aid, end in items:
                out.extend((vi, end) for vi in by_atom[aid])
        return out


def make_variants(
    pattern: Pattern, modifiers: str, kind: int, owner: int, sub: int, target: int, offset: Offset
) -> list[Variant]:
    """The variants of one pattern: ``w`` wide, ``a`` with ``w`` adds the ASCII form."""
    if not modifiers:  # most patterns (every body signature): one plain variant
        return [Variant(compile_pattern(pattern), kind, owner, sub, target, offset)]
    wide = "w" in modifiers
    kw = {"caseless": "i" in modifiers, "fullword": "f" in modifiers}
    out = [Variant(compile_pattern(pattern, wide=wide, **kw), kind, owner, sub, target, offset)]
    if wide and "a" in modifiers:
        out.append(
            Variant(compile_pattern(pattern, wide=False, **kw), kind, owner, sub, target, offset)
        )
    return out


def first_in_windows(
    cp: CompiledPattern, data: Buffer, windows: Sequence[tuple[int, int]], hint: int
) -> tuple[int, int] | None:
    """The first match (start, end) in any window, using the atom hint to skip ahead."""
    best: tuple[int, int] | None = None
    for lo, hi in windows:
        if hint >= 0 and cp.atom_max_prefix is not None:
            lo = max(lo, hint - len(cp.atom) - cp.atom_max_prefix)
        if lo > hi:
            continue
        m = cp.first(data, lo, hi)
        if m is not None and (best is None or m[1] < best[1]):
            best = m
    return best
