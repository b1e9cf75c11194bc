"""Real clients against the daemons: Debian's clamdscan and the PyPI packages clamd and pyclamd.

Expected outputs and exit codes are what the clients printed against clamd 1.4.6; both daemon
kinds must reproduce them (outputs are compared after replacing the daemon's private directory
with ``<TMP>`` and the version with ``<V>``). The Python clients are skipped when their package
is not installed (``pip install clamd==1.0.2 pyclamd==0.4.0``).
"""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.conftest import EICAR, Daemon

SCANNER = shutil.which("clamdscan")
SIG = "Eicar-Test-Signature.UNOFFICIAL"


# ---------------------------------------------------------------------------------------------
# Debian's clamdscan


@pytest.fixture(scope="module")
def scanner_conf(daemon: Daemon) -> Iterator[Path]:
    """clamdscan's own config: only the daemon's Unix socket."""
    if SCANNER is None:
        pytest.skip("Debian's clamdscan is not installed")
    conf = daemon.tmp / "clamdscan.conf"
    conf.write_text(f"LocalSocket {daemon.socket_path}\n")
    yield conf
    conf.unlink()


def run_scanner(
    daemon: Daemon, conf: Path, *args: str, stdin: bytes | None = None
) -> tuple[int, str, str]:
    """Run clamdscan; (exit code, stdout, stderr) with ``<TMP>``/``<V>`` placeholders."""
    assert SCANNER is not None
    proc = subprocess.run(
        [SCANNER, "-c", str(conf), *args],
        input=stdin,
        capture_output=True,
        timeout=30,
        check=False,
    )

    def norm(data: bytes) -> str:
        return daemon.normalise(data).decode()

    return proc.returncode, norm(proc.stdout), norm(proc.stderr)


