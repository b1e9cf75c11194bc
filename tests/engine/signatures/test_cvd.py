"""Tests for the .cvd/.cld/.cud reader; expected values come from ClamAV 1.4.6's sigtool."""

from __future__ import annotations

import gzip
import hashlib
import io
import random
import shutil
import subprocess
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from vigil.engine.signatures.cvd import (
    HEADER_SIZE,
    CvdHeader,
    check_legacy_dsig,
    cvd_version,
    parse_cvd_header,
    read_cvd,
)
from vigil.errors import DatabaseError

UNIT = Path(__file__).parents[2] / "data" / "clamav-unit"
FRESHCLAM = UNIT / "freshclam_testfiles"

# `sigtool --info test-N.cvd` (1.4.6): build time as printed (sigtool turns the first '-' into
# ':'), version, signatures, functionality level, builder, MD5, digital signature; the last
# field is the build time in seconds, read from the header since sigtool does not print it.
SIGTOOL_INFO: dict[int, tuple[str, int, int, int, str, str, str, int]] = {
    1: (
        "22 Jun 2021 14:58 -0400", 1, 0, 81, "micasnyd", "a4ab60ae1c1c4e8f787459102dcfd90b",
        "ttQeKzTSL5iF5/IWsA8weveL64WDVkhgfbm/ABaW3xAWalVKcAp65Q/cWmhkhKFfHSLIXNfCzTLbhfTeISKpfWAhe"
        "L7NZk+t6nQ8NEFBBst6CQcoFTwwyVLwwTSN38VYLW/vZFYphnkBcCotyo++NYU5VQ9JUA6dFQXxaU00b6c",
        1624388302,
    ),
    2: (
        "22 Jun 2021 16:55 -0400", 2, 0, 81, "micasnyd", "57ce21d16edad79ec53a16f03c96b680",
        "3ZHgw1NqHFE/w49Oxxat1hCqv6xssJtVDZzhYGJNDra0WEEfzZlMKMQfEKZAOSFf9hMbAmZF22u7zMknfC1QtxBoW"
        "XVJmmfSMZcOGNwSVzQZBOsimI29IcmG9P6XB2Nr/8nYtWGT4uP0bYzMUO7u2hV8w6l87gP8j4V2TKC92tc",
        1624395301,
    ),
    3: (
        "22 Jun 2021 20:40 -0400", 3, 11, 81, "raynman", "75c84c7f1a2d37d9c2a37b2bc9b3a670",
        "j1b39yL+kUpU1KW/As6nBmw9q3jvCjF3KJCAtr2g4z6WzzccM4VIxjTfhPwvlWJLQm7fDMNExZWBUtdrEZjqpUjqh"
        "zz6J52TCldBRXBBSTYnuAq5zrMbfdh4w7hPqhGvlynbInnEd6GKagMz9SYIS43L0yn34v3pvmyBtGw5/Gf",
        1624408809,
    ),
    4: (
        "22 Jun 2021 21:29 -0400", 4, 12, 81, "micasnyd", "2c645dd81c87e46091e0cc136ae0b217",
        "Z+xkU7ZILVNHKD7H8FYeI00CTNnxDfstKeTPcNIR/5Qa/5yZbt1JeSmcbw8OFqHDUmMORx/GRwZXiAagP8Gvs8OwkL"
        "fFYgiCDxkK6zoGu8DxMZ3MvB6HsgUxJ2LdkCh1aSzs88tsTaEhPnpHJzKs/XlNjTX+s8DWrCTtaVLBtPf",
        1624411776,
    ),
    5: (
        "22 Jun 2021 21:31 -0400", 5, 13, 81, "micasnyd", "4e5effe6a32ca5a4aa15a1384daae354",
        "2YSHslyENiCYbAD6w4HoED0XcTwJ4OFTidnq66P6ngBVwa3e8rcz2GWzja4ZDX+krrUEY7tqrvqxQq0YWJwcjO+jC9"
        "LOPmuraNQNxWGDHls74eP6ZUH+R3QsISRVI74vahpP2UmoO0a3AxxHSYjgOm1Kd3EkdX7RzUvgIe0oi4d",
        1624411902,
    ),
    6: (
        "22 Jun 2021 21:34 -0400", 6, 14, 81, "micasnyd", "3e249e00076b0b15bb54ced37be880c7",
        "Dou6ICRT5HwLTtLNYToHsMoLnt8tdcQOEECp/INsusRs9Rz4JGWU27W76btwjszaKIHnfgfyFjHzlsYJxTFZoeYFLy"
        "aC1nd+SNSWaMyKeNvzcTrtxKbc5WKs04ORp923pFkqymRhFNrRupa8tVyrp9XN9WbdxVJKZNHzB6npPPj",
        1624412045,
    ),
}  # fmt: skip

