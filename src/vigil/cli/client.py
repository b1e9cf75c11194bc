"""``vigil client``: clamdscan's options, output lines, summary and exit codes over the wire.

The walk, the choice of command (CONTSCAN, MULTISCAN, ALLMATCHSCAN, INSTREAM, FILDES, or an
IDSESSION of INSTREAM/FILDES) and every message follow clamdscan 1.4.6, including its
quirks, so scripts that parse clamdscan's output keep working. Imports ``vigil.client``.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import errno
import os
import re
import socket
import stat
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, TextIO

from vigil import __version__
from vigil.client import (
    Address,
    ClamdClient,
    ClientError,
    ClientSettings,
    Connection,
    ConnectionLost,
    DaemonUnavailable,
    ReplyError,
    UnixAddress,
    read_client_settings,
)
from vigil.client import settings as conf
from vigil.errors import ConfigError
from vigil.paths import SOCKET_ENV, default_socket

__all__ = ["DEFAULT_SOCKET", "SOCKET_ENV", "add_arguments", "run"]

DEFAULT_SOCKET = default_socket()
"""Where ``vigild`` listens when no configuration file is given."""
# SOCKET_ENV (VIGIL_SOCKET) overrides DEFAULT_SOCKET; it is ignored when -c is given.

EXIT_CLEAN, EXIT_FOUND, EXIT_ERROR = 0, 1, 2
# clamdscan exits with libclamav error codes when --ping/--wait give up: CL_ETIMEOUT when
# the daemon never answered, CL_ERROR when the --ping argument is malformed.
EXIT_TIMEOUT, EXIT_BAD_PING = 21, 34
PING_ATTEMPTS, PING_INTERVAL = 31, 1  # --wait alone: up to 30 s
PING_TIMEOUT = 10.0  # seconds to wait for PONG on an accepted connection
READ_CHUNK = 8188  # clamdscan's INSTREAM chunk: one 8 KiB buffer minus the length word
_STRTOUL = re.compile(r"\s*([+-]?)(\d+)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The clamdscan options that ``vigil client`` understands."""
    parser.epilog = (
        f"Without -c, connects to the Unix socket {DEFAULT_SOCKET} (or ${SOCKET_ENV} if set). "
        "Exit status: 0 clean, 1 virus found, 2 error."
    )
    parser.add_argument(
        "paths", nargs="*", metavar="FILE", help="files or directories to scan; - for stdin"
    )
    parser.add_argument(
        "-c",
        "--config-file",
        metavar="FILE",
        help="read LocalSocket, TCPSocket/TCPAddr, StreamMaxLength, ExcludePath, "
        "MaxDirectoryRecursion and Follow*Symlinks from this clamd.conf (default: the "
        f"socket {DEFAULT_SOCKET}, or ${SOCKET_ENV})",
    )
    flag = parser.add_argument
    flag("-V", "--version", action="store_true", help="print the daemon's version and exit")
    flag("-v", "--verbose", action="store_true", help="be verbose")
    flag("--quiet", action="store_true", help="only print error messages")
    flag("--stdout", action="store_true", help="write errors and warnings to stdout")
    flag("-l", "--log", metavar="FILE", help="also append the scan report to FILE")
    flag("-f", "--file-list", metavar="FILE", help="scan the files listed in FILE")
    flag(
        "-p",
        "--ping",
        metavar="A[:I]",
        help="ping the daemon up to A times, I seconds apart (default 1), until it answers",
    )
    flag(
        "-w",
        "--wait",
        action="store_true",
        help="wait up to 30 s for the daemon to start (use --ping to set attempts and interval)",
    )
    flag("-z", "--allmatch", action="store_true", help="report every match within a file")
    flag("-m", "--multiscan", action="store_true", help="force MULTISCAN mode")
    flag("-i", "--infected", action="store_true", help="only print infected files")
    flag("--no-summary", action="store_true", help="do not print the summary")
    flag("--reload", action="store_true", help="ask the daemon to reload its database")
    flag("--fdpass", action="store_true", help="pass file descriptors (Unix socket only)")
    flag("--stream", action="store_true", help="upload file contents with INSTREAM")


# --------------------------------------------------------------------------- messages


class Level(enum.Enum):
    ERROR = enum.auto()
    WARNING = enum.auto()
    INFO = enum.auto()
    DEBUG = enum.auto()

    @property
    def prefix(self) -> str:
        return {Level.ERROR: "ERROR: ", Level.WARNING: "WARNING: "}.get(self, "")


def _write(stream: TextIO, text: str) -> None:
    """Write with surrogate escapes intact, so undecodable file names print byte for byte."""
    buffer = getattr(stream, "buffer", None)
    stream.flush()
    if buffer is not None:
        buffer.write(os.fsencode(text))
        buffer.flush()
    else:
        stream.write(text)
        stream.flush()


