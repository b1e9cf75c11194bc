"""A private mirror of databases signed with the user's own key (VigilTrustedKeysDirectory).

The databases are made by ``vigil sigtool --build/--diff --private-key`` with a key made by
the test, served from the local mirror, and accepted by ``vigil update``, ``vigil scan`` and
vigild only when the matching public key is trusted.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.server.conftest import start, stop
from tests.update.conftest import Mirror, write_config
from vigil.cli import scan as scan_cli
from vigil.cli.main import build_parser, main
from vigil.engine.database import DatabaseOptions, load_database
from vigil.errors import DatabaseError
from vigil.update import store

MARKER = b"VIGIL-OWN-KEY-MARKER-5f2e9c"
SIG_NAME = "Vigil.Test.OwnKey"


@dataclass(frozen=True)
class Keys:
    private: Path  # PEM private key, given to sigtool
    trusted: Path  # directory holding only the public half
    other: Path  # directory holding an unrelated public key


def _pem_private(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem_public(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    root = tmp_path_factory.mktemp("keys")
    mine = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (root / "signer.pem").write_bytes(_pem_private(mine))
    (root / "trusted").mkdir()
    (root / "trusted" / "mine.pem").write_bytes(_pem_public(mine))
    (root / "other").mkdir()
    (root / "other" / "other.pem").write_bytes(_pem_public(other))
    return Keys(root / "signer.pem", root / "trusted", root / "other")


@pytest.fixture(scope="module")
def built(keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """test.cvd versions 1 and 2 and test-2.cdiff, all made by vigil sigtool with the key."""
    work = tmp_path_factory.mktemp("build")
    out = tmp_path_factory.mktemp("built")
    old_cwd = Path.cwd()
    try:
        os.chdir(work)
        (work / "test.ndb").write_text(f"{SIG_NAME}:0:*:{MARKER.hex()}\n")
        key = ["--private-key", str(keys.private)]
        assert main(["sigtool", "--build", "test.cvd", "--cvd-version", "1", *key]) == 0
        shutil.copy(work / "test.cvd", out / "test-1.cvd")
        with open(work / "test.ndb", "a") as fh:
            fh.write(f"{SIG_NAME}.Two:0:*:{(MARKER + b'-2').hex()}\n")
        assert main(["sigtool", "--build", "test.cvd", "--cvd-version", "2", *key]) == 0
        shutil.copy(work / "test.cvd", out / "test-2.cvd")
        diff = ["sigtool", "--diff", str(out / "test-1.cvd"), str(work / "test.cvd")]
        assert main([*diff, *key, "--trusted-keys-dir", str(keys.trusted)]) == 0
        shutil.copy(work / "test-2.cdiff", out / "test-2.cdiff")
    finally:
        os.chdir(old_cwd)
    assert (out / "test-2.cdiff").read_bytes().startswith(b"ClamAV-Diff:2:")
    return out


def _serve(mirror: Mirror, built: Path, *names: tuple[str, str]) -> None:
    for served, source in names:
        (mirror.root / served).write_bytes((built / source).read_bytes())


def _update(conf: Path, *extra: str) -> int:
    return main(["update", "--config-file", str(conf), "--update-db", "test", *extra])


def test_own_signed_cvd_needs_a_trusted_key(
    tmp_path: Path,
    datadir: Path,
    mirror: Mirror,
    built: Path,
    keys: Keys,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _serve(mirror, built, ("test.cvd", "test-1.cvd"))
    conf = write_config(tmp_path, datadir, mirror)
    assert _update(conf) == 54
    assert "digital signature verification failed" in capsys.readouterr().err
    assert not (datadir / "test.cvd").exists()
    # a key that is not the signer's does not help either
    assert _update(conf, "--trusted-keys-dir", str(keys.other)) == 54
    assert not (datadir / "test.cvd").exists()
    conf = write_config(tmp_path, datadir, mirror, f"VigilTrustedKeysDirectory {keys.trusted}\n")
    assert _update(conf) == 0
    assert "test.cvd updated (version: 1" in capsys.readouterr().out
    # the loader refuses it without the key and accepts it with the key
    with pytest.raises(DatabaseError, match="digital signature verification failed"):
        load_database([datadir])
    db = load_database([datadir], DatabaseOptions(trusted_keys=str(keys.trusted)))
    assert db.versions["test"][0] == 1


def test_incremental_update_with_own_signed_cdiff(
    tmp_path: Path, datadir: Path, mirror: Mirror, built: Path, keys: Keys
) -> None:
    (datadir / "test.cvd").write_bytes((built / "test-1.cvd").read_bytes())
    _serve(mirror, built, ("test.cvd", "test-2.cvd"), ("test-2.cdiff", "test-2.cdiff"))
    conf = write_config(tmp_path, datadir, mirror, f"VigilTrustedKeysDirectory {keys.trusted}\n")
    assert _update(conf) == 0
    assert [p for p, _ in mirror.requests] == ["/test.cvd", "/test-2.cdiff"]
    assert not (datadir / "test.cvd").exists() and (datadir / "test.cld").exists()
    db = load_database([datadir], DatabaseOptions(trusted_keys=str(keys.trusted)))
    assert db.versions["test"][0] == 2


def test_tampered_own_cdiff_falls_back_to_whole_cvd(
    tmp_path: Path,
    datadir: Path,
    mirror: Mirror,
    built: Path,
    keys: Keys,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A cdiff whose signature no trusted key made is refused; the whole CVD is fetched."""
    (datadir / "test.cvd").write_bytes((built / "test-1.cvd").read_bytes())
    _serve(mirror, built, ("test.cvd", "test-2.cvd"))
    forged = bytearray((built / "test-2.cdiff").read_bytes())
    forged[-3] = ord("a") if forged[-3] != ord("a") else ord("b")
    (mirror.root / "test-2.cdiff").write_bytes(bytes(forged))
    conf = write_config(tmp_path, datadir, mirror, f"VigilTrustedKeysDirectory {keys.trusted}\n")
    assert _update(conf) == 0
    assert "Incremental update failed" in capsys.readouterr().out
    assert (datadir / "test.cvd").read_bytes() == (built / "test-2.cvd").read_bytes()


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist"),
        (b"-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n", "private key"),
        (b"not a key\n", "not a PEM public key"),
        ("ec", "2048-bit RSA"),
    ],
    ids=["missing", "private", "garbage", "ec-key"],
)
def test_bad_trusted_keys_directory_is_a_config_error(
    tmp_path: Path,
    datadir: Path,
    mirror: Mirror,
    content: bytes | str | None,
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    keydir = tmp_path / "keys"
    if content is not None:
        keydir.mkdir()
        if content == "ec":
            ec_key = ec.generate_private_key(ec.SECP256R1()).public_key()
            content = ec_key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        assert isinstance(content, bytes)
        (keydir / "k.pem").write_bytes(content)
    conf = write_config(tmp_path, datadir, mirror, f"VigilTrustedKeysDirectory {keydir}\n")
    assert _update(conf) == 56
    err = capsys.readouterr().err
    assert err.startswith("ERROR: ") and message in err and len(err.splitlines()) == 1
    assert mirror.requests == []


def test_vigil_scan_with_trusted_keys(tmp_path: Path, built: Path, keys: Keys) -> None:
    target = tmp_path / "sample.bin"
    target.write_bytes(b"padding " + MARKER + b" padding")
    db = tmp_path / "test.cvd"
    db.write_bytes((built / "test-1.cvd").read_bytes())

    def scan(*extra: str) -> tuple[int, str, str]:
        args = build_parser().parse_args(["scan", "--no-summary", "-d", str(db), *extra])
        out, err = io.StringIO(), io.StringIO()
        return scan_cli.run(args, out, err), out.getvalue(), err.getvalue()

    status, _, err = scan(str(target))
    assert status == 2 and "digital signature verification failed" in err
    status, out, _ = scan("--trusted-keys-dir", str(keys.trusted), str(target))
    assert status == 1 and f"{target}: {SIG_NAME} FOUND" in out


def test_sigtool_info_with_trusted_keys(
    built: Path, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    cvd = str(built / "test-2.cvd")
    assert main(["sigtool", "--info", cvd]) == 1
    assert "Can't verify database integrity" in capsys.readouterr().err
    assert main(["sigtool", "--info", cvd, "--trusted-keys-dir", str(keys.trusted)]) == 0
    assert capsys.readouterr().out.endswith("Verification OK.\n")


@pytest.fixture
def daemon_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="vgk", dir="/tmp"))  # short path for the socket
    (root / "db").mkdir()
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_vigild_loads_own_signed_database_after_update(
    tmp_path: Path, daemon_root: Path, mirror: Mirror, built: Path, keys: Keys
) -> None:
    """vigil update installs the own-signed CVD, NotifyClamd reloads vigild, which trusts the
    same key through clamd.conf and detects the new signature."""
    datadir = daemon_root / "db"
    (datadir / "local.ndb").write_text("Vigil.Test.Local:0:*:00112233445566778899\n")
    daemon = start(daemon_root, f"VigilTrustedKeysDirectory {keys.trusted}\n")
    try:
        assert daemon.instream(b"x" + MARKER) == b"stream: OK\x00"
        _serve(mirror, built, ("test.cvd", "test-1.cvd"))
        conf = write_config(
            tmp_path,
            datadir,
            mirror,
            f"VigilTrustedKeysDirectory {keys.trusted}\n"
            f"NotifyClamd {daemon_root / 'vigild.conf'}\n",
        )
        assert _update(conf) == 0
        assert not (datadir / store.STAGING).exists()
        reply = b""
        for _ in range(300):  # the reload is asynchronous
            reply = daemon.instream(b"x" + MARKER)
            if reply != b"stream: OK\x00":
                break
            time.sleep(0.05)
        # signed by a trusted key, the database counts as official (no .UNOFFICIAL suffix)
        assert reply == f"stream: {SIG_NAME} FOUND\x00".encode()
    finally:
        stop(daemon)