# What `sigtool --unpack` extracts, in archive order (`tar tv` of the body), with sizes.
_SMALL = ("COPYING", "test.info", "test.ndb", "test.ldb")
_FULL = ("COPYING", "test.info", "test.cfg", "test.hdb", "test.hdu", "test.hsb", "test.hsu",
         "test.mdb", "test.mdu", "test.msb", "test.msu", "test.ndb", "test.ndu", "test.ldb",
         "test.ldu", "test.idb", "test.fp", "test.sfp", "test.crb", "test.cdb")  # fmt: skip
_FULL_SIZES = {"COPYING": 17992, "test.cfg": 44, "test.hdb": 113, "test.hdu": 57,
               "test.hsb": 89, "test.hsu": 89, "test.mdb": 60, "test.mdu": 60, "test.msb": 92,
               "test.msu": 92, "test.ndu": 44, "test.ldu": 44, "test.idb": 44, "test.fp": 55,
               "test.sfp": 87, "test.crb": 44, "test.cdb": 44}  # fmt: skip
SIGTOOL_UNPACK: dict[int, tuple[tuple[str, ...], dict[str, int]]] = {
    1: (_SMALL, {"COPYING": 17992, "test.info": 568, "test.ndb": 240, "test.ldb": 44}),
    2: (_SMALL, {"COPYING": 17992, "test.info": 568, "test.ndb": 240, "test.ldb": 44}),
    3: (_FULL, {**_FULL_SIZES, "test.info": 1800, "test.ndb": 240, "test.ldb": 44}),
    4: (_FULL, {**_FULL_SIZES, "test.info": 1803, "test.ndb": 240, "test.ldb": 176}),
    5: (_FULL, {**_FULL_SIZES, "test.info": 1802, "test.ndb": 462, "test.ldb": 176}),
    6: (_FULL, {**_FULL_SIZES, "test.info": 1802, "test.ndb": 671, "test.ldb": 176}),
}

VERSIONS = sorted(SIGTOOL_INFO)


# ---------------------------------------------------------------------------------------------
# builders (independent of the module under test)


def _official(version: int) -> bytes:
    return (FRESHCLAM / f"test-{version}.cvd").read_bytes()


def _unpack(cvd: bytes) -> list[tuple[str, bytes]]:
    """Members of a real gzip'ed CVD, read with the standard library only."""
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(cvd[HEADER_SIZE:]))) as archive:
        out = []
        for member in archive.getmembers():
            stream = archive.extractfile(member)
            assert stream is not None
            out.append((member.name, stream.read()))
        return out


