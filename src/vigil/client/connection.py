"""A small synchronous client for the clamd wire protocol (Unix and TCP sockets).

Commands are sent z-framed (``zCMD\\0``), as clamdscan does, so every reply line ends in a
NUL byte and paths may contain newlines (spec §2.2). Imports only ``vigil.errors``.

VigilError
 +-- ClientError                         anything this module raises on purpose
      +-- DaemonUnavailable, ConnectionError   no configured address accepted a connection
      +-- ConnectionLost, ConnectionError      the daemon went away (or timed out) mid-reply
      +-- ReplyError, ProtocolError            the daemon answered something we cannot use
           +-- CommandRejected                 ``UNKNOWN COMMAND`` / ``COMMAND UNAVAILABLE``
"""

from __future__ import annotations

import enum
import os
import select
import socket
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO, Protocol, Self

from vigil.errors import ProtocolError, VigilError

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_STREAM_MAX_LENGTH",
    "Address",
    "ClamdClient",
    "ClientError",
    "CommandRejected",
    "Connection",
    "ConnectionLost",
    "DaemonUnavailable",
    "ReplyError",
    "ScanMode",
    "ScanResult",
    "Session",
    "SessionReply",
    "StreamSource",
    "TCPAddress",
    "UnixAddress",
    "Verdict",
]

DEFAULT_STREAM_MAX_LENGTH = 100 * 1024 * 1024
"""clamd's default ``StreamMaxLength``; the daemon drops uploads that exceed its own value."""
DEFAULT_CHUNK_SIZE = 64 * 1024
MAX_REPLY_LINE = 1024 * 1024
"""Longest reply line accepted; clamd's lines are bounded by its path limit (~4 KiB)."""
_REJECTIONS = ("UNKNOWN COMMAND", "COMMAND UNAVAILABLE")


class HasFileno(Protocol):
    def fileno(self) -> int: ...


StreamSource = bytes | bytearray | memoryview | BinaryIO | Iterable[bytes]
"""What INSTREAM can upload: a buffer, a binary file object, or an iterable of chunks."""


# --------------------------------------------------------------------------- errors


class ClientError(VigilError):
    """Base of every error raised by the client library."""


class DaemonUnavailable(ClientError, ConnectionError):
    """No address accepted a connection; ``failures`` lists each address and its OS error."""

    def __init__(self, failures: Sequence[tuple[Address, OSError]]) -> None:
        self.failures = tuple(failures)
        if not self.failures:
            msg = "no clamd address configured"
        else:
            msg = "; ".join(f"could not connect to {a}: {describe_oserror(e)}" for a, e in failures)
        super().__init__(msg)


class ConnectionLost(ClientError, ConnectionError):
    """The connection failed mid-conversation; ``partial`` holds unterminated reply bytes."""

    def __init__(self, message: str, partial: bytes = b"") -> None:
        self.partial = partial
        super().__init__(message)


class ReplyError(ClientError, ProtocolError):
    """The daemon's reply does not fit the command; ``reply`` is its exact text."""


class CommandRejected(ReplyError):
    """The daemon refused the command (``UNKNOWN COMMAND``, ``COMMAND UNAVAILABLE``)."""


def describe_oserror(exc: OSError) -> str:
    """The C library's wording (``No such file or directory``), as clamdscan prints it."""
    if isinstance(exc, TimeoutError) and not exc.strerror:
        return "Connection timed out"
    return exc.strerror or str(exc)


# --------------------------------------------------------------------------- addresses


@dataclass(frozen=True, slots=True)
class UnixAddress:
    """A clamd ``LocalSocket``."""

    path: str

    def __str__(self) -> str:
        return f"LocalSocket {self.path}"


@dataclass(frozen=True, slots=True)
class TCPAddress:
    """A clamd ``TCPSocket``; ``host`` may resolve to several addresses, tried in order."""

    host: str | None
    port: int

    def __str__(self) -> str:
        return f"{self.host or ''}:{self.port}"


Address = UnixAddress | TCPAddress
ConnectErrorHook = Callable[[Address, OSError], None]


# --------------------------------------------------------------------------- results


class Verdict(enum.Enum):
    """How a reply line ends (spec §3): clients classify lines by these endings only."""

    OK = "OK"
    FOUND = "FOUND"
    ERROR = "ERROR"
    OTHER = "OTHER"


