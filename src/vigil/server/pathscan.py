"""SCAN/CONTSCAN/MULTISCAN/ALLMATCHSCAN of a path on the daemon's file system (protocol §5).

Runs in the daemon's threads. Reply lines go out through ``emit`` as they are produced;
``emit`` returns False once the client is gone, which stops the walk. Each file is scanned by
a worker process when the daemon has a pool (see ``workers``), in the thread otherwise.

With N > 1 workers, a SCAN/CONTSCAN/ALLMATCHSCAN walk keeps up to N files in flight (each
opened and handed to a worker by a thread of the executor given to ``run``) so that one
client uses every worker; the outcomes are reported in walk order by the walking thread, so
replies, log lines, VirusEvent runs and counts are those of a walk done one file at a time,
and whatever was scanned past the point where the walk stops is dropped without a word.
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
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass, field
from functools import partial

from vigil.engine.scanner import Engine, ScanOptions
from vigil.protocol import replies
from vigil.server.settings import ServerSettings
from vigil.server.workers import LogBatch, WorkerError, WorkerPool, read_fd, replay_log

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
AHEAD_BACKLOG = 4  # files scanned but not reported yet, per worker, while an earlier one runs


@dataclass(slots=True)
class ScanCounts:
    """The walk's tallies for the final OK line (§5.3)."""

    total: int = 0
    errors: int = 0
    infected: int = 0


class _Stop(Exception):
    """The walk ends early: SCAN after a detection or error, or the client went away."""


@dataclass(slots=True)
class _Outcome:
    """What opening and scanning one file came to; ``PathScan.report`` turns it into lines."""

    kind: str  # scanned, denied, cant_open, worker, nomem, unreadable, skipped
    names: list[str] = field(default_factory=list)
    extra: str = ""  # ExtendedDetectionInfo for the log
    detail: str = ""  # the worker's error text, or why the file could not be read
    logs: list[LogBatch] = field(default_factory=list)  # the worker's records, not yet logged


@dataclass(slots=True)
class _Pending:
    """A file of the walk being opened and scanned ahead by the executor."""

    path: bytes
    future: Future[_Outcome]


