"""Vigil's daemon against Debian's clamd, over the socket protocol.

``python bench/daemon.py --scale 0.1`` reuses (or generates) ``bench/out/db-<scale>/`` and the
corpus, starts vigild and clamd on private Unix sockets with the same clamd.conf options and
alternates them through every measurement: time to first PONG, memory after load, CONTSCAN,
MULTISCAN and INSTREAM throughput with one and two clients, 4 KB INSTREAM latency and RELOAD.
It prints a table and writes ``bench/out/daemon-<scale>.json``; see bench/README.md.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from run import (
    BENCH,
    REPO,
    SCALES,
    clamav_version,
    ensure_corpus,
    ensure_db,
    proc_status,
    source_version,
)

__all__ = ["main"]

KINDS = ("vigild", "clamd")
CLAMD = shutil.which("clamd") or "/usr/sbin/clamd"
DB_SUFFIXES = (".hsb", ".hdb", ".mdb", ".ndb", ".ldb", ".hsu", ".hdu", ".mdu", ".ign2", ".ftm")
# Categories whose files the engines unpack (ClamAV more formats than Vigil so far): a detection
# in one of them on a file that was not planted is reported apart instead of failing the run.
CONTAINERS = frozenset({"archive", "deb", "pdf", "pe"})
# (key, command, clients); the first pass after start-up is reported on its own, because it
# also pays for whatever the engine prepares lazily (Vigil compiles verification regexes on
# first use), so the passes after it are the steady state.
WORKLOADS = (
    ("first_contscan", "CONTSCAN", 1),
    ("contscan_1", "CONTSCAN", 1),
    ("contscan_2", "CONTSCAN", 2),
    ("multiscan_1", "MULTISCAN", 1),
    ("multiscan_2", "MULTISCAN", 2),
    ("instream_1", "INSTREAM", 1),
    ("instream_2", "INSTREAM", 2),
)
NO_THREADS = "Not enough threads for multiscan"
ISSUE_RE = re.compile(r"(?i)error|warning|traceback|exception|failed|can't|cannot|killed")
CONF = """\
LocalSocket {home}/d.sock
DatabaseDirectory {home}/db
TemporaryDirectory {home}/scratch
LogFile {home}/daemon.log
PidFile {home}/daemon.pid
Foreground yes
MaxThreads {threads}
StreamMaxLength 100M
SelfCheck 0
DisableCache yes
"""

Detections = dict[str, list[str]]
T = TypeVar("T")


class BenchError(Exception):
    """A daemon failed to start, died or answered something unexpected."""


# ---------------------------------------------------------------------------- the wire


def connect(sock: Path, timeout: float) -> socket.socket:
    """A connected Unix stream socket."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect(str(sock))
    except OSError:
        s.close()
        raise
    return s


def read_reply(s: socket.socket, *, one_line: bool) -> bytes:
    """Read until the first NUL (``one_line``) or until the server closes."""
    buf = bytearray()
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return bytes(buf)
        buf += chunk
        if one_line and b"\0" in chunk:
            return bytes(buf)


def request(sock: Path, command: bytes, timeout: float) -> list[bytes]:
    """Send one ``z`` command on a fresh connection; the reply lines until the server closes."""
    with connect(sock, timeout) as s:
        s.sendall(b"z" + command + b"\0")
        return [line for line in read_reply(s, one_line=False).split(b"\0") if line]


def instream(sock: Path, data: bytes, chunk: int, timeout: float) -> bytes:
    """INSTREAM ``data`` in ``chunk``-byte chunks on a fresh connection; the reply line."""
    view = memoryview(data)
    with connect(sock, timeout) as s:
        s.sendall(b"zINSTREAM\0")
        for pos in range(0, len(view), chunk):
            part = view[pos : pos + chunk]
            s.sendall(struct.pack(">I", len(part)))
            s.sendall(part)
        s.sendall(b"\0\0\0\0")
        return read_reply(s, one_line=True).split(b"\0", 1)[0]


# ---------------------------------------------------------------------------- daemons


