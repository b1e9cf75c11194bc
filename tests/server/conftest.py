"""Shared helpers for daemon tests: start vigild from a generated config in a temp dir."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_HDB = "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n"
MARKER = b"VIGIL-RELOAD-MARKER-0123456789"


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    sock: str
    root: Path

    def send(self, data: bytes, timeout: float = 10.0) -> bytes:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(self.sock)
            s.sendall(data)
            out = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        return out

    def instream(self, data: bytes) -> bytes:
        return self.send(b"zINSTREAM\x00" + struct.pack(">I", len(data)) + data + b"\0\0\0\0")


def start(root: Path, extra: str = "") -> Daemon:
    sock = str(root / "v.sock")
    conf = root / "vigild.conf"
    conf.write_text(
        f"LocalSocket {sock}\nDatabaseDirectory {root / 'db'}\nForeground yes\n"
        f"PidFile {root / 'vigild.pid'}\nLogFile {root / 'vigild.log'}\nLogVerbose yes\n"
        f"SelfCheck 0\n{extra}"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "vigil.cli.vigild", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    d = Daemon(proc, sock, root)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"vigild died: {(root / 'vigild.log').read_text()}")
        try:
            if d.send(b"zPING\x00", timeout=2) == b"PONG\x00":
                return d
        except OSError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("vigild did not answer PING")


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="vgl", dir="/tmp"))
    (path / "db").mkdir()
    (path / "db" / "test.hdb").write_text(EICAR_HDB)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def stop(d: Daemon) -> None:
    """SIGTERM, then SIGKILL if the daemon does not exit within 10 s."""
    if d.proc.poll() is None:
        d.proc.terminate()
    try:
        d.proc.wait(10)
    except subprocess.TimeoutExpired:
        d.proc.kill()
        d.proc.wait()


def running(root: Path, extra: str) -> Iterator[Daemon]:
    """A daemon for a fixture: started with ``extra`` options, always stopped."""
    d = start(root, extra)
    try:
        yield d
    finally:
        stop(d)
