"""vigil.client against an in-process fake clamd, and ``vigil client`` against clamdscan.

The fake server answers z-commands with canned clamd replies, so the library and the CLI's
message handling are tested without a daemon. The differential tests run Debian's real
clamdscan and ``vigil client`` against one real clamd per module and compare stdout, stderr
and exit status (times and dates in the summary are masked).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vigil import __version__
from vigil.cli import client as cli
from vigil.client import (
    ClamdClient,
    ClientError,
    ClientSettings,
    CommandRejected,
    Connection,
    ConnectionLost,
    DaemonUnavailable,
    ScanMode,
    ScanResult,
    TCPAddress,
    UnixAddress,
    Verdict,
    parse_client_settings,
    read_client_settings,
)
from vigil.errors import ConfigError, ProtocolError, VigilError

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
SIG = "Eicar-Test-Signature"


# --------------------------------------------------------------------------- fake clamd


class Reader:
    """Server side of one connection: z-commands, INSTREAM chunks and passed descriptors."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.fds: list[int] = []
        self.eof = False

    def fill(self) -> None:
        data, fds, _, _ = socket.recv_fds(self.sock, 65536, 4)
        self.buf += data
        self.fds += fds
        self.eof = not data

    def command(self) -> bytes | None:
        while b"\x00" not in self.buf:
            if self.eof:
                return None
            self.fill()
        end = self.buf.index(b"\x00")
        raw = bytes(self.buf[:end])
        del self.buf[: end + 1]
        assert raw[:1] == b"z", raw
        return raw[1:]

    def exact(self, n: int) -> bytes:
        while len(self.buf) < n and not self.eof:
            self.fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def chunks(self) -> bytes:
        data = b""
        while True:
            (size,) = struct.unpack(">I", self.exact(4))
            if size == 0:
                return data
            data += self.exact(size)


class FakeClamd:
    """A canned clamd on a Unix socket; ``overrides`` maps a command to raw reply bytes."""

    def __init__(self, directory: Path, overrides: dict[bytes, bytes] | None = None) -> None:
        self.path = str(directory / "fake.sock")
        self.overrides = overrides or {}
        self.received: list[bytes] = []
        self.streams: list[bytes] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(16)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown(socket.SHUT_RDWR)  # wakes the accept() in the server thread
        self.server.close()
        self.thread.join(5)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                try:
                    self._handle(conn)
                except OSError:
                    pass

    @staticmethod
    def verdict(data: bytes, name: str) -> bytes:
        return f"{name}: {SIG} FOUND".encode() if EICAR in data else f"{name}: OK".encode()

    def answer(self, cmd: bytes, reader: Reader) -> list[bytes]:
        self.received.append(cmd)
        if cmd in self.overrides:
            return [self.overrides[cmd]]
        name, _, arg = cmd.partition(b" ")
        if cmd == b"PING":
            return [b"PONG"]
        if cmd == b"VERSION":
            return [b"ClamAV 9.9.9/1/Thu Jan  1 00:00:00 1970"]
        if cmd == b"VERSIONCOMMANDS":
            return [b"ClamAV 9.9.9| COMMANDS: SCAN PING VERSION"]
        if cmd == b"RELOAD":
            return [b"RELOADING"]
        if cmd in (b"SHUTDOWN", b"END"):
            return []
        if cmd == b"INSTREAM":
            data = reader.chunks()
            self.streams.append(data)
            return [self.verdict(data, "stream")]
        if cmd == b"FILDES":
            reader.exact(1)
            fd = reader.fds.pop(0)
            with os.fdopen(fd, "rb") as fh:
                return [self.verdict(fh.read(), f"fd[{fd}]")]
        if name in (b"SCAN", b"CONTSCAN", b"MULTISCAN", b"ALLMATCHSCAN") and arg:
            path = Path(os.fsdecode(arg))
            if not path.exists():
                return [arg + b": File path check failure: No such file or directory. ERROR"]
            files = sorted(path.iterdir()) if path.is_dir() else [path]
            found = [self.verdict(f.read_bytes(), str(f)) for f in files if f.is_file()]
            found = [line for line in found if line.endswith(b" FOUND")]
            return found or [arg + b": OK"]
        return [b"UNKNOWN COMMAND"]

    def _handle(self, conn: socket.socket) -> None:
        reader = Reader(conn)
        cmd = reader.command()
        if cmd is None:
            return
        if cmd != b"IDSESSION":
            lines = self.answer(cmd, reader)
            conn.sendall(
                b"".join(line if line.endswith(b"\n") else line + b"\x00" for line in lines)
            )
            return
        rid = 0
        while (cmd := reader.command()) is not None:
            rid += 1
            if cmd == b"END":
                return
            for line in self.answer(cmd, reader):
                conn.sendall(f"{rid}: ".encode() + line + b"\x00")


