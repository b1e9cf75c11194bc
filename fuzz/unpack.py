"""Fuzz target: every unpacker, called directly through the registry
(``vigil.engine.containers.extract``) and the sniffed extra formats (ar, zstd).

The first byte picks the container type, the second the size limit. Unpackers promise to
yield what they can read and never raise; each child must respect the limit.
"""

from __future__ import annotations

from _harness import Input, check, instrumented, main

with instrumented(__name__):
    from vigil.engine.containers import CONTAINER_TYPES, Child, extract
    from vigil.engine.containers.archives import ar_members, zstd_stream

TYPES = sorted(CONTAINER_TYPES, key=lambda t: t.value)
NAMES = [t.value for t in TYPES] + ["ar", "zstd"]
LIMITS = (64, 4096, 1 << 20)
MAX_CHILDREN = 2000


def children(selector: int, data: bytes, limit: int) -> list[Child]:
    """Up to MAX_CHILDREN children of ``data`` read as container number ``selector``."""
    index = selector % len(NAMES)
    if index < len(TYPES):
        it = extract(TYPES[index], data, limit)
    elif NAMES[index] == "ar":
        it = ar_members(data, limit)
    else:
        it = zstd_stream(data, limit)
    out = []
    for child in it:
        out.append(child)
        if len(out) >= MAX_CHILDREN:
            break
    return out


def TestOneInput(data: bytes) -> None:
    src = Input(data)
    selector = src.byte()
    limit = src.pick(LIMITS)
    body = src.rest()
    for child in children(selector, body, limit):
        check(isinstance(child.data, bytes), f"{NAMES[selector % len(NAMES)]}: data not bytes")
        check(isinstance(child.name, str), f"{NAMES[selector % len(NAMES)]}: name not str")
        check(
            len(child.data) <= limit,
            f"{NAMES[selector % len(NAMES)]}: child of {len(child.data)} bytes over {limit}",
        )


if __name__ == "__main__":
    main(TestOneInput)
