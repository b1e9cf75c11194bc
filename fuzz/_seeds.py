"""Seeds decoded at run time from the test suite's XOR-encoded samples (tests/data).

Those samples contain ClamAV's test file and are detected by every scanner, which is why
the repository keeps them obfuscated; the fuzzing command and the smoke test decode them in
memory (or into a temporary directory) rather than store them in fuzz/corpus/.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "data" / "clamav-unit" / "clamav_hdb_scanfiles"
MAX_SEED = 64 * 1024  # larger samples make slow seeds; the test suite covers them


def _xor_decode() -> object:
    sys.path.insert(0, str(ROOT))
    from tests.conftest import xor_decode

    return xor_decode


def extra_seeds(target: str) -> dict[str, bytes]:
    """name -> seed for ``target`` (empty for targets the samples do not fit)."""
    if target not in ("unpack", "scan", "filetype") or not SAMPLES.is_dir():
        return {}
    from vigil.engine.containers import CONTAINER_TYPES
    from vigil.engine.filetype import builtin_rules, detect_type

    types = sorted(CONTAINER_TYPES, key=lambda t: t.value)
    decode = _xor_decode()
    rules = builtin_rules()
    out: dict[str, bytes] = {}
    for path in sorted(SAMPLES.glob("*.xor")):
        if path.stat().st_size > MAX_SEED:
            continue
        data = decode(path.read_bytes())  # type: ignore[operator]
        name = path.name.removesuffix(".xor")
        if target == "filetype":
            out[name] = data[:1024]
        elif target == "scan":
            out[name] = b"\0" + data
        else:
            ftype = detect_type(data[:1024], rules)
            if ftype in CONTAINER_TYPES:
                out[name] = bytes([types.index(ftype), 2]) + data
    return out
