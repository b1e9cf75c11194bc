"""First unpackers (GZIP, BZIP2, XZ, ZIP, TAR): members scanned before the container, and
every limit enforced without holding more than MaxFileSize + 1 bytes of any child."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
import zipfile
from pathlib import Path

import pytest

from vigil.engine.database import load_database
from vigil.engine.limits import Limits
from vigil.engine.scanner import Engine, ScanOptions

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    f = tmp_path / "e.hdb"
    f.write_text("44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n")
    return f


def zipped(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def tarred(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize(
    "wrap",
    [
        gzip.compress,
        bz2.compress,
        lzma.compress,
        lambda d: zipped({"e.com": d}),
        lambda d: tarred({"e.com": d}),
        lambda d: gzip.compress(tarred({"x/e.com": d})),
    ],
    ids=["gzip", "bzip2", "xz", "zip", "tar", "tar.gz"],
)
def test_eicar_found_inside(db: Path, wrap: object) -> None:
    engine = Engine(load_database([db]))
    assert engine.scan(wrap(EICAR)).names == ["Eicar-Test-Signature.UNOFFICIAL"]  # type: ignore[operator]


def test_decompression_bomb_is_cut_at_max_filesize(db: Path) -> None:
    bomb = gzip.compress(b"\x00" * (64 << 20))  # 64 MiB of zeros in ~64 KiB
    quiet = Engine(load_database([db]), Limits(max_filesize=1 << 20))
    assert quiet.scan(bomb).names == []
    loud = Engine(load_database([db]), Limits(max_filesize=1 << 20, alert_exceeds_max=True))
    assert loud.scan(bomb).names == ["Heuristics.Limits.Exceeded.MaxFileSize"]


def test_nesting_beyond_max_recursion(db: Path) -> None:
    data = EICAR
    for _ in range(6):
        data = zipped({"inner.zip": data})
    assert Engine(load_database([db]), Limits(max_recursion=10)).scan(data).names == [
        "Eicar-Test-Signature.UNOFFICIAL"
    ]
    assert Engine(load_database([db]), Limits(max_recursion=3)).scan(data).names == []
    loud = Engine(load_database([db]), Limits(max_recursion=3, alert_exceeds_max=True))
    assert loud.scan(data).names == ["Heuristics.Limits.Exceeded.MaxRecursion"]


def test_max_files_and_max_scansize(db: Path) -> None:
    many = zipped({f"f{i}.txt": b"clean %d" % i for i in range(20)} | {"z.com": EICAR})
    assert Engine(load_database([db]), Limits(max_files=5)).scan(many).names == []
    loud = Engine(load_database([db]), Limits(max_files=5, alert_exceeds_max=True))
    assert loud.scan(many).names == ["Heuristics.Limits.Exceeded.MaxFiles"]
    big = zipped({"a.bin": b"A" * 4000, "e.com": EICAR})
    assert Engine(load_database([db]), Limits(max_scansize=3000)).scan(big).names == []


@pytest.mark.parametrize("cut", [10, 100, 300])
def test_truncated_and_corrupt_containers_are_clean_not_errors(db: Path, cut: int) -> None:
    engine = Engine(load_database([db]))
    for data in (zipped({"e.com": EICAR}), gzip.compress(EICAR * 50), tarred({"e": EICAR})):
        engine.scan(data[:cut], ScanOptions(allmatch=True))
        broken = bytearray(data)
        broken[len(broken) // 2] ^= 0xFF
        engine.scan(bytes(broken), ScanOptions(allmatch=True))


def test_allow_listed_member_is_cleared_but_container_still_scanned(
    db: Path, tmp_path: Path
) -> None:
    fp = tmp_path / "ok.fp"
    fp.write_text("44d88612fea8a8f36de82e1278abb02f:68:eicar-is-fine\n")
    engine = Engine(load_database([db, fp]))
    assert engine.scan(zipped({"e.com": EICAR})).names == []


def test_truncated_cpio_is_clean_not_an_error(db: Path, scanfiles: Path) -> None:
    engine = Engine(load_database([db]))
    for name in ("clam.newc.cpio", "clam.odc.cpio", "clam.bin-be.cpio", "clam.bin-le.cpio"):
        data = (scanfiles / name).read_bytes()
        for cut in (5, 30, 120, len(data) // 2):
            engine.scan(data[:cut], ScanOptions(allmatch=True))
        broken = bytearray(data)
        broken[60:70] = b"zzzzzzzzzz"
        engine.scan(bytes(broken), ScanOptions(allmatch=True))
