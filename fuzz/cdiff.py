"""Fuzz target: the .cdiff reader and script applier (vigil.engine.signatures.cdiff).

Even bytes of the first byte: ``parse_cdiff`` + ``verify_cdiff`` on a whole .cdiff.
Odd: ``apply_cdiff`` of the input (plain, gzip or .cdiff script) to a small database of
three members. Failures must be DatabaseError/SignatureError naming the script line.
"""

from __future__ import annotations

from _harness import Input, check, instrumented, main

with instrumented(__name__):
    from vigil.engine.signatures.cdiff import apply_cdiff, make_cdiff, parse_cdiff, verify_cdiff
    from vigil.errors import DatabaseError

MEMBERS = {
    "daily.ndb": b"Sig.One:0:*:414243444546\nSig.Two:0:*:6162636465\nSig.Three:1:EP+0:9090\n",
    "daily.hdb": b"44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n",
    "daily.ign2": b"Sig.Two\n",
}


def TestOneInput(data: bytes) -> None:
    src = Input(data)
    mode = src.byte()
    body = src.rest()
    try:
        if mode & 1 == 0:
            verify_cdiff(parse_cdiff(body, "fuzz.cdiff"))
            return
        result = apply_cdiff(MEMBERS, body, "fuzz.cdiff")
    except DatabaseError:
        return
    check(all(isinstance(v, bytes) for v in result.values()), "member is not bytes")
    if mode & 2:  # the script maker must undo what the applier did
        back = apply_cdiff(result, make_cdiff(result, MEMBERS), "back.cdiff")
        check(back == MEMBERS, "make_cdiff does not round-trip")


if __name__ == "__main__":
    main(TestOneInput)
