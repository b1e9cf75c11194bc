"""Fuzz target: the signature building blocks shared by .ndb/.db/.ldb/.ftm: hex patterns,
offsets, logical expressions, target blocks and subsignatures, and the pattern compiler.

These functions document ValueError (PatternError is one) as their refusal, and SkipSig for
signatures ClamAV skips; the callers turn both into SignatureError with the line number.
"""

from __future__ import annotations

from _harness import Input, instrumented, main

with instrumented(__name__):
    from vigil.engine.matcher.body import compile_pattern
    from vigil.engine.signatures.common import SkipSig
    from vigil.engine.signatures.ldb import (
        MAX_SUBSIGS,
        expr_caps,
        expr_indexes,
        parse_expr,
        parse_subsig,
        parse_tdb,
        split_ldb,
    )
    from vigil.engine.signatures.pattern import check_static, parse_offset, parse_pattern


def TestOneInput(data: bytes) -> None:
    src = Input(data)
    which = src.byte() % 5
    flags = src.byte()
    text = src.rest().decode("latin-1")
    try:
        if which == 0:
            pattern = parse_pattern(text, brackets_as_gaps=bool(flags & 1))
            check_static(pattern, min_fixed_only=2 + (flags >> 1 & 1))
            compile_pattern(
                pattern, wide=bool(flags & 4), caseless=bool(flags & 8), fullword=bool(flags & 16)
            )
        elif which == 1:
            parse_offset(text)
        elif which == 2:
            e = parse_expr(text)
            highest = max(expr_indexes(e), default=0)
            if highest < MAX_SUBSIGS:  # parse_ldb_line refuses larger indexes before this
                expr_caps(e, highest + 1)
        elif which == 3:
            parse_tdb(text)
        else:
            for i, field in enumerate(split_ldb(text)[:8]):
                parse_subsig(field, i, flags % 15)
    except (ValueError, SkipSig):
        pass


if __name__ == "__main__":
    main(TestOneInput)
