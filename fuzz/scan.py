"""Fuzz target: ``Engine.scan`` of a small engine (the built-in database) over the input,
typed by the engine (selector 0) or forced to one container type (every other selector),
so each unpacker is reached through the real scan path with nesting, limits and the
heuristics around it.

A scan must return a result; the engine also survives unpacker bugs by logging them
("unpacking ... failed"), which hides them from the caller, so such a log line counts as a
finding here too.
"""

from __future__ import annotations

import logging
import os
import time

from _harness import Input, check, instrumented, main

with instrumented(__name__):
    from vigil.engine.containers import CONTAINER_TYPES
    from vigil.engine.database import builtin_database_dir, load_database
    from vigil.engine.limits import Limits
    from vigil.engine.matcher.body import scan_deadline
    from vigil.engine.results import ScanResult
    from vigil.engine.scanner import Engine, _Budget

TYPES = [None, *sorted(CONTAINER_TYPES, key=lambda t: t.value)]
MiB = 1 << 20
LIMITS = Limits(
    max_scansize=16 * MiB,
    max_filesize=4 * MiB,
    max_files=500,
    max_scantime=10000,
    max_html_normalize=4 * MiB,
    max_script_normalize=4 * MiB,
    heuristic_alerts=True,
    alert_encrypted_archive=True,
    alert_encrypted_doc=True,
    alert_broken=True,
    alert_ole2_macros=True,
)


class _Unpacker(logging.Handler):
    """Collects the scanner's "unpacking <type> failed" warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.failures: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("unpacking "):
            self.failures.append(message)


_ENGINE: Engine | None = None
_FAILURES = _Unpacker()
logging.getLogger("vigil.engine.scanner").addHandler(_FAILURES)


def engine() -> Engine:
    """Built once per process: compiling even the small database costs a second."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = Engine(load_database([builtin_database_dir()]), LIMITS)
    return _ENGINE


def close() -> None:
    """Drop the engine and the log handler (for in-process replays)."""
    global _ENGINE
    _ENGINE = None
    logging.getLogger("vigil.engine.scanner").removeHandler(_FAILURES)


def scan_forced(eng: Engine, data: bytes, selector: int) -> ScanResult:
    """``Engine.scan``, or with a forced type the same steps around the engine's one-layer
    entry (there is no public way to force a type; the scanner does it for children)."""
    ftype = TYPES[selector % len(TYPES)]
    if ftype is None:
        return eng.scan(data)
    result = ScanResult()
    scan_deadline(time.monotonic() + LIMITS.max_scantime / 1000)
    try:
        eng._scan_layer(data, result, False, 0, _Budget(len(data), 1), ftype)
    except TimeoutError:
        pass
    finally:
        scan_deadline(None)
    return result


def TestOneInput(data: bytes) -> None:
    src = Input(data)
    selector = src.byte()
    body = src.rest()
    _FAILURES.failures.clear()
    result = scan_forced(engine(), body, selector)
    check(all(isinstance(n, str) for n in result.names), "non-text detection name")
    check(not _FAILURES.failures, "; ".join(_FAILURES.failures[:3]))


if __name__ == "__main__":
    os.environ["VIGIL_CACHE_DIR"] = ""
    main(TestOneInput)
