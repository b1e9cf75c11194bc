"""SCAN/CONTSCAN/MULTISCAN/ALLMATCHSCAN of a path on the daemon's file system (protocol §5).

Runs in the daemon's threads. Reply lines go out through ``emit`` as they are produced;
``emit`` returns False once the client is gone, which stops the walk. Each file is scanned by
a worker process when the daemon has a pool (see ``workers``), in the thread otherwise.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass

from vigil.engine.scanner import Engine, ScanOptions
from vigil.protocol import replies
from vigil.server.settings import ServerSettings
from vigil.server.workers import WorkerError, WorkerPool, read_fd

__all__ = [
    "MAX_LOG_MESSAGE",
    "PathScan",
    "ScanCounts",
    "printable",
    "scan_buffer_names",
    "run_virus_event",
]

log = logging.getLogger(__name__)

Emit = Callable[[bytes], bool]
MAX_EXCLUDE_MATCH = 512  # clamd truncates candidate paths to this before matching
MAX_WALK_DEPTH = 256  # even with MaxDirectoryRecursion 0, deeper trees are not descended


@dataclass(slots=True)
class ScanCounts:
    """The walk's tallies for the final OK line (§5.3)."""

    total: int = 0
    errors: int = 0
    infected: int = 0


class _Stop(Exception):
    """The walk ends early: SCAN after a detection or error, or the client went away."""


def compile_excludes(patterns: tuple[str, ...]) -> list[tuple[re.Pattern[bytes], bool]]:
    """ExcludePath regexes; one that does not compile never matches (as in clamd)."""
    out = []
    for p in patterns:
        try:
            out.append((re.compile(p.encode("utf-8", "surrogateescape")), p.endswith("/")))
        except re.error:
            log.warning("ExcludePath %r is not a valid regular expression; ignored", p)
    return out


_EVENT_FORMAT = re.compile(r"%[vf]")
_FILENAME_DISABLED = (
    "The filename format character has been disabled due to security concerns, use the "
    "'CLAM_VIRUSEVENT_FILENAME' environment variable instead."
)


