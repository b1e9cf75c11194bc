"""The exception tree shared by every part of Vigil; imports nothing from vigil.

VigilError
 +-- DatabaseError            a database file or directory cannot be used
 |    +-- SignatureError      one line of a database file is malformed (file:line: reason)
 +-- ConfigError              a configuration line is wrong (file:line: option: reason)
 +-- ProtocolError            a client broke the clamd protocol
 +-- ScanError                a scan could not be carried out (unreadable file, ...)
"""

from __future__ import annotations


class VigilError(Exception):
    """Base of every error Vigil raises on purpose."""


class DatabaseError(VigilError):
    """A database file or directory is unusable (bad CVD header, failed signature check...)."""


class SignatureError(DatabaseError):
    """One malformed line of a database file; renders as ``file:line: reason``."""

    def __init__(self, path: str, lineno: int, reason: str) -> None:
        self.path = path
        self.lineno = lineno
        self.reason = reason
        super().__init__(f"{path}:{lineno}: {reason}")


class ConfigError(VigilError):
    """A configuration problem; renders as ``file:line: option: reason``."""

    def __init__(self, path: str, lineno: int, option: str, reason: str) -> None:
        self.path = path
        self.lineno = lineno
        self.option = option
        self.reason = reason
        where = f"{path}:{lineno}: " if lineno else f"{path}: "
        opt = f"{option}: " if option else ""
        super().__init__(f"{where}{opt}{reason}")


class ProtocolError(VigilError):
    """A client violated the protocol; ``reply`` is the exact clamd reply text."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        super().__init__(reply)


class ScanError(VigilError):
    """A scan could not be carried out for one object (e.g. the file cannot be read)."""
