"""HTTPProxyServer/Port/Username/Password: updates through a tiny loopback forward proxy."""

from __future__ import annotations

import base64
import http.client
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.update.conftest import DATA, Mirror, write_config
from vigil.cli.main import main
from vigil.engine.database import load_database


@dataclass
class Proxy:
    """A forward proxy for plain http:// (absolute-URL requests); CONNECT is not needed."""

    port: int = 0
    credentials: str | None = None  # "user:password" required, or None for an open proxy
    seen: list[tuple[str, str | None]] = field(default_factory=list)  # (target, auth header)


def _proxy_handler(proxy: Proxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            auth = self.headers.get("Proxy-Authorization")
            proxy.seen.append((self.path, auth))
            if proxy.credentials is not None:
                expected = "Basic " + base64.b64encode(proxy.credentials.encode()).decode()
                if auth != expected:
                    self.send_response(407)
                    self.send_header("Proxy-Authenticate", 'Basic realm="test"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
            parts = urlsplit(self.path)
            if parts.scheme != "http" or parts.hostname != "127.0.0.1":
                self.send_error(400, "absolute http URL to 127.0.0.1 expected")
                return
            upstream = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
            try:
                forward = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("proxy-authorization", "connection", "host")
                }
                upstream.request("GET", parts.path or "/", headers=forward)
                resp = upstream.getresponse()
                body = resp.read()
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            finally:
                upstream.close()

    return Handler


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    p = Proxy()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _proxy_handler(p))
    server.daemon_threads = True
    p.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield p
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _update(conf: Path) -> int:
    return main(["update", "--config-file", str(conf), "--update-db", "test"])


def _proxy_config(port: int, user: str | None = None, password: str | None = None) -> str:
    text = f"HTTPProxyServer 127.0.0.1\nHTTPProxyPort {port}\n"
    if user is not None:
        text += f"HTTPProxyUsername {user}\nHTTPProxyPassword {password}\n"
    return text


def test_update_goes_through_the_proxy(
    tmp_path: Path, datadir: Path, mirror: Mirror, proxy: Proxy
) -> None:
    mirror.publish("test.cvd", "test-3.cvd")
    conf = write_config(tmp_path, datadir, mirror, _proxy_config(proxy.port))
    assert _update(conf) == 0
    assert (datadir / "test.cvd").read_bytes() == (DATA / "test-3.cvd").read_bytes()
    # the proxy saw absolute URLs, without credentials; the mirror saw the same requests
    assert proxy.seen == [(f"{mirror.url}/test.cvd", None), (f"{mirror.url}/test.cvd", None)]
    assert [p for p, _ in mirror.requests] == ["/test.cvd", "/test.cvd"]
    assert mirror.requests[0][1] == "bytes=0-511"  # the Range header is passed through


def test_proxy_with_basic_authentication(
    tmp_path: Path, datadir: Path, mirror: Mirror, proxy: Proxy
) -> None:
    proxy.credentials = "alice:s3cr:et"
    mirror.publish("test.cvd", "test-3.cvd")
    conf = write_config(tmp_path, datadir, mirror, _proxy_config(proxy.port, "alice", "s3cr:et"))
    assert _update(conf) == 0
    expected = "Basic " + base64.b64encode(b"alice:s3cr:et").decode()
    assert proxy.seen and all(auth == expected for _, auth in proxy.seen)
    assert load_database([datadir]).versions["test"][0] == 3


def test_proxy_refuses_wrong_credentials(
    tmp_path: Path,
    datadir: Path,
    mirror: Mirror,
    proxy: Proxy,
    capsys: pytest.CaptureFixture[str],
) -> None:
    proxy.credentials = "alice:right"
    mirror.publish("test.cvd", "test-3.cvd")
    for extra in (_proxy_config(proxy.port), _proxy_config(proxy.port, "alice", "wrong")):
        conf = write_config(tmp_path, datadir, mirror, extra)
        assert _update(conf) == 58
        err = capsys.readouterr().err
        assert err.startswith("ERROR: ") and len(err.splitlines()) == 1
        assert "proxy authentication required (HTTP 407)" in err
    assert mirror.requests == []
    assert not (datadir / "test.cvd").exists()


def test_dead_proxy_is_a_clean_network_error(
    tmp_path: Path, datadir: Path, mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    (datadir / "test.cvd").write_bytes((DATA / "test-1.cvd").read_bytes())
    mirror.publish("test.cvd", "test-3.cvd")
    conf = write_config(tmp_path, datadir, mirror, _proxy_config(1))
    assert _update(conf) == 52
    err = capsys.readouterr().err
    assert err.startswith(f"ERROR: {mirror.url}/test.cvd: ") and "refused" in err
    assert len(err.splitlines()) == 1
    assert mirror.requests == []
    assert load_database([datadir]).versions["test"][0] == 1
