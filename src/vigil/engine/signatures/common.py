"""Line reading and naming rules shared by every text database parser (signatures.md §0)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

from vigil.errors import SignatureError

__all__ = [
    "BATCH_SIGS",
    "Batch",
    "MAX_LINE",
    "SkipSig",
    "hand_over",
    "iter_lines",
    "final_name",
    "is_number",
    "parse_fl",
]

_S = TypeVar("_S")

# A parser's ``batch`` callback takes the signatures kept so far and their lines (empty
# when the caller asked for none) every BATCH_SIGS signatures; those are then not
# returned. The loader uses it to prepare and compile the first signatures of a large
# file while the rest are still being parsed. The lists are cleared when it returns.
Batch = Callable[[list[_S], list[str]], None]
BATCH_SIGS = 16_384


def hand_over(batch: Batch[_S], out: list[_S], sources: list[str] | None) -> None:
    """Give a parser's kept signatures to ``batch`` and start the lists afresh."""
    lines = sources if sources is not None else []
    batch(out, lines)
    out.clear()
    lines.clear()


# A line longer than this cannot be a signature ClamAV would load (its largest line buffer is
# 32 KiB for logical signatures); refusing it early keeps binary garbage from costing memory.
MAX_LINE = 1 << 20


class SkipSig(Exception):
    """Raised by a line parser for a well-formed signature that ClamAV silently skips."""


def iter_lines(text: str, origin: str) -> Iterator[tuple[int, str]]:
    """Yield (line number, line) for every signature line; comments are dropped.

    ClamAV strips trailing CR/LF, treats ``#`` lines as comments and refuses blank lines
    (observed on 1.4.6), including a second newline at the very end of a file.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise SignatureError(origin, 0, "empty database file")
    # whole-text scans first: most files have no CR, no NUL and no line near MAX_LINE
    has_cr = "\r" in text
    has_nul = "\x00" in text
    may_be_long = len(text) > MAX_LINE
    for lineno, line in enumerate(lines, 1):
        if has_cr:
            line = line.rstrip("\r")
        if not line or line.isspace():
            raise SignatureError(origin, lineno, "blank line")
        if line[0] == "#":
            continue
        if may_be_long and len(line) > MAX_LINE:
            raise SignatureError(origin, lineno, f"line too long ({len(line)} characters)")
        if has_nul and "\x00" in line:
            raise SignatureError(origin, lineno, "NUL byte in a signature line")
        yield lineno, line


def final_name(name: str, official: bool) -> str:
    """The name as reported: ``(Clam)`` cut off, ``.UNOFFICIAL`` added outside signed files."""
    cut = name.find(" (Clam)")
    if cut >= 0:
        name = name[:cut]
    return name if official else name + ".UNOFFICIAL"


def is_number(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts ``²`` and ``³``, which latin-1 text can
    hold and ``int`` refuses (ClamAV's parsers see them as non-digits too)."""
    return text.isascii() and text.isdigit()


def parse_fl(fields: list[str], what: str = "functionality level") -> tuple[int | None, int | None]:
    """Parse optional trailing MinFL[:MaxFL] fields (empty = absent)."""
    vals: list[int | None] = []
    for f in fields[:2]:
        f = f.strip()
        if not f:
            vals.append(None)
        elif is_number(f):
            vals.append(int(f))
        else:
            raise ValueError(f"bad {what} {f!r}")
    while len(vals) < 2:
        vals.append(None)
    return vals[0], vals[1]
