"""The database updater behind ``vigil update`` (freshclam's counterpart).

``Updater`` runs update passes: mirror.py downloads (stdlib HTTP, timeouts, 429
cool-down), the engine's cvd.py verifies and its cdiff.py patches, store.py test-loads and
installs atomically, notify.py tells the daemon. Only this package touches the network
and the database directory on the update side.
"""

from __future__ import annotations

from vigil.update.errors import (
    DirectoryError,
    MirrorNotSynced,
    NetworkError,
    RateLimited,
    RemoteError,
    TestLoadError,
    UpdateError,
    VerifyError,
    WriteError,
)
from vigil.update.notify import notify_clamd, run_hook
from vigil.update.updater import Outcome, Updater, database_names

__all__ = [
    "DirectoryError",
    "MirrorNotSynced",
    "NetworkError",
    "Outcome",
    "RateLimited",
    "RemoteError",
    "TestLoadError",
    "UpdateError",
    "Updater",
    "VerifyError",
    "WriteError",
    "database_names",
    "notify_clamd",
    "run_hook",
]