class _Ahead:
    """A walk's files in flight and the lines queued behind them, in walk order."""

    def __init__(self, executor: Executor, workers: int) -> None:
        self.executor = executor
        self.workers = workers  # files scanned at once
        self.backlog = workers * AHEAD_BACKLOG  # files queued at most, done or not
        self.queue: deque[_Pending | Callable[[], None]] = deque()
        self.files: deque[Future[_Outcome]] = deque()  # the queue's futures, in order
        self.abandon = threading.Event()  # the walk stopped: jobs not started skip their file

    def running(self) -> list[Future[_Outcome]]:
        return [f for f in self.files if not f.done()]

    def full(self) -> bool:
        return len(self.files) >= self.backlog or len(self.running()) >= self.workers

    def discard(self) -> None:
        """Drop everything queued; return once no job of this walk runs any more (each
        closes its own descriptor, and the worker pool's lease outlives none of them)."""
        self.abandon.set()
        self.queue.clear()
        for fut in self.files:
            fut.cancel()
        wait(self.files)
        self.files.clear()


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
        self.ahead: _Ahead | None = None  # a walk scanning ahead (see run)

    # -------------------------------------------------------------- helpers

    def send(self, body: bytes) -> None:
        if not self.emit(body):
            raise _Stop

    def check_alive(self) -> None:
        """Before each file: stop a walk whose client left or whose daemon is stopping."""
        if not self.alive():
            raise _Stop

    def in_order(self, action: Callable[[], None]) -> None:
        """Run ``action`` (a line, a log record) now, or after the files still in flight
        before it when the walk scans ahead."""
        ahead = self.ahead
        if ahead is not None:
            self.report_ready(ahead, until="ready")
            if ahead.queue:
                ahead.queue.append(action)
                return
        action()

    def report_ready(self, ahead: _Ahead, until: str) -> None:
        """Report the front of the queue as far as it is done, waiting: ``until`` "empty",
        until it is; "room", while ``ahead`` has no room for one more file; "ready", never."""
        queue = ahead.queue
        while queue:
            item = queue[0]
            if not isinstance(item, _Pending):
                queue.popleft()
                item()
                continue
            if not item.future.done():
                if until == "ready" or (until == "room" and not ahead.full()):
                    return
                wait(ahead.running(), return_when=FIRST_COMPLETED)
                continue
            queue.popleft()
            ahead.files.popleft()
            if item.future.cancelled():  # the daemon is stopping: its executor shut down
                raise _Stop
            outcome = item.future.result()
            self.count_entry()  # counted in walk order: a file dropped later never is
            self.check_alive()  # as the walk one file at a time checks before each file
            if outcome.kind == "skipped":
                raise _Stop
            self.report(item.path, outcome)

    def dispatch(self, ahead: _Ahead, path: bytes, linked: bool) -> None:
        """Open and scan ``path`` on the executor once there is room; report it later."""
        self.report_ready(ahead, until="room")
        try:
            fut = ahead.executor.submit(self.fetch, path, linked, ahead.abandon)
        except RuntimeError:  # the executor was shut down: the daemon is stopping
            raise _Stop from None
        ahead.files.append(fut)
        ahead.queue.append(_Pending(path, fut))

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
                    self.walk_tree(walk_path, linked, pool)
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
            self.in_order(partial(self.dir_failure, path, exc.errno or errno.EIO))
            return
        try:
            listing = self._listing(path, dir_fd)
        finally:
            os.close(dir_fd)  # closed before descending: open descriptors stay at one a walk
        yield from listing

    def count_entry(self) -> None:
        self.counts.total += 1

    def dir_failure(self, path: bytes, code: int) -> None:
        self.counts.total += 1
        self.counts.errors += 1
        self.send(replies.path_check_failure(path, code))

    def _listing(self, path: bytes, dir_fd: int) -> list[tuple[bytes, os.stat_result, bool]]:
        try:
            with os.scandir(dir_fd) as it:
                items = list(it)
        except OSError as exc:
            self.in_order(partial(self.dir_failure, path, exc.errno or errno.EIO))
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

    def walk_tree(self, path: bytes, linked: bool, pool: Executor | None) -> None:
        """Walk a directory, scanning ahead on ``pool`` when there are several workers."""
        size = self.workers.size if self.workers is not None else 0
        if pool is None or size < 2:
            self.walk_dir(path, 1, linked)
            return
        ahead = self.ahead = _Ahead(pool, size)
        try:
            self.walk_dir(path, 1, linked)
            self.report_ready(ahead, until="empty")
        finally:
            self.ahead = None
            ahead.discard()

    def walk_dir(self, path: bytes, depth: int, linked: bool = False) -> None:
        s = self.settings
        for full, st, entry_linked in self.entries(path, linked):
            self.check_alive()
            is_dir = stat.S_ISDIR(st.st_mode)
            if self.excluded(full, is_dir):
                self.in_order(partial(self.send, full + b": " + replies.EXCLUDED))
                continue
            if not s.cross_filesystems and st.st_dev != self.top_dev:
                self.in_order(partial(self.send, full + b": " + replies.EXCLUDED_FS))
                continue
            if full.startswith(b"/proc/"):
                continue
            if is_dir:
                limit = min(s.max_directory_recursion or MAX_WALK_DEPTH, MAX_WALK_DEPTH)
                if depth >= limit:
                    self.in_order(partial(_log_recursion_limit, full))
                    continue
                self.in_order(self.count_entry)
                self.walk_dir(full, depth + 1, entry_linked)
            elif self.ahead is not None:
                self.dispatch(self.ahead, full, entry_linked)  # counted when reported
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
        """Scan one file with the daemon's own permissions and report it."""
        self.check_alive()
        self.report(path, self.fetch(path, linked))

    def fetch(self, path: bytes, linked: bool, abandon: threading.Event | None = None) -> _Outcome:
        """Open and scan one file; nothing is sent, counted or logged here (but for the
        worker pool's own errors), so a walk scanning ahead can report it in walk order.

        The file was a regular file (or an allowed symlink to one) when listed; it is
        opened without following a symlink otherwise and checked again once open, so a
        name swapped for a link, FIFO or device meanwhile is never read. ``abandon`` set:
        the walk has stopped, the file is skipped. Without it the worker's log records
        are logged as they come, otherwise kept in the outcome.
        """
        if abandon is not None and (abandon.is_set() or not self.alive()):
            return _Outcome("skipped")
        s = self.settings
        flags = os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(path, flags if linked else flags | os.O_NOFOLLOW)
        except PermissionError:
            return _Outcome("denied")
        except OSError:
            return _Outcome("cant_open")
        logs: list[LogBatch] | None = None if abandon is None else []
        try:
            try:
                regular = stat.S_ISREG(os.fstat(fd).st_mode)
            except OSError:
                regular = False
            if not regular:
                return _Outcome("cant_open")
            if abandon is not None and abandon.is_set():
                return _Outcome("skipped")
            names = scan_fd(self.engine, fd, s, self.allmatch, self.workers, logs)
            extra = detection_info(fd) if names and s.extended_detection_info else ""
            return _Outcome("scanned", names, extra, logs=logs or [])
        except WorkerError as exc:  # the worker died or hung: logged by the pool
            return _Outcome("worker", detail=str(exc), logs=logs or [])
        except MemoryError:
            return _Outcome("nomem", logs=logs or [])
        except (OSError, ValueError) as exc:  # unreadable after opening (e.g. sysfs)
            return _Outcome("unreadable", detail=str(exc), logs=logs or [])
        finally:
            os.close(fd)

    def report(self, path: bytes, outcome: _Outcome) -> None:
        """The lines, log records, counts and VirusEvent runs of one file's outcome."""
        s = self.settings
        counts = self.counts
        for batch in outcome.logs:
            replay_log(batch)
        kind = outcome.kind
        if kind == "scanned":
            names = outcome.names
            if not names:
                if s.log_clean:
                    log.info("%s: OK", _loggable(path))
                return
            with self.lock:
                counts.infected += 1
            for name in names:
                log.warning("%s: %s%s FOUND", _loggable(path), name, outcome.extra)
                if s.virus_event:
                    run_virus_event(s.virus_event, name, os.fsdecode(path))
                self.send(replies.found(path, name))
            if self.stop_early:
                raise _Stop
            return
        if kind == "unreadable":
            log.info("%s: can't read: %s", _loggable(path), outcome.detail)
        with self.lock:
            counts.errors += 1
        if kind == "denied":
            self.send(path + b": " + replies.ACCESS_DENIED)
            return  # as clamd: even SCAN goes on after a file it may not open
        if kind == "cant_open":
            self.send(path + b": " + replies.CANT_OPEN)
        elif kind == "worker":
            self.send(path + b": " + outcome.detail.encode() + b" ERROR")
        elif kind == "nomem":
            self.send(path + b": Can't allocate memory ERROR")
            raise _Stop
        else:
            self.send(path + b": Can't read file ERROR")
        if self.stop_early:
            raise _Stop


def _log_recursion_limit(path: bytes) -> None:
    log.debug("%s: MaxDirectoryRecursion reached", _loggable(path))


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
    log_sink: list[LogBatch] | None = None,
) -> list[str]:
    """Scan an open regular file, never reading past MaxFileSize (nor past its size now:
    a file that grows meanwhile is scanned as it was, one that shrinks as it is).

    With ``workers`` the descriptor goes to a worker process, which reads the file itself:
    the daemon never holds its contents; ``log_sink``: see ``WorkerPool.scan_file``.
    """
    size = os.fstat(fd).st_size
    oversized = s.limits.oversized(size)
    if oversized is not None:
        return oversized  # a file over MaxFileSize is not read at all (§10.8)
    if size == 0:
        return []
    if workers is not None:
        names = workers.scan_file(fd, size, allmatch, log_sink)
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
