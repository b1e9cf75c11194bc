"""Shared plumbing of the fuzz targets: instrumentation, input slicing, the finding rule.

Every target is a module in this directory with ``TestOneInput(data: bytes)``. It calls a
public Vigil entry point and lets any exception other than the documented clean errors
escape: libFuzzer (through atheris) records that input as a crash. The same function is
replayed without atheris by ``tests/fuzz/test_fuzz_smoke.py``, so nothing here may require
atheris at import time.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

try:  # atheris is only needed to fuzz; replaying inputs works without it
    import atheris
except ImportError:  # pragma: no cover - depends on the environment
    atheris = None

T = TypeVar("T")


# Findings in code the fuzzing work does not own, reported and not fixed yet, as
# "<target>/<regression file>": (text the failure contains, where the bug is). The smoke test
# expects each regression file (tests/fuzz/regressions/<key>) to fail (strict xfail: a fix
# shows up there, then delete the entry) and does not count mutations failing the same way;
# scripts/fuzz skips them unless --report-known is given, so fuzzing goes on past them.
KNOWN: dict[str, tuple[str, str]] = {}


def is_known(target: str, exc: BaseException) -> bool:
    """Whether ``exc`` raised by ``target`` is one of the KNOWN findings."""
    text = f"{type(exc).__name__}: {exc}"
    return any(k.startswith(target + "/") and msg in text for k, (msg, _) in KNOWN.items())


class Finding(AssertionError):
    """An invariant a target checks beyond "no unexpected exception" was broken."""


def check(condition: bool, message: str) -> None:
    """Raise :class:`Finding` unless ``condition`` holds (survives ``python -O``)."""
    if not condition:
        raise Finding(message)


@contextlib.contextmanager
def instrumented(module_name: str) -> Iterator[None]:
    """Instrument the ``vigil`` imports made in this block when the target runs as a
    fuzzer; plain imports when it is only imported (the smoke test replays it)."""
    if atheris is None or module_name != "__main__":
        yield
        return
    with atheris.instrument_imports(include=["vigil"]):
        yield


def traced(module_name: str, fn: Callable[..., T]) -> Callable[..., T]:
    """Instrument one function of the target itself (for targets whose code under test is
    C, which atheris cannot see: the target's own branches then guide the fuzzer)."""
    if atheris is None or module_name != "__main__":
        return fn
    return atheris.instrument_func(fn)  # type: ignore[no-any-return]


def main(test_one_input: Callable[[bytes], None]) -> None:
    """Run one target under libFuzzer; argv carries libFuzzer's flags and corpus dirs."""
    if atheris is None:
        sys.exit("atheris is not installed: pip install atheris")
    target = os.path.basename(sys.argv[0]).removesuffix(".py")
    if os.environ.get("VIGIL_FUZZ_REPORT_KNOWN"):
        atheris.Setup(sys.argv, test_one_input)
    else:

        def skipping_known(data: bytes) -> None:
            try:
                test_one_input(data)
            except Exception as exc:
                if not is_known(target, exc):
                    raise

        atheris.Setup(sys.argv, skipping_known)
    atheris.Fuzz()


class Input:
    """Cuts parameters off the front of a fuzz input: works without atheris (for the smoke
    test), and a seed's layout (selector bytes, then the file) can be written by hand."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def int(self, nbytes: int) -> int:
        raw = self.take(nbytes)
        return int.from_bytes(raw.ljust(nbytes, b"\0"), "little")

    def take(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out

    def pick(self, options: Sequence[T]) -> T:
        return options[self.byte() % len(options)]

    def rest(self) -> bytes:
        out = self.data[self.pos :]
        self.pos = len(self.data)
        return out
