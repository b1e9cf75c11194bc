"""Deployment defaults shared by the daemon and the client; imports nothing from vigil."""

from __future__ import annotations

import os

__all__ = ["SOCKET_ENV", "default_socket"]

SOCKET_ENV = "VIGIL_SOCKET"


def default_socket() -> str:
    """Where ``vigild`` listens without a configuration file (and where ``vigil client`` looks).

    ``VIGIL_SOCKET`` overrides; otherwise root uses /run/vigil, other users their runtime
    directory (or a private directory in /tmp).
    """
    env = os.environ.get(SOCKET_ENV)
    if env:
        return env
    if os.geteuid() == 0:
        return "/run/vigil/vigild.sock"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "vigil", "vigild.sock")
    return f"/tmp/vigil-{os.geteuid()}/vigild.sock"
