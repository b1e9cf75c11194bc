"""Hash databases: .hdb .hsb .hdu .hsu .fp .sfp .imp (hash first) and .mdb .msb .mdu .msu.

The official database holds millions of these lines (signatures.md §1.1, §1.2), so a file
is parsed in bulk, block by block (a few tens of MB cut after a newline, so that transient
copies stay small however big the file is; a file given by its path is read a block at a
time). Each block goes through tiers that give the same result: C code
(``vigil.native._hashparse``) takes a block whose every line has the common, canonical form
straight into the packed columns, and declines anything else; the bytes are then cut into
fields with numpy (names never become Python strings); a block with a form that tier does
not take (blanks around a level, long sizes, an ignore list) is cut into string columns at
C speed; only a block that does not pass either is read again line by line, which names the
first bad line precisely (counted from the file's start). Errors therefore always come from
the Python code."""

from __future__ import annotations

import operator
import os
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from io import RawIOBase
from itertools import compress, repeat
from pathlib import Path

import numpy as np
import numpy.typing as npt

from vigil.engine.signatures.common import MAX_LINE, final_name, is_number, iter_lines, parse_fl
from vigil.engine.signatures.model import FLEVEL, fl_window_ok
from vigil.errors import SignatureError
from vigil.native import _hashparse

__all__ = ["HashBatch", "HashSink", "parse_hash_db", "HASH_KINDS"]


@dataclass(slots=True)
class HashBatch:
    """Signatures of one kind and digest width, column-wise (size 0 = any size).

    Packed as the loader stores them: millions of names as Python strings would cost
    gigabytes, so the final names (``.UNOFFICIAL`` included) are one latin-1 blob, each
    ending at its ``name_ends`` offset.
    """

    kind: str
    width: int
    digests: bytes
    sizes: npt.NDArray[np.uint32]
    name_blob: bytes
    name_ends: npt.NDArray[np.uint64]

    @classmethod
    def from_lists(
        cls, kind: str, width: int, digests: bytes, sizes: list[int], names: list[str], suffix: str
    ) -> HashBatch:
        """Pack rows whose final names are ``names[i] + suffix``: one join and one encode
        (latin-1 has one byte per character, so the ends come from the lengths)."""
        blob = (suffix.join(names) + suffix).encode("latin-1", "replace") if names else b""
        ends = np.fromiter(map(len, names), dtype=np.uint64, count=len(names))
        ends += np.uint64(len(suffix))
        np.cumsum(ends, out=ends)
        return cls(kind, width, digests, np.array(sizes, dtype=np.uint32), blob, ends)

    @property
    def names(self) -> list[str]:
        """The final names as strings (for tests and small files; the loader keeps the blob)."""
        text = self.name_blob.decode("latin-1")
        ends = self.name_ends.tolist()
        return [text[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)]

    def __len__(self) -> int:
        return int(self.sizes.size)


HashSink = Callable[[HashBatch], None]

# suffix -> (kind, size first?)
HASH_KINDS: dict[str, tuple[str, bool]] = {
    "hdb": ("file", False),
    "hsb": ("file", False),
    "hdu": ("file", False),
    "hsu": ("file", False),
    "fp": ("fp", False),
    "sfp": ("fp", False),
    "imp": ("import", False),
    "mdb": ("section", True),
    "msb": ("section", True),
    "mdu": ("section", True),
    "msu": ("section", True),
}

_HEX = frozenset("0123456789abcdefABCDEF")
WILDCARD_MIN_FL = 73  # a '*' size needs MinFL >= 73 (engines older than that cannot do it)
MAX_SIZE = 0xFFFFFFFE
_WIDTHS = frozenset({32, 40, 64})
_COLONS = frozenset({2, 3, 4})  # 3 to 5 fields
_COMMENT = re.compile(rb"^#[^\n]*(?:\n|\Z)", re.M)


BLOCK = 32 << 20  # bytes parsed at once: bounds the transient copies of a big file


