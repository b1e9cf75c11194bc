"""Benchmark Vigil against the real ClamAV on a synthetic database and a real-file corpus.

``python bench/run.py --scale 0.1`` generates (unless present) the database
``bench/out/db-<scale>/`` and the corpus ``bench/out/corpus-<MB>mb/``, then measures database
load time, peak memory, scan throughput and detections for Vigil (fresh process), clamscan and
clamd, prints a table and writes ``bench/out/results-<scale>.json``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import build_corpus
import gen_db

__all__ = ["main"]

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SCALES = ("0.01", "0.1", "1.0")
TIME_BIN = "/usr/bin/time"
MAXRSS_RE = re.compile(rb"Maximum resident set size \(kbytes\): (\d+)")
DATA_SCANNED_RE = re.compile(r"^Data scanned: ([\d.]+) MB", re.M)
# The clean-file cache would let a second pass over the corpus skip work (clamd keeps it
# between scans); it is off for both programs so that every pass scans every file.
CLAMSCAN_FLAGS = ("--disable-cache",)

Detections = dict[str, list[str]]


@dataclass(slots=True)
class Timed:
    """One external command: wall time, peak RSS (kB, 0 if unknown), exit code, output."""

    seconds: float
    maxrss_kb: int
    returncode: int
    stdout: str
    stderr: str


@dataclass(slots=True)
class Measure:
    """Figures for one scanner."""

    load_s: float | None = None
    peak_rss_mb: float | None = None
    scan_s: float | None = None
    mb_per_s: float | None = None
    detections: Detections | None = None
    extra: dict[str, object] = field(default_factory=dict)
    error: str | None = None


# ---------------------------------------------------------------------------- inputs


def ensure_db(out: Path, scale: float, seed: int, plant: int) -> dict[str, Any]:
    """Generate the database unless ``out`` already holds one made with these parameters."""
    manifest = out / "manifest.json"
    if manifest.exists():
        doc: dict[str, Any] = json.loads(manifest.read_text())
        if (doc.get("scale"), doc.get("seed"), doc.get("plant")) == (scale, seed, plant):
            return doc
    if out.exists():
        shutil.rmtree(out)
    print(f"generating database at scale {scale} into {out} ...", flush=True)
    return gen_db.generate(out, scale, seed, plant)


def ensure_corpus(out: Path, size_mb: float, planted: Path, seed: int) -> dict[str, Any]:
    """Build the corpus unless ``out`` holds one of this size with these planted files."""
    manifest = out / "manifest.json"
    digest = hashlib.sha256(planted.read_bytes()).hexdigest()
    if manifest.exists():
        doc: dict[str, Any] = json.loads(manifest.read_text())
        if (doc.get("size_mb"), doc.get("seed"), doc.get("planted_json_sha256")) == (
            size_mb,
            seed,
            digest,
        ):
            return doc
    print(f"building a {size_mb:g} MB corpus into {out} ...", flush=True)
    return build_corpus.build(out, size_mb, planted, seed)


# ---------------------------------------------------------------------------- helpers


def run_timed(cmd: Sequence[str], timeout: float) -> Timed:
    """Run ``cmd`` to completion; peak RSS via /usr/bin/time -v, else /proc polling."""
    use_time = os.access(TIME_BIN, os.X_OK)
    full = [TIME_BIN, "-v", *cmd] if use_time else list(cmd)
    started = time.perf_counter()
    proc = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = 0
    try:
        if use_time:
            out, err = proc.communicate(timeout=timeout)
        else:
            while proc.poll() is None:
                peak = max(peak, proc_status(proc.pid).get("VmHWM", 0))
                if time.perf_counter() - started > timeout:
                    raise subprocess.TimeoutExpired(full, timeout)
                time.sleep(0.02)
            out, err = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    seconds = time.perf_counter() - started
    if use_time:
        m = MAXRSS_RE.search(err)
        peak = int(m.group(1)) if m else 0
        err = (
            err[: err.rfind(b"\tCommand being timed:")] if b"\tCommand being timed:" in err else err
        )
    return Timed(
        seconds, peak, proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
    )


def proc_status(pid: int) -> dict[str, int]:
    """Memory fields (kB) of /proc/<pid>/status, e.g. VmRSS and VmHWM."""
    fields: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.startswith("Vm") and value.strip().endswith("kB"):
            fields[key] = int(value.split()[0])
    return fields


def parse_found(output: str, root: Path) -> Detections:
    """``path: Name FOUND`` lines (clamscan/clamdscan) keyed by path relative to ``root``."""
    found: Detections = {}
    prefix = str(root) + os.sep
    for line in output.splitlines():
        if not line.endswith(" FOUND"):
            continue
        path, _, name = line[: -len(" FOUND")].rpartition(": ")
        rel = path[len(prefix) :] if path.startswith(prefix) else path
        found.setdefault(rel, []).append(name)
    return found


def compare(got: Detections | None, expected: Detections) -> dict[str, object]:
    """Missing and unexpected detections; ``ok`` when they are exactly the expected set."""
    got = got or {}
    missing = {k: v for k, v in expected.items() if sorted(got.get(k, [])) != sorted(v)}
    extra = {k: v for k, v in got.items() if k not in expected}
    return {
        "ok": not missing and not extra,
        "expected": len(expected),
        "matched": len(expected) - len(missing),
        "missing": {k: got.get(k, []) for k in missing},
        "unexpected": extra,
    }


# ---------------------------------------------------------------------------- vigil


def read_line(proc: subprocess.Popen[bytes], deadline: float) -> dict[str, Any] | None:
    """The next JSON line the worker prints, or None at EOF or when ``deadline`` passes."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(timeout=left):
                return None
            line = proc.stdout.readline()
            if not line:
                return None
            if line.startswith(b"{"):
                doc: dict[str, Any] = json.loads(line)
                return doc


