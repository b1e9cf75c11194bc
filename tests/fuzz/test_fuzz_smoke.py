"""Every fuzz target, briefly, on every change: its seeds, its regression inputs and a few
hundred deterministic mutations of them, replayed in-process without atheris.

The full fuzzers (``scripts/fuzz``) explore far more; this keeps each target importable and
each past finding fixed. A failure names the target and the input, and writes the input to
the test's temporary directory so ``python fuzz/<target>.py <file>`` reproduces it.
"""

from __future__ import annotations

import importlib.util
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUZZ = ROOT / "fuzz"
REGRESSIONS = Path(__file__).parent / "regressions"
sys.path.insert(0, str(FUZZ))
from _harness import KNOWN, is_known  # noqa: E402

sys.path.remove(str(FUZZ))

# mutations per target: engine builds and server connections cost milliseconds each
MUTATIONS = {"database": 40, "scan": 150, "connection": 60, "unpack": 250, "native": 300}
DEFAULT_MUTATIONS = 300
BUDGET = 15.0  # seconds one target may take here (all of them together stay well under 40)
INTERESTING = (0, 1, 0x7F, 0x80, 0xFF)


def target_names() -> list[str]:
    return sorted(
        p.stem for p in FUZZ.glob("*.py") if not p.name.startswith("_") and p.stem != "make_corpus"
    )


@pytest.fixture(scope="module", autouse=True)
def fuzz_path() -> Iterator[None]:
    sys.path.insert(0, str(FUZZ))
    try:
        yield
    finally:
        sys.path.remove(str(FUZZ))


def mutate(rng: random.Random, data: bytes, other: bytes) -> bytes:
    """One of libFuzzer's simple mutations, chosen by ``rng``; the first two bytes (the
    targets' selectors) are kept in three cases out of four."""
    keep = 2 if rng.random() < 0.75 else 0
    head, buf = data[:keep], bytearray(data[keep:])
    kind = rng.randrange(7)
    if not buf:
        buf = bytearray(other[keep : keep + 16])
    if kind == 0 and buf:  # flip bits
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
    elif kind == 1 and buf:  # interesting byte values
        for _ in range(rng.randint(1, 3)):
            buf[rng.randrange(len(buf))] = rng.choice(INTERESTING)
    elif kind == 2 and buf:  # truncate
        del buf[rng.randrange(len(buf)) :]
    elif kind == 3 and buf:  # delete a range
        i = rng.randrange(len(buf))
        del buf[i : i + rng.randint(1, 64)]
    elif kind == 4:  # insert random bytes
        i = rng.randint(0, len(buf))
        buf[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    elif kind == 5 and buf:  # duplicate a chunk
        i = rng.randrange(len(buf))
        buf[i:i] = buf[i : i + rng.randint(1, 256)]
    else:  # splice with another seed
        cut = rng.randint(0, len(buf))
        buf = buf[:cut] + bytearray(other[keep + rng.randint(0, max(0, len(other) - keep)) :])
    if rng.random() < 0.1 and buf:  # a 32-bit field set to an extreme
        i = rng.randrange(len(buf))
        buf[i : i + 4] = rng.choice((b"\xff\xff\xff\xff", b"\x00\x00\x00\x80", b"\x00\x00\x00\x00"))
    return head + bytes(buf)


def inputs(name: str) -> Iterator[tuple[str, bytes]]:
    """(label, data): seeds, regression files, then the mutations."""
    from _seeds import extra_seeds

    seeds: list[tuple[str, bytes]] = []
    for prefix, directory in (("corpus/", FUZZ / "corpus" / name), ("", REGRESSIONS / name)):
        if directory.is_dir():
            seeds += [
                (f"{prefix}{name}/{p.name}", p.read_bytes()) for p in sorted(directory.iterdir())
            ]
    seeds += [(f"sample/{k}", v) for k, v in sorted(extra_seeds(name).items())]
    seeds = [(label, data) for label, data in seeds if label not in KNOWN]
    yield from seeds
    rng = random.Random(f"vigil-fuzz-{name}")
    for i in range(MUTATIONS.get(name, DEFAULT_MUTATIONS)):
        (label, base), (_, other) = rng.choice(seeds), rng.choice(seeds)
        yield f"mutation {i} of {label}", mutate(rng, base, other)


def load(name: str) -> ModuleType:
    """The target module under a private name (``filetype``, ``database``... are too
    generic to import as top-level modules next to installed packages)."""
    spec = importlib.util.spec_from_file_location(f"vigil_fuzz_{name}", FUZZ / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", target_names())
def test_target_survives_seeds_and_mutations(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIGIL_CACHE_DIR", "")
    module = load(name)
    started = time.monotonic()
    count = 0
    try:
        for label, data in inputs(name):
            try:
                module.TestOneInput(data)
            except Exception as exc:
                if is_known(name, exc):
                    continue  # a known, reported finding (see _harness.KNOWN)
                saved = tmp_path / "crash-input"
                saved.write_bytes(data)
                pytest.fail(
                    f"fuzz target {name}: {label}: {type(exc).__name__}: {exc} "
                    f"(input saved to {saved})"
                )
            count += 1
    finally:
        close = getattr(module, "close", None)
        if close is not None:
            close()
        sys.modules.pop(f"vigil_fuzz_{name}", None)
    assert count > 0
    took = time.monotonic() - started
    assert took < BUDGET, f"{name}: {count} inputs took {took:.1f}s (budget {BUDGET}s)"


@pytest.mark.parametrize("key", sorted(KNOWN))
def test_known_finding_still_reproduces(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Strict xfail: passes (and so fails the run) once the reported bug is fixed."""
    name = key.split("/", 1)[0]
    message, where = KNOWN[key]
    monkeypatch.setenv("VIGIL_CACHE_DIR", "")
    module = load(name)
    try:
        try:
            module.TestOneInput((REGRESSIONS / key).read_bytes())
        except Exception as exc:
            assert message in f"{type(exc).__name__}: {exc}", f"{key}: unexpected failure {exc!r}"
            pytest.xfail(f"known finding, not fixed yet: {where}")
    finally:
        close = getattr(module, "close", None)
        if close is not None:
            close()
        sys.modules.pop(f"vigil_fuzz_{name}", None)
    pytest.fail(f"{key} no longer fails: the finding is fixed; remove it from KNOWN")


def test_every_target_has_seeds() -> None:
    for name in target_names():
        assert any((FUZZ / "corpus" / name).iterdir()), name


def test_mutations_are_deterministic() -> None:
    a = [d for _, d in zip(range(50), inputs("protocol"), strict=False)]
    b = [d for _, d in zip(range(50), inputs("protocol"), strict=False)]
    assert a == b and len(set(a)) > 10
