"""Measure Vigil in a fresh process: database load, then corpus scan throughput.

Started by run.py as ``python bench/vigil_worker.py --db DIR --corpus DIR``; prints one JSON
object per line as each phase ends (``load``, ``scan``, ``threads``), so the caller can
enforce a time limit per phase. Imports vigil, so ``src`` must be on the path.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vigil import Engine

__all__ = ["main"]


def emit(record: dict[str, object]) -> None:
    print(json.dumps(record), flush=True)


def rss_kb() -> dict[str, int]:
    """Current and peak resident memory (kB): VmRSS and ru_maxrss."""
    current = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            current = int(line.split()[1])
    return {"rss_kb": current, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def safe_scan(engine: Engine, data: bytes) -> list[str]:
    try:
        return engine.scan(data).names
    except Exception:  # counted in the single-thread pass already
        return []


def read_corpus(corpus: Path) -> list[tuple[str, str, bytes]]:
    """(relative path, category, bytes) for every file listed in the corpus manifest."""
    manifest = json.loads((corpus / "manifest.json").read_text())
    root = corpus / "files"
    return [(f["path"], f["category"], (root / f["path"]).read_bytes()) for f in manifest["files"]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True)
    ap.add_argument("--corpus", type=Path)
    ap.add_argument("--threads", type=int, default=1, help="also scan with this many threads")
    ap.add_argument("--profile", type=Path, help="write cProfile stats of the scan here")
    args = ap.parse_args(argv)

    started = time.perf_counter()
    from vigil import load_engine

    imported = time.perf_counter()
    engine = load_engine([args.db])
    loaded = time.perf_counter()
    emit(
        {
            "phase": "load",
            "import_s": imported - started,
            "load_s": loaded - imported,
            **rss_kb(),
        }
    )
    if args.corpus is None:
        return 0

    files = read_corpus(args.corpus)
    per_cat: dict[str, list[float]] = {}
    detections: dict[str, list[str]] = {}
    errors: dict[str, str] = {}
    timings: list[tuple[float, str, int]] = []
    scanned = 0
    profiler = cProfile.Profile() if args.profile else None
    t0 = time.perf_counter()
    if profiler:
        profiler.enable()
    for rel, cat, data in files:
        t = time.perf_counter()
        try:
            result = engine.scan(data)
            names = result.names
            scanned += result.scanned_bytes
        except Exception as exc:  # a failing file is a finding, not the end of the run
            errors[rel] = repr(exc)[:300]
            names = []
        dt = time.perf_counter() - t
        if names:
            detections[rel] = list(names)
        acc = per_cat.setdefault(cat, [0.0, 0.0, 0.0])
        acc[0] += len(data)
        acc[1] += dt
        acc[2] += 1
        timings.append((dt, rel, len(data)))
    if profiler:
        profiler.disable()
    elapsed = time.perf_counter() - t0
    total = sum(len(d) for _, _, d in files)
    record: dict[str, object] = {
        "phase": "scan",
        "seconds": elapsed,
        "bytes": total,
        "files": len(files),
        "scanned_bytes": scanned,
        "mb_per_s": total / 1e6 / elapsed if elapsed else 0.0,
        "categories": {
            cat: {"files": int(v[2]), "bytes": int(v[0]), "seconds": v[1]}
            for cat, v in sorted(per_cat.items())
        },
        "slowest": [
            {"path": rel, "bytes": size, "seconds": dt}
            for dt, rel, size in sorted(timings, reverse=True)[:10]
        ],
        "detections": detections,
        "errors": errors,
        **rss_kb(),
    }
    if profiler and args.profile:
        profiler.dump_stats(str(args.profile))
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
        args.profile.with_suffix(".txt").write_text(text.getvalue())
    emit(record)

    if args.threads > 1:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(lambda item: safe_scan(engine, item[2]), files))
        elapsed = time.perf_counter() - t0
        emit(
            {
                "phase": "threads",
                "threads": args.threads,
                "seconds": elapsed,
                "mb_per_s": total / 1e6 / elapsed if elapsed else 0.0,
                **rss_kb(),
            }
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