def _tar(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _header_line(
    *,
    version: int = 7,
    sigs: int = 1,
    flevel: int = 90,
    md5: str = "X",
    dsig: str = "X",
    secs: int = 1700000000,
) -> str:
    return f"ClamAV-VDB:14 Nov 2023 22-13 +0000:{version}:{sigs}:{flevel}:{md5}:{dsig}:vigil:{secs}"


def _info(
    line: str, members: list[tuple[str, bytes]], *, sizes: dict[str, int] | None = None
) -> bytes:
    rows = [line]
    for name, data in members:
        size = (sizes or {}).get(name, len(data))
        rows.append(f"{name}:{size}:{hashlib.sha256(data).hexdigest()}")
    return ("\n".join(rows) + "\n").encode()


def _container(members: list[tuple[str, bytes]], *, gz: bool = True, **fields: int) -> bytes:
    """An unsigned container with a correct header MD5 and a dummy signature."""
    body = _tar(members)
    if gz:
        body = gzip.compress(body, mtime=0)
    line = _header_line(md5=hashlib.md5(body).hexdigest(), dsig="x", **fields)
    return line.encode().ljust(HEADER_SIZE, b" ") + body


SAMPLE_DB = [("x.ndb", b"Vigil.Test-1:0:*:414243444546\n"), ("x.hdb", b"0" * 32 + b":5:T\n")]


def _synthetic(
    *,
    sizes: dict[str, int] | None = None,
    extra: list[tuple[str, bytes]] | None = None,
    info_version: int = 7,
    gz: bool = True,
) -> bytes:
    info = _info(_header_line(version=info_version), SAMPLE_DB, sizes=sizes)
    members = [("COPYING", b"GPL\n"), ("x.info", info), *SAMPLE_DB, *(extra or [])]
    return _container(members, gz=gz)


def _as_cld(cvd: bytes) -> bytes:
    """What freshclam leaves after a cdiff: the same header over the uncompressed tar."""
    return cvd[:HEADER_SIZE] + gzip.decompress(cvd[HEADER_SIZE:])


def _rebuild(cvd: bytes, members: list[tuple[str, bytes]]) -> bytes:
    return cvd[:HEADER_SIZE] + _tar(members)


def _without_dsig(info: bytes) -> bytes:
    return b"".join(
        line for line in info.splitlines(keepends=True) if not line.startswith(b"DSIG:")
    )


def _replace_member(
    members: list[tuple[str, bytes]], name: str, data: bytes
) -> list[tuple[str, bytes]]:
    return [(n, data if n == name else d) for n, d in members]


# ---------------------------------------------------------------------------------------------
# headers and the legacy signature


@pytest.mark.parametrize("version", VERSIONS)
def test_header_matches_sigtool_info(version: int) -> None:
    printed, ver, sigs, flevel, builder, md5, dsig, secs = SIGTOOL_INFO[version]
    header = parse_cvd_header(_official(version)[:HEADER_SIZE], f"test-{version}.cvd")
    assert header == CvdHeader(
        build_time=printed.replace(":", "-", 1),
        version=ver,
        sigs=sigs,
        flevel=flevel,
        md5=md5,
        dsig=dsig,
        builder=builder,
        build_secs=secs,
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_legacy_dsig_verifies(version: int) -> None:
    assert check_legacy_dsig(parse_cvd_header(_official(version), "t.cvd"))


def test_legacy_dsig_rejects_wrong_md5_bad_chars_and_empty() -> None:
    header = parse_cvd_header(_official(1), "t.cvd")
    other_md5 = SIGTOOL_INFO[2][5]
    for changed in (
        replace(header, md5=other_md5),
        replace(header, md5=header.md5.upper()),
        replace(header, md5="X"),
        replace(header, dsig=header.dsig[:-1] + "!"),
        replace(header, dsig=""),
        replace(header, dsig="x"),
    ):
        assert not check_legacy_dsig(changed)


def test_header_without_build_seconds_is_old_format() -> None:
    raw = b"ClamAV-VDB:1 Jan 2005 10-00 +0000:5:2:4:" + b"a" * 32 + b":sig:tk"
    header = parse_cvd_header(raw.ljust(HEADER_SIZE, b" "), "old.cvd")
    assert header.build_secs is None
    assert (header.version, header.sigs, header.flevel, header.builder) == (5, 2, 4, "tk")


def test_header_padding_may_be_nul_or_newline() -> None:
    line = _header_line().encode()
    for pad in (b"\0", b"\n", b"\r\n  "):
        header = parse_cvd_header((line + pad).ljust(HEADER_SIZE, b"\0"), "t.cld")
        assert header.build_secs == 1700000000


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "truncated header"),
        (b"ClamAV-VDB:", "truncated header"),
        (b"ClamAV-VDX:1 Jan:1:1:1:m:d:b:1", "magic"),
        (b"\x1f\x8b\x08\x00" + bytes(range(256)), "magic"),
        (b"ClamAV-VDB:1 Jan:1:1:1:m:d", "expected at least 8"),
        (b"ClamAV-VDB:1 Jan:one:1:1:m:d:b:1", "version is not a number"),
        (b"ClamAV-VDB:1 Jan:1:-1:1:m:d:b:1", "signature count is not a number"),
        (b"ClamAV-VDB:1 Jan:1:1:9" + b"9" * 30 + b":m:d:b:1", "functionality level"),
        (b"ClamAV-VDB:1 Jan:1:1:1:m:d:b:12x", "build time in seconds is not a number"),
        (b"ClamAV-VDB:1 Jan:1:1:1::d:b:1", "empty MD5 field"),
        (b"ClamAV-VDB:1 Jan:1:1:1:m:d::1", "empty builder field"),
    ],
)
def test_bad_headers_raise_database_error(raw: bytes, reason: str) -> None:
    padded = raw.ljust(HEADER_SIZE, b" ") if len(raw) > 11 else raw
    with pytest.raises(DatabaseError, match=reason) as err:
        parse_cvd_header(padded, "bad.cvd")
    assert str(err.value).startswith("bad.cvd: ")


