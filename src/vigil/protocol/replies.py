"""The exact reply strings of clamd 1.4 (protocol §3-§9); clients match on these bytes."""

from __future__ import annotations

import os

__all__ = [
    "ACCESS_DENIED",
    "ALLMATCH_DISABLED",
    "MULTISCAN_THREADS",
    "NOT_REGULAR",
    "CANT_OPEN",
    "CMD_UNAVAILABLE",
    "ERROR_PROCESSING",
    "EXCLUDED",
    "EXCLUDED_FS",
    "INSTREAM_LIMIT",
    "INVALID_IN_SESSION",
    "LEGACY_IN_SESSION",
    "NO_FD",
    "NOT_SUPPORTED",
    "PROTOCOL_FD",
    "TIMED_OUT",
    "UNKNOWN",
    "found",
    "line",
    "path_check_failure",
]

UNKNOWN = b"UNKNOWN COMMAND"
TIMED_OUT = b"COMMAND READ TIMED OUT\n"  # always a newline, never an id prefix (§2.8)
CMD_UNAVAILABLE = b"COMMAND UNAVAILABLE"
ERROR_PROCESSING = b"Error processing command. ERROR"
INSTREAM_LIMIT = b"INSTREAM size limit exceeded. ERROR"
NO_FD = b"No file descriptor received. ERROR"
PROTOCOL_FD = b"PROTOCOL ERROR: ancillary data sent without FILDES. ERROR"
INVALID_IN_SESSION = b"Command invalid inside IDSESSION. ERROR"
LEGACY_IN_SESSION = b"Only nCMDS\\n and zCMDS\\0 are accepted inside IDSESSION. ERROR"
ACCESS_DENIED = b"Access denied. ERROR"
CANT_OPEN = b"Can't open file or directory ERROR"
NOT_SUPPORTED = b"Not supported file type ERROR"
EXCLUDED = b"Excluded"
EXCLUDED_FS = b"Excluded (another filesystem)"
NOT_REGULAR = b"Not a regular file ERROR"
MULTISCAN_THREADS = b"Not enough threads for multiscan. Increase MaxThreads. ERROR"
ALLMATCH_DISABLED = b"ALLMATCHSCAN command disabled by clamd configuration. ERROR"


def line(body: bytes, term: bytes, req_id: int | None = None) -> bytes:
    """One reply line: ``<id>: `` inside IDSESSION, the body, the command's terminator."""
    if req_id is None:
        return body + term
    return b"%d: %s%s" % (req_id, body, term)


def found(path: bytes, name: str) -> bytes:
    """``<path>: <SIG> FOUND``."""
    return path + b": " + name.encode("latin-1", "replace") + b" FOUND"


def path_check_failure(path: bytes, errno_: int) -> bytes:
    """``<path>: File path check failure: <strerror>. ERROR`` (§5.4)."""
    return path + b": File path check failure: " + os.strerror(errno_).encode() + b". ERROR"
