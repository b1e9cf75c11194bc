"""HTTP(S) downloads from a database mirror, with freshclam's timeouts, proxy and 429 rules.

Standard library only (http.client): ConnectTimeout bounds the connection, ReceiveTimeout
every read after it, and a body slower than MIN_SPEED over any ReceiveTimeout window is
dropped (a slow-loris mirror). A body past ``max_size``, announced or sent, is refused, and
redirects are not followed: a mirror answers with the file or an error. A 429 becomes
RateLimited carrying the end of the cool-down, so that the caller stops asking instead of
trying again at once.
"""

from __future__ import annotations

import base64
import email.utils
import http.client
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from vigil.update.errors import NetworkError, RateLimited, RemoteError

__all__ = ["DEFAULT_COOL_DOWN", "HttpSettings", "Response", "fetch", "mirror_url"]

# freshclam waits this long after a 429 that names no Retry-After; a Retry-After beyond
# MAX_COOL_DOWN is cut to it so that one bad answer cannot silence updates for ever.
DEFAULT_COOL_DOWN = 3600.0
MAX_COOL_DOWN = 7 * 86400.0
# Far above the largest official database (main.cvd is about 170 MB).
MAX_DOWNLOAD = 1024 * 1024 * 1024
_CHUNK = 64 * 1024
# Slowest acceptable body, bytes per second, averaged over each ReceiveTimeout window.
# freshclam (curl's LOW_SPEED_LIMIT) asks 1 byte/s, which a trickling server meets for ever;
# 1 KiB/s still fits the worst real link and bounds a slow-loris mirror.
MIN_SPEED = 1024


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """Connection settings from freshclam.conf; timeouts in seconds, None for no limit."""

    connect_timeout: float | None = 30.0
    receive_timeout: float | None = 60.0
    proxy_host: str | None = None
    proxy_port: int | None = None
    proxy_user: str | None = None
    proxy_password: str | None = None
    user_agent: str = "Vigil-Update"
    max_size: int = MAX_DOWNLOAD


@dataclass(frozen=True, slots=True)
class Response:
    """A finished answer: 200, 206, 304 or 404 (others raise)."""

    status: int
    body: bytes
    headers: Mapping[str, str]


def mirror_url(mirror: str) -> str:
    """A DatabaseMirror/PrivateMirror value as a base URL (bare hosts mean https)."""
    base = mirror if "://" in mirror else f"https://{mirror}"
    return base.rstrip("/")


def fetch(
    url: str,
    settings: HttpSettings,
    *,
    headers: Mapping[str, str] | None = None,
    limit: int | None = None,
    now: float | None = None,
) -> Response:
    """GET ``url``; read at most ``limit`` bytes of the body (the rest is dropped).

    Raises RateLimited for 429, NetworkError for connection trouble, timeouts and 5xx,
    RemoteError for any other unexpected status.
    """
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port out of range
    except ValueError as exc:
        raise RemoteError(f"{_clean(url)}: bad URL ({exc})") from None
    if parts.scheme == "file":
        return _fetch_file(Path(unquote(parts.path)), limit)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RemoteError(f"{url}: unsupported URL (use http://, https:// or file://)")
    conn = _connection(parts.scheme, parts.hostname, port, settings)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    send = {"User-Agent": settings.user_agent, "Accept": "*/*", **(headers or {})}
    if settings.proxy_host and parts.scheme == "http":
        target = url  # a plain-HTTP proxy wants the absolute URL
        send.update(_proxy_auth(settings))
    try:
        try:
            conn.connect()
            if conn.sock is not None:
                conn.sock.settimeout(settings.receive_timeout)
            conn.request("GET", target, headers=send)
            resp = conn.getresponse()
            status = resp.status
            got = {k.lower(): v for k, v in resp.getheaders()}
            if status == 429:
                raise RateLimited(
                    f"{url}: the mirror is rate limiting us (HTTP 429)",
                    _retry_after(got.get("retry-after"), time.time() if now is None else now),
                )
            if status == 407:
                raise RemoteError(f"{url}: proxy authentication required (HTTP 407)")
            if status >= 500:
                raise NetworkError(f"{url}: server error (HTTP {status} {resp.reason})")
            if status not in (200, 206, 304, 404):
                raise RemoteError(f"{url}: unexpected answer (HTTP {status} {resp.reason})")
            if status in (304, 404):
                body = b""
            else:
                _check_length(got.get("content-length"), limit, settings.max_size, url)
                body = _read(resp, limit, settings, url)
        finally:
            conn.close()
    except (TimeoutError, ssl.SSLError, OSError, http.client.HTTPException) as exc:
        raise NetworkError(f"{_clean(url)}: {_describe(exc)}") from None
    except (ValueError, UnicodeError) as exc:  # a URL http.client cannot send
        raise RemoteError(f"{_clean(url)}: bad URL ({type(exc).__name__})") from None
    return Response(status, body, got)


