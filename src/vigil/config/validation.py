"""Start-up checks clamd makes on a parsed configuration (clamd-conf.md §2.3).

They look at the system (groups, directories), so they run when the daemon starts, not
while parsing. Also the socket helpers that share those rules.
"""

from __future__ import annotations

import grp
import os
import re

from vigil.config.model import Config

__all__ = [
    "MAX_RECURSION_LIMIT",
    "SYSLOG_FACILITIES",
    "listens_on_tcp",
    "socket_gid",
    "socket_mode",
    "validate",
]

# The names clamd's logger maps to syslog facilities; compared case-sensitively.
SYSLOG_FACILITIES = frozenset(
    {
        "LOG_AUTH",
        "LOG_AUTHPRIV",
        "LOG_CRON",
        "LOG_DAEMON",
        "LOG_FTP",
        "LOG_KERN",
        "LOG_LPR",
        "LOG_MAIL",
        "LOG_NEWS",
        "LOG_SYSLOG",
        "LOG_USER",
        "LOG_UUCP",
        *(f"LOG_LOCAL{n}" for n in range(8)),
    }
)
MAX_RECURSION_LIMIT = 100

# strtol(): optional C-locale white space and sign, then digits, and nothing after them.
_C_SPACE = "[ \t\n\v\f\r]*"
_DECIMAL = re.compile(_C_SPACE + r"[+-]?[0-9]+")
_OCTAL = re.compile(_C_SPACE + r"[+-]?[0-7]+")


def validate(cfg: Config) -> list[str]:
    """Every fatal start-up problem of ``cfg``, worded as clamd logs it (without ``ERROR: ``).

    Listed in the order clamd checks, so the first item is the one clamd would stop at; an
    empty list means the daemon may start. ``MaxRecursion`` is held to 1..100 as clamd 1.5+
    does (1.4 accepts any value). ``MaxQueue`` is only adjusted at start-up, never fatal.
    """
    problems: list[str] = []
    if cfg.log_file is not None and not cfg.log_file.startswith("/"):
        problems.append("LogFile requires full path.")
    if cfg.log_syslog and cfg.log_facility not in SYSLOG_FACILITIES:
        problems.append(f"LogFacility: {cfg.log_facility}: No such facility.")
    if not listens_on_tcp(cfg) and cfg.local_socket is None:
        problems.append("Please define server type (local and/or TCP).")
    low, high = cfg.stream_min_port, cfg.stream_max_port
    if low < 1024 or low > high or high > 65535:
        problems.append(f"Invalid StreamMinPort/StreamMaxPort: {low}, {high}")
    # clamd only looks at the PUA lists when PUA signatures are loaded at all.
    if cfg.detect_pua and cfg.exclude_pua and cfg.include_pua:
        problems.append("ExcludePUA and IncludePUA cannot be used at the same time")
    tmp = cfg.temporary_directory
    if tmp is not None and not os.path.isdir(tmp):
        # The trailing space is in clamd's message too.
        problems.append(
            f"Current configuration of TemporaryDirectory: {tmp} does not exist, or is not valid "
        )
    if cfg.bytecode and cfg.bytecode_security not in ("TrustSigned", "Paranoid"):
        problems.append(f"Unable to parse bytecode security setting:{cfg.bytecode_security}")
    depth = cfg.max_recursion
    if cfg.is_set("MaxRecursion") and not 1 <= depth <= MAX_RECURSION_LIMIT:
        shown = depth % 2**64  # clamd prints it with %zu
        problems.append(
            f"MaxRecursion set to {shown}, but cannot be larger than {MAX_RECURSION_LIMIT}, "
            "and cannot be 0."
        )
    if cfg.local_socket is not None:
        group = cfg.local_socket_group
        if group is not None:
            try:
                socket_gid(cfg)
            except KeyError:
                problems.append(f"Unknown group {group}")
        if cfg.local_socket_mode is not None and not _OCTAL.fullmatch(cfg.local_socket_mode):
            problems.append(f"Invalid LocalSocketMode {cfg.local_socket_mode}")
    return problems


def listens_on_tcp(cfg: Config) -> bool:
    """Whether clamd would open a TCP listener: ``TCPSocket`` given and neither 0 nor -1."""
    return cfg.tcp_socket is not None and cfg.tcp_socket not in (0, -1)


def socket_mode(cfg: Config) -> int:
    """Permission bits for the Unix socket: ``LocalSocketMode`` (octal) & 0666, else 0666.

    Raises ValueError for a mode that is not octal.
    """
    text = cfg.local_socket_mode
    if text is None:
        return 0o666
    if not _OCTAL.fullmatch(text):
        raise ValueError(f"Invalid LocalSocketMode {text}")
    return int(text.strip(" \t\n\v\f\r"), 8) & 0o666


def socket_gid(cfg: Config) -> int | None:
    """The group id for the Unix socket: numeric ``LocalSocketGroup`` or a group name.

    None when no group is configured; KeyError when the name is unknown.
    """
    group = cfg.local_socket_group
    if group is None:
        return None
    if _DECIMAL.fullmatch(group):
        return int(group.strip(" \t\n\v\f\r"))
    return grp.getgrnam(group).gr_gid