def measure_vigil(
    db: Path,
    corpus: Path,
    load_timeout: float,
    scan_timeout: float,
    threads: int,
    prof: Path | None,
) -> Measure:
    """Load and scan in one fresh process, with a time limit on each phase."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    cmd = [sys.executable, str(BENCH / "vigil_worker.py"), "--db", str(db)]
    cmd += ["--corpus", str(corpus), "--threads", str(threads)]
    if prof:
        cmd += ["--profile", str(prof)]
    m = Measure()
    with tempfile.TemporaryFile() as errfile:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errfile, env=env)
        try:
            load = read_line(proc, time.monotonic() + load_timeout)
            if load is None:
                m.error = stderr_tail(proc, errfile) or f"load timed out after {load_timeout:g} s"
                return m
            m.load_s = float(str(load["load_s"]))
            m.peak_rss_mb = int(str(load["maxrss_kb"])) / 1024
            m.extra["import_s"] = load["import_s"]
            m.extra["rss_after_load_mb"] = int(str(load["rss_kb"])) / 1024
            scan = read_line(proc, time.monotonic() + scan_timeout)
            if scan is None:
                m.error = stderr_tail(proc, errfile) or f"scan timed out after {scan_timeout:g} s"
                return m
            m.scan_s = float(str(scan["seconds"]))
            m.mb_per_s = float(str(scan["mb_per_s"]))
            m.detections = scan["detections"]
            m.extra["peak_rss_after_scan_mb"] = int(str(scan["maxrss_kb"])) / 1024
            m.extra["data_scanned_mb"] = int(str(scan["scanned_bytes"])) / 1e6
            for key in ("categories", "slowest", "errors"):
                m.extra[key] = scan[key]
            if threads > 1:
                mt = read_line(proc, time.monotonic() + scan_timeout)
                if mt is not None:
                    m.extra[f"mb_per_s_{threads}_threads"] = mt["mb_per_s"]
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return m


def stderr_tail(proc: subprocess.Popen[bytes], errfile: IO[bytes]) -> str:
    """The end of the worker's stderr once it has exited (empty if it is still running)."""
    if proc.poll() is None:
        return ""
    errfile.seek(0)
    text = errfile.read().decode(errors="replace").strip()
    return text[-2000:] or f"worker exited with status {proc.returncode}"


# ---------------------------------------------------------------------------- clamscan