def test_cvd_version_reads_only_the_header() -> None:
    assert cvd_version(_official(6)[:HEADER_SIZE], "daily.cvd") == 6
    assert cvd_version(_official(3), "daily.cld") == 3
    with pytest.raises(DatabaseError, match="daily.cld: truncated header"):
        cvd_version(_official(3)[:200], "daily.cld")


# ---------------------------------------------------------------------------------------------
# whole official containers


@pytest.mark.parametrize("version", VERSIONS)
def test_official_cvd_reads_and_verifies(version: int) -> None:
    archive = read_cvd(_official(version), f"test-{version}.cvd")
    names, sizes = SIGTOOL_UNPACK[version]
    assert archive.kind == "cvd"
    assert archive.official
    assert archive.header.version == version
    assert tuple(name for name, _ in archive.members) == names
    assert {name: len(data) for name, data in archive.members} == sizes


def test_bytecode_cvd_reads_and_verifies() -> None:
    archive = read_cvd((UNIT / "bytecode_sigs" / "bytecode.cvd").read_bytes(), "bytecode.cvd")
    assert (archive.header.version, archive.header.sigs, archive.header.flevel) == (19, 3, 51)
    assert [name for name, _ in archive.members] == [
        "COPYING", "bytecode.info", "767944.cbc", "782872.cbc", "767942.cbc", "last.hdb",
    ]  # fmt: skip


def test_kind_comes_from_the_suffix_case_insensitively() -> None:
    cld = _as_cld(_official(6))
    assert read_cvd(cld, "/var/lib/clamav/DAILY.CLD").kind == "cld"
    with pytest.raises(DatabaseError, match="daily.txt: not a .cvd, .cld or .cud file"):
        read_cvd(cld, "daily.txt")


def test_tampered_body_fails_md5() -> None:
    data = bytearray(_official(6))
    data[HEADER_SIZE + 100] ^= 0x01
    with pytest.raises(DatabaseError, match=r"test-6.cvd: MD5 mismatch \(header says 3e249e"):
        read_cvd(bytes(data), "test-6.cvd")


def test_tampered_dsig_fails_signature() -> None:
    data = _official(6)
    sig = SIGTOOL_INFO[6][6].encode()
    forged = sig[:10] + (b"A" if sig[10:11] != b"A" else b"B") + sig[11:]
    with pytest.raises(DatabaseError, match="test-6.cvd: digital signature verification failed"):
        read_cvd(data.replace(sig, forged), "test-6.cvd")


def test_signature_of_another_cvd_is_refused() -> None:
    six = _official(6)
    five_sig, six_sig = SIGTOOL_INFO[5][6].encode(), SIGTOOL_INFO[6][6].encode()
    with pytest.raises(DatabaseError, match="digital signature verification failed"):
        read_cvd(six.replace(six_sig, five_sig), "test-6.cvd")


@pytest.mark.parametrize("size", [0, 100, 511])
def test_truncated_header(size: int) -> None:
    with pytest.raises(DatabaseError, match="test-6.cvd: truncated header"):
        read_cvd(_official(6)[:size], "test-6.cvd")


@pytest.mark.parametrize("size", [512, 518, 600, 5000])
@pytest.mark.parametrize("verify", [True, False])
def test_truncated_body(size: int, verify: bool) -> None:
    with pytest.raises(DatabaseError, match="test-6.cvd: "):
        read_cvd(_official(6)[:size], "test-6.cvd", verify=verify)


def test_uncompressed_body_over_the_limit() -> None:
    with pytest.raises(DatabaseError, match="larger than 10000 bytes"):
        read_cvd(_official(6), "test-6.cvd", max_tar_size=10000)
    with pytest.raises(DatabaseError, match="larger than 10000 bytes"):
        read_cvd(_as_cld(_official(6)), "test-6.cld", max_tar_size=10000)


def test_body_that_is_neither_gzip_nor_tar() -> None:
    data = _official(6)[:HEADER_SIZE] + b"PK\x03\x04" + bytes(2000)
    with pytest.raises(DatabaseError, match="test-6.cld: body is not valid gzip data"):
        read_cvd(data, "test-6.cld")