def run_virus_event(command: str, name: str, filename: str) -> None:
    """VirusEvent: ``/bin/sh -c`` with %v replaced; the file name only in the environment.

    The file name is never put in the command line (CVE-2024-20328), so a hostile name
    cannot inject shell syntax.
    """
    # one pass, as clamd: a %f inside the substituted virus name stays as it is
    cmd = _EVENT_FORMAT.sub(lambda m: name if m.group() == "%v" else _FILENAME_DISABLED, command)
    env = {"CLAM_VIRUSEVENT_FILENAME": filename, "CLAM_VIRUSEVENT_VIRUSNAME": name}
    if "PATH" in os.environ:
        env["PATH"] = os.environ["PATH"]
    try:
        subprocess.run(["/bin/sh", "-c", cmd], env=env, check=False, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("VirusEvent failed: %s", exc)


def scan_buffer_names(
    engine: Engine, data: bytes, allmatch: bool, workers: WorkerPool | None = None
) -> list[str]:
    """Detection names for one buffer (the engine never raises for content).

    With ``workers`` (the pool of ``engine``) a worker process scans it; WorkerError if
    that worker died or hung meanwhile.
    """
    if workers is not None:
        names = workers.scan_bytes(data, allmatch)
        if names is not None:
            return names
    return engine.scan(data, ScanOptions(allmatch=allmatch)).names


class PathScan:
    """One path-scan request."""

    def __init__(
        self,
        engine: Engine,
        settings: ServerSettings,
        emit: Emit,
        *,
        kind: str,
        excludes: list[tuple[re.Pattern[bytes], bool]],
        workers: WorkerPool | None = None,
    ) -> None:
        self.engine = engine
        self.workers = workers  # engine's pool, held by the caller for the whole request
        self.settings = settings
        self.emit = emit
        self.kind = kind  # SCAN, CONTSCAN, MULTISCAN or ALLMATCHSCAN
        self.allmatch = kind == "ALLMATCHSCAN"
        self.stop_early = kind in ("SCAN", "ALLMATCHSCAN")
        self.excludes = excludes
        self.alive: Callable[[], bool] = lambda: True  # False once the client is gone
        self.counts = ScanCounts()
        self.lock = threading.Lock()  # MULTISCAN's file jobs update the counts concurrently
        self.top_dev = 0

    # -------------------------------------------------------------- helpers

    def send(self, body: bytes) -> None:
        if not self.emit(body):
            raise _Stop

    def check_alive(self) -> None:
        """Before each file: stop a walk whose client left or whose daemon is stopping."""
        if not self.alive():
            raise _Stop

    def excluded(self, path: bytes, is_dir: bool) -> bool:
        cand = path[:MAX_EXCLUDE_MATCH]
        for rx, slash in self.excludes:
            if rx.search(cand + b"/" if slash and is_dir else cand):
                return True
        return False

    # -------------------------------------------------------------- entry point

    def run(self, raw: bytes, pool: Executor | None = None) -> None:
        """Walk ``raw`` and send every line, then the final OK line when due."""
        shown = raw.rstrip(b"/") or raw[:1]
        walk_path = shown
        while walk_path.startswith(b"//"):
            walk_path = walk_path[1:]
        counts = self.counts
        try:
            try:
                st = os.lstat(walk_path)
            except OSError as exc:
                counts.total += 1
                counts.errors += 1
                self.send(replies.path_check_failure(walk_path, exc.errno or errno.ENOENT))
                return
            self.top_dev = st.st_dev
            if self.excluded(walk_path, stat.S_ISDIR(st.st_mode)):
                if self.kind != "MULTISCAN":
                    self.send(walk_path + b": " + replies.EXCLUDED)
                return
            linked = stat.S_ISLNK(st.st_mode)
            if linked:
                try:
                    target = os.stat(walk_path)
                except OSError:
                    target = None
                follow = target is not None and (
                    (stat.S_ISDIR(target.st_mode) and self.settings.follow_directory_symlinks)
                    or (stat.S_ISREG(target.st_mode) and self.settings.follow_file_symlinks)
                )
                if not follow or target is None:
                    counts.total += 1
                    self.finish(shown)
                    return
                st = target
            if stat.S_ISDIR(st.st_mode):
                if self.kind == "MULTISCAN" and pool is not None:
                    self.multiscan(walk_path, pool, linked)
                else:
                    counts.total += 1
                    self.walk_dir(walk_path, 1, linked)
            elif stat.S_ISREG(st.st_mode):
                counts.total += 1
                self.scan_file(walk_path, linked)
            else:
                counts.total += 1
                self.send(walk_path + b": " + replies.NOT_SUPPORTED)
            self.finish(shown)
        except _Stop:
            return

    def finish(self, shown: bytes) -> None:
        c = self.counts
        if c.infected == 0 and c.errors < c.total:
            self.send(shown + b": OK")

    # -------------------------------------------------------------- directories

    def entries(
        self, path: bytes, linked: bool = False
    ) -> Iterator[tuple[bytes, os.stat_result, bool]]:
        """Directory entries to visit: files first, then directories, each in inode order.

        An unreadable directory is reported and skipped; as in clamd, even SCAN goes on
        with the rest of the tree. Yields (path, stat, reached through a followed symlink).
        The directory is opened without following a symlink unless it was reached through
        one that may be followed: a directory swapped for a link meanwhile is not entered.
        """
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | (0 if linked else os.O_NOFOLLOW)
        try:
            dir_fd = os.open(path, flags)
        except OSError as exc:
            self.counts.total += 1
            self.counts.errors += 1
            self.send(replies.path_check_failure(path, exc.errno or errno.EIO))
            return
        try:
            listing = self._listing(path, dir_fd)
        finally:
            os.close(dir_fd)  # closed before descending: open descriptors stay at one a walk
        yield from listing

    def _listing(self, path: bytes, dir_fd: int) -> list[tuple[bytes, os.stat_result, bool]]:
        try:
            with os.scandir(dir_fd) as it:
                items = list(it)
        except OSError as exc:
            self.counts.total += 1
            self.counts.errors += 1
            self.send(replies.path_check_failure(path, exc.errno or errno.EIO))
            return []
        files: list[tuple[int, bytes, os.stat_result, bool]] = []
        dirs: list[tuple[int, bytes, os.stat_result, bool]] = []
        s = self.settings
        for entry in items:
            full = (
                path + b"/" + os.fsencode(entry.name)
                if path != b"/"
                else b"/" + os.fsencode(entry.name)
            )
            linked = False
            try:
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    linked = True
                    target = os.stat(full)
                    if stat.S_ISDIR(target.st_mode) and s.follow_directory_symlinks:
                        st = target
                    elif stat.S_ISREG(target.st_mode) and s.follow_file_symlinks:
                        st = target
                    else:
                        continue  # symlinks are skipped without a word (§5.1)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                dirs.append((entry.inode(), full, st, linked))
            elif stat.S_ISREG(st.st_mode):
                files.append((entry.inode(), full, st, linked))
        files.sort(key=lambda item: (item[0], item[1]))
        dirs.sort(key=lambda item: (item[0], item[1]))
        return [(full, st, linked) for _, full, st, linked in files + dirs]

    def walk_dir(self, path: bytes, depth: int, linked: bool = False) -> None:
        s = self.settings
        for full, st, entry_linked in self.entries(path, linked):
            self.check_alive()
            is_dir = stat.S_ISDIR(st.st_mode)
            if self.excluded(full, is_dir):
                self.send(full + b": " + replies.EXCLUDED)
                continue
            if not s.cross_filesystems and st.st_dev != self.top_dev:
                self.send(full + b": " + replies.EXCLUDED_FS)
                continue
            if full.startswith(b"/proc/"):
                continue
            if is_dir:
                limit = min(s.max_directory_recursion or MAX_WALK_DEPTH, MAX_WALK_DEPTH)
                if depth >= limit:
                    log.debug("%s: MaxDirectoryRecursion reached", _loggable(full))
                    continue
                self.counts.total += 1
                self.walk_dir(full, depth + 1, entry_linked)
            else:
                self.counts.total += 1
                self.scan_file(full, entry_linked)

    def multiscan(self, path: bytes, pool: Executor, linked: bool = False) -> None:
        """Each file of the tree is its own job; lines arrive in completion order."""
        if self.settings.max_threads < 2:
            self.counts.total += 1
            self.counts.errors += 1
            self.send(path + b": " + replies.MULTISCAN_THREADS)
            return
        paths: list[tuple[bytes, bool]] = []

        def collect(d: bytes, depth: int, d_linked: bool) -> None:
            for full, st, entry_linked in self.entries(d, d_linked):
                if self.excluded(full, stat.S_ISDIR(st.st_mode)) or full.startswith(b"/proc/"):
                    continue
                if not self.settings.cross_filesystems and st.st_dev != self.top_dev:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    md = self.settings.max_directory_recursion
                    if depth < min(md or MAX_WALK_DEPTH, MAX_WALK_DEPTH):
                        collect(full, depth + 1, entry_linked)
                else:
                    paths.append((full, entry_linked))

        collect(path, 1, linked)
        futures: list[Future[None]] = [pool.submit(self._multiscan_file, *p) for p in paths]
        for fut in futures:
            fut.result()

    def _multiscan_file(self, path: bytes, linked: bool) -> None:
        with self.lock:
            self.counts.total += 1
        try:
            self.check_alive()
            self.scan_file(path, linked)
        except _Stop:
            pass

    # -------------------------------------------------------------- one file

    def scan_file(self, path: bytes, linked: bool = False) -> None:
        """Scan one file with the daemon's own permissions.

        The file was a regular file (or an allowed symlink to one) when listed; it is
        opened without following a symlink otherwise and checked again once open, so a
        name swapped for a link, FIFO or device meanwhile is never read.
        """
        s = self.settings
        counts = self.counts
        self.check_alive()
        flags = os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(path, flags if linked else flags | os.O_NOFOLLOW)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise IsADirectoryError(errno.EISDIR, "not a regular file")
        except PermissionError:
            with self.lock:
                counts.errors += 1
            self.send(path + b": " + replies.ACCESS_DENIED)
            return
        except OSError:
            with self.lock:
                counts.errors += 1
            self.send(path + b": " + replies.CANT_OPEN)
            if self.stop_early:
                raise _Stop from None
            return
        try:
            names = scan_fd(self.engine, fd, s, self.allmatch, self.workers)
            extra = detection_info(fd) if names and s.extended_detection_info else ""
        except WorkerError as exc:  # the worker died or hung: logged by the pool
            with self.lock:
                counts.errors += 1
            self.send(path + b": " + str(exc).encode() + b" ERROR")
            if self.stop_early:
                raise _Stop from None
            return
        except MemoryError:
            with self.lock:
                counts.errors += 1
            self.send(path + b": Can't allocate memory ERROR")
            raise _Stop from None
        except (OSError, ValueError) as exc:  # unreadable after opening (e.g. sysfs)
            log.info("%s: can't read: %s", _loggable(path), exc)
            with self.lock:
                counts.errors += 1
            self.send(path + b": Can't read file ERROR")
            if self.stop_early:
                raise _Stop from None
            return
        finally:
            os.close(fd)
        if names:
            with self.lock:
                counts.infected += 1
            for name in names:
                log.warning("%s: %s%s FOUND", _loggable(path), name, extra)
                if s.virus_event:
                    run_virus_event(s.virus_event, name, os.fsdecode(path))
                self.send(replies.found(path, name))
            if self.stop_early:
                raise _Stop
        elif s.log_clean:
            log.info("%s: OK", _loggable(path))


def detection_info(fd: int) -> str:
    """ExtendedDetectionInfo's ``(<md5>:<size>)`` for the log (never sent to the client)."""
    h = hashlib.md5(usedforsecurity=False)
    offset = 0
    while chunk := os.pread(fd, 1 << 24, offset):
        h.update(chunk)
        offset += len(chunk)
    return f"({h.hexdigest()}:{offset})"


def scan_fd(
    engine: Engine,
    fd: int,
    s: ServerSettings,
    allmatch: bool,
    workers: WorkerPool | None = None,
) -> list[str]:
    """Scan an open regular file, never reading past MaxFileSize (nor past its size now:
    a file that grows meanwhile is scanned as it was, one that shrinks as it is).

    With ``workers`` the descriptor goes to a worker process, which reads the file itself:
    the daemon never holds its contents.
    """
    size = os.fstat(fd).st_size
    oversized = s.limits.oversized(size)
    if oversized is not None:
        return oversized  # a file over MaxFileSize is not read at all (§10.8)
    if size == 0:
        return []
    if workers is not None:
        names = workers.scan_file(fd, size, allmatch)
        if names is not None:
            return names
    return scan_buffer_names(engine, read_fd(fd, size), allmatch)


MAX_LOG_MESSAGE = 8192  # characters of one log message; the rest is cut


def printable(text: str) -> str:
    """``text`` with every non-printable character escaped (``\\xNN``, ``\\uNNNN``).

    Control characters, ESC sequences, C1 controls, bidi overrides and undecodable bytes
    (lone surrogates from surrogateescape, shown as the original byte) never reach a log
    line as themselves, so a file name or a client byte cannot forge or hide log lines.
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape_char(ch) for ch in text)


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _loggable(path: bytes) -> str:
    """A path as text for the log: escaped (see ``printable``) and at most 512 bytes."""
    return printable(path[:512].decode("utf-8", "surrogateescape"))
