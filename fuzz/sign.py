"""Fuzz target: the ``.sign`` file parser and the detached PKCS#7 verifier behind it.

``parse_sign_file`` must refuse bad files with SignatureError; each DER blob it returns is
fed to ``verify_detached`` (with no trusted CA), which must refuse with DatabaseError.
"""

from __future__ import annotations

import datetime as dt

from _harness import instrumented, main

with instrumented(__name__):
    from vigil.engine.signatures.sign import parse_sign_file, verify_detached
    from vigil.errors import DatabaseError

WHEN = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def TestOneInput(data: bytes) -> None:
    try:
        lines = parse_sign_file(data, "fuzz.cvd.sign")
    except DatabaseError:
        lines = []
    # raw DER too: the fuzzer reaches the ASN.1 reader without learning base64
    blobs = [line.der for line in lines[:4]] + [data]
    for der in blobs:
        try:
            verify_detached(b"database", der, [], at=WHEN)
        except DatabaseError:
            pass


if __name__ == "__main__":
    main(TestOneInput)