# ---------------------------------------------------------------------------------------------
# .cld and .cud


def test_cld_with_uncompressed_tar_reads_without_md5_check() -> None:
    cvd = _official(6)
    cld = _as_cld(cvd)
    archive = read_cvd(cld, "test.cld")
    assert (archive.kind, archive.official) == ("cld", True)
    assert archive.header == read_cvd(cvd, "test.cvd").header  # header MD5 no longer matches
    assert list(archive.members) == _unpack(cvd)


def test_cld_as_freshclam_writes_it() -> None:
    # After a cdiff, freshclam's buildcld() pads the .info's first line into the header.
    cvd = _official(5)
    members = _unpack(cvd)
    info_line = dict(members)["test.info"].split(b"\n", 1)[0]
    cld = info_line.ljust(HEADER_SIZE, b" ") + _tar(members)
    archive = read_cvd(cld, "daily.cld")
    assert (archive.header.md5, archive.header.dsig, archive.header.version) == ("X", "X", 5)
    assert list(archive.members) == members


def test_cld_with_gzip_body_reads() -> None:
    assert read_cvd(_official(4), "test.cld").header.version == 4


def test_cld_member_content_is_checked_against_info() -> None:
    cvd = _official(6)
    members = _unpack(cvd)
    ndb = dict(members)["test.ndb"]
    tampered = _rebuild(cvd, _replace_member(members, "test.ndb", ndb[:-2] + b"X\n"))
    with pytest.raises(DatabaseError, match="test.cld: test.ndb SHA-256 mismatch"):
        read_cvd(tampered, "test.cld", verify=False)


def test_cld_info_dsig_is_checked() -> None:
    cvd = _official(6)
    members = _unpack(cvd)
    info = dict(members)["test.info"]
    forged = _rebuild(
        cvd, _replace_member(members, "test.info", info.replace(b"DSIG:Th3", b"DSIG:Th4"))
    )
    with pytest.raises(DatabaseError, match=r"test.cld/test.info:20: digital signature"):
        read_cvd(forged, "test.cld")
    assert read_cvd(forged, "test.cld", verify=False).kind == "cld"
    unsigned = _rebuild(cvd, _replace_member(members, "test.info", _without_dsig(info)))
    with pytest.raises(DatabaseError, match="DSIG line\\) not found"):
        read_cvd(unsigned, "test.cld")


def test_cud_is_unofficial_and_must_not_carry_a_dsig() -> None:
    cvd = _official(6)
    members = _unpack(cvd)
    info = dict(members)["test.info"]
    # ClamAV 1.4.6 parses a DSIG line in a .cud's .info as a bad entry and refuses the file.
    with pytest.raises(DatabaseError, match="DSIG line in an unsigned"):
        read_cvd(_rebuild(cvd, members), "test.cud")
    archive = read_cvd(
        _rebuild(cvd, _replace_member(members, "test.info", _without_dsig(info))), "x.cud"
    )
    assert (archive.kind, archive.official) == ("cud", False)


# ---------------------------------------------------------------------------------------------
# the .info index, on synthetic containers (their signatures cannot be made, hence verify=False)


def test_synthetic_container_reads_unverified_only() -> None:
    data = _synthetic()
    archive = read_cvd(data, "synth.cvd", verify=False)
    assert [name for name, _ in archive.members] == ["COPYING", "x.info", "x.ndb", "x.hdb"]
    with pytest.raises(DatabaseError, match="synth.cvd: digital signature verification failed"):
        read_cvd(data, "synth.cvd")


def test_info_size_mismatch() -> None:
    data = _synthetic(sizes={"x.ndb": 5})
    with pytest.raises(DatabaseError, match=r"synth.cvd: x.ndb size mismatch \(x.info says 5"):
        read_cvd(data, "synth.cvd", verify=False)


def test_info_header_must_agree_with_outer_header() -> None:
    with pytest.raises(
        DatabaseError, match=r"x.info disagrees with the header on version \(8 != 7\)"
    ):
        read_cvd(_synthetic(info_version=8), "synth.cvd", verify=False)


def test_database_member_missing_from_info() -> None:
    data = _synthetic(extra=[("y.ldb", b"Sig;Target:0;0;414243\n")])
    with pytest.raises(DatabaseError, match="synth.cld: y.ldb is not listed in x.info"):
        read_cvd(data, "synth.cld", verify=False)


