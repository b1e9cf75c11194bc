"""Scan worker processes: same replies as scanning in threads, real parallelism, reloads,
no orphans, and a worker that crashes or hangs costs one error reply."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.server.conftest import EICAR, MARKER, Daemon, start, stop

MARKER_NDB = f"Marker:0:*:{MARKER.hex()}\n"
NWORKERS = min(10, len(os.sched_getaffinity(0)))  # MaxThreads 10 by default
BIG = 3 << 20  # above the 1 MiB INSTREAM keeps in memory: the worker reads the spool file


def wait_for(pred: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name (state is [0], ppid [1]); None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = stat_fields(int(entry))
            if fields is not None and fields[1] == str(pid) and fields[0] != "Z":
                out.append(int(entry))
    return sorted(out)


def zygote(d: Daemon) -> int | None:
    for pid in children(d.proc.pid):
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            if b"zygote_main" in fh.read():
                return pid
    return None


def workers(d: Daemon) -> list[int]:
    z = zygote(d)
    return children(z) if z is not None else []


def wait_workers(d: Daemon, n: int) -> list[int]:
    assert wait_for(lambda: len(workers(d)) == n), f"expected {n} workers, have {workers(d)}"
    return workers(d)


def cpu_ticks(pid: int) -> int:
    fields = stat_fields(pid)
    assert fields is not None
    return int(fields[11]) + int(fields[12])  # utime + stime


def gone(pid: int) -> bool:
    fields = stat_fields(pid)
    return fields is None or fields[0] == "Z"


def fildes(d: Daemon, path: Path) -> bytes:
    with open(path, "rb") as fh, socket.socket(socket.AF_UNIX) as s:
        s.settimeout(20)
        s.connect(d.sock)
        socket.send_fds(s, [b"zFILDES\x00X"], [fh.fileno()])
        out = b""
        while chunk := s.recv(4096):
            out += chunk
    return out.split(b": ", 1)[1]  # after "fd[N]": the number varies


def instream_async(d: Daemon, data: bytes) -> tuple[threading.Thread, list[bytes]]:
    got: list[bytes] = []
    t = threading.Thread(target=lambda: got.append(d.instream(data)), daemon=True)
    t.start()
    return t, got


@pytest.fixture
def tree(root: Path) -> Path:
    (root / "db" / "marker.ndb").write_text(MARKER_NDB)
    files = root / "files"
    (files / "sub").mkdir(parents=True)
    (files / "eicar.com").write_bytes(EICAR)
    (files / "clean.txt").write_text("nothing to see\n")
    (files / "sub" / "big.bin").write_bytes(b"\x00" * BIG + MARKER)
    return files


@pytest.fixture
def daemon(root: Path, tree: Path) -> Iterator[Daemon]:
    d = start(root, "MaxScanTime 1000\n")
    try:
        yield d
    finally:
        stop(d)


def replies(d: Daemon, files: Path) -> list[bytes]:
    out = [
        d.instream(EICAR),
        d.instream(b"clean"),
        d.instream(b"\x00" * BIG + MARKER),
        fildes(d, files / "eicar.com"),
        fildes(d, files / "clean.txt"),
        fildes(d, files / "sub" / "big.bin"),
    ]
    for cmd in (b"CONTSCAN", b"ALLMATCHSCAN", b"SCAN", b"MULTISCAN"):
        lines = d.send(b"z" + cmd + b" " + bytes(files) + b"\x00").split(b"\x00")
        out.append(b"\x00".join(sorted(lines)))  # MULTISCAN answers in completion order
    out.append(d.send(b"zCONTSCAN " + bytes(files / "clean.txt") + b"\x00"))
    return out


def test_replies_match_scanning_in_threads(
    root: Path, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = start(root)
    try:
        assert wait_workers(d, NWORKERS)
        with_workers = replies(d, tree)
    finally:
        stop(d)
    monkeypatch.setenv("VIGIL_CACHE_DIR", "")  # no cache entry: the daemon's threads scan
    d = start(root)
    try:
        in_threads = replies(d, tree)
        assert zygote(d) is None
    finally:
        stop(d)
    assert with_workers == in_threads
    assert b"stream: Eicar-Test-Signature.UNOFFICIAL FOUND\x00" in with_workers
    assert b"stream: Marker.UNOFFICIAL FOUND\x00" in with_workers
    assert b"Marker.UNOFFICIAL FOUND\x00" in with_workers  # FILDES of the big file
    assert b"stream: OK\x00" in with_workers and b"OK\x00" in with_workers  # clean ones
    assert with_workers[-1] == bytes(tree / "clean.txt") + b": OK\x00"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_two_clients_run_in_two_processes(daemon: Daemon) -> None:
    pids = wait_workers(daemon, 2)
    assert daemon.instream(EICAR).endswith(b"FOUND\x00")

    def idle() -> bool:  # both done mapping the engine: their CPU time stands still
        then = [cpu_ticks(p) for p in pids]
        time.sleep(0.2)
        return [cpu_ticks(p) for p in pids] == then

    assert wait_for(idle)
    before = {p: cpu_ticks(p) for p in pids}

    def client(seed: int) -> None:
        for i in range(4):  # HTML: slow to scan; distinct, so no clean-cache answer
            daemon.instream(b"<html><script>var a=%d;</script> " % (seed * 10 + i) * 8000)

    threads = [threading.Thread(target=client, args=(s,)) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(cpu_ticks(p) >= before[p] + 5 for p in pids)  # 50 ms of scanning each


def test_reload_replaces_the_workers(daemon: Daemon) -> None:
    old = wait_workers(daemon, NWORKERS)
    assert daemon.instream(b"NEWSIG-0123456789" * 4) == b"stream: OK\x00"
    (daemon.root / "db" / "new.ndb").write_text(f"New:0:*:{b'NEWSIG-0123456789'.hex()}\n")
    assert daemon.send(b"zRELOAD\x00") == b"RELOADING\x00"
    assert wait_for(
        lambda: daemon.instream(b"NEWSIG-0123456789" * 4) == b"stream: New.UNOFFICIAL FOUND\x00"
    )
    assert wait_for(lambda: all(gone(p) for p in old))
    new = workers(daemon)
    assert new and not set(new) & set(old)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_no_worker_outlives_the_daemon(daemon: Daemon, how: signal.Signals) -> None:
    assert daemon.instream(EICAR).endswith(b"FOUND\x00")
    procs = wait_workers(daemon, NWORKERS) + [zygote(daemon) or 0]
    daemon.proc.send_signal(how)
    daemon.proc.wait(20)
    assert wait_for(lambda: all(gone(p) for p in procs), 10)


def test_worker_killed_mid_scan_costs_one_error_reply(daemon: Daemon) -> None:
    pids = wait_workers(daemon, NWORKERS)
    for p in pids:
        os.kill(p, signal.SIGSTOP)  # whichever gets the request holds it
    t, got = instream_async(daemon, EICAR)
    assert wait_for(lambda: b"\tINSTREAM " in daemon.send(b"zSTATS\x00"))  # a job now
    time.sleep(0.3)  # its request is in a worker's socket by now
    for p in pids:
        os.kill(p, signal.SIGKILL)
    t.join(20)
    assert got == [b"stream: Unspecified error ERROR\x00"]
    # the idle one is noticed when its socket closes: only a request sent before that
    # (the kernel still tearing the process down) would be lost with it
    assert wait_for(lambda: all(gone(p) for p in pids))
    assert daemon.instream(EICAR) == b"stream: Eicar-Test-Signature.UNOFFICIAL FOUND\x00"
    assert wait_for(lambda: len(workers(daemon)) == len(pids))
    assert not set(workers(daemon)) & set(pids)
    assert "was killed by SIGKILL during a scan" in (daemon.root / "vigild.log").read_text()


def test_hung_worker_is_killed_past_max_scan_time(daemon: Daemon) -> None:
    pids = wait_workers(daemon, NWORKERS)
    for p in pids:
        os.kill(p, signal.SIGSTOP)
    started = time.monotonic()
    assert daemon.instream(EICAR) == b"stream: Time limit reached ERROR\x00"
    assert 2.5 < time.monotonic() - started < 15  # MaxScanTime 1 s + a 2 s margin
    for p in pids:
        with contextlib.suppress(ProcessLookupError):  # the hung one was killed
            os.kill(p, signal.SIGCONT)
    assert daemon.instream(EICAR) == b"stream: Eicar-Test-Signature.UNOFFICIAL FOUND\x00"
    assert "MaxScanTime 1000 ms" in (daemon.root / "vigild.log").read_text()


def test_unusable_cache_dir_scans_in_threads(
    root: Path, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = root / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("VIGIL_CACHE_DIR", str(blocker / "cache"))
    d = start(root)
    try:
        assert d.instream(EICAR) == b"stream: Eicar-Test-Signature.UNOFFICIAL FOUND\x00"
        big = d.instream(b"\x00" * BIG + MARKER)
        assert big == b"stream: Marker.UNOFFICIAL FOUND\x00"
        assert wait_for(lambda: zygote(d) is None)
    finally:
        stop(d)


def test_instream_in_a_session_through_workers(daemon: Daemon) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(20)
        s.connect(daemon.sock)
        s.sendall(b"zIDSESSION\x00")
        for data in (EICAR, b"clean", b"\x00" * BIG + MARKER):
            s.sendall(b"zINSTREAM\x00" + struct.pack(">I", len(data)) + data + b"\0\0\0\0")
        s.sendall(b"zEND\x00")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    assert sorted(out.split(b"\x00")[:-1]) == [
        b"1: stream: Eicar-Test-Signature.UNOFFICIAL FOUND",
        b"2: stream: OK",
        b"3: stream: Marker.UNOFFICIAL FOUND",
    ]