@dataclass(frozen=True, slots=True)
class ScanResult:
    """One reply line of a scan: ``path`` is ``stream``, ``fd[N]`` or a file ('' if none)."""

    path: str
    verdict: Verdict
    detail: str
    line: str

    @property
    def infected(self) -> bool:
        return self.verdict is Verdict.FOUND

    @classmethod
    def parse(cls, line: str) -> ScanResult:
        """Split ``<path>: <SIG> FOUND`` / ``<path>: OK`` / ``[<path>: ]<msg> ERROR``.

        Error messages may contain ``: `` themselves (``File path check failure: ...``), so
        for ERROR lines the path ends at the first ``: `` that starts a known message.
        """
        if line.endswith(" FOUND"):
            path, _, sig = line[: -len(" FOUND")].rpartition(": ")
            return cls(path, Verdict.FOUND, sig, line)
        if line == "OK" or line.endswith(": OK"):
            return cls(line[: -len(": OK")] if line != "OK" else "", Verdict.OK, "", line)
        if line.endswith(" ERROR") or line == "ERROR":
            body = line[: -len(" ERROR")] if line != "ERROR" else ""
            marker = body.find(": File path check failure: ")
            if marker >= 0:
                return cls(body[:marker], Verdict.ERROR, body[marker + 2 :], line)
            path, sep, msg = body.rpartition(": ")
            return cls(path, Verdict.ERROR, msg if sep else body, line)
        path, sep, status = line.rpartition(": ")
        return cls(path if sep else "", Verdict.OTHER, status, line)


@dataclass(frozen=True, slots=True)
class SessionReply:
    """One reply line inside IDSESSION, with the request number it answers (spec §9.2)."""

    request_id: int
    line: str

    @property
    def result(self) -> ScanResult:
        return ScanResult.parse(self.line)

    @classmethod
    def parse(cls, line: str) -> SessionReply:
        head, sep, rest = line.partition(": ")
        if not sep or not head.isdigit():
            raise ReplyError(line)
        return cls(int(head), rest)


class ScanMode(enum.Enum):
    """The path-scanning commands (spec §4.8)."""

    SCAN = "SCAN"
    CONTSCAN = "CONTSCAN"
    MULTISCAN = "MULTISCAN"
    ALLMATCHSCAN = "ALLMATCHSCAN"


# --------------------------------------------------------------------------- connection


def _command_bytes(command: str, argument: str | None) -> bytes:
    text = command if argument is None else f"{command} {argument}"
    raw = os.fsencode(text)
    if b"\x00" in raw:
        raise ValueError("clamd commands cannot contain NUL bytes")
    return b"z" + raw + b"\x00"


def _chunks(data: StreamSource, chunk_size: int) -> Iterator[bytes]:
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data).cast("B")
        for start in range(0, len(view), chunk_size):
            yield bytes(view[start : start + chunk_size])
    elif hasattr(data, "read"):
        reader: BinaryIO = data  # type: ignore[assignment]
        while block := reader.read(chunk_size):
            yield block
    else:
        for block in data:
            for start in range(0, len(block), chunk_size):
                yield block[start : start + chunk_size]


