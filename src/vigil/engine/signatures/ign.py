"""Ignore lists (.ign/.ign2): names of signatures that must never be loaded (§1.7)."""

from __future__ import annotations

from vigil.engine.signatures.common import iter_lines
from vigil.errors import SignatureError

__all__ = ["parse_ign"]


def parse_ign(text: str, origin: str) -> set[str]:
    """Names to ignore, compared case-sensitively against the names as written.

    The two-field ``Name:MD5`` form fails to load in clamscan 1.4.6 ("Malformed MD5 string"),
    so it is an error here too; the legacy three-field form keeps only its third field.
    """
    names: set[str] = set()
    for lineno, line in iter_lines(text, origin):
        fields = line.split(":")
        if len(fields) == 1:
            name = fields[0]
        elif len(fields) == 2:
            raise SignatureError(origin, lineno, "malformed MD5 string")
        elif len(fields) == 3:
            name = fields[2]
        else:
            raise SignatureError(
                origin, lineno, f"expected 1 to 3 ':'-separated fields, got {len(fields)}"
            )
        if not name:
            raise SignatureError(origin, lineno, "empty signature name")
        names.add(name)
    return names
