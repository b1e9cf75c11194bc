"""Client side of the clamd protocol: a typed, synchronous library plus clamd.conf settings.

``ClamdClient`` opens one connection per command (as the protocol requires outside
IDSESSION); ``Session`` keeps one open for many. Imports only ``vigil.errors``.
"""

from __future__ import annotations

from vigil.client.connection import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_STREAM_MAX_LENGTH,
    Address,
    ClamdClient,
    ClientError,
    CommandRejected,
    Connection,
    ConnectionLost,
    DaemonUnavailable,
    ReplyError,
    ScanMode,
    ScanResult,
    Session,
    SessionReply,
    StreamSource,
    TCPAddress,
    UnixAddress,
    Verdict,
)
from vigil.client.settings import ClientSettings, parse_client_settings, read_client_settings

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_STREAM_MAX_LENGTH",
    "Address",
    "ClamdClient",
    "ClientError",
    "ClientSettings",
    "CommandRejected",
    "Connection",
    "ConnectionLost",
    "DaemonUnavailable",
    "ReplyError",
    "ScanMode",
    "ScanResult",
    "Session",
    "SessionReply",
    "StreamSource",
    "TCPAddress",
    "UnixAddress",
    "Verdict",
    "parse_client_settings",
    "read_client_settings",
]
