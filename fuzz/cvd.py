"""Fuzz target: the CVD/CLD/CUD container reader (``read_cvd``) and header parser.

The first byte picks the container kind and whether signatures are verified (the fuzzer
cannot forge ClamAV's signature, so the unverified path is where the tar and .info checks
are reached). Bad containers must end as DatabaseError.
"""

from __future__ import annotations

from _harness import Input, check, instrumented, main

with instrumented(__name__):
    from vigil.engine.signatures.cvd import parse_cvd_header, read_cvd
    from vigil.errors import DatabaseError

KINDS = ("cvd", "cld", "cud")


def TestOneInput(data: bytes) -> None:
    src = Input(data)
    mode = src.byte()
    kind = KINDS[mode % 3]
    verify = bool(mode & 4)
    body = src.rest()
    try:
        parse_cvd_header(body, f"fuzz.{kind}")
    except DatabaseError:
        pass
    try:
        arch = read_cvd(body, f"fuzz.{kind}", verify=verify, max_tar_size=1 << 22)
    except DatabaseError:
        return
    check(arch.kind == kind, "container kind changed")
    for name, member in arch.members:
        check(isinstance(name, str) and isinstance(member, bytes), "bad member")


if __name__ == "__main__":
    main(TestOneInput)