def parse_hash_db(
    data: bytes | str | Path,
    origin: str,
    suffix: str,
    add: HashSink,
    *,
    official: bool,
    ignored: frozenset[str] = frozenset(),
) -> int:
    """Parse one hash database (its bytes, their latin-1 text, or its path) into batches
    passed to ``add``; returns how many signatures were kept.

    The file is cut into blocks of about BLOCK bytes after a newline (a path is read a
    block at a time, so that a big file is never held whole), and ``add`` gets each
    block's batches in turn: each width's rows in file order, widths in the order they
    first appear in the block. A malformed line raises SignatureError(origin, line,
    reason); a path that cannot be read raises OSError.
    """
    if isinstance(data, str):
        data = data.encode("latin-1")  # the text as the loader would have decoded it
    kind, size_first = HASH_KINDS[suffix]
    native = _Native(kind, size_first, official, ignored)
    count = 0
    line = 0  # lines before the block
    empty = True
    with ExitStack() as stack:
        blocks: Iterator[tuple[bytes | bytearray, int, int]]
        if isinstance(data, Path):
            blocks = _file_blocks(stack.enter_context(open(data, "rb", buffering=0)))
        else:
            blocks = _blocks(data)
        for buf, start, end in blocks:
            empty = False
            got = native.parse(buf, start, end)
            if got is not None:
                lines, batches = got
            else:
                block = bytes(memoryview(buf)[start:end])
                lines = block.count(b"\n")
                parsed = _parse_block(block, kind, size_first, official, ignored)
                if parsed is None:
                    text = block.decode("latin-1")
                    parsed = _parse_slow(text, origin, kind, size_first, official, ignored, line)
                    del text
                del block
                batches = list(parsed.values())
                del parsed
            for batch in batches:
                if len(batch):
                    add(batch)
                    count += len(batch)
            del batches
            line += lines
    if empty:
        _parse_slow("", origin, kind, size_first, official, ignored)  # raises: empty file
    return count


def _blocks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """The blocks of a file held whole, as (data, start, end): no copies."""
    start = 0
    while start < len(data):
        cut = data.find(b"\n", start + BLOCK) if len(data) - start > BLOCK else -1
        end = len(data) if cut < 0 else cut + 1
        yield data, start, end
        start = end


def _file_blocks(f: RawIOBase) -> Iterator[tuple[bytearray, int, int]]:
    """The blocks of a file read a block at a time into one buffer, as (buffer, start,
    end): each ends after its last newline (the last one at the end of the file); the
    partial line after it starts the next. The buffer is reused: a block is only valid
    until the next one is asked for."""
    buf = bytearray()
    held = 0  # bytes at the buffer's start carried over from the last read
    want = max(min(BLOCK, os.fstat(f.fileno()).st_size), 1)  # no buffer beyond the file's size
    while True:
        if len(buf) < held + want:
            buf.extend(bytes(held + want - len(buf)))
        with memoryview(buf) as view:
            got = f.readinto(view[held : held + want])
        if not got:
            if held:
                yield buf, 0, held
            return
        filled = held + got
        cut = buf.rfind(b"\n", 0, filled) + 1
        if cut:
            yield buf, 0, cut
            buf[: filled - cut] = buf[cut:filled]
        held = filled - cut


class _Native:
    """The C parse of a block in the canonical form (vigil.native._hashparse): the same
    batches as the Python tiers, or None for a block with anything else in it."""

    __slots__ = ("kind", "args")

    def __init__(self, kind: str, size_first: bool, official: bool, ignored: frozenset[str]):
        self.kind = kind
        # a name that latin-1 cannot encode is in no latin-1 database: it ignores nothing
        names = []
        for name in ignored:
            try:
                names.append(name.encode("latin-1"))
            except UnicodeEncodeError:
                continue
        self.args = (
            size_first,
            -1 if kind == "import" else WILDCARD_MIN_FL,
            FLEVEL,
            MAX_LINE,
            MAX_SIZE,
            b"" if official else b".UNOFFICIAL",
            tuple(names),
        )

    def parse(
        self, data: bytes | bytearray, start: int, end: int
    ) -> tuple[int, list[HashBatch]] | None:
        """(newlines in the block, its batches), or None."""
        got = _hashparse.parse_block(data, start, end, *self.args)
        if isinstance(got, int):
            return None  # the line at offset ``got`` is outside the canonical form
        lines, columns = got
        return lines, [
            HashBatch(
                self.kind,
                width,
                digests,
                np.frombuffer(sizes, dtype=np.uint32),
                names,
                np.frombuffer(ends, dtype=np.uint64),
            )
            for width, digests, sizes, names, ends in columns
        ]


