"""Scan worker processes: the engine's work on every core, and a crash that costs one reply.

Most of a scan holds the GIL (file typing, unpackers, signature verification in Python), so
the daemon's threads alone keep one core busy however many clients there are. A pool runs
the scans in N worker processes instead, N = min(MaxThreads, usable CPUs): more processes
than cores only add memory, fewer than MaxThreads is fine because the threads that drive
them wait without the GIL. Each worker maps the engine's compiled-cache entry (the same
file, so the page cache holds one copy of its tables for all of them) and answers scan
requests over a Unix socket pair: a buffer up to 1 MiB is sent as bytes (cheaper than any
shared-memory set-up at that size), anything larger is an open file (INSTREAM's spool on
disk, a FILDES descriptor, a scanned path) whose descriptor is passed with SCM_RIGHTS, so
the worker reads it itself and the daemon never holds a copy.

Workers are never forks of the threaded daemon: a "zygote", a fresh single-threaded
interpreter started once per daemon (``python -c``), imports the engine's modules and forks
each worker on request, as multiprocessing's forkserver does (without its listening socket
and resource tracker). A worker thus starts in a few milliseconds plus the engine's mapping,
and shares the zygote's imported pages. Workers get the entry's descriptor rather than its
path (the cache may prune the file meanwhile) and die with the daemon: EOF on their socket
when idle, PR_SET_PDEATHSIG (on the zygote, which exits at EOF from the daemon) when busy.
The pool belongs to one engine; a reload starts a new pool and retires the old one once its
last request ends.

A worker that dies during a scan (a crash in a C decoder, the OOM killer) costs that scan an
error reply, a log line and a restart; one that runs far past MaxScanTime (stuck in C,
where the engine's own deadline cannot reach) is killed the same way. Replies are JSON, not
pickles, so even a subverted worker cannot run code in the daemon.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import pickle
import queue
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vigil.engine.limits import Limits
from vigil.engine.matcher.cache import cache_dir
from vigil.engine.memory import release_free_memory
from vigil.engine.scanner import Engine, ScanOptions

__all__ = [
    "CRASH_TEXT",
    "TIMEOUT_TEXT",
    "WorkerError",
    "WorkerPool",
    "attach_pool",
    "default_size",
    "prelaunch",
    "read_fd",
    "replay_log",
    "stop_zygote",
]

log = logging.getLogger(__name__)

CRASH_TEXT = "Unspecified error"  # cl_strerror(CL_ERROR): the scan could not complete
TIMEOUT_TEXT = "Time limit reached"  # cl_strerror(CL_ETIMEOUT), for a worker killed as hung
START_TIMEOUT = 120.0  # seconds a worker gets to import and map the engine
STOP_GRACE = 2.0  # seconds stopped workers get to exit before SIGKILL
BACKSTOP_MIN_MARGIN = 2.0  # a hung worker is killed after MaxScanTime + max(MaxScanTime, this)
MAX_REPLY = 16 << 20  # a longer reply means a broken worker
MAX_LOG_RECORDS = 200  # log records a worker forwards per scan
MAX_START_FAILURES = 3  # consecutive failed starts after which a pool stops replacing

_REQUEST = struct.Struct("<cBQ")  # kind, allmatch, payload length (or file size)
_REPLY = struct.Struct("<cI")  # status, JSON length
_SCAN_BYTES, _SCAN_FILE, _HELLO = b"B", b"F", b"H"
_OK, _NOMEM, _UNREADABLE, _FAILED, _READY = b"K", b"M", b"R", b"X", b"Y"
_PR_SET_PDEATHSIG = 1
_ZYGOTE_REQUEST = struct.Struct("<cqd")  # fork / wait, pid, seconds to wait
_ZYGOTE_REPLY = struct.Struct("<q")  # a pid, or an exit status as Popen.returncode gives it
_FORK, _WAIT = b"F", b"W"
_ALIVE = 1 << 40  # the process has not ended within the wait
_GONE = 1 << 41  # not a child of the zygote (already reaped, or of a zygote that died)

# the worker's interpreter gets the daemon's sys.path, never its working directory
_BOOT = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from vigil.server.workers import zygote_main; sys.exit(zygote_main(sys.argv[2:]))"
)


LogBatch = dict[str, Any]  # a worker's reply, whose "log" holds the scan's records


class WorkerError(Exception):
    """A scan the workers could not complete; ``str(exc)`` is the client's error text."""


