"""The few clamd.conf options a client acts on, read with a minimal, tolerant reader.

clamdscan reads the daemon's own clamd.conf to learn how to reach it (``LocalSocket``,
``TCPSocket``, ``TCPAddr``), how much it may upload (``StreamMaxLength``) and how to walk
directories itself (``ExcludePath``, ``MaxDirectoryRecursion``, ``Follow*Symlinks``).
Other options are skipped unchecked. Line syntax follows clamd-conf.md §2. Imports only
``vigil.errors`` and ``vigil.client.connection``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from vigil.client.connection import (
    DEFAULT_STREAM_MAX_LENGTH,
    Address,
    ClamdClient,
    TCPAddress,
    UnixAddress,
)
from vigil.errors import ConfigError

__all__ = [
    "BAD_FORMAT",
    "EMPTY_ARGUMENT",
    "EXAMPLE_LINE",
    "MISSING_ARGUMENT",
    "MISSING_QUOTE",
    "ClientSettings",
    "parse_client_settings",
    "read_client_settings",
]

# ConfigError reasons, so callers can reword them (clamdscan prints clamd's own wording).
BAD_FORMAT = "incorrect argument format"
EMPTY_ARGUMENT = "empty argument"
EXAMPLE_LINE = "please edit the example config file"
MISSING_ARGUMENT = "missing argument for option"
MISSING_QUOTE = "missing closing quote"

_SIZE_LIMIT = 2**63 - 1  # what clamd turns a SIZE of 0 into: no limit (clamd-conf.md §2.1)
_SIZE_RE = re.compile(r"([0-9]+)([kKmMgG]?)")
_NAME_END = re.compile(r"[ \t]")
_BOOL_WORDS = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """What a client needs to know about the daemon; defaults are clamd's."""

    local_socket: str | None = None
    tcp_socket: int | None = None
    tcp_addrs: tuple[str, ...] = ()
    stream_max_length: int = DEFAULT_STREAM_MAX_LENGTH
    max_directory_recursion: int = 15
    follow_directory_symlinks: bool = False
    follow_file_symlinks: bool = False
    exclude_paths: tuple[str, ...] = ()

    def client(self, *, timeout: float | None = None) -> ClamdClient:
        """A client for these addresses that keeps uploads within StreamMaxLength."""
        return ClamdClient(
            self.addresses(), timeout=timeout, stream_max_length=self.stream_max_length
        )

    def addresses(self) -> list[Address]:
        """Where to connect, in clamdscan's order: the Unix socket, then each ``TCPAddr``.

        As in clamdscan, ``TCPSocket`` alone (no ``TCPAddr``) gives no TCP address, and
        ``TCPAddr any`` means the host's default (loopback) addresses.
        """
        out: list[Address] = []
        if self.local_socket:
            out.append(UnixAddress(self.local_socket))
        port = self.tcp_socket or 0
        out.extend(TCPAddress(None if a == "any" else a, port) for a in self.tcp_addrs)
        return out


def _size(text: str) -> int:
    m = _SIZE_RE.fullmatch(text)
    if not m:
        raise ValueError(text)
    digits, suffix = m.groups()
    # clamd parses with base auto-detection, so a leading 0 means octal (§2.1).
    value = int(digits, 8) if len(digits) > 1 and digits[0] == "0" else int(digits)
    value *= {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[suffix.lower()]
    return min(value, _SIZE_LIMIT) if value else _SIZE_LIMIT


def _number(text: str) -> int:
    if not text.isdigit():
        raise ValueError(text)
    return int(text)


def _bool(text: str) -> bool:
    try:
        return _BOOL_WORDS[text.lower()]
    except KeyError:
        raise ValueError(text) from None


_OPTIONS: dict[str, tuple[str, Callable[[str], object], bool]] = {
    # clamd.conf name: (ClientSettings field, converter, repeatable)
    "LocalSocket": ("local_socket", str, False),
    "TCPSocket": ("tcp_socket", _number, False),
    "TCPAddr": ("tcp_addrs", str, True),
    "StreamMaxLength": ("stream_max_length", _size, False),
    "MaxDirectoryRecursion": ("max_directory_recursion", _number, False),
    "FollowDirectorySymlinks": ("follow_directory_symlinks", _bool, False),
    "FollowFileSymlinks": ("follow_file_symlinks", _bool, False),
    "ExcludePath": ("exclude_paths", str, True),
}


def _physical_lines(text: str) -> list[str]:
    """Lines as clamd reads them: a 1024-byte buffer splits longer lines (§2 rule 1)."""
    out: list[str] = []
    for line in text.splitlines(keepends=True):
        while len(line) > 1023:
            out.append(line[:1023])
            line = line[1023:]
        out.append(line)
    return out


def parse_client_settings(text: str, origin: str = "clamd.conf") -> ClientSettings:
    """Parse clamd.conf text; errors for the options read here carry ``origin`` and line."""
    values: dict[str, object] = {}
    repeated: dict[str, list[str]] = {}
    for lineno, raw in enumerate(_physical_lines(text), 1):
        line = raw.lstrip(" \t")
        if len(line) <= 2 or line.startswith("#"):
            continue
        if line.startswith("Example"):
            raise ConfigError(origin, lineno, "", EXAMPLE_LINE)
        parts = _NAME_END.split(line.rstrip("\r\n"), maxsplit=1)
        name, arg = parts[0], (parts[1].strip(" \t") if len(parts) > 1 else "")
        if not arg:
            raise ConfigError(origin, lineno, "", MISSING_ARGUMENT)
        if name not in _OPTIONS:
            continue
        if arg.startswith('"'):
            end = arg.rfind('"')
            if end == 0:
                raise ConfigError(origin, lineno, name, MISSING_QUOTE)
            arg = arg[1:end]
            if not arg:
                raise ConfigError(origin, lineno, name, EMPTY_ARGUMENT)
        field, convert, repeatable = _OPTIONS[name]
        if repeatable:
            repeated.setdefault(field, []).append(arg)
            continue
        if field in values:  # the first occurrence wins (§2.2)
            continue
        try:
            values[field] = convert(arg)
        except ValueError:
            raise ConfigError(origin, lineno, name, BAD_FORMAT) from None
    for field, items in repeated.items():
        values[field] = tuple(items)
    return ClientSettings(**values)  # type: ignore[arg-type]


def read_client_settings(path: str) -> ClientSettings:
    """Read a clamd.conf file; raise ConfigError when it cannot be read or parsed."""
    try:
        with open(path, "rb") as fh:
            text = os.fsdecode(fh.read())
    except OSError as exc:
        raise ConfigError(path, 0, "", exc.strerror or str(exc)) from exc
    return parse_client_settings(text, path)
