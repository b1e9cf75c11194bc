"""Hash databases: .hdb .hsb .hdu .hsu .fp .sfp .imp (hash first) and .mdb .msb .mdu .msu.

The official database holds millions of these lines (signatures.md §1.1, §1.2), so a file
is parsed in bulk: one regular-expression pass over the whole text finds every well-formed
line and the columns are converted at C speed. Only a file that does not pass that way is
read again line by line, to name the first bad line precisely.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from vigil.engine.signatures.common import final_name, is_number, iter_lines, parse_fl
from vigil.engine.signatures.model import fl_window_ok
from vigil.errors import SignatureError

__all__ = ["HashBatch", "HashSink", "parse_hash_db", "HASH_KINDS"]


@dataclass(slots=True)
class HashBatch:
    """Signatures of one kind and digest width, column-wise (size 0 = any size)."""

    kind: str
    width: int
    digests: bytes = b""
    sizes: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)


HashSink = Callable[[HashBatch], None]

_HASH_FIRST = re.compile(
    r"^([0-9A-Fa-f]{32}|[0-9A-Fa-f]{40}|[0-9A-Fa-f]{64}):([0-9]{1,10}|\*):([^:\n]+)"
    r"(?::([^:\n]*)(?::([^:\n]*))?)?$",
    re.M,
)
_SIZE_FIRST = re.compile(
    r"^([0-9]{1,10}|\*):([0-9A-Fa-f]{32}|[0-9A-Fa-f]{40}|[0-9A-Fa-f]{64}):([^:\n]+)"
    r"(?::([^:\n]*)(?::([^:\n]*))?)?$",
    re.M,
)

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


def parse_hash_db(
    text: str,
    origin: str,
    suffix: str,
    add: HashSink,
    *,
    official: bool,
    ignored: frozenset[str] = frozenset(),
) -> int:
    """Parse one hash database into batches passed to ``add``; returns how many were kept.

    A malformed line raises SignatureError(origin, line, reason).
    """
    kind, size_first = HASH_KINDS[suffix]
    batches = _parse_fast(text, kind, size_first, official, ignored)
    if batches is None:
        batches = _parse_slow(text, origin, kind, size_first, official, ignored)
    count = 0
    for batch in batches.values():
        if batch.sizes:
            add(batch)
            count += len(batch.sizes)
    return count


def _parse_fast(
    text: str, kind: str, size_first: bool, official: bool, ignored: frozenset[str]
) -> dict[int, HashBatch] | None:
    """Bulk parse; None when anything is unusual (the slow path then finds the culprit)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    lines = text.count("\n") + (0 if text.endswith("\n") else 1)
    if not text or "\n\n" in text or "\x00" in text or text.startswith("\n"):
        return None
    comments = len(re.findall(r"^#", text, re.M))
    rows = (_SIZE_FIRST if size_first else _HASH_FIRST).findall(text)
    if len(rows) != lines - comments:
        return None
    hexes: dict[int, list[str]] = {}
    batches: dict[int, HashBatch] = {}
    suffix = "" if official else ".UNOFFICIAL"
    for row in rows:
        if size_first:
            size_text, hash_text, name, minfl, maxfl = row
        else:
            hash_text, size_text, name, minfl, maxfl = row
        if " (Clam)" in name or (ignored and name in ignored):
            return None  # rare forms: the slow path applies every rule to them
        if minfl or maxfl:
            if not (is_number(minfl) or not minfl) or not (is_number(maxfl) or not maxfl):
                return None
            if not fl_window_ok(int(minfl) if minfl else None, int(maxfl) if maxfl else None):
                continue
        if size_text == "*":
            if kind != "import" and (not minfl or int(minfl) < WILDCARD_MIN_FL):
                return None
            size = 0
        else:
            size = int(size_text)
            if not 0 < size <= 0xFFFFFFFE:
                return None
        width = len(hash_text) // 2
        batch = batches.get(width)
        if batch is None:
            batch = batches[width] = HashBatch(kind, width)
            hexes[width] = []
        hexes[width].append(hash_text)
        batch.sizes.append(size)
        batch.names.append(name + suffix)
    for width, batch in batches.items():
        batch.digests = bytes.fromhex("".join(hexes[width]))
    return batches


def _parse_slow(
    text: str, origin: str, kind: str, size_first: bool, official: bool, ignored: frozenset[str]
) -> dict[int, HashBatch]:
    batches: dict[int, HashBatch] = {}
    digests: dict[int, bytearray] = {}
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
        elif is_number(size_text) and 0 < int(size_text) <= 0xFFFFFFFE:
            size = int(size_text)
        else:
            raise SignatureError(origin, lineno, f"bad size {size_text[:40]!r}")
        if not name:
            raise SignatureError(origin, lineno, "empty signature name")
        if not fl_window_ok(minfl, maxfl) or name in ignored:
            continue
        width = len(hash_text) // 2
        batch = batches.get(width)
        if batch is None:
            batch = batches[width] = HashBatch(kind, width)
            digests[width] = bytearray()
        digests[width] += bytes.fromhex(hash_text)
        batch.sizes.append(size)
        batch.names.append(final_name(name, official))
    for width, batch in batches.items():
        batch.digests = bytes(digests[width])
    return batches
