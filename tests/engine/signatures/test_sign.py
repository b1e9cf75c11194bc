"""Detached ``.sign`` verification (signatures.md §7.4): ClamAV's test files and made-up ones."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import pytest

from tests.engine.signatures.pki import make_pki
from vigil.engine.signatures.sign import (
    check_sign_file,
    load_trusted,
    parse_sign_file,
    sign_name,
    verify_detached,
)
from vigil.errors import DatabaseError, SignatureError

UNIT = Path(__file__).resolve().parents[2] / "data" / "clamav-unit"
TESTFILES = UNIT / "freshclam_testfiles"
TEST_CA = UNIT / "verify" / "clamav.crt"
# inside the validity of ClamAV's test root CA (2025-03-26 .. 2027-03-26)
WHEN = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
SIGNED = sorted(p.name.removesuffix(".sign") for p in TESTFILES.glob("*.sign"))


@pytest.mark.parametrize("name", SIGNED)
def test_clamav_test_files_verify(name: str) -> None:
    data = (TESTFILES / name).read_bytes()
    sign = (TESTFILES / f"{name}.sign").read_bytes()
    assert check_sign_file(data, sign, load_trusted(TEST_CA), name, flevel=230, at=WHEN)


def test_clamav_test_file_rejects_changed_data() -> None:
    data = bytearray((TESTFILES / "test-2.cvd").read_bytes())
    data[600] ^= 1
    sign = (TESTFILES / "test-2.cvd.sign").read_bytes()
    with pytest.raises(SignatureError, match=r"test-2.cvd.sign:2: .*does not match"):
        check_sign_file(
            bytes(data), sign, load_trusted(TEST_CA), "test-2.cvd.sign", flevel=230, at=WHEN
        )


def test_signature_of_another_file_rejected() -> None:
    data = (TESTFILES / "test-2.cvd").read_bytes()
    sign = (TESTFILES / "test-3.cvd.sign").read_bytes()
    with pytest.raises(SignatureError):
        check_sign_file(data, sign, load_trusted(TEST_CA), "s", flevel=230, at=WHEN)


def test_lines_outside_flevel_are_not_used() -> None:
    data = (TESTFILES / "test-1.cvd").read_bytes()
    sign = (TESTFILES / "test-1.cvd.sign").read_bytes()  # 230::
    assert check_sign_file(data, sign, load_trusted(TEST_CA), "s", flevel=229, at=WHEN) is False


def test_untrusted_ca_rejected() -> None:
    data = (TESTFILES / "test-1.cvd").read_bytes()
    sign = (TESTFILES / "test-1.cvd.sign").read_bytes()
    with pytest.raises(SignatureError, match="no trusted issuer"):
        check_sign_file(data, sign, [make_pki().root], "s", flevel=230, at=WHEN)


def test_expired_chain_rejected() -> None:
    data = (TESTFILES / "test-1.cvd").read_bytes()
    sign = (TESTFILES / "test-1.cvd.sign").read_bytes()
    later = dt.datetime(2028, 1, 1, tzinfo=dt.UTC)
    with pytest.raises(SignatureError, match="not valid"):
        check_sign_file(data, sign, load_trusted(TEST_CA), "s", flevel=230, at=later)


def test_generated_pki_and_max_flevel() -> None:
    pki = make_pki()
    data = b"ClamAV-VDB:" + bytes(range(256)) * 10
    assert check_sign_file(data, pki.sign_file(data, min_fl=1, max_fl="500"), [pki.root], "s")
    assert not check_sign_file(data, pki.sign_file(data, min_fl=1, max_fl="2"), [pki.root], "s")


def test_missing_intermediate_rejected() -> None:
    pki = make_pki()
    der = pki.pkcs7(b"data", with_intermediate=False)
    with pytest.raises(DatabaseError, match="no trusted issuer"):
        verify_detached(b"data", der, [pki.root])
    # trusting the intermediate directly is enough
    assert verify_detached(b"data", der, [pki.intermediate]) == pki.signer


def test_second_line_may_verify() -> None:
    pki, other = make_pki(), make_pki("Other")
    data = b"payload"
    good = base64.b64encode(pki.pkcs7(data)).decode()
    bad = base64.b64encode(other.pkcs7(data)).decode()
    sign = f"#clamsign-1.0\n0::pkcs7-pem:{bad}\n\n# comment\n0::pkcs7-pem:{good}\n".encode()
    assert check_sign_file(data, sign, [pki.root], "s")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"", "missing #clamsign-1.0"),
        (b"#clamsign-2.0\n", "missing #clamsign-1.0"),
        (b"#clamsign-1.0\n0:pkcs7-pem:AAAA\n", ":2: expected MinFL:MaxFL"),
        (b"#clamsign-1.0\n0::rsa:AAAA\n", "unknown signature type"),
        (b"#clamsign-1.0\nx::pkcs7-pem:AAAA\n", "must be numbers"),
        (b"#clamsign-1.0\n0::pkcs7-pem:!!\n", "not valid base64"),
        (b"\xff\xfe", "not a text file"),
    ],
)
def test_malformed_sign_files(text: bytes, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        parse_sign_file(text, "x.sign")


@pytest.mark.parametrize("der", [b"", b"\x30\x03\x02\x01", b"\x30\x00", bytes(40), b"\x04\x02ab"])
def test_garbage_pkcs7_is_a_database_error(der: bytes) -> None:
    with pytest.raises(DatabaseError):
        verify_detached(b"data", der, [make_pki().root])


def test_load_trusted_file_and_directory(tmp_path: Path) -> None:
    assert len(load_trusted(TEST_CA)) == 1
    (tmp_path / "a.crt").write_bytes(TEST_CA.read_bytes())
    (tmp_path / "b.pem").write_bytes(make_pki().root_pem())
    (tmp_path / "notes.txt").write_text("ignored")
    assert len(load_trusted(tmp_path)) == 2
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatabaseError, match="no CA certificates"):
        load_trusted(tmp_path / "empty")
    (tmp_path / "bad.crt").write_text("nonsense")
    with pytest.raises(DatabaseError, match="not a PEM"):
        load_trusted(tmp_path / "bad.crt")
    with pytest.raises(DatabaseError, match="cannot read"):
        load_trusted(tmp_path / "missing.crt")


def test_sign_name() -> None:
    assert sign_name("daily", 27000, "cdiff") == "daily-27000.cdiff.sign"
