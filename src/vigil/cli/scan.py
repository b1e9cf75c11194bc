"""``vigil scan``: a standalone scanner with clamscan's options, output and exit codes."""

from __future__ import annotations

import argparse
import logging
import os
import stat
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TextIO

from vigil import __version__
from vigil.engine.compiled import open_engine
from vigil.engine.database import DatabaseOptions, builtin_database_dir
from vigil.engine.limits import Limits
from vigil.engine.results import ScanResult
from vigil.engine.scanner import Engine, ScanOptions
from vigil.errors import VigilError

__all__ = ["add_arguments", "run"]

log = logging.getLogger(__name__)

EXIT_CLEAN, EXIT_FOUND, EXIT_ERROR = 0, 1, 2
_SIZE_SUFFIX = {"k": 1024, "m": 1024 * 1024, "g": 1024 * 1024 * 1024}


def yes_no(text: str) -> bool:
    """clamscan's ``--opt[=yes/no]`` values."""
    t = text.lower()
    if t in ("yes", "y", "true", "1", "on"):
        return True
    if t in ("no", "n", "false", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected yes or no, got {text!r}")


def size_value(text: str) -> int:
    """A size such as ``100``, ``512K`` or ``25M`` (clamscan's suffixes)."""
    t = text.strip().lower()
    mult = _SIZE_SUFFIX.get(t[-1:], 1) if t else 1
    digits = t[:-1] if t[-1:] in _SIZE_SUFFIX else t
    if not digits.isdigit():
        raise argparse.ArgumentTypeError(f"expected a size such as 100M, got {text!r}")
    return int(digits) * mult


BOOL_FLAGS: set[str] = set()


def normalise_bool_args(argv: list[str]) -> list[str]:
    """Turn clamscan's ``--flag=yes``/``--flag=no`` into argparse's plain ``--flag``/nothing.

    argparse cannot give a flag an optional value without also swallowing the next path.
    """
    out = []
    for arg in argv:
        name, eq, value = arg.partition("=")
        if eq and name in BOOL_FLAGS:
            try:
                if yes_no(value):
                    out.append(name)
            except argparse.ArgumentTypeError as exc:
                raise SystemExit(f"vigil: {name}: {exc}") from None
            continue
        out.append(arg)
    return out


# clamscan's --scan-X=yes/no switches, each a Limits field of the same name
SCAN_SWITCHES = [
    ("scan-archive", "archives"),
    ("scan-pe", "PE executables"),
    ("scan-elf", "ELF executables"),
    ("scan-ole2", "OLE2 documents"),
    ("scan-pdf", "PDF documents"),
    ("scan-html", "HTML"),
    ("scan-mail", "mail"),
    ("scan-swf", "Flash files"),
    ("scan-xmldocs", "XML documents"),
    ("scan-hwp3", "HWP3 documents"),
    ("scan-onenote", "OneNote documents"),
    ("scan-image", "images"),
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The clamscan options that ``vigil scan`` understands."""

    def flag(*names: str, help: str) -> None:
        BOOL_FLAGS.update(n for n in names if n.startswith("--"))
        p.add_argument(*names, action="store_true", help=help + " (also --opt=yes/no)")

    p.add_argument("paths", nargs="*", metavar="FILE/DIR", help="files or directories to scan")
    p.add_argument(
        "-d",
        "--database",
        action="append",
        default=[],
        metavar="FILE/DIR",
        help="load signatures from FILE or every database in DIR (repeatable)",
    )
    flag("-r", "--recursive", help="scan subdirectories recursively")
    flag("-z", "--allmatch", help="continue scanning within a file after a match")
    flag("-i", "--infected", help="only print infected files")
    flag("-o", "--suppress-ok-results", help="do not print OK files")
    flag("--no-summary", help="do not print the summary at the end")
    flag("--detect-pua", help="load PUA signatures")
    flag("--official-db-only", help="only load official (signed) databases")
    p.add_argument(
        "--trusted-keys-dir",
        metavar="PATH",
        help="PEM public keys trusted to sign .cvd/.cld files, besides ClamAV's (Vigil only)",
    )
    flag("--alert-exceeds-max", help="alert on files that exceed a scan limit")
    p.add_argument(
        "--heuristic-alerts",
        type=yes_no,
        default=True,
        metavar="yes/no",
        help="report heuristic detections such as Heuristics.Zip.OverlappingFiles (default yes)",
    )
    flag("--alert-encrypted", help="alert on encrypted archives and documents")
    flag("--alert-encrypted-archive", help="alert on encrypted archives")
    flag("--alert-encrypted-doc", help="alert on encrypted documents")
    flag("--alert-broken", help="alert on broken executables")
    flag("--alert-macros", help="alert on OLE2 files with VBA macros")
    for name, what in SCAN_SWITCHES:
        p.add_argument(
            f"--{name}",
            type=yes_no,
            default=True,
            metavar="yes/no",
            help=f"parse {what} (default yes)",
        )
    flag("-v", "--verbose", help="be verbose")
    flag("--debug", help="print debug messages")
    flag("--disable-cache", help="do not keep clean results to skip identical objects")
    p.add_argument("-f", "--file-list", metavar="FILE", help="scan the files listed in FILE")
    p.add_argument("--max-filesize", type=size_value, metavar="N")
    p.add_argument("--max-scansize", type=size_value, metavar="N")
    p.add_argument("--max-recursion", type=int, metavar="N")
    p.add_argument("--max-files", type=int, metavar="N")
    p.add_argument("--max-scantime", type=int, metavar="MS")
    p.add_argument("--max-embeddedpe", type=size_value, metavar="N")
    p.add_argument("--max-ziptypercg", type=size_value, metavar="N")
    p.add_argument("--max-htmlnormalize", type=size_value, metavar="N")
    p.add_argument("--max-htmlnotags", type=size_value, metavar="N")
    p.add_argument("--max-scriptnormalize", type=size_value, metavar="N")
    p.add_argument("--pcre-max-filesize", type=size_value, metavar="N")


@dataclass(slots=True)
class _Counts:
    files: int = 0
    dirs: int = 0
    infected: int = 0
    errors: int = 0
    data: int = 0


class _Scanner:
    def __init__(self, engine: Engine, args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
        self.engine = engine
        self.args = args
        self.out = out
        self.err = err
        self.counts = _Counts()
        self.options = ScanOptions(allmatch=args.allmatch)

    def error(self, path: str, message: str) -> None:
        self.counts.errors += 1
        print(f"{path}: {message}", file=self.err)
        print(f"WARNING: {path}: Can't access file", file=self.err)

    def scan_path(self, path: str, top: bool) -> None:
        try:
            st = os.stat(path) if top else os.lstat(path)
        except OSError as exc:
            self.error(path, exc.strerror or "cannot access")
            return
        except ValueError:  # a NUL byte in a name from a file list
            self.error(path.replace("\x00", "\\0"), "Invalid file name")
            return
        if stat.S_ISDIR(st.st_mode):
            if top or self.args.recursive:
                self.scan_dir(path)
            return
        if not stat.S_ISREG(st.st_mode):
            return
        self.scan_file(path)

    def scan_dir(self, path: str) -> None:
        self.counts.dirs += 1
        try:
            names = sorted(os.listdir(path))
        except OSError as exc:
            self.error(path, exc.strerror or "cannot read directory")
            return
        for name in names:
            self.scan_path(os.path.join(path, name), top=False)

    def scan_file(self, path: str) -> None:
        limits = self.engine.limits
        try:
            with open(path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                oversized = limits.oversized(size)
                if oversized is not None:  # not read at all, as clamscan
                    result = ScanResult(names=oversized)
                else:
                    # read, not mapped: a file truncated under a mapping kills the process
                    result = self.engine.scan(fh.read(), self.options)
        except OSError as exc:
            self.error(path, exc.strerror or "cannot read")
            return
        self.counts.files += 1
        self.counts.data += size
        if result.names:
            self.counts.infected += 1
            for name in result.names:
                print(f"{path}: {name} FOUND", file=self.out)
        elif not (self.args.infected or self.args.suppress_ok_results):
            print(f"{path}: OK", file=self.out)


def _paths(args: argparse.Namespace) -> Iterator[str]:
    yield from args.paths
    if args.file_list:
        try:
            fh = open(args.file_list, encoding="utf-8", errors="surrogateescape")  # noqa: SIM115
        except OSError as exc:
            msg = f"--file-list: Can't open file {args.file_list}: {exc.strerror}"
            raise FileListError(msg) from None
        with fh:
            for line in fh:
                line = line.rstrip("\n")
                if line:
                    yield line


class FileListError(Exception):
    """The --file-list file cannot be read."""


def _summary(out: TextIO, sigs: int, counts: _Counts, started: float, start_wall: float) -> None:
    elapsed = time.monotonic() - started
    mb = counts.data / (1024 * 1024)
    fmt = "%Y:%m:%d %H:%M:%S"
    print("\n----------- SCAN SUMMARY -----------", file=out)
    print(f"Known viruses: {sigs}", file=out)
    print(f"Engine version: {__version__}", file=out)
    print(f"Scanned directories: {counts.dirs}", file=out)
    print(f"Scanned files: {counts.files}", file=out)
    print(f"Infected files: {counts.infected}", file=out)
    if counts.errors:
        print(f"Total errors: {counts.errors}", file=out)
    print(f"Data scanned: {mb:.2f} MB", file=out)
    ratio = 1.0 if counts.data else 0.0
    print(f"Data read: {mb:.2f} MB (ratio {ratio:.2f}:1)", file=out)
    secs = int(elapsed)
    print(f"Time: {elapsed:.3f} sec ({secs // 60} m {secs % 60} s)", file=out)
    print(f"Start Date: {time.strftime(fmt, time.localtime(start_wall))}", file=out)
    print(f"End Date:   {time.strftime(fmt, time.localtime())}", file=out)


def _given(value: int | None, default: int) -> int:
    return default if value is None else value


def run(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Load the databases, scan every path, print results and the summary; return exit code."""
    started = time.monotonic()
    start_wall = time.time()
    defaults = Limits()
    limits = Limits(
        max_filesize=defaults.max_filesize if args.max_filesize is None else args.max_filesize,
        max_scansize=defaults.max_scansize if args.max_scansize is None else args.max_scansize,
        max_recursion=defaults.max_recursion if args.max_recursion is None else args.max_recursion,
        max_files=defaults.max_files if args.max_files is None else args.max_files,
        max_scantime=defaults.max_scantime if args.max_scantime is None else args.max_scantime,
        max_embedded_pe=(
            defaults.max_embedded_pe if args.max_embeddedpe is None else args.max_embeddedpe
        ),
        max_zip_type_rcg=(
            defaults.max_zip_type_rcg if args.max_ziptypercg is None else args.max_ziptypercg
        ),
        max_html_normalize=_given(args.max_htmlnormalize, defaults.max_html_normalize),
        max_html_notags=_given(args.max_htmlnotags, defaults.max_html_notags),
        max_script_normalize=_given(args.max_scriptnormalize, defaults.max_script_normalize),
        pcre_max_filesize=_given(args.pcre_max_filesize, defaults.pcre_max_filesize),
        alert_exceeds_max=args.alert_exceeds_max,
        alert_encrypted_archive=args.alert_encrypted or args.alert_encrypted_archive,
        alert_encrypted_doc=args.alert_encrypted or args.alert_encrypted_doc,
        heuristic_alerts=args.heuristic_alerts,
        alert_broken=args.alert_broken,
        alert_ole2_macros=args.alert_macros,
        clean_cache=not args.disable_cache,
        **{
            name.replace("-", "_"): getattr(args, name.replace("-", "_"))
            for name, _ in SCAN_SWITCHES
        },
    )
    databases = args.database or [str(builtin_database_dir())]
    try:
        engine = open_engine(
            databases,
            DatabaseOptions(
                pua=args.detect_pua,
                official_only=args.official_db_only,
                trusted_keys=args.trusted_keys_dir,
            ),
            limits,
        )
    except VigilError as exc:
        print(f"ERROR: {exc}", file=err)
        if not args.no_summary:
            _summary(out, 0, _Counts(), started, start_wall)
        return EXIT_ERROR
    if args.verbose:
        for notice in engine.notices:
            print(f"LibClamAV Warning: {notice}", file=err)
    scanner = _Scanner(engine, args, out, err)
    try:
        paths = list(_paths(args)) or (["."] if not args.file_list else [])
    except FileListError as exc:
        print(f"ERROR: {exc}", file=err)
        return EXIT_ERROR
    for p in paths:
        if p == "-":
            data = sys.stdin.buffer.read()
            result = engine.scan(data, scanner.options)
            scanner.counts.files += 1
            scanner.counts.data += len(data)
            if result.names:
                scanner.counts.infected += 1
                for name in result.names:
                    print(f"stdin: {name} FOUND", file=out)
            elif not args.infected:
                print("stdin: OK", file=out)
            continue
        scanner.scan_path(p, top=True)
    if not args.no_summary:
        _summary(out, engine.signatures, scanner.counts, started, start_wall)
    if scanner.counts.errors:
        return EXIT_ERROR if not scanner.counts.infected else EXIT_FOUND
    return EXIT_FOUND if scanner.counts.infected else EXIT_CLEAN
