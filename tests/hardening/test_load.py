"""Load and faults against a real vigild: no crash, no lost reply for a well-behaved client,
and no descriptor, thread, child process or temporary file left behind.

The scenarios live in ``load.py`` (``bench/hardening.py`` runs them against clamd too). CI
runs reduced sizes; ``VIGIL_HARDENING_FULL=1`` runs those of the issue (500 idle
connections, 200 x 1 MiB streams, 10 k random connections, 30 reloads).

Already covered elsewhere and not repeated: garbage connections, idle and half-sent
clients timing out, oversized chunks, 100 small concurrent INSTREAMs and a client that never
reads a CONTSCAN (tests/server/test_hostile_clients.py); RELOAD good/broken/in flight and
SIGTERM with one scan (tests/server/test_lifecycle.py); FILDES of devices
(tests/server/test_privileges.py).
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon.conftest import Daemon, running_daemon
from tests.hardening import hostile, load, probe

FULL = os.environ.get("VIGIL_HARDENING_FULL") == "1"
THREAD_CAP = 1 + 2 * 4 + 2 + (os.cpu_count() or 1) + 4  # main, scan+bulk pools, events, loop
SHARED = [n for n, _ in load.CASES if n not in ("temp-dir-full", "sigterm-during-scans")]
SCENARIOS = dict(load.CASES)


def options(name: str) -> list[tuple[str, str]]:
    return [*hostile.LIMITS, *load.EXTRA_OPTIONS.get(name, ())]


@pytest.fixture(scope="module")
def marker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return load.marker_db(tmp_path_factory.mktemp("db"))


@pytest.fixture(scope="module")
def shared(marker: Path) -> Iterator[Daemon]:
    """One vigild for the scenarios that leave it running, with all their options."""
    merged: dict[str, str] = {}
    for name in SHARED:
        merged.update(load.EXTRA_OPTIONS.get(name, ()))
    with running_daemon("vigild", [*hostile.LIMITS, *merged.items()], [marker]) as d:
        load.well_behaved(d)  # warm: the first scan builds what later scans reuse
        yield d


def check_clean(d: Daemon, before: probe.Usage) -> None:
    assert d.alive(), d.log_text()
    after = probe.settled_usage(d.pid, before, threads=False)
    assert after.fds <= before.fds, (before, after)
    assert after.children <= before.children, (before, after)
    assert after.threads <= THREAD_CAP, after
    assert load.scratch_files(d) == []
    assert "Traceback" not in d.log_text()


@pytest.mark.parametrize("name", SHARED)
def test_scenario(name: str, shared: Daemon) -> None:
    before = probe.usage(shared.pid)
    summary = SCENARIOS[name](shared, FULL)
    assert summary
    check_clean(shared, before)


@pytest.mark.parametrize("how", ["tmpfs", "RLIMIT_FSIZE"])
def test_temp_dir_full(marker: Path, how: str) -> None:
    """clamd's reply for a stream it cannot spool; small streams (held in memory by vigild)
    are still scanned, and the daemon goes on once there is room again. A 2 MiB tmpfs over
    TemporaryDirectory needs root and mount; RLIMIT_FSIZE on the daemon works anywhere."""
    with running_daemon("vigild", options("temp-dir-full"), [marker]) as d:
        load.well_behaved(d)
        before = probe.usage(d.pid)
        summary = load.temp_dir_full(d, FULL, allow_mount=how == "tmpfs")
        if not summary.startswith(how):
            pytest.skip(f"{how} not available here ({summary.split(':')[0]} was used)")
        assert "small -> 'stream: Eicar-Test-Signature.UNOFFICIAL FOUND'" in summary
        check_clean(d, before)


def test_sigterm_during_scans(marker: Path) -> None:
    with running_daemon("vigild", options("sigterm-during-scans"), [marker]) as d:
        load.well_behaved(d)
        # at most the scan workers' zygote (which owns the workers) below the daemon
        assert probe.children(d.pid) <= 1
        below = probe.descendants(d.pid)
        load.sigterm_during_scans(d, FULL)
        deadline = time.monotonic() + 10
        while any(probe.alive(p) for p in below) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [p for p in below if probe.alive(p)], "processes left behind"


# --------------------------------------------------------------------------- in-process


class InProcess:
    """vigild's Daemon on an event loop in a thread, so a test can patch the engine."""

    def __init__(self, root: Path) -> None:
        from vigil.engine.database import load_database
        from vigil.engine.limits import Limits
        from vigil.engine.scanner import Engine
        from vigil.server.daemon import Daemon as VigilDaemon
        from vigil.server.settings import ServerSettings

        (root / "db").mkdir()
        (root / "db" / "test.hdb").write_text(hostile.EICAR_HDB)
        (root / "scratch").mkdir()
        self.sock = str(root / "v.sock")
        limits = Limits(max_filesize=hostile.MAX_FILE_SIZE)
        settings = ServerSettings(
            local_socket=self.sock,
            temporary_directory=str(root / "scratch"),
            max_threads=2,
            limits=limits,
            self_check=0,
        )
        db = load_database([root / "db" / "test.hdb"])
        self.daemon = VigilDaemon(settings, lambda: Engine(db, limits))
        self.daemon.bind()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_until_complete, args=(self.daemon.serve(),), daemon=True
        )
        self.thread.start()
        for _ in range(600):
            try:
                if probe.ask(self.sock, b"zPING\x00", timeout=2) == b"PONG\x00":
                    break
            except OSError:
                threading.Event().wait(0.05)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.daemon.request_shutdown)
        self.thread.join(30)
        self.loop.close()