MODES: dict[str, list[str]] = {
    "plain": [],
    "stream": ["--stream"],
    "fdpass": ["--fdpass"],
    "multiscan": ["-m"],
    "allmatch": ["--allmatch"],
    "multiscan-fdpass": ["-m", "--fdpass"],
}
T = "<TMP>/t"
# name -> (targets relative to the fixture dir, exit code, stdout lines, stderr)
TARGETS: dict[str, tuple[list[str], int, list[str], str]] = {
    "clean": (["clean.txt"], 0, [f"{T}/clean.txt: OK"], ""),
    "infected": (["eicar.com"], 1, [f"{T}/eicar.com: {SIG} FOUND"], ""),
    "dir-two-infected": (
        ["v"],
        1,
        [f"{T}/v/a.com: {SIG} FOUND", f"{T}/v/b.com: {SIG} FOUND"],
        "",
    ),
    "two-targets": (["d", "eicar.com"], 1, [f"{T}/d: OK", f"{T}/eicar.com: {SIG} FOUND"], ""),
    "nested": (["mixed"], 1, [f"{T}/mixed/sub/x.com: {SIG} FOUND"], ""),
    "empty-file": (["empty.txt"], 0, [f"{T}/empty.txt: OK"], ""),
    "nonexistent": (["nonexistent"], 2, [], f"ERROR: Can't access file {T}/nonexistent\n"),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", TARGETS)
def test_scanner_client(daemon: Daemon, scanner_conf: Path, mode: str, target: str) -> None:
    """clamdscan in each transport mode (CONTSCAN, INSTREAM, FILDES, MULTISCAN, all-match)."""
    rels, code, out, err = TARGETS[target]
    paths = [daemon.path(rel) for rel in rels]
    rc, stdout, stderr = run_scanner(daemon, scanner_conf, "--no-summary", *MODES[mode], *paths)
    assert (rc, stderr) == (code, err), stdout
    got = stdout.splitlines()
    # MULTISCAN replies come in completion order; everything else is deterministic.
    if mode.startswith("multiscan"):
        got.sort()
    assert got == out


def test_scanner_client_stdin(daemon: Daemon, scanner_conf: Path) -> None:
    rc, stdout, stderr = run_scanner(daemon, scanner_conf, "--no-summary", "-", stdin=EICAR)
    assert (rc, stdout, stderr) == (1, f"stream: {SIG} FOUND\n", "")


def test_scanner_client_summary(daemon: Daemon, scanner_conf: Path) -> None:
    rc, stdout, _ = run_scanner(daemon, scanner_conf, daemon.path("v"), daemon.path("clean.txt"))
    assert rc == 1
    assert "----------- SCAN SUMMARY -----------\nInfected files: 2\n" in stdout


def test_scanner_client_version(daemon: Daemon, scanner_conf: Path) -> None:
    assert run_scanner(daemon, scanner_conf, "-V") == (0, "ClamAV <V>\n", "")


def test_scanner_client_ping(daemon: Daemon, scanner_conf: Path) -> None:
    assert run_scanner(daemon, scanner_conf, "--ping", "1") == (0, "PONG\n", "")


# ---------------------------------------------------------------------------------------------
# PyPI "clamd" 1.0.2 (import name clamd): n-commands, INSTREAM in 1 KiB chunks


@pytest.fixture(scope="module")
def pyclient() -> Any:
    return pytest.importorskip("clamd")


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_python_client(daemon: Daemon, pyclient: Any, transport: str) -> None:
    if transport == "unix":
        cl = pyclient.ClamdUnixSocket(path=str(daemon.socket_path), timeout=10)
    else:
        cl = pyclient.ClamdNetworkSocket(host="127.0.0.1", port=daemon.tcp_port, timeout=10)
    t = daemon.path()
    assert cl.ping() == "PONG"
    assert cl.version() == f"ClamAV {daemon.version}"
    assert cl.scan(f"{t}/eicar.com") == {f"{t}/eicar.com": ("FOUND", SIG)}
    assert cl.scan(f"{t}/clean.txt") == {f"{t}/clean.txt": ("OK", None)}
    # The package's reply regex splits the error line at the last ": ".
    assert cl.scan(f"{t}/nonexistent") == {
        f"{t}/nonexistent: File path check failure": ("ERROR", "No such file or directory.")
    }
    both = {f"{t}/v/a.com": ("FOUND", SIG), f"{t}/v/b.com": ("FOUND", SIG)}
    assert cl.contscan(f"{t}/v") == both
    assert cl.multiscan(f"{t}/v") == both
    assert cl.instream(io.BytesIO(EICAR)) == {"stream": ("FOUND", SIG)}
    assert cl.instream(io.BytesIO(b"hello" * 1000)) == {"stream": ("OK", None)}
    assert cl.stats().startswith("POOLS: 1\n\nSTATE: VALID PRIMARY\nTHREADS: ")


# ---------------------------------------------------------------------------------------------
# PyPI "pyclamd" 0.4.0: n-commands, one recv() per reply, INSTREAM in 4 KiB chunks


@pytest.fixture(scope="module")
def pyc() -> Any:
    return pytest.importorskip("pyclamd")


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_legacy_python_client(daemon: Daemon, pyc: Any, transport: str) -> None:
    if transport == "unix":
        cl = pyc.ClamdUnixSocket(filename=str(daemon.socket_path), timeout=10)
    else:
        cl = pyc.ClamdNetworkSocket(host="127.0.0.1", port=daemon.tcp_port, timeout=10)
    t = daemon.path()
    both = {f"{t}/v/a.com": ("FOUND", SIG), f"{t}/v/b.com": ("FOUND", SIG)}
    try:
        assert cl.ping() is True
        assert cl.version() == f"ClamAV {daemon.version}"
        assert cl.scan_file(f"{t}/eicar.com") == {f"{t}/eicar.com": ("FOUND", SIG)}
        assert cl.scan_file(f"{t}/clean.txt") is None
        assert cl.contscan_file(f"{t}/v") == both
        assert cl.multiscan_file(f"{t}/v") == both
        assert cl.allmatchscan(f"{t}/eicar.com") == {f"{t}/eicar.com": [("FOUND", SIG)]}
        assert cl.scan_stream(EICAR) == {"stream": ("FOUND", SIG)}
        assert cl.stats().startswith("POOLS: 1\n\nSTATE: VALID PRIMARY\nTHREADS: ")
        # pyclamd leaves its socket open when a reply is an error or clean stream result.
        assert cl.scan_file(f"{t}/nonexistent") == {
            f"{t}/nonexistent": ("ERROR", "File path check failure: No such file or directory.")
        }
        cl.clamd_socket.close()
        assert cl.scan_stream(b"hello" * 1000) is None
    finally:
        cl.clamd_socket.close()
