"""Regressions for problems an independent review found in vigild (one test each)."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.conftest import EICAR, MARKER, Daemon, running
from tests.server.test_hostile_clients import open_fds, settle
from tests.server.test_lifecycle import wait_for


@pytest.fixture
def daemon(root: Path) -> Iterator[Daemon]:
    yield from running(root, "ReadTimeout 2\nStreamMaxLength 10\n")


def fildes(d: Daemon, fd: int, prefix: bytes = b"") -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(d.sock)
    if prefix:
        s.sendall(prefix)
    socket.send_fds(s, [b"zFILDES\x00X"], [fd])
    return s


def test_file_truncated_during_a_scan_does_not_kill_the_daemon(daemon: Daemon) -> None:
    big = daemon.root / "big.bin"
    for _ in range(3):
        big.write_bytes(b"\x00" * (40 << 20))
        with open(big, "r+b") as fh:
            s = fildes(daemon, fh.fileno())
            os.ftruncate(fh.fileno(), 0)
            s.close()
    assert daemon.send(b"zPING\x00") == b"PONG\x00"


def test_fildes_in_a_session_then_eof_leaks_no_descriptor(daemon: Daemon) -> None:
    daemon.send(b"zPING\x00")
    baseline = open_fds(daemon.proc.pid)
    clean = daemon.root / "clean.txt"
    clean.write_text("hello\n")
    for _ in range(60):
        with open(clean, "rb") as fh:
            s = fildes(daemon, fh.fileno(), prefix=b"zIDSESSION\x00")
            s.shutdown(socket.SHUT_WR)
            s.close()
    assert settle(daemon, baseline) <= baseline


def test_descriptors_sent_with_other_data_are_not_hoarded(daemon: Daemon) -> None:
    daemon.send(b"zPING\x00")
    baseline = open_fds(daemon.proc.pid)
    with open(daemon.root / "db" / "test.hdb", "rb") as fh:
        s = socket.socket(socket.AF_UNIX)
        s.connect(daemon.sock)
        s.sendall(b"zINSTREAM\x00" + struct.pack(">I", 10))
        for _ in range(9):  # stays inside the 10-byte chunk: 72 descriptors arrive
            socket.send_fds(s, [b"a"], [fh.fileno()] * 8)
        time.sleep(0.3)
        assert open_fds(daemon.proc.pid) <= baseline + 4
        s.close()


def test_stream_max_length_counts_exactly(daemon: Daemon) -> None:
    exact = b"\x00\x00\x00\x0a" + b"a" * 10 + b"\x00\x00\x00\x01b"
    assert daemon.send(b"zINSTREAM\x00" + exact) == b"INSTREAM size limit exceeded. ERROR\x00"
    ok = b"\x00\x00\x00\x0a" + b"a" * 10 + b"\x00\x00\x00\x00"
    assert daemon.send(b"zINSTREAM\x00" + ok) == b"stream: OK\x00"


def test_session_timer_restarts_after_a_slow_instream(daemon: Daemon) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(daemon.sock)
        s.sendall(b"zIDSESSION\x00zINSTREAM\x00")
        for _ in range(3):  # 3 s of upload, each piece within ReadTimeout
            s.sendall(b"\x00\x00\x00\x01x")
            time.sleep(1)
        s.sendall(b"\x00\x00\x00\x00")
        time.sleep(0.3)
        s.sendall(b"zPING\x00zEND\x00")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    assert data == b"1: stream: OK\x002: PONG\x00"


def test_reload_survives_an_unexpected_loader_error(daemon: Daemon) -> None:
    deep = "(" * 5000 + "0" + ")" * 5000
    (daemon.root / "db" / "deep.ldb").write_text(f"Deep;Target:0;{deep};414243\n")
    assert daemon.send(b"nRELOAD\n") == b"RELOADING\n"
    log = daemon.root / "vigild.log"
    assert wait_for(lambda: "keeping the previous instance" in log.read_text())
    (daemon.root / "db" / "deep.ldb").unlink()
    (daemon.root / "db" / "new.ndb").write_text(f"Marker:0:*:{MARKER[:8].hex()}\n")
    assert daemon.send(b"nRELOAD\n") == b"RELOADING\n"
    payload = b"\x00\x00\x00\x0a" + MARKER[:8] + b"\x00\x00" + b"\x00\x00\x00\x00"
    assert wait_for(lambda: b"FOUND" in daemon.send(b"zINSTREAM\x00" + payload))


def test_second_instance_leaves_the_first_ones_pidfile(daemon: Daemon) -> None:
    pid = daemon.root / "vigild.pid"
    second = subprocess.run(
        [sys.executable, "-m", "vigil.cli.vigild", "-c", str(daemon.root / "vigild.conf")],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert second.returncode != 0
    assert pid.read_text() == f"{daemon.proc.pid}\n"
    assert daemon.send(b"zPING\x00") == b"PONG\x00"


def test_eicar_still_found(daemon: Daemon) -> None:
    assert daemon.send(b"zPING\x00") == b"PONG\x00"
    with open(daemon.root / "e.com", "wb") as fh:
        fh.write(EICAR)
    with open(daemon.root / "e.com", "rb") as fh:
        s = fildes(daemon, fh.fileno())
        reply = s.recv(4096)
        s.close()
    assert reply.endswith(b": Eicar-Test-Signature.UNOFFICIAL FOUND\x00")
