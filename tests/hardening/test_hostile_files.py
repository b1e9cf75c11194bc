"""Hostile files through a real vigild: every scan ends within the configured limits with
clamd's reply, memory stays bounded, nothing is written anywhere, other clients are served.

The files are built by ``hostile.py`` (no binaries in the tree, no live malware: the only
detection is EICAR). One vigild serves the whole module with ``hostile.LIMITS``
(MaxScanTime 2 s here, MaxFileSize 20 MiB, MaxScanSize 80 MiB, MaxFiles 2000,
MaxRecursion 16) and a private TemporaryDirectory.

Bounds asserted: a scan takes at most MaxScanTime + 3 s; a PING from another connection is
answered within 1 s throughout; the peak RSS (VmHWM, reset before each case) exceeds the
RSS before the case by less than 6 x MaxFileSize (120 MiB; 50 MiB seen) and the idle
daemon's RSS by less than 10 x MaxFileSize (200 MiB; freed memory is not always given
back, so RSS creeps from case to case; 97 MiB seen); no descriptor or child process is
left, threads stay within the pools' bounds; TemporaryDirectory stays empty and the scanned
tree unchanged (so does /tmp for the path-traversal member names).
"""

from __future__ import annotations

import os
import struct
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon.conftest import Daemon, running_daemon, skip_reason
from tests.hardening import hostile, probe

FULL = os.environ.get("VIGIL_HARDENING_FULL") == "1"
MAX_SCAN_TIME = 2000
SLACK = 3.0  # seconds a scan may take beyond MaxScanTime on a loaded machine
LIMITS = [(k, str(MAX_SCAN_TIME) if k == "MaxScanTime" else v) for k, v in hostile.LIMITS]
# Comparing which limit is named needs MaxScanTime out of the way: a slow machine would
# otherwise name MaxScanTime where the other limit is meant.
ALERT_LIMITS = [(k, "20000" if k == "MaxScanTime" else v) for k, v in hostile.LIMITS]
RSS_BOUND_MIB = 6 * hostile.MAX_FILE_SIZE / (1 << 20)  # what one scan may add
RSS_CREEP_MIB = 10 * hostile.MAX_FILE_SIZE / (1 << 20)  # what all of them may leave, peak
PING_BOUND = 1.0
TOKEN = uuid.uuid4().hex[:12]
CASES = {c.name: c for c in hostile.cases(TOKEN, full=FULL)}

# What clamd 1.4.6 answers to SCAN <path> under LIMITS (observed with Debian's clamd; the
# differential tests below re-check it). "{p}" is the scanned path.
FOUND = "{p}: Eicar-Test-Signature.UNOFFICIAL FOUND\0"
NOT_SUPPORTED = "{p}: Not supported file type ERROR\0{p}: OK\0"
EXPECTED: dict[str, str] = {
    "zip-path-traversal": FOUND,
    "tar-path-traversal": FOUND,
    "zip-bad-utf8-names": FOUND,
    "tar-truncated": FOUND,
    "file-bad-utf8-name": "{p}/\udcff\udcfe\udcc3(bad-\udced\udca0\udc80.com: "
    "Eicar-Test-Signature.UNOFFICIAL FOUND\0",
    "fifo-in-dir": "{p}/eicar.com: Eicar-Test-Signature.UNOFFICIAL FOUND\0",
    "devices-in-dir": "{p}/eicar.com: Eicar-Test-Signature.UNOFFICIAL FOUND\0",
    "fifo": NOT_SUPPORTED,
    "dev-null": NOT_SUPPORTED,
    "socket-file": NOT_SUPPORTED,
    "unreadable-chmod-000": "{p}: Access denied. ERROR\0",
}
OK = "{p}: OK\0"

# Cases whose scan outlives MaxScanTime (engine findings, reported with a reproducer): the
# daemon test checks everything but the time for them; test_html_normaliser_honours_...
# below shows the overrun.
OVERRUNS: set[str] = set()  # none since the HTML normaliser moved to C

