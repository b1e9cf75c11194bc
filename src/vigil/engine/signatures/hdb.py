"""Hash databases: .hdb .hsb .hdu .hsu .fp .sfp .imp (hash first) and .mdb .msb .mdu .msu.

Each signature goes straight to a sink (``add(kind, digest, size, name)``) rather than into
one object per signature, because the official database holds millions of these lines
(signatures.md §1.1, §1.2).
"""

from __future__ import annotations

from collections.abc import Callable

from vigil.engine.signatures.common import final_name, iter_lines, parse_fl
from vigil.engine.signatures.model import fl_window_ok
from vigil.errors import SignatureError

__all__ = ["HashSink", "parse_hash_db", "HASH_KINDS"]

HashSink = Callable[[str, bytes, int, str], None]

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
    """Parse one hash database into ``add``; returns how many signatures were kept.

    A malformed line raises SignatureError(origin, line, reason); size 0 means any size.
    """
    kind, size_first = HASH_KINDS[suffix]
    count = 0
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
        elif size_text.isdigit() and 0 < int(size_text) <= 0xFFFFFFFE:
            size = int(size_text)
        else:
            raise SignatureError(origin, lineno, f"bad size {size_text[:40]!r}")
        if not name:
            raise SignatureError(origin, lineno, "empty signature name")
        if not fl_window_ok(minfl, maxfl) or name in ignored:
            continue
        add(kind, bytes.fromhex(hash_text), size, final_name(name, official))
        count += 1
    return count
