"""An accepted client socket for asyncio, read with recvmsg so FILDES can get descriptors.

asyncio's streams cannot receive SCM_RIGHTS ancillary data, so this wraps the raw
non-blocking socket: ``recv`` waits for readability on the event loop, then calls recvmsg.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import os
import socket
import time

__all__ = ["Connection", "ReadTimeout"]

RECV_SIZE = 65536
MAX_FDS = 8  # descriptors accepted in one message; more are closed


class ReadTimeout(Exception):
    """The read deadline passed with no data."""


class Connection:
    """One client: receive with descriptors, send whole lines under a lock."""

    def __init__(self, sock: socket.socket, *, unix: bool, send_timeout: float) -> None:
        self.sock = sock
        self.unix = unix
        self.send_timeout = send_timeout
        self.loop = asyncio.get_running_loop()
        self.fds: list[int] = []  # descriptors received and not yet claimed
        self.closed = False
        self.broken = False  # a send failed: the client is gone or not reading
        self._send_lock = asyncio.Lock()
        sock.setblocking(False)

    async def recv(self, deadline: float | None) -> bytes:
        """Next bytes from the client (b"" at EOF); ReadTimeout once ``deadline`` passes."""
        while True:
            try:
                return self._recv_now()
            except (BlockingIOError, InterruptedError):
                pass
            fut: asyncio.Future[None] = self.loop.create_future()
            fd = self.sock.fileno()
            self.loop.add_reader(fd, _wake, fut)
            try:
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    await asyncio.wait_for(fut, timeout)
                except TimeoutError:
                    raise ReadTimeout from None
            finally:
                self.loop.remove_reader(fd)

    def _recv_now(self) -> bytes:
        if not self.unix:
            try:
                return self.sock.recv(RECV_SIZE)
            except ConnectionError:
                return b""
        try:
            data, anc, _flags, _addr = self.sock.recvmsg(
                RECV_SIZE, socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize)
            )
        except ConnectionError:
            return b""
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
                # only the newest descriptor can still be claimed: close the rest at once,
                # so a client cannot make the daemon hoard descriptors (§7)
                self.drop_fds()
                for extra in fds[:-1]:
                    with contextlib.suppress(OSError):
                        os.close(extra)
                if fds:
                    self.fds.append(fds[-1])
        return data

    def take_fd(self) -> int | None:
        """Claim the newest received descriptor; earlier unclaimed ones are closed."""
        if not self.fds:
            return None
        fd = self.fds.pop()
        self.drop_fds()
        return fd

    def drop_fds(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()

    async def send(self, data: bytes) -> bool:
        """Send whole replies atomically; False (and the connection marked broken) on failure.

        A client that does not read for SendBufTimeout is treated as dead (§9.8).
        """
        if self.closed or self.broken:
            return False
        async with self._send_lock:
            try:
                await asyncio.wait_for(self.loop.sock_sendall(self.sock, data), self.send_timeout)
                return True
            except (OSError, TimeoutError):
                self.broken = True
                return False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.drop_fds()
        with contextlib.suppress(OSError, ValueError):
            # forget the descriptor in the event loop before the number can be reused
            self.loop.remove_reader(self.sock.fileno())
            self.loop.remove_writer(self.sock.fileno())
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
