"""Fuzz target: file typing (vigil.engine.filetype) over the built-in magic table.

Typing reads at most the first KiB of anything and must never raise.
"""

from __future__ import annotations

from _harness import check, instrumented, main

with instrumented(__name__):
    from vigil.engine.filetype import (
        HEAD_SIZE,
        FileType,
        builtin_rules,
        detect_type,
        text_or_binary,
        utf16_to_ascii,
    )

RULES = builtin_rules()


def TestOneInput(data: bytes) -> None:
    head = data[:HEAD_SIZE]
    ftype = detect_type(head, RULES)
    check(isinstance(ftype, FileType), "not a FileType")
    text_or_binary(head)
    utf16_to_ascii(head)


if __name__ == "__main__":
    main(TestOneInput)
