"""Hostile and careless clients: the daemon answers as clamd would, stays up, leaks nothing."""

from __future__ import annotations

import os
import random
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.conftest import EICAR, Daemon, running


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


@pytest.fixture
def daemon(root: Path) -> Iterator[Daemon]:
    yield from running(root, "CommandReadTimeout 1\nReadTimeout 1\nStreamMaxLength 1M\n")


def settle(daemon: Daemon, baseline: int, limit: float = 15.0) -> int:
    """Wait for the descriptor count to come back to ``baseline``; return the last count."""
    deadline = time.monotonic() + limit
    count = open_fds(daemon.proc.pid)
    while count > baseline and time.monotonic() < deadline:
        time.sleep(0.2)
        count = open_fds(daemon.proc.pid)
    return count


def test_garbage_connections_leak_nothing(daemon: Daemon) -> None:
    daemon.send(b"zPING\x00")
    baseline = open_fds(daemon.proc.pid)
    rng = random.Random(3)
    replies = set()
    for _ in range(300):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(daemon.sock)
            payload = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
            try:
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
            except OSError:
                data = b"<reset>"
            replies.add(data[:60])
    assert daemon.send(b"zPING\x00") == b"PONG\x00"
    assert not any(b"Traceback" in r or b"Error:" in r for r in replies)
    assert settle(daemon, baseline) <= baseline


def test_idle_and_half_sent_clients_time_out(daemon: Daemon) -> None:
    daemon.send(b"zPING\x00")
    baseline = open_fds(daemon.proc.pid)
    socks = []
    for i in range(100):
        s = socket.socket(socket.AF_UNIX)
        s.connect(daemon.sock)
        if i % 3 == 1:
            s.sendall(b"zINSTREAM\x00" + struct.pack(">I", 100) + b"abc")  # half a chunk
        elif i % 3 == 2:
            s.sendall(b"zPIN")  # half a command
        socks.append(s)
    # others are still served meanwhile
    assert daemon.instream(EICAR) == b"stream: Eicar-Test-Signature.UNOFFICIAL FOUND\x00"
    time.sleep(3)
    for s in socks:
        s.settimeout(5)
        data = b""
        try:
            while chunk := s.recv(4096):
                data += chunk
        except OSError:
            pass
        assert data == b"COMMAND READ TIMED OUT\n"
        s.close()
    assert settle(daemon, baseline) <= baseline


def test_oversized_chunk_and_limit(daemon: Daemon) -> None:
    assert (
        daemon.send(b"zINSTREAM\x00\xff\xff\xff\xff") == b"INSTREAM size limit exceeded. ERROR\x00"
    )
    big = struct.pack(">I", 2 << 20) + b"x" * 100
    assert daemon.send(b"nINSTREAM\n" + big) == b"INSTREAM size limit exceeded. ERROR\n"


def test_many_concurrent_instreams(daemon: Daemon) -> None:
    import concurrent.futures

    daemon.send(b"zPING\x00")
    baseline_threads = threads(daemon.proc.pid)
    payload = EICAR
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda _: daemon.instream(payload), range(100)))
    assert all(r.endswith(b"FOUND\x00") for r in results)
    assert threads(daemon.proc.pid) <= baseline_threads + 12  # the scan pool, bounded


def test_client_that_never_reads_does_not_block_others(daemon: Daemon, root: Path) -> None:
    big_dir = root / "many"
    big_dir.mkdir()
    for i in range(300):
        (big_dir / f"e{i}.com").write_bytes(EICAR)
    lazy = socket.socket(socket.AF_UNIX)
    lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    lazy.connect(daemon.sock)
    lazy.sendall(f"nCONTSCAN {big_dir}\n".encode())
    time.sleep(0.5)
    assert daemon.send(b"zPING\x00") == b"PONG\x00"
    assert daemon.instream(EICAR).endswith(b"FOUND\x00")
    lazy.close()


def test_systemd_socket_activation(root: Path) -> None:
    sock_path = str(root / "activated.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(sock_path)
    listener.listen(16)
    conf = root / "act.conf"
    conf.write_text(
        f"DatabaseDirectory {root / 'db'}\nForeground yes\nLocalSocket {root / 'x.sock'}\n"
    )
    fd = listener.fileno()
    launcher = (
        "import os, sys;"
        f"os.dup2({fd}, 3);"
        "os.environ['LISTEN_FDS'] = '1'; os.environ['LISTEN_PID'] = str(os.getpid());"
        f"os.execv(sys.executable, [sys.executable, '-m', 'vigil.cli.vigild', '-c', {str(conf)!r}])"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", launcher], pass_fds=(fd,), stderr=subprocess.DEVNULL
    )
    listener.close()
    try:
        deadline = time.monotonic() + 60
        reply = b""
        while time.monotonic() < deadline and reply != b"PONG\x00":
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.settimeout(5)
                    s.connect(sock_path)
                    s.sendall(b"zPING\x00")
                    reply = s.recv(100)
            except OSError:
                time.sleep(0.2)
        assert reply == b"PONG\x00"
        assert not (root / "x.sock").exists()  # the inherited socket replaces LocalSocket
    finally:
        proc.terminate()
        proc.wait(10)
