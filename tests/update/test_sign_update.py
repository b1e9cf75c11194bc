"""``vigil update`` with detached ``.sign`` files (signatures.md §7.4) from the test mirror."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.engine.signatures.pki import make_pki
from tests.update.conftest import DATA, Mirror, write_config
from vigil.cli.main import main


def update(conf: Path) -> int:
    return main(["update", "--config-file", str(conf), "--update-db", "test"])


def signed_config(tmp_path: Path, datadir: Path, mirror: Mirror, extra: str = "") -> Path:
    ca = tmp_path / "certs"
    ca.mkdir()
    (ca / "root.crt").write_bytes(make_pki().root_pem())
    return write_config(tmp_path, datadir, mirror, f"CVDCertsDirectory {ca}\n{extra}")


def publish_signed(mirror: Mirror, name: str, data: bytes) -> None:
    (mirror.root / name).write_bytes(make_pki().sign_file(data))


def test_cvd_with_valid_sign(tmp_path: Path, datadir: Path, mirror: Mirror) -> None:
    mirror.publish("test.cvd", "test-3.cvd")
    publish_signed(mirror, "test-3.cvd.sign", (DATA / "test-3.cvd").read_bytes())
    assert update(signed_config(tmp_path, datadir, mirror)) == 0
    assert (datadir / "test.cvd").read_bytes() == (DATA / "test-3.cvd").read_bytes()
    assert [p for p, _ in mirror.requests] == ["/test.cvd", "/test.cvd", "/test-3.cvd.sign"]


def test_bad_sign_rejects_the_cvd(
    tmp_path: Path, datadir: Path, mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    mirror.publish("test.cvd", "test-3.cvd")
    publish_signed(mirror, "test-3.cvd.sign", (DATA / "test-2.cvd").read_bytes())
    assert update(signed_config(tmp_path, datadir, mirror)) == 54
    assert "test-3.cvd.sign:2: the file does not match" in capsys.readouterr().err
    assert not (datadir / "test.cvd").exists()


def test_sign_from_untrusted_ca_rejects(tmp_path: Path, datadir: Path, mirror: Mirror) -> None:
    mirror.publish("test.cvd", "test-3.cvd")
    data = (DATA / "test-3.cvd").read_bytes()
    (mirror.root / "test-3.cvd.sign").write_bytes(make_pki("Rogue").sign_file(data))
    assert update(signed_config(tmp_path, datadir, mirror)) == 54
    assert not (datadir / "test.cvd").exists()


def test_absent_sign_falls_back_to_legacy(tmp_path: Path, datadir: Path, mirror: Mirror) -> None:
    mirror.publish("test.cvd", "test-3.cvd")
    assert update(signed_config(tmp_path, datadir, mirror)) == 0
    assert (datadir / "test.cvd").read_bytes() == (DATA / "test-3.cvd").read_bytes()


def test_sign_for_a_newer_flevel_falls_back_to_legacy(
    tmp_path: Path, datadir: Path, mirror: Mirror
) -> None:
    mirror.publish("test.cvd", "test-3.cvd")
    mirror.publish("test-3.cvd.sign", "test-3.cvd.sign")  # ClamAV's: 230::, above our FLEVEL
    assert update(signed_config(tmp_path, datadir, mirror)) == 0
    assert (datadir / "test.cvd").exists()


def test_valid_sign_does_not_excuse_a_bad_legacy_signature(
    tmp_path: Path, datadir: Path, mirror: Mirror
) -> None:
    data = bytearray((DATA / "test-3.cvd").read_bytes())
    at = data.index(b":raynman:") - 1  # last character of the legacy DSig field
    data[at] = ord("a") if data[at] != ord("a") else ord("b")
    (mirror.root / "test.cvd").write_bytes(data)
    publish_signed(mirror, "test-3.cvd.sign", bytes(data))
    # the loader requires the legacy signature, so the updater does too
    assert update(signed_config(tmp_path, datadir, mirror)) == 54
    assert not (datadir / "test.cvd").exists()


def test_cdiff_signs(tmp_path: Path, datadir: Path, mirror: Mirror) -> None:
    (datadir / "test.cvd").write_bytes((DATA / "test-1.cvd").read_bytes())
    mirror.publish("test.cvd", "test-3.cvd")
    for v in (2, 3):
        mirror.publish(f"test-{v}.cdiff", f"test-{v}.cdiff")
        publish_signed(mirror, f"test-{v}.cdiff.sign", (DATA / f"test-{v}.cdiff").read_bytes())
    conf = signed_config(tmp_path, datadir, mirror, "ScriptedUpdates yes\n")
    assert update(conf) == 0
    assert (datadir / "test.cld").exists()
    paths = [p for p, _ in mirror.requests]
    assert paths == ["/test.cvd", "/test-2.cdiff", "/test-2.cdiff.sign", "/test-3.cdiff",
                     "/test-3.cdiff.sign"]  # fmt: skip


def test_bad_cdiff_sign_falls_back_to_whole_cvd(
    tmp_path: Path, datadir: Path, mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    (datadir / "test.cvd").write_bytes((DATA / "test-1.cvd").read_bytes())
    mirror.publish("test.cvd", "test-2.cvd")
    mirror.publish("test-2.cdiff", "test-2.cdiff")
    publish_signed(mirror, "test-2.cdiff.sign", b"something else")
    conf = signed_config(tmp_path, datadir, mirror, "ScriptedUpdates yes\n")
    assert update(conf) == 0
    assert "test-2.cdiff.sign:2: the file does not match" in capsys.readouterr().out
    assert (datadir / "test.cvd").read_bytes() == (DATA / "test-2.cvd").read_bytes()


def test_unusable_certs_directory_is_a_config_error(
    tmp_path: Path, datadir: Path, mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = write_config(tmp_path, datadir, mirror, f"CVDCertsDirectory {tmp_path}/nope.crt\n")
    assert update(conf) == 56
    assert "CVDCertsDirectory" in capsys.readouterr().err
    assert mirror.requests == []
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["update", "--config-file", str(conf), "--cvdcertsdir", str(empty)]
    assert main(argv) == 56