def test_members_clamav_never_loads_are_not_checked() -> None:
    data = _synthetic(extra=[("README", b"anything"), ("notes.txt", b"")])
    names = [name for name, _ in read_cvd(data, "synth.cld", verify=False).members]
    assert names[-2:] == ["README", "notes.txt"]


def test_container_without_info_is_refused() -> None:
    data = _container([("COPYING", b"GPL\n"), *SAMPLE_DB])
    with pytest.raises(DatabaseError, match="synth.cvd: no .info member"):
        read_cvd(data, "synth.cvd", verify=False)


@pytest.mark.parametrize(
    ("info", "reason"),
    [
        (b"", "no ClamAV-VDB header line"),
        (b"x.ndb:1:" + b"0" * 64 + b"\n", ":1: the first line must be the ClamAV-VDB header"),
        (b"HEADER\nx.ndb:1\n", ":2: expected name:size:sha256"),
        (b"HEADER\n\n", ":2: expected name:size:sha256"),
        (b"HEADER\nx.ndb:1e3:" + b"0" * 64 + b"\n", ":2: size is not a number"),
        (b"HEADER\nx.ndb:1:" + b"0" * 63 + b"\n", ":2: malformed SHA-256"),
        (b"HEADER\nHEADER\n", ":2: second ClamAV-VDB header line"),
        (b"ClamAV-VDB:t:7:1:90:::vigil:1700000000\n", ":1: empty MD5 field"),
    ],
)
def test_malformed_info(info: bytes, reason: str) -> None:
    text = info.replace(b"HEADER", _header_line().encode())
    data = _container([("COPYING", b"GPL\n"), ("x.info", text)])
    with pytest.raises(DatabaseError, match=reason) as err:
        read_cvd(data, "synth.cvd", verify=False)
    assert str(err.value).startswith("synth.cvd")


def test_info_accepts_crlf_and_uppercase_hex() -> None:
    rows = [_header_line()]
    rows += [f"{n}:{len(d)}:{hashlib.sha256(d).hexdigest().upper()}" for n, d in SAMPLE_DB]
    info = ("\r\n".join(rows) + "\r\n").encode()
    data = _container([("COPYING", b"GPL\n"), ("x.info", info), *SAMPLE_DB])
    assert len(read_cvd(data, "synth.cud", verify=False).members) == 4


# ---------------------------------------------------------------------------------------------
# hostile tar bodies


@pytest.mark.parametrize("name", ["../x.ndb", "/tmp/x.ndb", "sub/x.ndb", "..", "a\\b.ndb"])
def test_unsafe_member_names(name: str) -> None:
    data = _synthetic(extra=[(name, b"data")], gz=False)
    with pytest.raises(DatabaseError, match="is not a plain file name"):
        read_cvd(data, "synth.cld", verify=False)


@pytest.mark.parametrize(
    "kind", [tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE]
)
def test_non_regular_members(kind: bytes) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        archive.addfile(tarfile.TarInfo("COPYING"), io.BytesIO(b""))
        odd = tarfile.TarInfo("odd")
        odd.type = kind
        odd.linkname = "COPYING"
        archive.addfile(odd)
    data = _header_line().encode().ljust(HEADER_SIZE, b" ") + buf.getvalue()
    with pytest.raises(DatabaseError, match="'odd' is not a regular file"):
        read_cvd(data, "synth.cld")


def test_pax_and_long_names_are_refused() -> None:
    for fmt, name, reason in (
        (tarfile.PAX_FORMAT, "é.ndb", "pax"),
        (tarfile.GNU_FORMAT, "n" * 120 + ".ndb", "too long"),
    ):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=fmt) as archive:
            archive.addfile(tarfile.TarInfo("COPYING"), io.BytesIO(b""))
            archive.addfile(tarfile.TarInfo(name), io.BytesIO(b""))
        data = _header_line().encode().ljust(HEADER_SIZE, b" ") + buf.getvalue()
        with pytest.raises(DatabaseError, match=reason):
            read_cvd(data, "synth.cld")


def test_truncated_plain_tar() -> None:
    cld = _as_cld(_official(6))
    for cut in (HEADER_SIZE + 7, HEADER_SIZE + 18944 + 100, HEADER_SIZE + 19600, len(cld) - 1):
        with pytest.raises(DatabaseError, match="test.cld: "):
            read_cvd(cld[:cut], "test.cld")