@dataclass(slots=True)
class Daemon:
    """One daemon in its private directory (socket, config, log, database links)."""

    kind: str
    home: Path
    src: Path  # the snapshot of src/ that vigild runs from
    proc: subprocess.Popen[bytes] | None = None

    @property
    def sock(self) -> Path:
        return self.home / "d.sock"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def prepare(self, db: Path, threads: int) -> Path:
        """Link the database files into ``home/db`` and write the config; its path."""
        (self.home / "db").mkdir(parents=True)
        (self.home / "scratch").mkdir()
        for f in sorted(db.iterdir()):
            if f.suffix in DB_SUFFIXES:
                link_or_copy(f, self.home / "db" / f.name)
        conf = self.home / "clamd.conf"
        conf.write_text(CONF.format(home=self.home, threads=threads))
        return conf

    def start(self, conf: Path, timeout: float) -> float:
        """Spawn the daemon; seconds until a PING gets its PONG."""
        if self.kind == "clamd":
            cmd = [CLAMD, "-c", str(conf), "--foreground"]
        else:
            cmd = [sys.executable, "-m", "vigil.cli.vigild", "-c", str(conf), "--foreground"]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.src), env.get("PYTHONPATH")]))
        # vigild's compiled-database cache lives in the daemon's directory: empty at the first
        # start of a round, filled for the restart at its end
        env["VIGIL_CACHE_DIR"] = str(self.home / "hscache")
        with open(self.home / "daemon.out", "wb") as out:
            started = time.perf_counter()
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env
            )
        return self.wait_pong(started, timeout)

    def wait_pong(self, started: float, timeout: float) -> float:
        """Poll PING; a connection that is accepted but not answered yet is kept waiting."""
        deadline = started + timeout
        while True:
            self.check_alive("during start-up")
            if time.perf_counter() > deadline:
                raise BenchError(f"{self.kind} gave no PONG within {timeout:g} s")
            try:
                s = connect(self.sock, 0.5)
            except OSError:
                time.sleep(0.01)
                continue
            with s:
                s.sendall(b"zPING\0")
                buf = b""
                while not buf.endswith(b"\0"):
                    try:
                        chunk = s.recv(64)
                    except TimeoutError:
                        self.check_alive("during start-up")
                        if time.perf_counter() > deadline:
                            break
                        continue
                    except OSError:
                        break
                    if not chunk:
                        break
                    buf += chunk
                if buf == b"PONG\0":
                    return time.perf_counter() - started
            time.sleep(0.01)

    def check_alive(self, when: str) -> None:
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise BenchError(f"{self.kind} exited with {code} {when}\n" + self.log_tail())

    def memory(self) -> dict[str, float]:
        """VmRSS and VmHWM of the daemon, and PSS of it with its child processes, in MB."""
        st = proc_status(self.pid)
        procs = [self.pid, *descendants(self.pid)]
        return {
            "rss_mb": st.get("VmRSS", 0) / 1024,
            "hwm_mb": st.get("VmHWM", 0) / 1024,
            "pss_total_mb": sum(pss_kb(p) for p in procs) / 1024,
            "processes": len(procs),
        }

    def reset_hwm(self) -> bool:
        """Reset VmHWM to the current RSS (``clear_refs`` 5); False where not permitted."""
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 60 s; the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        return self.proc.returncode

    def log_tail(self, n: int = 3000) -> str:
        parts = []
        for name in ("daemon.out", "daemon.log"):
            p = self.home / name
            if p.exists():
                parts.append(f"--- {name} ---\n{p.read_text(errors='replace')[-n:]}")
        return "\n".join(parts)

    def issues(self) -> list[str]:
        """Log and stderr lines that look like errors or warnings (detections excluded)."""
        out: list[str] = []
        for name in ("daemon.out", "daemon.log"):
            p = self.home / name
            if p.exists():
                for line in p.read_text(errors="replace").splitlines():
                    if ISSUE_RE.search(line) and not line.endswith(" FOUND"):
                        out.append(f"{name}: {line}")
        return out


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard link (same file system), else a copy; symlinks would be skipped by path scans."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


