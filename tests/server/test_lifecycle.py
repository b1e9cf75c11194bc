"""vigild as a process: start-up, RELOAD (good, broken, under load), SIGTERM, SHUTDOWN."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.conftest import EICAR, MARKER, Daemon, start


@pytest.fixture
def daemon(root: Path) -> Iterator[Daemon]:
    d = start(root)
    yield d
    if d.proc.poll() is None:
        d.proc.send_signal(signal.SIGTERM)
        try:
            d.proc.wait(10)
        except subprocess.TimeoutExpired:
            d.proc.kill()
            d.proc.wait()


def wait_for(pred: object, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_reload_picks_up_new_signatures(daemon: Daemon) -> None:
    assert daemon.instream(MARKER + b"\x00" * 10) == b"stream: OK\x00"
    (daemon.root / "db" / "new.ndb").write_text(f"Marker:0:*:{MARKER.hex()}\n")
    assert daemon.send(b"nRELOAD\n") == b"RELOADING\n"
    assert wait_for(
        lambda: daemon.instream(MARKER + b"\x00" * 10) == b"stream: Marker.UNOFFICIAL FOUND\x00"
    )


def test_broken_database_on_reload_keeps_old_engine(daemon: Daemon) -> None:
    (daemon.root / "db" / "bad.ndb").write_text("Broken:0:*:41zz\n")
    assert daemon.send(b"nRELOAD\n") == b"RELOADING\n"
    log = daemon.root / "vigild.log"
    assert wait_for(lambda: "keeping the previous instance" in log.read_text())
    assert "bad.ndb:1:" in log.read_text()
    assert daemon.instream(EICAR) == b"stream: Eicar-Test-Signature.UNOFFICIAL FOUND\x00"


def test_scans_in_flight_during_reload_all_complete(daemon: Daemon) -> None:
    results: list[bytes] = []
    lock = threading.Lock()

    def client() -> None:
        for _ in range(10):
            r = daemon.instream(EICAR + b"\n")
            with lock:
                results.append(r)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(3):
        assert daemon.send(b"zRELOAD\x00") == b"RELOADING\x00"
        time.sleep(0.05)
    for t in threads:
        t.join(60)
    assert len(results) == 40
    assert all(r == b"stream: OK\x00" or r.endswith(b"FOUND\x00") for r in results)


def test_sigusr2_reloads(daemon: Daemon) -> None:
    (daemon.root / "db" / "new.ndb").write_text(f"Marker:0:*:{MARKER.hex()}\n")
    daemon.proc.send_signal(signal.SIGUSR2)
    assert wait_for(lambda: b"FOUND" in daemon.instream(MARKER + b"\x00" * 10))


def test_shutdown_command_removes_socket_and_pidfile(daemon: Daemon) -> None:
    pid = daemon.root / "vigild.pid"
    assert pid.read_text() == f"{daemon.proc.pid}\n"
    assert daemon.send(b"nSHUTDOWN\n") == b""
    assert daemon.proc.wait(20) == 0
    assert not os.path.exists(daemon.sock)
    assert not pid.exists()


def test_sigterm_during_scans_exits_cleanly(daemon: Daemon) -> None:
    big = b"A" * (5 << 20)
    t = threading.Thread(target=lambda: daemon.instream(big), daemon=True)
    t.start()
    time.sleep(0.2)
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(20) == 0
    assert not os.path.exists(daemon.sock)


def test_bad_config_exits_1_naming_file_line_and_option(root: Path) -> None:
    conf = root / "bad.conf"
    conf.write_text(f"LocalSocket {root / 's'}\nMaxThreads ten\n")
    proc = subprocess.run(
        [sys.executable, "-m", "vigil.cli.vigild", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert f"{conf}:2: MaxThreads:" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_broken_database_at_start_fails_cleanly(root: Path) -> None:
    (root / "db" / "bad.ldb").write_text("X;Target:0;0&1;414243\n")
    conf = root / "vigild.conf"
    conf.write_text(
        f"LocalSocket {root / 's.sock'}\nDatabaseDirectory {root / 'db'}\nForeground yes\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "vigil.cli.vigild", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "bad.ldb:1:" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (root / "s.sock").exists()


@pytest.mark.parametrize("rotate", [True, False])
def test_log_file_max_size(root: Path, rotate: bool) -> None:
    extra = f"LogFileMaxSize 2000\nLogRotate {'yes' if rotate else 'no'}\nLogTime yes\n"
    d = start(root, extra)
    try:
        for _ in range(60):
            d.instream(EICAR)
        log = root / "vigild.log"
        if rotate:
            assert (root / "vigild.log.1").exists()
            assert (
                " -> stream: Eicar-Test-Signature.UNOFFICIAL FOUND"
                in (root / "vigild.log.1").read_text()
            )
        else:
            assert "LOGGING DISABLED (Maximal log file size exceeded)." in log.read_text()
            assert log.stat().st_size < 4000
    finally:
        d.proc.terminate()
        d.proc.wait(10)


def test_sighup_reopens_log(daemon: Daemon) -> None:
    log = daemon.root / "vigild.log"
    os.replace(log, daemon.root / "old.log")
    daemon.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: log.exists() and "reopened" in log.read_text())


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_user_drops_privileges_after_binding(root: Path) -> None:
    import pwd

    nobody = pwd.getpwnam("nobody")
    root.chmod(0o755)
    (root / "db").chmod(0o755)
    (root / "db" / "test.hdb").chmod(0o644)
    d = start(root, "User nobody\n")
    try:
        status = Path(f"/proc/{d.proc.pid}/status").read_text()
        uid_line = next(ln for ln in status.splitlines() if ln.startswith("Uid:"))
        assert uid_line.split()[1:] == [str(nobody.pw_uid)] * 4
        assert d.instream(EICAR) == b"stream: Eicar-Test-Signature.UNOFFICIAL FOUND\x00"
        assert os.stat(d.sock).st_mode & 0o777 == 0o666
    finally:
        d.proc.terminate()
        d.proc.wait(10)


def test_extended_detection_info_goes_to_the_log_only(root: Path) -> None:
    (root / "e.com").write_bytes(EICAR)
    d = start(root, "ExtendedDetectionInfo yes\n")
    try:
        reply = d.send(f"nSCAN {root / 'e.com'}\n".encode())
        assert reply == f"{root / 'e.com'}: Eicar-Test-Signature.UNOFFICIAL FOUND\n".encode()
        log = (root / "vigild.log").read_text()
        assert "Eicar-Test-Signature.UNOFFICIAL(44d88612fea8a8f36de82e1278abb02f:68) FOUND" in log
    finally:
        d.proc.terminate()
        d.proc.wait(10)


def test_background_start_failure_is_reported_on_the_terminal(root: Path) -> None:
    conf = root / "bg.conf"
    conf.write_text(f"LocalSocket {root / 'bg.sock'}\nDatabaseDirectory {root / 'missing'}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "vigil.cli.vigild", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert f"ERROR: {root / 'missing'}: no such file or directory" in proc.stderr
