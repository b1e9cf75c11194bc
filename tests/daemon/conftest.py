"""Start clamd-compatible daemons (Debian's clamd or Vigil's vigild) for wire-level tests.

Every daemon runs from a generated clamd.conf in a short private directory under /tmp (Unix
socket paths are limited to ~100 bytes), listens on a Unix socket and on 127.0.0.1 only, and is
stopped (SIGTERM, then SIGKILL) and its directory removed at teardown. The ``kind`` fixture
runs each test once per daemon: "clamd" (skipped when the real clamd is not installed) and
"vigild" (skipped until ``vigil.cli.vigild`` exists).
"""

from __future__ import annotations

import array
import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

KINDS = ("clamd", "vigild")
CLAMD = shutil.which("clamd") or ("/usr/sbin/clamd" if os.path.exists("/usr/sbin/clamd") else None)
HAVE_VIGILD = importlib.util.find_spec("vigil.cli.vigild") is not None

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_HDB = "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n"
SIG = b"Eicar-Test-Signature.UNOFFICIAL"

START_TIMEOUT = 60.0
IO_TIMEOUT = 10.0

# An option list as it appears in clamd.conf: one (name, value) pair per line, in order.
Options = Sequence[tuple[str, str]]


def skip_reason(kind: str) -> str | None:
    """Why daemons of this kind cannot run here, or None when they can."""
    if kind == "clamd" and CLAMD is None:
        return "Debian's clamd is not installed"
    if kind == "vigild" and not HAVE_VIGILD:
        return "vigil.cli.vigild does not exist yet (the daemon is being written)"
    return None


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Conn:
    """A client connection with a receive buffer, so replies can be read line by line."""

    def __init__(self, sock: socket.socket, timeout: float = IO_TIMEOUT) -> None:
        self.sock = sock
        self.buf = b""
        self.reset = False  # the peer reset the connection (ECONNRESET) while we read
        sock.settimeout(timeout)

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_fds(self, data: bytes, fds: Sequence[int]) -> None:
        """One ``sendmsg()`` carrying ``data`` and the descriptors as SCM_RIGHTS."""
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
        sent = self.sock.sendmsg([data], anc)
        assert sent == len(data)

    def half_close(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def _fill(self, deadline: float) -> bool:
        """Read one chunk into the buffer; False at EOF (or reset)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no reply within the deadline")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            self.reset = True
            return False
        except TimeoutError as exc:
            raise TimeoutError(f"timed out; received so far: {self.buf!r}") from exc
        if not chunk:
            return False
        self.buf += chunk
        return True

    def read_until(self, terminator: bytes, timeout: float = IO_TIMEOUT) -> bytes:
        """Everything up to and including the next ``terminator`` (at EOF: whatever is left)."""
        deadline = time.monotonic() + timeout
        while terminator not in self.buf:
            if not self._fill(deadline):
                out, self.buf = self.buf, b""
                return out
        end = self.buf.index(terminator) + len(terminator)
        out, self.buf = self.buf[:end], self.buf[end:]
        return out

    def read_all(self, timeout: float = IO_TIMEOUT) -> bytes:
        """Everything until the server closes the connection."""
        deadline = time.monotonic() + timeout
        while self._fill(deadline):
            pass
        out, self.buf = self.buf, b""
        return out


@dataclass
class Daemon:
    """A running daemon and the files it can scan (under ``files``, i.e. ``<tmp>/t``)."""

    kind: str
    tmp: Path
    conf: Path
    socket_path: Path
    tcp_port: int
    pid_file: Path
    log_file: Path
    proc: subprocess.Popen[bytes]
    _version: str | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def files(self) -> Path:
        return self.tmp / "t"

    def path(self, rel: str = "") -> str:
        """Absolute path of a fixture file as a string (``rel`` "" is the ``t`` dir itself)."""
        return str(self.files / rel) if rel else str(self.files)

    def bpath(self, rel: str = "") -> bytes:
        return os.fsencode(self.path(rel))

    def connect(self, *, tcp: bool = False, timeout: float = IO_TIMEOUT) -> Conn:
        if tcp:
            sock = socket.create_connection(("127.0.0.1", self.tcp_port), timeout=timeout)
        else:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(str(self.socket_path))
            except OSError:
                sock.close()
                raise
        return Conn(sock, timeout)

    def request(
        self,
        data: bytes,
        *,
        tcp: bool = False,
        timeout: float = IO_TIMEOUT,
        half_close: bool = False,
    ) -> bytes:
        """Send ``data`` on a fresh connection and return every byte until the server closes."""
        with self.connect(tcp=tcp, timeout=timeout) as conn:
            conn.send(data)
            if half_close:
                conn.half_close()
            return conn.read_all(timeout)

    @property
    def version(self) -> str:
        """The version string ``<V>`` (everything after ``ClamAV `` in the VERSION reply)."""
        if self._version is None:
            reply = self.request(b"zVERSION\x00")
            assert reply.startswith(b"ClamAV ") and reply.endswith(b"\x00"), reply
            self._version = reply[len(b"ClamAV ") : -1].decode()
        return self._version

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        parts = []
        for name in ("daemon.out", self.log_file.name):
            p = self.tmp / name
            if p.exists():
                parts.append(f"--- {name} ---\n{p.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    def normalise(self, reply: bytes) -> bytes:
        """Replace what legitimately differs between daemons and runs with placeholders.

        The private directory becomes ``<TMP>``, the version string ``<V>`` and descriptor
        numbers ``fd[N]``.
        """
        out = reply.replace(os.fsencode(str(self.tmp)), b"<TMP>")
        out = out.replace(b"ClamAV " + self.version.encode(), b"ClamAV <V>")
        return re.sub(rb"fd\[\d+\]", b"fd[N]", out)


def make_fixture_files(files: Path) -> None:
    """The scan targets of the spec's §11 (``/t/...``), inside the daemon's directory."""
    files.mkdir()
    (files / "clean.txt").write_bytes(b"hello world\n")
    (files / "eicar.com").write_bytes(EICAR)
    (files / "d").mkdir()
    (files / "d" / "clean.txt").write_bytes(b"hello world\n")
    (files / "v").mkdir()
    (files / "v" / "a.com").write_bytes(EICAR)
    (files / "v" / "b.com").write_bytes(EICAR)
    (files / "empty").mkdir()
    os.mkfifo(files / "fifo")
    (files / "big").write_bytes(b"\x00" * 501)
    (files / "with space.com").write_bytes(EICAR)
    (files / "empty.txt").write_bytes(b"")
    (files / "link.com").symlink_to(files / "eicar.com")
    (files / "mixed").mkdir()
    (files / "mixed" / "clean.txt").write_bytes(b"hello world\n")
    (files / "mixed" / "sub").mkdir()
    (files / "mixed" / "sub" / "x.com").write_bytes(EICAR)


def write_conf(tmp: Path, port: int, extra: Options) -> Path:
    lines = [
        ("LocalSocket", str(tmp / "clamd.sock")),
        ("TCPSocket", str(port)),
        ("TCPAddr", "127.0.0.1"),
        ("DatabaseDirectory", str(tmp / "db")),
        ("TemporaryDirectory", str(tmp / "scratch")),
        ("Foreground", "yes"),
        ("LogFile", str(tmp / "daemon.log")),
        ("PidFile", str(tmp / "daemon.pid")),
        *extra,
    ]
    conf = tmp / "clamd.conf"
    conf.write_text("".join(f"{name} {value}\n" for name, value in lines))
    return conf


def command_for(kind: str, conf: Path) -> list[str]:
    if kind == "clamd":
        assert CLAMD is not None
        return [CLAMD, "-c", str(conf), "--foreground"]
    return [sys.executable, "-m", "vigil.cli.vigild", "-c", str(conf), "--foreground"]


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
    """SIGTERM, wait, SIGKILL as a last resort; returns the exit status."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    return proc.returncode


def wait_ready(daemon: Daemon, timeout: float = START_TIMEOUT) -> None:
    """Poll PING on the Unix socket until PONG arrives."""
    deadline = time.monotonic() + timeout
    while True:
        if not daemon.alive():
            raise RuntimeError(
                f"{daemon.kind} exited with {daemon.proc.returncode} during start-up\n"
                + daemon.log_text()
            )
        with contextlib.suppress(OSError):
            if daemon.request(b"zPING\x00", timeout=2.0) == b"PONG\x00":
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{daemon.kind} did not answer PING\n" + daemon.log_text())
        time.sleep(0.05)


@contextlib.contextmanager
def running_daemon(
    kind: str, extra: Options = (), databases: Sequence[Path] = ()
) -> Iterator[Daemon]:
    """Start a daemon of ``kind`` with the base config plus ``extra`` options; stop it after.

    ``extra`` values may contain ``{T}``, replaced by the fixture-file directory;
    ``databases`` are copied into its database directory beside the EICAR signature.
    """
    reason = skip_reason(kind)
    if reason is not None:
        pytest.skip(reason)
    tmp = Path(tempfile.mkdtemp(prefix="vg", dir="/tmp"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        (tmp / "db").mkdir()
        (tmp / "db" / "test.hdb").write_text(EICAR_HDB)
        for db in databases:
            shutil.copyfile(db, tmp / "db" / db.name)
        (tmp / "scratch").mkdir()
        make_fixture_files(tmp / "t")
        port = free_tcp_port()
        opts = [(name, value.replace("{T}", str(tmp / "t"))) for name, value in extra]
        conf = write_conf(tmp, port, opts)
        with open(tmp / "daemon.out", "wb") as out:
            proc = subprocess.Popen(
                command_for(kind, conf),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=tmp,
            )
        daemon = Daemon(
            kind=kind,
            tmp=tmp,
            conf=conf,
            socket_path=tmp / "clamd.sock",
            tcp_port=port,
            pid_file=tmp / "daemon.pid",
            log_file=tmp / "daemon.log",
            proc=proc,
        )
        wait_ready(daemon)
        yield daemon
    finally:
        if proc is not None:
            stop_process(proc)
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module", params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """The daemon implementation under test; skipped when it is not available."""
    name: str = request.param
    reason = skip_reason(name)
    if reason is not None:
        pytest.skip(reason)
    return name


@pytest.fixture(scope="module")
def daemon(kind: str) -> Iterator[Daemon]:
    """A daemon with the default configuration (shared by a whole module)."""
    with running_daemon(kind) as d:
        yield d


DaemonFactory = Callable[[str, Options], contextlib.AbstractContextManager[Daemon]]


@pytest.fixture(scope="session")
def daemon_factory() -> DaemonFactory:
    """``with daemon_factory(kind, extra_options) as d:`` starts one more daemon."""
    return running_daemon