class Reporter:
    """clamdscan's two printers: ``log`` (report file + screen) and ``screen`` only.

    Errors go to stderr unless --stdout; --quiet drops everything but errors; debug lines
    need -v. Every text carries its own line ending.
    """

    def __init__(
        self,
        out: TextIO,
        err: TextIO,
        *,
        quiet: bool = False,
        to_stdout: bool = False,
        verbose: bool = False,
    ) -> None:
        self.out, self.err = out, err
        self.quiet, self.to_stdout, self.verbose = quiet, to_stdout, verbose
        self.logfile: BinaryIO | None = None

    def screen(self, level: Level, text: str) -> None:
        if level is Level.ERROR:
            _write(self.out if self.to_stdout else self.err, level.prefix + text)
        elif self.quiet:
            return
        elif level is Level.WARNING:
            _write(self.out if self.to_stdout else self.err, level.prefix + text)
        elif level is Level.INFO or self.verbose:
            _write(self.out, text)

    def log(self, level: Level, text: str) -> None:
        if level is Level.DEBUG and not self.verbose:
            return
        if self.logfile is not None:
            try:
                self.logfile.write(os.fsencode(level.prefix + text))
                self.logfile.flush()
            except OSError:  # like clamdscan, a failing log never stops the scan
                self.logfile = None
        self.screen(level, text)

    def error(self, text: str) -> None:
        self.log(Level.ERROR, text + "\n")

    def warning(self, text: str) -> None:
        self.log(Level.WARNING, text + "\n")

    def info(self, text: str) -> None:
        self.log(Level.INFO, text + "\n")

    def debug(self, text: str) -> None:
        self.log(Level.DEBUG, text + "\n")

    def library_error(self, text: str) -> None:
        """libclamav's own error printer, which always writes to stderr."""
        _write(self.err, f"LibClamAV Error: {text}\n")

    def library_warning(self, text: str) -> None:
        _write(self.err, f"LibClamAV Warning: {text}\n")


# --------------------------------------------------------------------------- walking


class Reason(enum.Enum):
    """Why the walker calls back (libclamav's cli_ftw reasons)."""

    ERROR_STAT = enum.auto()
    SKIPPED_DIR = enum.auto()
    SKIPPED_LINK = enum.auto()
    SKIPPED_SPECIAL = enum.auto()
    TOPLEVEL_DIR = enum.auto()
    FILE = enum.auto()


class Status(enum.Enum):
    SUCCESS = enum.auto()
    BREAK = enum.auto()  # stop the walk, not an error (the daemon scans the whole dir)
    ABORT = enum.auto()  # stop the walk after a hard error


class FileType(enum.Enum):
    UNKNOWN = enum.auto()
    LINK = enum.auto()
    DIRECTORY = enum.auto()
    REGULAR = enum.auto()
    SKIPPED_SPECIAL = enum.auto()
    SKIPPED_LINK = enum.auto()


WalkCallback = Callable[[Reason, str | None, str], Status]


def trim_path(path: str) -> tuple[str, str]:
    """clamdscan's slash trimming: (path as printed in the final OK line, path walked).

    Trailing slashes go from both; a leading ``//`` is collapsed only in the walked path.
    """
    if len(path) < 2:
        return path, path
    start = 0
    while path[start : start + 2] == "//":
        start += 1
    end = len(path)
    while end > start and path[end - 1] == "/":
        end -= 1
    return path[:end], path[start:end]


