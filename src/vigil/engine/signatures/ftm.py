"""Parser for ``.ftm`` file-type magic databases (signatures.md §1.8); no file I/O.

Imports vigil.errors, vigil.engine.filetype and the body-pattern parser (to check type-1 rules).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from vigil.engine.filetype import MagicRule, parse_cl_type
from vigil.engine.signatures.pattern import PatternError, parse_offset, parse_pattern
from vigil.errors import SignatureError

__all__ = ["parse_ftm", "FLEVEL"]

# The functionality level clamscan 1.4.6 reports; MinFL/MaxFL windows are checked against it.
FLEVEL = 216

_DIGITS = re.compile(r"[0-9]*")
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})*")


def _number(text: str) -> int | None:
    """ClamAV's cli_isnumber + atoi: only digits, and the empty string counts as 0."""
    if _DIGITS.fullmatch(text) is None:
        return None
    return int(text) if text else 0


def parse_ftm(lines: Iterable[str], origin: str, flevel: int = FLEVEL) -> list[MagicRule]:
    """Parse ``MagicType:Offset:Magic:Description:RequiredType:ResultType[:MinFL[:MaxFL]]``.

    Returns the rules newest-first (last line first), the order ClamAV consults them in.
    As in ClamAV, ``#`` lines are comments, a blank line or an unknown ``CL_TYPE`` name is
    an error, rules outside the MinFL/MaxFL window are skipped before anything else is
    checked, unknown magic types are skipped, and a file that loads no rule is an error.
    Line numbers count every physical line (ClamAV's own messages skip comment lines).
    """
    rules: list[MagicRule] = []
    for lineno, line in enumerate(lines, 1):
        line = line.rstrip("\r\n")
        if line.startswith("#"):
            continue
        rule = _parse_line(line, origin, lineno, flevel)
        if rule is not None:
            rules.append(rule)
    if not rules:
        raise SignatureError(origin, 0, "empty filetype database")
    rules.reverse()
    return rules


def _parse_line(line: str, origin: str, lineno: int, flevel: int) -> MagicRule | None:
    def fail(reason: str) -> SignatureError:
        return SignatureError(origin, lineno, reason)

    fields = line.split(":")
    if not 6 <= len(fields) <= 8:
        if not line.strip():
            raise fail("blank line")
        raise fail(f"expected 6 to 8 ':'-separated fields, got {len(fields)}")
    kind_text, offset, magic, description, required_text, result_text = fields[:6]
    if len(fields) > 6:
        minfl = _number(fields[6])
        if minfl is None:
            raise fail(f"MinFL {fields[6]!r} is not a number")
        if minfl > flevel:
            return None
        if len(fields) == 8:
            maxfl = _number(fields[7])
            if maxfl is None:
                raise fail(f"MaxFL {fields[7]!r} is not a number")
            if maxfl < flevel:
                return None
    try:
        required = parse_cl_type(required_text)
        result = parse_cl_type(result_text)
    except ValueError as exc:
        raise fail(str(exc)) from None
    kind = _number(kind_text)
    if kind is None:
        raise fail(f"magic type {kind_text!r} is not a number")
    if kind == 1:
        problem = _body_rule_problem(offset, magic)
        if problem:
            raise fail(f"bad file-type pattern: {problem}")
    elif kind in (0, 4):
        if _number(offset) is None:
            raise fail(f"offset {offset!r} is not a number")
        if _HEX.fullmatch(magic) is None:
            raise fail(f"bad magic {magic!r}: expected pairs of hex digits")
    else:
        return None  # ClamAV skips unsupported magic types without complaint
    return MagicRule(kind, offset, magic, description, required, result)


def _body_rule_problem(offset: str, magic: str) -> str | None:
    """Why ClamAV would refuse a type-1 rule (bad pattern, executable offset), or None.

    Type-1 rules join the generic (target 0) matcher, where EP/section offsets are invalid.
    """
    try:
        off = parse_offset(offset)
        if off.needs_exe:
            return "invalid offset type for target 0"
        if off.kind == "macro":
            return "macro offsets are not valid in file-type rules"
        parse_pattern(magic)
    except PatternError as exc:
        return str(exc)
    return None
