"""Fuzz target: a real in-process server connection handler (vigil.server.session).

The input is everything one client sends before closing its side. A ClientSession of a
Daemon (small built-in database, path scans excluded) serves it over a socketpair. The
handler must finish (the client half-closes, so EOF comes at once), never log an internal
error, never send a traceback, and leave no descriptor or INSTREAM spool file open.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import shutil
import socket
import tempfile
import time
from typing import Any

from _harness import check, instrumented, main

with instrumented(__name__):
    import vigil.server.session as session_module
    from vigil.engine.database import builtin_database_dir, load_database
    from vigil.engine.limits import Limits
    from vigil.engine.scanner import Engine
    from vigil.server.connection import Connection
    from vigil.server.daemon import Daemon
    from vigil.server.session import ClientSession
    from vigil.server.settings import ServerSettings

TIMEOUT = 10.0  # seconds for one connection; a handler still busy after that is a hang


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


_ERRORS = _Errors()
logging.getLogger("vigil.server").addHandler(_ERRORS)
_SPOOLS: list[tempfile.SpooledTemporaryFile[bytes]] = []


class _TrackedTempfile:
    """vigil.server.session's view of ``tempfile``: spools it makes are recorded, so the
    target can tell whether each was closed (a leak otherwise shows only at GC time)."""

    def __getattr__(self, name: str) -> object:
        return getattr(tempfile, name)

    @staticmethod
    def SpooledTemporaryFile(*args: Any, **kwargs: Any) -> tempfile.SpooledTemporaryFile[bytes]:
        spool: tempfile.SpooledTemporaryFile[bytes] = tempfile.SpooledTemporaryFile(*args, **kwargs)
        _SPOOLS.append(spool)
        return spool


session_module.tempfile = _TrackedTempfile()  # type: ignore[assignment]
_TMP = tempfile.mkdtemp(prefix="vigil-fuzz-conn-")
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)
_LOOP: asyncio.AbstractEventLoop | None = None
_DAEMON: Daemon | None = None


def _daemon() -> tuple[asyncio.AbstractEventLoop, Daemon]:
    global _LOOP, _DAEMON
    if _LOOP is None or _DAEMON is None:
        engine = Engine(load_database([builtin_database_dir()]), Limits(max_scantime=5000))
        settings = ServerSettings(
            max_threads=2,
            command_read_timeout=2,
            read_timeout=2,
            idle_timeout=2,
            stream_max_length=1 << 20,
            exclude_path=("",),  # every path is excluded: no walk of the host's files
            temporary_directory=_TMP,
            enable_shutdown_command=True,
        )
        _DAEMON = Daemon(settings, lambda: engine, engine=engine)
        _LOOP = asyncio.new_event_loop()

        async def prime() -> None:
            assert _DAEMON is not None
            _DAEMON.queue = asyncio.Semaphore(4)

        _LOOP.run_until_complete(prime())
        atexit.register(_close)
    return _LOOP, _DAEMON


def _close() -> None:
    global _LOOP, _DAEMON
    if _DAEMON is not None:
        for pool in (_DAEMON.pool, _DAEMON.bulk, _DAEMON.events):
            pool.shutdown(wait=True, cancel_futures=True)
    if _LOOP is not None:
        _LOOP.close()
    _LOOP = _DAEMON = None


def close() -> None:
    """Release the daemon, its threads and the log handler (for in-process replays)."""
    _close()
    logging.getLogger("vigil.server").removeHandler(_ERRORS)
    session_module.tempfile = tempfile
    shutil.rmtree(_TMP, ignore_errors=True)


def serve(data: bytes) -> bytes:
    """Everything the server sends back to a client that sent ``data`` and half-closed."""
    loop, daemon = _daemon()
    daemon.stopping = False
    client, server = socket.socketpair()
    try:
        client.sendall(data) if len(data) < 100_000 else None
        client.shutdown(socket.SHUT_WR)

        async def one() -> None:
            conn = Connection(server, unix=True, send_timeout=2.0)
            await asyncio.wait_for(ClientSession(daemon, conn).run(), TIMEOUT)

        loop.run_until_complete(one())
        chunks = []
        client.settimeout(1.0)
        while True:
            try:
                chunk = client.recv(65536)
            except (TimeoutError, ConnectionError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        client.close()
        server.close()


def _open_spools(spools: list[tempfile.SpooledTemporaryFile[bytes]]) -> list[int]:
    """Ids of the INSTREAM spools still open once their scan jobs had a second to finish
    (a job cancelled after it reached the pool still closes its spool on the worker)."""
    deadline = time.monotonic() + 1.0
    while any(not f.closed for f in spools) and time.monotonic() < deadline:
        time.sleep(0.01)
    left = [id(f) for f in spools if not f.closed]
    for f in spools:
        f.close()  # this input's leak must not be reported again by a later one
    return left


def TestOneInput(data: bytes) -> None:
    _ERRORS.messages.clear()
    _daemon()  # its loop and pools are made once; they are not the connection's
    fds = len(os.listdir("/proc/self/fd"))
    _SPOOLS.clear()
    reply = serve(data[:65536])
    check(not _ERRORS.messages, "server logged: " + "; ".join(_ERRORS.messages[:3]))
    check(b"Traceback" not in reply, "traceback sent to the client")
    check(not _open_spools(_SPOOLS), "INSTREAM spool left open")
    check(len(os.listdir("/proc/self/fd")) <= fds, "descriptor leaked")


if __name__ == "__main__":
    os.environ["VIGIL_CACHE_DIR"] = ""
    main(TestOneInput)
