"""Hash signatures held as sorted fixed-width arrays, searched by binary search.

Millions of digests as Python objects would cost gigabytes; here each signature costs its
digest bytes plus two 32-bit integers (size and name index), and names live in one blob.
Lookups happen a few times per scanned object, so numpy's searchsorted is plenty.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from vigil.engine.signatures.hdb import HashBatch
from vigil.native import _hashparse

__all__ = ["HashBuilder", "HashStore", "HashTable", "NameTable", "ALGORITHMS"]

ALGORITHMS = {16: "md5", 20: "sha1", 32: "sha256"}


class NameTable:
    """Signature names in one byte blob (databases are read as latin-1) plus offsets."""

    __slots__ = ("_blob", "_offsets")

    def __init__(self) -> None:
        self._blob = bytearray()
        self._offsets = array("Q", [0])

    def add(self, name: str) -> int:
        self._blob += name.encode("latin-1", "replace")
        self._offsets.append(len(self._blob))
        return len(self._offsets) - 2

    def add_many(self, names: list[str], suffix: str = "") -> range:
        """Append many names (each followed by ``suffix``) at once; returns their indexes.

        One join and one encode for the lot: a latin-1 encoding (unencodable characters
        replaced) has one byte per character, so the offsets come from the lengths.
        """
        first = len(self._offsets) - 1
        if not names:
            return range(first, first)
        base = len(self._blob)
        self._blob += (suffix.join(names) + suffix).encode("latin-1", "replace")
        ends = np.fromiter(map(len, names), dtype=np.uint64, count=len(names))
        ends += len(suffix)
        np.cumsum(ends, out=ends)
        ends += base
        self._offsets.frombytes(ends.tobytes())
        return range(first, first + len(names))

    def add_packed(self, blob: bytes, ends: npt.NDArray[np.uint64]) -> range:
        """Append names already packed back to back (``ends``: where each ends in ``blob``)."""
        first = len(self._offsets) - 1
        base = len(self._blob)
        self._blob += blob
        self._offsets.frombytes((ends + np.uint64(base)).view(np.uint8).data)
        return range(first, first + int(ends.size))

    @classmethod
    def frozen(cls, blob: memoryview | bytes, offsets: npt.NDArray[np.uint64]) -> NameTable:
        """A read-only table over existing storage (a compiled cache's memory map)."""
        table = cls.__new__(cls)
        table._blob = blob  # type: ignore[assignment]
        table._offsets = offsets  # type: ignore[assignment]
        return table

    def parts(self) -> tuple[memoryview, npt.NDArray[np.uint64]]:
        """The blob and the offsets, for writing a compiled cache: views, not copies (the
        blob is hundreds of MB at full scale). No name may be added while they are held."""
        return memoryview(self._blob), np.asarray(self._offsets, dtype=np.uint64)

    def __getitem__(self, i: int) -> str:
        lo, hi = int(self._offsets[i]), int(self._offsets[i + 1])
        return bytes(self._blob[lo:hi]).decode("latin-1")

    def __len__(self) -> int:
        return len(self._offsets) - 1


@dataclass(slots=True)
class _Columns:
    """One kind and width as parsed: the batches' digests and sizes are kept as they came
    (never copied together: the sort reads the parts and writes the one sorted copy)."""

    digests: list[bytes] = field(default_factory=list)
    sizes: list[npt.NDArray[np.uint32]] = field(default_factory=list)
    names: array[int] = field(default_factory=lambda: array("I"))


class HashBuilder:
    """Collects parsed hash signatures of every kind before they are sorted once.

    A file arrives in blocks, so one file's widths interleave; the names join the name
    table only at ``end_file``, width by width (each in the order its first row came), so
    that the table is the same however the file was cut.
    """

    def __init__(self, names: NameTable) -> None:
        self.names = names
        self._cols: dict[tuple[str, int], _Columns] = {}
        self._pending: dict[tuple[str, int], list[tuple[bytes, npt.NDArray[np.uint64]]]] = {}
        self.count = 0

    def add(self, batch: HashBatch) -> None:
        """Add a parsed batch of one kind and digest width; size 0 means any size."""
        key = (batch.kind, batch.width)
        cols = self._cols.get(key)
        if cols is None:
            cols = self._cols[key] = _Columns()
        cols.digests.append(batch.digests)
        cols.sizes.append(batch.sizes.astype(np.uint32, copy=False))
        self._pending.setdefault(key, []).append((batch.name_blob, batch.name_ends))
        self.count += len(batch)

    def end_file(self) -> None:
        """Give the names of the batches added since the last call their numbers."""
        for key in list(self._pending):
            parts = self._pending.pop(key)
            parts.reverse()
            cols = self._cols[key]
            while parts:  # each part freed once copied
                ids = self.names.add_packed(*parts.pop())
                cols.names.frombytes(
                    np.arange(ids.start, ids.stop, dtype=np.uint32).view(np.uint8).data
                )

    def build(self) -> HashStore:
        self.end_file()
        tables: dict[tuple[str, int], HashTable] = {}
        for key in list(self._cols):
            cols = self._cols.pop(key)  # freed once its table is made
            tables[key] = HashTable.build(key[1], cols.digests, cols.sizes, cols.names)
            del cols
        return HashStore(tables, self.names)


class HashTable:
    """One kind and digest width: rows sorted by digest."""

    __slots__ = ("width", "digests", "sizes", "names", "size_set", "any_size")

    def __init__(
        self,
        width: int,
        digests: npt.NDArray[np.void],
        sizes: npt.NDArray[np.uint32],
        names: npt.NDArray[np.uint32],
        size_set: npt.NDArray[np.uint32] | None = None,
    ) -> None:
        self.width = width
        self.digests = digests
        self.sizes = sizes
        self.names = names
        uniq = unique_sorted(sizes) if size_set is None else size_set
        self.any_size = bool(uniq.size and uniq[0] == 0)
        self.size_set = uniq

    @classmethod
    def build(
        cls,
        width: int,
        digests: list[bytes],
        sizes: list[npt.NDArray[np.uint32]],
        names: array[int],
    ) -> HashTable:
        """Sort the rows (``digests`` and ``sizes``: parts back to back) by digest, stably:
        rows with one digest stay in load order."""
        if width >= 3:
            # in C: a stable sort and the sorted digests at once (numpy gathers rows of
            # fixed-width bytes one by one, several times slower)
            raw_order, ordered = _hashparse.sort_digests(digests, width)
            order = np.frombuffer(raw_order, dtype=np.int64)
            d = np.frombuffer(ordered, dtype=f"S{width}")
        else:
            d = np.frombuffer(b"".join(digests), dtype=f"S{width}")
            order = digest_order(d, width)
            d = d[order]
        del digests[:]  # the parts are freed once sorted
        all_sizes = np.concatenate(sizes) if sizes else np.zeros(0, dtype=np.uint32)
        del sizes[:]
        return cls(
            width,
            d,
            all_sizes[order],
            np.frombuffer(names, dtype=np.uint32)[order],
        )

    def __len__(self) -> int:
        return int(self.digests.size)

    def wants(self, size: int) -> bool:
        """Whether an object of this size could match (so its digest is worth computing)."""
        if self.any_size:
            return True
        i = int(np.searchsorted(self.size_set, size))
        return i < self.size_set.size and int(self.size_set[i]) == size

    def lookup(self, digest: bytes, size: int) -> list[int]:
        """Name indexes of the rows with this digest and this (or any) size, in load order."""
        key = np.array([digest], dtype=f"S{self.width}")
        lo = int(np.searchsorted(self.digests, key[0], side="left"))
        hi = int(np.searchsorted(self.digests, key[0], side="right"))
        out = []
        for i in range(lo, hi):
            s = int(self.sizes[i])
            if s == size or s == 0:
                out.append(int(self.names[i]))
        return out


def unique_sorted(values: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
    """``np.unique(values)``, several times faster: numpy's unique hashes, while its sort of
    32-bit integers is vectorised."""
    ordered = np.sort(values)
    if ordered.size < 2:
        return ordered
    keep = np.empty(ordered.size, dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def digest_order(d: npt.NDArray[np.void], width: int) -> npt.NDArray[np.intp]:
    """The permutation that sorts ``d`` stably (as ``np.argsort(d, kind="stable")``), faster.

    An unstable integer sort of each digest's first 8 bytes (big-endian, so integer order
    is byte order) does most of the work; only the rows whose first 8 bytes tie with
    another row's (duplicate digests, mostly) are then sorted on every byte and their
    load order, which is what makes the result that of a stable sort.
    """
    n = d.size
    if n < 2 or width < 8:
        return np.argsort(d, kind="stable")
    raw = d.view(np.uint8).reshape(n, width)
    head = np.ascontiguousarray(raw[:, :8]).view(">u8").ravel()
    order = np.argsort(head, kind="quicksort")
    ordered = head[order]
    tie = np.zeros(n, dtype=bool)
    same = ordered[1:] == ordered[:-1]
    tie[1:] |= same
    tie[:-1] |= same
    if not tie.any():
        return order
    rows = np.sort(order[tie])  # load order, so that the stable lexsort keeps it on ties
    words = -(-width // 8)
    padded = np.zeros((rows.size, words * 8), dtype=np.uint8)
    padded[:, :width] = raw[rows]
    keys = padded.view(">u8").astype(np.uint64)
    # lexsort: the last key is the primary one
    order[tie] = rows[np.lexsort([keys[:, i] for i in range(words - 1, -1, -1)])]
    return order


class HashStore:
    """Every hash table of a database, by (kind, digest width)."""

    def __init__(self, tables: dict[tuple[str, int], HashTable], names: NameTable) -> None:
        self.tables = tables
        self.names = names

    def kinds(self, kind: str) -> list[HashTable]:
        return [t for (k, _), t in sorted(self.tables.items()) if k == kind]

    def __len__(self) -> int:
        return sum(len(t) for t in self.tables.values())
