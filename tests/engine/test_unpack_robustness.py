"""Hostile variants of every ClamAV wrapper sample go through the whole engine (typing, every
unpacker, embedded-object detection) without an exception and within a time bound.

Each sample is truncated at several points and corrupted with seeded random byte flips;
the scan must end with a result (clean or a detection), never raise, and no unpacker may
have raised into the scanner's safety net.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from tests.conftest import UNIT
from vigil.engine.database import load_database
from vigil.engine.limits import Limits
from vigil.engine.scanner import Engine, ScanOptions

SAMPLES = sorted(p.name[: -len(".xor")] for p in (UNIT / "clamav_hdb_scanfiles").glob("*.xor"))
MUTATIONS = 30


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(load_database([UNIT / "clamav.hdb"]), Limits(max_filesize=4 << 20))


def variants(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out = [data[:cut] for cut in (1, 7, 64, len(data) // 3, len(data) // 2, len(data) - 1)]
    for _ in range(MUTATIONS):
        buf = bytearray(data)
        for _ in range(rng.randint(1, 16)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        out.append(bytes(buf))
    # a header repeated: absurd counts and offsets pointing back into itself
    out.append(data[:512] * 8)
    return out


@pytest.mark.parametrize("name", SAMPLES)
def test_hostile_variants_never_raise(
    name: str, scanfiles: Path, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    data = (scanfiles / name).read_bytes()
    started = time.monotonic()
    for i, variant in enumerate(variants(data, sum(name.encode()))):
        for allmatch in (False, True):
            result = engine.scan(variant, ScanOptions(allmatch=allmatch))
            assert isinstance(result.names, list), (name, i)
    assert time.monotonic() - started < 60, name
    # the scanner's safety net around unpackers must not have been needed
    failures = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert not failures, failures
