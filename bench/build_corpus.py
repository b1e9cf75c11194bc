"""Build a scan corpus from real files on this machine, plus gen_db.py's planted files.

``python bench/build_corpus.py --size-mb 128 --planted DB/planted.json --out CORPUS`` copies ELF
binaries and libraries, text (.py/.txt/.html), .deb packages, PE launchers found in Python
packages, PDFs and a few compressed archives into ``CORPUS/files/<category>/``, writes each
planted file into ``CORPUS/files/planted/`` and records files (paths relative to
``CORPUS/files``), sizes and the expected detections in ``CORPUS/manifest.json``. The
choice is seeded, so it repeats on the same machine.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["build"]

MiB = 1024 * 1024
MAX_FILE = 16 * MiB  # well below ClamAV's MaxFileSize/MaxScanSize, so no limit is hit
# Share of the corpus per category; what a category cannot fill goes to "elf".
QUOTAS = {"elf": 0.45, "text": 0.15, "deb": 0.2, "pe": 0.05, "pdf": 0.05, "archive": 0.1}
TEXT_SUFFIXES = {".py", ".txt", ".html", ".htm"}
ARCHIVE_SUFFIXES = {".gz", ".zip", ".whl", ".jar", ".bz2", ".xz"}
WALK_ROOTS = ("/usr/bin", "/usr/lib", "/usr/share", "/usr/local/lib")
# where Python packages (and the PE launchers some ship) live for the running interpreter
PE_ROOTS = ("/usr/lib", "/usr/local/lib", sys.base_prefix, sys.prefix, "/opt")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A real file that may go into the corpus."""

    path: str
    size: int
    category: str


def walk(root: str) -> Iterator[os.DirEntry[str]]:
    """Regular files under ``root`` (symbolic links are not followed)."""
    stack = [root]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            yield entry
                    except OSError:
                        continue
        except OSError:
            continue


def magic(path: str, n: int = 4) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError:
        return b""


def classify(entry: os.DirEntry[str]) -> str | None:
    """The corpus category of a file, or None to leave it out."""
    name = entry.name.lower()
    suffix = os.path.splitext(name)[1]
    if suffix in TEXT_SUFFIXES:
        return "text"
    if suffix == ".pdf":
        return "pdf" if magic(entry.path) == b"%PDF" else None
    if suffix in ARCHIVE_SUFFIXES:
        return "archive"
    if suffix == ".exe":
        return "pe" if magic(entry.path, 2) == b"MZ" else None
    if magic(entry.path) == b"\x7fELF":
        return "elf"
    return None


def find_candidates() -> dict[str, list[Candidate]]:
    """Every usable file of each category, sorted by path."""
    found: dict[str, list[Candidate]] = {cat: [] for cat in QUOTAS}
    seen: set[tuple[int, int]] = set()
    roots = list(WALK_ROOTS) + [r for r in PE_ROOTS if r not in WALK_ROOTS]
    for root in roots:
        for entry in walk(root):
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if not 0 < st.st_size <= MAX_FILE or (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            cat = classify(entry)
            if cat == "pe" or (cat is not None and root in WALK_ROOTS):
                found[cat].append(Candidate(entry.path, st.st_size, cat))
    for entry in walk("/var/cache/apt/archives"):
        if entry.name.endswith(".deb"):
            size = entry.stat().st_size
            if 0 < size <= MAX_FILE:
                found["deb"].append(Candidate(entry.path, size, "deb"))
    for cands in found.values():
        cands.sort(key=lambda c: c.path)
    return found


def select(found: dict[str, list[Candidate]], budget: int, seed: int) -> list[Candidate]:
    """Pick files per category quota (seeded), then top up with ELF files."""
    rng = random.Random(f"{seed}-corpus")
    pools = {cat: rng.sample(cands, len(cands)) for cat, cands in found.items()}
    chosen: list[Candidate] = []
    total = 0
    for cat, share in QUOTAS.items():
        quota = int(budget * share)
        used = 0
        pool = pools[cat]
        while pool and used < quota:
            c = pool.pop()
            if used + c.size > quota * 1.2 and used > 0:
                continue  # keep one huge file from eating a small category's whole share
            chosen.append(c)
            used += c.size
        total += used
    for cat in ("elf", "text", "archive", "deb"):
        pool = pools[cat]
        while pool and total < budget:
            c = pool.pop()
            chosen.append(c)
            total += c.size
    return chosen


def build(out: Path, size_mb: float, planted_json: Path | None, seed: int) -> dict[str, Any]:
    """Copy the selected files and the planted ones into ``out``; write ``manifest.json``."""
    if out.exists():
        shutil.rmtree(out)
    root = out / "files"  # scanned tree; the manifest stays outside it
    root.mkdir(parents=True)
    chosen = select(find_candidates(), int(size_mb * MiB), seed)
    files: list[dict[str, object]] = []
    digests: set[str] = set()
    for i, c in enumerate(chosen):
        data = Path(c.path).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest in digests:
            continue  # the same launcher ships in several Python installations
        digests.add(digest)
        rel = f"{c.category}/{i:05d}-{os.path.basename(c.path)}"
        (root / c.category).mkdir(exist_ok=True)
        (root / rel).write_bytes(data)
        files.append({"path": rel, "category": c.category, "size": len(data), "source": c.path})
    expected: dict[str, list[str]] = {}
    planted_digest = ""
    if planted_json is not None:
        raw = planted_json.read_bytes()
        planted_digest = hashlib.sha256(raw).hexdigest()
        (root / "planted").mkdir()
        for p in json.loads(raw):
            rel = f"planted/{p['file']}"
            content = base64.b64decode(p["content_b64"])
            (root / rel).write_bytes(content)
            files.append({"path": rel, "category": "planted", "size": len(content), "source": ""})
            expected[rel] = [p["report"]]
    by_cat: dict[str, list[int]] = {}
    for f in files:
        entry = by_cat.setdefault(str(f["category"]), [0, 0])
        entry[0] += 1
        entry[1] += int(str(f["size"]))
    manifest: dict[str, Any] = {
        "size_mb": size_mb,
        "seed": seed,
        "planted_json_sha256": planted_digest,
        "total_files": len(files),
        "total_bytes": sum(v[1] for v in by_cat.values()),
        "categories": {k: {"files": v[0], "bytes": v[1]} for k, v in sorted(by_cat.items())},
        "expected": expected,
        "files": files,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=float, default=128.0, help="target corpus size")
    ap.add_argument("--planted", type=Path, help="planted.json written by gen_db.py")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True, help="output directory (replaced)")
    args = ap.parse_args(argv)
    manifest = build(args.out, args.size_mb, args.planted, args.seed)
    summary = {k: v for k, v in manifest.items() if k not in ("files", "expected")}
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