def _parse_block(
    raw: bytes, kind: str, size_first: bool, official: bool, ignored: frozenset[str]
) -> dict[int, HashBatch] | None:
    """Bulk parse of whole lines (the array tier, else string columns); None when anything
    is unusual (the slow path then applies every rule and names the first bad line)."""
    if b"\r" in raw:
        raw = raw.replace(b"\r\n", b"\n")
        if b"\r" in raw:
            return None  # iter_lines strips every trailing CR: rare, left to the slow path
    if not raw or b"\n\n" in raw or b"\x00" in raw or raw.startswith(b"\n"):
        return None
    if raw.startswith(b"#") or b"\n#" in raw:
        raw = _COMMENT.sub(b"", raw)
    body = len(raw) - raw.endswith(b"\n")  # without the last newline
    if not body or b" (Clam)" in raw:
        return None  # " (Clam)" names are cut (final_name): rare, left to the slow path
    if not ignored:
        arrays = _parse_arrays(raw if body < len(raw) else raw + b"\n", kind, size_first, official)
        if arrays is not None:
            return arrays
    text = str(memoryview(raw)[:body], "latin-1")
    del raw
    return _parse_columns(text, kind, size_first, official, ignored)


def _parse_columns(
    text: str, kind: str, size_first: bool, official: bool, ignored: frozenset[str]
) -> dict[int, HashBatch] | None:
    """The string-column tier: ``text`` is normalised (no CR, comments or last newline)."""
    cols = _uniform_columns(text)
    if cols is None:
        lines = text.split("\n")
        colons = list(map(str.count, lines, repeat(":")))
        counts = set(colons)
        if not _COLONS.issuperset(counts):
            return None
        cols = _mixed_columns(lines, colons, counts)
        del lines, colons
    del text
    # no line can be longer than the longest value of each column put together
    if sum(max(map(len, c)) + 1 for c in cols if c is not None) > MAX_LINE:
        return None  # some line may be over the limit: the slow path says which
    if size_first:
        cols[0], cols[1] = cols[1], cols[0]
    hashes, sizes, names, minfls, maxfls = cols
    assert hashes is not None and sizes is not None and names is not None
    del cols
    if "" in names:
        return None
    min_ok = _fl_column(minfls, lambda v: v <= FLEVEL)
    max_ok = _fl_column(maxfls, lambda v: v >= FLEVEL)
    if min_ok is None or max_ok is None:
        return None

    widths = list(map(len, hashes))
    if not _WIDTHS.issuperset(widths):
        return None
    hex_joined = "".join(hashes)
    try:
        digests = bytes.fromhex(hex_joined)
    except ValueError:
        return None
    if 2 * len(digests) != len(hex_joined):
        return None  # fromhex skipped whitespace
    del hex_joined

    star_rows: list[int] = []
    if "*" in sizes:
        sizes = list(sizes)
        at = -1
        for _ in range(sizes.count("*")):
            at = sizes.index("*", at + 1)
            if kind != "import":
                minfl = min_ok[1].get(minfls[at]) if minfls is not None else None
                if minfl is None or minfl < WILDCARD_MIN_FL:
                    return None
            sizes[at] = "1"  # a valid stand-in until the range check is done
            star_rows.append(at)
    if not "".join(sizes).encode("latin-1").isdigit():
        return None  # bytes.isdigit is ASCII only, as is_number
    try:
        values = list(map(int, sizes))
    except ValueError:  # more digits than int() takes
        return None
    if min(values) < 1 or max(values) > MAX_SIZE:
        return None
    del sizes
    for at in star_rows:
        values[at] = 0

    keep = _all(
        [
            min_ok[0],
            max_ok[0],
            (
                list(map(operator.not_, map(ignored.__contains__, names)))
                if ignored and not ignored.isdisjoint(names)
                else None
            ),
        ]
    )
    if keep is not None:
        hashes = list(compress(hashes, keep))
        widths = list(compress(widths, keep))
        values = list(compress(values, keep))
        names = list(compress(names, keep))
        digests = b""
    suffix = "" if official else ".UNOFFICIAL"
    batches: dict[int, HashBatch] = {}
    # batches in the order their first row appears, rows in file order (as the slow path)
    for w in sorted(set(widths), key=widths.index):
        if len(batches) == 0 and widths.count(w) == len(widths):
            got = digests or bytes.fromhex("".join(hashes))
            batches[w // 2] = HashBatch.from_lists(kind, w // 2, got, values, names, suffix)
            break
        sel = list(map(w.__eq__, widths))
        batches[w // 2] = HashBatch.from_lists(
            kind,
            w // 2,
            bytes.fromhex("".join(compress(hashes, sel))),
            list(compress(values, sel)),
            list(compress(names, sel)),
            suffix,
        )
    return batches


_HEXVAL = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEXVAL[_c] = _i
    _HEXVAL[bytes([_c]).upper()[0]] = _i
CHUNK = 1 << 16  # rows per step when gathering fields (bounds the index arrays)


def _numbers(
    a: npt.NDArray[np.uint8], start: npt.NDArray[np.int64], length: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64] | None:
    """The decimal value of each field (all digits, at most 10 of them; length 0 gives 0),
    or None when a field holds anything else."""
    value = np.zeros(start.size, dtype=np.int64)
    longest = int(length.max()) if start.size else 0
    if longest > 10:
        return None
    if longest == 0:
        return value
    span = np.arange(longest, dtype=np.int64)
    powers = 10 ** (longest - 1 - span)
    for lo in range(0, start.size, CHUNK):
        end = start[lo : lo + CHUNK] + length[lo : lo + CHUNK]
        # each field right-aligned in a window of ``longest`` bytes that ends where it ends
        used = span >= longest - length[lo : lo + CHUNK, None]
        digits = a[np.maximum(end[:, None] - longest + span, 0)].astype(np.int64) - 48
        digits[~used] = 0
        if bool(((digits < 0) | (digits > 9)).any()):
            return None
        value[lo : lo + CHUNK] = digits @ powers
    return value


def _digests(a: npt.NDArray[np.uint8], start: npt.NDArray[np.int64], width: int) -> bytes | None:
    """The digests of hex fields of ``width`` characters at ``start``; None if not hex."""
    out = np.empty((start.size, width // 2), dtype=np.uint8)
    span = np.arange(width, dtype=np.int64)
    for lo in range(0, start.size, CHUNK):
        nibbles = _HEXVAL[a[start[lo : lo + CHUNK, None] + span]]
        if bool((nibbles == 255).any()):
            return None
        out[lo : lo + CHUNK] = (nibbles[:, 0::2] << 4) | nibbles[:, 1::2]
    return out.tobytes()


def _names(
    a: npt.NDArray[np.uint8],
    start: npt.NDArray[np.int64],
    length: npt.NDArray[np.int64],
    suffix: bytes,
) -> tuple[bytes, npt.NDArray[np.uint64]]:
    """The fields at ``start``, each followed by ``suffix``, back to back; and where each
    ends. Gathered by index arrays (the suffix bytes overwritten after each field)."""
    s = len(suffix)
    sized = length + s
    parts: list[bytes] = []
    for lo in range(0, start.size, CHUNK):
        st, ln = start[lo : lo + CHUNK], sized[lo : lo + CHUNK]
        ends = np.cumsum(ln)
        # byte k of the chunk's output comes from start[row] + (k - first byte of row)
        idx = np.repeat(st - (ends - ln), ln)
        idx += np.arange(int(ends[-1]), dtype=np.int64)
        if s:
            np.minimum(idx, a.size - 1, out=idx)  # the suffix's places may run past the end
        got = a[idx]
        del idx
        for j, byte in enumerate(suffix):
            got[ends - (s - j)] = byte
        parts.append(got.tobytes())
    return b"".join(parts), np.cumsum(sized).astype(np.uint64)


def _parse_arrays(
    raw: bytes, kind: str, size_first: bool, official: bool
) -> dict[int, HashBatch] | None:
    """The bulk parse on the bytes with numpy: names never become Python strings.

    ``raw`` is normalised (no CR, comments or blank lines; not empty) and ends with a
    newline. None when anything is outside the plain form (digits-only levels, sizes of at
    most 10 digits): the string-column parse then decides.
    """
    a = np.frombuffer(raw, dtype=np.uint8)
    sep = np.flatnonzero((a == 58) | (a == 10))
    ends_at = np.flatnonzero(a[sep] == 10)  # where in sep each line's newline is
    n = ends_at.size
    colons = np.diff(ends_at, prepend=-1) - 1
    if int(colons.min()) < 2 or int(colons.max()) > 4:
        return None
    first = ends_at - colons  # where in sep each line's first colon is
    line_end = sep[ends_at]
    line_start = np.zeros(n, dtype=np.int64)
    line_start[1:] = line_end[:-1] + 1
    if int((line_end - line_start).max()) > MAX_LINE:
        return None
    c1, c2, c3 = sep[first], sep[first + 1], sep[first + 2]
    f0, f1 = (line_start, c1 - line_start), (c1 + 1, c2 - c1 - 1)
    (h_start, h_len), (s_start, s_len) = (f1, f0) if size_first else (f0, f1)
    n_start, n_len = c2 + 1, c3 - c2 - 1
    if int(n_len.min()) < 1 or int(s_len.min()) < 1:
        return None
    if not bool(np.isin(h_len, (32, 40, 64)).all()):
        return None

    # MinFL and MaxFL: digits only here (parse_fl would also strip blanks)
    has_min = colons >= 3
    m_start = c3 + 1
    m_end = sep[np.minimum(first + 3, ends_at)]
    m_len = np.where(has_min, m_end - m_start, 0)
    has_max = colons >= 4
    x_start = m_end + 1
    x_len = np.where(has_max, sep[np.minimum(first + 4, ends_at)] - x_start, 0)
    minfl = _numbers(a, m_start, m_len)
    maxfl = _numbers(a, x_start, x_len)
    if minfl is None or maxfl is None:
        return None
    has_min &= m_len > 0
    has_max &= x_len > 0

    star = (s_len == 1) & (a[s_start] == 42)
    sizes = _numbers(a, s_start, np.where(star, 0, s_len))
    if sizes is None:
        return None
    if bool(((~star) & ((sizes < 1) | (sizes > MAX_SIZE))).any()):
        return None
    if kind != "import" and bool((star & ~(has_min & (minfl >= WILDCARD_MIN_FL))).any()):
        return None

    keep = ~(has_min & (minfl > FLEVEL)) & ~(has_max & (maxfl < FLEVEL))
    rows = np.flatnonzero(keep)
    widths = h_len[rows]
    found, first_row = np.unique(widths, return_index=True)
    suffix = b"" if official else b".UNOFFICIAL"
    batches: dict[int, HashBatch] = {}
    for w in found[np.argsort(first_row)].tolist():
        sel_rows = rows if found.size == 1 else rows[widths == w]
        digests = _digests(a, h_start[sel_rows], w)
        if digests is None:
            return None
        blob, ends = _names(a, n_start[sel_rows], n_len[sel_rows], suffix)
        batches[w // 2] = HashBatch(
            kind, w // 2, digests, sizes[sel_rows].astype(np.uint32), blob, ends
        )
    if rows.size < n:  # dropped rows must be valid hex too
        for w in np.unique(h_len).tolist():
            if _digests(a, h_start[~keep & (h_len == w)], w) is None:
                return None
    return batches


def _uniform_columns(text: str) -> list[list[str] | None] | None:
    """The five columns (None when absent) when every line has the same number of fields.

    The text is cut at every ':' and newline at once (each newline first becomes ":\\n")
    and the columns are taken by stride. Every line but the first then starts with a
    field whose first character is the newline: all n - 1 of them in the stride-0 column
    proves that each line has exactly k fields (n line starts, each at a multiple of k,
    among n such slots). None when that does not hold.
    """
    lines = text.count("\n") + 1
    per_line, rest = divmod(text.count(":"), lines)
    if rest or per_line + 1 not in (3, 4, 5):
        return None
    k = per_line + 1
    flat = text.replace("\n", ":\n").split(":")
    first = "".join(flat[0::k])
    if first.count("\n") != lines - 1:
        return None
    cols: list[list[str] | None] = [first.split("\n")]
    cols += [flat[i::k] for i in range(1, k)]
    return cols + [None] * (5 - k)


def _mixed_columns(lines: list[str], colons: list[int], counts: set[int]) -> list[list[str] | None]:
    """Columns of lines with 3, 4 or 5 fields (absent trailing fields read as empty, as
    parse_fl reads them): each group of lines with one field count is cut at once and put
    back in file order by index arrays."""
    n = len(lines)
    by_count = np.array(colons, dtype=np.int8)
    rows = np.array(lines, dtype=object)
    full = [np.full(n, "", dtype=object) for _ in range(5)]
    for c in counts:
        at = np.flatnonzero(by_count == c)
        k = c + 1
        flat = ":".join(rows[at].tolist()).split(":")
        for i in range(k):
            full[i][at] = flat[i::k]
    return [col.tolist() for col in full]


def _fl_column(
    column: list[str] | None, admits: Callable[[int], bool]
) -> tuple[list[bool] | None, dict[str, int | None]] | None:
    """A MinFL or MaxFL column: (which rows it keeps, None for all; each distinct text's
    value), or None when a value is not a level. A column holds a handful of distinct values,
    each parsed once."""
    if column is None:
        return None, {}
    values: dict[str, int | None] = {}
    keeps: dict[str, bool] = {}
    for text in set(column):
        try:
            level, _ = parse_fl([text])
        except ValueError:
            return None
        values[text] = level
        keeps[text] = level is None or admits(level)
    if all(keeps.values()):
        return None, values
    return list(map(keeps.__getitem__, column)), values


def _all(masks: list[list[bool] | None]) -> list[bool] | None:
    """The rows every mask keeps (None: every row)."""
    real = [m for m in masks if m is not None]
    if not real:
        return None
    out = real[0]
    for m in real[1:]:
        out = list(map(operator.and_, out, m))
    return out


def _size(text: str) -> int | None:
    """A size field's value, or None when it is not a size ClamAV takes."""
    if not is_number(text):
        return None
    digits = text.lstrip("0")
    if len(digits) > 10:  # int() refuses very long digit strings; these are too large anyway
        return None
    value = int(digits or "0")
    return value if 0 < value <= MAX_SIZE else None


def _parse_slow(
    text: str,
    origin: str,
    kind: str,
    size_first: bool,
    official: bool,
    ignored: frozenset[str],
    first_line: int = 0,
) -> dict[int, HashBatch]:
    """Line by line, every rule applied; ``text`` starts after line ``first_line`` of the
    file, so that a bad line is named by its number in the file."""
    try:
        return _parse_lines(text, origin, kind, size_first, official, ignored)
    except SignatureError as exc:
        if not first_line:
            raise
        raise SignatureError(exc.path, exc.lineno + first_line, exc.reason) from None


def _parse_lines(
    text: str, origin: str, kind: str, size_first: bool, official: bool, ignored: frozenset[str]
) -> dict[int, HashBatch]:
    rows: dict[int, tuple[bytearray, list[int], list[str]]] = {}
    for lineno, line in iter_lines(text, origin):
        fields = line.split(":")
        if not 3 <= len(fields) <= 5:
            raise SignatureError(
                origin, lineno, f"expected 3 to 5 ':'-separated fields, got {len(fields)}"
            )
        if size_first:
            size_text, hash_text = fields[0], fields[1]
        else:
            hash_text, size_text = fields[0], fields[1]
        name = fields[2]
        if len(hash_text) not in (32, 40, 64) or not _HEX.issuperset(hash_text):
            raise SignatureError(origin, lineno, f"bad hash {hash_text[:80]!r}")
        try:
            minfl, maxfl = parse_fl(fields[3:])
        except ValueError as exc:
            raise SignatureError(origin, lineno, str(exc)) from None
        if size_text == "*":
            if kind != "import" and (minfl is None or minfl < WILDCARD_MIN_FL):
                raise SignatureError(
                    origin,
                    lineno,
                    f"size '*' needs a minimum functionality level >= {WILDCARD_MIN_FL}",
                )
            size = 0
        else:
            value = _size(size_text)
            if value is None:
                raise SignatureError(origin, lineno, f"bad size {size_text[:40]!r}")
            size = value
        if not name:
            raise SignatureError(origin, lineno, "empty signature name")
        if not fl_window_ok(minfl, maxfl) or name in ignored:
            continue
        width = len(hash_text) // 2
        got = rows.get(width)
        if got is None:
            got = rows[width] = (bytearray(), [], [])
        got[0].extend(bytes.fromhex(hash_text))
        got[1].append(size)
        got[2].append(final_name(name, official))
    return {
        w: HashBatch.from_lists(kind, w, bytes(d), sizes, names, "")
        for w, (d, sizes, names) in rows.items()
    }