@pytest.fixture
def sockdir() -> Iterator[Path]:
    """A short private directory for Unix sockets (paths are limited to ~100 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="vc", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fake(sockdir: Path) -> Iterator[FakeClamd]:
    server = FakeClamd(sockdir)
    yield server
    server.close()


@pytest.fixture
def client(fake: FakeClamd) -> ClamdClient:
    return ClamdClient(UnixAddress(fake.path), timeout=10)


# --------------------------------------------------------------------------- library


def test_ping_version_reload_shutdown(client: ClamdClient, fake: FakeClamd) -> None:
    client.ping()
    assert client.version() == "ClamAV 9.9.9/1/Thu Jan  1 00:00:00 1970"
    assert client.version_commands() == ("ClamAV 9.9.9", ("SCAN", "PING", "VERSION"))
    client.reload()
    client.shutdown()
    assert fake.received == [b"PING", b"VERSION", b"VERSIONCOMMANDS", b"RELOAD", b"SHUTDOWN"]


def test_scan_modes_send_their_command(
    client: ClamdClient, fake: FakeClamd, tmp_path: Path
) -> None:
    (tmp_path / "clean.txt").write_bytes(b"hello\n")
    (tmp_path / "bad.com").write_bytes(EICAR)
    assert client.scan(str(tmp_path / "clean.txt")) == [
        ScanResult(str(tmp_path / "clean.txt"), Verdict.OK, "", f"{tmp_path}/clean.txt: OK")
    ]
    [hit] = client.contscan(str(tmp_path))
    assert (hit.path, hit.verdict, hit.detail, hit.infected) == (
        f"{tmp_path}/bad.com",
        Verdict.FOUND,
        SIG,
        True,
    )
    client.scan(str(tmp_path), ScanMode.MULTISCAN)
    client.allmatchscan(str(tmp_path))
    names = [cmd.split(b" ")[0] for cmd in fake.received]
    assert names == [b"SCAN", b"CONTSCAN", b"MULTISCAN", b"ALLMATCHSCAN"]
    # The path goes out byte for byte after exactly one space (spec §2.6).
    assert fake.received[0] == b"SCAN " + os.fsencode(tmp_path / "clean.txt")


def test_scan_error_line(client: ClamdClient) -> None:
    [res] = client.scan("/nonexistent/x")
    assert res.verdict is Verdict.ERROR
    assert res.path == "/nonexistent/x"
    assert res.detail == "File path check failure: No such file or directory."


@pytest.mark.parametrize(
    ("line", "path", "verdict", "detail"),
    [
        ("/a: OK", "/a", Verdict.OK, ""),
        ("/a: b.com: Sig.X FOUND", "/a: b.com", Verdict.FOUND, "Sig.X"),
        ("stream: Sig FOUND", "stream", Verdict.FOUND, "Sig"),
        ("/f: Access denied. ERROR", "/f", Verdict.ERROR, "Access denied."),
        ("INSTREAM size limit exceeded. ERROR", "", Verdict.ERROR, "INSTREAM size limit exceeded."),
        ("/d: Excluded", "/d", Verdict.OTHER, "Excluded"),
        ("/x: File path check failure: Permission denied. ERROR", "/x", Verdict.ERROR,
         "File path check failure: Permission denied."),
    ],
)  # fmt: skip
def test_scan_result_parse(line: str, path: str, verdict: Verdict, detail: str) -> None:
    res = ScanResult.parse(line)
    assert (res.path, res.verdict, res.detail, res.line) == (path, verdict, detail, line)


def test_instream_chunks_and_truncation(fake: FakeClamd) -> None:
    small = ClamdClient(UnixAddress(fake.path), chunk_size=7, stream_max_length=100)
    assert small.instream(EICAR).line == f"stream: {SIG} FOUND"
    assert small.instream(io.BytesIO(b"x" * 40 + EICAR)).verdict is Verdict.OK  # cut at 100
    assert small.instream([b"ab", b"", b"cd"]).line == "stream: OK"
    assert fake.streams == [EICAR, (b"x" * 40 + EICAR)[:100], b"abcd"]
    unlimited = ClamdClient(UnixAddress(fake.path), stream_max_length=0)
    assert unlimited.instream(b"y" * 200 + EICAR).infected
    configured = parse_client_settings(f"LocalSocket {fake.path}\nStreamMaxLength 1K\n").client()
    assert not configured.instream(b"z" * 1024 + EICAR).infected
    assert len(fake.streams[-1]) == 1024


def test_fildes_passes_a_descriptor(client: ClamdClient, tmp_path: Path) -> None:
    target = tmp_path / "bad.com"
    target.write_bytes(EICAR)
    with open(target, "rb") as fh:
        res = client.fildes(fh)
    assert res.infected and res.path.startswith("fd[")


def test_fildes_needs_a_unix_socket() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        with pytest.raises(ClientError, match="Unix socket"):
            Connection(sock).send_fd(0)


def test_session_numbers_requests(client: ClamdClient, tmp_path: Path) -> None:
    target = tmp_path / "clean.txt"
    target.write_bytes(b"hello\n")
    with client.session() as session:
        session.ping()
        assert session.version().startswith("ClamAV 9.9.9")
        first = session.submit_instream(EICAR)
        second = session.submit_scan(str(target))
        with open(target, "rb") as fh:
            third = session.submit_fildes(fh)
        assert (first, second, third) == (3, 4, 5)
        early = session.poll(timeout=5)  # whatever has arrived; END collects the rest
        replies = {r.request_id: r.result for r in early + session.end()}
    assert sorted(replies) == [3, 4, 5]
    assert replies[3].infected
    assert replies[4].line == f"{target}: OK"
    assert replies[5].verdict is Verdict.OK


def test_rejected_and_unterminated_replies(sockdir: Path) -> None:
    server = FakeClamd(sockdir, {b"RELOAD": b"UNKNOWN COMMAND", b"PING": b"PONG\n"})
    try:
        c = ClamdClient(UnixAddress(server.path), timeout=10)
        with pytest.raises(CommandRejected) as rejected:
            c.reload()
        assert isinstance(rejected.value, ProtocolError)
        assert rejected.value.reply == "UNKNOWN COMMAND"
        with pytest.raises(ConnectionLost) as lost:
            c.ping()
        assert lost.value.partial == b"PONG\n"
        with pytest.raises(ValueError):
            c.scan("/a\x00b")
    finally:
        server.close()


def test_unavailable_daemon_and_fallback(fake: FakeClamd, sockdir: Path) -> None:
    missing = UnixAddress(str(sockdir / "missing.sock"))
    seen: list[tuple[object, OSError]] = []
    c = ClamdClient(
        [missing, UnixAddress(fake.path)], on_connect_error=lambda a, e: seen.append((a, e))
    )
    c.ping()
    assert [a for a, _ in seen] == [missing]
    with pytest.raises(DaemonUnavailable) as exc:
        ClamdClient(missing).ping()
    assert isinstance(exc.value, ConnectionError) and isinstance(exc.value, VigilError)
    assert "No such file or directory" in str(exc.value)
    with pytest.raises(DaemonUnavailable, match="no clamd address"):
        ClamdClient([]).ping()


def test_tcp_address() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                assert conn.recv(64) == b"zPING\x00"
                conn.sendall(b"PONG\x00")

        thread = threading.Thread(target=serve)
        thread.start()
        ClamdClient(TCPAddress("127.0.0.1", port), timeout=10).ping()
        thread.join()


# --------------------------------------------------------------------------- settings


def test_settings_reader() -> None:
    text = (
        "# comment\n"
        "  \n"
        'LocalSocket "/run/x y.sock"\n'
        "LocalSocket /ignored\n"  # the first occurrence wins
        "TCPSocket 3310\n"
        "TCPAddr 127.0.0.1\n"
        "TCPAddr any\n"
        "StreamMaxLength 10K\n"
        "FollowFileSymlinks yes\n"
        "ExcludePath ^/proc/\n"
        "SomeDaemonOption whatever\n"  # other options are not checked here
    )
    s = parse_client_settings(text)
    assert s == ClientSettings(
        local_socket="/run/x y.sock",
        tcp_socket=3310,
        tcp_addrs=("127.0.0.1", "any"),
        stream_max_length=10 * 1024,
        follow_file_symlinks=True,
        exclude_paths=("^/proc/",),
    )
    assert s.addresses() == [
        UnixAddress("/run/x y.sock"),
        TCPAddress("127.0.0.1", 3310),
        TCPAddress(None, 3310),
    ]
    assert parse_client_settings("StreamMaxLength 010\n").stream_max_length == 8  # octal
    assert parse_client_settings("StreamMaxLength 0\n").stream_max_length == 2**63 - 1
    assert parse_client_settings("").stream_max_length == 100 * 1024 * 1024


@pytest.mark.parametrize(
    ("text", "lineno", "reason"),
    [
        ("\nStreamMaxLength 10 # c\n", 2, "incorrect argument format"),
        ("LocalSocket\n", 1, "missing argument for option"),
        ("TCPSocket -1\n", 1, "incorrect argument format"),
        ('LocalSocket "\n', 1, "missing closing quote"),
        ("Example\n", 1, "please edit the example config file"),
    ],
)
def test_settings_errors(text: str, lineno: int, reason: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_client_settings(text, "c.conf")
    assert (exc.value.path, exc.value.lineno, exc.value.reason) == ("c.conf", lineno, reason)


def test_settings_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        read_client_settings(str(tmp_path / "nope.conf"))


# --------------------------------------------------------------------------- CLI units


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vigil client")
    cli.add_arguments(parser)
    return parser.parse_args(argv)


def run_cli_bytes(argv: list[str]) -> tuple[int, bytes, bytes]:
    """Run ``vigil client`` in-process; returns (status, stdout, stderr) as bytes."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        status = cli.run(parse(argv))
    finally:
        sys.stdout, sys.stderr = saved
    out.flush()
    err.flush()
    return status, out.buffer.getvalue(), err.buffer.getvalue()


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    status, out, err = run_cli_bytes(argv)
    return status, out.decode(), err.decode()


