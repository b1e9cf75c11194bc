"""Loading whole databases: directories, CVD containers, the built-in database, bad input."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from tests.conftest import OFFICIAL, UNIT
from vigil import load_engine
from vigil.engine.database import DatabaseOptions, load_database
from vigil.engine.scanner import Engine, ScanOptions
from vigil.errors import DatabaseError, SignatureError

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def test_builtin_database_detects_eicar_and_clam_exe(clam_exe: Path) -> None:
    engine = load_engine()
    assert engine.scan(EICAR).names == ["Eicar-Signature.UNOFFICIAL"]
    allm = engine.scan(EICAR, ScanOptions(allmatch=True)).names
    assert "Eicar-Test-Signature.UNOFFICIAL" in allm
    assert engine.scan(clam_exe.read_bytes()).names == ["ClamAV-Test-File.UNOFFICIAL"]
    assert engine.scan(b"just some harmless text\n").names == []


def test_clamav_hdb_detects_clam_exe(clam_exe: Path) -> None:
    engine = Engine(load_database([UNIT / "clamav.hdb"]))
    assert engine.scan(clam_exe.read_bytes()).names == ["ClamAV-Test-File.UNOFFICIAL"]


def test_official_sample_loads_every_line(tmp_path: Path) -> None:
    """All 268,702 signatures of the official sample load, as clamscan counts them."""
    for gz in OFFICIAL.glob("*.gz"):
        (tmp_path / gz.name[:-3]).write_bytes(gzip.decompress(gz.read_bytes()))
    db = load_database([tmp_path])
    assert db.signatures == 268702
    assert len(db.logical) == 38889


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6])
def test_cvd_test_files_load(tmp_path: Path, n: int) -> None:
    src = UNIT / "freshclam_testfiles" / f"test-{n}.cvd"
    db = load_database([src])
    assert str(src) in db.files


def test_newer_of_cvd_and_cld_wins(tmp_path: Path) -> None:
    shutil.copy(UNIT / "freshclam_testfiles" / "test-1.cvd", tmp_path / "test.cvd")
    shutil.copy(UNIT / "freshclam_testfiles" / "test-3.cvd", tmp_path / "test.cld")
    db = load_database([tmp_path])
    assert db.files == [str(tmp_path / "test.cld")]


def test_tampered_cvd_is_refused(tmp_path: Path) -> None:
    data = bytearray((UNIT / "freshclam_testfiles" / "test-1.cvd").read_bytes())
    data[-10] ^= 0xFF
    bad = tmp_path / "test.cvd"
    bad.write_bytes(bytes(data))
    with pytest.raises(DatabaseError):
        load_database([bad])


def test_ignore_list_suppresses_signature(tmp_path: Path, clam_exe: Path) -> None:
    """T70: an .ign2 entry drops the signature, whatever order the files come in."""
    shutil.copy(UNIT / "clamav.hdb", tmp_path / "clamav.hdb")
    (tmp_path / "local.ign2").write_text("ClamAV-Test-File\n")
    engine = Engine(load_database([tmp_path]))
    assert engine.scan(clam_exe.read_bytes()).names == []
    (tmp_path / "local.ign2").write_text("ClamAV-Test-File.UNOFFICIAL\n")
    engine = Engine(load_database([tmp_path]))
    assert engine.scan(clam_exe.read_bytes()).names == ["ClamAV-Test-File.UNOFFICIAL"]


def test_two_field_ignore_line_fails(tmp_path: Path) -> None:
    ign = tmp_path / "x.ign2"
    ign.write_text("ClamAV-Test-File:aa15bcf478d165efd2065190eb473bcb\n")
    with pytest.raises(SignatureError, match="x.ign2:1: malformed MD5"):
        load_database([ign])


def test_allow_list_clears_detection(tmp_path: Path, clam_exe: Path) -> None:
    shutil.copy(UNIT / "clamav.hdb", tmp_path / "clamav.hdb")
    (tmp_path / "local.fp").write_text("aa15bcf478d165efd2065190eb473bcb:544:clam.exe\n")
    engine = Engine(load_database([tmp_path]))
    assert engine.scan(clam_exe.read_bytes()).names == []


def test_pua_databases_need_detect_pua(tmp_path: Path, clam_exe: Path) -> None:
    (tmp_path / "p.hdu").write_text("aa15bcf478d165efd2065190eb473bcb:544:PUA.Test\n")
    assert Engine(load_database([tmp_path / "p.hdu"])).scan(clam_exe.read_bytes()).names == []
    engine = Engine(load_database([tmp_path / "p.hdu"], DatabaseOptions(pua=True)))
    assert engine.scan(clam_exe.read_bytes()).names == ["PUA.Test.UNOFFICIAL"]


def test_unknown_suffix_is_skipped_with_notice(tmp_path: Path) -> None:
    f = tmp_path / "sigs.xyz"
    f.write_text("whatever\n")
    db = load_database([f])
    assert db.signatures == 0
    assert any("unknown database suffix" in n for n in db.notices)


def test_directory_without_databases_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("nothing\n")
    with pytest.raises(DatabaseError, match="no supported database files"):
        load_database([tmp_path])


@pytest.mark.parametrize(
    "content",
    [b"\x00\x01\x02garbage\xff\n", b"A:0:*:" + b"41" * 600000 + b"\n", b"\n", b""],
    ids=["binary", "huge-line", "blank", "empty"],
)
def test_garbage_databases_fail_cleanly(tmp_path: Path, content: bytes) -> None:
    f = tmp_path / "bad.ndb"
    f.write_bytes(content)
    with pytest.raises(DatabaseError) as info:
        load_database([f])
    assert str(f) in str(info.value)


def test_niche_formats_are_skipped_once(tmp_path: Path) -> None:
    shutil.copy(UNIT / "other_sigs" / "daily.pdb", tmp_path / "daily.pdb")
    (tmp_path / "a.ndb").write_text("A:0:*:41424344\n")
    db = load_database([tmp_path])
    assert sum("daily.pdb" in n for n in db.notices) == 1


def test_max_scan_time_stops_a_pathological_scan(tmp_path: Path) -> None:
    """MaxScanTime bounds verification: a gap pattern against thousands of prefixes."""
    from vigil.engine.limits import Limits

    guid = bytes(range(16))
    sig = tmp_path / "slow.ndb"
    sig.write_text(f"Slow:0:*:d0cf11e0{{-5000}}{guid.hex()}\n")
    data = b"{\\rt" + guid + b"\xd0\xcf\x11\xe0" * 400000
    engine = Engine(load_database([sig]), Limits(max_scantime=1, alert_exceeds_max=True))
    result = engine.scan(data)
    assert result.names == ["Heuristics.Limits.Exceeded.MaxScanTime"]
    assert result.seconds < 5
    quiet = Engine(load_database([sig]), Limits(max_scantime=1))
    assert quiet.scan(data).names == []
