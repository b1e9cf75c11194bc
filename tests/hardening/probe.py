"""What a daemon process holds, read from /proc: descriptors, threads, children, peak RSS.

Shared by the hardening tests and ``bench/hardening.py`` so both measure the same way.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path


def status_field(pid: int, name: str) -> int:
    """A numeric field of /proc/PID/status (kB for the Vm* fields)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise LookupError(name)


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def children(pid: int) -> int:
    """Direct child processes (VirusEvent shells, for one) of ``pid``."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            total += len(Path(f"/proc/{pid}/task/{task}/children").read_text().split())
        except OSError:
            pass
    return total


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (vigild's worker zygote and its workers, for one)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                kids = [
                    int(k) for k in Path(f"/proc/{parent}/task/{task}/children").read_text().split()
                ]
            except OSError:
                continue
            found.extend(kids)
            todo.extend(kids)
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return line.split()[1] not in ("Z", "X")
    except OSError:
        pass
    return False


def peak_rss_mib(pid: int) -> float:
    return status_field(pid, "VmHWM") / 1024


def rss_mib(pid: int) -> float:
    return status_field(pid, "VmRSS") / 1024


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux clear_refs 5); False when not permitted."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class Usage:
    fds: int
    threads: int
    children: int

    def leaks_over(self, before: Usage, *, threads: bool = True) -> dict[str, int]:
        """Counts that grew since ``before`` (empty when nothing leaked). ``threads=False``
        leaves out threads: a pool that grows to its bound on first use is no leak."""
        out = {}
        for name in ("fds", "threads", "children") if threads else ("fds", "children"):
            grew = getattr(self, name) - getattr(before, name)
            if grew > 0:
                out[name] = grew
        return out


def usage(pid: int) -> Usage:
    return Usage(fds(pid), threads(pid), children(pid))


def settled_usage(pid: int, before: Usage, limit: float = 15.0, *, threads: bool = True) -> Usage:
    """Usage once it is back at ``before`` (connections close and idle threads exit with
    some delay), or the last reading when ``limit`` seconds pass first."""
    deadline = time.monotonic() + limit
    now = usage(pid)
    while now.leaks_over(before, threads=threads) and time.monotonic() < deadline:
        time.sleep(0.05)
        now = usage(pid)
    return now


def ask(sock_path: str, data: bytes, timeout: float = 60.0) -> bytes:
    """Send ``data`` on a new Unix connection and read until the server closes it (also
    when it closes before taking all of ``data``)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(sock_path)
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early and closed (e.g. an error): read the answer
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
    return out


class PingWhile:
    """PINGs the daemon from another connection while something else runs; keeps the
    slowest answer time, so a test can require the daemon to stay responsive."""

    def __init__(self, sock_path: str, interval: float = 0.2) -> None:
        self.sock_path = sock_path
        self.interval = interval
        self.worst = 0.0
        self.failures: list[str] = []
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                reply = ask(self.sock_path, b"zPING\x00", timeout=10.0)
            except OSError as exc:
                reply = repr(exc).encode()
            took = time.monotonic() - started
            self.count += 1
            self.worst = max(self.worst, took)
            if reply != b"PONG\x00":
                self.failures.append(reply.decode("latin-1"))
            self._stop.wait(self.interval)

    def __enter__(self) -> PingWhile:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)