def measure_clamscan(db: Path, corpus: Path, repeats: int, timeout: float) -> Measure:
    """Load time on a tiny file (best of ``repeats``), then corpus time minus load time."""
    m = Measure()
    with tempfile.TemporaryDirectory(prefix="vb-") as tmp:
        tiny = Path(tmp) / "tiny.txt"
        tiny.write_bytes(b"hello, world\n")
        loads = [
            run_timed(
                ["clamscan", *CLAMSCAN_FLAGS, "--no-summary", "-d", str(db), str(tiny)], timeout
            )
            for _ in range(repeats)
        ]
    best = min(loads, key=lambda t: t.seconds)
    if best.returncode != 0:
        m.error = best.stderr.strip()[-2000:] or best.stdout.strip()[-2000:]
        return m
    m.load_s = best.seconds
    m.peak_rss_mb = max(t.maxrss_kb for t in loads) / 1024
    root = (corpus / "files").resolve()
    scan = run_timed(["clamscan", *CLAMSCAN_FLAGS, "-r", "-i", "-d", str(db), str(root)], timeout)
    if scan.returncode not in (0, 1):
        m.error = scan.stderr.strip()[-2000:]
    m.scan_s = max(scan.seconds - m.load_s, 1e-3)
    m.extra["scan_wall_s"] = scan.seconds
    m.extra["peak_rss_scan_mb"] = scan.maxrss_kb / 1024
    m.detections = parse_found(scan.stdout, root)
    data = DATA_SCANNED_RE.search(scan.stdout)
    if data:
        m.extra["data_scanned_mb"] = float(data.group(1))
    # The same scan without archive unpacking: closer to the work Vigil does while it
    # has no container support.
    flat = ["clamscan", *CLAMSCAN_FLAGS, "--scan-archive=no", "-r", "-i", "-d", str(db)]
    raw = run_timed([*flat, str(root)], timeout)
    m.extra["no_archive_scan_s"] = max(raw.seconds - m.load_s, 1e-3)
    m.extra["no_archive_detections_equal"] = parse_found(raw.stdout, root) == m.detections
    return m


# ---------------------------------------------------------------------------- clamd


CLAMD_CONF = """\
LocalSocket {sock}
DatabaseDirectory {db}
Foreground yes
LogFile {tmp}/clamd.log
PidFile {tmp}/clamd.pid
TemporaryDirectory {tmp}
MaxThreads {threads}
StreamMaxLength 100M
SelfCheck 3600
DisableCache yes
"""


