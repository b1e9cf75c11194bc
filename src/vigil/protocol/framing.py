"""clamd command framing, sans I/O: z/n/legacy commands out of a byte buffer (protocol §2).

The server feeds the bytes it received; ``next_command`` says whether a whole command is
there, what it is and how many bytes it used. Nothing here reads sockets or sends replies.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "COMMANDS",
    "LISTED_COMMANDS",
    "MAX_COMMAND",
    "Command",
    "Framed",
    "Mode",
    "NeedMore",
    "match_command",
    "next_command",
    "read_chunk_header",
]

# Each connection's receive buffer is PATH_MAX + 8 bytes: a command that does not fit is
# dropped without a reply (§2.7, observed on 1.4.6: 4104 bytes answered, 4105 closed).
MAX_COMMAND = 4104

# The command table in clamd's order: names are matched by prefix, first hit wins (§2.6).
# SELFCHECK comes from the 1.6 development head; VERSIONCOMMANDS lists 1.4's table.
COMMANDS = (
    "SCAN",
    "QUIT",
    "RELOAD",
    "SELFCHECK",
    "PING",
    "CONTSCAN",
    "VERSIONCOMMANDS",
    "VERSION",
    "END",
    "SHUTDOWN",
    "MULTISCAN",
    "FILDES",
    "STATS",
    "IDSESSION",
    "INSTREAM",
    "DETSTATSCLEAR",
    "DETSTATS",
    "ALLMATCHSCAN",
)
LISTED_COMMANDS = tuple(c for c in COMMANDS if c != "SELFCHECK")
WITH_PATH = frozenset({"SCAN", "CONTSCAN", "MULTISCAN", "ALLMATCHSCAN"})
# Names that work without a z/n prefix (§2.4).
LEGACY_OK = frozenset(
    {
        "SCAN",
        "QUIT",
        "RELOAD",
        "PING",
        "CONTSCAN",
        "VERSION",
        "SHUTDOWN",
        "MULTISCAN",
        "FILDES",
        "DETSTATSCLEAR",
        "DETSTATS",
        "SELFCHECK",
    }
)


class Mode(Enum):
    """How a command was framed; decides the reply terminator."""

    Z = "z"
    N = "n"
    LEGACY = "legacy"

    @property
    def terminator(self) -> bytes:
        return b"\x00" if self is Mode.Z else b"\n"


@dataclass(frozen=True, slots=True)
class Command:
    """A recognised command: its table name and argument (bytes; paths are not decoded)."""

    name: str
    arg: bytes
    mode: Mode

    @property
    def term(self) -> bytes:
        return self.mode.terminator


@dataclass(frozen=True, slots=True)
class Framed:
    """One complete command text taken from the buffer (not yet matched)."""

    text: bytes
    mode: Mode
    consumed: int


class NeedMore(Exception):
    """The buffer does not hold a whole command yet."""


def next_command(buf: bytes, *, first_read: bool) -> Framed:
    """Cut the next command out of ``buf``.

    A legacy command is whatever the first read delivered (cut at a newline); ``first_read``
    says whether ``buf`` is exactly that. Raises NeedMore when a z/n command is incomplete.
    """
    if not buf:
        raise NeedMore
    lead = buf[0]
    if lead == 0x7A:  # z
        end = buf.find(b"\x00", 1)
        if end < 0:
            raise NeedMore
        return Framed(buf[1:end], Mode.Z, end + 1)
    if lead == 0x6E:  # n
        end = buf.find(b"\n", 1)
        if end < 0:
            raise NeedMore
        return Framed(buf[1:end].rstrip(b"\r\n"), Mode.N, end + 1)
    if not first_read:
        raise NeedMore
    end = buf.find(b"\n")
    if end < 0:
        return Framed(buf.rstrip(b"\r\n"), Mode.LEGACY, len(buf))
    return Framed(buf[:end].rstrip(b"\r\n"), Mode.LEGACY, end + 1)


def match_command(framed: Framed) -> Command | None:
    """Match a command text against the table (§2.6); None means UNKNOWN COMMAND."""
    text = framed.text
    for name in COMMANDS:
        raw = name.encode()
        if not text.startswith(raw):
            continue
        if name in WITH_PATH:
            # clamd skips exactly one byte after the name, whatever it is; no path at all
            # makes the command unknown (tested upstream)
            arg = text[len(raw) + 1 :]
            if not arg:
                return None
        elif text != raw:
            return None
        else:
            arg = b""
        if framed.mode is Mode.LEGACY and name not in LEGACY_OK:
            return None
        return Command(name, arg, framed.mode)
    return None


def read_chunk_header(buf: bytes | bytearray, pos: int = 0) -> int | None:
    """The length announced by an INSTREAM chunk header at ``pos``, or None if incomplete."""
    if len(buf) - pos < 4:
        return None
    return int(struct.unpack_from(">I", buf, pos)[0])
