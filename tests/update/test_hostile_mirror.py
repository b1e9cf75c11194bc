"""Mirrors that misbehave at the HTTP level: endless or huge bodies, slow-loris, redirects.

Each case must end in one clean error line, leave the installed database untouched and
return within a bounded time.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.update.conftest import DATA, Mirror, write_config
from vigil.cli.main import main
from vigil.engine.database import load_database
from vigil.update import mirror as mirror_module
from vigil.update import store

HEAD = (DATA / "test-3.cvd").read_bytes()[:512]


class RawServer:
    """A loopback TCP server answering every connection with ``behave(conn, request)``."""

    def __init__(self, behave: Callable[[socket.socket, bytes], None]) -> None:
        self.behave = behave
        self.stop = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.threads: list[threading.Thread] = []
        self.accepter = threading.Thread(target=self._accept, daemon=True)
        self.accepter.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            worker = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            worker.start()
            self.threads.append(worker)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                request = conn.recv(65536)
                self.behave(conn, request)
            except OSError:
                pass  # the client hung up, as it should

    def close(self) -> None:
        self.stop.set()
        self.accepter.join(5)
        self.sock.close()
        for worker in self.threads:
            worker.join(5)


@pytest.fixture
def raw() -> Iterator[Callable[[Callable[[socket.socket, bytes], None]], RawServer]]:
    servers: list[RawServer] = []

    def make(behave: Callable[[socket.socket, bytes], None]) -> RawServer:
        servers.append(RawServer(behave))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def _body_request(request: bytes) -> bool:
    """True for the whole-file download, False for the 512-byte header probe."""
    return b"Range:" not in request


def _old(datadir: Path) -> None:
    (datadir / "test.cvd").write_bytes((DATA / "test-1.cvd").read_bytes())


def _kept(datadir: Path) -> None:
    assert (datadir / "test.cvd").read_bytes() == (DATA / "test-1.cvd").read_bytes()
    assert not (datadir / store.STAGING).exists()
    assert load_database([datadir]).versions["test"][0] == 1


def _run(tmp_path: Path, datadir: Path, url: str) -> tuple[int, float]:
    conf = write_config(tmp_path, datadir, Mirror(tmp_path), "ScriptedUpdates no\n")
    conf.write_text(conf.read_text().replace("http://127.0.0.1:0", url))
    started = time.monotonic()
    status = main(["update", "--config-file", str(conf), "--update-db", "test"])
    return status, time.monotonic() - started


def _send_header_probe(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 206 Partial\r\nContent-Length: 512\r\n\r\n" + HEAD)


def test_endless_body_is_bounded(
    tmp_path: Path,
    datadir: Path,
    raw: Callable[[Callable[[socket.socket, bytes], None]], RawServer],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(mirror_module, "MAX_DOWNLOAD", 2 * 1024 * 1024)

    def endless(conn: socket.socket, request: bytes) -> None:
        if not _body_request(request):
            _send_header_probe(conn)
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + HEAD)
        block = bytes(65536)
        for _ in range(1000):  # 64 MiB at most, far past the cap
            conn.sendall(block)

    _old(datadir)
    status, took = _run(tmp_path, datadir, raw(endless).url)
    err = capsys.readouterr().err
    assert status == 58 and "larger than 2097152 bytes" in err and len(err.splitlines()) == 1
    assert took < 20
    _kept(datadir)


def test_huge_content_length_refused_before_reading(
    tmp_path: Path,
    datadir: Path,
    raw: Callable[[Callable[[socket.socket, bytes], None]], RawServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    def huge(conn: socket.socket, request: bytes) -> None:
        if not _body_request(request):
            _send_header_probe(conn)
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999999\r\n\r\n" + HEAD)
        time.sleep(1.5)  # a client that waited for the body would time out instead

    _old(datadir)
    status, took = _run(tmp_path, datadir, raw(huge).url)
    err = capsys.readouterr().err
    assert status == 58 and "announces 999999999999999 bytes" in err
    assert took < 1
    _kept(datadir)


def test_slow_loris_mirror_is_dropped(
    tmp_path: Path,
    datadir: Path,
    raw: Callable[[Callable[[socket.socket, bytes], None]], RawServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A byte every 50 ms never trips a per-read timeout (ReceiveTimeout 1 s here)."""

    def trickle(conn: socket.socket, request: bytes) -> None:
        if not _body_request(request):
            _send_header_probe(conn)
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        for byte in HEAD * 4:
            conn.sendall(bytes([byte]))
            time.sleep(0.05)

    _old(datadir)
    status, took = _run(tmp_path, datadir, raw(trickle).url)
    err = capsys.readouterr().err
    assert status == 52 and "too slow" in err and len(err.splitlines()) == 1
    assert took < 10
    _kept(datadir)


def test_slow_header_probe_is_dropped(
    tmp_path: Path,
    datadir: Path,
    raw: Callable[[Callable[[socket.socket, bytes], None]], RawServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    def trickle(conn: socket.socket, request: bytes) -> None:
        conn.sendall(b"HTTP/1.1 206 Partial\r\nContent-Length: 512\r\n\r\n")
        for byte in HEAD:
            conn.sendall(bytes([byte]))
            time.sleep(0.05)

    _old(datadir)
    status, took = _run(tmp_path, datadir, raw(trickle).url)
    assert status == 52 and "too slow" in capsys.readouterr().err
    assert took < 10
    _kept(datadir)


def test_redirect_loop_is_a_clean_error(
    tmp_path: Path,
    datadir: Path,
    raw: Callable[[Callable[[socket.socket, bytes], None]], RawServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    server: list[RawServer] = []

    def loop(conn: socket.socket, request: bytes) -> None:
        conn.sendall(
            f"HTTP/1.1 302 Found\r\nLocation: {server[0].url}/test.cvd\r\n"
            "Content-Length: 0\r\n\r\n".encode()
        )

    server.append(raw(loop))
    _old(datadir)
    status, took = _run(tmp_path, datadir, server[0].url)
    err = capsys.readouterr().err
    assert status == 58 and "unexpected answer (HTTP 302 Found)" in err
    assert len(err.splitlines()) == 1 and took < 5
    _kept(datadir)


@pytest.mark.parametrize(
    "answer",
    [
        b"\x00\x01garbage\xff\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nnot a cvd!\r\n",
        b"HTTP/1.1 206 Partial\r\nContent-Length: 600\r\n\r\n" + b"ClamAV-VDB:" + bytes(500),
        b"HTTP/1.1 200 OK\r\nContent-Length: 512\r\n\r\n",  # closed before the body
    ],
    ids=["not-http", "short-garbage", "bad-header", "cut-off"],
)
def test_garbage_answers(
    tmp_path: Path,
    datadir: Path,
    raw: Callable[[Callable[[socket.socket, bytes], None]], RawServer],
    answer: bytes,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def garbage(conn: socket.socket, request: bytes) -> None:
        conn.sendall(answer)

    _old(datadir)
    status, _ = _run(tmp_path, datadir, raw(garbage).url)
    err = capsys.readouterr().err
    assert status in (52, 58) and err.startswith("ERROR: ") and len(err.splitlines()) == 1
    assert "Traceback" not in err and "\x00" not in err
    _kept(datadir)
