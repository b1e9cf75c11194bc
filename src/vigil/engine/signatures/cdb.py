"""Container metadata signatures (.cdb, §1.6 and §6.1)."""

from __future__ import annotations

import re

from vigil.engine.signatures.common import final_name, is_number, iter_lines, parse_fl
from vigil.engine.signatures.model import CdbSig, fl_window_ok
from vigil.errors import SignatureError

__all__ = ["parse_cdb"]


def _range(text: str, what: str) -> tuple[int, int] | None:
    """``*`` -> None; ``n`` -> (n, n); ``a-b`` -> (a, b) with 0 meaning open on that side."""
    if text == "*":
        return None
    lo, sep, hi = text.partition("-")
    if not is_number(lo) or (sep and not is_number(hi)):
        raise ValueError(f"bad {what} {text!r}")
    return (int(lo), int(hi)) if sep else (int(lo), int(lo))


def parse_cdb(
    text: str, origin: str, *, official: bool, ignored: frozenset[str] = frozenset()
) -> list[CdbSig]:
    """Parse a .cdb file; a malformed line raises SignatureError with its line."""
    out: list[CdbSig] = []
    for lineno, line in iter_lines(text, origin):
        f = line.split(":")
        if not 10 <= len(f) <= 12:
            raise SignatureError(
                origin, lineno, f"expected 10 to 12 ':'-separated fields, got {len(f)}"
            )
        try:
            if not f[0]:
                raise ValueError("empty signature name")
            ctype = None if f[1] == "*" else f[1]
            if ctype is not None and not ctype.startswith("CL_TYPE_"):
                raise ValueError(f"bad container type {ctype!r}")
            regex = None if f[3] == "*" else f[3]
            if regex is not None:
                re.compile(regex.encode("latin-1"))
            if f[6] not in ("*", "0", "1"):
                raise ValueError(f"bad encryption flag {f[6]!r}")
            minfl, maxfl = parse_fl(f[10:])
            sig = CdbSig(
                final_name(f[0], official),
                ctype,
                _range(f[2], "container size"),
                regex,
                _range(f[4], "size in container"),
                _range(f[5], "real size"),
                None if f[6] == "*" else int(f[6]),
                _range(f[7], "file position"),
            )
        except (ValueError, re.error) as exc:
            raise SignatureError(origin, lineno, f"{f[0]}: {exc}") from None
        if fl_window_ok(minfl, maxfl) and f[0] not in ignored:
            out.append(sig)
    return out
