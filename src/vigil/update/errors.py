"""Updater failures, each carrying the exit status freshclam uses for it (freshclam(1)).

UpdateError (VigilError)            exit status in ``exit_code``
 +-- DirectoryError       50        the database directory is unusable
 +-- NetworkError         52        connection refused, timeout, rate limited, cool-down
 +-- VerifyError          54        MD5, digital signature or CDIFF check failed
 +-- TestLoadError        55        a verified database does not load
 +-- WriteError           57        the new file cannot be written or renamed into place
 +-- RemoteError          58        404, HTML or garbage instead of a database
 +-- MirrorNotSynced      59        the mirror offers an older version than we have
"""

from __future__ import annotations

from vigil.errors import VigilError

__all__ = [
    "DirectoryError",
    "MirrorNotSynced",
    "NetworkError",
    "RateLimited",
    "RemoteError",
    "TestLoadError",
    "UpdateError",
    "VerifyError",
    "WriteError",
]


class UpdateError(VigilError):
    """Base of updater failures; ``exit_code`` is freshclam's status for the case."""

    exit_code = 52


class DirectoryError(UpdateError):
    """The database directory is missing or cannot be written."""

    exit_code = 50


class NetworkError(UpdateError):
    """The mirror could not be reached or stopped answering in time."""

    exit_code = 52


class RateLimited(NetworkError):
    """HTTP 429, or an earlier 429's cool-down has not ended; ``until`` is a Unix time."""

    def __init__(self, message: str, until: float) -> None:
        super().__init__(message)
        self.until = until


class VerifyError(UpdateError):
    """A download failed its MD5, signature or .info check, or a CDIFF did not apply."""

    exit_code = 54


class TestLoadError(UpdateError):
    """A verified database could not be loaded by the engine (TestDatabases)."""

    exit_code = 55


class WriteError(UpdateError):
    """Writing the new database into the directory failed; the old one is intact."""

    exit_code = 57


class RemoteError(UpdateError):
    """The mirror answered, but not with the file asked for (404, HTML, garbage)."""

    exit_code = 58


class MirrorNotSynced(UpdateError):
    """The mirror's version is older than the local one: never downgrade."""

    exit_code = 59
