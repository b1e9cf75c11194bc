"""Load and fault scenarios, shared by tests/hardening/test_load.py and bench/hardening.py.

Each scenario drives a running daemon (vigild or clamd, started by
``tests.daemon.conftest.running_daemon`` with ``hostile.LIMITS`` plus ``EXTRA_OPTIONS``),
raises AssertionError when a well-behaved client gets a wrong or no reply, and returns a
one-line summary. ``full`` selects the sizes of the issue (500 idle connections, 200 x 1 MiB
streams, 10 k random connections ...); without it the sizes fit a CI run.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import random
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.daemon.conftest import Daemon
from tests.hardening.hostile import EICAR
from tests.hardening.probe import ask

FOUND = b"stream: Eicar-Test-Signature.UNOFFICIAL FOUND\x00"
# Large payloads end in this marker, found by a body signature (EICAR's is a whole-file hash)
MARKER = b"vigil-hardening-load-marker-7f3a"
MARKER_FOUND = b"stream: Vigil.Load.Marker.UNOFFICIAL FOUND\x00"


def marker_db(directory: Path) -> Path:
    """The .ndb signature for MARKER, to pass to running_daemon(databases=...)."""
    p = directory / "load-marker.ndb"
    p.write_text(f"Vigil.Load.Marker:0:*:{MARKER.hex()}\n")
    return p


def instream(data: bytes, chunk: int = 65536) -> bytes:
    """A zINSTREAM request for ``data`` in chunks of ``chunk`` bytes."""
    parts = [b"zINSTREAM\x00"]
    for i in range(0, len(data), chunk):
        piece = data[i : i + chunk]
        parts.append(struct.pack(">I", len(piece)) + piece)
    parts.append(b"\0\0\0\0")
    return b"".join(parts)


def connect(d: Daemon, timeout: float = 30.0) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(d.socket_path))
    return s


def payload(size: int, seed: int) -> bytes:
    """``size`` pseudo-random bytes ending in MARKER (so every reply is a detection)."""
    rng = random.Random(seed)
    return rng.randbytes(size - len(MARKER)) + MARKER


def well_behaved(d: Daemon) -> None:
    """The checks a well-behaved client makes after each scenario."""
    assert ask(str(d.socket_path), b"zPING\x00", timeout=10) == b"PONG\x00"
    assert ask(str(d.socket_path), instream(EICAR), timeout=30) == FOUND


# --------------------------------------------------------------------------- scenarios


def idle_plus_active(d: Daemon, full: bool) -> str:
    """Hundreds of connections that send nothing, while others scan."""
    idle_count = 500 if full else 120
    idle = []
    try:
        for _ in range(idle_count):
            idle.append(connect(d))
        time.sleep(0.3)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            replies = list(
                pool.map(lambda i: ask(str(d.socket_path), instream(payload(4096, i))), range(40))
            )
        bad = [r for r in replies if r != MARKER_FOUND]
        assert not bad, bad[:3]
        well_behaved(d)
    finally:
        for s in idle:
            s.close()
    return f"{idle_count} idle, {len(replies)}/{len(replies)} scans answered"


def concurrent_instreams(d: Daemon, full: bool) -> str:
    """Many 1 MiB streams at once, each on its own connection."""
    count = 200 if full else 40
    data = payload(1 << 20, 1)
    request = instream(data)
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        replies = list(
            pool.map(lambda _: ask(str(d.socket_path), request, timeout=120), range(count))
        )
    took = time.monotonic() - started
    bad = [r for r in replies if r != MARKER_FOUND]
    assert not bad, bad[:3]
    return f"{count} x 1 MiB: {count} FOUND in {took:.1f} s"


def idsession_pipelined(d: Daemon, full: bool) -> str:
    """1000 commands sent at once in one IDSESSION; every one answered once, by its id."""
    count = 1000
    body = [b"zIDSESSION\x00"]
    expect: dict[int, bytes] = {}
    for i in range(1, count + 1):
        if i % 2:
            body.append(b"zPING\x00")
            expect[i] = b"PONG"
        else:
            body.append(instream(EICAR))
            expect[i] = FOUND[:-1]
    body.append(b"zEND\x00")
    with connect(d, timeout=120) as s:
        got = bytearray()

        def reader() -> None:
            while chunk := s.recv(65536):
                got.extend(chunk)

        t = threading.Thread(target=reader)
        t.start()
        s.sendall(b"".join(body))
        t.join(120)
    replies = bytes(got).split(b"\x00")[:-1]
    seen: dict[int, bytes] = {}
    for r in replies:
        num, _, text = r.partition(b": ")
        assert int(num) not in seen, f"id {int(num)} answered twice"
        seen[int(num)] = text
    assert seen == expect, f"{len(seen)} of {count} answered"
    return f"{count} pipelined, {len(seen)} answered, ids unique"


def never_reading_clients(d: Daemon, full: bool) -> str:
    """Clients that pipeline commands and never read their replies."""
    count = 50 if full else 16
    lazy = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(str(d.socket_path))
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.send(b"zIDSESSION\x00" + b"zVERSIONCOMMANDS\x00" * 3000)
            lazy.append(s)
        time.sleep(1.0)
        well_behaved(d)
    finally:
        for s in lazy:
            s.close()
    well_behaved(d)
    return f"{count} clients never reading; others served"


def half_sent_chunks(d: Daemon, full: bool) -> str:
    """Streams cut off in the middle of a chunk after more than 1 MiB (so the daemon has
    spooled to TemporaryDirectory), then closed."""
    count = 100 if full else 20
    for i in range(count):
        with connect(d) as s:
            s.sendall(b"zINSTREAM\x00" + struct.pack(">I", 3 << 20) + payload(3 << 19, i))
    well_behaved(d)
    return f"{count} streams cut mid-chunk after 1.5 MiB"


def random_connections(d: Daemon, full: bool) -> str:
    """Connections that send random bytes, half-close and read whatever comes back."""
    count = 10_000 if full else 1000
    rng = random.Random(11)
    blobs = [rng.randbytes(rng.randrange(1, 200)) for _ in range(256)]
    errors = 0

    def one(i: int) -> None:
        nonlocal errors
        try:
            with connect(d, timeout=30) as s:
                s.sendall(blobs[i % len(blobs)])
                s.shutdown(socket.SHUT_WR)
                while s.recv(4096):
                    pass
        except OSError:
            errors += 1

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(count)))
    well_behaved(d)
    return f"{count} random connections ({errors} reset)"


def reload_loop(d: Daemon, full: bool) -> str:
    """RELOAD over and over, every other time with a broken database, while clients scan."""
    rounds = 30 if full else 8
    stop = threading.Event()
    replies: list[bytes] = []

    def client() -> None:
        while not stop.is_set():
            replies.append(ask(str(d.socket_path), instream(EICAR)))

    workers = [threading.Thread(target=client) for _ in range(3)]
    for t in workers:
        t.start()
    bad_db = d.tmp / "db" / "broken.ndb"
    try:
        for i in range(rounds):
            if i % 2:
                bad_db.write_text("Broken:0:*:41zz\n")
            else:
                with contextlib.suppress(FileNotFoundError):
                    bad_db.unlink()
            assert ask(str(d.socket_path), b"zRELOAD\x00") == b"RELOADING\x00"
            time.sleep(0.3)
    finally:
        stop.set()
        for t in workers:
            t.join(60)
        with contextlib.suppress(FileNotFoundError):
            bad_db.unlink()
    ask(str(d.socket_path), b"zRELOAD\x00")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the last (good) reload has to finish
        with contextlib.suppress(OSError):
            if ask(str(d.socket_path), instream(EICAR), timeout=5) == FOUND:
                break
        time.sleep(0.2)
    bad = [r for r in replies if r != FOUND]
    assert d.alive()
    assert not bad, bad[:3]
    well_behaved(d)
    return f"{rounds} reloads ({rounds // 2} broken), {len(replies)} scans, all FOUND"


def temp_dir_full(d: Daemon, full: bool, *, allow_mount: bool = True) -> str:
    """TemporaryDirectory on a 2 MiB tmpfs that is filled up (the fallback, when mounting
    is not permitted, is RLIMIT_FSIZE on the daemon; the summary says which was used)."""
    scratch = d.tmp / "scratch"
    how = "tmpfs"
    mounted = False
    if allow_mount and os.geteuid() == 0:
        mounted = (
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(scratch)],
                capture_output=True,
                check=False,
            ).returncode
            == 0
        )
    import resource

    old_limit = None
    if not mounted:
        if d.kind != "vigild":
            return "skipped: no tmpfs mount (RLIMIT_FSIZE would kill clamd with SIGXFSZ)"
        how = "RLIMIT_FSIZE"
        old_limit = resource.prlimit(d.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(d.pid, resource.RLIMIT_FSIZE, (1 << 20, old_limit[1]))
        # ... then, "once there is room again", the limit is lifted before the last stream
    try:
        if mounted:
            with open(scratch / "filler", "wb") as f, contextlib.suppress(OSError):
                f.write(bytes(4 << 20))
        big = ask(str(d.socket_path), instream(payload(3 << 20, 5)))
        small = ask(str(d.socket_path), instream(EICAR))
        ping = ask(str(d.socket_path), b"zPING\x00")
        assert ping == b"PONG\x00"
        assert big == b"Error writing to temporary file ERROR\x00", big
        if mounted:
            leftovers = sorted(os.listdir(scratch))
            assert leftovers == ["filler"], leftovers
            (scratch / "filler").unlink()
        elif old_limit is not None:
            resource.prlimit(d.pid, resource.RLIMIT_FSIZE, old_limit)
            old_limit = None
        again = ask(str(d.socket_path), instream(payload(3 << 19, 6)))
    finally:
        if mounted:
            subprocess.run(["umount", str(scratch)], check=False)
        elif old_limit is not None:
            resource.prlimit(d.pid, resource.RLIMIT_FSIZE, old_limit)
    assert again == MARKER_FOUND, again
    return f"{how}: big stream -> {big[:-1].decode()!r}; small -> {small[:-1].decode()!r}"


def sigterm_during_scans(d: Daemon, full: bool) -> str:
    """SIGTERM with scans in flight: a clean exit that leaves no socket, pid file, temporary
    file or child process behind. Ends the daemon (run it last)."""
    count = 20 if full else 8
    data = payload(3 << 20, 9)
    results: list[bytes] = []

    def client() -> None:
        try:
            results.append(ask(str(d.socket_path), instream(data), timeout=60))
        except OSError as exc:
            results.append(repr(exc).encode())

    threads = [threading.Thread(target=client) for _ in range(count)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    started = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    code = d.proc.wait(30)
    took = time.monotonic() - started
    for t in threads:
        t.join(60)
    answered = sum(r == MARKER_FOUND for r in results)
    assert code == 0, f"exit status {code}"
    assert not d.socket_path.exists(), "socket left behind"
    assert not d.pid_file.exists(), "pid file left behind"
    left = os.listdir(d.tmp / "scratch")
    assert not left, f"{len(left)} temporary files left behind"
    return f"exit {code} in {took:.1f} s; {answered}/{count} in-flight scans answered"


CASES: list[tuple[str, Callable[[Daemon, bool], str]]] = [
    ("500-idle-plus-scans", idle_plus_active),
    ("200-concurrent-instreams", concurrent_instreams),
    ("idsession-1000-pipelined", idsession_pipelined),
    ("clients-never-read", never_reading_clients),
    ("half-sent-chunks", half_sent_chunks),
    ("10k-random-connections", random_connections),
    ("reload-loop-broken-db", reload_loop),
    ("temp-dir-full", temp_dir_full),
    ("sigterm-during-scans", sigterm_during_scans),
]
ENDS_DAEMON = {"sigterm-during-scans"}
EXTRA_OPTIONS: dict[str, tuple[tuple[str, str], ...]] = {
    # every idle connection must be accepted: MaxQueue counts connections without a command
    "500-idle-plus-scans": (
        ("MaxQueue", "700"),
        ("MaxConnectionQueueLength", "1024"),
        ("CommandReadTimeout", "60"),
    ),
    "200-concurrent-instreams": (("MaxConnectionQueueLength", "1024"),),
    "10k-random-connections": (("MaxConnectionQueueLength", "1024"),),
    "clients-never-read": (("SendBufTimeout", "200"),),
}


def scratch_files(d: Daemon) -> list[str]:
    p = Path(d.tmp / "scratch")
    return sorted(os.listdir(p)) if p.exists() else []