@pytest.fixture
def inproc() -> Iterator[InProcess]:
    import tempfile

    short = Path(tempfile.mkdtemp(prefix="vgi", dir="/tmp"))  # a socket path under 100 bytes
    d = InProcess(short)
    try:
        yield d
    finally:
        d.stop()
        hostile.remove_tree(short)


def zip_of(*members: tuple[str, bytes]) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members:
            z.writestr(name, data)
    return buf.getvalue()


def stream(sock: str, data: bytes) -> bytes:
    return probe.ask(sock, b"zINSTREAM\x00" + struct.pack(">I", len(data)) + data + b"\0\0\0\0")


def test_unpacker_raising_ends_only_that_container(
    inproc: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unpacker bug after the first member: what was extracted is scanned, the reply
    comes, the daemon goes on."""
    from vigil.engine import containers
    from vigil.engine.containers.child import Child
    from vigil.engine.filetype import FileType

    def broken(data: bytes, limit: int) -> Iterator[Child]:
        yield Child("first", hostile.EICAR)
        raise RuntimeError("unpacker bug")

    monkeypatch.setitem(containers._UNPACKERS, FileType.ZIP, broken)
    data = zip_of(("a.txt", b"x" * 100), ("b.txt", b"y" * 100))
    assert stream(inproc.sock, data) == b"stream: Eicar-Test-Signature.UNOFFICIAL FOUND\x00"

    def broken_at_once(data: bytes, limit: int) -> Iterator[Child]:
        raise KeyError("unpacker bug")
        yield Child("never", b"")  # a generator, as unpackers are

    monkeypatch.setitem(containers._UNPACKERS, FileType.ZIP, broken_at_once)
    assert stream(inproc.sock, data) == b"stream: OK\x00"
    assert probe.ask(inproc.sock, b"zPING\x00") == b"PONG\x00"


@pytest.mark.parametrize("command", ["INSTREAM", "SCAN", "FILDES"])
def test_engine_raising_still_answers(
    inproc: InProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: str
) -> None:
    """An exception outside every unpacker's safety net: the client gets clamd's
    ``Unspecified error`` line (not silence, never a traceback) and the daemon serves on."""
    from vigil.engine.scanner import Engine

    real_scan = Engine.scan

    def scan(self: Engine, data: object, options: object = None) -> object:
        if b"BOOM" in bytes(data):  # type: ignore[call-overload]
            raise RuntimeError("engine bug")
        return real_scan(self, data, options)  # type: ignore[arg-type]

    monkeypatch.setattr(Engine, "scan", scan)
    target = tmp_path / "boom.bin"
    target.write_bytes(b"BOOM" * 10)
    if command == "INSTREAM":
        reply = stream(inproc.sock, b"BOOM" * 10)
        assert reply == b"stream: Unspecified error ERROR\x00"
    elif command == "SCAN":
        reply = probe.ask(inproc.sock, b"zSCAN " + os.fsencode(target) + b"\x00")
        assert reply == os.fsencode(f"{target}: Unspecified error ERROR\0")
    else:
        with socket.socket(socket.AF_UNIX) as s, open(target, "rb") as f:
            s.settimeout(30)
            s.connect(inproc.sock)
            s.sendall(b"zFILDES\x00")
            s.sendmsg(
                [b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", f.fileno()))]
            )
            reply = s.recv(4096)
        assert reply.endswith(b": Unspecified error ERROR\x00"), reply
    assert b"Traceback" not in reply
    assert stream(inproc.sock, hostile.EICAR).endswith(b"FOUND\x00")
