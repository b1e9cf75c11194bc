"""Fuzz target: clamd command framing and matching (vigil.protocol) and reply lines.

The bytes are a client's receive buffer. Framing never raises anything but NeedMore, always
consumes part of a non-empty buffer, and the matched command's argument is a suffix of the
framed text; reply lines end with the command's terminator.
"""

from __future__ import annotations

from _harness import Input, check, instrumented, main

with instrumented(__name__):
    from vigil.protocol import replies
    from vigil.protocol.framing import (
        COMMANDS,
        MAX_COMMAND,
        Mode,
        NeedMore,
        match_command,
        next_command,
        read_chunk_header,
    )


def TestOneInput(data: bytes) -> None:
    buf = data
    first = True
    for _ in range(64):  # a pipelined IDSESSION: frame commands until the buffer runs out
        try:
            framed = next_command(buf, first_read=first)
        except NeedMore:
            check(first is False or not buf or buf[:1] in (b"z", b"n"), "NeedMore on 1st read")
            break
        check(0 < framed.consumed <= len(buf), f"consumed {framed.consumed} of {len(buf)}")
        check(framed.text in buf[: framed.consumed], "framed text is not in the buffer")
        cmd = match_command(framed)
        if cmd is not None:
            check(cmd.name in COMMANDS, f"unknown name {cmd.name}")
            check(framed.text.endswith(cmd.arg), "argument is not the end of the command")
            check(cmd.mode is framed.mode, "mode changed")
            if framed.mode is Mode.LEGACY:
                check(cmd.name != "IDSESSION", "IDSESSION accepted without z/n prefix")
            line = replies.line(cmd.arg[:MAX_COMMAND], cmd.term, len(buf))
            check(line.endswith(cmd.term), "reply without terminator")
            replies.found(cmd.arg, cmd.arg.decode("latin-1"))
        buf = buf[framed.consumed :]
        first = False
    src = Input(data)
    pos = src.byte() % 8
    size = read_chunk_header(data, pos)
    if size is not None:
        check(0 <= size < 1 << 32, "chunk length out of range")
    else:
        check(len(data) - pos < 4, "complete header reported incomplete")


if __name__ == "__main__":
    main(TestOneInput)
