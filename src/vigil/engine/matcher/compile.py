"""Signatures -> one compiled matcher: a Hyperscan literal set of atoms plus verifiers.

Every body pattern (an .ndb signature, a content subsignature of an .ldb signature, a
file-type magic of type 1) becomes one or more *variants* (``wa`` gives a wide and an ASCII
one). Each variant contributes one literal atom; identical atoms are compiled once. A scan
runs Hyperscan once per buffer; only variants whose atom occurred are verified.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from concurrent.futures import ThreadPoolExecutor
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


def _group_of(v: Variant) -> int:
    return MAGIC_GROUP if v.kind == MAGIC else v.target


class AtomGroup:
    """The atoms of one group of variants and their Hyperscan database.

    Variants are grouped by target type (file-type magic on its own): an object is scanned
    only with the groups its pass can use, so a text file never pays for the hundreds of
    thousands of atoms of PE signatures. A group read back from the compiled cache loads
    its database on first use: a daemon whose workers do the scanning, or a worker that
    never meets a PE file, never holds those atoms in memory.
    """

    __slots__ = ("by_atom", "_db", "_load", "_lock")

    def __init__(
        self,
        by_atom: Sequence[Sequence[int]],
        db: hyperscan.Database | None = None,
        load: Callable[[], hyperscan.Database] | None = None,
    ) -> None:
        if db is None and load is None:
            raise ValueError("an atom group needs its database or a way to load it")
        self.by_atom = by_atom  # atom id -> variant indices
        self._db = db
        self._load = load
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._db is not None

    @property
    def db(self) -> hyperscan.Database:
        db = self._db
        if db is None:
            with self._lock:
                if self._db is None:
                    assert self._load is not None
                    self._db = self._load()
                    self._load = None
                db = self._db
        return db


def _atom_exprs(keys: Sequence[tuple[bytes, bool]]) -> tuple[list[bytes], list[int]]:
    """Hyperscan expressions and flags for (atom, caseless) literals, reported once each.

    Atoms are escaped byte by byte: python-hyperscan's literal mode cuts at NUL bytes."""
    exprs = [b"".join(b"\\x%02x" % b for b in atom) for atom, _ in keys]
    base = hyperscan.HS_FLAG_SINGLEMATCH
    flags = [base | (hyperscan.HS_FLAG_CASELESS if cl else 0) for _, cl in keys]
    return exprs, flags


def compile_atoms(keys: Sequence[tuple[bytes, bool]]) -> hyperscan.Database:
    """A block-mode database of the literals; match id i is ``keys[i]``."""
    exprs, flags = _atom_exprs(keys)
    db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    db.compile(expressions=exprs, ids=list(range(len(exprs))), elements=len(exprs), flags=flags)
    return db


def _compile_group(keys: list[tuple[bytes, bool]]) -> hyperscan.Database:
    cache_id = cache.cache_key(*_atom_exprs(keys))
    db = cache.load(cache_id)
    if db is None:
        db = compile_atoms(keys)
        cache.store(cache_id, db)
    return db


class CompiledMatcher:
    """The immutable, shareable result of compiling every body pattern of a database."""

    def __init__(
        self, variants: list[Variant], deferred: Set[int] = frozenset(), background: bool = False
    ) -> None:
        """Compile the atoms of ``variants``; those in ``deferred`` are left out of the
        atom index (the scanner verifies them itself once their signature is in play).
        With ``background`` this returns before the Hyperscan databases are compiled."""
        atom_ids: dict[int, dict[tuple[bytes, bool], int]] = {}
        by_atom: dict[int, list[list[int]]] = {}
        always: list[int] = []
        for vi, v in enumerate(variants):
            if vi in deferred:
                continue
            if not v.cp.atom:
                always.append(vi)
                continue
            g = _group_of(v)
            ids = atom_ids.get(g)
            if ids is None:
                ids = atom_ids[g] = {}
                by_atom[g] = []
            key = (v.cp.atom, v.cp.caseless)
            aid = ids.get(key)
            if aid is None:
                aid = ids[key] = len(by_atom[g])
                by_atom[g].append([])
            by_atom[g][aid].append(vi)
        # Hyperscan compiles without the GIL: the groups build side by side (the largest
        # first, so that the small ones fill the other cores meanwhile); in the
        # background a group waits for its database only when first used, so writing
        # the compiled cache's other sections overlaps the compilation
        order = sorted(atom_ids, key=lambda g: -len(atom_ids[g]))
        pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1))
        jobs = {g: pool.submit(_compile_group, list(atom_ids[g])) for g in order}
        pool.shutdown(wait=not background)
        groups = {g: AtomGroup(by_atom[g], load=jobs[g].result) for g in sorted(atom_ids)}
        self._adopt(variants, groups, always)

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

    def _scratch(self, group: int) -> hyperscan.Scratch:
        """One scratch space per thread and group: Hyperscan's scratch must not be shared."""
        scratches: dict[int, hyperscan.Scratch] | None = getattr(self._local, "scratch", None)
        if scratches is None:
            scratches = self._local.scratch = {}
        s = scratches.get(group)
        if s is None:
            s = scratches[group] = hyperscan.Scratch(self.groups[group].db)
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
            group.db.scan(data, match_event_handler=on_match, scratch=self._scratch(g))  # type: ignore[type-var]
            by_atom = group.by_atom
            for aid, end in hits.items():
                out.extend((vi, end) for vi in by_atom[aid])
        return out


def make_variants(
    pattern: Pattern, modifiers: str, kind: int, owner: int, sub: int, target: int, offset: Offset
) -> list[Variant]:
    """The variants of one pattern: ``w`` wide, ``a`` with ``w`` adds the ASCII form."""
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