class Walker:
    """A file tree walk with clamdscan's order and skipping rules (spec §5.1, client side).

    Regular files come before subdirectories, each group in inode order; symlinks are
    skipped unless FollowFileSymlinks/FollowDirectorySymlinks allow them; special files are
    reported; directories deeper than MaxDirectoryRecursion are reported and skipped.
    """

    def __init__(
        self,
        settings: ClientSettings,
        excluded: Callable[[str], bool],
        reporter: Reporter,
    ) -> None:
        self.follow_dirs = settings.follow_directory_symlinks
        self.follow_files = settings.follow_file_symlinks
        self.excluded = excluded
        self.reporter = reporter

    def _filetype(self, name: str, ft: FileType) -> FileType | None:
        """Classify ``name``; None when stat/lstat fails."""
        if ft not in (FileType.UNKNOWN, FileType.LINK):
            return ft
        follow_any = self.follow_dirs or self.follow_files
        need_stat = True
        try:
            st: os.stat_result | None = None
            if not (self.follow_dirs and self.follow_files):
                if ft is not FileType.LINK:
                    st = os.lstat(name)
                    if stat.S_ISLNK(st.st_mode):
                        ft = FileType.LINK
                    else:
                        need_stat = False
                if ft is FileType.LINK and not follow_any:
                    return FileType.SKIPPED_LINK
            if need_stat:
                st = os.stat(name)
        except OSError:
            return None
        assert st is not None
        if stat.S_ISDIR(st.st_mode) and (ft is not FileType.LINK or self.follow_dirs):
            return FileType.DIRECTORY
        if stat.S_ISREG(st.st_mode) and (ft is not FileType.LINK or self.follow_files):
            return FileType.REGULAR
        return FileType.SKIPPED_LINK if stat.S_ISLNK(st.st_mode) else FileType.SKIPPED_SPECIAL

    def _handle_filetype(
        self, name: str, ft: FileType, callback: WalkCallback
    ) -> tuple[Status, FileType]:
        found = self._filetype(name, ft)
        if found is None:
            return callback(Reason.ERROR_STAT, name, name), FileType.UNKNOWN
        if found is FileType.SKIPPED_LINK:
            return callback(Reason.SKIPPED_LINK, name, name), found
        if found is FileType.SKIPPED_SPECIAL:
            return callback(Reason.SKIPPED_SPECIAL, name, name), found
        return Status.SUCCESS, found

    def walk(self, path: str, maxdepth: int, callback: WalkCallback) -> Status:
        """Walk one command-line argument (already trimmed by trim_path)."""
        if self.excluded(path):
            return Status.SUCCESS
        status, ft = self._handle_filetype(path, FileType.UNKNOWN, callback)
        if status is not Status.SUCCESS:
            return status
        if ft is FileType.DIRECTORY:
            status = callback(Reason.TOPLEVEL_DIR, path, path)
            if status is not Status.SUCCESS:
                return status
            return self._walk_dir(path, maxdepth, callback)
        if ft is FileType.REGULAR:
            return callback(Reason.FILE, path, path)
        return Status.SUCCESS

    def _walk_dir(self, dirname: str, maxdepth: int, callback: WalkCallback) -> Status:
        if maxdepth < 0:
            return callback(Reason.SKIPPED_DIR, None, dirname)
        try:
            with os.scandir(dirname) as it:
                listing = list(it)
        except OSError:
            return callback(Reason.ERROR_STAT, None, dirname)
        entries: list[tuple[bool, int, str]] = []
        for entry in listing:
            if entry.is_symlink():
                if not (self.follow_dirs or self.follow_files):
                    continue
                ft = FileType.LINK
            elif entry.is_dir(follow_symlinks=False):
                ft = FileType.DIRECTORY
            elif entry.is_file(follow_symlinks=False):
                ft = FileType.REGULAR
            else:
                ft = FileType.SKIPPED_SPECIAL
            name = f"/{entry.name}" if dirname == "/" else f"{dirname}/{entry.name}"
            if self.excluded(name):
                continue
            status, ft = self._handle_filetype(name, ft, callback)
            if status is not Status.SUCCESS:
                break  # clamdscan stops listing but still visits what it has collected
            if ft in (FileType.REGULAR, FileType.DIRECTORY):
                entries.append((ft is FileType.DIRECTORY, entry.inode(), name))
        entries.sort(key=lambda e: (e[0], e[1]))
        status = Status.SUCCESS
        for is_dir, _, name in entries:
            if is_dir:
                status = self._walk_dir(name, maxdepth - 1, callback)
            else:
                status = callback(Reason.FILE, name, name)
            if status is not Status.SUCCESS:
                self.reporter.library_error("File tree walk aborted.")
                break
        return status


