"""clamd.conf text to a typed Config, following clamd 1.4's line rules (clamd-conf.md §2).

Pure apart from ``load_config`` reading one file; every problem is a ConfigError.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from vigil.config.model import Config
from vigil.config.options import (
    BY_LONG_OPTION,
    BY_NAME,
    SIZE_LIMIT,
    Option,
    OptionType,
    OptionValue,
)
from vigil.errors import ConfigError

__all__ = [
    "BAD_FORMAT",
    "BAD_NUMBER",
    "EMPTY_ARGUMENT",
    "EXAMPLE_LINE",
    "MISSING_ARGUMENT",
    "MISSING_QUOTE",
    "UNKNOWN_OPTION",
    "WarningHandler",
    "clamd_message",
    "defaults",
    "load_config",
    "parse_config",
    "read_config_file",
    "read_options",
]

log = logging.getLogger(__name__)

WarningHandler = Callable[[str], None]

# ConfigError reasons: clamd's own words, minus the file, line and option it interpolates
# (clamd_message puts them back).
EXAMPLE_LINE = "Please edit the example config file"
MISSING_ARGUMENT = "Missing argument"
MISSING_QUOTE = "Missing closing parenthesis"  # clamd's word for the missing closing quote
EMPTY_ARGUMENT = "Empty argument"
UNKNOWN_OPTION = "Unknown option"
BAD_FORMAT = "Incorrect argument format"
BAD_NUMBER = "Can't parse numerical argument"

_CLAMD_TEXT = {
    EXAMPLE_LINE: "Please edit the example config file {path}",
    MISSING_ARGUMENT: "Missing argument for option at {path}:{line}",
    MISSING_QUOTE: "Missing closing parenthesis in option {option} at {path}:{line}",
    EMPTY_ARGUMENT: "Empty argument for option {option} at {path}:{line}",
    UNKNOWN_OPTION: "Parse error at {path}:{line}: Unknown option {option}",
    BAD_FORMAT: "Incorrect argument format for option {option}",
    BAD_NUMBER: "Can't parse numerical argument for option {option}",
}

# clamd reads with fgets() into a 1024-byte buffer: longer lines arrive in pieces (§2 rule 1).
_LINE_BYTES = 1023

# clamd's argument checks are POSIX regexes compiled case-insensitively (§2.1); re.ASCII
# keeps Python from folding non-ASCII letters such as U+017F onto 's'.
_FLAGS = re.IGNORECASE | re.ASCII
_BOOL = re.compile(r"yes|true|1|no|false|0", _FLAGS)
_NUMBER = re.compile(r"[0-9]+", _FLAGS)
_SIZE = re.compile(r"[0-9]+[KMG]?", _FLAGS)
_OCTAL_PREFIX = re.compile(r"0[0-7]*")
_MULTIPLIERS = {"k": 1024, "m": 1024**2, "g": 1024**3}


def defaults() -> Config:
    """The configuration vigild uses when it runs without a configuration file."""
    return Config()


def load_config(
    path: str | os.PathLike[str], *, on_warning: WarningHandler | None = None
) -> Config:
    """Read and parse one clamd.conf file.

    The bytes are parsed as clamd sees them (no newline translation). Unlike clamd 1.4, a
    directory is refused rather than read as an empty file.
    """
    name, data = read_config_file(path)
    return _parse(data, name, on_warning)


def read_config_file(path: str | os.PathLike[str]) -> tuple[str, bytes]:
    """The name and bytes of a configuration file (clamd.conf or freshclam.conf), with
    clamd's message when it cannot be read."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as fh:
            return name, fh.read()
    except OSError as exc:
        reason = f"Can't open/parse the config file ({exc.strerror or exc})"
        raise ConfigError(name, 0, "", reason) from exc


def parse_config(text: str, path: str, *, on_warning: WarningHandler | None = None) -> Config:
    """Parse clamd.conf ``text``; ``path`` only names the file in messages.

    Warnings (deprecated options, sizes that overflow) go to ``on_warning`` with clamd's text
    minus its ``WARNING: `` prefix, or to this module's logger when no handler is given.
    """
    return _parse(text.encode("utf-8", "surrogateescape"), path, on_warning)


def clamd_message(error: ConfigError) -> str | None:
    """The line clamd 1.4 prints on stderr for ``error``, or None if it has no such line.

    clamd follows it with ``ERROR: Can't open/parse the config file <path>``.
    """
    template = _CLAMD_TEXT.get(error.reason)
    if template is None:
        return None
    text = template.format(path=error.path, line=error.lineno, option=error.option)
    return f"ERROR: {text}"


def _physical_lines(data: bytes) -> Iterator[bytes]:
    """Split ``data`` the way repeated fgets() calls with clamd's buffer do."""
    pos, end = 0, len(data)
    while pos < end:
        newline = data.find(b"\n", pos, pos + _LINE_BYTES)
        stop = newline + 1 if newline >= 0 else min(end, pos + _LINE_BYTES)
        yield data[pos:stop]
        pos = stop


def _text(raw: bytes) -> str:
    """Decode so that bytes which are not UTF-8 survive the trip back to the OS (paths)."""
    return raw.decode("utf-8", "surrogateescape")


def _parse(data: bytes, path: str, on_warning: WarningHandler | None) -> Config:
    warn = on_warning if on_warning is not None else _log_warning
    single, repeated = read_options(data, path, BY_NAME, BY_LONG_OPTION, warn)
    fields: dict[str, Any] = {opt.attr: v for opt, v in single.items()}
    fields.update({opt.attr: tuple(v) for opt, v in repeated.items()})
    explicit = frozenset(o.name for o in single) | frozenset(o.name for o in repeated)
    return Config(**fields, source=path, explicit=explicit)


