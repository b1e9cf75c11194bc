"""``vigil update`` against a local mirror: downloads, CDIFF chains, failures, notification."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.update.conftest import DATA, Mirror, write_config
from vigil.cli.main import main
from vigil.engine.database import load_database
from vigil.engine.signatures.cvd import read_cvd
from vigil.update import store


def update(conf: Path, *extra: str) -> int:
    return main(["update", "--config-file", str(conf), "--update-db", "test", *extra])


def members(path: Path) -> dict[str, bytes]:
    return dict(read_cvd(path.read_bytes(), path.name).members)


def installed_version(datadir: Path) -> int:
    return load_database([datadir]).versions["test"][0]


def test_first_download(
    tmp_path: Path, datadir: Path, mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    mirror.publish("test.cvd", "test-3.cvd")
    conf = write_config(tmp_path, datadir, mirror)
    assert update(conf) == 0
    assert (datadir / "test.cvd").read_bytes() == (DATA / "test-3.cvd").read_bytes()
    assert "test.cvd updated (version: 3" in capsys.readouterr().out
    assert installed_version(datadir) == 3
    assert not (datadir / store.STAGING).exists()
    # a second run only reads the header and changes nothing
    mirror.requests.clear()
    assert update(conf) == 0
    assert "test.cvd database is up-to-date (version: 3" in capsys.readouterr().out
    assert mirror.requests == [("/test.cvd", "bytes=0-511")]


def test_incremental_cdiff_chain(tmp_path: Path, datadir: Path, mirror: Mirror) -> None:
    (datadir / "test.cvd").write_bytes((DATA / "test-1.cvd").read_bytes())
    mirror.publish("test.cvd", "test-3.cvd")
    mirror.publish("test-2.cdiff", "test-2.cdiff")
    mirror.publish("test-3.cdiff", "test-3.cdiff")
    conf = write_config(tmp_path, datadir, mirror, "ScriptedUpdates yes\n")
    assert update(conf) == 0
    assert not (datadir / "test.cvd").exists()
    assert members(datadir / "test.cld") == members(DATA / "test-3.cvd")
    assert installed_version(datadir) == 3
    assert [p for p, _ in mirror.requests] == ["/test.cvd", "/test-2.cdiff", "/test-3.cdiff"]


def test_compressed_cld(tmp_path: Path, datadir: Path, mirror: Mirror) -> None:
    (datadir / "test.cvd").write_bytes((DATA / "test-2.cvd").read_bytes())
    mirror.publish("test.cvd", "test-3.cvd")
    mirror.publish("test-3.cdiff", "test-3.cdiff")
    conf = write_config(tmp_path, datadir, mirror, "CompressLocalDatabase yes\n")
    assert update(conf) == 0
    assert (datadir / "test.cld").read_bytes()[512:514] == b"\x1f\x8b"
    assert installed_version(datadir) == 3


def test_missing_cdiff_falls_back_to_whole_cvd(
    tmp_path: Path, datadir: Path, mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    (datadir / "test.cvd").write_bytes((DATA / "test-1.cvd").read_bytes())
    mirror.publish("test.cvd", "test-3.cvd")
    mirror.publish("test-2.cdiff", "test-2.cdiff")
    conf = write_config(tmp_path, datadir, mirror)
    assert update(conf) == 0
    assert "Incremental update failed" in capsys.readouterr().out
    assert (datadir / "test.cvd").read_bytes() == (DATA / "test-3.cvd").read_bytes()


def test_forged_cdiff_signature_falls_back(tmp_path: Path, datadir: Path, mirror: Mirror) -> None:
    (datadir / "test.cvd").write_bytes((DATA / "test-2.cvd").read_bytes())
    mirror.publish("test.cvd", "test-3.cvd")
    forged = bytearray((DATA / "test-3.cdiff").read_bytes())
    forged[-5] = ord("a") if forged[-5] != ord("a") else ord("b")
    (mirror.root / "test-3.cdiff").write_bytes(bytes(forged))
    conf = write_config(tmp_path, datadir, mirror)
    assert update(conf) == 0
    assert (datadir / "test.cvd").read_bytes() == (DATA / "test-3.cvd").read_bytes()
    assert not (datadir / "test.cld").exists()


def test_scripted_updates_off_downloads_whole_cvd(
    tmp_path: Path, datadir: Path, mirror: Mirror
) -> None:
    (datadir / "test.cvd").write_bytes((DATA / "test-1.cvd").read_bytes())
    mirror.publish("test.cvd", "test-3.cvd")
    conf = write_config(tmp_path, datadir, mirror, "ScriptedUpdates no\n")
    assert update(conf) == 0
    assert (datadir / "test.cvd").read_bytes() == (DATA / "test-3.cvd").read_bytes()
    assert all(not p.endswith(".cdiff") for p, _ in mirror.requests)


def _old_kept(datadir: Path) -> None:
    assert (datadir / "test.cvd").read_bytes() == (DATA / "test-1.cvd").read_bytes()
    assert not (datadir / "test.cld").exists()
    assert not (datadir / store.STAGING).exists()
    assert installed_version(datadir) == 1


def _setup_old(tmp_path: Path, datadir: Path, mirror: Mirror, extra: str = "") -> Path:
    (datadir / "test.cvd").write_bytes((DATA / "test-1.cvd").read_bytes())
    mirror.publish("test.cvd", "test-3.cvd")
    return write_config(tmp_path, datadir, mirror, "ScriptedUpdates no\n" + extra)


def test_corrupt_download_rejected(
    tmp_path: Path, datadir: Path, mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = _setup_old(tmp_path, datadir, mirror)
    mirror.mode = "corrupt"
    assert update(conf) == 54
    assert "MD5 mismatch" in capsys.readouterr().err
    _old_kept(datadir)


def test_truncated_download_rejected(tmp_path: Path, datadir: Path, mirror: Mirror) -> None:
    conf = _setup_old(tmp_path, datadir, mirror)
    (mirror.root / "test.cvd").write_bytes((DATA / "test-3.cvd").read_bytes()[:4000])
    assert update(conf) == 54
    _old_kept(datadir)


def test_signature_mismatch_rejected(
    tmp_path: Path, datadir: Path, mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = _setup_old(tmp_path, datadir, mirror)
    data = (DATA / "test-3.cvd").read_bytes()
    head = data[:512].decode("latin-1").rstrip(" ").split(":")
    head[6] = (DATA / "test-2.cvd").read_bytes()[:512].decode("latin-1").split(":")[6]
    forged = ":".join(head).encode("latin-1").ljust(512, b" ") + data[512:]
    (mirror.root / "test.cvd").write_bytes(forged)
    assert update(conf) == 54
    assert "digital signature verification failed" in capsys.readouterr().err
    _old_kept(datadir)


def test_unsigned_cvd_refused_even_from_private_mirror(
    tmp_path: Path, datadir: Path, mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    data = (DATA / "test-3.cvd").read_bytes()
    head = data[:512].decode("latin-1").rstrip(" ").split(":")
    head[6] = "unsigned"
    (mirror.root / "test.cvd").write_bytes(":".join(head).encode().ljust(512, b" ") + data[512:])
    conf = write_config(tmp_path, datadir, mirror)
    assert update(conf) == 54
    assert "digital signature verification failed" in capsys.readouterr().err
    assert not (datadir / "test.cvd").exists()


def test_404(
    tmp_path: Path, datadir: Path, mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = _setup_old(tmp_path, datadir, mirror)
    mirror.mode = "404"
    assert update(conf) == 58
    err = capsys.readouterr().err
    assert err.startswith("ERROR: ") and "HTTP 404" in err and len(err.splitlines()) == 1
    _old_kept(datadir)


def test_html_answer(
    tmp_path: Path, datadir: Path, mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = _setup_old(tmp_path, datadir, mirror)
    mirror.mode = "html"
    assert update(conf) == 58
    assert "HTML" in capsys.readouterr().err
    _old_kept(datadir)


def test_429_starts_cool_down(
    tmp_path: Path, datadir: Path, mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = _setup_old(tmp_path, datadir, mirror)
    mirror.mode = "429"
    assert update(conf) == 52
    assert "HTTP 429" in capsys.readouterr().err
    assert len(mirror.requests) == 1
    assert store.cool_down_until(datadir) > 0
    # the next run does not contact the mirror at all, even once it would answer
    mirror.mode = "ok"
    assert update(conf) == 52
    assert "cool-down" in capsys.readouterr().err
    assert len(mirror.requests) == 1
    _old_kept(datadir)


def test_timeout(
    tmp_path: Path, datadir: Path, mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = _setup_old(tmp_path, datadir, mirror)
    mirror.mode = "slow"
    assert update(conf) == 52
    assert "timed out" in capsys.readouterr().err
    _old_kept(datadir)


def test_connection_refused(
    tmp_path: Path, datadir: Path, mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = _setup_old(tmp_path, datadir, mirror)
    conf.write_text(conf.read_text().replace(mirror.url, "http://127.0.0.1:1"))
    assert update(conf) == 52
    assert capsys.readouterr().err.startswith("ERROR: http://127.0.0.1:1/test.cvd: ")
    _old_kept(datadir)


def test_failed_replace_keeps_old_database(
    tmp_path: Path, datadir: Path, mirror: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = _setup_old(tmp_path, datadir, mirror)

    def broken_replace(src: object, dst: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(store.os, "replace", broken_replace)
    assert update(conf) == 57
    monkeypatch.undo()
    _old_kept(datadir)


def test_kill_between_rename_and_cleanup_still_loads(
    tmp_path: Path, datadir: Path, mirror: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new .cld is in place but the old .cvd was not removed: the newer one loads."""
    (datadir / "test.cvd").write_bytes((DATA / "test-2.cvd").read_bytes())
    mirror.publish("test.cvd", "test-3.cvd")
    mirror.publish("test-3.cdiff", "test-3.cdiff")
    conf = write_config(tmp_path, datadir, mirror)

    def killed(self: Path, missing_ok: bool = False) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(Path, "unlink", killed)
    assert update(conf) == 57
    monkeypatch.undo()
    assert (datadir / "test.cvd").exists() and (datadir / "test.cld").exists()
    assert installed_version(datadir) == 3
    # the next run finds version 3 and tidies nothing up wrongly
    assert update(conf) == 0


