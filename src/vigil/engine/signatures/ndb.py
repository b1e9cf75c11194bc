"""Body-signature databases: .ndb/.ndu/.sdb (``Name:Target:Offset:Hex``) and legacy .db."""

from __future__ import annotations

from vigil.engine.signatures.common import (
    BATCH_SIGS,
    Batch,
    final_name,
    hand_over,
    is_number,
    iter_lines,
    parse_fl,
)
from vigil.engine.signatures.model import BodySig, fl_window_ok
from vigil.engine.signatures.pattern import (
    ANY_OFFSET,
    PatternError,
    parse_checked,
    parse_offset,
)
from vigil.errors import SignatureError

__all__ = ["parse_ndb", "parse_db", "EXE_TARGETS", "MAX_TARGET"]

EXE_TARGETS = frozenset({1, 6, 9})  # PE, ELF, Mach-O: the targets with EP/section offsets
MAX_TARGET = 14


_TARGETS = {"*": 0} | {str(n): n for n in range(MAX_TARGET + 1)}  # the usual spellings


def parse_target(text: str) -> int | None:
    """Target type number; None for a number ClamAV skips (>= 15)."""
    if text == "*":
        return 0
    if not is_number(text):
        raise ValueError(f"bad target type {text!r}")
    n = int(text)
    return n if n <= MAX_TARGET else None


def parse_ndb(
    text: str,
    origin: str,
    *,
    official: bool,
    ignored: frozenset[str] = frozenset(),
    sources: list[str] | None = None,
    batch: Batch[BodySig] | None = None,
) -> list[BodySig]:
    """Parse an .ndb-style file; a malformed line raises SignatureError with its line.

    ``sources`` gets each kept signature's line (parsing that line alone gives it again).
    ``batch`` (see common.Batch) takes the signatures every BATCH_SIGS kept ones."""
    out: list[BodySig] = []
    for lineno, line in iter_lines(text, origin):
        fields = line.split(":")
        if not 4 <= len(fields) <= 6:
            raise SignatureError(
                origin, lineno, f"expected 4 to 6 ':'-separated fields, got {len(fields)}"
            )
        name, target_text, offset_text, hex_text = fields[:4]
        try:
            if not name:
                raise ValueError("empty signature name")
            if len(fields) > 4:
                minfl, maxfl = parse_fl(fields[4:])
                if not fl_window_ok(minfl, maxfl):
                    # skipped before the body is parsed: old CVDs hold plain-text notices
                    # with MaxFL 38 in the pattern field (test-1.cvd does)
                    continue
            target = _TARGETS.get(target_text)
            if target is None:
                target = parse_target(target_text)
            offset = ANY_OFFSET if offset_text == "*" else parse_offset(offset_text)
            if offset.needs_exe and target is not None and target not in EXE_TARGETS:
                raise ValueError(f"invalid offset type for target {target}")
            # the 3-byte minimum of all-fixed bodies is the generic Boyer-Moore matcher's:
            # other targets take 2-byte bodies (observed on 1.4.6)
            pattern = parse_checked(hex_text, min_fixed_only=3 if target == 0 else 2)
        except (ValueError, PatternError) as exc:
            raise SignatureError(origin, lineno, f"{name}: {exc}") from None
        if target is None or name in ignored:
            continue
        out.append(BodySig(final_name(name, official), target, offset, pattern, hex_text))
        if sources is not None:
            sources.append(line)
        if batch is not None and len(out) == BATCH_SIGS:
            hand_over(batch, out, sources)
    return out


def parse_db(
    text: str,
    origin: str,
    *,
    official: bool,
    ignored: frozenset[str] = frozenset(),
    sources: list[str] | None = None,
) -> list[BodySig]:
    """Parse a legacy ``Name=Hex`` file: any offset, target 0 (``sources``: as parse_ndb)."""
    out: list[BodySig] = []
    for lineno, line in iter_lines(text, origin):
        name, sep, hex_text = line.partition("=")
        if not sep or not name:
            raise SignatureError(origin, lineno, "expected Name=HexSignature")
        if hex_text.startswith("="):
            continue
        try:
            pattern = parse_checked(hex_text, min_fixed_only=3)
        except PatternError as exc:
            raise SignatureError(origin, lineno, f"{name}: {exc}") from None
        if name in ignored:
            continue
        out.append(BodySig(final_name(name, official), 0, ANY_OFFSET, pattern, hex_text))
        if sources is not None:
            sources.append(line)
    return out
