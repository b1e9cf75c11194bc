"""Hardening report: hostile files and load/fault cases against vigild and Debian's clamd.

Both daemons get the same clamd.conf (``tests.hardening.hostile.LIMITS`` plus a private
TemporaryDirectory), the same files and the same load, one case at a time. Hostile files run
twice: with those limits, and with AlertExceedsMax added (so the reply names each limit a
bomb hits). For each case the table has the reply (shortened), the wall time, the peak RSS
during the case (VmHWM, reset before each case) and whatever descriptors, child processes
or temporary files were left over after it (against the idle daemon before the case), with
the thread count after it in brackets (thread pools grow to their configured size on first
use, which is not a leak). For hostile files, "slow-ping-ms" is added when a PING on
another connection took over 1 s meanwhile.

    python bench/hardening.py                      # both daemons, full sizes
    python bench/hardening.py --only vigild --cases hostile
    python bench/hardening.py --markdown out.md    # also write the table as Markdown

Run it from a checkout: it imports its cases and probes from tests/hardening.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.daemon.conftest import Daemon, running_daemon, skip_reason  # noqa: E402
from tests.hardening import hostile, load, probe  # noqa: E402

KINDS = ("vigild", "clamd")
MATCH = [""]
EXTRA: list[tuple[str, str]] = []  # --option NAME=VALUE, for every daemon


@dataclass
class Row:
    case: str
    reply: str = ""
    seconds: float = 0.0
    peak_mib: float = 0.0
    threads: int = 0  # after the case (pools grow to their bound on first use: no leak)
    leaks: dict[str, int] = field(default_factory=dict)


def short(reply: bytes, base: str) -> str:
    text = reply.decode("utf-8", "backslashreplace").replace(base, "<T>")
    text = text.replace("\x00", " | ").replace("\n", " | ").strip(" |")
    return text if len(text) <= 70 else text[:67] + "..."


@contextlib.contextmanager
def daemon_for(
    kind: str, extra: tuple[tuple[str, str], ...] = (), databases: tuple[Path, ...] = ()
) -> Iterator[Daemon]:
    with running_daemon(kind, [*hostile.LIMITS, *EXTRA, *extra], databases) as d:
        yield d


def run_hostile(kind: str, tree: Path, extra: tuple[tuple[str, str], ...] = ()) -> list[Row]:
    rows = []
    token = uuid.uuid4().hex[:8]
    made: list[tuple[str, Path]] = []
    for case in hostile.cases(token):
        if (case.root_only_skip and os.geteuid() == 0) or MATCH[0] not in case.name:
            continue
        try:
            made.append((case.name, case.make(tree)))
        except FileNotFoundError as exc:
            print(f"skipped {case.name}: {exc}", file=sys.stderr)
    with daemon_for(kind, extra) as d:
        probe.ask(str(d.socket_path), b"zPING\x00")
        for name, path in made:
            before = probe.usage(d.pid)
            probe.reset_peak(d.pid)
            started = time.monotonic()
            with probe.PingWhile(str(d.socket_path)) as pings:
                try:
                    reply = probe.ask(
                        str(d.socket_path), b"zSCAN " + os.fsencode(path) + b"\x00", timeout=300
                    )
                except OSError as exc:
                    reply = f"<{type(exc).__name__}>".encode()
            row = Row(name, short(reply, str(tree)), time.monotonic() - started)
            row.peak_mib = probe.peak_rss_mib(d.pid)
            after = probe.settled_usage(d.pid, before, 5, threads=False)
            row.leaks = after.leaks_over(before, threads=False)
            row.threads = after.threads
            if pings.worst > 1.0 or pings.failures:
                row.leaks["slow-ping-ms"] = int(pings.worst * 1000)
            scratch = os.listdir(d.tmp / "scratch")
            if scratch:
                row.leaks["temp-files"] = len(scratch)
            rows.append(row)
            print(f"{kind:7} {row.case:28} {row.seconds:7.2f}s {row.reply}", file=sys.stderr)
            if not d.alive():
                print(f"{kind} died", file=sys.stderr)
                break
    return rows


def run_load(kind: str, full: bool, dbdir: Path) -> list[Row]:
    rows = []
    marker = load.marker_db(dbdir)
    for name, fn in load.CASES:
        if MATCH[0] not in name:
            continue
        extra = load.EXTRA_OPTIONS.get(name, ())
        with daemon_for(kind, extra, (marker,)) as d:
            probe.ask(str(d.socket_path), b"zPING\x00")
            before = probe.usage(d.pid)
            probe.reset_peak(d.pid)
            started = time.monotonic()
            try:
                summary = fn(d, full)
            except Exception as exc:  # noqa: BLE001 - the report shows the failure
                summary = f"FAILED: {type(exc).__name__}: {exc}"
            row = Row(name, summary, time.monotonic() - started)
            if d.alive():
                row.peak_mib = probe.peak_rss_mib(d.pid)
                after = probe.settled_usage(d.pid, before, 10, threads=False)
                row.leaks = after.leaks_over(before, threads=False)
                row.threads = after.threads
            scratch = os.listdir(d.tmp / "scratch") if (d.tmp / "scratch").exists() else []
            if scratch:
                row.leaks["temp-files"] = len(scratch)
            rows.append(row)
            print(f"{kind:7} {row.case:28} {row.seconds:7.2f}s {row.reply}", file=sys.stderr)
    return rows


def table(results: dict[str, list[Row]], *, compare: bool) -> str:
    kinds = [k for k in KINDS if k in results]
    names: list[str] = []
    for rows in results.values():
        for r in rows:
            if r.case not in names:
                names.append(r.case)
    head = "| case | " + " | ".join(
        f"{k} reply | {k} s | {k} peak MiB | {k} leaks (threads)" for k in kinds
    )
    both = compare and len(kinds) == 2
    if both:
        head += " | same reply"
    lines = [head + " |", "|" + "---|" * (1 + 4 * len(kinds) + both)]
    for name in names:
        cells = [name]
        for k in kinds:
            row = next((r for r in results[k] if r.case == name), None)
            if row is None:
                cells += ["-", "-", "-", "-"]
                continue
            leaks = ", ".join(f"{a}+{b}" for a, b in row.leaks.items()) or "none"
            cells += [
                row.reply.replace("|", "/"),
                f"{row.seconds:.2f}",
                f"{row.peak_mib:.0f}" if row.peak_mib else "-",
                f"{leaks} ({row.threads})" if row.threads else leaks,
            ]
        if both:
            replies = {r.reply for k in kinds for r in results[k] if r.case == name}
            cells.append("yes" if len(replies) == 1 else "**no**")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=KINDS, action="append", help="daemon(s) to run")
    ap.add_argument("--cases", choices=("hostile", "load", "all"), default="all")
    ap.add_argument("--small", action="store_true", help="the CI sizes instead of the full ones")
    ap.add_argument("--markdown", type=Path, help="also write the tables here")
    ap.add_argument("--option", action="append", default=[], help="NAME=VALUE for both")
    ap.add_argument("--match", default="", help="only cases whose name contains this")
    args = ap.parse_args(argv)
    for opt in args.option:
        name, _, value = opt.partition("=")
        EXTRA.append((name, value))
    MATCH[0] = args.match
    kinds = args.only or list(KINDS)
    modes = {"": (), " with AlertExceedsMax": (("AlertExceedsMax", "yes"),)}
    hostile_rows: dict[str, dict[str, list[Row]]] = {mode: {} for mode in modes}
    load_rows: dict[str, list[Row]] = {}
    for kind in kinds:
        reason = skip_reason(kind)
        if reason is not None:
            print(f"skipping {kind}: {reason}", file=sys.stderr)
            continue
        for mode, extra in modes.items() if args.cases in ("hostile", "all") else ():
            tree = Path(tempfile.mkdtemp(prefix="vgh", dir="/tmp"))
            try:
                hostile_rows[mode][kind] = run_hostile(kind, tree, extra)
            finally:
                with contextlib.suppress(OSError):
                    (tree / "unreadable.com").chmod(0o600)
                hostile.remove_tree(tree)
        if args.cases in ("load", "all"):
            with tempfile.TemporaryDirectory() as dbdir:
                load_rows[kind] = run_load(kind, not args.small, Path(dbdir))
    out = []
    for mode, rows in hostile_rows.items():
        if rows:
            out += [f"## Hostile files{mode}", "", table(rows, compare=True), ""]
    if load_rows:
        out += ["## Load and faults", "", table(load_rows, compare=False), ""]
    text = "\n".join(out)
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
