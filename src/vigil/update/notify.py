"""After an update: RELOAD the daemon named by NotifyClamd, and run OnUpdate/OnErrorExecute.

Failures here never undo an update; they are reported as warnings, as freshclam does.
"""

from __future__ import annotations

import subprocess

from vigil.client import ClientError, read_client_settings
from vigil.errors import ConfigError

__all__ = ["EXIT_PREFIX", "notify_clamd", "run_hook"]

EXIT_PREFIX = "EXIT_"


def notify_clamd(clamd_conf: str, timeout: float | None) -> str | None:
    """Send RELOAD to the daemon that ``clamd_conf`` describes; an error text on failure."""
    try:
        settings = read_client_settings(clamd_conf)
        if not settings.addresses():
            return f"NotifyClamd: {clamd_conf} names no LocalSocket or TCPAddr"
        settings.client(timeout=timeout).reload()
    except ConfigError as exc:
        return f"NotifyClamd: cannot read {clamd_conf}: {exc}"
    except ClientError as exc:
        return f"NotifyClamd: Can't connect to clamd: {exc}"
    except OSError as exc:
        return f"NotifyClamd: Can't connect to clamd: {exc.strerror or exc}"
    return None


def run_hook(command: str) -> tuple[int | None, str | None]:
    """Run an On*Execute command through the shell.

    Returns ``(exit status override, error text)``: freshclam's built-in ``EXIT_n`` runs
    nothing and makes the run exit with ``n``.
    """
    if command.startswith(EXIT_PREFIX) and command[len(EXIT_PREFIX) :].isdigit():
        return int(command[len(EXIT_PREFIX) :]), None
    try:
        subprocess.run(command, shell=True, check=False, timeout=600)  # noqa: S602
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"cannot run {command!r}: {exc}"
    return None, None