def exclude_matcher(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    """ExcludePath: unanchored regex search; a trailing ``/`` also matches the dir itself."""
    compiled: list[tuple[re.Pattern[str], bool]] = []
    for pattern in patterns:
        try:
            compiled.append((re.compile(pattern), pattern.endswith("/")))
        except re.error:
            continue  # clamd: a pattern that does not compile never matches

    def excluded(path: str) -> bool:
        return any(rx.search((path[:510] + "/") if slash else path[:512]) for rx, slash in compiled)

    return excluded


# --------------------------------------------------------------------------- scanning


class ScanType(enum.Enum):
    """How files reach the daemon; the value is the command clamdscan sends."""

    CONT = "CONTSCAN"
    MULTI = "MULTISCAN"
    STREAM = "INSTREAM"
    FILDES = "FILDES"
    ALLMATCH = "ALLMATCHSCAN"

    @property
    def sends_data(self) -> bool:
        return self in (ScanType.STREAM, ScanType.FILDES)

    @property
    def walks_here(self) -> bool:
        """clamdscan walks directories itself (one request per file) for these types."""
        return self in (ScanType.STREAM, ScanType.FILDES, ScanType.ALLMATCH)


@dataclass(slots=True)
class Tally:
    """Counters for one command-line argument."""

    printok: bool
    files: int = 0
    errors: int = 0
    infected: int = 0
    ids: dict[int, str] = field(default_factory=dict)
    last_id: int = 0


def _strtoul(text: str) -> int | None:
    """C strtoul over the whole text (base 10); None if anything is left over."""
    if not text:
        return 0
    m = _STRTOUL.fullmatch(text)
    if not m:
        return None
    value = min(int(m.group(2)), 2**64 - 1)
    return (2**64 - value) % 2**64 if m.group(1) == "-" else value


def _realpath(path: str) -> str | None:
    try:
        return os.path.realpath(path, strict=True)
    except (OSError, RuntimeError):
        return None


class Client:
    """One ``vigil client`` run: the state clamdscan keeps in globals."""

    def __init__(self, args: argparse.Namespace, settings: ClientSettings, rep: Reporter) -> None:
        self.args = args
        # clamdscan 1.4.6 only ever uses the first TCPAddr of the file (observed).
        settings = dataclasses.replace(settings, tcp_addrs=settings.tcp_addrs[:1])
        self.settings = settings
        self.rep = rep
        self.client = ClamdClient(
            settings.addresses(),
            stream_max_length=settings.stream_max_length,
            chunk_size=READ_CHUNK,
            on_connect_error=self._connect_failed,
        )
        self.excluded = exclude_matcher(settings.exclude_paths)
        self.walker = Walker(settings, self._path_excluded, rep)
        self.infected = 0
        self.errors = 0  # per-file errors, for "Total errors"
        self.last_allmatch = ""

    # -- connecting

    def _connect_failed(self, address: Address, exc: OSError) -> None:
        if isinstance(address, UnixAddress):
            self.rep.error(
                f"Could not connect to clamd on LocalSocket {address.path}: {exc.strerror or exc}"
            )
        elif isinstance(exc, socket.gaierror):
            self.rep.error(f"Could not lookup {address.host or ''}: {exc.strerror or exc}")
        else:
            label = "any" if address.host is None else address.host
            self.rep.error(f"Could not connect to clamd on {label}: {exc.strerror or exc}")

    def connect(self) -> Connection | None:
        try:
            return self.client.connect()
        except DaemonUnavailable:
            return None

    def is_remote(self) -> bool:
        """clamdscan's test: a TCPAddr this host cannot bind to means the daemon is remote,
        so it cannot open our paths and files must be streamed."""
        s = self.settings
        if s.local_socket or s.tcp_socket is None:
            return False
        for addr in s.tcp_addrs or (None,):
            host = None if addr in (None, "any") else addr
            try:
                infos = socket.getaddrinfo(
                    host,
                    str(s.tcp_socket),
                    socket.AF_UNSPEC,
                    socket.SOCK_STREAM,
                    0,
                    socket.AI_PASSIVE,
                )
            except socket.gaierror as exc:
                self.rep.error(f"Can't lookup clamd hostname: {exc.strerror}")
                continue
            for family, type_, proto, _, sockaddr in infos:
                try:
                    sock = socket.socket(family, type_, proto)
                except OSError as exc:
                    self.rep.info(f"isremote: socket() returning: {exc.strerror}.")
                    continue
                with sock:
                    try:
                        sock.bind((sockaddr[0], 0, *sockaddr[2:]))
                    except OSError as exc:
                        return exc.errno != errno.EADDRINUSE
        return False

    def _path_excluded(self, path: str) -> bool:
        if self.excluded(path):
            self.rep.debug(f"{path}: Excluded")
            return True
        return False

    # -- replies

    def recv_failed(self, exc: ClientError) -> None:
        if isinstance(exc, ConnectionLost) and exc.partial == b"UNKNOWN COMMAND\n":
            self.rep.error("Command rejected by clamd (wrong clamd version?)")
        elif isinstance(exc, ReplyError):
            self.rep.error("Overlong reply from clamd")
        else:
            self.rep.error("Communication error")

    def _send_file(self, conn: Connection, scantype: ScanType, filename: str | None) -> int:
        """Upload a file (or stdin) with INSTREAM or FILDES: 1 sent, 0 soft, -1 hard failure."""
        if filename is None:
            fd = 0
        else:
            try:
                fd = os.open(filename, os.O_RDONLY)
            except OSError:
                suffix = ". ERROR" if scantype is ScanType.STREAM else ""
                self.rep.info(f"{filename}: Failed to open file{suffix}")
                return 0
        try:
            conn.send_command(scantype.value)
            if scantype is ScanType.FILDES:
                conn.send_fd(fd)
                return 1
            if fd != 0:
                os.lseek(fd, 0, os.SEEK_SET)
            with open(fd, "rb", buffering=0, closefd=False) as reader:
                conn.send_stream(reader, self.settings.stream_max_length, READ_CHUNK)
            return 1
        except ClientError as exc:
            self.rep.error(str(exc))
            return -1
        except OSError:
            self.rep.error(f"Failed to read from {filename or 'STDIN'}.")
            return 0
        finally:
            if fd != 0:
                os.close(fd)

    def dsresult(
        self, conn: Connection, scantype: ScanType, filename: str | None, tally: Tally
    ) -> int:
        """Send one request and print its reply lines; the number infected, or -1."""
        if scantype.sends_data:
            sent = self._send_file(conn, scantype, filename)
            if sent <= 0:
                tally.printok = False
                tally.errors += 1
                return sent
        else:
            assert filename is not None
            try:
                conn.send_command(scantype.value, filename)
            except ConnectionLost as exc:
                self.rep.error(str(exc))
                return -1
        infected = 0
        answered = False
        try:
            for line in conn.lines():
                answered = True
                if filename is None:
                    self.rep.info(line)
                found = self._reply_line(line, scantype, filename, tally)
                if found < 0:
                    return -1
                infected += found
        except ClientError as exc:
            self.recv_failed(exc)
            return -1
        if not answered:
            if filename is None:
                self.rep.log(Level.INFO, "STDIN: noreply from clamd\n.")
                return -1
            try:
                st = os.stat(filename)
            except OSError as exc:
                self.rep.info(
                    f"{filename}: stat() failed with {exc.strerror}, clamd may not be responding"
                )
                return -1
            if not stat.S_ISDIR(st.st_mode):
                self.rep.info(f"{filename}: no reply from clamd")
                return -1
        return infected

    def _reply_line(self, line: str, scantype: ScanType, filename: str | None, tally: Tally) -> int:
        """Classify one reply line like clamdscan (by its ending); 1 if it is a detection."""
        if len(line) < 7:
            return 0
        bol = line
        colon = bol.rfind(":")
        if colon >= 0 and bol[colon + 1 : colon + 2] != " ":
            # Not "path: status": drop a trailing "(...)" annotation and look again.
            bol = bol[:colon]
            bracket = bol.rfind("(")
            if bracket >= 0:
                bol = bol[:bracket]
            colon = bol.rfind(":")
        if colon < 0:
            if bol.startswith("UNKNOWN"):
                self.rep.info(f'clamd replied "UNKNOWN COMMAND". Command was {scantype.value}')
            else:
                self.rep.info(f'Failed to parse reply: "{bol}"')
            return -1
        if line.endswith(" FOUND"):
            bol = bol[: len(line) - len(" FOUND")]
            tally.printok = False
            found = 1
            if scantype is ScanType.ALLMATCH:
                # Every match is a line of its own: count the file once. Like clamdscan,
                # only a change from the last counted file counts, across the whole run.
                found = int(filename is not None and filename != self.last_allmatch)
                self.last_allmatch = filename or self.last_allmatch
            if filename is not None:
                if scantype.walks_here:
                    self.rep.info(f"{filename}{bol[colon:]} FOUND")
                else:
                    self.rep.info(f"{bol} FOUND")
            return found
        if line.endswith(" ERROR"):
            tally.errors += 1
            tally.printok = False
            if filename is not None:
                self.rep.info(f"{filename}{bol[colon:]}" if scantype.walks_here else bol)
        return 0

    # -- one argument, one connection per file

    def serial_scan(self, file: str, scantype: ScanType, maxdepth: int) -> int:
        """Scan one argument without a session; 0 fine, 1 error."""
        shown, walked = trim_path(file)
        tally = Tally(printok=not self.args.infected)

        def visit(reason: Reason, filename: str | None, path: str) -> Status:
            real = _realpath(path)
            if real is None:
                self.rep.debug(f"Failed to determine real filename of {path}.")
                real = path
            if self._path_excluded(real):
                return Status.SUCCESS
            tally.files += 1
            if reason is Reason.ERROR_STAT:
                self.rep.error(f"Can't access file {path}")
                tally.errors += 1
                return Status.SUCCESS
            if reason is Reason.SKIPPED_DIR:
                self.rep.warning("Directory recursion limit reached")
                return Status.SUCCESS
            if reason is Reason.SKIPPED_LINK:
                return Status.SUCCESS
            if reason is Reason.SKIPPED_SPECIAL:
                self.rep.warning(f"{path}: Not supported file type")
                tally.errors += 1
                return Status.SUCCESS
            if reason is Reason.TOPLEVEL_DIR and scantype.walks_here:
                return Status.SUCCESS
            conn = self.connect()
            if conn is None:
                tally.errors += 1
                return Status.ABORT
            with conn:
                ret = self.dsresult(conn, scantype, real, tally)
            if ret < 0:
                tally.errors += 1
                return Status.ABORT
            tally.infected += ret
            return Status.BREAK if reason is Reason.TOPLEVEL_DIR else Status.SUCCESS

        status = self.walker.walk(walked, maxdepth, visit)
        self.infected += tally.infected
        self.errors += tally.errors
        if not tally.errors and status in (Status.SUCCESS, Status.BREAK):
            if tally.printok:
                self.rep.info(f"{shown}: OK")
            return 0
        if not tally.files:
            self.rep.info(f"{shown}: No files scanned")
            return 0
        return 1

    # -- one argument, one IDSESSION

    def _session_replies(self, conn: Connection, tally: Tally) -> int:
        """Read and print the session replies at hand: 0 fine, 1 error, 2 daemon closed."""
        while True:
            try:
                line = conn.read_line()
            except ClientError as exc:
                self.recv_failed(exc)
                return 1
            if line is None:
                return 2
            m = _STRTOUL.match(line)
            rid = int(m.group(2)) if m and m.group(1) != "-" else 0
            filename = tally.ids.pop(rid, None) if rid else None
            if filename is None:
                self.rep.error("Bogus session id from clamd")
                return 1
            if len(line) >= 7:
                colon = line.rfind(":")
                if line.endswith(" FOUND"):
                    tally.infected += 1
                    tally.printok = False
                    self.rep.info(f"{filename}{line[colon:]}")
                elif line.endswith(" ERROR"):
                    tally.errors += 1
                    tally.printok = False
                    self.rep.info(f"{filename}{line[colon:]}")
            if not conn.buffered():
                return 0

    def parallel_scan(self, file: str, scantype: ScanType, maxdepth: int) -> int:
        """Scan one argument's files through one IDSESSION; 0 fine, 1 error."""
        shown, walked = trim_path(file)
        conn = self.connect()
        if conn is None:
            return 1
        with conn:
            try:
                conn.send_command("IDSESSION")
            except ConnectionLost as exc:
                self.rep.error(str(exc))
                return 1
            tally = Tally(printok=not self.args.infected)

            def visit(reason: Reason, filename: str | None, path: str) -> Status:
                if filename is None:
                    # clamdscan resolves a missing name here (too-deep or unreadable dir);
                    # libclamav complains and the entry is then skipped as excluded.
                    self.rep.library_warning("cli_realpath: Invalid arguments.")
                real = _realpath(filename) if filename is not None else None
                if real is None:
                    self.rep.debug(f"Failed to determine real filename of {filename or '(null)'}.")
                    real = filename
                if real is None or self._path_excluded(real):
                    return Status.SUCCESS
                tally.files += 1
                if reason is Reason.ERROR_STAT:
                    self.rep.error(f"Can't access file {filename or '(null)'}")
                    tally.errors += 1
                    return Status.SUCCESS
                if reason is Reason.SKIPPED_DIR:
                    self.rep.warning("Directory recursion limit reached")
                    return Status.SUCCESS
                if reason is Reason.SKIPPED_SPECIAL:
                    self.rep.warning(f"{filename}: Not supported file type")
                    tally.errors += 1
                    return Status.SUCCESS
                if reason is not Reason.FILE:
                    return Status.SUCCESS
                # Drain replies first so the daemon never blocks writing to us.
                while conn.readable(0):
                    if self._session_replies(conn, tally):
                        return Status.BREAK
                res = self._send_file(conn, scantype, real)
                if res <= 0:
                    tally.printok = False
                    tally.errors += 1
                    return Status.BREAK if res else Status.SUCCESS
                tally.last_id += 1
                tally.ids[tally.last_id] = filename or ""
                return Status.SUCCESS

            status = self.walker.walk(walked, maxdepth, visit)
            if status is not Status.SUCCESS:
                self.errors += tally.errors
                self.infected += tally.infected
                return 1
            try:
                conn.send_command("END")
            except ConnectionLost as exc:
                self.rep.error(str(exc))
            while tally.ids and not self._session_replies(conn, tally):
                pass
        self.infected += tally.infected
        self.errors += tally.errors
        if tally.ids:
            self.rep.error("Clamd closed the connection before scanning all files.")
            return 1
        if tally.errors:
            return 1
        if tally.files and tally.printok:
            self.rep.info(f"{shown}: OK")
        return 0

    # -- the whole run

    def scan_stdin(self, scantype: ScanType) -> int:
        """``-``: pass stdin's descriptor (or upload it if it is not a regular file)."""
        try:
            st = os.fstat(0)
        except OSError as exc:
            self.rep.log(
                Level.INFO, f'client.c: fstat failed for file name "-", with {exc.strerror}\n.'
            )
            return EXIT_ERROR
        if not stat.S_ISREG(st.st_mode):
            scantype = ScanType.STREAM
        conn = self.connect()
        if conn is None:
            return EXIT_ERROR
        with conn:
            ret = self.dsresult(conn, scantype, None, Tally(printok=True))
        if ret < 0:
            return EXIT_ERROR
        self.infected = ret
        return EXIT_FOUND if ret else EXIT_CLEAN

    def file_names(self) -> Iterator[str]:
        """Command-line paths, or the lines of --file-list (read like clamdscan's fgets)."""
        if self.args.file_list is None:
            yield from self.args.paths
            return
        try:
            with open(self.args.file_list, "rb") as fh:
                data = fh.read()
        except OSError:
            _write(sys.stderr, f"ERROR: --file-list: Can't open file {self.args.file_list}\n")
            return
        pos = 0
        while pos < len(data):
            end = data.find(b"\n", pos, pos + 1023)
            end = min(pos + 1023, len(data)) if end < 0 else end + 1
            chunk = data[pos:end].split(b"\x00", 1)[0]
            pos = end
            if not chunk:
                return
            # Only line endings after the first character are stripped (an empty line
            # stays "\n" and names a file that does not exist, as in clamdscan).
            keep = len(chunk) - 1
            while keep and chunk[keep : keep + 1] in (b"\n", b"\r"):
                keep -= 1
            yield os.fsdecode(chunk[: keep + 1])

    def wait_for_daemon(self) -> int:
        """--ping / --wait: 0 answered, 1 gave up, -1 bad --ping argument."""
        attempts, interval = PING_ATTEMPTS, PING_INTERVAL
        if self.args.ping is not None:
            count, sep, every = self.args.ping.partition(":")
            if sep:
                parsed = _strtoul(every)
                if parsed is None:
                    self.rep.warning("interval_str would go past end of buffer")
                    return -1
                interval = parsed
            parsed = _strtoul(count)
            if parsed is None:
                self.rep.warning("attempt_str would go past end of buffer")
                return -1
            attempts = parsed
        self.is_remote()
        wait = self.args.wait
        i = 0
        while True:
            conn = self.connect()
            if conn is not None:
                with conn:
                    try:
                        conn.sock.settimeout(PING_TIMEOUT)
                        conn.send_command("PING")
                        answered = conn.read_line() == "PONG"
                    except (ClientError, OSError):
                        answered = False
                if answered:
                    if not wait:
                        self.rep.info("PONG")
                    return 0
                self.rep.debug("PING failed...")
            if i + 1 < attempts:
                unit = "second" if interval == 1 else "seconds"
                if wait:
                    self.rep.debug(f"Could not connect, will try again in {interval} {unit}")
                else:
                    self.rep.info(f"Could not connect, will PING again in {interval} {unit}")
                time.sleep(min(max(interval, 0), 0xFFFFFFFF))  # C's sleep(unsigned)
            i += 1
            if i >= attempts:
                break
        if wait:
            self.rep.info("Wait timeout exceeded; Could not connect to clamd")
        else:
            self.rep.info("PING timeout exceeded; No response from clamd")
        return 1

    def scan(self) -> int:
        """Scan every argument; 0 clean, 1 found, 2 error (or 21/34 from --wait)."""
        args = self.args
        if args.wait:
            waited = self.wait_for_daemon()
            if waited:
                return EXIT_TIMEOUT if waited == 1 else EXIT_BAD_PING
        scandash = args.paths == ["-"] and args.file_list is None
        remote = self.is_remote() or args.stream
        if not remote and self.settings.local_socket and (args.fdpass or scandash):
            scantype, session = ScanType.FILDES, args.multiscan
        elif remote or scandash:
            scantype, session = ScanType.STREAM, args.multiscan
        elif args.multiscan:
            scantype, session = ScanType.MULTI, False
        elif args.allmatch:
            scantype, session = ScanType.ALLMATCH, False
        else:
            scantype, session = ScanType.CONT, False
        maxdepth = self.settings.max_directory_recursion or 2**31 - 1
        if scandash:
            return self.scan_stdin(scantype)
        if args.paths and args.file_list is not None:
            self.rep.warning(
                "Only scanning files from --file-list (files passed at cmdline are ignored)"
            )
        failed = 0
        names = self.file_names() if args.paths or args.file_list is not None else iter([""])
        for name in names:
            if name == "-":
                self.rep.error(
                    'Scanning from standard input requires "-" to be the only file argument'
                )
                continue
            if not name.startswith("/"):
                try:
                    name = f"{os.getcwd()}/{name}"
                except OSError:
                    self.rep.warning("Can't get absolute pathname of current working directory.")
                    continue
            scan_one = self.parallel_scan if session else self.serial_scan
            failed += scan_one(name, scantype, maxdepth)
        if self.infected:
            return EXIT_FOUND
        return EXIT_ERROR if failed else EXIT_CLEAN


# --------------------------------------------------------------------------- commands


def clamd_wording(exc: ConfigError) -> str:
    """clamd's message for a config error, which clamdscan prints as is."""
    where = f"{exc.path}:{exc.lineno}"
    return {
        conf.BAD_FORMAT: f"Incorrect argument format for option {exc.option}",
        conf.EMPTY_ARGUMENT: f"Empty argument for option {exc.option} at {where}",
        conf.EXAMPLE_LINE: f"Please edit the example config file {exc.path}",
        conf.MISSING_ARGUMENT: f"Missing argument for option at {where}",
        conf.MISSING_QUOTE: f"Missing closing parenthesis in option {exc.option} at {where}",
    }.get(exc.reason, str(exc))


def load_settings(path: str | None) -> ClientSettings:
    """The settings from ``-c``, else Vigil's default socket (``$VIGIL_SOCKET`` wins)."""
    if path is None:
        return ClientSettings(local_socket=default_socket())
    return read_client_settings(path)


def print_version(client: Client) -> None:
    """-V: the daemon's VERSION reply, or our own version if it cannot be asked."""
    conn = client.connect()
    if conn is not None:
        with conn:
            try:
                conn.send_command("VERSION")
            except ConnectionLost as exc:
                client.rep.error(str(exc))
            else:
                try:
                    for line in conn.lines():
                        _write(sys.stdout, line + "\n")
                except ClientError as exc:
                    client.recv_failed(exc)
                    client.rep.error("Error occurred while receiving version information.")
                return
    _write(sys.stdout, f"Vigil {__version__}\n")


def reload_database(client: Client) -> int:
    """--reload: 0 if the daemon answered RELOADING, else 2."""
    client.is_remote()
    conn = client.connect()
    if conn is None:
        return EXIT_ERROR
    with conn:
        try:
            conn.send_command("RELOAD")
        except ConnectionLost as exc:
            client.rep.error(str(exc))
            return EXIT_ERROR
        try:
            line = conn.read_line()
        except ClientError as exc:
            client.recv_failed(exc)
            line = None
    if line is None or not line.startswith("RELOADING"):
        client.rep.error("Clamd did not reload the database")
        return EXIT_ERROR
    return EXIT_CLEAN


def _clock() -> tuple[int, int]:
    ns = time.time_ns()
    return ns // 1_000_000_000, (ns // 1000) % 1_000_000


def print_summary(client: Client, start: tuple[int, int], date_start: int) -> None:
    """clamdscan's summary block (times are wall-clock, dates local)."""
    end = _clock()
    date_end = int(time.time())
    secs, usecs = end[0] - start[0], end[1] - start[1]
    if usecs < 0:
        secs, usecs = secs - 1, usecs + 1_000_000
    rep = client.rep
    rep.info("\n----------- SCAN SUMMARY -----------")
    rep.info(f"Infected files: {client.infected}")
    if client.errors:
        rep.info(f"Total errors: {client.errors}")
    rep.info(f"Time: {secs}.{usecs // 1000:03d} sec ({secs // 60} m {secs % 60} s)")
    fmt = "%Y:%m:%d %H:%M:%S"
    rep.info(f"Start Date: {time.strftime(fmt, time.localtime(date_start))}")
    rep.info(f"End Date:   {time.strftime(fmt, time.localtime(date_end))}")


def run(args: argparse.Namespace) -> int:
    """Run ``vigil client`` with parsed arguments; returns the exit status."""
    out, err = sys.stdout, sys.stderr
    try:
        settings = load_settings(args.config_file)
    except ConfigError as exc:
        if exc.lineno:
            _write(err, f"ERROR: {clamd_wording(exc)}\n")
        _write(err, f"ERROR: Can't parse clamd configuration file {args.config_file}\n")
        return EXIT_ERROR
    rep = Reporter(out, err, quiet=args.quiet, to_stdout=args.stdout, verbose=args.verbose)
    client = Client(args, settings, rep)
    if args.version:
        client.is_remote()
        print_version(client)
        return EXIT_CLEAN
    if args.ping is not None and not args.wait:
        pinged = client.wait_for_daemon()
        return {0: EXIT_CLEAN, 1: EXIT_TIMEOUT}.get(pinged, EXIT_BAD_PING)
    if args.log:
        try:
            fd = os.open(args.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o640)
        except OSError as exc:
            _write(out, f"ERROR: Failed to open log file {args.log}: {exc.strerror}\n")
            rep.screen(Level.ERROR, "Problem with internal logger.\n")
            return EXIT_ERROR
        rep.logfile = os.fdopen(fd, "ab")
        rep.log(Level.INFO, "--------------------------------------\n")
    try:
        if args.reload:
            return reload_database(client)
        date_start = int(time.time())
        start = _clock()
        ret = client.scan()
        if not args.no_summary:
            print_summary(client, start, date_start)
        return ret
    finally:
        if rep.logfile is not None:
            rep.logfile.close()
