"""The daemon: listening sockets, the worker pool, engine reloads and shutdown (§10).

Requests run on a thread pool sized by MaxThreads. When the engine was read from the
compiled cache, each thread hands its scans to a pool of worker processes that map the same
entry (``workers``): most of a scan holds the GIL, so only processes keep every core busy,
and a crash in a decoder then costs one reply instead of the daemon. Without a cache entry
the threads scan themselves. A reload builds the new engine on its own thread while scans
go on with the old one, starts the new engine's workers, then swaps a single reference; the
old workers stop once their requests end. A failed reload keeps the old engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import grp
import logging
import os
import pwd
import signal
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from vigil import __version__
from vigil.engine.memory import release_free_memory
from vigil.engine.scanner import Engine
from vigil.errors import VigilError
from vigil.protocol.framing import LISTED_COMMANDS
from vigil.server.connection import Connection
from vigil.server.pathscan import (
    PathScan,
    compile_excludes,
    run_virus_event,
    scan_buffer_names,
    scan_fd,
)
from vigil.server.session import SPOOL_IN_MEMORY, ClientSession
from vigil.server.settings import ServerSettings
from vigil.server.workers import (
    START_TIMEOUT,
    WorkerError,
    WorkerPool,
    attach_pool,
    prelaunch,
    stop_zygote,
)

__all__ = ["Daemon", "StartupError", "CLAMAV_COMPAT_VERSION", "version_text"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# The ClamAV release whose behaviour Vigil reproduces; VERSION replies start with it so that
# clients which parse "ClamAV x.y.z" keep working, and name Vigil after a dash.
CLAMAV_COMPAT_VERSION = "1.4.6"
SHUTDOWN_GRACE = 5.0  # seconds running scans get to finish on shutdown


class StartupError(Exception):
    """A fatal start-up problem (bad socket, nothing to listen on); message is for the log."""


@dataclass(slots=True)
class _Job:
    task: str
    started: float
    file: str


class Daemon:
    """Serves the clamd protocol on the configured sockets until shut down."""

    def __init__(
        self,
        settings: ServerSettings,
        load_engine: Callable[[], Engine],
        *,
        engine: Engine | None = None,
        reopen_log: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.load_engine = load_engine
        self.engine: Engine | None = engine
        # the engine and its worker processes, swapped together (None: scans in threads)
        self._serving: tuple[Engine, WorkerPool | None] | None = None
        self._old_pools: list[WorkerPool] = []  # retired, stopping once their requests end
        self.reopen_log = reopen_log
        self.excludes = compile_excludes(settings.exclude_path)
        self.pool = ThreadPoolExecutor(
            max_workers=max(1, settings.max_threads), thread_name_prefix="scan"
        )
        # MULTISCAN's file jobs get their own pool so a controlling job never waits on itself
        self.bulk = ThreadPoolExecutor(
            max_workers=max(1, settings.max_threads), thread_name_prefix="bulk"
        )
        self.jobs: dict[int, _Job] = {}
        self._job_ids = 0
        self._jobs_lock = threading.Lock()
        self.queue: asyncio.Semaphore | None = None
        self.listeners: list[socket.socket] = []
        self.unix_path: str | None = None
        self.clients: set[asyncio.Task[None]] = set()
        self._stop: asyncio.Event | None = None
        self._reload_event: asyncio.Event | None = None
        self.stopping = False  # path walks and sessions check this to end early
        self.pending: set[ClientSession] = set()  # connections without a first command yet
        self._room: asyncio.Event | None = None  # set while pending < MaxQueue
        # VirusEvent commands run here, never on the pool that loads databases
        self.events = ThreadPoolExecutor(max_workers=2, thread_name_prefix="event")
        self._reloading = False
        self._db_snapshot: dict[str, float] = {}

    # ------------------------------------------------------------------ sockets

    def bind(self) -> None:
        """Create the listening sockets (or adopt systemd's); raises StartupError."""
        inherited = _systemd_sockets()
        if inherited:
            self.listeners = inherited
            return
        s = self.settings
        if s.local_socket:
            self.listeners.append(self._bind_unix(s.local_socket))
        if s.tcp_socket is not None:
            self.listeners.extend(self._bind_tcp(s.tcp_socket, s.tcp_addr))
        if not self.listeners:
            raise StartupError("Please define server type (local and/or TCP).")

    def _bind_unix(self, path: str) -> socket.socket:
        s = self.settings
        owner = _socket_owner(s)  # looked up before anything is created
        group = _group_id(s.local_socket_group) if s.local_socket_group else -1
        parent = os.path.dirname(path)
        if parent and not os.path.isdir(parent):
            dir_mode = s.local_socket_mode or 0o777
            dir_mode |= (dir_mode & 0o444) >> 2  # whoever may read it may also enter it
            old = os.umask(0o011)
            try:
                os.makedirs(parent, mode=dir_mode, exist_ok=True)
            finally:
                os.umask(old)
            if owner is not None:  # User must be able to remove its socket at exit
                with contextlib.suppress(OSError):
                    os.chown(parent, owner[0], owner[1])
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # created with no permissions at all, then opened up by chmod once it is ours
        old = os.umask(0o777)
        try:
            self._bind_or_fix_stale(sock, path)
        finally:
            os.umask(old)
        self.unix_path = path
        try:
            if owner is not None:
                os.chown(path, owner[0], owner[1])
            elif group != -1:
                os.chown(path, -1, group)
        except OSError as exc:
            sock.close()
            raise StartupError(
                f"Failed to change the ownership of socket {path}: {exc.strerror or exc}"
            ) from None
        mode = (s.local_socket_mode if s.local_socket_mode is not None else 0o666) & 0o666
        os.chmod(path, mode)
        sock.listen(s.max_connection_queue_length)
        log.info("Listening on Unix socket %s (mode %03o)", path, mode)
        return sock

    def _bind_or_fix_stale(self, sock: socket.socket, path: str) -> None:
        """bind(); a socket file nobody listens on is removed first when FixStaleSocket."""
        try:
            sock.bind(path)
            return
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                sock.close()
                raise StartupError(f"Can't bind to {path}: {exc.strerror or exc}") from None
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
            probe.close()
            sock.close()
            raise StartupError(f"Socket file {path} is in use by another process.")
        except OSError:
            probe.close()
        if not self.settings.fix_stale_socket:
            sock.close()
            raise StartupError(
                f"Socket file {path} exists. Either remove it, or configure FixStaleSocket."
            )
        log.info("Removing stale socket file %s", path)
        try:
            os.unlink(path)
            sock.bind(path)
        except OSError as exc:
            sock.close()
            raise StartupError(
                f"Socket file {path} could not be bound: {exc.strerror or exc} (unlink tried)"
            ) from None

    def _bind_tcp(self, port: int, addrs: tuple[str, ...]) -> list[socket.socket]:
        s = self.settings
        if not addrs:
            # Vigil binds loopback unless told otherwise (clamd would bind every address)
            addrs = ("127.0.0.1",)
            log.info("TCPAddr not set: listening on loopback only")
        out = []
        for addr in addrs:
            host = None if addr == "all" else addr
            try:
                infos = socket.getaddrinfo(
                    host,
                    port,
                    type=socket.SOCK_STREAM,
                    flags=socket.AI_PASSIVE | socket.AI_ADDRCONFIG,
                )
            except socket.gaierror as exc:
                log.error("TCPAddr %s: %s", addr, exc)
                continue
            for family, kind, proto, _, sockaddr in infos:
                sock = socket.socket(family, kind, proto)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    sock.bind(sockaddr)
                    sock.listen(s.max_connection_queue_length)
                except OSError as exc:
                    log.error("Can't bind to %s port %d: %s", sockaddr[0], port, exc.strerror)
                    sock.close()
                    continue
                log.info("Listening on TCP %s port %d", sockaddr[0], port)
                out.append(sock)
        if not out:
            raise StartupError("Not listening on any interfaces")
        return out

    # ------------------------------------------------------------------ main loop

    async def serve(self) -> None:
        """Accept clients until SHUTDOWN or a signal; then clean up."""
        loop = asyncio.get_running_loop()
        self.queue = asyncio.Semaphore(max(self.settings.max_queue, self.settings.max_threads))
        self._stop = asyncio.Event()
        self._reload_event = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        threads = self.settings.max_threads
        pool = prelaunch(threads)  # its first worker starts while the engine loads
        if self.engine is None:
            snapshot = self._snapshot()
            try:
                self.engine = await loop.run_in_executor(None, self.load_engine)
            except BaseException:
                if pool is not None:  # the daemon is about to exit: stop them now
                    pool.close()
                    stop_zygote()
                raise
            self._db_snapshot = snapshot
        elif not self._db_snapshot:
            self._db_snapshot = self._snapshot()
        self._serving = (self.engine, attach_pool(pool, self.engine, threads, only=True))
        for signum, handler in (
            (signal.SIGTERM, self.request_shutdown),
            (signal.SIGINT, self.request_shutdown),
            (signal.SIGUSR2, self.request_reload),
            (signal.SIGHUP, self._on_hup),
        ):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, handler)
        acceptors = [asyncio.create_task(self._accept(ls)) for ls in self.listeners]
        reloader = asyncio.create_task(self._reload_loop())
        checker = asyncio.create_task(self._self_check_loop())
        try:
            await self._stop.wait()
        finally:
            for t in (*acceptors, reloader, checker):
                t.cancel()
            for ls in self.listeners:
                ls.close()
            if self.clients:
                _, pending = await asyncio.wait(self.clients, timeout=SHUTDOWN_GRACE)
                for t in pending:
                    t.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.bulk.shutdown(wait=False, cancel_futures=True)
            self.events.shutdown(wait=False, cancel_futures=True)
            self.stop_workers()
            self.remove_socket()
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2, signal.SIGHUP):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(signum)

    def stop_workers(self) -> None:
        """Stop every worker process (scans still running in one get an error reply)."""
        serving, self._serving = self._serving, None
        pools = self._old_pools + ([serving[1]] if serving and serving[1] else [])
        self._old_pools = []
        for pool in pools:
            pool.close()
        stop_zygote()

    def remove_socket(self) -> None:
        """Remove our Unix socket file (owned by User, so possible after dropping root)."""
        path, self.unix_path = self.unix_path, None
        if path is None:
            return
        try:
            os.unlink(path)
            log.info("Socket file %s removed", path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.error("Can't unlink the socket file %s: %s", path, exc.strerror or exc)

    async def _accept(self, lsock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        lsock.setblocking(False)
        unix = lsock.family == socket.AF_UNIX
        room = self._room
        assert room is not None
        while True:
            # like clamd, stop accepting while MaxQueue connections wait for a first
            # command; further clients wait in the kernel's backlog
            await room.wait()
            try:
                sock, _ = await loop.sock_accept(lsock)
            except OSError as exc:
                if lsock.fileno() < 0:
                    return
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    log.error("out of file descriptors; pausing accept")
                else:
                    log.warning("accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            conn = Connection(sock, unix=unix, send_timeout=self.settings.send_buf_timeout / 1000)
            session = ClientSession(self, conn)
            self.pending.add(session)
            if len(self.pending) >= max(1, self.settings.max_queue):
                room.clear()
            task = asyncio.create_task(session.run())
            self.clients.add(task)
            task.add_done_callback(self.clients.discard)

    def session_started(self, session: ClientSession) -> None:
        """A connection has sent its first command: it no longer counts as pending."""
        self.pending.discard(session)
        if self._room is not None and len(self.pending) < max(1, self.settings.max_queue):
            self._room.set()

    def session_done(self, session: ClientSession) -> None:
        self.session_started(session)

    def request_shutdown(self) -> None:
        log.info("Shutting down")
        self.stopping = True
        if self._stop is not None:
            self._stop.set()

    def request_reload(self) -> None:
        if self._reload_event is not None:
            self._reload_event.set()

    def _on_hup(self) -> None:
        if self.reopen_log is not None:
            self.reopen_log()
        log.info("SIGHUP: log file reopened")

    # ------------------------------------------------------------------ reloads

    async def _reload_loop(self) -> None:
        loop = asyncio.get_running_loop()
        event = self._reload_event
        assert event is not None
        while True:
            await event.wait()
            event.clear()
            self._reloading = True
            log.info("Reading databases")
            started = time.monotonic()
            snapshot = self._snapshot()  # before loading: later changes trigger SelfCheck
            pool = prelaunch(self.settings.max_threads)
            try:
                new = await loop.run_in_executor(None, self.load_engine)
            except VigilError as exc:
                log.error("Database reload failed, keeping the previous instance: %s", exc)
            except MemoryError:
                log.error("Database reload failed (out of memory), keeping the previous instance")
            except Exception as exc:  # whatever happens, the old engine keeps serving
                log.debug("reload failure", exc_info=True)
                log.error(
                    "Database reload failed, keeping the previous instance: %s: %s",
                    type(exc).__name__,
                    exc,
                )
            else:
                alone = not self._old_pools and not (self._serving and self._serving[1])
                pool = attach_pool(pool, new, self.settings.max_threads, only=alone)
                if pool is not None:  # the new workers map the entry before they take over
                    await loop.run_in_executor(None, pool.wait_ready, START_TIMEOUT)
                old = self._serving
                # scans in flight keep the engine (and workers) they started with
                self._serving = (new, pool)
                self.engine = new
                if old is not None and old[1] is not None:
                    self._old_pools = [p for p in self._old_pools if not p.finished]
                    self._old_pools.append(old[1])
                    old[1].retire()
                pool = None
                del old
                self._db_snapshot = snapshot
                log.info(
                    "Database correctly reloaded (%d signatures) in %.2fs",
                    new.signatures,
                    time.monotonic() - started,
                )
                del new
                # the old engine is freed when its last scan ends; give its pages back
                await loop.run_in_executor(None, _collect_and_trim)
            finally:
                if pool is not None:  # the reload failed: its workers are not needed
                    pool.close_later()
                self._reloading = False

    def self_check_now(self) -> bool:
        """SELFCHECK: schedule a reload if one is pending or the database files changed."""
        if self._reloading or (self._reload_event is not None and self._reload_event.is_set()):
            return True
        if self._snapshot() != self._db_snapshot:
            self.request_reload()
            return True
        return False

    def _snapshot(self) -> dict[str, float]:
        """Database files and their modification times, for SelfCheck."""
        out: dict[str, float] = {}
        for d in self.settings.database_dirs:
            with contextlib.suppress(OSError):
                for entry in os.scandir(d):
                    with contextlib.suppress(OSError):
                        out[entry.path] = entry.stat().st_mtime
        return out

    async def _self_check_loop(self) -> None:
        interval = self.settings.self_check
        if interval <= 0:
            return
        while True:
            await asyncio.sleep(interval)
            if self._snapshot() != self._db_snapshot:
                log.info("SelfCheck: database modification detected, reloading")
                self.request_reload()

    # ------------------------------------------------------------------ jobs

    async def run_job(
        self,
        task: str,
        label: bytes,
        fn: Callable[..., T],
        *args: Any,
        cleanup: Callable[[], None] | None = None,
    ) -> T:
        """Run blocking work on the pool, counted against MaxQueue and listed by STATS.

        ``cleanup`` runs exactly once: on the worker after ``fn`` once submitted (so a
        cancelled request never closes a file a worker still reads), here otherwise.
        """
        assert self.queue is not None
        loop = asyncio.get_running_loop()
        submitted = False

        def job() -> T:
            try:
                return fn(*args)
            finally:
                if cleanup is not None:
                    cleanup()

        try:
            async with self.queue:
                with self._jobs_lock:
                    self._job_ids += 1
                    jid = self._job_ids
                    self.jobs[jid] = _Job(task, time.monotonic(), label.decode("latin-1"))
                try:
                    fut = loop.run_in_executor(self.pool, job)
                    submitted = True
                    return await fut
                finally:
                    with self._jobs_lock:
                        self.jobs.pop(jid, None)
        finally:
            if not submitted and cleanup is not None:
                cleanup()

    def current_engine(self) -> Engine:
        assert self.engine is not None
        return self.engine

    def _lease(self) -> tuple[Engine, WorkerPool | None]:
        """The engine for one request, with its worker pool held (release it after)."""
        for _ in range(3):
            engine = self.current_engine()
            serving = self._serving
            pool = serving[1] if serving is not None and serving[0] is engine else None
            if pool is None or pool.hold():
                return engine, pool
            # retired between the two reads by a reload: take the new pair
        return self.current_engine(), None

    def scan_path_job(
        self,
        kind: str,
        path: bytes,
        emit: Callable[[bytes], bool],
        alive: Callable[[], bool],
    ) -> None:
        engine, pool = self._lease()
        try:
            scan = PathScan(
                engine, self.settings, emit, kind=kind, excludes=self.excludes, workers=pool
            )
            scan.alive = alive
            scan.run(path, self.bulk)
        finally:
            if pool is not None:
                pool.release()

    def scan_spool_job(self, spool: tempfile.SpooledTemporaryFile[bytes]) -> list[str] | str:
        engine, pool = self._lease()
        try:
            size = spool.tell()
            oversized = self.settings.limits.oversized(size)
            if oversized is not None:
                return oversized
            spool.seek(0)
            if pool is not None and size > SPOOL_IN_MEMORY:
                # rolled over to a temporary file: the worker reads it, we never hold it
                names = pool.scan_file(spool.fileno(), size, False)
                if names is not None:
                    return names
            return scan_buffer_names(engine, spool.read(), False, pool)
        except WorkerError as exc:
            return str(exc)
        except MemoryError:
            return "Can't allocate memory"
        except (OSError, ValueError):
            return "Can't read file"
        finally:
            if pool is not None:
                pool.release()

    def scan_fd_job(self, fd: int) -> list[str] | str:
        engine, pool = self._lease()
        try:
            return scan_fd(engine, fd, self.settings, False, pool)
        except WorkerError as exc:
            return str(exc)
        except MemoryError:
            return "Can't allocate memory"
        except (OSError, ValueError):
            return "Can't read file"
        finally:
            if pool is not None:
                pool.release()

    async def virus_event(self, name: str, filename: str) -> None:
        command = self.settings.virus_event
        if command:
            await asyncio.get_running_loop().run_in_executor(
                self.events, run_virus_event, command, name, filename
            )

    # ------------------------------------------------------------------ replies

    def version_string(self) -> str:
        """``ClamAV <version>[/<daily version>/<daily build time>]`` (§4.2)."""
        engine = self.engine
        return version_text(engine.db_versions.get("daily") if engine is not None else None)

    def version_commands(self) -> str:
        return self.version_string() + "| COMMANDS: " + " ".join(LISTED_COMMANDS)

    def stats_text(self) -> str:
        """STATS in clamd's layout (§8); the final END line gets the command's terminator."""
        s = self.settings
        now = time.monotonic()
        with self._jobs_lock:
            jobs = list(self.jobs.values())
        live = len(jobs) + 1
        lines = [
            "POOLS: 1",
            "",
            "STATE: VALID PRIMARY",
            f"THREADS: live {live}  idle 0 max {s.max_threads} idle-timeout {s.idle_timeout}",
            f"QUEUE: {len(jobs)} items",
            "\tSTATS 0.000000 ",
        ]
        lines += [f"\t{j.task} {now - j.started:f} {j.file}" for j in jobs]
        lines += [
            "",
            "MEMSTATS: heap N/A mmap N/A used N/A free N/A releasable N/A pools 0 "
            "pools_used 0.000M pools_total 0.000M",
            "END",
        ]
        return "\n".join(lines)


def version_text(daily: tuple[int, int | None] | None) -> str:
    """The VERSION reply (and ``vigild -V``) for a daily database (version, build time)."""
    base = f"ClamAV {CLAMAV_COMPAT_VERSION}-vigil-{__version__}"
    if daily is None:
        return base
    version, built = daily
    stamp = time.strftime("%a %b %e %H:%M:%S %Y", time.localtime(built)) if built else ""
    return f"{base}/{version}/{stamp}" if stamp else f"{base}/{version}"


def _group_id(group: str) -> int:
    """LocalSocketGroup as a gid: a number, or a group name (StartupError if unknown)."""
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise StartupError(f"Unknown group {group}") from None


def _socket_owner(s: ServerSettings) -> tuple[int, int] | None:
    """(uid, gid) the Unix socket is given when root binds it for ``User``, else None.

    clamd drops privileges before it binds, so its socket belongs to User (group: User's
    primary group, or LocalSocketGroup). Vigil binds as root (privileged ports and
    root-owned directories work) and then hands the file over the same way, so that the
    unprivileged daemon can still remove it at exit, even from a sticky directory.
    """
    if not s.user or os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam(s.user)
    except KeyError:
        raise StartupError(f"Can't get information about user {s.user}.") from None
    gid = _group_id(s.local_socket_group) if s.local_socket_group else pw.pw_gid
    return pw.pw_uid, gid


def _collect_and_trim() -> None:
    gc.collect()
    release_free_memory()


def _systemd_sockets() -> list[socket.socket]:
    """Listening sockets passed by systemd socket activation (LISTEN_FDS, from fd 3)."""
    try:
        if int(os.environ.get("LISTEN_PID", "0")) != os.getpid():
            return []
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    out = []
    for fd in range(3, 3 + count):
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            continue
        if stat.S_ISSOCK(mode):
            out.append(socket.socket(fileno=fd))
    for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(var, None)
    return out