def test_corrupt_header_after_first_member() -> None:
    cld = bytearray(_as_cld(_official(6)))
    cld[HEADER_SIZE + 18944 + 151] ^= 0x01  # a digit of the second tar header's checksum
    with pytest.raises(DatabaseError, match="corrupt or truncated tar header at offset 18944"):
        read_cvd(bytes(cld), "test.cld")


def test_random_damage_only_ever_raises_database_error() -> None:
    rng = random.Random(20240611)
    samples = [
        (_official(6), "t.cvd"),
        (_as_cld(_official(3)), "t.cld"),
        (_synthetic(), "t.cud"),
        (_synthetic(gz=False), "t.cld"),
    ]
    for data, origin in samples:
        for _ in range(150):
            damaged = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            cut = rng.choice([len(damaged), rng.randrange(len(damaged) + 1)])
            for verify in (True, False):
                try:
                    read_cvd(bytes(damaged[:cut]), origin, verify=verify)
                except DatabaseError:
                    pass


# ---------------------------------------------------------------------------------------------
# differential checks against the installed ClamAV


@pytest.mark.differential
@pytest.mark.skipif(shutil.which("sigtool") is None, reason="sigtool is not installed")
@pytest.mark.parametrize("version", VERSIONS)
def test_members_equal_sigtool_unpack(version: int, tmp_path: Path) -> None:
    source = FRESHCLAM / f"test-{version}.cvd"
    subprocess.run(
        ["sigtool", "--unpack", str(source)], cwd=tmp_path, check=True, capture_output=True
    )
    unpacked = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    assert dict(read_cvd(source.read_bytes(), source.name).members) == unpacked


def _clamscan_accepts(database: Path, tmp_path: Path) -> bool:
    target = tmp_path / "clean.txt"
    target.write_bytes(b"nothing to see here\n")
    result = subprocess.run(
        ["clamscan", "--no-summary", "-d", str(database), str(target)],
        capture_output=True,
        timeout=120,
    )
    assert result.returncode in (0, 2), result.stderr
    return result.returncode == 0


def _variants() -> dict[str, bytes]:
    cvd = _official(6)
    members = _unpack(cvd)
    info = dict(members)["test.info"]
    ndb = dict(members)["test.ndb"]
    plain_info = _without_dsig(info)
    return {
        "plain.cld": _as_cld(cvd),
        "gzip.cld": cvd,
        "tampered-ndb.cld": _rebuild(cvd, _replace_member(members, "test.ndb", ndb + b"\n")),
        "tampered-copying.cld": _rebuild(cvd, _replace_member(members, "COPYING", b"x")),
        "forged-dsig.cld": _rebuild(
            cvd, _replace_member(members, "test.info", info.replace(b"DSIG:Th3", b"DSIG:Th4"))
        ),
        "no-dsig.cld": _rebuild(cvd, _replace_member(members, "test.info", plain_info)),
        "no-info.cld": _rebuild(cvd, [m for m in members if m[0] != "test.info"]),
        "unlisted.cld": _rebuild(cvd, [*members, ("more.ndb", b"A:0:*:41414141\n")]),
        "readme.cld": _rebuild(cvd, [*members, ("README", b"hello\n")]),
        "missing-member.cld": _rebuild(cvd, [m for m in members if m[0] != "test.cdb"]),
        "with-dsig.cud": _rebuild(cvd, members),
        "plain.cud": _rebuild(cvd, _replace_member(members, "test.info", plain_info)),
        "other-version.cud": _rebuild(
            cvd,
            _replace_member(members, "test.info", plain_info.replace(b":6:14:81:", b":5:14:81:")),
        ),
        "crlf.cud": _rebuild(
            cvd, _replace_member(members, "test.info", plain_info.replace(b"\n", b"\r\n"))
        ),
    }


@pytest.mark.differential
@pytest.mark.skipif(shutil.which("clamscan") is None, reason="clamscan is not installed")
@pytest.mark.parametrize("name", sorted(_variants()))
def test_acceptance_agrees_with_clamscan(name: str, tmp_path: Path) -> None:
    data = _variants()[name]
    database = tmp_path / name
    database.write_bytes(data)
    try:
        read_cvd(data, name)
        ours = True
    except DatabaseError:
        ours = False
    assert ours == _clamscan_accepts(database, tmp_path)
