"""A local database mirror for updater tests: http.server on 127.0.0.1, files from tmp_path.

``mirror.mode`` switches the answers: "ok", "404", "429", "slow", "html", "corrupt".
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "data" / "clamav-unit" / "freshclam_testfiles"


@dataclass
class Mirror:
    root: Path
    port: int = 0
    mode: str = "ok"
    retry_after: str | None = "120"
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def publish(self, name: str, source: str) -> None:
        """Serve test data file ``source`` as ``name``."""
        (self.root / name).write_bytes((DATA / source).read_bytes())


def _handler(mirror: Mirror) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            mirror.requests.append((self.path, self.headers.get("Range")))
            if mirror.mode == "429":
                self.send_response(429)
                if mirror.retry_after is not None:
                    self.send_header("Retry-After", mirror.retry_after)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if mirror.mode == "slow":
                mirror.release.wait(10)
                return
            if mirror.mode == "html":
                self._send(200, b"<html><body>Welcome to our portal</body></html>\n")
                return
            path = mirror.root / self.path.lstrip("/")
            if mirror.mode == "404" or not path.is_file():
                self._send(404, b"not found\n")
                return
            data = path.read_bytes()
            if mirror.mode == "corrupt" and len(data) > 1024:
                data = data[:1000] + bytes([data[1000] ^ 0xFF]) + data[1001:]
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes=0-"):
                end = int(rng.split("-", 1)[1]) + 1
                self._send(206, data[:end])
                return
            self._send(200, data)

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[Mirror]:
    root = tmp_path / "mirror"
    root.mkdir()
    m = Mirror(root)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(m))
    server.daemon_threads = True
    m.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield m
    finally:
        m.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def datadir(tmp_path: Path) -> Path:
    path = tmp_path / "db"
    path.mkdir()
    return path


def write_config(path: Path, datadir: Path, mirror: Mirror, extra: str = "") -> Path:
    """A freshclam.conf for the test mirror: one attempt, short timeouts, no bytecode."""
    conf = path / "freshclam.conf"
    conf.write_text(
        f"DatabaseDirectory {datadir}\nPrivateMirror {mirror.url}\nMaxAttempts 1\n"
        f"ConnectTimeout 2\nReceiveTimeout 1\nBytecode no\n{extra}"
    )
    return conf
