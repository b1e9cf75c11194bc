"""Sans-I/O framing: z/n/legacy commands and the command table (protocol §2)."""

from __future__ import annotations

import pytest

from vigil.protocol.framing import (
    MAX_COMMAND,
    Mode,
    NeedMore,
    match_command,
    next_command,
    read_chunk_header,
)


def parse(buf: bytes, first: bool = True) -> tuple[str | None, bytes, Mode, int]:
    framed = next_command(buf, first_read=first)
    cmd = match_command(framed)
    return (cmd.name if cmd else None), (cmd.arg if cmd else b""), framed.mode, framed.consumed


@pytest.mark.parametrize(
    ("data", "name", "arg", "mode"),
    [
        (b"PING", "PING", b"", Mode.LEGACY),
        (b"PING\n", "PING", b"", Mode.LEGACY),
        (b"PING\r\n", "PING", b"", Mode.LEGACY),
        (b"nPING\n", "PING", b"", Mode.N),
        (b"nPING\r\n", "PING", b"", Mode.N),
        (b"zPING\x00", "PING", b"", Mode.Z),
        (b"zPING\n\x00", None, b"", Mode.Z),
        (b"ping\n", None, b"", Mode.LEGACY),
        (b"nPING \n", None, b"", Mode.N),
        (b"nSCAN\n", None, b"", Mode.N),
        (b"nSCAN /a b\n", "SCAN", b"/a b", Mode.N),
        (b"nSCAN  /x\n", "SCAN", b" /x", Mode.N),
        (b"nSCANX/tmp/f\n", "SCAN", b"/tmp/f", Mode.N),
        (b"nCONTSCAN /d\n", "CONTSCAN", b"/d", Mode.N),
        (b"zVERSIONCOMMANDS\x00", "VERSIONCOMMANDS", b"", Mode.Z),
        (b"VERSIONCOMMANDS\n", None, b"", Mode.LEGACY),
        (b"INSTREAM\n", None, b"", Mode.LEGACY),
        (b"STATS\n", None, b"", Mode.LEGACY),
        (b"nSTREAM\n", None, b"", Mode.N),
        (b"zEND\x00", "END", b"", Mode.Z),
        (b"nDETSTATSCLEAR\n", "DETSTATSCLEAR", b"", Mode.N),
        (b"FILDES\n", "FILDES", b"", Mode.LEGACY),
        (b"z\x00", None, b"", Mode.Z),
        (b"\n", None, b"", Mode.LEGACY),
    ],
)
def test_commands(data: bytes, name: str | None, arg: bytes, mode: Mode) -> None:
    got_name, got_arg, got_mode, _ = parse(data)
    assert (got_name, got_arg, got_mode) == (name, arg, mode)


def test_z_and_n_wait_for_their_terminator() -> None:
    for partial in (b"zPIN", b"nPING", b"z"):
        with pytest.raises(NeedMore):
            next_command(partial, first_read=True)


def test_legacy_is_only_the_first_read() -> None:
    with pytest.raises(NeedMore):
        next_command(b"PING", first_read=False)


def test_consumed_leaves_pipelined_commands() -> None:
    buf = b"zPING\x00zVERSION\x00"
    first = next_command(buf, first_read=True)
    assert first.consumed == 6
    second = next_command(buf[first.consumed :], first_read=False)
    assert match_command(second) is not None


def test_terminators() -> None:
    assert Mode.Z.terminator == b"\x00"
    assert Mode.N.terminator == b"\n"
    assert Mode.LEGACY.terminator == b"\n"
    assert MAX_COMMAND == 4104


def test_chunk_header() -> None:
    assert read_chunk_header(b"\x00\x00") is None
    assert read_chunk_header(b"\x00\x00\x00\x0chello") == 12
    assert read_chunk_header(b"\xff\xff\xff\xff") == 0xFFFFFFFF