# With AlertExceedsMax, the limit Vigil reports differs from clamd's (engine findings,
# reported with a reproducer; not fixed here).
ALERT_DIFFERS = {
    "zstd-bomb": "Vigil unpacks Zstandard (clamd has no such type) and so reports "
    "Heuristics.Limits.Exceeded.MaxFileSize where clamd says OK",
    "7z-bomb": "vigil reports MaxFileSize for the 128 MiB member, clamd MaxScanSize",
    "cab-bomb": "vigil reports MaxFileSize for the 128 MiB CAB member, clamd says OK",
}


@pytest.fixture(scope="module")
def tree() -> Iterator[Path]:
    """Every hostile file, built once, in a directory of its own."""
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="vgh", dir="/tmp"))
    try:
        yield top
    finally:
        unreadable = top / "unreadable.com"
        if unreadable.exists():
            unreadable.chmod(0o600)
        hostile.remove_tree(top)


_built: dict[str, Path] = {}


def target(tree: Path, name: str) -> Path:
    case = CASES[name]
    if case.root_only_skip and os.geteuid() == 0:
        pytest.skip("runs as root: a chmod 000 file is readable (socket-file covers this)")
    if name not in _built:
        try:
            _built[name] = case.make(tree)
        except FileNotFoundError as exc:
            pytest.skip(str(exc))
    return _built[name]


def snapshot(top: Path) -> set[str]:
    """Every path under ``top`` (iterative: the tree is 1000 directories deep)."""
    out: set[str] = set()
    stack = [str(top)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                out.add(entry.path)
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
    return out


def expected(name: str, path: Path) -> bytes:
    return os.fsencode(EXPECTED.get(name, OK).replace("{p}", str(path)))


def scan(d: Daemon, path: Path, timeout: float = 120) -> bytes:
    return probe.ask(str(d.socket_path), b"zSCAN " + os.fsencode(path) + b"\x00", timeout)


@pytest.fixture(scope="module")
def vigild() -> Iterator[Daemon]:
    with running_daemon("vigild", LIMITS) as d:
        probe.ask(str(d.socket_path), b"zPING\x00")
        yield d


@pytest.fixture(scope="module")
def idle_rss(vigild: Daemon) -> float:
    return probe.rss_mib(vigild.pid)


_vigild_replies: dict[str, bytes] = {}
THREAD_CAP = 1 + 2 * 4 + 2 + (os.cpu_count() or 1) + 4  # main, scan+bulk pools, events, loop


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_file(name: str, tree: Path, vigild: Daemon, idle_rss: float) -> None:
    path = target(tree, name)
    before_tree = snapshot(tree)
    before = probe.usage(vigild.pid)
    measured = probe.reset_peak(vigild.pid)  # False where clear_refs is not permitted
    rss_before = probe.rss_mib(vigild.pid)
    started = time.monotonic()
    with probe.PingWhile(str(vigild.socket_path), interval=0.1) as pings:
        try:
            reply = scan(vigild, path, 60 if name in OVERRUNS else MAX_SCAN_TIME / 1000 + SLACK)
        except TimeoutError:
            pytest.fail(f"no reply within MaxScanTime + {SLACK} s")
    took = time.monotonic() - started
    _vigild_replies[name] = reply
    assert vigild.alive()
    assert reply == expected(name, path)
    assert not pings.failures and pings.worst < PING_BOUND, (pings.worst, pings.failures)
    peak = probe.peak_rss_mib(vigild.pid)
    if os.environ.get("VIGIL_HARDENING_SHOW_RSS"):
        print(f"{name}: idle {idle_rss:.0f} before {rss_before:.0f} peak {peak:.0f} MiB")
    if measured:
        assert peak - rss_before < RSS_BOUND_MIB
    assert peak - idle_rss < RSS_CREEP_MIB
    after = probe.settled_usage(vigild.pid, before, threads=False)
    assert after.fds <= before.fds and after.children <= before.children
    assert after.threads <= THREAD_CAP
    assert os.listdir(vigild.tmp / "scratch") == []
    assert snapshot(tree) == before_tree
    for prefix in ("vigil-escape-", "vigil-abs-", "vigil-tar-", "vigil-tarabs-"):
        assert not Path(f"/tmp/{prefix}{TOKEN}").exists()
    if name not in OVERRUNS:
        assert took < MAX_SCAN_TIME / 1000 + SLACK


def test_bomb_over_instream_is_bounded(tree: Path, vigild: Daemon, idle_rss: float) -> None:
    """The 42.zip bomb sent as a stream (INSTREAM, not a path): the same bounds."""
    data = target(tree, "nested-42-zip").read_bytes()
    measured = probe.reset_peak(vigild.pid)
    rss_before = probe.rss_mib(vigild.pid)
    started = time.monotonic()
    with probe.PingWhile(str(vigild.socket_path), interval=0.1) as pings:
        reply = probe.ask(
            str(vigild.socket_path),
            b"zINSTREAM\x00" + struct.pack(">I", len(data)) + data + b"\0\0\0\0",
        )
    assert reply == b"stream: OK\x00"
    assert time.monotonic() - started < MAX_SCAN_TIME / 1000 + SLACK
    assert pings.worst < PING_BOUND
    if measured:
        assert probe.peak_rss_mib(vigild.pid) - rss_before < RSS_BOUND_MIB
    assert probe.peak_rss_mib(vigild.pid) - idle_rss < RSS_CREEP_MIB
    assert os.listdir(vigild.tmp / "scratch") == []


def test_html_normaliser_honours_max_scan_time(tmp_path: Path) -> None:
    """MaxScanTime 100 ms on 10 MiB of nested tags: the scan must end within a second.
    The normaliser (C) does not check the deadline itself; it is bounded by being linear
    and fast (0.15 s here). Runs in a child process that is killed at 4 s."""
    import subprocess
    import sys

    (tmp_path / "e.hdb").write_text(hostile.EICAR_HDB)
    script = (
        "import sys, time\n"
        "from tests.hardening.hostile import nested_html\n"
        "from vigil.engine.database import load_database\n"
        "from vigil.engine.limits import Limits\n"
        "from vigil.engine.scanner import Engine\n"
        "engine = Engine(load_database([sys.argv[1]]), Limits(max_scantime=100))\n"
        "data = nested_html()\n"
        "started = time.monotonic()\n"
        "engine.scan(data)\n"
        "print(time.monotonic() - started)\n"
    )
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / "e.hdb")],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=4,  # about 1 s to start, import and build; a scan within limits is 0.1 s
            check=True,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("still scanning after 4 s")
    assert float(out.stdout) < 1.0