def default_size(max_threads: int) -> int:
    """Workers for a pool: min(MaxThreads, CPUs this process may run on), at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(max_threads, cpus))


def read_fd(fd: int, size: int) -> bytes:
    """Up to ``size`` bytes of an open file from offset 0 (fewer if it shrank meanwhile).

    Files are read, not mapped: a client that truncates a mapped file under the scan would
    kill the reader with SIGBUS.
    """
    chunks = []
    got = 0
    while got < size:
        chunk = os.pread(fd, min(size - got, 1 << 24), got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            raise EOFError("peer closed")
        got += k
    return bytes(buf)


def _send_head(sock: socket.socket, head: bytes, fd: int | None) -> None:
    if fd is None:
        sock.sendall(head)
        return
    sent = socket.send_fds(sock, [head], [fd])
    if sent < len(head):
        sock.sendall(head[sent:])


# ---------------------------------------------------------------------------- daemon side


class _Zygote:
    """The daemon's end of the zygote: forks workers, reaps them, reports how they ended.

    The zygote reaps a worker only when asked, so a worker's pid cannot be reused before
    the pool has seen it end: signalling it by pid is safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._stopped = False  # after stop(), until a new pool starts: no new zygote

    def allow(self) -> None:
        """A pool is starting: the zygote may be (re)started."""
        self._stopped = False

    def _channel(self) -> socket.socket:
        """The running zygote's socket, starting one if needed (lock held)."""
        if self._sock is not None and self._proc is not None and self._proc.poll() is None:
            return self._sock
        self._discard()
        if self._stopped:
            raise OSError("the worker zygote was stopped")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, json.dumps(sys.path), str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,  # workers report through their sockets only
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.settimeout(START_TIMEOUT)
        self._sock = ours
        return ours

    def _discard(self) -> None:
        if self._sock is not None:
            self._sock.close()  # EOF: the zygote exits (and its workers with it)
            self._sock = None
        if self._proc is not None:
            try:
                self._proc.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def _ask(self, head: bytes, fd: int | None) -> int:
        with self._lock:
            sock = self._channel()
            try:
                _send_head(sock, head, fd)
                (value,) = _ZYGOTE_REPLY.unpack(_recv_exact(sock, _ZYGOTE_REPLY.size))
            except (OSError, EOFError):
                self._discard()
                raise OSError("the worker zygote stopped answering") from None
            return int(value)

    def fork(self, worker_end: socket.socket) -> int:
        """A new worker serving ``worker_end``; its pid (OSError if none could be made)."""
        pid = self._ask(_ZYGOTE_REQUEST.pack(_FORK, 0, 0.0), worker_end.fileno())
        if pid <= 0:
            raise OSError(f"fork failed (errno {-pid})")
        return pid

    def wait(self, pid: int, timeout: float) -> int:
        """How worker ``pid`` ended (waiting up to ``timeout`` s); _ALIVE or _GONE else."""
        try:
            return self._ask(_ZYGOTE_REQUEST.pack(_WAIT, pid, timeout), None)
        except OSError:
            return _GONE  # the zygote is gone, so are its workers (PR_SET_PDEATHSIG)

    def stop(self) -> None:
        """Kill the zygote (its workers die with it) and reap it."""
        self._stopped = True
        proc = self._proc
        if proc is not None:  # first, without the lock: a fork in progress then fails at once
            with contextlib.suppress(OSError):
                proc.kill()
        with self._lock:
            self._discard()


_ZYGOTE = _Zygote()


def stop_zygote() -> None:
    """Stop the zygote (call after closing every pool; the next pool starts a new one)."""
    _ZYGOTE.stop()