def test_mirror_older_than_local(tmp_path: Path, datadir: Path, mirror: Mirror) -> None:
    (datadir / "test.cvd").write_bytes((DATA / "test-3.cvd").read_bytes())
    mirror.publish("test.cvd", "test-2.cvd")
    conf = write_config(tmp_path, datadir, mirror)
    assert update(conf) == 59
    assert installed_version(datadir) == 3


def test_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "freshclam.conf"
    conf.write_text("NoSuchOption yes\n")
    assert main(["update", "--config-file", str(conf)]) == 56
    assert "Unknown option" in capsys.readouterr().err


def test_missing_datadir(
    tmp_path: Path, mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = write_config(tmp_path, tmp_path / "nowhere", mirror)
    assert update(conf) == 50
    assert "does not exist" in capsys.readouterr().err


def test_on_update_execute(tmp_path: Path, datadir: Path, mirror: Mirror) -> None:
    mirror.publish("test.cvd", "test-3.cvd")
    marker = tmp_path / "ran"
    conf = write_config(tmp_path, datadir, mirror, f"OnUpdateExecute touch {marker}\n")
    assert update(conf) == 0
    assert marker.exists()
    assert os.path.exists(datadir / "test.cvd")


def test_database_custom_url(
    tmp_path: Path, datadir: Path, mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    (mirror.root / "local.hdb").write_text("44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test\n")
    (mirror.root / "test.cvd").write_bytes((DATA / "test-3.cvd").read_bytes())
    conf = write_config(
        tmp_path,
        datadir,
        mirror,
        f"DatabaseCustomURL {mirror.url}/local.hdb\nDatabaseCustomURL {mirror.url}/test.cvd\n"
        "ExtraDatabase none\nExcludeDatabase main\nExcludeDatabase daily\n"
        "ExcludeDatabase none\n",
    )
    assert main(["update", "--config-file", str(conf)]) == 0
    assert (datadir / "local.hdb").exists()
    assert installed_version(datadir) == 3
    assert main(["update", "--config-file", str(conf)]) == 0
    assert "local.hdb is up-to-date" in capsys.readouterr().out


def test_datadir_option_overrides_config(tmp_path: Path, datadir: Path, mirror: Mirror) -> None:
    mirror.publish("test.cvd", "test-3.cvd")
    conf = write_config(tmp_path, tmp_path / "elsewhere", mirror)
    assert update(conf, "--datadir", str(datadir)) == 0
    assert installed_version(datadir) == 3


def test_daemon_mode_updates_and_stops_on_sigterm(
    tmp_path: Path, datadir: Path, mirror: Mirror
) -> None:
    mirror.publish("test.cvd", "test-3.cvd")
    conf = write_config(tmp_path, datadir, mirror)
    cmd = [sys.executable, "-m", "vigil.cli.main", "update", "--config-file", str(conf)]
    proc = subprocess.Popen(
        [*cmd, "--update-db", "test", "--daemon", "--checks", "50"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not (datadir / "test.cvd").exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
    assert installed_version(datadir) == 3
