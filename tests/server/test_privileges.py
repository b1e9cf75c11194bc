"""Privileges and exposure (issue #7, item 4): User, socket permissions, TCP exposure, what a
path scan and FILDES may read, VirusEvent quoting and log escaping.

Tests that run both daemons are differential: the same expectations hold for Debian's clamd
and for vigild (skipped when clamd is missing). Tests that change users need root and the
``nobody`` account, and skip without them.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import pwd
import re
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.daemon.conftest import CLAMD, Conn, command_for, free_tcp_port, stop_process
from tests.server.conftest import EICAR, EICAR_HDB
from vigil.cli.vigild import _SafeFormatter
from vigil.engine.database import DatabaseOptions, load_database
from vigil.engine.scanner import Engine
from vigil.server.pathscan import MAX_LOG_MESSAGE, PathScan, printable, run_virus_event
from vigil.server.settings import ServerSettings

SIG = b"Eicar-Test-Signature.UNOFFICIAL"
KINDS = ("clamd", "vigild")


def _nobody() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        return None


NOBODY = _nobody()
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")
needs_nobody = pytest.mark.skipif(
    os.geteuid() != 0 or NOBODY is None, reason="dropping privileges needs root and 'nobody'"
)


def _kind_param(kind: str) -> object:
    marks = [pytest.mark.differential] if kind == "clamd" else []
    if kind == "clamd" and CLAMD is None:
        marks.append(pytest.mark.skip(reason="Debian's clamd is not installed"))
    return pytest.param(kind, marks=marks, id=kind)


ALL_KINDS = [_kind_param(k) for k in KINDS]


# ------------------------------------------------------------------------------ harness


class Running:
    """A daemon of either kind started from ``options`` in ``tmp`` (its working directory)."""

    def __init__(self, kind: str, tmp: Path, options: list[tuple[str, str]]) -> None:
        self.kind = kind
        self.tmp = tmp
        self.port = 0  # TCPSocket, when the test sets one
        self.sock = tmp / "run" / "s.sock"
        self.log = tmp / "daemon.log"
        base = [
            ("LocalSocket", str(self.sock)),
            ("DatabaseDirectory", str(tmp / "db")),
            ("Foreground", "yes"),
            ("LogFile", str(self.log)),
            ("LogVerbose", "yes"),
            ("SelfCheck", "0"),
        ]
        conf = tmp / "daemon.conf"
        conf.write_text("".join(f"{k} {v}\n" for k, v in base + options))
        with open(tmp / "daemon.out", "wb") as out:
            self.proc = subprocess.Popen(
                command_for(kind, conf),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=tmp,
            )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{kind} exited: {self.output()}")
            with contextlib.suppress(OSError):
                if self.request(b"zPING\x00", timeout=2) == b"PONG\x00":
                    return
            if time.monotonic() > deadline:
                stop_process(self.proc)
                raise RuntimeError(f"{kind} did not answer PING: {self.output()}")
            time.sleep(0.05)

    def output(self) -> str:
        text = ""
        for p in (self.tmp / "daemon.out", self.log):
            if p.exists():
                text += p.read_text(errors="replace")[-3000:]
        return text

    def connect(self, timeout: float = 10.0) -> Conn:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(timeout)
            s.connect(str(self.sock))
        except OSError:
            s.close()
            raise
        return Conn(s, timeout)

    def request(self, data: bytes, timeout: float = 10.0) -> bytes:
        with self.connect(timeout) as c:
            c.send(data)
            return c.read_all(timeout).replace(os.fsencode(self.tmp), b"<T>")

    def fildes(self, fd: int) -> bytes:
        with self.connect() as c:
            c.send_fds(b"zFILDES\x00X", [fd])
            return re.sub(rb"fd\[\d+\]", b"fd[N]", c.read_all())

    def stop(self) -> int:
        return stop_process(self.proc)


def _new_tmp() -> Path:
    tmp = Path(tempfile.mkdtemp(prefix="vgp", dir="/tmp"))
    tmp.chmod(0o755)  # so that an unprivileged daemon can reach its files
    (tmp / "db").mkdir(mode=0o755)
    (tmp / "db" / "test.hdb").write_text(EICAR_HDB)
    (tmp / "db" / "test.hdb").chmod(0o644)
    (tmp / "run").mkdir()
    return tmp


@contextlib.contextmanager
def running(
    kind: str, options: list[tuple[str, str]], prepare: Callable[[Path], None]
) -> Iterator[Running]:
    tmp = _new_tmp()
    d: Running | None = None
    try:
        prepare(tmp)
        d = Running(kind, tmp, options)
        yield d
    finally:
        if d is not None:
            d.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------ User


def _user_tree(tmp: Path) -> None:
    (tmp / "run").chmod(0o1777)  # sticky, like /tmp: only a file's owner may remove it
    t = tmp / "t"
    t.mkdir(mode=0o755)
    (t / "pub.com").write_bytes(EICAR)
    (t / "pub.com").chmod(0o644)
    (t / "secret.com").write_bytes(EICAR)
    (t / "secret.com").chmod(0o600)
    (t / "closed").mkdir(mode=0o700)
    (t / "closed" / "x.com").write_bytes(EICAR)


@needs_nobody
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_user_drops_privileges_and_scans_with_its_permissions(kind: str) -> None:
    assert NOBODY is not None
    uid, gid = NOBODY.pw_uid, NOBODY.pw_gid
    with running(kind, [("User", "nobody")], _user_tree) as d:
        status = Path(f"/proc/{d.proc.pid}/status").read_text().splitlines()
        ids = {ln.split(":")[0]: ln.split()[1:] for ln in status if ":" in ln}
        assert ids["Uid"] == [str(uid)] * 4
        assert ids["Gid"] == [str(gid)] * 4
        assert sorted(map(int, ids["Groups"])) == sorted(set(os.getgrouplist("nobody", gid)))
        # the socket and the log belong to User, so that it can remove and reopen them
        assert os.stat(d.sock).st_uid == uid
        assert d.log.stat().st_uid == uid

        def scan(cmd: str, rel: str) -> bytes:
            return d.request(f"z{cmd} {d.tmp}/{rel}\x00".encode())

        assert scan("SCAN", "t/pub.com") == b"<T>/t/pub.com: " + SIG + b" FOUND\x00"
        # the daemon opens nothing its user could not: clamd's replies, word for word
        assert scan("SCAN", "t/secret.com") == b"<T>/t/secret.com: Access denied. ERROR\x00"
        assert scan("SCAN", "t/closed") == (
            b"<T>/t/closed: File path check failure: Permission denied. ERROR\x00"
            b"<T>/t/closed: OK\x00"
        )
        lines = scan("CONTSCAN", "t").split(b"\x00")
        assert b"<T>/t/secret.com: Access denied. ERROR" in lines
        assert b"<T>/t/closed: File path check failure: Permission denied. ERROR" in lines
        assert b"<T>/t/pub.com: " + SIG + b" FOUND" in lines
        stream = b"zINSTREAM\x00" + struct.pack(">I", len(EICAR)) + EICAR + b"\0\0\0\0"
        assert d.request(stream) == b"stream: " + SIG + b" FOUND\x00"
        assert d.stop() == 0
        # removed at a clean exit, although root created it in a sticky directory
        assert not d.sock.exists()


def _a_group() -> grp.struct_group | None:
    for name in ("daemon", "bin", "sys", "adm"):
        with contextlib.suppress(KeyError):
            return grp.getgrnam(name)
    return None


@needs_root
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_local_socket_mode_and_group_are_applied(kind: str) -> None:
    group = _a_group()
    if group is None:
        pytest.skip("no system group to give the socket to")
    opts = [("LocalSocketMode", "640"), ("LocalSocketGroup", group.gr_name)]
    with running(kind, opts, lambda tmp: None) as d:
        st = os.stat(d.sock)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o640
        assert (st.st_uid, st.st_gid) == (0, group.gr_gid)
        assert d.stop() == 0
        assert not d.sock.exists()


@needs_root
def test_unknown_socket_group_is_one_clear_line(tmp_path: Path) -> None:
    conf = tmp_path / "c.conf"
    conf.write_text(
        f"LocalSocket {tmp_path / 's.sock'}\nLocalSocketGroup no-such-group-vgl\n"
        f"DatabaseDirectory {tmp_path}\nForeground yes\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "vigil.cli.vigild", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "Unknown group no-such-group-vgl" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "s.sock").exists()


# ------------------------------------------------------------------------------ exposure


def _exposure_tree(tmp: Path) -> None:
    t = tmp / "t"
    t.mkdir()
    (t / "a.com").write_bytes(EICAR)
    (t / "skip").mkdir()
    (t / "skip" / "x.com").write_bytes(EICAR)
    (tmp / "outside.com").write_bytes(EICAR)
    (t / "link.com").symlink_to(tmp / "outside.com")
    (t / "$(touch pwned);`touch pwned2`;x.txt").write_bytes(EICAR)
    (t / "wo.com").write_bytes(EICAR)


@pytest.fixture(scope="module", params=ALL_KINDS)
def exposed(request: pytest.FixtureRequest) -> Iterator[Running]:
    """One daemon per kind with TCP, ExcludePath and a VirusEvent that records its input."""
    kind: str = request.param
    port = free_tcp_port()
    # the command line is fixed; the file name only reaches the shell through the environment
    event = (
        'printf \'[%s][%s][%s]\\n\' "$CLAM_VIRUSEVENT_FILENAME" "$CLAM_VIRUSEVENT_VIRUSNAME" '
        "'%v' >> event.out"
    )
    opts = [("TCPSocket", str(port)), ("VirusEvent", event), ("ExcludePath", "/t/skip$")]
    if kind == "clamd":
        opts.append(("TCPAddr", "127.0.0.1"))  # clamd would bind every address
    with running(kind, opts, _exposure_tree) as d:
        d.port = port
        yield d


def test_tcp_binds_loopback_unless_told_otherwise(exposed: Running) -> None:
    if exposed.kind != "vigild":
        pytest.skip("clamd binds every address without TCPAddr")
    port = exposed.port
    log = exposed.log.read_text()
    assert f"Listening on TCP 127.0.0.1 port {port}" in log
    assert "TCPAddr not set: listening on loopback only" in log
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(table).read_text().splitlines()[1:]:
                local, _, state = row.split()[1], row.split()[2], row.split()[3]
                addr, hexport = local.split(":")
                if int(hexport, 16) == port and state == "0A":  # LISTEN
                    listening.add(addr)
    assert listening == {"0100007F"}  # 127.0.0.1, nothing else
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"zPING\x00")
        assert s.recv(100) == b"PONG\x00"


def test_exclude_path_and_symlinks(exposed: Running) -> None:
    t = exposed.tmp / "t"
    out = exposed.request(f"zCONTSCAN {t}\x00".encode())
    lines = set(out.split(b"\x00"))
    assert b"<T>/t/skip: Excluded" in lines
    assert b"<T>/t/a.com: " + SIG + b" FOUND" in lines
    assert not any(b"link.com" in ln or b"x.com" in ln for ln in lines)  # not followed
    assert exposed.request(f"zSCAN {t}/skip\x00".encode()) == b"<T>/t/skip: Excluded\x00"


def test_virus_event_gets_the_name_only_through_the_environment(exposed: Running) -> None:
    name = "$(touch pwned);`touch pwned2`;x.txt"
    reply = exposed.request(f"zSCAN {exposed.tmp}/t/{name}\x00".encode())
    assert reply == f"<T>/t/{name}: ".encode() + SIG + b" FOUND\x00"
    events = (exposed.tmp / "event.out").read_text().splitlines()
    sig = SIG.decode()
    assert f"[{exposed.tmp}/t/{name}][{sig}][{sig}]" in events
    assert not (exposed.tmp / "pwned").exists()
    assert not (exposed.tmp / "pwned2").exists()
    assert not (exposed.tmp / "t" / "pwned").exists()


def _dir_fd(d: Running) -> int:
    return os.open(d.tmp / "t", os.O_RDONLY | os.O_DIRECTORY)


def _pipe_fd(d: Running) -> int:
    r, w = os.pipe()
    os.write(w, EICAR)  # a writer that never closes: reading it would block
    _KEEP.append(w)
    return r


def _socket_fd(d: Running) -> int:
    a, b = socket.socketpair()
    b.sendall(EICAR)
    _KEEP.append(b.detach())
    return a.detach()


_KEEP: list[int] = []

NOT_REGULAR = {
    "directory": _dir_fd,
    "dev-zero": lambda d: os.open("/dev/zero", os.O_RDONLY),
    "dev-null": lambda d: os.open("/dev/null", os.O_RDONLY),
    "pipe": _pipe_fd,
    "socket": _socket_fd,
}


@pytest.mark.parametrize("case", sorted(NOT_REGULAR))
def test_fildes_accepts_only_regular_files(exposed: Running, case: str) -> None:
    fd = NOT_REGULAR[case](exposed)
    try:
        assert exposed.fildes(fd) == b"fd[N]: Not a regular file ERROR\x00"
    finally:
        os.close(fd)
        while _KEEP:
            os.close(_KEEP.pop())
    assert exposed.request(b"zPING\x00") == b"PONG\x00"


@pytest.mark.parametrize("flags", [os.O_WRONLY, os.O_PATH], ids=["write-only", "o-path"])
def test_fildes_unreadable_descriptor_is_an_error_not_clean(exposed: Running, flags: int) -> None:
    # clamd 1.4.6 answers "fd[N]: OK" here (it could not read a byte, EICAR included);
    # Vigil says it could not read the file rather than call it clean
    if exposed.kind != "vigild":
        pytest.skip("clamd reports an unreadable descriptor as clean")
    fd = os.open(exposed.tmp / "t" / "wo.com", flags)
    try:
        assert exposed.fildes(fd) == b"fd[N]: Can't read file ERROR\x00"
    finally:
        os.close(fd)


def test_log_lines_never_carry_raw_client_bytes(exposed: Running) -> None:
    if exposed.kind != "vigild":
        pytest.skip("clamd writes file names to its log as they are")
    t = exposed.tmp / "t"
    hostile = b"\x1b[31mred\x07\rforged: FOUND\xff\xc2\x9b\xe2\x80\xae.com"
    target = os.fsencode(t) + b"/" + hostile
    Path(os.fsdecode(target)).write_bytes(EICAR)
    reply = exposed.request(b"zSCAN " + target + b"\x00")
    assert reply == b"<T>/t/" + hostile + b": " + SIG + b" FOUND\x00"
    for junk in (
        b"z\x1b]0;title\x07\x01\x02\xff\x00",
        b"nSCAN \x1b[2J\xff\xfe\n",
        b"zINSTREAM\x00\xff\xff\xff\xff",
        b"A" * (1 << 20),  # a 1 MB line without a terminator: dropped unanswered
    ):
        with contextlib.suppress(OSError):
            exposed.request(junk)
    assert exposed.request(b"zPING\x00") == b"PONG\x00"
    raw = exposed.log.read_bytes()
    text = raw.decode("utf-8")  # valid UTF-8 throughout
    assert len(raw) < 64 * 1024
    for line in text.splitlines():
        assert line.isprintable(), line
        assert len(line) <= MAX_LOG_MESSAGE + 100
    assert "\\x1b[31mred\\x07\\x0dforged: FOUND\\xff\\x9b\\u202e.com" in text
    assert not any(ln.startswith("forged") for ln in text.splitlines())


# ------------------------------------------------------------------------------ units


def test_printable_escapes_every_control_and_undecodable_byte() -> None:
    raw = b"a\x00\x1b[1m\x7f\xc2\x85\xe2\x80\x8f\xff\xf0\x9f\x98\x80z"
    text = printable(raw.decode("utf-8", "surrogateescape"))
    assert text == "a\\x00\\x1b[1m\\x7f\\x85\\u200f\\xff\U0001f600z"
    assert printable("plain/path é.txt") == "plain/path é.txt"


def test_log_formatter_escapes_and_bounds_messages() -> None:
    fmt = _SafeFormatter("%(message)s")
    rec = logging.LogRecord("t", logging.INFO, __file__, 1, "%s", ("x\ny\x1b" * 10000,), None)
    out = fmt.format(rec)
    assert "\n" not in out and "\x1b" not in out
    assert out.endswith("...(truncated)")
    assert len(out) <= 4 * MAX_LOG_MESSAGE + 20
    try:
        raise ValueError("bad \x1b[2J name\rforged")
    except ValueError:
        rec = logging.LogRecord("t", logging.ERROR, __file__, 1, "boom", (), sys.exc_info())
    lines = fmt.format(rec).splitlines()
    assert lines[0] == "boom" and all(ln.isprintable() for ln in lines)
    assert lines[-1] == "ValueError: bad \\x1b[2J name\\x0dforged"


def test_virus_event_substitutes_in_one_pass(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_virus_event(f"printf '%s' '%v' > {out}", "Name.%f.%v", "/x")
    assert out.read_text() == "Name.%f.%v"  # the virus name's own %f/%v stay literal
    run_virus_event(f"printf '%s' '%f' > {out}", "N", "/x;$(id)")
    assert "CLAM_VIRUSEVENT_FILENAME" in out.read_text()


def test_walk_never_follows_a_name_swapped_for_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "t.hdb").write_text(EICAR_HDB)
    (tmp_path / "target.com").write_bytes(EICAR)
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "x.com").write_bytes(EICAR)
    (tmp_path / "file-link").symlink_to(tmp_path / "target.com")
    (tmp_path / "dir-link").symlink_to(tmp_path / "dir")
    engine = Engine(load_database([str(tmp_path / "db")], DatabaseOptions()))
    sent: list[bytes] = []

    def emit(body: bytes) -> bool:
        sent.append(body)
        return True

    scan = PathScan(engine, ServerSettings(), emit, kind="CONTSCAN", excludes=[])
    link = os.fsencode(tmp_path / "file-link")
    # listed as a regular file, then replaced by a link: opened with O_NOFOLLOW, not read
    scan.scan_file(link)
    assert sent == [link + b": Can't open file or directory ERROR"]
    sent.clear()
    scan.scan_file(link, linked=True)  # a link the settings allow to follow
    assert sent == [link + b": " + SIG + b" FOUND"]
    sent.clear()
    dir_link = os.fsencode(tmp_path / "dir-link")
    assert list(scan.entries(dir_link)) == []
    assert sent == [dir_link + b": File path check failure: Not a directory. ERROR"]
    assert [e[0] for e in scan.entries(dir_link, linked=True)] == [dir_link + b"/x.com"]
