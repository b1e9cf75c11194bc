"""Several databases in one pass: like freshclam 1.x (``fc_update_databases``), the pass
stops at the first database that fails and exits with that failure's status; databases
updated before it stay installed."""

from __future__ import annotations

from pathlib import Path

from tests.update.conftest import DATA, Mirror, write_config
from vigil.cli.main import main


def run(conf: Path, *names: str) -> int:
    argv = ["update", "--config-file", str(conf)]
    for name in names:
        argv += ["--update-db", name]
    return main(argv)


def test_first_failure_stops_the_pass(tmp_path: Path, datadir: Path, mirror: Mirror) -> None:
    mirror.publish("other.cvd", "test-2.cvd")
    conf = write_config(tmp_path, datadir, mirror)
    assert run(conf, "test", "other") == 58  # test.cvd: 404
    assert [p for p, _ in mirror.requests] == ["/test.cvd"]
    assert not (datadir / "other.cvd").exists()


def test_earlier_updates_are_kept(tmp_path: Path, datadir: Path, mirror: Mirror) -> None:
    mirror.publish("test.cvd", "test-2.cvd")
    (mirror.root / "other.cvd").write_bytes(b"<html>maintenance</html>")
    conf = write_config(tmp_path, datadir, mirror)
    assert run(conf, "test", "other") == 58
    assert (datadir / "test.cvd").read_bytes() == (DATA / "test-2.cvd").read_bytes()
    assert not (datadir / "other.cvd").exists()