class Connection:
    """One socket to the daemon: send z-framed commands, read NUL-terminated replies.

    Outside IDSESSION the daemon serves one command per connection and then closes it, so
    ``lines()`` simply reads until EOF.
    """

    def __init__(self, sock: socket.socket, address: Address | None = None) -> None:
        self.sock = sock
        self.address = address
        self._buf = bytearray()
        self._eof = False

    @classmethod
    def open(
        cls,
        address: Address,
        timeout: float | None = None,
        on_error: ConnectErrorHook | None = None,
    ) -> Connection:
        """Connect to one address (every resolved TCP address in turn); raise DaemonUnavailable."""
        failures: list[tuple[Address, OSError]] = []
        if isinstance(address, UnixAddress):
            candidates: list[tuple[int, object]] = [(socket.AF_UNIX, address.path)]
        else:
            try:
                infos = socket.getaddrinfo(
                    address.host, address.port, socket.AF_UNSPEC, socket.SOCK_STREAM
                )
            except socket.gaierror as exc:
                if on_error:
                    on_error(address, exc)
                raise DaemonUnavailable([(address, exc)]) from exc
            candidates = [(info[0], info[4]) for info in infos]
        for family, sockaddr in candidates:
            try:
                sock = socket.socket(family, socket.SOCK_STREAM)
            except OSError as exc:
                failures.append((address, exc))
                if on_error:
                    on_error(address, exc)
                continue
            sock.settimeout(timeout)
            try:
                sock.connect(sockaddr)  # type: ignore[arg-type]
            except OSError as exc:
                sock.close()
                failures.append((address, exc))
                if on_error:
                    on_error(address, exc)
                continue
            return cls(sock, address)
        raise DaemonUnavailable(failures)

    # -- sending

    def send_command(self, command: str, argument: str | None = None) -> None:
        """Send ``z<command>[ <argument>]\\0``; the argument is sent byte for byte."""
        self._send(_command_bytes(command, argument))

    def send_stream(
        self,
        data: StreamSource,
        max_length: int | None = DEFAULT_STREAM_MAX_LENGTH,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> int:
        """Upload INSTREAM chunks and the zero-length terminator; return the bytes sent.

        Like clamdscan, data past ``max_length`` (the daemon's StreamMaxLength; 0 or None =
        unlimited) is silently left out rather than provoking the daemon's size-limit error.
        """
        budget = max_length or None
        sent = 0
        for block in _chunks(data, chunk_size):
            if budget is not None and len(block) > budget - sent:
                block = block[: budget - sent]
            if block:
                self._send(struct.pack(">I", len(block)) + block)
                sent += len(block)
            if budget is not None and sent >= budget:
                break
        self._send(b"\x00\x00\x00\x00")
        return sent

    def send_fd(self, fd: int) -> None:
        """Pass ``fd`` with SCM_RIGHTS plus the one dummy byte FILDES needs (spec §7)."""
        if self.sock.family != socket.AF_UNIX:
            raise ClientError("FILDES needs a Unix socket (file descriptors cannot cross TCP)")
        try:
            socket.send_fds(self.sock, [b"\x00"], [fd])
        except OSError as exc:
            raise ConnectionLost(f"FD send failed: {describe_oserror(exc)}") from exc

    def _send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise ConnectionLost(f"Can't send to clamd: {describe_oserror(exc)}") from exc

    # -- receiving

    def readable(self, timeout: float | None = 0.0) -> bool:
        """True if a reply line (or EOF) can be read without blocking longer than ``timeout``."""
        if b"\x00" in self._buf or self._eof:
            return True
        ready, _, _ = select.select([self.sock], [], [], timeout)
        return bool(ready)

    def buffered(self) -> bool:
        """True if a complete reply line is already buffered."""
        return b"\x00" in self._buf

    def read_line(self) -> str | None:
        """Next reply line without its NUL, or None at a clean EOF.

        Raises ConnectionLost when the daemon closes after an unterminated reply (for example
        ``UNKNOWN COMMAND\\n`` to a legacy command, or ``COMMAND READ TIMED OUT\\n``).
        """
        while True:
            end = self._buf.find(b"\x00")
            if end >= 0:
                line = bytes(self._buf[:end])
                del self._buf[: end + 1]
                return os.fsdecode(line)
            if len(self._buf) > MAX_REPLY_LINE:
                raise ReplyError("overlong reply from clamd")
            if self._eof:
                if self._buf:
                    partial = bytes(self._buf)
                    self._buf.clear()
                    raise ConnectionLost("clamd closed the connection mid-reply", partial)
                return None
            try:
                data = self.sock.recv(65536)
            except OSError as exc:
                raise ConnectionLost(f"receive failed: {describe_oserror(exc)}") from exc
            if not data:
                self._eof = True
            self._buf += data

    def lines(self) -> Iterator[str]:
        """Every reply line until the daemon closes the connection."""
        while (line := self.read_line()) is not None:
            yield line

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _reject_check(line: str) -> str:
    if line in _REJECTIONS:
        raise CommandRejected(line)
    return line


def _fileno(fd: int | HasFileno) -> int:
    return fd if isinstance(fd, int) else fd.fileno()


# --------------------------------------------------------------------------- client


class ClamdClient:
    """Typed access to one clamd-compatible daemon; every call uses a fresh connection.

    ``addresses`` are tried in order on every connect, like clamdscan falls back from
    ``LocalSocket`` to ``TCPSocket``; ``on_connect_error`` sees each failed attempt.
    """

    def __init__(
        self,
        addresses: Address | Sequence[Address],
        *,
        timeout: float | None = None,
        stream_max_length: int | None = DEFAULT_STREAM_MAX_LENGTH,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        on_connect_error: ConnectErrorHook | None = None,
    ) -> None:
        self.addresses: tuple[Address, ...] = (
            (addresses,) if isinstance(addresses, UnixAddress | TCPAddress) else tuple(addresses)
        )
        self.timeout = timeout
        self.stream_max_length = stream_max_length
        self.chunk_size = chunk_size
        self.on_connect_error = on_connect_error

    def connect(self) -> Connection:
        """Open a connection to the first address that accepts one."""
        failures: list[tuple[Address, OSError]] = []
        for address in self.addresses:
            try:
                return Connection.open(address, self.timeout, self.on_connect_error)
            except DaemonUnavailable as exc:
                failures.extend(exc.failures)
        raise DaemonUnavailable(failures)

    def _single(self, command: str) -> str:
        with self.connect() as conn:
            conn.send_command(command)
            line = conn.read_line()
        if line is None:
            raise ReplyError(f"no reply to {command}")
        return _reject_check(line)

    def ping(self) -> None:
        """PING; raises unless the daemon answers ``PONG``."""
        reply = self._single("PING")
        if reply != "PONG":
            raise ReplyError(reply)

    def version(self) -> str:
        """The VERSION string, e.g. ``ClamAV 1.4.6/27520/Wed Jan 15 09:26:14 2025``."""
        return self._single("VERSION")

    def version_commands(self) -> tuple[str, tuple[str, ...]]:
        """VERSIONCOMMANDS split into the version and the command names."""
        reply = self._single("VERSIONCOMMANDS")
        version, sep, commands = reply.partition("| COMMANDS:")
        if not sep:
            raise ReplyError(reply)
        return version, tuple(commands.split())

    def reload(self) -> None:
        """Ask for a database reload; the daemon only confirms that it was scheduled."""
        reply = self._single("RELOAD")
        if not reply.startswith("RELOADING"):
            raise ReplyError(reply)

    def shutdown(self) -> None:
        """SHUTDOWN: the daemon closes without a reply and exits."""
        with self.connect() as conn:
            conn.send_command("SHUTDOWN")
            for line in conn.lines():
                _reject_check(line)
                raise ReplyError(line)

    def stats(self) -> str:
        """The STATS block (format meant for clamdtop, spec §8)."""
        return self._single("STATS")

    def iter_scan(self, path: str, mode: ScanMode = ScanMode.SCAN) -> Iterator[ScanResult]:
        """Reply lines of a path scan as they arrive; the daemon opens the path itself."""
        with self.connect() as conn:
            conn.send_command(mode.value, path)
            for line in conn.lines():
                yield ScanResult.parse(_reject_check(line))

    def scan(self, path: str, mode: ScanMode = ScanMode.SCAN) -> list[ScanResult]:
        return list(self.iter_scan(path, mode))

    def contscan(self, path: str) -> list[ScanResult]:
        return self.scan(path, ScanMode.CONTSCAN)

    def multiscan(self, path: str) -> list[ScanResult]:
        return self.scan(path, ScanMode.MULTISCAN)

    def allmatchscan(self, path: str) -> list[ScanResult]:
        return self.scan(path, ScanMode.ALLMATCHSCAN)

    def instream(self, data: StreamSource) -> ScanResult:
        """Upload data with INSTREAM and return the ``stream: ...`` verdict."""
        with self.connect() as conn:
            conn.send_command("INSTREAM")
            try:
                conn.send_stream(data, self.stream_max_length, self.chunk_size)
            except ConnectionLost:
                # The daemon may close early (size limit) after writing its error line.
                line = _read_after_failure(conn)
                if line is None:
                    raise
                return ScanResult.parse(line)
            return _one_result(conn, "INSTREAM")

    def fildes(self, fd: int | HasFileno) -> ScanResult:
        """Scan an open file by passing its descriptor (Unix sockets only)."""
        with self.connect() as conn:
            conn.send_command("FILDES")
            conn.send_fd(_fileno(fd))
            return _one_result(conn, "FILDES")

    def session(self) -> Session:
        """Start an IDSESSION on a new connection."""
        conn = self.connect()
        try:
            conn.send_command("IDSESSION")
        except BaseException:
            conn.close()
            raise
        return Session(conn, self.stream_max_length, self.chunk_size)


def _read_after_failure(conn: Connection) -> str | None:
    try:
        return conn.read_line()
    except ClientError:
        return None


def _one_result(conn: Connection, command: str) -> ScanResult:
    line = conn.read_line()
    if line is None:
        raise ReplyError(f"no reply to {command}")
    return ScanResult.parse(_reject_check(line))


# --------------------------------------------------------------------------- IDSESSION


class Session:
    """IDSESSION: many commands on one connection, replies tagged ``<id>: `` (spec §9).

    Replies can arrive out of order. ``submit_*`` return the request id; blocking helpers
    (``ping``, ``version``, ``instream``, ``fildes``) wait for their own id and keep other
    replies for ``poll``/``end``. A path SCAN of a directory may answer with several lines.
    """

    def __init__(
        self,
        conn: Connection,
        stream_max_length: int | None = DEFAULT_STREAM_MAX_LENGTH,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        self.conn = conn
        self.stream_max_length = stream_max_length
        self.chunk_size = chunk_size
        self.last_id = 0
        self._pending: list[SessionReply] = []
        self._ended = False

    def _next_id(self) -> int:
        self.last_id += 1
        return self.last_id

    def submit_ping(self) -> int:
        self.conn.send_command("PING")
        return self._next_id()

    def submit_version(self) -> int:
        self.conn.send_command("VERSION")
        return self._next_id()

    def submit_stats(self) -> int:
        self.conn.send_command("STATS")
        return self._next_id()

    def submit_scan(self, path: str) -> int:
        """SCAN a path (the only path command allowed inside a session)."""
        self.conn.send_command("SCAN", path)
        return self._next_id()

    def submit_instream(self, data: StreamSource) -> int:
        self.conn.send_command("INSTREAM")
        rid = self._next_id()
        self.conn.send_stream(data, self.stream_max_length, self.chunk_size)
        return rid

    def submit_fildes(self, fd: int | HasFileno) -> int:
        self.conn.send_command("FILDES")
        rid = self._next_id()
        self.conn.send_fd(_fileno(fd))
        return rid

    def next_reply(self) -> SessionReply | None:
        """The next reply (kept ones first), blocking; None once the daemon has closed."""
        if self._pending:
            return self._pending.pop(0)
        line = self.conn.read_line()
        return None if line is None else SessionReply.parse(line)

    def poll(self, timeout: float | None = 0.0) -> list[SessionReply]:
        """Replies available within ``timeout`` seconds, without blocking past it."""
        out, self._pending = self._pending, []
        if self.conn.readable(timeout):
            while True:
                line = self.conn.read_line()
                if line is None:
                    break
                out.append(SessionReply.parse(line))
                if not self.conn.buffered():
                    break
        return out

    def wait_for(self, request_id: int) -> SessionReply:
        """Block until request ``request_id`` answers; other replies are kept for later."""
        for i, reply in enumerate(self._pending):
            if reply.request_id == request_id:
                return self._pending.pop(i)
        while (line := self.conn.read_line()) is not None:
            reply = SessionReply.parse(line)
            if reply.request_id == request_id:
                return reply
            self._pending.append(reply)
        raise ConnectionLost(f"clamd closed the session before answering request {request_id}")

    def ping(self) -> None:
        reply = self.wait_for(self.submit_ping())
        if reply.line != "PONG":
            raise ReplyError(reply.line)

    def version(self) -> str:
        return _reject_check(self.wait_for(self.submit_version()).line)

    def instream(self, data: StreamSource) -> ScanResult:
        return self.wait_for(self.submit_instream(data)).result

    def fildes(self, fd: int | HasFileno) -> ScanResult:
        return self.wait_for(self.submit_fildes(fd)).result

    def end(self) -> list[SessionReply]:
        """Send END and collect every outstanding reply until the daemon closes."""
        out, self._pending = self._pending, []
        if not self._ended:
            self._ended = True
            self.conn.send_command("END")
        while (line := self.conn.read_line()) is not None:
            out.append(SessionReply.parse(line))
        return out

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None and not self._ended:
                self._ended = True
                self.conn.send_command("END")
        finally:
            self.close()
