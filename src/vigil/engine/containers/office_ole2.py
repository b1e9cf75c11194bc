"""A bounded reader for OLE2 / Compound File Binary (MS-CFB) files.

The FAT, miniFAT and directory are read as numpy arrays; a stream's sector chain is
followed by a loop bounded by the sectors the stream needs and cut at the first cycle, so a
hostile file costs at most its own size plus the sizes asked for. Damage never raises past
``CompoundFile``'s constructor (``Ole2Error``): a broken chain or directory yields what
could be read, as libclamav does.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["MAGIC", "CompoundFile", "DirEntry", "Ole2Error", "entry_name"]

log = logging.getLogger(__name__)

MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
HEADER_SIZE = 512
MIN_SECTOR_SHIFT = 7  # a sector holds at least one directory entry
MAX_SECTOR_SHIFT = 20  # 1 MiB sectors at most (the format knows 512 and 4096)
MAX_ENTRIES = 100_000  # directory entries, as libclamav's file count limit
MAX_DEPTH = 100  # storage nesting, as libclamav
MAX_DIFAT_SECTORS = 1 << 20

ENDOFCHAIN = 0xFFFFFFFE
NOSTREAM = 0xFFFFFFFF

STORAGE, STREAM, ROOT = 1, 2, 5

_DIR_DTYPE = np.dtype(
    [
        ("name", "V64"),
        ("name_len", "<u2"),
        ("type", "u1"),
        ("color", "u1"),
        ("left", "<u4"),
        ("right", "<u4"),
        ("child", "<u4"),
        ("clsid", "V16"),
        ("state", "<u4"),
        ("times", "V16"),
        ("start", "<u4"),
        ("size_lo", "<u4"),
        ("size_hi", "<u4"),
    ]
)
assert _DIR_DTYPE.itemsize == 128

_MSI_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz._"


class Ole2Error(ValueError):
    """The file is not a usable compound file (bad magic, absurd header)."""


@dataclass(frozen=True, slots=True)
class DirEntry:
    """One directory entry: a storage or a stream, with its path of raw names."""

    index: int
    name: str  # the UTF-16 name as stored
    path: tuple[str, ...]  # raw names from the root's first level down to this entry
    kind: int
    start: int
    size: int


def _msi_name(raw: str) -> str | None:
    """MSI packs table and stream names two characters per code point (0x3800-0x47FF,
    one per code point in 0x4800-0x483F, 0x4840 marks a table); None if not packed."""
    out = []
    packed = False
    for ch in raw:
        code = ord(ch)
        if 0x3800 <= code < 0x4800:
            code -= 0x3800
            out.append(_MSI_ALPHABET[code & 0x3F])
            out.append(_MSI_ALPHABET[code >> 6])
            packed = True
        elif 0x4800 <= code < 0x4840:
            out.append(_MSI_ALPHABET[code - 0x4800])
            packed = True
        elif code == 0x4840:
            out.append("!")
            packed = True
        else:
            out.append(ch)
    return "".join(out) if packed else None


def entry_name(raw: str) -> str:
    """A printable name: MSI-packed names unpacked, control characters as ``_N_`` (so
    "\\x01Ole10Native" reads "_1_Ole10Native", close to libclamav's debug names)."""
    msi = _msi_name(raw)
    if msi is not None:
        return msi
    if raw.isprintable():
        return raw
    return "".join(ch if ch.isprintable() else f"_{ord(ch)}_" for ch in raw)


class CompoundFile:
    """Header, FAT (with DIFAT), miniFAT and directory of one compound file."""

    def __init__(self, data: bytes) -> None:
        if len(data) < HEADER_SIZE or data[:8] != MAGIC:
            raise Ole2Error("no OLE2 header")
        self.data = data
        (
            major,
            _byte_order,
            shift,
            mini_shift,
            _n_dir,
            n_fat,
            dir_start,
            _sig,
            cutoff,
            minifat_start,
            _n_minifat,
            difat_start,
            n_difat,
        ) = struct.unpack_from("<2x4H6x9I", data, 24)
        self.major = major
        if not MIN_SECTOR_SHIFT <= shift <= MAX_SECTOR_SHIFT:
            raise Ole2Error(f"sector shift {shift}")
        if not 0 < mini_shift <= shift:
            raise Ole2Error(f"mini sector shift {mini_shift}")
        self.sector_size = 1 << shift
        self.mini_size = 1 << mini_shift
        self.cutoff = cutoff
        self.base = max(HEADER_SIZE, self.sector_size)
        body = max(0, len(data) - self.base)
        self.n_full = body // self.sector_size  # whole sectors
        self.n_sectors = -(-body // self.sector_size)  # the last one may be short
        self._sectors = np.frombuffer(
            data, np.uint8, self.n_full * self.sector_size, min(self.base, len(data))
        ).reshape(self.n_full, self.sector_size)
        self.fat = self._read_fat(data, n_fat, difat_start, n_difat)
        self.entries = self._read_directory(dir_start)
        root = self.entries.get(0)
        self._ministream_start = root.start if root is not None and root.kind == ROOT else None
        self._ministream_size = root.size if root is not None else 0
        self._minifat_start = minifat_start
        self._minifat: npt.NDArray[np.uint32] | None = None
        self._ministream: bytes | None = None

    # ------------------------------------------------------------------ tables
    def _sector_rows(self, ids: list[int]) -> npt.NDArray[np.uint32]:
        """The given sectors as rows of little-endian 32-bit entries; a sector outside
        the file reads as free entries (so chains through it end)."""
        per = self.sector_size // 4
        table = np.full((len(ids), per), NOSTREAM, dtype=np.uint32)
        if not ids:
            return table
        arr = np.asarray(ids, dtype=np.int64)
        ok = arr < self.n_full
        if ok.any():
            table[ok] = self._sectors[arr[ok]].view("<u4").astype(np.uint32)
        short = np.nonzero(arr == self.n_full)[0]
        if short.size and self.n_sectors > self.n_full:
            tail = self.data[self.base + self.n_full * self.sector_size :]
            tail += b"\xff" * (-len(tail) % 4)
            vals = np.frombuffer(tail, "<u4")
            table[short, : len(vals)] = vals
        return table

    def _read_fat(
        self, data: bytes, n_fat: int, difat_start: int, n_difat: int
    ) -> npt.NDArray[np.uint32]:
        """The FAT: the sectors listed by the header's 109 DIFAT slots and the DIFAT chain,
        each slot kept at its position (a bad slot leaves its 128 entries free)."""
        slots = list(struct.unpack_from("<109I", data, 76))
        per = self.sector_size // 4
        seen: set[int] = set()
        cur = difat_start
        budget = min(n_difat, MAX_DIFAT_SECTORS, self.n_sectors)
        while cur < self.n_sectors and cur not in seen and len(seen) < budget:
            seen.add(cur)
            row = self._sector_rows([cur])[0]
            slots.extend(int(v) for v in row[: per - 1])
            cur = int(row[per - 1])
        # libclamav trusts the header's count of FAT sectors; a count beyond what the file
        # could hold is cut to the slots there are
        count = min(n_fat, len(slots), self.n_sectors)
        ids = [s if s < self.n_sectors else self.n_sectors + 1 for s in slots[:count]]
        return self._sector_rows(ids).ravel()

    def chain(
        self, start: int, table: npt.NDArray[np.uint32], max_len: int, bound: int
    ) -> list[int]:
        """Sector numbers from ``start``: at most ``max_len``, each below ``bound``,
        stopping at the end marker, a free or out-of-range entry, or a cycle."""
        out: list[int] = []
        seen: set[int] = set()
        view = table.data  # native uint32: indexing gives ints without numpy scalars
        n = len(table)
        cur = start
        while cur < bound and len(out) < max_len:
            if cur in seen:
                log.debug("ole2: sector chain loop at %d", cur)
                break
            seen.add(cur)
            out.append(cur)
            if cur >= n:
                break
            cur = view[cur]
        return out

    def _gather(self, ids: list[int]) -> bytes:
        """The bytes of the given sectors in order (a short last sector as it is)."""
        if not ids:
            return b""
        if max(ids) < self.n_full:
            return self._sectors[np.asarray(ids, dtype=np.int64)].tobytes()
        parts = []
        size = self.sector_size
        for i in ids:
            off = self.base + i * size
            parts.append(self.data[off : off + size])
        return b"".join(parts)

    def _read_directory(self, start: int) -> dict[int, DirEntry]:
        """Every entry reachable from the root through the red-black sibling trees and
        child links, bounded in count and depth; loops are cut."""
        per_sector = self.sector_size // 128
        max_sectors = -(-MAX_ENTRIES // per_sector)
        ids = self.chain(start, self.fat, max_sectors, self.n_sectors)
        raw = self._gather(ids)
        raw = raw[: len(raw) - len(raw) % 128]
        table = np.frombuffer(raw, _DIR_DTYPE)
        count = len(table)
        if not count:
            return {}
        names = table["name"]
        name_len = table["name_len"].astype(np.int64)
        kinds = table["type"].tolist()
        left = table["left"].tolist()
        right = table["right"].tolist()
        child = table["child"].tolist()
        start_ = table["start"].tolist()
        size_lo = table["size_lo"].tolist()
        size_hi = table["size_hi"].tolist() if self.major >= 4 else [0] * count

        def decode(i: int) -> str:
            n = int(name_len[i])
            n = 64 if n > 64 else n
            blob = names[i].tobytes()[: max(0, n - 2)]
            blob = blob[: len(blob) & ~1]
            return str(blob.decode("utf-16-le", "replace"))

        out: dict[int, DirEntry] = {}
        visited: set[int] = set()
        # (index, parent path, depth); siblings share the parent path
        stack: list[tuple[int, tuple[str, ...], int]] = [(0, (), 0)]
        while stack and len(out) < MAX_ENTRIES:
            idx, parent, depth = stack.pop()
            if idx >= count or idx in visited or depth > MAX_DEPTH:
                continue
            visited.add(idx)
            kind = kinds[idx]
            if kind not in (STORAGE, STREAM, ROOT) or (kind == ROOT and idx != 0):
                continue
            name = decode(idx)
            path = parent if kind == ROOT else (*parent, name)
            out[idx] = DirEntry(
                idx, name, path, kind, start_[idx], size_lo[idx] | size_hi[idx] << 32
            )
            # libclamav's order: the entry, its children, its right sibling, its left one
            if kind != ROOT:
                if left[idx] != NOSTREAM:
                    stack.append((left[idx], parent, depth))
                if right[idx] != NOSTREAM:
                    stack.append((right[idx], parent, depth))
            if child[idx] != NOSTREAM:
                stack.append((child[idx], path, depth + 1))
        return out

    # ------------------------------------------------------------------ streams
    def streams(self) -> Iterator[DirEntry]:
        """Stream entries, in directory walk order."""
        for entry in self.entries.values():
            if entry.kind == STREAM:
                yield entry

    def _mini(self) -> tuple[npt.NDArray[np.uint32], bytes]:
        if self._minifat is None or self._ministream is None:
            # like libclamav, the chain decides (the header's count is often wrong)
            ids = self.chain(self._minifat_start, self.fat, self.n_sectors, self.n_sectors)
            self._minifat = self._sector_rows(ids).ravel()
            if self._ministream_start is None:
                self._ministream = b""
            else:
                want = -(-min(self._ministream_size, len(self.data)) // self.sector_size)
                ids = self.chain(self._ministream_start, self.fat, want, self.n_sectors)
                self._ministream = self._gather(ids)
        return self._minifat, self._ministream

    def read(self, entry: DirEntry, limit: int) -> tuple[bytes, bool]:
        """A stream's data, at most ``limit`` bytes; True when the stream is longer.

        A broken chain gives the part before the break (libclamav scans that too)."""
        size = entry.size
        want = min(size, limit + 1)
        if want <= 0:
            return b"", False
        if size < self.cutoff:
            minifat, ministream = self._mini()
            n_mini = len(ministream) // self.mini_size
            ids = self.chain(entry.start, minifat, -(-want // self.mini_size), n_mini)
            if not ids:
                return b"", False
            mview = np.frombuffer(ministream, np.uint8, n_mini * self.mini_size).reshape(
                n_mini, self.mini_size
            )
            out = mview[np.asarray(ids, dtype=np.int64)].tobytes()[:want]
        else:
            ids = self.chain(entry.start, self.fat, -(-want // self.sector_size), self.n_sectors)
            out = self._gather(ids)[:want]
        if len(out) > limit:
            return out[:limit], True
        return out, False