def _connection(
    scheme: str, host: str, port: int | None, settings: HttpSettings
) -> http.client.HTTPConnection:
    timeout = settings.connect_timeout
    if settings.proxy_host:
        proxy_port = settings.proxy_port or 8080
        if scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                settings.proxy_host, proxy_port, timeout=timeout
            )
            conn.set_tunnel(host, port or 443, headers=_proxy_auth(settings))
            return conn
        return http.client.HTTPConnection(settings.proxy_host, proxy_port, timeout=timeout)
    if scheme == "https":
        return http.client.HTTPSConnection(
            host, port, timeout=timeout, context=ssl.create_default_context()
        )
    return http.client.HTTPConnection(host, port, timeout=timeout)


def _proxy_auth(settings: HttpSettings) -> dict[str, str]:
    if not settings.proxy_user:
        return {}
    pair = f"{settings.proxy_user}:{settings.proxy_password or ''}".encode()
    return {"Proxy-Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}


def _check_length(value: str | None, limit: int | None, cap: int, url: str) -> None:
    """Refuse at once a body announced larger than ``cap`` (unless only a prefix is read)."""
    if limit is not None or value is None or not value.strip().isdigit():
        return
    if int(value) > cap:
        raise RemoteError(f"{url}: the mirror announces {int(value)} bytes, more than {cap}")


def _read(
    resp: http.client.HTTPResponse, limit: int | None, settings: HttpSettings, url: str
) -> bytes:
    """Read the body as it arrives, stopping at ``limit``; more than ``max_size`` bytes, or
    less than MIN_SPEED per second over a ReceiveTimeout window, is an error."""
    cap = settings.max_size
    want = cap + 1 if limit is None else min(limit, cap + 1)
    window = settings.receive_timeout
    parts: list[bytes] = []
    size = 0
    started, at_start = time.monotonic(), 0
    while size < want:
        chunk = resp.read1(min(_CHUNK, want - size))
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
        if window:
            now = time.monotonic()
            if now - started >= window:
                if size - at_start < MIN_SPEED * window:
                    raise NetworkError(
                        f"{url}: the mirror is too slow (under {MIN_SPEED} bytes/s "
                        f"for {window:g} s)"
                    )
                started, at_start = now, size
    if limit is None and size > cap:
        raise RemoteError(f"{url}: answer is larger than {cap} bytes")
    return b"".join(parts)


def _fetch_file(path: Path, limit: int | None) -> Response:
    """DatabaseCustomURL may name a local file (file://), as in freshclam."""
    try:
        with open(path, "rb") as fh:
            data = fh.read() if limit is None else fh.read(limit)
    except FileNotFoundError:
        return Response(404, b"", {})
    except OSError as exc:
        raise RemoteError(f"{path}: cannot read: {exc.strerror}") from None
    return Response(200, data, {})


def _retry_after(value: str | None, now: float) -> float:
    """End of the cool-down from a Retry-After of seconds or an HTTP date."""
    delay = DEFAULT_COOL_DOWN
    if value:
        text = value.strip()
        if text.isdigit():
            delay = float(text)
        else:
            try:
                delay = email.utils.parsedate_to_datetime(text).timestamp() - now
            except (TypeError, ValueError):
                delay = DEFAULT_COOL_DOWN
    return now + min(max(delay, 0.0), MAX_COOL_DOWN)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, http.client.IncompleteRead):
        return "connection closed before the whole file arrived"
    if isinstance(exc, http.client.BadStatusLine):
        return "the answer is not HTTP"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower() if exc.strerror[:1].isupper() else exc.strerror
    return _clean(str(exc)) or type(exc).__name__


def _clean(text: str, size: int = 200) -> str:
    """Text from the network or a config, safe for one log line: control and undecodable
    characters escaped, at most ``size`` characters."""
    out = "".join(c if c.isprintable() else f"\\x{ord(c) & 0xFF:02x}" for c in text[:size])
    return out + ("..." if len(text) > size else "")
