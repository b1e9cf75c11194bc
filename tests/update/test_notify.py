"""NotifyClamd: after an update, a running vigild reloads and serves the new database."""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.conftest import EICAR_HDB, Daemon, start, stop
from tests.update.conftest import Mirror, write_config
from vigil.cli.main import main


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    root = Path(tempfile.mkdtemp(prefix="vgu", dir="/tmp"))  # short path for the socket
    (root / "db").mkdir()
    (root / "db" / "test.hdb").write_text(EICAR_HDB)
    d = start(root)
    try:
        yield d
    finally:
        stop(d)
        shutil.rmtree(root, ignore_errors=True)


def test_notify_clamd_reloads_vigild(
    tmp_path: Path, mirror: Mirror, daemon: Daemon, capsys: pytest.CaptureFixture[str]
) -> None:
    mirror.publish("test.cvd", "test-3.cvd")
    datadir = daemon.root / "db"
    conf = write_config(tmp_path, datadir, mirror, f"NotifyClamd {daemon.root / 'vigild.conf'}\n")
    assert main(["update", "--config-file", str(conf), "--update-db", "test"]) == 0
    assert "Clamd successfully notified about the update." in capsys.readouterr().out
    log = daemon.root / "vigild.log"
    deadline = time.monotonic() + 30
    while (found := re.search(r"Database correctly reloaded \((\d+) sig", log.read_text())) is None:
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    assert int(found.group(1)) > 1  # test.hdb's one signature plus those of test.cvd


def test_notify_failure_is_a_warning(
    tmp_path: Path, datadir: Path, mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    mirror.publish("test.cvd", "test-3.cvd")
    clamd_conf = tmp_path / "clamd.conf"
    clamd_conf.write_text(f"LocalSocket {tmp_path / 'none.sock'}\n")
    conf = write_config(tmp_path, datadir, mirror, f"NotifyClamd {clamd_conf}\n")
    assert main(["update", "--config-file", str(conf), "--update-db", "test"]) == 0
    assert "WARNING: NotifyClamd: Can't connect to clamd" in capsys.readouterr().out
