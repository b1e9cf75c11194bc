"""Extra trusted keys for the legacy signatures (VigilTrustedKeysDirectory) in cvd.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from vigil.engine.signatures.cdiff import parse_cdiff, verify_cdiff
from vigil.engine.signatures.cvd import load_trusted_keys, read_cvd
from vigil.engine.signatures.cvdbuild import SigningKey, build_cvd, sign_cdiff
from vigil.errors import DatabaseError

DATA = Path(__file__).resolve().parents[2] / "data" / "clamav-unit" / "freshclam_testfiles"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _public_pem(key: rsa.RSAPrivateKey, fmt: serialization.PublicFormat) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, fmt)


def _signing(key: rsa.RSAPrivateKey) -> SigningKey:
    numbers = key.private_numbers()
    return SigningKey(n=numbers.public_numbers.n, d=numbers.d)


def _build(key: rsa.RSAPrivateKey) -> bytes:
    members = [("test.ndb", b"Own.Sig:0:*:41424344\n")]
    return build_cvd(members, name="test", version=7, flevel=200, builder="t", key=_signing(key))


def test_own_signed_cvd_verifies_only_with_its_key(key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    data = _build(key)
    with pytest.raises(DatabaseError, match="digital signature verification failed"):
        read_cvd(data, "test.cvd")
    # PKCS#1 "RSA PUBLIC KEY" and SubjectPublicKeyInfo "PUBLIC KEY" are both accepted
    (tmp_path / "a.pem").write_bytes(_public_pem(key, serialization.PublicFormat.PKCS1))
    (tmp_path / "ignored.txt").write_text("not a key, not a .pem file")
    assert read_cvd(data, "test.cvd", trusted_keys=str(tmp_path)).header.version == 7
    single = tmp_path / "b.pem"
    single.write_bytes(_public_pem(key, serialization.PublicFormat.SubjectPublicKeyInfo))
    assert read_cvd(data, "test.cvd", trusted_keys=single).header.version == 7
    # without verification no key is read at all
    assert read_cvd(data, "test.cvd", verify=False, trusted_keys="/nonexistent").official


def test_official_databases_still_verify_with_extra_keys(
    key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    (tmp_path / "k.pem").write_bytes(
        _public_pem(key, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    keys = load_trusted_keys(tmp_path)
    assert read_cvd((DATA / "test-3.cvd").read_bytes(), "test.cvd", trusted_keys=keys)
    official = parse_cdiff((DATA / "test-3.cdiff").read_bytes(), "test-3.cdiff")
    assert verify_cdiff(official) and verify_cdiff(official, keys)


def test_own_signed_cdiff(key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    (tmp_path / "k.pem").write_bytes(
        _public_pem(key, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    cdiff = parse_cdiff(sign_cdiff(b"OPEN x.ndb\nADD y\nCLOSE\n", 4, _signing(key)), "t-4.cdiff")
    assert cdiff.version == 4 and cdiff.script == b"OPEN x.ndb\nADD y\nCLOSE\n"
    assert not verify_cdiff(cdiff)
    assert verify_cdiff(cdiff, load_trusted_keys(tmp_path))


def test_empty_directory_trusts_nothing_extra(key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    assert load_trusted_keys(tmp_path) == ()
    with pytest.raises(DatabaseError, match="digital signature"):
        read_cvd(_build(key), "test.cvd", trusted_keys=str(tmp_path))


def test_a_changed_key_file_is_read_again(key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    """Keys are cached, but a RELOAD after a key was replaced must see the new one."""
    pem = tmp_path / "k.pem"
    pem.write_bytes(_public_pem(key, serialization.PublicFormat.SubjectPublicKeyInfo))
    first = load_trusted_keys(tmp_path)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem.write_bytes(_public_pem(other, serialization.PublicFormat.SubjectPublicKeyInfo))
    os.utime(pem, ns=(1, 1))  # a different time stamp even on a coarse clock
    second = load_trusted_keys(tmp_path)
    assert first[0].n == key.public_key().public_numbers().n
    assert second[0].n == other.public_key().public_numbers().n


def test_small_rsa_key_refused(tmp_path: Path) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    (tmp_path / "k.pem").write_bytes(
        _public_pem(small, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(DatabaseError, match="2048-bit RSA public key"):
        load_trusted_keys(tmp_path)
