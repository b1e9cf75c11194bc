"""``vigil update``: freshclam's counterpart, a thin command over ``vigil.update``.

One pass by default; ``--daemon`` repeats it ``Checks`` times a day in the foreground.
Exit codes are freshclam's (0 up to date or updated, 50-59 per failure, 56 config error);
errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from vigil.config.freshclam import FreshclamConfig, load_freshclam_config
from vigil.errors import ConfigError
from vigil.update import (
    UpdateError,
    Updater,
    database_names,
    notify_clamd,
    run_hook,
)
from vigil.update.store import cool_down_until

__all__ = ["add_arguments", "run"]

DEFAULT_CONFIG = "/etc/clamav/freshclam.conf"
EXIT_CONFIG = 56
EXIT_LOG = 62


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``vigil update`` (freshclam's names where they overlap)."""
    p.add_argument(
        "--config-file",
        metavar="FILE",
        help=f"read freshclam.conf syntax from FILE (default {DEFAULT_CONFIG} if present)",
    )
    p.add_argument("--datadir", metavar="DIR", help="database directory (DatabaseDirectory)")
    p.add_argument(
        "--cvdcertsdir",
        metavar="PATH",
        help="CA certificate file or directory for .sign files (CVDCertsDirectory)",
    )
    p.add_argument(
        "--trusted-keys-dir",
        metavar="PATH",
        help="PEM public keys trusted to sign databases, besides ClamAV's "
        "(VigilTrustedKeysDirectory; Vigil only)",
    )
    p.add_argument("-d", "--daemon", action="store_true", help="keep running, check Checks/day")
    p.add_argument("-c", "--checks", type=int, metavar="N", help="checks per day (Checks)")
    p.add_argument(
        "--update-db",
        action="append",
        metavar="NAME",
        help="update only database NAME (repeatable)",
    )
    p.add_argument("--no-notify", action="store_true", help="do not send RELOAD (NotifyClamd)")
    p.add_argument("--quiet", action="store_true", help="print errors only")
    p.add_argument("--debug", action="store_true", help="debug messages")


class _Output:
    """Messages to stdout (errors to stderr) and, with UpdateLogFile, to the log too."""

    def __init__(self, quiet: bool, log_file: str | None) -> None:
        self.quiet = quiet
        self.log = None
        if log_file:
            self.log = open(log_file, "a", encoding="utf-8", errors="surrogateescape")

    def __call__(self, line: str) -> None:
        is_error = line.startswith("ERROR:")
        if is_error:
            print(line, file=sys.stderr, flush=True)
        elif not self.quiet:
            print(line, flush=True)
        if self.log is not None:
            self.log.write(f"{time.strftime('%a %b %d %H:%M:%S %Y')} -> {line}\n")
            self.log.flush()

    def close(self) -> None:
        if self.log is not None:
            self.log.close()


def run(args: argparse.Namespace) -> int:
    """Run one update pass, or keep running with ``--daemon``."""
    try:
        config = _config(args)
    except ConfigError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        out = _Output(args.quiet, config.update_log_file)
    except OSError as exc:
        where = config.update_log_file
        print(f"ERROR: cannot open log file {where}: {exc.strerror}", file=sys.stderr)
        return EXIT_LOG
    try:
        try:
            updater = Updater(config, Path(config.database_directory), report=out)
        except ConfigError as exc:
            out(f"ERROR: {exc}")
            return EXIT_CONFIG
        if not args.daemon:
            return _one_pass(updater, args, out)
        return _daemon(updater, args, out)
    finally:
        out.close()


def _config(args: argparse.Namespace) -> FreshclamConfig:
    path = args.config_file
    if path is None and os.path.exists(DEFAULT_CONFIG):
        path = DEFAULT_CONFIG
    config = load_freshclam_config(path) if path is not None else FreshclamConfig()
    changes: dict[str, Any] = {}
    if args.datadir:
        changes["database_directory"] = args.datadir
    if args.cvdcertsdir:
        changes["cvd_certs_directory"] = args.cvdcertsdir
    if args.trusted_keys_dir:
        changes["vigil_trusted_keys_directory"] = args.trusted_keys_dir
    if args.checks is not None:
        if not 1 <= args.checks <= 50:
            raise ConfigError("--checks", 0, "", "Number of checks must be between 1 and 50")
        changes["checks"] = args.checks
    return dataclasses.replace(config, **changes) if changes else config


_DB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def _one_pass(updater: Updater, args: argparse.Namespace, out: _Output) -> int:
    """Update, then notify and run hooks; returns freshclam's exit status."""
    config = updater.config
    names = args.update_db or database_names(config)
    bad = [n for n in names if not _DB_NAME.fullmatch(n)]
    if bad:
        # names become file names in the database directory: never a path
        out(f"ERROR: invalid database name {bad[0]!r}")
        return 56
    try:
        outcomes = updater.update(names, custom=not args.update_db)
    except UpdateError as exc:
        out(f"ERROR: {exc}")
        status: int = exc.exit_code
        if config.on_error_execute:
            status = _hook(config.on_error_execute, out) or status
        return status
    if not any(o.how != "up-to-date" for o in outcomes):
        return 0
    if config.notify_clamd and not args.no_notify:
        timeout = float(config.connect_timeout) or None
        problem = notify_clamd(config.notify_clamd, timeout)
        out(f"WARNING: {problem}" if problem else "Clamd successfully notified about the update.")
    if config.on_update_execute:
        return _hook(config.on_update_execute, out) or 0
    return 0


def _hook(command: str, out: _Output) -> int | None:
    override, problem = run_hook(command)
    if problem:
        out(f"WARNING: {problem}")
    return override


def _daemon(updater: Updater, args: argparse.Namespace, out: _Output) -> int:
    """Repeat the pass every 24h/Checks in the foreground until SIGTERM/SIGINT."""
    config = updater.config
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    interval = 86400.0 / max(1, config.checks)
    try:
        while not stop.is_set():
            _one_pass(updater, args, out)
            wait = interval
            until = _cool_down(config)
            if until:
                wait = max(wait, until - time.time())
            stop.wait(wait)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _cool_down(config: FreshclamConfig) -> float:
    return cool_down_until(Path(config.database_directory))
