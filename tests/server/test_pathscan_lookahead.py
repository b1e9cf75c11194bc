"""A directory walk that scans ahead on several workers says exactly what a sequential one says.

In-process tests drive PathScan with a stand-in worker pool whose scans finish out of
order; a daemon test compares a pool of two real workers with a pool of one.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from tests.server.conftest import EICAR, EICAR_HDB, start, stop
from vigil.engine.database import DatabaseOptions, load_database
from vigil.engine.scanner import Engine, ScanOptions
from vigil.server import pathscan
from vigil.server.pathscan import PathScan
from vigil.server.settings import ServerSettings
from vigil.server.workers import WorkerError, WorkerPool, read_fd, replay_log

WORKER_LOG = "vigil.test.worker"


class FakePool:
    """Stands in for WorkerPool: scans in the calling thread after a delay that depends on
    the file's name, so files finish in another order than the walk's."""

    def __init__(self, engine: Engine, size: int) -> None:
        self.engine = engine
        self.size = size
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0
        self.scanned: list[str] = []

    def scan_file(
        self, fd: int, size: int, allmatch: bool, log_sink: list[dict[str, Any]] | None = None
    ) -> list[str] | None:
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep((zlib.crc32(name.encode()) % 4) * 0.005)
            batch = {"log": [[logging.INFO, WORKER_LOG, f"worker read {name}"]]}
            if log_sink is None:
                replay_log(batch)
            else:
                log_sink.append(batch)
            if name.startswith("crash"):
                raise WorkerError("Unspecified error")
            if name.startswith("unreadable"):
                raise OSError("Input/output error")
            if name.startswith("nomem"):
                raise MemoryError
            data = read_fd(fd, size)
            return self.engine.scan(data, ScanOptions(allmatch=allmatch)).names
        finally:
            with self.lock:
                self.active -= 1
                self.scanned.append(name)


@dataclass
class Run:
    sent: list[bytes]
    logs: list[str]
    counts: tuple[int, int, int]
    events: str
    pool: FakePool | None = None
    fds: tuple[int, int] = (0, 0)
    threads: list[str] = field(default_factory=list)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.getMessage()}")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "t.hdb").write_text(EICAR_HDB)
    return Engine(load_database([str(tmp_path / "db")], DatabaseOptions()))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Files and directories in several levels, detections and failures among them."""
    top = tmp_path / "tree"
    for d in ("a", "a/deep", "a/deep/deeper", "b", "skipme", "c"):
        (top / d).mkdir(parents=True)
    for i in range(6):
        (top / f"clean{i}.txt").write_text(f"clean file {i}\n")
        (top / "a" / f"doc{i}.txt").write_text(f"doc {i}\n")
        (top / "b" / f"data{i}.bin").write_bytes(bytes([i]) * (100 + i))
    for rel in ("eicar1.com", "a/eicar2.com", "a/deep/eicar3.com", "b/eicar4.com", "c/x.com"):
        (top / rel).write_bytes(EICAR)
    (top / "a" / "crash.bin").write_text("the worker dies on this one\n")
    (top / "b" / "unreadable.bin").write_text("cannot be read\n")
    (top / "a" / "deep" / "deeper" / "hidden.com").write_bytes(EICAR)  # past the depth limit
    (top / "skipme" / "eicar5.com").write_bytes(EICAR)
    (top / "excluded.log").write_text("excluded by name\n")
    (top / "empty").write_bytes(b"")
    return top


def walk(
    engine: Engine,
    tree: Path,
    kind: str,
    workers: int | None,
    tmp_path: Path,
    *,
    gone_after: int | None = None,
    nomem: bool = False,
) -> Run:
    """One path scan; ``workers`` None: no pool at all (scans in this thread)."""
    events = tmp_path / f"events-{kind}-{workers}"
    events.write_text("")
    settings = ServerSettings(
        log_clean=True,
        max_directory_recursion=3,
        virus_event=f"printf '%s %s\\n' %v \"$CLAM_VIRUSEVENT_FILENAME\" >> {events}",
    )
    if nomem:
        (tree / "b" / "nomem.bin").write_text("no memory for this one\n")
    sent: list[bytes] = []

    def emit(body: bytes) -> bool:
        sent.append(body)
        return gone_after is None or len(sent) < gone_after

    excludes = pathscan.compile_excludes((r"\.log$", r"/skipme/"))
    pool = FakePool(engine, workers) if workers is not None else None
    handler = Records()
    logger = logging.getLogger("vigil")
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    before = open_fds()
    try:
        scan = PathScan(
            engine,
            settings,
            emit,
            kind=kind,
            excludes=excludes,
            workers=cast(WorkerPool, pool),  # a duck-typed stand-in
        )
        scan.alive = lambda: gone_after is None or len(sent) < gone_after
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="lookahead-test") as bulk:
            scan.run(os.fsencode(tree), bulk)
            # nothing of the walk still runs once run() returns
            busy = pool.active if pool is not None else 0
            assert busy == 0
        after = open_fds()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        if nomem:
            (tree / "b" / "nomem.bin").unlink()
    c = scan.counts
    return Run(
        sent,
        handler.lines,
        (c.total, c.errors, c.infected),
        events.read_text(),
        pool,
        (before, after),
    )


def same(a: Run, b: Run) -> None:
    assert a.sent == b.sent
    assert a.logs == b.logs
    assert a.counts == b.counts
    assert a.events == b.events


