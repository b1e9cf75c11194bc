"""One client connection: single commands, INSTREAM, FILDES and IDSESSION (protocol §2-§9).

The handler reads and frames commands on the event loop and answers the cheap ones at
once; scans run on the daemon's worker pool and reply when done (out of order inside an
IDSESSION, each line prefixed with its request number).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import stat
import tempfile
import time
from collections.abc import Coroutine
from typing import IO, TYPE_CHECKING, Any

from vigil.protocol import replies
from vigil.protocol.framing import (
    MAX_COMMAND,
    Command,
    NeedMore,
    match_command,
    next_command,
    read_chunk_header,
)
from vigil.server.connection import Connection, ReadTimeout

if TYPE_CHECKING:
    from vigil.server.daemon import Daemon

__all__ = ["ClientSession"]

log = logging.getLogger(__name__)

WORKER_COMMANDS = frozenset({"SCAN", "CONTSCAN", "MULTISCAN", "ALLMATCHSCAN", "FILDES", "STATS"})
SESSION_ALLOWED = frozenset(
    {"SCAN", "INSTREAM", "FILDES", "PING", "VERSION", "VERSIONCOMMANDS", "STATS", "END"}
)
SPOOL_IN_MEMORY = 1 << 20
OOM_TEXT = "Can't allocate memory"  # INSTREAM data beyond this goes to TemporaryDirectory
TEMP_WRITE_FAILED = b"Error writing to temporary file ERROR"  # clamd's words (disk full)
INTERNAL_ERROR = "Unspecified error"  # cl_strerror(CL_ERROR): a bug, not the client's fault


class _Close(Exception):
    """End this connection now."""


class ClientSession:
    """Handles one accepted connection until it closes."""

    def __init__(self, daemon: Daemon, conn: Connection) -> None:
        self.daemon = daemon
        self.conn = conn
        self.settings = daemon.settings
        self.buf = bytearray()
        self.in_session = False
        self.next_id = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.owned_fds: set[int] = set()
        self.last_term = b"\n"
        self.pending = True  # no complete first command yet (counts against MaxQueue)

    # ------------------------------------------------------------------ reading

    def deadline(self, seconds: int) -> float | None:
        return time.monotonic() + seconds if seconds > 0 else None

    async def fill(self, deadline: float | None) -> bool:
        """Read more bytes into the buffer; False at EOF. Sends the timeout reply itself."""
        try:
            data = await self.conn.recv(deadline)
        except ReadTimeout:
            await self.wait_tasks()
            await self.conn.send(replies.TIMED_OUT)
            raise _Close from None
        if not data:
            return False
        self.buf += data
        return True

    async def run(self) -> None:
        try:
            await self._run()
        except _Close:
            pass
        except Exception:  # never let a bug reach the client as anything but a close
            log.exception("internal error while serving a client")
        finally:
            for t in self.tasks:
                t.cancel()
            if self.tasks:
                await asyncio.gather(*self.tasks, return_exceptions=True)
            for fd in self.owned_fds:  # descriptors of FILDES jobs that never started
                with contextlib.suppress(OSError):
                    os.close(fd)
            self.owned_fds.clear()
            self.daemon.session_done(self)
            self.conn.close()

    async def _run(self) -> None:
        deadline = self.deadline(self.settings.command_read_timeout)
        if not await self.fill(deadline):
            return
        while True:
            try:
                framed = next_command(bytes(self.buf), first_read=True)
                break
            except NeedMore:
                if len(self.buf) >= MAX_COMMAND:
                    return  # no terminator within the buffer: dropped without a reply
                if not await self.fill(deadline):
                    return  # half-close before the terminator: nothing is executed
        if framed.consumed > MAX_COMMAND:
            return
        del self.buf[: framed.consumed]
        self.daemon.session_started(self)
        cmd = match_command(framed)
        if cmd is None:
            await self.conn.send(replies.line(replies.UNKNOWN, framed.mode.terminator))
            return
        if self.conn.fds and cmd.name not in ("FILDES", "IDSESSION"):
            await self.conn.send(replies.line(replies.PROTOCOL_FD, cmd.term))
            return
        if cmd.name == "IDSESSION":
            self.in_session = True
            self.last_term = cmd.term
            await self.session_loop()
            return
        if cmd.name in WORKER_COMMANDS and cmd.name != "FILDES" and self.buf:
            # bytes after a dispatched command in the same read (§2.10)
            await self.conn.send(replies.line(replies.ERROR_PROCESSING, cmd.term))
        await self.execute(cmd, None)
        await self.wait_tasks()

    # ------------------------------------------------------------------ IDSESSION

    async def session_loop(self) -> None:
        deadline = self.deadline(self.settings.read_timeout)
        while True:
            if self.conn.fds and self.buf and self.buf[0] not in (0x7A, 0x6E):
                # a descriptor with anything but FILDES is a protocol error (§7, row 47)
                await self.conn.send(
                    replies.line(replies.PROTOCOL_FD, self.last_term, self.next_id + 1)
                )
                raise _Close
            if self.buf and self.buf[0] not in (0x7A, 0x6E):
                await self.legacy_in_session()
                return
            try:
                framed = next_command(bytes(self.buf), first_read=False)
            except NeedMore:
                if len(self.buf) >= MAX_COMMAND:
                    raise _Close from None
                if not await self.fill(deadline):
                    return  # EOF aborts the session; outstanding replies are dropped
                continue
            del self.buf[: framed.consumed]
            deadline = self.deadline(self.settings.read_timeout)
            self.next_id += 1
            req = self.next_id
            cmd = match_command(framed)
            if cmd is None or cmd.name not in SESSION_ALLOWED:
                term = framed.mode.terminator
                await self.conn.send(replies.line(replies.INVALID_IN_SESSION, term, req))
                raise _Close
            self.last_term = cmd.term
            if self.conn.fds and cmd.name != "FILDES":
                await self.conn.send(replies.line(replies.PROTOCOL_FD, cmd.term, req))
                raise _Close
            if cmd.name == "END":
                await self.wait_tasks()
                return
            keep_going = await self.execute(cmd, req)
            if not keep_going:
                await self.wait_tasks()
                return
            # INSTREAM and FILDES read with their own timer: the session's restarts now
            deadline = self.deadline(self.settings.read_timeout)
            await self.throttle()

    async def throttle(self) -> None:
        """Back-pressure (§9.8): stop reading while the session has too many jobs queued."""
        limit = max(1, self.settings.max_queue // 2)
        while len(self.tasks) >= limit:
            await asyncio.wait(set(self.tasks), return_when=asyncio.FIRST_COMPLETED)

    async def legacy_in_session(self) -> None:
        req = self.next_id + 1
        await self.conn.send(
            replies.line(replies.LEGACY_IN_SESSION, self.last_term, req)
            + replies.line(replies.ERROR_PROCESSING, self.last_term, req)
        )
        for t in self.tasks:
            t.cancel()

    async def wait_tasks(self) -> None:
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)

    # ------------------------------------------------------------------ commands

    async def reply(self, body: bytes, cmd: Command, req: int | None) -> bool:
        return await self.conn.send(replies.line(body, cmd.term, req))

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def execute(self, cmd: Command, req: int | None) -> bool:
        """Run one command; False when the connection must end after it (in a session)."""
        d = self.daemon
        s = self.settings
        name = cmd.name
        if name == "PING":
            await self.reply(b"PONG", cmd, req)
        elif name == "VERSION":
            if not s.enable_version_command:
                await self.reply(replies.CMD_UNAVAILABLE, cmd, req)
                return False
            await self.reply(d.version_string().encode(), cmd, req)
        elif name == "VERSIONCOMMANDS":
            await self.reply(d.version_commands().encode(), cmd, req)
        elif name == "RELOAD":
            if not s.enable_reload_command:
                await self.reply(replies.CMD_UNAVAILABLE, cmd, req)
            else:
                d.request_reload()
                await self.reply(b"RELOADING", cmd, req)
        elif name == "SELFCHECK":
            if not s.enable_self_check_command:
                await self.reply(replies.CMD_UNAVAILABLE, cmd, req)
            else:
                changed = d.self_check_now()
                await self.reply(b"RELOADING" if changed else b"DBUPTODATE", cmd, req)
        elif name in ("SHUTDOWN", "QUIT"):
            if not s.enable_shutdown_command:
                await self.reply(replies.CMD_UNAVAILABLE, cmd, req)
            else:
                d.request_shutdown()
        elif name in ("DETSTATS", "DETSTATSCLEAR"):
            pass  # obsolete: accepted, no reply
        elif name == "STATS":
            if not s.enable_stats_command:
                await self.reply(replies.CMD_UNAVAILABLE, cmd, req)
                return False
            body = d.stats_text().encode()
            await self.conn.send((b"%d: " % req if req is not None else b"") + body + cmd.term)
        elif name in ("SCAN", "CONTSCAN", "MULTISCAN", "ALLMATCHSCAN"):
            if b"\0" in cmd.arg:
                # clamd reads the path as a C string: it ends at the first NUL
                cmd = dataclasses.replace(cmd, arg=cmd.arg.split(b"\0", 1)[0])
            if name == "ALLMATCHSCAN" and not s.allow_all_match_scan:
                await self.reply(cmd.arg + b": " + replies.ALLMATCH_DISABLED, cmd, req)
            else:
                self.spawn(self.path_scan(cmd, req))
        elif name == "INSTREAM":
            return await self.instream(cmd, req)
        elif name == "FILDES":
            return await self.fildes(cmd, req)
        elif name == "END":  # outside a session
            await self.reply(replies.UNKNOWN, cmd, req)
        return True

    async def path_scan(self, cmd: Command, req: int | None) -> None:
        loop = asyncio.get_running_loop()
        conn = self.conn

        def emit(body: bytes) -> bool:
            fut = asyncio.run_coroutine_threadsafe(
                conn.send(replies.line(body, cmd.term, req)), loop
            )
            try:
                return fut.result(timeout=max(30.0, conn.send_timeout * 4))
            except Exception:
                fut.cancel()
                return False

        def alive() -> bool:
            return not (conn.closed or conn.broken or self.daemon.stopping)

        try:
            await self.daemon.run_job(
                cmd.name, cmd.arg, self.daemon.scan_path_job, cmd.name, cmd.arg, emit, alive
            )
        except Exception as exc:  # noqa: BLE001 - the client gets an error line, never silence
            _internal_error("scanning a path", exc)
            body = cmd.arg + b": " + INTERNAL_ERROR.encode() + b" ERROR"
            await self.reply(body, cmd, req)

    async def instream(self, cmd: Command, req: int | None) -> bool:
        """Receive the chunks (§6), checking each announced length, then scan."""
        s = self.settings
        budget = s.stream_max_length
        deadline = self.deadline(s.read_timeout)
        spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - closed by the scan job
            max_size=SPOOL_IN_MEMORY, dir=s.temporary_directory
        )
        try:
            while True:
                while (size := read_chunk_header(self.buf)) is None:
                    if not await self.fill(deadline):
                        raise _Close  # EOF mid-stream: no reply, nothing scanned
                    deadline = self.deadline(s.read_timeout)
                if size == 0:
                    del self.buf[:4]
                    break
                if s.stream_max_length and size > budget:
                    await self.reply(replies.INSTREAM_LIMIT, cmd, req)
                    raise _Close
                budget -= size
                del self.buf[:4]
                while size > 0:
                    if not self.buf:
                        if not await self.fill(deadline):
                            raise _Close
                        deadline = self.deadline(s.read_timeout)
                    take = min(size, len(self.buf))
                    try:
                        spool.write(self.buf[:take])
                    except OSError as exc:  # TemporaryDirectory full or unwritable
                        log.error("INSTREAM: can't write to temporary file: %s", exc.strerror)
                        await self.reply(TEMP_WRITE_FAILED, cmd, req)
                        raise _Close from None
                    del self.buf[:take]
                    size -= take
        except BaseException:
            _close_quietly(spool)
            raise
        if not self.in_session:
            self.buf.clear()  # bytes after the terminating chunk are ignored (§2.10)
        started = False

        async def scan() -> None:
            nonlocal started
            started = True  # from here on run_job closes the spool, whatever happens
            await self.stream_scan(spool, cmd, req)

        # a task cancelled before its first step (the session ended at once) never runs
        # its body: the spool is closed here instead
        self.spawn(scan()).add_done_callback(lambda _t: None if started else _close_quietly(spool))
        return True

    async def stream_scan(
        self, spool: tempfile.SpooledTemporaryFile[bytes], cmd: Command, req: int | None
    ) -> None:
        try:
            names = await self.daemon.run_job(
                "INSTREAM", b"", self.daemon.scan_spool_job, spool, cleanup=spool.close
            )
        except Exception as exc:  # noqa: BLE001 - the client gets an error line, never silence
            _internal_error("scanning a stream", exc)
            names = INTERNAL_ERROR
        await self.send_result(b"stream", names, cmd, req, self.stream_origin())

    def stream_origin(self) -> str:
        """VirusEvent's file name for INSTREAM: ``instream(local)`` or ``instream(ip@port)``."""
        if self.conn.unix:
            return "instream(local)"
        try:
            host, port = self.conn.sock.getpeername()[:2]
        except OSError:
            return "instream(local)"
        return f"instream({host}@{port})"

    async def fildes(self, cmd: Command, req: int | None) -> bool:
        """FILDES (§7): one more byte must arrive, with the descriptor in the same message."""
        deadline = self.deadline(self.settings.read_timeout)
        while not self.buf:
            if not await self.fill(deadline):
                raise _Close
        del self.buf[:1]
        fd = self.conn.take_fd() if self.conn.unix else None
        if fd is None:
            await self.reply(replies.NO_FD, cmd, req)
            return False
        if not self.in_session and self.buf:
            await self.conn.send(replies.line(replies.ERROR_PROCESSING, cmd.term))
        self.owned_fds.add(fd)
        self.spawn(self.fd_scan(fd, cmd, req))
        return True

    async def fd_scan(self, fd: int, cmd: Command, req: int | None) -> None:
        label = b"fd[%d]" % fd
        self.owned_fds.discard(fd)  # from here on this task (then the worker) closes it

        def close_fd() -> None:
            with contextlib.suppress(OSError):
                os.close(fd)

        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            real = label.decode()
        try:
            regular = stat.S_ISREG(os.fstat(fd).st_mode)
        except OSError:
            regular = False
        if not regular:
            close_fd()
            await self.reply(label + b": " + replies.NOT_REGULAR, cmd, req)
            return
        try:
            names = await self.daemon.run_job(
                "FILDES", label, self.daemon.scan_fd_job, fd, cleanup=close_fd
            )
        except Exception as exc:  # noqa: BLE001 - the client gets an error line, never silence
            _internal_error("scanning a descriptor", exc)
            names = INTERNAL_ERROR
        await self.send_result(label, names, cmd, req, real)

    async def send_result(
        self, label: bytes, names: list[str] | str, cmd: Command, req: int | None, event_name: str
    ) -> None:
        if isinstance(names, str):  # an engine error text
            await self.reply(label + b": " + names.encode() + b" ERROR", cmd, req)
            if names == OOM_TEXT and self.settings.exit_on_oom:
                log.error("out of memory: shutting down (ExitOnOOM)")
                self.daemon.request_shutdown()
            return
        if not names:
            await self.reply(label + b": OK", cmd, req)
            return
        for name in names:
            log.warning("%s: %s FOUND", label.decode("latin-1"), name)
            await self.daemon.virus_event(name, event_name)
            await self.reply(replies.found(label, name), cmd, req)


def _internal_error(doing: str, exc: Exception) -> None:
    """One log line for a bug met while scanning; the traceback only in debug mode."""
    log.error("internal error while %s: %s: %s", doing, type(exc).__name__, exc)
    log.debug("internal error while %s", doing, exc_info=True)


def _close_quietly(spool: IO[bytes]) -> None:
    """Close a stream spool whose flush may fail again (a file that hit RLIMIT_FSIZE or a
    full disk): the reply is already decided and the descriptor is released either way."""
    with contextlib.suppress(OSError):
        spool.close()