class RssSampler:
    """Samples VmRSS of ``pid`` every ``interval`` seconds on a thread; keeps the maximum."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kb = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, proc_status(self.pid).get("VmRSS", 0))
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------------------- the corpus


@dataclass(slots=True)
class Corpus:
    """The corpus hard-linked into two halves of about equal size, and held in memory."""

    root: Path  # holds the halves a/ and b/
    halves: tuple[Path, Path]
    rel: dict[str, str]  # linked path -> manifest path
    category: dict[str, str]  # manifest path -> category
    data: tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]  # per half: (path, content)
    total_bytes: int


def split_corpus(files_dir: Path, manifest: dict[str, Any], root: Path) -> Corpus:
    """Deal the files (largest first) to the half with fewer bytes and link them there."""
    halves = (root / "a", root / "b")
    sizes = [0, 0]
    counts = [0, 0]
    rel: dict[str, str] = {}
    data: tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]] = ([], [])
    entries = sorted(manifest["files"], key=lambda f: (-int(f["size"]), str(f["path"])))
    for f in entries:
        path = str(f["path"])
        i = 0 if (sizes[0], counts[0]) <= (sizes[1], counts[1]) else 1
        dst = halves[i] / path
        dst.parent.mkdir(parents=True, exist_ok=True)
        link_or_copy(files_dir / path, dst)
        rel[str(dst)] = path
        content = (files_dir / path).read_bytes()
        data[i].append((path, content))
        sizes[i] += len(content)
        counts[i] += 1
    category = {str(f["path"]): str(f["category"]) for f in manifest["files"]}
    return Corpus(root, halves, rel, category, data, sum(sizes))


# ---------------------------------------------------------------------------- measurements


@dataclass(slots=True)
class Pass:
    """One throughput pass: wall time, what was found, error lines."""

    seconds: float = 0.0
    found: Detections = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def parse_lines(lines: Sequence[bytes], corpus: Corpus, into: Pass, stream: str = "") -> None:
    """Fold ``path: Name FOUND`` / ``... ERROR`` lines into ``into`` (``stream`` names INSTREAM)."""
    for raw in lines:
        line = os.fsdecode(raw)
        if line.endswith(" FOUND"):
            path, _, name = line[: -len(" FOUND")].rpartition(": ")
            key = stream or corpus.rel.get(path, path)
            into.found.setdefault(key, []).append(name)
        elif line.endswith(" ERROR") or not line.endswith(": OK"):
            into.errors.append(f"{stream}: {line}" if stream else line)


def throughput(
    sock: Path, verb: str, clients: int, corpus: Corpus, chunk: int, timeout: float
) -> Pass:
    """CONTSCAN/MULTISCAN of the corpus, or INSTREAM of every file, by ``clients`` clients."""
    result = Pass()
    lock = threading.Lock()

    def path_scan(path: Path) -> None:
        lines = request(sock, verb.encode() + b" " + os.fsencode(path), timeout)
        with lock:
            parse_lines(lines, corpus, result)

    def stream_all(items: list[tuple[str, bytes]]) -> None:
        for rel, content in items:
            line = instream(sock, content, chunk, timeout)
            with lock:
                parse_lines([line], corpus, result, stream=rel)

    jobs: list[Callable[[], None]]
    if verb == "INSTREAM":
        parts = [corpus.data[0] + corpus.data[1]] if clients == 1 else list(corpus.data)
        jobs = [partial(stream_all, p) for p in parts]
    else:
        targets = [corpus.root] if clients == 1 else list(corpus.halves)
        jobs = [partial(path_scan, t) for t in targets]
    started = time.perf_counter()
    with ThreadPoolExecutor(len(jobs)) as pool:
        for fut in [pool.submit(job) for job in jobs]:
            fut.result()
    result.seconds = time.perf_counter() - started
    return result


def check(found: Detections, expected: Detections, corpus: Corpus) -> dict[str, Any]:
    """Planted detections against the manifest; extras inside containers are set apart."""
    missing = {
        rel: found.get(rel, [])
        for rel, names in expected.items()
        if sorted(found.get(rel, [])) != sorted(names)
    }
    unexpected: Detections = {}
    unpacked: Detections = {}
    for rel, names in found.items():
        if rel in expected:
            continue
        if corpus.category.get(rel) in CONTAINERS:
            unpacked[rel] = names
        else:
            unexpected[rel] = names
    return {
        "ok": not missing and not unexpected,
        "expected": len(expected),
        "matched": len(expected) - len(missing),
        "missing": missing,
        "unexpected": unexpected,
        "extra_from_unpacking": unpacked,
    }


def latency(sock: Path, payload: bytes, n: int, timeout: float) -> dict[str, Any]:
    """``n`` sequential INSTREAMs of ``payload`` on fresh connections: p50/p99 in ms."""
    times: list[float] = []
    bad: list[str] = []
    for _ in range(n):
        t0 = time.perf_counter()
        reply = instream(sock, payload, len(payload), timeout)
        times.append((time.perf_counter() - t0) * 1000)
        if reply != b"stream: OK":
            bad.append(reply.decode(errors="replace"))
    q = statistics.quantiles(times, n=100, method="inclusive")
    return {
        "requests": n,
        "p50_ms": q[49],
        "p99_ms": q[98],
        "mean_ms": statistics.fmean(times),
        "max_ms": max(times),
        "bad_replies": bad[:10],
        "bad_count": len(bad),
    }


def reload_probe(d: Daemon, tag: str, seed: int, timeout: float) -> dict[str, Any]:
    """Add a one-pattern .ndb, RELOAD, and poll INSTREAM until the new name is reported."""
    tag += f"-{len(list((d.home / 'db').glob('reload-*.ndb')))}"  # retries add another
    rng = random.Random(f"{seed}-reload-{tag}")
    pattern = rng.randbytes(32)
    payload = bytearray(rng.randbytes(4096))
    payload[2048 : 2048 + len(pattern)] = pattern
    probe = bytes(payload)
    name = f"Bench.Reload.{tag}"
    before = instream(d.sock, probe, 4096, 30)
    if before != b"stream: OK":
        raise BenchError(f"{d.kind}: reload probe not clean before RELOAD: {before!r}")
    (d.home / "db" / f"reload-{tag}.ndb").write_text(f"{name}:0:*:{pattern.hex()}\n")
    steady = d.memory()
    hwm_reset = d.reset_hwm()
    polls = 0
    odd: list[str] = []
    with RssSampler(d.pid) as sampler:
        started = time.perf_counter()
        reply = request(d.sock, b"RELOAD", 30)
        if reply != [b"RELOADING"]:
            raise BenchError(f"{d.kind}: RELOAD answered {reply!r}")
        while True:
            d.check_alive("during RELOAD")
            if time.perf_counter() - started > timeout:
                raise BenchError(f"{d.kind}: {name} not detected {timeout:g} s after RELOAD")
            line = instream(d.sock, probe, 4096, timeout).decode(errors="replace")
            polls += 1
            if line.endswith(" FOUND") and name in line:
                seconds = time.perf_counter() - started
                break
            if line != "stream: OK" and len(odd) < 10:
                odd.append(line)
            time.sleep(0.025)
    during = d.memory()
    time.sleep(1.0)
    after = d.memory()
    peak = max(sampler.peak_kb / 1024, during["hwm_mb"] if hwm_reset else 0.0)
    return {
        "seconds": seconds,
        "rss_before_mb": steady["rss_mb"],
        "peak_rss_mb": peak,
        "peak_delta_mb": peak - steady["rss_mb"],
        "rss_after_mb": after["rss_mb"],
        "pss_after_mb": after["pss_total_mb"],
        "hwm_reset": hwm_reset,
        "rss_samples": sampler.samples,
        "polls": polls,
        "odd_replies": odd,
    }


def descendants(pid: int) -> list[int]:
    """The processes below ``pid``: its children (vigild's scan workers and their zygote,
    a database builder), their children, and so on."""
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        kids.setdefault(int(text.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    out: list[int] = []
    todo = list(kids.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def pss_kb(pid: int) -> int:
    """Proportional set size of a process (kB, from ``/proc/PID/smaps_rollup``): pages
    shared with other processes (a mapped compiled-cache entry, the interpreter) count
    for each in proportion, so the sum over processes is their real footprint."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def _ticks(pid: str) -> int:
    """utime + stime of a process (all threads, clock ticks); 0 once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


class CpuMeter:
    """CPU time that programs other than this one and daemon ``pid`` (with the processes
    below it: vigild's scan workers) used since the start.

    ``foreign()`` is a share of all CPUs' time: 0.5 on two cores means one core was busy
    with other work, which skews whatever was measured meanwhile.
    """

    def __init__(self, pid: int | None = None) -> None:
        self.pid = pid
        self.start = self._sample()

    def _sample(self) -> tuple[int, int, int]:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:9]]
        daemon = [self.pid, *descendants(self.pid)] if self.pid else []
        ours = _ticks("self") + sum(_ticks(str(p)) for p in daemon)
        return sum(ticks), sum(ticks) - ticks[3] - ticks[4], ours  # total, busy, ours

    def foreign(self) -> float:
        (t0, b0, o0), (t1, b1, o1) = self.start, self._sample()
        return max(0.0, ((b1 - b0) - (o1 - o0)) / max(t1 - t0, 1))


def fresh_start(d: Daemon, timeout: float) -> dict[str, float]:
    """Start the daemon; seconds to PONG and memory then."""
    pong = d.start(d.home / "clamd.conf", timeout)
    return {"pong_s": pong, **d.memory()}


def wait_idle(limit: float, cap: float) -> float:
    """Wait up to ``cap`` s for a second in which other programs use at most ``limit``."""
    deadline = time.monotonic() + cap
    said = False
    while True:
        meter = CpuMeter()
        time.sleep(1.0)
        share = meter.foreign()
        if share <= limit or time.monotonic() >= deadline:
            return share
        if not said:
            print(f"  waiting: other programs use {share:.0%} of the CPUs", flush=True)
            said = True


def snapshot_src(dst: Path) -> Path:
    """Copy src/vigil to ``dst`` so that edits made while the benchmark runs do not mix in,
    and byte-compile it, as installing a package does: otherwise, with bytecode writing
    off (PYTHONDONTWRITEBYTECODE), every vigild process would compile its modules from
    source at each start (about 0.1 s for the daemon and again for its builder child)."""
    shutil.copytree(
        REPO / "src" / "vigil", dst / "vigil", ignore=shutil.ignore_patterns("__pycache__")
    )
    if not compileall.compile_dir(dst / "vigil", quiet=1):
        raise BenchError("could not byte-compile the source snapshot")
    return dst


def tree_digest(root: Path) -> str:
    """SHA-256 over the paths and contents of the files under ``root`` (caches left out)."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------- one round


@dataclass(slots=True)
class Options:
    """What a round needs besides the daemons."""

    db: Path
    corpus: Corpus
    expected: Detections
    threads: int
    chunk: int
    latency_requests: int
    start_timeout: float
    scan_timeout: float
    seed: int
    src: Path
    max_foreign: float
    idle_wait: float
    retries: int


def run_round(work: Path, r: int, opts: Options, out: dict[str, list[dict[str, Any]]]) -> None:
    """Start both daemons, alternate them through every measurement, restart and stop them."""
    order = KINDS if r % 2 == 0 else KINDS[::-1]
    rec: dict[str, dict[str, Any]] = {k: {"round": r + 1, "errors": []} for k in order}
    daemons: list[Daemon] = []

    def attempt(d: Daemon, label: str, fn: Callable[[], T]) -> T | None:
        if rec[d.kind].get("dead"):
            return None
        try:
            return fn()
        except (BenchError, OSError) as exc:
            rec[d.kind]["errors"].append(f"{label}: {type(exc).__name__}: {exc}")
            print(f"  {d.kind} {label}: FAILED: {exc}", flush=True)
            if d.proc is None or d.proc.poll() is not None:
                rec[d.kind]["dead"] = True
            return None

    def measure(d: Daemon, label: str, fn: Callable[[], T], spawns: bool = False) -> T | None:
        """``fn`` on an idle machine; again if other programs took too much CPU meanwhile."""
        for i in range(opts.retries + 1):
            if spawns:
                d.stop()  # outside the metered time: a retry or the restart starts afresh
            wait_idle(opts.max_foreign, opts.idle_wait)
            meter = CpuMeter(None if spawns or d.proc is None else d.proc.pid)
            result = attempt(d, label, fn)
            meter.pid = None if d.proc is None else d.proc.pid
            foreign = meter.foreign()
            rec[d.kind].setdefault("foreign_cpu", {})[label] = foreign
            rec[d.kind].setdefault("attempts", {})[label] = i + 1
            if result is None or foreign <= opts.max_foreign or i == opts.retries:
                return result
            print(f"  {d.kind} {label}: other programs took {foreign:.0%} of the CPUs; again")
        return None

    try:
        for kind in order:
            d = Daemon(kind, work / f"{kind}-{r + 1}", opts.src)
            daemons.append(d)
            d.prepare(opts.db, opts.threads)
            print(f"round {r + 1}: starting {kind} ...", flush=True)
            st = measure(d, "start", partial(fresh_start, d, opts.start_timeout), spawns=True)
            if st is None:
                rec[kind]["dead"] = True
                continue
            rec[kind].update(
                pong_s=st["pong_s"],
                rss_after_load_mb=st["rss_mb"],
                hwm_mb=st["hwm_mb"],
                pss_after_load_mb=st["pss_total_mb"],
            )
            print(
                f"  {kind}: PONG after {st['pong_s']:.2f} s, RSS {st['rss_mb']:.0f} MB", flush=True
            )
        live = [d for d in daemons if not rec[d.kind].get("dead")]
        for key, verb, clients in WORKLOADS:
            for d in live:
                job = partial(
                    throughput, d.sock, verb, clients, opts.corpus, opts.chunk, opts.scan_timeout
                )
                p = measure(d, key, job)
                if p is None:
                    continue
                refused = [e for e in p.errors if NO_THREADS in e]
                if refused:
                    # clamd refuses a MULTISCAN while another holds the threads: a limit of the
                    # configuration, not a wrong answer; the pass has no figure.
                    rec[d.kind][key] = {"refused": refused[0]}
                    print(f"  {d.kind} {key}: refused: {refused[0]}", flush=True)
                    continue
                chk = check(p.found, opts.expected, opts.corpus)
                mbs = opts.corpus.total_bytes / 1e6 / p.seconds
                rec[d.kind][key] = {"seconds": p.seconds, "mb_per_s": mbs, "check": chk}
                rec[d.kind][key]["scan_errors"] = p.errors[:20]
                rec[d.kind][key]["scan_error_count"] = len(p.errors)
                flag = "ok" if chk["ok"] and not p.errors else "MISMATCH"
                print(f"  {d.kind} {key}: {mbs:.1f} MB/s, detections {flag}", flush=True)
        payload = random.Random(f"{opts.seed}-latency").randbytes(4096)
        for d in live:
            job_l = partial(latency, d.sock, payload, opts.latency_requests, 30.0)
            lat = measure(d, "latency", job_l)
            if lat is not None:
                rec[d.kind]["latency"] = lat
                print(
                    f"  {d.kind} 4 KB INSTREAM: p50 {lat['p50_ms']:.2f} ms, "
                    f"p99 {lat['p99_ms']:.2f} ms",
                    flush=True,
                )
        for d in live:
            steady = attempt(d, "memory", d.memory)
            if steady is not None:
                rec[d.kind]["rss_before_reload_mb"] = steady["rss_mb"]
                rec[d.kind]["hwm_before_reload_mb"] = steady["hwm_mb"]
                rec[d.kind]["pss_before_reload_mb"] = steady["pss_total_mb"]
                rec[d.kind]["processes_before_reload"] = steady["processes"]
            job_r = partial(reload_probe, d, f"R{r + 1}", opts.seed, opts.start_timeout)
            rel = measure(d, "reload", job_r)
            if rel is not None:
                rec[d.kind]["reload"] = rel
                print(
                    f"  {d.kind} RELOAD: {rel['seconds']:.2f} s, peak +{rel['peak_delta_mb']:.0f}"
                    " MB",
                    flush=True,
                )
        for d in live:
            rs = measure(d, "restart", partial(fresh_start, d, opts.start_timeout), spawns=True)
            if rs is not None:
                rec[d.kind]["restart"] = rs
                print(f"  {d.kind}: restarted, PONG after {rs['pong_s']:.2f} s", flush=True)
    finally:
        for d in daemons:
            alive = d.proc is not None and d.proc.poll() is None
            code = d.stop()
            rec[d.kind]["exit_status"] = code
            if code not in (None, 0) or (d.proc is not None and not alive):
                rec[d.kind]["log_tail"] = d.log_tail()
            rec[d.kind]["log_issues"] = d.issues()[:50]
        for kind in order:
            out[kind].append(rec[kind])


# ---------------------------------------------------------------------------- summary

# (key in a round record, label, lower is better)
ROWS: tuple[tuple[str, str, bool], ...] = (
    ("pong_s", "first PONG s", True),
    ("rss_after_load_mb", "RSS after load MB", True),
    ("pss_after_load_mb", "PSS with children after load MB", True),
    ("hwm_mb", "peak RSS (VmHWM) MB", True),
    ("restart.pong_s", "restart PONG s (warm cache)", True),
    ("restart.hwm_mb", "restart peak RSS MB", True),
    ("first_contscan.mb_per_s", "first CONTSCAN (cold) MB/s", False),
    ("contscan_1.mb_per_s", "CONTSCAN 1 client MB/s", False),
    ("contscan_2.mb_per_s", "CONTSCAN 2 clients MB/s", False),
    ("multiscan_1.mb_per_s", "MULTISCAN 1 client MB/s", False),
    ("multiscan_2.mb_per_s", "MULTISCAN 2 clients MB/s", False),
    ("instream_1.mb_per_s", "INSTREAM 1 client MB/s", False),
    ("instream_2.mb_per_s", "INSTREAM 2 clients MB/s", False),
    ("rss_before_reload_mb", "RSS after the scans MB", True),
    ("pss_before_reload_mb", "PSS with children after the scans MB", True),
    ("latency.p50_ms", "INSTREAM 4 KB p50 ms", True),
    ("latency.p99_ms", "INSTREAM 4 KB p99 ms", True),
    ("reload.seconds", "RELOAD to detection s", True),
    ("reload.peak_delta_mb", "RELOAD peak RSS +MB", True),
    ("reload.rss_after_mb", "RSS after RELOAD MB", True),
    ("reload.pss_after_mb", "PSS with children after RELOAD MB", True),
)


def dig(rec: dict[str, Any], key: str) -> float | None:
    """``a.b`` looked up in nested dicts; None when absent."""
    cur: Any = rec
    for part in key.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return float(cur) if isinstance(cur, int | float) else None


def best(rounds: list[dict[str, Any]]) -> dict[str, float | None]:
    """The better value of each figure over the rounds (each figure on its own)."""
    out: dict[str, float | None] = {}
    for key, _, lower in ROWS:
        vals = [v for v in (dig(r, key) for r in rounds) if v is not None]
        out[key] = (min(vals) if lower else max(vals)) if vals else None
    return out


def failures(kind: str, rounds: list[dict[str, Any]]) -> list[str]:
    """Every detection mismatch, scan error and failed measurement, one line each."""
    out: list[str] = []
    for r in rounds:
        tag = f"{kind} round {r['round']}"
        out += [f"{tag}: {e}" for e in r["errors"]]
        for key, _, _ in WORKLOADS:
            p = r.get(key)
            if p is None or "refused" in p:
                continue
            chk = p["check"]
            if not chk["ok"]:
                out.append(
                    f"{tag} {key}: detections {chk['matched']}/{chk['expected']}, "
                    f"missing {chk['missing']}, unexpected {chk['unexpected']}"
                )
            if p["scan_error_count"]:
                out.append(
                    f"{tag} {key}: {p['scan_error_count']} errors, e.g. {p['scan_errors'][:3]}"
                )
        lat = r.get("latency")
        if lat and lat["bad_count"]:
            out.append(
                f"{tag} latency: {lat['bad_count']} bad replies, e.g. {lat['bad_replies'][:3]}"
            )
    return out


def worst_foreign(rounds: dict[str, list[dict[str, Any]]]) -> tuple[float, str]:
    """The largest share of CPU time other programs took during a kept measurement, and which."""
    worst = (0.0, "")
    for kind, recs in rounds.items():
        for r in recs:
            for label, share in r.get("foreign_cpu", {}).items():
                if share > worst[0]:
                    worst = (float(share), f"{kind} round {r['round']} {label}")
    return worst


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if abs(v) < 1 else f"{v:.2f}" if abs(v) < 100 else f"{v:.0f}"


def table(
    header: str,
    bests: dict[str, dict[str, float | None]],
    ratios: dict[str, float | None],
    refused: dict[str, set[str]],
) -> str:
    """The human-readable table: best of the rounds, and vigild/clamd."""
    lines = [header, f"{'':28}{'vigild':>10}{'clamd':>10}{'vigild/clamd':>14}"]
    for key, label, _ in ROWS:
        cells = [
            "refused" if key.split(".")[0] in refused[k] else fmt(bests[k].get(key)) for k in KINDS
        ]
        r = ratios.get(key)
        lines.append(f"{label:28}{cells[0]:>10}{cells[1]:>10}{fmt(r) + 'x' if r else '-':>14}")
    lines.append("(MB/s: higher is better; every other row: lower is better)")
    return "\n".join(lines)


def refusals(rounds: list[dict[str, Any]]) -> set[str]:
    """Workloads the daemon refused in every round (clamd's MULTISCAN thread limit)."""
    keys = {key for key, _, _ in WORKLOADS}
    return {k for k in keys if rounds and all("refused" in r.get(k, {}) for r in rounds)}


def extras_summary(rounds: list[dict[str, Any]]) -> Detections:
    """Detections made inside containers on files that were not planted (any pass)."""
    out: Detections = {}
    for r in rounds:
        for key, _, _ in WORKLOADS:
            p = r.get(key)
            if p and "check" in p:
                for rel, names in p["check"]["extra_from_unpacking"].items():
                    out.setdefault(rel, sorted(set(names)))
    return out


# ---------------------------------------------------------------------------- main


def warm(paths: Iterator[Path]) -> None:
    """Read files once so that the first daemon to load does not pay for the disk."""
    for p in paths:
        with open(p, "rb") as f:
            while f.read(16 << 20):
                pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=SCALES, default="0.01")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--plant", type=int, default=12, help="planted signatures (and files)")
    ap.add_argument("--corpus-mb", type=float, default=128.0, help="corpus size")
    ap.add_argument("--out", type=Path, default=BENCH / "out")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds (best reported)")
    ap.add_argument("--threads", type=int, default=2, help="MaxThreads of both daemons")
    ap.add_argument("--chunk-kb", type=int, default=64, help="INSTREAM chunk size")
    ap.add_argument("--latency-requests", type=int, default=1000)
    ap.add_argument("--start-timeout", type=float, default=900.0, help="cap on a load (s)")
    ap.add_argument("--scan-timeout", type=float, default=3600.0, help="cap on a request (s)")
    ap.add_argument(
        "--max-foreign",
        type=float,
        default=0.05,
        help="share of the CPUs other programs may use during a measurement before it is redone",
    )
    ap.add_argument("--retries", type=int, default=2, help="redos of a disturbed measurement")
    ap.add_argument(
        "--idle-wait", type=float, default=600.0, help="cap on waiting for an idle machine (s)"
    )
    args = ap.parse_args(argv)
    if not os.access(CLAMD, os.X_OK):
        print(f"clamd not found ({CLAMD})", file=sys.stderr)
        return 2

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    db_dir = out / f"db-{args.scale}"
    db = ensure_db(db_dir, float(args.scale), args.seed, args.plant)
    corpus_dir = out / f"corpus-{args.corpus_mb:g}mb"
    manifest = ensure_corpus(corpus_dir, args.corpus_mb, db_dir / "planted.json", args.seed)

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    work = Path(tempfile.mkdtemp(prefix="vbd-", dir="/tmp"))
    rounds: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
    version = source_version()
    try:
        src = snapshot_src(work / "src")
        digest = tree_digest(src / "vigil")
        corpus = split_corpus(corpus_dir / "files", manifest, work / "c")
        warm(f for f in db_dir.iterdir() if f.suffix in DB_SUFFIXES)
        opts = Options(
            db=db_dir,
            corpus=corpus,
            expected=manifest["expected"],
            threads=args.threads,
            chunk=args.chunk_kb * 1024,
            latency_requests=args.latency_requests,
            start_timeout=args.start_timeout,
            scan_timeout=args.scan_timeout,
            seed=args.seed,
            src=src,
            max_foreign=args.max_foreign,
            idle_wait=args.idle_wait,
            retries=args.retries,
        )
        for r in range(args.rounds):
            run_round(work, r, opts, rounds)
        changed = tree_digest(REPO / "src" / "vigil") != digest
    finally:
        shutil.rmtree(work, ignore_errors=True)

    bests = {k: best(rounds[k]) for k in KINDS}
    ratios: dict[str, float | None] = {}
    for key, _, _ in ROWS:
        v, c = bests["vigild"][key], bests["clamd"][key]
        ratios[key] = v / c if v is not None and c else None
    fails = failures("vigild", rounds["vigild"]) + failures("clamd", rounds["clamd"])
    extras = {k: extras_summary(rounds[k]) for k in KINDS}
    share, where = worst_foreign(rounds)
    mb = corpus.total_bytes / 1e6
    header = (
        f"scale {args.scale}: {int(db['total_signatures']):,} signatures; corpus {mb:.1f} MB in "
        f"{manifest['total_files']} files; MaxThreads {args.threads}; best of {args.rounds} rounds"
    )
    results: dict[str, Any] = {
        "scale": float(args.scale),
        "database": db,
        "corpus": {k: v for k, v in manifest.items() if k != "files"},
        "split_bytes": [sum(len(c) for _, c in half) for half in corpus.data],
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "vigil_source": version,
        "vigil_src_sha256": digest,
        "vigil_src_changed_during_run": changed,
        "clamav": clamav_version(),
        "settings": {
            "rounds": args.rounds,
            "threads": args.threads,
            "chunk_bytes": args.chunk_kb * 1024,
            "latency_requests": args.latency_requests,
            "config": CONF,
        },
        "best": bests,
        "ratios_vigild_over_clamd": ratios,
        "failures": fails,
        "worst_foreign_cpu": {"share": share, "where": where},
        "extra_from_unpacking": extras,
        "rounds": rounds,
    }
    path = out / f"daemon-{args.scale}.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(table(header, bests, ratios, {k: refusals(rounds[k]) for k in KINDS}))
    for kind in KINDS:
        if extras[kind]:
            print(f"{kind}: detections in unpacked containers (not failures): {extras[kind]}")
    for kind in KINDS:
        issues = sorted({i for r in rounds[kind] for i in r.get("log_issues", [])})
        if issues:
            print(f"{kind} log: {len(issues)} error/warning lines, e.g. {issues[:3]}")
    if share > args.max_foreign:
        print(f"other programs took up to {share:.0%} of the CPUs during a measurement ({where})")
    if changed:
        print(f"src/vigil changed during the run; the snapshot of {version} was measured")
    print(f"results written to {path}", flush=True)
    if fails:
        print("FAILED:", file=sys.stderr)
        for line in fails:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
