"""``vigild``: the clamd-compatible daemon's command line (clamd's flags, clamd.conf syntax)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import logging.handlers
import os
import pwd
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vigil.cli.daemon_settings import LogOptions, load_settings
from vigil.engine.compiled import open_engine
from vigil.engine.database import DatabaseOptions
from vigil.engine.scanner import Engine
from vigil.engine.signatures.cvd import parse_cvd_header
from vigil.errors import ConfigError, DatabaseError, VigilError
from vigil.server.daemon import Daemon, StartupError, version_text
from vigil.server.pathscan import MAX_LOG_MESSAGE, printable
from vigil.server.settings import ServerSettings

__all__ = ["main"]

log = logging.getLogger("vigild")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vigild",
        description="Vigil daemon: serves the clamd protocol on Unix and TCP sockets.",
    )
    p.add_argument("-V", "--version", action="store_true", help="print the version and exit")
    p.add_argument("-c", "--config-file", metavar="FILE", help="read configuration from FILE")
    p.add_argument(
        "-F", "--foreground", action="store_true", help="do not fork into the background"
    )
    p.add_argument(
        "--debug", action="store_true", help="log debug messages (and stay in the foreground)"
    )
    p.add_argument("-l", "--log", metavar="FILE", help="log to FILE (overrides LogFile)")
    p.add_argument(
        "-p", "--pid", metavar="FILE", help="write the process id to FILE (overrides PidFile)"
    )
    p.add_argument(
        "--datadir", metavar="DIR", help="load databases from DIR (overrides DatabaseDirectory)"
    )
    return p


# ---------------------------------------------------------------------------- logging


class _LogFile(logging.FileHandler):
    """LogFile with clamd's size rules: past LogFileMaxSize it is rotated (LogRotate yes,
    the old file kept as ``<file>.1``) or logging stops with a last notice, as clamd does."""

    def __init__(self, path: str, max_size: int, rotate: bool) -> None:
        super().__init__(path, encoding="utf-8", errors="backslashreplace")
        self.max_size = max_size
        self.rotate = rotate
        self.disabled_by_size = False

    def emit(self, record: logging.LogRecord) -> None:
        if self.disabled_by_size:
            return
        super().emit(record)
        if not self.max_size or self.stream is None:
            return
        try:
            size = self.stream.tell()
        except (OSError, ValueError):
            return
        if size <= self.max_size:
            return
        if self.rotate:
            self.acquire()
            try:
                self.close()
                with contextlib.suppress(OSError):
                    os.replace(self.baseFilename, self.baseFilename + ".1")
                self.stream = self._open()
            finally:
                self.release()
        else:
            self.stream.write(
                f"Log size = {size}, max = {self.max_size}\n"
                "LOGGING DISABLED (Maximal log file size exceeded).\n"
            )
            self.flush()
            self.disabled_by_size = True

    def reopen(self) -> None:
        """SIGHUP: close and reopen the file (after an external log rotation)."""
        self.acquire()
        try:
            self.close()
            self.stream = self._open()
        finally:
            self.release()


class _SafeFormatter(logging.Formatter):
    """Every log line is escaped, printable text of bounded length.

    File names, engine messages and anything else that may carry client or scanned bytes
    pass through here, so a hostile name can neither forge a line (newline, CR), drive a
    terminal (ESC, C1 controls) nor break the log's encoding, and no message exceeds
    MAX_LOG_MESSAGE characters. Tracebacks keep their lines, each one escaped.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's API
        text = record.message
        if len(text) > MAX_LOG_MESSAGE:
            text = text[:MAX_LOG_MESSAGE] + "...(truncated)"
        record.message = printable(text)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's API
        # split on newlines only: a CR or other separator inside a message stays escaped
        return "\n".join(printable(ln) for ln in super().formatException(ei).split("\n"))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802 - logging's API
        return "\n".join(printable(ln) for ln in super().formatStack(stack_info).split("\n"))


class _LogSetup:
    """LogFile/LogTime/LogVerbose/LogSyslog mapped onto the logging module; SIGHUP reopens."""

    def __init__(self, opts: LogOptions, log_file: str | None, debug: bool) -> None:
        root = logging.getLogger()
        level = logging.DEBUG if debug else logging.INFO if opts.log_verbose else logging.WARNING
        root.setLevel(level)
        fmt = "%(asctime)s -> %(message)s" if opts.log_time else "%(message)s"
        formatter = _SafeFormatter(fmt, datefmt="%a %b %d %H:%M:%S %Y")
        self.file: _LogFile | None = None
        handler: logging.Handler
        if log_file:
            handler = self.file = _LogFile(log_file, opts.log_file_max_size, opts.log_rotate)
        else:
            handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(formatter)
        root.addHandler(handler)
        if opts.log_syslog:
            names = logging.handlers.SysLogHandler.facility_names
            fac = names.get(opts.log_facility.lower().removeprefix("log_"), names["local6"])
            with contextlib.suppress(OSError):
                sh = logging.handlers.SysLogHandler(address="/dev/log", facility=fac)
                sh.setFormatter(_SafeFormatter("vigild[%(process)d]: %(message)s"))
                root.addHandler(sh)

    def reopen(self) -> None:
        if self.file is not None:
            self.file.reopen()


# ---------------------------------------------------------------------------- helpers