def clamd_command(sock: Path, command: bytes, timeout: float = 5.0) -> bytes:
    """Send one ``z``-framed command and return the reply without its NUL."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock))
        s.sendall(b"z" + command + b"\0")
        reply = b""
        while not reply.endswith(b"\0"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.rstrip(b"\0")


def measure_clamd(db: Path, corpus: Path, threads: int, timeout: float) -> Measure:
    """Start clamd on a Unix socket in a temp dir, time the first PONG, scan, then stop it."""
    m = Measure()
    tmp = Path(tempfile.mkdtemp(prefix="vb-clamd-"))
    sock = tmp / "clamd.sock"
    conf = tmp / "clamd.conf"
    conf.write_text(CLAMD_CONF.format(sock=sock, db=db.resolve(), tmp=tmp, threads=threads))
    proc: subprocess.Popen[bytes] | None = None
    try:
        started = time.perf_counter()
        proc = subprocess.Popen(
            ["clamd", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        peak = 0
        while True:
            peak = max(peak, proc_status(proc.pid).get("VmHWM", 0))
            if proc.poll() is not None:
                log = (tmp / "clamd.log").read_text(errors="replace")
                m.error = f"clamd exited with {proc.returncode}: {log[-1500:]}"
                return m
            if time.perf_counter() - started > timeout:
                m.error = f"clamd gave no PONG within {timeout:g} s"
                return m
            try:
                if sock.exists() and clamd_command(sock, b"PING") == b"PONG":
                    break
            except OSError:
                pass
            time.sleep(0.05)
        m.load_s = time.perf_counter() - started
        status = proc_status(proc.pid)
        m.peak_rss_mb = max(peak, status.get("VmHWM", 0)) / 1024
        m.extra["rss_after_load_mb"] = status.get("VmRSS", 0) / 1024
        root = (corpus / "files").resolve()
        base = ["clamdscan", "-c", str(conf), "--fdpass", "-i", "--no-summary"]
        multi = run_timed([*base, "--multiscan", str(root)], timeout)
        m.scan_s = multi.seconds
        m.detections = parse_found(multi.stdout, root)
        if multi.returncode not in (0, 1):
            m.error = (multi.stderr or multi.stdout).strip()[-2000:]
        # Serial (one FILDES at a time, one thread) per category, for a per-type profile.
        serial: Detections = {}
        per_cat: dict[str, float] = {}
        for sub in sorted(p for p in root.iterdir() if p.is_dir()):
            run = run_timed([*base, str(sub)], timeout)
            per_cat[sub.name] = run.seconds
            serial.update(parse_found(run.stdout, root))
        m.extra["serial_scan_s"] = sum(per_cat.values())
        m.extra["serial_category_s"] = per_cat
        m.extra["serial_detections_equal"] = serial == m.detections
        status = proc_status(proc.pid)
        m.extra["rss_after_scan_mb"] = status.get("VmRSS", 0) / 1024
        m.extra["peak_rss_after_scan_mb"] = status.get("VmHWM", 0) / 1024
        m.extra["threads"] = threads
        return m
    finally:
        if proc is not None and proc.poll() is None:
            try:
                clamd_command(sock, b"SHUTDOWN")
                proc.wait(timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------- report


def clamav_version() -> str:
    try:
        return subprocess.run(
            ["clamscan", "--version"], capture_output=True, text=True, timeout=60
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "absent"


def source_version() -> str:
    """The checkout's commit, with ``+dirty`` when src/ has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def report(scale: str, db: dict[str, Any], corpus: dict[str, Any], results: dict[str, Any]) -> str:
    """The human-readable table."""
    mb = int(str(corpus["total_bytes"])) / 1e6
    lines = [
        f"scale {scale}: {int(str(db['total_signatures'])):,} signatures; corpus "
        f"{mb:.1f} MB in {corpus['total_files']} files",
        f"{'':24}{'load s':>10}{'peak RSS MB':>13}{'scan MB/s':>11}  detections",
    ]
    for key in ("vigil", "clamscan", "clamd"):
        r = results.get(key)
        if r is None:
            continue
        det = r["check"]
        status = f"{det['matched']}/{det['expected']}" + (" ok" if det["ok"] else " MISMATCH")
        if r.get("error"):
            status += f"  error: {str(r['error']).splitlines()[-1][:60]}"
        label = {"vigil": "vigil", "clamscan": "clamscan", "clamd": "clamd (PONG; multiscan)"}
        lines.append(
            f"{label[key]:24}{fmt(r['load_s']):>10}{fmt(r['peak_rss_mb'], '.0f'):>13}"
            f"{fmt(r['mb_per_s'], '.1f'):>11}  {status}"
        )
    v = results.get("vigil", {})
    extra = v.get("extra", {})
    for key, val in extra.items():
        if key.startswith("mb_per_s_"):
            lines.append(f"{'vigil ' + key[9:].replace('_', ' '):24}{'':23}{fmt(val, '.1f'):>11}")
    for ref in ("clamscan", "clamd"):
        rr = results.get("ratios", {}).get(f"vigil/{ref}")
        if rr:
            lines.append(
                f"{'vigil/' + ref:24}{fmt(rr['load_s'], '.1f') + 'x':>10}"
                f"{fmt(rr['peak_rss_mb'], '.1f') + 'x':>13}{fmt(rr['mb_per_s'], '.2f') + 'x':>11}"
            )
    cs = results.get("clamscan", {}).get("extra", {})
    if cs.get("no_archive_scan_s"):
        lines.append(f"{'clamscan no archives':24}{'':23}{mb / cs['no_archive_scan_s']:>11.1f}")
    cd = results.get("clamd", {}).get("extra", {})
    if cd.get("serial_scan_s"):
        lines.append(f"{'clamd serial (1 thread)':24}{'':23}{mb / cd['serial_scan_s']:>11.1f}")
    cats = corpus.get("categories", {})
    vcats = extra.get("categories", {})
    dcats = cd.get("serial_category_s", {})
    if vcats:
        lines.append("MB/s by category (vigil / clamd serial):")
        for c, info in sorted(cats.items()):
            size = info["bytes"] / 1e6
            vs = vcats.get(c, {}).get("seconds")
            lines.append(
                f"  {c:10}{info['files']:>6} files {size:8.1f} MB"
                f"{fmt(size / vs if vs else None, '.1f'):>10} /"
                f"{fmt(size / dcats[c] if dcats.get(c) else None, '.1f'):>8}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=SCALES, default="0.01")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--plant", type=int, default=12, help="planted signatures (and files)")
    ap.add_argument("--corpus-mb", type=float, default=128.0, help="corpus size")
    ap.add_argument("--out", type=Path, default=BENCH / "out")
    ap.add_argument("--vigil-timeout", type=float, default=900.0, help="cap on Vigil's load (s)")
    ap.add_argument("--scan-timeout", type=float, default=3600.0, help="cap on each scan (s)")
    ap.add_argument("--threads", type=int, default=2, help="clamd MaxThreads, Vigil pool size")
    ap.add_argument("--profile", action="store_true", help="cProfile Vigil's scan loop")
    ap.add_argument("--skip", action="append", default=[], choices=("vigil", "clamscan", "clamd"))
    args = ap.parse_args(argv)

    scale = float(args.scale)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    db_dir = out / f"db-{args.scale}"
    db = ensure_db(db_dir, scale, args.seed, args.plant)
    corpus_dir = out / f"corpus-{args.corpus_mb:g}mb"
    corpus = ensure_corpus(corpus_dir, args.corpus_mb, db_dir / "planted.json", args.seed)
    expected: Detections = corpus["expected"]
    prep_s = time.perf_counter() - t0
    mb = int(str(corpus["total_bytes"])) / 1e6

    measures: dict[str, Measure] = {}
    if "vigil" not in args.skip:
        print("measuring vigil ...", flush=True)
        prof = out / f"profile-{args.scale}.pstats" if args.profile else None
        measures["vigil"] = measure_vigil(
            db_dir, corpus_dir, args.vigil_timeout, args.scan_timeout, args.threads, prof
        )
    if "clamscan" not in args.skip and shutil.which("clamscan"):
        print("measuring clamscan ...", flush=True)
        repeats = 3 if scale < 1 else 1
        measures["clamscan"] = measure_clamscan(db_dir, corpus_dir, repeats, args.scan_timeout)
    if "clamd" not in args.skip and shutil.which("clamd") and shutil.which("clamdscan"):
        print("measuring clamd ...", flush=True)
        measures["clamd"] = measure_clamd(db_dir, corpus_dir, args.threads, args.scan_timeout)

    results: dict[str, Any] = {
        "scale": scale,
        "database": db,
        "corpus": {k: v for k, v in corpus.items() if k != "files"},
        "prepare_s": prep_s,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "vigil_source": source_version(),
        "clamav": clamav_version(),
    }
    for key, m in measures.items():
        if m.mb_per_s is None and m.scan_s:
            m.mb_per_s = mb / m.scan_s
        results[key] = {
            "load_s": m.load_s,
            "peak_rss_mb": m.peak_rss_mb,
            "scan_s": m.scan_s,
            "mb_per_s": m.mb_per_s,
            "check": compare(m.detections, expected),
            "error": m.error,
            "extra": m.extra,
        }
    ratios: dict[str, dict[str, float | None]] = {}
    if "vigil" in measures:
        v = measures["vigil"]
        for ref in ("clamscan", "clamd"):
            if ref in measures:
                r = measures[ref]
                ratios[f"vigil/{ref}"] = {
                    "load_s": ratio(v.load_s, r.load_s),
                    "peak_rss_mb": ratio(v.peak_rss_mb, r.peak_rss_mb),
                    "mb_per_s": ratio(v.mb_per_s, r.mb_per_s),
                }
    results["ratios"] = ratios
    path = out / f"results-{args.scale}.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(report(args.scale, db, corpus, results))
    print(f"results written to {path}")
    ok = all(results[k]["check"]["ok"] for k in measures)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