@pytest.mark.parametrize("kind", ["CONTSCAN", "SCAN", "ALLMATCHSCAN"])
def test_walk_ahead_says_what_the_sequential_walk_says(
    engine: Engine, tree: Path, tmp_path: Path, kind: str
) -> None:
    sequential = walk(engine, tree, kind, 1, tmp_path)
    ahead = walk(engine, tree, kind, 3, tmp_path)
    same(sequential, ahead)
    assert ahead.fds[0] == ahead.fds[1]
    assert sequential.pool is not None and sequential.pool.peak == 1
    if kind == "CONTSCAN":
        assert ahead.pool is not None and ahead.pool.peak > 1  # it did scan ahead
        body = b"\n".join(ahead.sent)
        assert body.count(b"Eicar-Test-Signature.UNOFFICIAL FOUND") == 5
        assert b"crash.bin: Unspecified error ERROR" in body
        assert b"unreadable.bin: Can't read file ERROR" in body
        assert b"excluded.log: Excluded" in body and b"skipme: Excluded" in body
        assert any("MaxDirectoryRecursion" in line for line in ahead.logs)
        assert sum("worker read" in line for line in ahead.logs) == len(ahead.pool.scanned)
        assert ahead.events.count("\n") == 5
    else:
        assert sum(b"FOUND" in line or b"ERROR" in line for line in ahead.sent) == 1
        assert ahead.events.count("\n") == (1 if b"FOUND" in ahead.sent[-1] else 0)


def test_walk_ahead_stops_where_the_sequential_walk_stops(
    engine: Engine, tree: Path, tmp_path: Path
) -> None:
    for gone_after in (1, 3, 6):  # the client goes away after that many lines
        sequential = walk(engine, tree, "CONTSCAN", 1, tmp_path, gone_after=gone_after)
        ahead = walk(engine, tree, "CONTSCAN", 3, tmp_path, gone_after=gone_after)
        same(sequential, ahead)
        assert len(ahead.sent) == gone_after
        assert ahead.fds[0] == ahead.fds[1]
    sequential = walk(engine, tree, "CONTSCAN", 1, tmp_path, nomem=True)
    ahead = walk(engine, tree, "CONTSCAN", 3, tmp_path, nomem=True)
    same(sequential, ahead)
    assert ahead.sent[-1].endswith(b"nomem.bin: Can't allocate memory ERROR")  # no OK line


def test_scan_discards_files_scanned_past_the_first_detection(
    engine: Engine, tmp_path: Path
) -> None:
    top = tmp_path / "flat"
    top.mkdir()
    for i in range(40):
        (top / f"f{i:02d}").write_bytes(EICAR if i in (1, 30) else b"clean %d" % i)
    sequential = walk(engine, top, "SCAN", 1, tmp_path)
    ahead = walk(engine, top, "SCAN", 2, tmp_path)
    same(sequential, ahead)
    assert len(ahead.sent) == 1 and ahead.sent[0].endswith(b"FOUND")
    assert ahead.fds[0] == ahead.fds[1]
    assert ahead.pool is not None and len(ahead.pool.scanned) <= 2 + 2 * pathscan.AHEAD_BACKLOG


def test_no_lookahead_without_an_executor_or_with_one_worker(
    engine: Engine, tree: Path, tmp_path: Path
) -> None:
    pool = FakePool(engine, 3)
    scan = PathScan(
        engine,
        ServerSettings(),
        lambda _body: True,
        kind="CONTSCAN",
        excludes=[],
        workers=cast(WorkerPool, pool),
    )
    scan.run(os.fsencode(tree))  # no executor: one file at a time, in this thread
    assert pool.peak == 1 and len(pool.scanned) > 10


# ---------------------------------------------------------------------------- the daemon


def daemon_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def strip_log(text: str) -> list[str]:
    """The log's messages without their time stamps, worker pids and startup lines."""
    out = []
    for line in text.splitlines():
        if "FOUND" in line or ": OK" in line or "ERROR" in line:
            out.append(re.sub(r"^.*?(?=/)", "", line))
    return out


def daemon_replies(root: Path, files: Path, threads: int) -> tuple[list[bytes], list[str]]:
    log = root / "vigild.log"
    log.unlink(missing_ok=True)
    d = start(root, f"MaxThreads {threads}\nLogClean yes\n")
    try:
        d.send(b"zCONTSCAN " + bytes(files) + b"\x00")  # the workers are all up after this
        time.sleep(0.3)
        before = daemon_fds(d.proc.pid)
        out = [
            d.send(b"z" + cmd + b" " + bytes(files) + b"\x00")
            for cmd in (b"CONTSCAN", b"SCAN", b"ALLMATCHSCAN", b"CONTSCAN")
        ]
        time.sleep(0.3)
        assert daemon_fds(d.proc.pid) == before
    finally:
        stop(d)
    return out, strip_log(log.read_text(errors="replace"))


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_daemon_walk_with_two_workers_replies_as_with_one(root: Path) -> None:
    files = root / "files"
    for d in ("x", "y", "y/z"):
        (files / d).mkdir(parents=True)
    for i in range(8):
        (files / f"clean{i}.txt").write_text(f"clean {i}\n" * 1000)
        (files / "y" / f"c{i}.txt").write_text(f"more {i}\n" * 1000)
    for rel in ("e1.com", "x/e2.com", "y/e3.com", "y/z/e4.com"):
        (files / rel).write_bytes(EICAR)
    one = daemon_replies(root, files, 1)
    two = daemon_replies(root, files, 2)
    assert one == two
    assert one[0][0].count(b"Eicar-Test-Signature.UNOFFICIAL FOUND") == 4
    assert one[0][1].count(b"FOUND") == 1  # SCAN stops at the first detection