class _Worker:
    __slots__ = ("pid", "sock", "busy", "status")

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self.sock = sock
        self.busy = False
        self.status: int | None = None  # how it ended, once reaped

    def kill(self) -> None:
        if self.status is None:  # not reaped yet: the pid is still ours
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)

    def reap(self, timeout: float) -> int:
        """Wait for the end (SIGKILL after ``timeout``); the exit status."""
        if self.status is None:
            status = _ZYGOTE.wait(self.pid, timeout)
            if status == _ALIVE:
                self.kill()
                status = _ZYGOTE.wait(self.pid, START_TIMEOUT)
            self.status = status
        return self.status

    def death(self, otherwise: str) -> str:
        """How the worker ended, for the log ('was killed by SIGSEGV', 'exited with 1')."""
        if self.status is None:
            status = _ZYGOTE.wait(self.pid, 0.5)
            if status == _ALIVE:
                return otherwise or "stopped answering"
            self.status = status
        code = self.status
        if code == _GONE:
            return "ended"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"was killed by {name}"
        return f"exited with status {code}"


class WorkerPool:
    """N worker processes serving scans with one engine's compiled-cache entry.

    ``scan_bytes``/``scan_file`` return the detection names, or None when the pool cannot
    serve (closed, or no worker could be started): the caller then scans in its own thread.
    They raise MemoryError/OSError as the engine would, and WorkerError for a scan lost
    with its worker.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.engine: Engine | None = None  # set by attach
        self.backstop: float | None = None  # seconds a scan may take before its worker dies
        self._entry_fd = -1
        self._attached = threading.Event()  # set by attach, or by close to wake the keeper
        self._limits_blob = b""
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._workers: dict[int, _Worker] = {}  # every live worker, by pid
        self._starting = 0  # workers asked for and not ready yet
        self._total = 0  # workers starting or serving
        self._waiting = 0  # requests waiting for an idle worker
        self._failures = 0  # consecutive failed starts
        self._leases = 0
        self._retired = False
        self._closed = False
        self._close_lock = threading.Lock()
        self._finished = False
        self._requests: queue.Queue[int | None] = queue.Queue()
        self._keeper: threading.Thread | None = None
        self._log_level = logging.getLogger("vigil").getEffectiveLevel()

    # -------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Launch the workers (and the zygote, if not running yet: importing the engine's
        modules is the slow part) while the daemon loads the engine; they map the engine
        once ``attach`` names it. A keeper thread does the starting, in the background."""
        _ZYGOTE.allow()
        self._keeper = threading.Thread(target=self._keep, name="scan-workers", daemon=True)
        self._keeper.start()
        with self._cond:
            for _ in range(self.size):
                self._request_start()

    def attach(self, engine: Engine) -> None:
        """Serve ``engine``; ValueError if it has no cache entry, OSError if that is gone."""
        if engine.source is None:
            raise ValueError("the engine was not read from the compiled cache")
        self._entry_fd = os.open(engine.source, os.O_RDONLY | os.O_CLOEXEC)
        st = os.fstat(self._entry_fd)
        # the daemon mapped this very file (it checked it, or its builder had just written
        # it): the workers need not check it again; a file put at that path since is
        # checked like any other
        same = (st.st_dev, st.st_ino) == engine.source_id
        limit_ms = engine.limits.max_scantime
        if limit_ms:
            self.backstop = limit_ms / 1000 + max(limit_ms / 1000, BACKSTOP_MIN_MARGIN)
        self._limits_blob = pickle.dumps((engine.limits, same), pickle.HIGHEST_PROTOCOL)
        self.engine = engine
        self._attached.set()

    def _request_start(self) -> None:
        """Ask the keeper for one more worker (called with the lock held)."""
        self._starting += 1
        self._total += 1
        self._requests.put(1)

    def wait_ready(self, timeout: float) -> bool:
        """Wait until no worker is starting; True if at least one serves."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._starting and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return bool(self._workers) and not self._closed

    @property
    def finished(self) -> bool:
        """True once ``close`` has stopped every worker."""
        return self._finished

    def hold(self) -> bool:
        """Take a lease for one request; False once the pool is retired or closed."""
        with self._cond:
            if self._retired or self._closed:
                return False
            self._leases += 1
            return True

    def release(self) -> None:
        with self._cond:
            self._leases -= 1
            done = self._retired and self._leases == 0
        if done:
            self._close_in_background()

    def retire(self) -> None:
        """No new requests; the workers stop once the requests in flight have ended."""
        with self._cond:
            self._retired = True
            done = self._leases == 0
        if done:
            self._close_in_background()

    def close_later(self, then: Callable[[], None] | None = None) -> None:
        """``close`` (then ``then``) on a thread of its own: it waits for the workers."""
        self._close_in_background(then)

    def _close_in_background(self, then: Callable[[], None] | None = None) -> None:
        def run() -> None:
            self.close()
            if then is not None:
                then()

        threading.Thread(target=run, name="scan-workers-stop", daemon=True).start()

    def close(self) -> None:
        """Stop every worker now (SIGKILL after STOP_GRACE) and reap it; idempotent."""
        with self._close_lock:
            if self._finished:
                return
            with self._cond:
                self._closed = True
                workers = list(self._workers.values())
                self._cond.notify_all()
            self._attached.set()  # a keeper waiting for the engine gives up
            for w in workers:
                if w.busy:
                    w.kill()
                else:
                    with contextlib.suppress(OSError):
                        w.sock.shutdown(socket.SHUT_RDWR)  # EOF: an idle worker exits
            # the keeper is not waited for: it may be waiting for a fork from a zygote that
            # still imports; whatever it starts now it stops again (it sees the pool closed)
            self._requests.put(None)
            deadline = time.monotonic() + STOP_GRACE
            with self._cond:
                workers = list(self._workers.values())
                self._workers.clear()
                self._idle.clear()
            for w in workers:
                w.reap(max(0.0, deadline - time.monotonic()))
                w.sock.close()
            if self._entry_fd >= 0:
                os.close(self._entry_fd)
                self._entry_fd = -1
            self.engine = None  # the old engine (and its map) can go once its scans end
            self._finished = True

    # -------------------------------------------------------------- starting workers

    def _keep(self) -> None:
        """The keeper thread: starts the workers asked for, until the pool closes."""
        while True:
            count = self._requests.get()
            if count is None:
                return
            with contextlib.suppress(queue.Empty):
                while True:  # launch everything asked for so far together
                    more = self._requests.get_nowait()
                    if more is None:
                        return
                    count += more
            if self._closed:
                continue
            started: list[tuple[_Worker | None, str]] = []
            for _ in range(count):
                if self._closed:
                    started.append((None, "stopped"))
                    continue
                try:
                    started.append((self._launch(), ""))
                except OSError as exc:
                    started.append((None, f"cannot start: {exc}"))
            for w, error in started:
                if w is not None:
                    error = self._handshake(w)
                self._started(w, error)

    def _launch(self) -> _Worker:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            pid = _ZYGOTE.fork(theirs)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        w = _Worker(pid, ours)
        with self._cond:
            self._workers[w.pid] = w  # so that close() can stop it while it starts
            w.busy = True
        return w

    def _handshake(self, w: _Worker) -> str:
        """Hand the worker the entry and the limits; '' once it is ready, else why not."""
        self._attached.wait()
        if self._closed:
            return "stopped"
        try:
            w.sock.settimeout(START_TIMEOUT)
            head = _REQUEST.pack(_HELLO, 0, len(self._limits_blob))
            _send_head(w.sock, head, self._entry_fd)
            w.sock.sendall(self._limits_blob + struct.pack("<i", self._log_level))
            status, body = _read_reply(w.sock)
        except (OSError, EOFError, ValueError) as exc:
            return w.death(f"did not start ({type(exc).__name__}: {exc})")
        if status != _READY:
            error = body.get("error") if isinstance(body, dict) else None
            return f"could not map the engine: {error}"
        w.sock.settimeout(None)
        return ""

    def _started(self, w: _Worker | None, error: str) -> None:
        if error and not self._closed:  # workers stopped while starting are no news
            log.error("scan worker %s", f"{w.pid} {error}" if w is not None else error)
        with self._cond:
            self._starting -= 1
            keep = w is not None and not error and not self._closed
            if w is not None and keep:
                w.busy = False
                self._idle.append(w)
                self._failures = 0
            elif w is not None:
                self._workers.pop(w.pid, None)
            if not keep:
                self._total -= 1
            if error:
                self._failures += 1
            if not self._workers and not self._starting and not self._closed:
                log.error("no scan worker could be started; scanning in the daemon's threads")
            self._cond.notify_all()
        if w is not None and not keep:
            w.kill()
            w.reap(STOP_GRACE)
            w.sock.close()

    def _lost(self, w: _Worker) -> None:
        """``w`` is gone: forget it and start a replacement (unless starts keep failing).

        Idle workers that died with it (the OOM killer often takes several) are found now
        rather than by the next requests: an idle worker's socket is readable only at EOF.
        """
        w.sock.close()
        w.reap(STOP_GRACE)
        with self._cond:
            self._workers.pop(w.pid, None)
            self._total -= 1
            if not self._closed and self._failures < MAX_START_FAILURES:
                self._request_start()
            dead = [i for i in self._idle if _readable(i.sock)]
            for i in dead:
                self._idle.remove(i)
                i.busy = True
            self._cond.notify_all()
        for i in dead:
            log.error("scan worker %d %s while idle; replacing it", i.pid, i.death(""))
            self._lost(i)

    # -------------------------------------------------------------- scanning

    def scan_bytes(self, data: bytes, allmatch: bool) -> list[str] | None:
        return self._scan(_SCAN_BYTES, allmatch, data, None, len(data))

    def scan_file(
        self, fd: int, size: int, allmatch: bool, log_sink: list[LogBatch] | None = None
    ) -> list[str] | None:
        """Scan the first ``size`` bytes of an open regular file; the worker reads them.

        With ``log_sink`` the worker's log records are appended there, for the caller to
        pass to ``replay_log`` in its own order (a walk scanning ahead logs in walk order).
        """
        return self._scan(_SCAN_FILE, allmatch, b"", fd, size, log_sink)

    def _acquire(self) -> _Worker | None:
        """An idle worker; None if there is none and none is starting (scan in the thread).

        WorkerError once the pool is closed: that is the daemon stopping, and a request
        still waiting gets an error rather than a scan that would delay the exit.
        """
        with self._cond:
            while True:
                if self._closed:
                    raise WorkerError(CRASH_TEXT)
                if self._idle:
                    w = self._idle.pop()
                    w.busy = True
                    return w  # if it died idle, the send fails and _scan tries another
                if (
                    self._starting < self._waiting + 1
                    and self._total < self.size
                    and self._failures < MAX_START_FAILURES
                ):
                    self._request_start()  # a worker lost earlier: start it again
                if not self._workers and not self._starting:
                    return None
                self._waiting += 1
                try:
                    self._cond.wait()
                finally:
                    self._waiting -= 1

    def _give_back(self, w: _Worker) -> None:
        with self._cond:
            w.busy = False
            if self._closed:
                return
            self._idle.append(w)
            self._cond.notify()

    def _scan(
        self,
        kind: bytes,
        allmatch: bool,
        payload: bytes,
        fd: int | None,
        size: int,
        log_sink: list[LogBatch] | None = None,
    ) -> list[str] | None:
        for _ in range(2):  # a worker found dead before it got the request: try another
            w = self._acquire()
            if w is None:
                return None
            try:
                _send_head(w.sock, _REQUEST.pack(kind, int(allmatch), size), fd)
                if payload:
                    w.sock.sendall(payload)
            except OSError:
                log.error("scan worker %d %s; replacing it", w.pid, w.death(""))
                self._lost(w)
                continue
            return self._answer(w, log_sink)
        raise WorkerError(CRASH_TEXT)

    def _answer(self, w: _Worker, log_sink: list[LogBatch] | None = None) -> list[str]:
        started = time.monotonic()
        try:
            w.sock.settimeout(self.backstop)
            status, body = _read_reply(w.sock)
            w.sock.settimeout(None)
        except TimeoutError:
            w.kill()
            log.error(
                "scan worker %d still busy %.0f s after the scan began (MaxScanTime %d ms): "
                "killed; replacing it",
                w.pid,
                time.monotonic() - started,
                self.engine.limits.max_scantime if self.engine is not None else 0,
            )
            self._lost(w)
            raise WorkerError(TIMEOUT_TEXT) from None
        except (OSError, EOFError, ValueError) as exc:
            if self._closed:
                self._lost(w)
                raise WorkerError(CRASH_TEXT) from None
            why = w.death(f"broke its reply ({exc})")
            log.error("scan worker %d %s during a scan; replacing it", w.pid, why)
            w.kill()  # no-op once it has ended
            self._lost(w)
            raise WorkerError(CRASH_TEXT) from None
        self._give_back(w)
        if log_sink is None:
            replay_log(body)
        else:
            log_sink.append(body)
        if status == _OK:
            names = body.get("names")
            if isinstance(names, list) and all(isinstance(n, str) for n in names):
                return names
            log.error("scan worker %d: malformed reply", w.pid)
            raise WorkerError(CRASH_TEXT)
        text = str(body.get("error", ""))
        if status == _NOMEM:
            raise MemoryError(text)
        if status == _UNREADABLE:
            raise OSError(text)
        log.error("scan worker %d: internal error: %s", w.pid, text)
        raise WorkerError(CRASH_TEXT)


def _readable(sock: socket.socket) -> bool:
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def _read_reply(sock: socket.socket) -> tuple[bytes, dict[str, Any]]:
    status, length = _REPLY.unpack(_recv_exact(sock, _REPLY.size))
    if length > MAX_REPLY:
        raise ValueError("reply too long")
    body = json.loads(_recv_exact(sock, length)) if length else {}
    if not isinstance(body, dict):
        raise ValueError("reply is not an object")
    return status, body


def replay_log(body: LogBatch) -> None:
    """Log the worker's records through the daemon's handlers (they escape and bound)."""
    records = body.get("log")
    if not isinstance(records, list):
        return
    for rec in records[:MAX_LOG_RECORDS]:
        if (
            isinstance(rec, list)
            and len(rec) == 3
            and isinstance(rec[0], int)
            and isinstance(rec[1], str)
            and isinstance(rec[2], str)
        ):
            logging.getLogger(rec[1]).log(rec[0], "%s", rec[2])


def prelaunch(max_threads: int) -> WorkerPool | None:
    """A pool whose first worker starts now, before the engine it will serve is loaded;
    None when no engine can come from the compiled cache (VIGIL_CACHE_DIR empty)."""
    if cache_dir() is None:
        return None
    pool = WorkerPool(default_size(max_threads))
    pool.start()
    return pool


def attach_pool(
    pool: WorkerPool | None, engine: Engine, max_threads: int, *, only: bool = False
) -> WorkerPool | None:
    """``pool`` (a new one if None) serving ``engine``; None, logged, when scans must run in
    the daemon's threads (the engine was built in memory, or its entry is gone). ``only``:
    no other pool lives, so the zygote can go too."""
    if engine.source is None:
        log.info("engine not read from the compiled cache: scanning in the daemon's threads")
        if pool is not None:
            pool.close_later(stop_zygote if only else None)
        return None
    if pool is None:
        pool = WorkerPool(default_size(max_threads))
        pool.start()
    try:
        pool.attach(engine)
    except (OSError, ValueError) as exc:
        log.error("scan workers not started (%s); scanning in the daemon's threads", exc)
        pool.close_later(stop_zygote if only else None)
        return None
    return pool


# ---------------------------------------------------------------------------- worker side


class _Capture(logging.Handler):
    """Keeps a scan's log records for the reply; the daemon logs them."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[list[Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) < MAX_LOG_RECORDS:
            with contextlib.suppress(Exception):
                self.records.append([record.levelno, record.name, record.getMessage()[:8192]])