def read_options(
    data: bytes,
    path: str,
    by_name: Mapping[str, Option],
    by_long: Mapping[str, Option],
    warn: WarningHandler,
) -> tuple[dict[Option, OptionValue], dict[Option, list[bool | int | str]]]:
    """clamd.conf's line rules over an option table (clamd's or freshclam's): the value of
    each single option given, and every value of each repeatable one, in file order."""
    single: dict[Option, OptionValue] = {}
    repeated: dict[Option, list[bool | int | str]] = {}
    # Line numbers count the pieces of split long lines, as clamd's messages do.
    for lineno, chunk in enumerate(_physical_lines(data), start=1):
        # C string functions stop at a NUL byte.
        line = chunk.split(b"\0", 1)[0].lstrip(b" \t")
        # The length still counts the newline, so lines of one visible character are skipped.
        if len(line) <= 2 or line.startswith(b"#"):
            continue
        if line.startswith(b"Example"):
            raise ConfigError(path, lineno, "", EXAMPLE_LINE)
        name, arg = _split(line, path, lineno)
        opt = by_name.get(name) or by_long.get(name)
        if opt is None:
            raise ConfigError(path, lineno, name, UNKNOWN_OPTION)
        if opt.deprecated:
            # Checked before the argument, so any argument is accepted here.
            warn(f"Ignoring deprecated option {opt.name} at {path}:{lineno}")
            continue
        value = _convert(opt, name, arg, path, lineno, warn)
        if opt.repeat:
            repeated.setdefault(opt, []).append(value)
        else:
            # The first occurrence wins; later ones are dropped without a word (§2.2).
            single.setdefault(opt, value)
    return single, repeated


def _split(line: bytes, path: str, lineno: int) -> tuple[str, str]:
    """Cut a line into option name and argument, handling a leading quote (§2 rules 5-7)."""
    sep = re.search(rb"[ \t]", line)
    if sep is None:
        raise ConfigError(path, lineno, _text(line.rstrip(b"\n")), MISSING_ARGUMENT)
    name = _text(line[: sep.start()])
    # Only spaces, tabs and the newline are trimmed; a '\r' stays part of the argument.
    arg = line[sep.end() :].lstrip(b" \t").rstrip(b" \t\n")
    if not arg:
        raise ConfigError(path, lineno, name, MISSING_ARGUMENT)
    if arg.startswith(b'"'):
        close = arg.rfind(b'"', 1)
        if close < 0:
            raise ConfigError(path, lineno, name, MISSING_QUOTE)
        arg = arg[1:close]
        if not arg:
            raise ConfigError(path, lineno, name, EMPTY_ARGUMENT)
    return name, _text(arg)


def _convert(
    opt: Option, name: str, arg: str, path: str, lineno: int, warn: WarningHandler
) -> bool | int | str:
    """Check ``arg`` against the option's type and convert it as clamd does (§2.1)."""
    kind = opt.type
    if kind is OptionType.BOOL:
        if not _BOOL.fullmatch(arg):
            raise ConfigError(path, lineno, name, BAD_FORMAT)
        return arg.lower() in ("yes", "true", "1")
    if kind is OptionType.NUMBER:
        if not _NUMBER.fullmatch(arg):
            raise ConfigError(path, lineno, name, BAD_FORMAT)
        return _atoi(arg)
    if kind is OptionType.SIZE or kind is OptionType.SIZE64:
        if not _SIZE.fullmatch(arg):
            raise ConfigError(path, lineno, name, BAD_FORMAT)
        return _size(arg, name, path, lineno, warn)
    if kind is OptionType.ENUM:
        choices = re.compile("|".join(map(re.escape, opt.choices)), _FLAGS)
        if not choices.fullmatch(arg):
            raise ConfigError(path, lineno, name, BAD_FORMAT)
    return arg


def _atoi(digits: str) -> int:
    """C atoi() on glibc/LP64: strtol() saturates at LONG_MAX, then the result is cut to int."""
    value = min(int(digits), 2**63 - 1) & 0xFFFFFFFF
    return value - 2**32 if value >= 2**31 else value


def _size(arg: str, name: str, path: str, lineno: int, warn: WarningHandler) -> int:
    """A SIZE argument as clamd reads it: strtoll base 0 (leading 0 = octal), then a suffix."""
    if arg.startswith("0"):
        digits = _OCTAL_PREFIX.match(arg)
        assert digits is not None  # the pattern matches any text starting with "0"
        number, rest = int(digits.group(), 8), arg[digits.end() :]
    else:
        split = len(arg) - 1 if arg[-1].isalpha() else len(arg)
        number, rest = int(arg[:split]), arg[split:]
    overflow = number > SIZE_LIMIT
    if not overflow and rest:
        multiplier = _MULTIPLIERS.get(rest[0].lower())
        if multiplier is None:
            # "08" or "09M": strtoll stops at the 8 and the leftover is not a suffix.
            raise ConfigError(path, lineno, name, BAD_NUMBER)
        overflow = number > SIZE_LIMIT // multiplier
        number *= multiplier
    if overflow:
        warn(f"Numerical value for option {name} too high, resetting to {SIZE_LIMIT}")
        return SIZE_LIMIT
    # 0 means "no limit" and becomes the largest value.
    return number or SIZE_LIMIT


def _log_warning(message: str) -> None:
    log.warning("%s", message)