# --------------------------------------------------------------------------- against clamd


def _clamd(
    extra: list[tuple[str, str]], limits: list[tuple[str, str]] = LIMITS
) -> Iterator[Daemon]:
    reason = skip_reason("clamd")
    if reason is not None:
        pytest.skip(reason)
    with running_daemon("clamd", limits + extra) as d:
        yield d


@pytest.fixture(scope="module")
def clamd() -> Iterator[Daemon]:
    yield from _clamd([])


@pytest.fixture(scope="module")
def clamd_alert() -> Iterator[Daemon]:
    yield from _clamd([("AlertExceedsMax", "yes")], ALERT_LIMITS)


@pytest.fixture(scope="module")
def vigild_alert() -> Iterator[Daemon]:
    with running_daemon("vigild", [*ALERT_LIMITS, ("AlertExceedsMax", "yes")]) as d:
        yield d


@pytest.mark.differential
@pytest.mark.parametrize("name", list(CASES))
def test_reply_as_clamd(name: str, tree: Path, vigild: Daemon, clamd: Daemon) -> None:
    path = target(tree, name)
    ours = _vigild_replies.get(name) or scan(vigild, path)
    assert ours == scan(clamd, path)


@pytest.mark.differential
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=ALERT_DIFFERS[n]))
        if n in ALERT_DIFFERS
        else n
        for n in CASES
        if FULL or n not in OVERRUNS
    ],
)
def test_alert_exceeds_max_as_clamd(
    name: str, tree: Path, vigild_alert: Daemon, clamd_alert: Daemon
) -> None:
    """With AlertExceedsMax, each limit a bomb hits is named: the same one as clamd."""
    path = target(tree, name)
    assert scan(vigild_alert, path) == scan(clamd_alert, path)
