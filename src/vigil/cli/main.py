"""``vigil``: one command with a subcommand per tool (scan is clamscan's counterpart)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from vigil import __version__
from vigil.cli import client, scan, sigtool, update

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vigil", description="Vigil: a clamd-compatible anti-virus engine and tools."
    )
    parser.add_argument("-V", "--version", action="version", version=f"Vigil {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p_scan = sub.add_parser(
        "scan",
        help="scan files and directories (like clamscan)",
        description="Scan files and "
        "directories with ClamAV databases; output and exit codes follow clamscan.",
    )
    scan.add_arguments(p_scan)
    p_scan.add_argument("-V", "--version", action="version", version=f"Vigil {__version__}")
    p_client = sub.add_parser(
        "client",
        help="scan through a running vigild or clamd (like clamdscan)",
        description="Scan files through a running vigild (or clamd); output and exit codes "
        "follow clamdscan.",
    )
    client.add_arguments(p_client)
    p_sigtool = sub.add_parser(
        "sigtool",
        help="inspect, build and verify signature databases (like sigtool)",
        description="Work with ClamAV signature databases; options, output and exit codes "
        "follow sigtool where they overlap.",
    )
    sigtool.add_arguments(p_sigtool)
    p_update = sub.add_parser(
        "update",
        help="download and update the signature databases (like freshclam)",
        description="Update the signature databases from a ClamAV mirror; reads "
        "freshclam.conf syntax.",
    )
    update.add_arguments(p_update)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vigil`` console script."""
    for stream in (sys.stdout, sys.stderr):
        # file names are bytes: print them as they are, whatever the locale says
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="surrogateescape")
    parser = build_parser()
    args = parser.parse_args(scan.normalise_bool_args(list(sys.argv[1:] if argv is None else argv)))
    if args.command is None:
        parser.print_help()
        return 2
    level = logging.DEBUG if getattr(args, "debug", False) else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s", stream=sys.stderr)
    try:
        if args.command == "scan":
            return scan.run(args)
        if args.command == "client":
            return client.run(args)
        if args.command == "sigtool":
            return sigtool.run(args)
        if args.command == "update":
            return update.run(args)
    except KeyboardInterrupt:
        return 2
    except BrokenPipeError:
        return 2
    except Exception as exc:  # a bug: one clear line, never a traceback (details with --debug)
        logging.getLogger("vigil").debug("internal error", exc_info=True)
        print(f"ERROR: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