def _die_with_parent(parent: int) -> None:
    """SIGKILL this worker when its parent (the zygote, which leaves at the daemon's exit)
    goes, even while the worker is stuck in C code."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)


def zygote_main(argv: Sequence[str]) -> int:
    """Entry point of the zygote: ``<socket fd>``; forks a worker per request."""
    try:
        for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGUSR2, signal.SIGPIPE):
            signal.signal(signum, signal.SIG_IGN)  # the daemon handles these and stops us
        import vigil.engine.compiled  # noqa: F401 - imported once here, shared by every fork

        ctl = socket.socket(fileno=int(argv[0]))
        ctl.settimeout(None)
        while True:
            head, fds, _, _ = socket.recv_fds(ctl, _ZYGOTE_REQUEST.size, 1)
            if not head:
                return 0  # the daemon has gone: so do we, and PDEATHSIG takes the workers
            if len(head) < _ZYGOTE_REQUEST.size:
                head += _recv_exact(ctl, _ZYGOTE_REQUEST.size - len(head))
            kind, pid, timeout = _ZYGOTE_REQUEST.unpack(head)
            if kind == _FORK and fds:
                value = _fork_worker(ctl, fds[0])
            else:
                value = _wait_child(pid, timeout)
            for fd in fds:
                os.close(fd)
            ctl.sendall(_ZYGOTE_REPLY.pack(value))
    except BaseException:  # noqa: BLE001 - never a traceback: the daemon sees us gone
        os._exit(1)


def _fork_worker(ctl: socket.socket, fd: int) -> int:
    zygote = os.getpid()
    try:
        pid = os.fork()
    except OSError as exc:
        return -(exc.errno or 1)
    if pid:
        return pid
    code = 1
    try:  # the worker: never returns into the zygote's loop
        ctl.close()
        _die_with_parent(zygote)
        code = _serve(socket.socket(fileno=fd))
    finally:
        os._exit(code)


def _wait_child(pid: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return _GONE
        if done:
            return int(os.waitstatus_to_exitcode(status))
        if time.monotonic() >= deadline:
            return _ALIVE
        time.sleep(0.005)


def _reply(sock: socket.socket, status: bytes, body: dict[str, Any]) -> None:
    blob = json.dumps(body).encode()
    sock.sendall(_REPLY.pack(status, len(blob)) + blob)


TRIM_AFTER = 32 << 20  # a worker returns freed heap memory after scanning this much


def _serve(sock: socket.socket) -> int:
    engine: Engine | None = None
    scanned = 0  # bytes scanned since freed memory was last returned
    capture = _Capture()
    root = logging.getLogger()
    root.handlers[:] = [capture]
    while True:
        try:
            head, fds, _, _ = socket.recv_fds(sock, _REQUEST.size, 1)
        except OSError:
            return 0
        if not head:
            return 0  # the daemon closed our socket: stop
        if len(head) < _REQUEST.size:
            head += _recv_exact(sock, _REQUEST.size - len(head))
        kind, allmatch, size = _REQUEST.unpack(head)
        fd = fds[0] if fds else None
        for extra in fds[1:]:
            os.close(extra)
        capture.records = []
        if kind == _HELLO:
            blob = _recv_exact(sock, size + 4)
            limits: Limits
            checked: bool
            limits, checked = pickle.loads(blob[:size])  # from the daemon, which we trust
            root.setLevel(struct.unpack("<i", blob[size:])[0])
            try:
                if fd is None:
                    raise OSError("no engine descriptor")
                from vigil.engine.compiled import read_engine

                # unchecked only if it is the very file the daemon mapped (see attach)
                engine = read_engine(Path(f"/proc/self/fd/{fd}"), limits, check=not checked)
            except Exception as exc:  # noqa: BLE001 - reported to the daemon, which logs it
                _reply(sock, _FAILED, {"error": f"{type(exc).__name__}: {exc}"})
                return 1
            finally:
                if fd is not None:
                    os.close(fd)
            _reply(sock, _READY, {"pid": os.getpid()})
            continue
        if engine is None:
            return 1
        status, body = _scan_one(engine, sock, kind, bool(allmatch), size, fd)
        body["log"] = capture.records
        _reply(sock, status, body)
        scanned += size
        if scanned >= TRIM_AFTER:
            # unpacked members and buffers leave freed heap that glibc keeps resident;
            # handing it back after the reply costs the client nothing
            scanned = 0
            release_free_memory()


def _scan_one(
    engine: Engine, sock: socket.socket, kind: bytes, allmatch: bool, size: int, fd: int | None
) -> tuple[bytes, dict[str, Any]]:
    try:
        if kind == _SCAN_BYTES:
            data = _recv_exact(sock, size)
        elif fd is not None:
            try:
                data = read_fd(fd, size)
            except (OSError, ValueError) as exc:
                return _UNREADABLE, {"error": str(exc)}
        else:
            return _FAILED, {"error": "no descriptor with a file request"}
        names = engine.scan(data, ScanOptions(allmatch=allmatch)).names
        return _OK, {"names": names}
    except MemoryError:
        return _NOMEM, {"error": "Can't allocate memory"}
    except Exception as exc:  # noqa: BLE001 - in a thread this would be the daemon's error
        return _FAILED, {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        if fd is not None:
            os.close(fd)