def daily_version_line(dirs: Sequence[str]) -> str:
    """``ClamAV <version>[/<daily>/<ctime>]`` from the daily database header (like clamd -V)."""
    best: tuple[int, int | None] | None = None
    for d in dirs:
        for name in ("daily.cld", "daily.cvd"):
            path = Path(d) / name
            try:
                with open(path, "rb") as fh:
                    head = fh.read(512)
                header = parse_cvd_header(head, str(path))
            except (OSError, DatabaseError):
                continue
            if best is None or header.version > best[0]:
                best = (header.version, header.build_secs)
    return version_text(best)


def make_engine_loader(settings: ServerSettings) -> Callable[[], Engine]:
    def load() -> Engine:
        return open_engine(
            list(settings.database_dirs),
            DatabaseOptions(
                pua=settings.detect_pua,
                official_only=settings.official_database_only,
                trusted_keys=settings.trusted_keys_directory,
            ),
            settings.limits,
            isolate=True,
        )

    return load


def drop_privileges(user: str, log_file: str | None) -> None:
    """Become ``User`` after the sockets are bound (needs root to start).

    Real, effective and saved ids all change, and the supplementary groups become User's
    own, so nothing can regain root. The LogFile is handed to User first (as clamd does),
    so that SIGHUP and LogRotate can still reopen it.
    """
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise StartupError(f"Can't get information about user {user}.") from None
    if os.getuid() == pw.pw_uid and os.geteuid() == pw.pw_uid:
        return
    if os.geteuid() != 0:
        raise StartupError(f"Can't change to user {user}: vigild must be started as root")
    try:
        if log_file:
            os.lchown(log_file, pw.pw_uid, pw.pw_gid)
        os.initgroups(user, pw.pw_gid)
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    except OSError as exc:
        raise StartupError(f"Can't change to user {user}: {exc.strerror or exc}") from None
    log.info("Running as user %s (UID %d, GID %d)", user, pw.pw_uid, pw.pw_gid)


def daemonize() -> int | None:
    """Fork into the background; the parent waits for the child's ready byte.

    Returns the write end of the readiness pipe in the child; the parent exits, printing the
    error the child reports (b"0" + text) if start-up fails.
    """
    read_fd, write_fd = os.pipe()
    if os.fork() > 0:
        os.close(write_fd)
        report = b""
        while chunk := os.read(read_fd, 4096):
            report += chunk
        if report[:1] == b"1":
            os._exit(0)
        if report[1:]:  # the child's start-up error, shown where the user can see it
            os.write(2, b"ERROR: " + report[1:] + b"\n")
        os._exit(1)
    os.close(read_fd)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    return write_fd


# ---------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings, extra = load_settings(args.config_file)
    except ConfigError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        print(f"ERROR: Can't open/parse the config file {args.config_file}", file=sys.stderr)
        return 1
    if args.datadir:
        settings = _replace(settings, database_dirs=(args.datadir,))
    if args.pid:
        settings = _replace(settings, pid_file=args.pid)
    if args.version:
        print(daily_version_line(settings.database_dirs))
        return 0
    log_file = args.log or extra.log_file
    if log_file and not os.path.isabs(log_file):
        print("ERROR: LogFile requires full path.", file=sys.stderr)
        return 1
    foreground = args.foreground or args.debug or extra.foreground
    try:  # opened before forking, so that a bad LogFile is reported on the terminal
        logs = _LogSetup(extra, log_file, args.debug or extra.debug)
    except OSError as exc:
        print(f"ERROR: Can't open log file {log_file}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    ready_fd = None if foreground else daemonize()
    code = 0
    wrote_pid = False
    failure = ""
    daemon = Daemon(settings, make_engine_loader(settings), reopen_log=logs.reopen)
    try:
        daemon.bind()
        if settings.pid_file:
            old = os.umask(0o022)
            try:
                Path(settings.pid_file).write_text(f"{os.getpid()}\n")
                wrote_pid = True
            except OSError as exc:
                log.error("Can't save PID in file %s: %s", settings.pid_file, exc.strerror)
                return 2
            finally:
                os.umask(old)
        started = time.monotonic()
        daemon.engine = make_engine_loader(settings)()
        log.info(
            "Loaded %d signatures in %.2fs", daemon.engine.signatures, time.monotonic() - started
        )
        if settings.user:
            # after binding and after the first load (everything imported), before serving;
            # later reloads read the database as User, as clamd's do
            drop_privileges(settings.user, log_file)
        if ready_fd is not None:
            os.write(ready_fd, b"1")
            os.close(ready_fd)
            ready_fd = None
        asyncio.run(daemon.serve())
    except (StartupError, VigilError) as exc:
        log.error("%s", exc)
        failure = str(exc)
        if foreground and log_file:
            print(f"ERROR: {exc}", file=sys.stderr)
        code = 1
    except Exception as exc:  # a bug: one clear line for the user, the details in the log
        log.debug("internal error", exc_info=True)
        log.error("internal error: %s: %s", type(exc).__name__, exc)
        failure = f"internal error: {type(exc).__name__}: {exc}"
        if log_file:
            print(f"ERROR: {failure}", file=sys.stderr)
        code = 1
    finally:
        if ready_fd is not None:
            with contextlib.suppress(OSError):
                os.write(ready_fd, b"0" + failure.encode("utf-8", "replace"))
            os.close(ready_fd)
        if settings.pid_file and wrote_pid:  # never another instance's PidFile
            with contextlib.suppress(OSError):
                os.unlink(settings.pid_file)
        daemon.remove_socket()  # also after a failed start: leave no socket file behind
    return code


def _replace(settings: ServerSettings, **changes: object) -> ServerSettings:
    return dataclasses.replace(settings, **changes)  # type: ignore[arg-type]


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