def conf_for(tmp_path: Path, *lines: str) -> str:
    conf = tmp_path / "clamd.conf"
    conf.write_text("".join(line + "\n" for line in lines))
    return str(conf)


def test_default_socket_and_env(fake: FakeClamd, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli.DEFAULT_SOCKET == "/run/vigil/vigild.sock"
    monkeypatch.setenv(cli.SOCKET_ENV, fake.path)
    assert run_cli(["--ping", "1"]) == (0, "PONG\n", "")
    assert run_cli(["-V"]) == (0, "ClamAV 9.9.9/1/Thu Jan  1 00:00:00 1970\n", "")


def test_unreachable_daemon(sockdir: Path, tmp_path: Path) -> None:
    sock = str(sockdir / "none.sock")
    conf = conf_for(tmp_path, f"LocalSocket {sock}")
    error = f"ERROR: Could not connect to clamd on LocalSocket {sock}: No such file or directory\n"
    status, out, err = run_cli(["-c", conf, "--ping", "2:0"])
    assert status == cli.EXIT_TIMEOUT
    assert out == (
        "Could not connect, will PING again in 0 seconds\n"
        "PING timeout exceeded; No response from clamd\n"
    )
    assert err == error * 2
    status, out, err = run_cli(["-c", conf, str(tmp_path)])
    assert status == 2 and err == error
    assert out.startswith("\n----------- SCAN SUMMARY -----------\nInfected files: 0\n")
    assert "Total errors: 1\n" in out
    assert run_cli(["-c", conf, "-V"]) == (0, f"Vigil {__version__}\n", error)
    assert run_cli(["-c", conf, "--reload"]) == (2, "", error)


def test_bad_ping_argument(fake: FakeClamd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cli.SOCKET_ENV, fake.path)
    assert run_cli(["--ping", "3x"]) == (
        34,
        "",
        "WARNING: attempt_str would go past end of buffer\n",
    )
    assert run_cli(["--ping", "3:y"])[0] == cli.EXIT_BAD_PING


def test_config_errors(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.conf")
    assert run_cli(["-c", missing, "x"]) == (
        2,
        "",
        f"ERROR: Can't parse clamd configuration file {missing}\n",
    )
    conf = conf_for(tmp_path, "LocalSocket")
    assert run_cli(["-c", conf, "x"])[2] == (
        f"ERROR: Missing argument for option at {conf}:1\n"
        f"ERROR: Can't parse clamd configuration file {conf}\n"
    )


def test_scan_output_and_summary(fake: FakeClamd, tmp_path: Path) -> None:
    conf = conf_for(tmp_path, f"LocalSocket {fake.path}")
    (tmp_path / "clean.txt").write_bytes(b"hi\n")
    (tmp_path / "bad.com").write_bytes(EICAR)
    status, out, err = run_cli(["-c", conf, f"{tmp_path}/clean.txt", f"{tmp_path}/bad.com"])
    assert status == 1 and err == ""
    lines = out.splitlines()
    assert lines[:5] == [
        f"{tmp_path}/clean.txt: OK",
        f"{tmp_path}/bad.com: {SIG} FOUND",
        "",
        "----------- SCAN SUMMARY -----------",
        "Infected files: 1",
    ]
    assert lines[5].startswith("Time: ") and lines[5].endswith(" s)")
    assert lines[6].startswith("Start Date: ") and lines[7].startswith("End Date:   ")
    # -i drops the OK line; --stream uploads the files instead of naming them.
    status, out, _ = run_cli(["-c", conf, "-i", "--stream", "--no-summary", str(tmp_path)])
    assert (status, out) == (1, f"{tmp_path}/bad.com: {SIG} FOUND\n")
    assert fake.received[-2:] == [b"INSTREAM", b"INSTREAM"]


def test_odd_replies(sockdir: Path, tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"data")
    cmd = b"CONTSCAN " + os.fsencode(target)
    for reply, stdout, stderr in [
        (b"UNKNOWN COMMAND", 'clamd replied "UNKNOWN COMMAND". Command was CONTSCAN\n', ""),
        (b"UNKNOWN COMMAND\n", "", "ERROR: Command rejected by clamd (wrong clamd version?)\n"),
        (b"garbage\n", "", "ERROR: Communication error\n"),
        (b"no colon here", 'Failed to parse reply: "no colon here"\n', ""),
    ]:
        server = FakeClamd(sockdir, {cmd: reply})
        try:
            conf = conf_for(tmp_path, f"LocalSocket {server.path}")
            assert run_cli(["-c", conf, "--no-summary", str(target)]) == (2, stdout, stderr)
        finally:
            server.close()
            os.unlink(server.path)


def test_trim_path() -> None:
    assert cli.trim_path("/a/b//") == ("/a/b", "/a/b")
    assert cli.trim_path("//a/b/") == ("//a/b", "/a/b")
    assert cli.trim_path("/") == ("/", "/")


def test_walker_order_and_skips(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "inner").write_bytes(b"1")
    for name in ("z", "a", "m"):
        (tmp_path / name).write_bytes(b"x")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link").symlink_to(tmp_path / "a")
    calls: list[tuple[cli.Reason, str]] = []

    def visit(reason: cli.Reason, filename: str | None, path: str) -> cli.Status:
        calls.append((reason, path[len(str(tmp_path)) :]))
        return cli.Status.SUCCESS

    rep = cli.Reporter(io.StringIO(), io.StringIO())
    walker = cli.Walker(ClientSettings(), lambda p: False, rep)
    assert walker.walk(str(tmp_path), 15, visit) is cli.Status.SUCCESS
    files = sorted(("a", "m", "z"), key=lambda n: os.stat(tmp_path / n).st_ino)
    assert calls == [
        (cli.Reason.TOPLEVEL_DIR, ""),
        (cli.Reason.SKIPPED_SPECIAL, "/fifo"),  # reported while listing, before any visit
        *[(cli.Reason.FILE, f"/{n}") for n in files],
        (cli.Reason.FILE, "/sub/inner"),
    ]
    calls.clear()
    walker.walk(str(tmp_path), 0, visit)
    assert (cli.Reason.SKIPPED_DIR, "/sub") in calls


def test_file_list_lines(tmp_path: Path) -> None:
    listing = tmp_path / "list"
    listing.write_bytes(b"a\r\nb\n\n" + b"c" * 1030 + b"\nlast")
    client = cli.Client(
        parse(["-f", str(listing)]), ClientSettings(), cli.Reporter(sys.stdout, sys.stderr)
    )
    assert list(client.file_names()) == ["a", "b", "\n", "c" * 1023, "c" * 7, "last"]


# --------------------------------------------------------------------------- differential

CLAMD = shutil.which("clamd") or ("/usr/sbin/clamd" if os.path.exists("/usr/sbin/clamd") else None)
CLAMDSCAN = shutil.which("clamdscan")
MASKED = ("Time:", "Start Date:", "End Date:")


class RealClamd:
    """Debian's clamd on a Unix socket and 127.0.0.1, with an EICAR hash and body signature."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="vcd", dir="/tmp"))
        (self.dir / "db").mkdir()
        (self.dir / "db" / "test.hdb").write_text(
            "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n"
        )
        (self.dir / "db" / "test.ndb").write_text("EicarBody:0:*:58354f2150\n")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.sock = str(self.dir / "clamd.sock")
        self.conf = self.write_conf("clamd.conf", f"LocalSocket {self.sock}", *self.tcp())
        assert CLAMD is not None
        self.proc = subprocess.Popen(
            [CLAMD, "-c", self.conf],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                ClamdClient(UnixAddress(self.sock), timeout=5).ping()
                break
            except ClientError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail("clamd did not start: " + self.log())
                time.sleep(0.1)

    def tcp(self) -> tuple[str, str]:
        return f"TCPSocket {self.port}", "TCPAddr 127.0.0.1"

    def write_conf(self, name: str, *lines: str) -> str:
        path = self.dir / name
        common = [f"DatabaseDirectory {self.dir / 'db'}", f"LogFile {self.dir / 'clamd.log'}"]
        path.write_text("\n".join([*lines, *common, "Foreground yes", ""]))
        return str(path)

    def log(self) -> str:
        try:
            return (self.dir / "clamd.log").read_text()
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def clamd() -> Iterator[RealClamd]:
    if CLAMD is None or CLAMDSCAN is None:
        pytest.skip("Debian's clamd/clamdscan are not installed")
    daemon = RealClamd()
    yield daemon
    daemon.stop()


@pytest.fixture(scope="module")
def tree(clamd: RealClamd) -> Path:
    """Files to scan: clean, infected, directories, a FIFO, symlinks and odd names."""
    t = clamd.dir / "t"
    for sub in ("d", "v", "empty", "deep/a/b/c", "odd"):
        (t / sub).mkdir(parents=True)
    (t / "clean.txt").write_bytes(b"hello world\n")
    (t / "eicar.com").write_bytes(EICAR)
    (t / "d" / "clean.txt").write_bytes(b"hello world\n")
    (t / "v" / "a.com").write_bytes(EICAR)
    (t / "v" / "b.com").write_bytes(EICAR)
    (t / "deep" / "a" / "b" / "c" / "x.com").write_bytes(EICAR)
    (t / "deep" / "a" / "y.txt").write_bytes(b"y\n")
    (t / "odd" / "a: b.com").write_bytes(EICAR)
    (t / "odd" / "e:x(1).com").write_bytes(EICAR)
    (t / "odd" / os.fsdecode(b"n\xffl.com")).write_bytes(EICAR)
    (t / "big.bin").write_bytes(os.urandom(200_000) + EICAR)
    os.mkfifo(t / "fifo")
    (t / "link.com").symlink_to(t / "eicar.com")
    (t / "vlink").symlink_to(t / "v")
    (t / "deep" / "a" / "l.com").symlink_to(t / "eicar.com")
    return t


def mask(text: bytes) -> list[bytes]:
    return [
        line.split(b":")[0] + b": X" if line.startswith(tuple(m.encode() for m in MASKED)) else line
        for line in text.split(b"\n")
    ]


def normalise(status: int, out: bytes, err: bytes, unordered: bool) -> tuple[object, ...]:
    lines, errors = mask(out), mask(err)
    if unordered:  # MULTISCAN and IDSESSION replies arrive in completion order
        lines, errors = sorted(lines), sorted(errors)
    return status, lines, errors


VIGIL = (
    "import argparse, sys; from vigil.cli.client import add_arguments, run; "
    "p = argparse.ArgumentParser(prog='vigil client'); add_arguments(p); "
    "sys.exit(run(p.parse_args(sys.argv[1:])))"
)


def run_vigil(cwd: Path, args: list[str], stdin: bytes | Path | None) -> tuple[int, bytes, bytes]:
    """``vigil client`` in-process, or as a subprocess when standard input matters."""
    if stdin is None:
        saved = os.getcwd()
        os.chdir(cwd)
        try:
            return run_cli_bytes(args)
        finally:
            os.chdir(saved)
    return run_process(cwd, [sys.executable, "-c", VIGIL, *args], stdin)


def run_process(cwd: Path, cmd: list[str], stdin: bytes | Path | None) -> tuple[int, bytes, bytes]:
    if isinstance(stdin, bytes):
        proc = subprocess.run(cmd, cwd=cwd, input=stdin, capture_output=True, timeout=120)
    else:
        with open(stdin or os.devnull, "rb") as fh:
            proc = subprocess.run(cmd, cwd=cwd, stdin=fh, capture_output=True, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def compare(
    cwd: Path, args: list[str], *, stdin: bytes | Path | None = None, unordered: bool = False
) -> bytes:
    """Run clamdscan and ``vigil client`` the same way, assert identical results; clamdscan's
    stdout is returned."""
    assert CLAMDSCAN is not None
    theirs = run_process(cwd, [CLAMDSCAN, *args], stdin)
    ours = run_vigil(cwd, args, stdin)
    assert normalise(*ours, unordered) == normalise(*theirs, unordered), (args, theirs, ours)
    return theirs[1]


PATHS = [
    "clean.txt", "eicar.com", "v", "d/", "empty", "fifo", "link.com", "vlink", "nonexistent",
    "d/../eicar.com", "vlink/../v", "odd", "deep",
]  # fmt: skip
MODES = [
    [], ["--stream"], ["--fdpass"], ["-m"], ["-z"], ["-z", "--stream"], ["-m", "--stream"],
    ["-m", "--fdpass"], ["-i"], ["--no-summary"], ["--quiet"], ["--stdout"], ["-v"],
]  # fmt: skip


@pytest.mark.parametrize("mode", MODES, ids=lambda m: " ".join(m) or "default")
@pytest.mark.differential
def test_differential_scan_modes(clamd: RealClamd, tree: Path, mode: list[str]) -> None:
    out = compare(tree, ["-c", clamd.conf, *mode, *PATHS], unordered="-m" in mode)
    assert out.count(b" FOUND\n") >= 5 or "--quiet" in mode


@pytest.mark.parametrize(
    "options",
    [
        ["FollowFileSymlinks yes", "MaxDirectoryRecursion 1"],
        ["FollowDirectorySymlinks yes", "FollowFileSymlinks yes"],
        ["ExcludePath /b/", "ExcludePath y\\.txt$"],
        ["StreamMaxLength 100K"],
    ],
    ids=["follow-files-depth", "follow-all", "exclude", "stream-max"],
)
@pytest.mark.differential
def test_differential_walk_options(clamd: RealClamd, tree: Path, options: list[str]) -> None:
    conf = clamd.write_conf("walk.conf", f"LocalSocket {clamd.sock}", *options)
    for mode in ([], ["--stream"], ["-m", "--fdpass"], ["-z"]):
        compare(tree, ["-c", conf, *mode, "deep", "vlink", "link.com", "big.bin"], unordered=True)


@pytest.mark.differential
def test_differential_allmatch_counts(clamd: RealClamd, tree: Path) -> None:
    out = compare(tree, ["-c", clamd.conf, "-z", "v", "eicar.com", "eicar.com", "v"])
    assert b"Infected files: 5\n" in out


@pytest.mark.differential
def test_differential_tcp(clamd: RealClamd, tree: Path) -> None:
    conf = clamd.write_conf("tcp.conf", *clamd.tcp())
    compare(tree, ["-c", conf, "clean.txt", "v", "--fdpass"])
    compare(tree, ["-c", conf, "-"], stdin=EICAR)
    only_port = clamd.write_conf("port.conf", f"TCPSocket {clamd.port}")
    compare(tree, ["-c", only_port, "clean.txt"])  # no TCPAddr: clamdscan never connects


@pytest.mark.differential
def test_differential_stdin(clamd: RealClamd, tree: Path) -> None:
    for mode in ([], ["--stream"], ["-m"]):
        compare(tree, ["-c", clamd.conf, *mode, "-"], stdin=tree / "eicar.com")  # FILDES of fd 0
        compare(tree, ["-c", clamd.conf, *mode, "-"], stdin=b"hello\n")  # a pipe: INSTREAM
    compare(tree, ["-c", clamd.conf, "clean.txt", "-"])


@pytest.mark.differential
def test_differential_file_list_and_cwd(clamd: RealClamd, tree: Path) -> None:
    listing = tree.parent / "list.txt"
    listing.write_bytes(b"clean.txt\r\neicar.com\n\n-\nnonexistent\nv\n")
    compare(tree, ["-c", clamd.conf, "-f", str(listing), "d"])
    compare(tree, ["-c", clamd.conf, "-f", str(tree.parent / "missing.txt")])
    compare(tree / "d", ["-c", clamd.conf])  # no argument: the working directory


@pytest.mark.differential
def test_differential_commands(clamd: RealClamd, tree: Path) -> None:
    for args in (["--ping", "1"], ["-p", "2:1"], ["--ping", "x"], ["-V"], ["--wait", "v"]):
        compare(tree, ["-c", clamd.conf, *args])
    compare(tree, ["-c", clamd.conf, "--reload"])
    ClamdClient(UnixAddress(clamd.sock), timeout=30).ping()


@pytest.mark.differential
def test_differential_failures(clamd: RealClamd, tree: Path) -> None:
    down = clamd.write_conf("down.conf", f"LocalSocket {clamd.dir / 'none.sock'}")
    for args in (
        ["clean.txt", "v"],
        ["--stream", "v", "d"],
        ["-m", "--stream", "v"],
        ["--ping", "2:0"],
        ["--wait", "--ping", "2:0", "clean.txt"],
        ["--reload"],
        ["-"],
    ):
        compare(tree, ["-c", down, *args], stdin=b"x")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    refused = clamd.write_conf("refused.conf", f"TCPSocket {closed_port}", "TCPAddr 127.0.0.1")
    compare(tree, ["-c", refused, "clean.txt"])
    for bad in ("LocalSocket", "StreamMaxLength 10 # c"):
        conf = clamd.write_conf("bad.conf", bad)
        compare(tree, ["-c", conf, "clean.txt"])
    compare(tree, ["-c", str(tree / "missing.conf"), "clean.txt"])


def test_log_file(fake: FakeClamd, tmp_path: Path) -> None:
    conf = conf_for(tmp_path, f"LocalSocket {fake.path}")
    log = tmp_path / "report.log"
    status, _, _ = run_cli(["-c", conf, "-l", str(log), "--no-summary", str(tmp_path / "nope")])
    assert status == 2
    assert log.read_text() == (
        f"--------------------------------------\nERROR: Can't access file {tmp_path}/nope\n"
    )
