"""Fuzz target: every text signature-database parser, called directly.

The first byte picks the format (hdb, hsb, mdb, imp, fp, ndb, db, ldb, cdb, ftm, ign, ign2,
yar) and the second whether the file counts as official; the rest is the file, decoded as
latin-1 exactly as the loader does. A malformed file must end as SignatureError (or its
parent DatabaseError); anything else escaping a parser is a finding.
"""

from __future__ import annotations

from _harness import Input, check, instrumented, main

with instrumented(__name__):
    from vigil.engine.signatures.cdb import parse_cdb
    from vigil.engine.signatures.ftm import parse_ftm
    from vigil.engine.signatures.hdb import HashBatch, parse_hash_db
    from vigil.engine.signatures.ign import parse_ign
    from vigil.engine.signatures.ldb import parse_ldb
    from vigil.engine.signatures.ndb import parse_db, parse_ndb
    from vigil.engine.signatures.yara import parse_yara
    from vigil.errors import DatabaseError

FORMATS = ("hdb", "hsb", "mdb", "imp", "fp", "ndb", "db", "ldb", "cdb", "ftm", "ign", "ign2", "yar")


def _hashes(text: str, origin: str, suffix: str, official: bool) -> None:
    batches: list[HashBatch] = []
    kept = parse_hash_db(text, origin, suffix, batches.append, official=official)
    check(kept == sum(len(b.sizes) for b in batches), "hash count differs from the batches")
    for b in batches:
        check(len(b.digests) == b.width * len(b.sizes) == b.width * len(b.names), "ragged batch")


def TestOneInput(data: bytes) -> None:
    src = Input(data)
    fmt = src.pick(FORMATS)
    official = bool(src.byte() & 1)
    text = src.rest().decode("latin-1")
    origin = f"fuzz.{fmt}"
    try:
        if fmt in ("hdb", "hsb", "mdb", "imp", "fp"):
            _hashes(text, origin, fmt, official)
        elif fmt == "ndb":
            parse_ndb(text, origin, official=official)
        elif fmt == "db":
            parse_db(text, origin, official=official)
        elif fmt == "ldb":
            parse_ldb(text, origin, official=official)
        elif fmt == "cdb":
            parse_cdb(text, origin, official=official)
        elif fmt == "ftm":
            lines = text.split("\n")
            if lines and lines[-1] == "":
                lines.pop()
            parse_ftm(lines, origin)
        elif fmt in ("ign", "ign2"):
            parse_ign(text, origin)
        else:
            parse_yara(text, origin, official=official)
    except DatabaseError:
        pass


if __name__ == "__main__":
    main(TestOneInput)
