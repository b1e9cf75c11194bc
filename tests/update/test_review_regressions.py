"""Regressions from the review of ``vigil update`` and ``vigil sigtool``: hostile names and
URLs end in one clean error line with freshclam's exit code, and valid logical signatures
decode as sigtool decodes them."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from vigil.cli.main import main


def conf(tmp_path: Path, mirror: str) -> Path:
    (tmp_path / "db").mkdir()
    path = tmp_path / "freshclam.conf"
    path.write_text(f"DatabaseDirectory {tmp_path / 'db'}\nPrivateMirror {mirror}\n")
    return path


def test_database_names_are_never_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = conf(tmp_path, "http://127.0.0.1:9")
    status = main(["update", "--config-file", str(cfg), "--update-db", "../evil"])
    out = capsys.readouterr()
    assert status == 56
    assert "invalid database name" in out.out + out.err
    assert not (tmp_path / "evil.cvd").exists()


@pytest.mark.parametrize("mirror", ["http://127.0.0.1:99999", "http://[::1"])
def test_bad_mirror_urls_are_clean_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mirror: str
) -> None:
    status = main(["update", "--config-file", str(conf(tmp_path, mirror))])
    out = capsys.readouterr()
    assert status == 58
    assert "bad URL" in out.out + out.err
    assert "internal error" not in out.out + out.err
    # nothing but the updater's lock file
    assert [p.name for p in (tmp_path / "db").iterdir()] in ([], [".vigil-update.lock"])


def test_decode_sigs_counts_ids_as_sigtool(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # subsignature 0 appears only as a trigger: sigtool wants max ID + 1 subsignatures
    line = "Test.Sig-2;Engine:81-255,Target:0;1;616263;646566\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(line.encode())))
    status = main(["sigtool", "--decode-sigs"])
    out = capsys.readouterr()
    assert status == 0, out.err
    assert "VIRUS NAME: Test.Sig-2" in out.out


def test_sigtool_hashes_skip_directories_and_stop_at_empty_pe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "d").mkdir()
    assert main(["sigtool", "--md5", str(tmp_path / "d")]) == 0
    assert capsys.readouterr().out == ""
    (tmp_path / "empty").write_bytes(b"")
    assert main(["sigtool", "--mdb", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert "Can't create fmap for open file" in err
    assert f"Can't generate hash for {tmp_path / 'empty'}" in err
