"""``vigil sigtool``: inspect, unpack, build and patch signature databases like ClamAV's sigtool.

Options, output text and exit codes follow sigtool 1.4 where they overlap. Errors are one
``ERROR: <action>: <reason>`` line on stderr and exit code 1, never a traceback. Differences:
``--mdb``/``--imp`` print the signature lines on stdout (1.4.6 only shows them as debug
messages), ``--find-sigs`` also accepts database paths after the regex, and ``--build``
signs only with ``--private-key`` (a PEM RSA-2048 key); without it the result is a ``.cud``.
With ``--private-key``, ``--diff`` also writes the signed ``NAME-VERSION.cdiff`` next to the
script. ``--trusted-keys-dir`` (Vigil only, as VigilTrustedKeysDirectory) makes databases
signed by those public keys verify, besides ClamAV's own.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import regex

from vigil.engine.executables import parse_pe, section_hash_inputs
from vigil.engine.matcher.body import compile_pattern
from vigil.engine.signatures import cvd
from vigil.engine.signatures.cdiff import (
    apply_cdiff,
    make_cdiff,
    parse_cdiff,
    verify_cdiff,
)
from vigil.engine.signatures.cvdbuild import SigningKey, build_cvd, load_signing_key, sign_cdiff
from vigil.engine.signatures.model import FLEVEL
from vigil.engine.signatures.pattern import PatternError, check_static, parse_pattern
from vigil.errors import DatabaseError

__all__ = ["add_arguments", "run"]

DEFAULT_DATADIR = "/var/lib/clamav"

# Files --list-sigs and --find-sigs look at (sigtool skips .fp, .cfg, .info and the like).
_LISTED = ("db", "hdb", "hdu", "hsb", "hsu", "mdb", "mdu", "msb", "msu", "ndb", "ndu", "sdb",
           "ldb", "ldu", "cdb", "zmd", "rmd", "imp", "crb", "cbc")  # fmt: skip
_CONTAINERS = ("cvd", "cld", "cud")
_TARGETS = ("ANY FILE", "PE", "OLE2", "HTML", "MAIL", "GRAPHICS", "ELF", "NORMALIZED ASCII TEXT",
            "DISASM DATA", "MACHO", "PDF", "FLASH", "JAVA CLASS")  # fmt: skip
# The header writes "14-58" for 14:58 so the time does not break the ':' separated fields.
_TIME_DASH = re.compile(r"(\d\d)-(\d\d)")
_SIGMODS = {"i": "NOCASE", "w": "WIDE", "a": "ASCII", "f": "FULLWORD"}


class _Fail(Exception):
    """A sigtool-style failure: the message is printed after ``ERROR: ``."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``vigil sigtool`` (sigtool's names; one action per run)."""
    act = p.add_mutually_exclusive_group()
    act.add_argument("--md5", action="store_true", help="MD5 sigs for FILES (or hash stdin)")
    act.add_argument("--sha1", action="store_true", help="SHA1 sigs for FILES (or hash stdin)")
    act.add_argument("--sha256", action="store_true", help="SHA256 sigs for FILES (or stdin)")
    act.add_argument("--mdb", action="store_true", help="PE section hash (.mdb) sigs for FILES")
    act.add_argument("--imp", action="store_true", help="import table hash (.imp) sigs for FILES")
    act.add_argument("-i", "--info", metavar="FILE", help="print CVD/CLD/CUD information")
    act.add_argument("-u", "--unpack", metavar="FILE", help="unpack a CVD/CLD/CUD into cwd")
    act.add_argument("--unpack-current", metavar="SHORTNAME", help="unpack local NAME.cvd/.cld")
    act.add_argument(
        "-l", "--list-sigs", nargs="?", const="", metavar="FILE", help="list signature names"
    )
    act.add_argument("-f", "--find-sigs", metavar="REGEX", help="find signatures matching REGEX")
    act.add_argument("--decode-sigs", action="store_true", help="decode signatures from stdin")
    act.add_argument("--test-sigs", metavar="DB", help="show where the signatures of DB match FILE")
    act.add_argument("--hex-dump", action="store_true", help="print stdin as a hex string")
    act.add_argument("-b", "--build", metavar="NAME", help="build NAME.cvd (or .cud) from cwd")
    act.add_argument("-d", "--diff", metavar="OLD", help="make a cdiff script from OLD to NEW")
    act.add_argument("-r", "--run-cdiff", metavar="FILE", help="apply a cdiff/script in cwd")
    act.add_argument(
        "--verify-cdiff", "--verify-cdiffs", metavar="DIFF", help="verify DIFF against CVD/CLD"
    )
    p.add_argument("--datadir", metavar="DIR", help=f"database directory ({DEFAULT_DATADIR})")
    p.add_argument("--cvd-version", type=int, metavar="N", help="version for --build")
    p.add_argument("--flevel", type=int, default=FLEVEL, help="functionality level for --build")
    p.add_argument("--unsigned", action="store_true", help="--build an unsigned .cud")
    p.add_argument("--private-key", metavar="PEM", help="RSA-2048 key that signs --build output")
    p.add_argument("--builder", default="vigil", help="builder name written by --build")
    p.add_argument(
        "--trusted-keys-dir",
        metavar="PATH",
        help="PEM public keys trusted to sign databases, besides ClamAV's (Vigil only)",
    )
    p.add_argument("--quiet", action="store_true", help="only print errors")
    p.add_argument("--debug", action="store_true", help="enable debug messages")
    p.add_argument("files", nargs="*", metavar="FILE", help="files for the chosen action")


def run(args: argparse.Namespace) -> int:
    """Dispatch one action; sigtool's exit codes (0 success, 1 failure)."""
    actions: list[tuple[object, Callable[[argparse.Namespace], int]]] = [
        (args.md5 or args.sha1 or args.sha256, _hash_files),
        (args.mdb, _mdb),
        (args.imp, _imp),
        (args.info, _info),
        (args.unpack, _unpack),
        (args.unpack_current, _unpack_current),
        (args.list_sigs is not None, _list_sigs),
        (args.find_sigs, _find_sigs),
        (args.decode_sigs, _decode_sigs),
        (args.test_sigs, _test_sigs),
        (args.hex_dump, _hex_dump),
        (args.build, _build),
        (args.diff, _diff),
        (args.run_cdiff, _run_cdiff),
        (args.verify_cdiff, _verify_cdiff),
    ]
    for chosen, action in actions:
        if chosen:
            try:
                args.keys = _trusted_keys(args.trusted_keys_dir)
                return action(args)
            except _Fail as exc:
                _err(f"ERROR: {exc}")
                return 1
            except OSError as exc:  # writing into cwd (unpack, run-cdiff...) failed
                _err(f"ERROR: {exc.filename or 'I/O'}: {exc.strerror or exc}")
                return 1
    _err("ERROR: no action given; see vigil sigtool --help")
    return 1


def _err(text: str) -> None:
    sys.stdout.flush()
    print(text, file=sys.stderr)


def _out(data: bytes) -> None:
    sys.stdout.flush()
    sys.stdout.buffer.write(data)


def _read(path: str, action: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise _Fail(f"{action}: Can't access file {path} ({exc.strerror})") from None


# --- hash signatures ------------------------------------------------------------------------


def _hash_files(args: argparse.Namespace) -> int:
    algo = "md5" if args.md5 else "sha1" if args.sha1 else "sha256"
    if not args.files:
        print(hashlib.new(algo, sys.stdin.buffer.read()).hexdigest())
        return 0
    for path in args.files:
        if os.path.isdir(path):
            continue  # sigtool prints nothing for a directory
        data = _read(path, "hashsig")
        print(f"{hashlib.new(algo, data).hexdigest()}:{len(data)}:{os.path.basename(path)}")
    return 0


def _empty_pe(path: str, data: bytes) -> bool:
    """sigtool cannot map an empty file: two error lines, and it stops (exit 1)."""
    if data:
        return False
    _err("ERROR: hashpe: Can't create fmap for open file")
    _err(f"ERROR: hashsig: Can't generate hash for {path}")
    return True


def _mdb(args: argparse.Namespace) -> int:
    for path in args.files:
        data = _read(path, "hashpe")
        if _empty_pe(path, data):
            return 1
        info = parse_pe(data)
        if info is None:
            _err("ERROR: hashpe: Not a valid PE file!")
            continue
        name = os.path.basename(path)
        # libclamav hashes the sections sorted by file offset (pe.c sort_sects), not in header
        # order; sigtool prints them in that order (packers often place them out of order)
        for offset, size in sorted(section_hash_inputs(info)):
            digest = hashlib.md5(data[offset : offset + size], usedforsecurity=False)
            print(f"{size}:{digest.hexdigest()}:{name}")
    return 0


def _imp(args: argparse.Namespace) -> int:
    for path in args.files:
        data = _read(path, "hashpe")
        if _empty_pe(path, data):
            return 1
        info = parse_pe(data)
        if info is None:
            _err("ERROR: hashpe: Not a valid PE file!")
        elif info.imphash is not None:
            print(f"{info.imphash[0]}:{info.imphash[1]}:{os.path.basename(path)}")
    return 0


# --- containers -----------------------------------------------------------------------------


def _info(args: argparse.Namespace) -> int:
    path = args.info
    try:
        data = Path(path).read_bytes()
        header = cvd.parse_cvd_header(data[: cvd.HEADER_SIZE], path)
    except (OSError, DatabaseError) as exc:
        raise _Fail(f"cvdinfo: Can't read/parse CVD header of {path} ({_reason(exc)})") from None
    kind = path.lower().rsplit(".", 1)[-1]
    print(f"File: {path}")
    print("Build time: " + _TIME_DASH.sub(r"\1:\2", header.build_time, count=1))
    print(f"Version: {header.version}")
    print(f"Signatures: {header.sigs}")
    print(f"Functionality level: {header.flevel}")
    print(f"Builder: {header.builder}")
    if kind == "cvd":
        print(f"MD5: {header.md5}")
        print(f"Digital signature: {header.dsig}")
    try:
        cvd.read_cvd(data, path, trusted_keys=args.keys)
    except DatabaseError as exc:
        raise _Fail(f"cvdinfo: Verification: Can't verify database integrity ({exc})") from None
    print("Verification OK.")
    return 0


def _trusted_keys(path: str | None) -> tuple[cvd.TrustedKey, ...]:
    if not path:
        return ()
    try:
        return cvd.load_trusted_keys(path)
    except DatabaseError as exc:
        raise _Fail(f"Can't load trusted keys ({exc})") from None


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


def _load_container(
    path: str, action: str, keys: tuple[cvd.TrustedKey, ...] = ()
) -> cvd.CvdArchive:
    try:
        return cvd.read_cvd(Path(path).read_bytes(), path, trusted_keys=keys)
    except (OSError, DatabaseError) as exc:
        raise _Fail(f"{action}: {path} is not a valid CVD ({_reason(exc)})") from None


def _write_members(members: Iterator[tuple[str, bytes]] | list[tuple[str, bytes]]) -> None:
    for name, data in members:
        Path(name).write_bytes(data)


def _unpack(args: argparse.Namespace) -> int:
    _write_members(list(_load_container(args.unpack, "unpack", args.keys).members))
    return 0


def _unpack_current(args: argparse.Namespace) -> int:
    datadir = Path(args.datadir or DEFAULT_DATADIR)
    for ext in _CONTAINERS:
        candidate = datadir / f"{args.unpack_current}.{ext}"
        if candidate.is_file():
            _write_members(list(_load_container(str(candidate), "unpack", args.keys).members))
            return 0
    raise _Fail(f"unpack: No local {args.unpack_current} database in {datadir}")


def _database_files(
    path: Path, keys: tuple[cvd.TrustedKey, ...] = ()
) -> Iterator[tuple[str, bytes]]:
    """(name, contents) of listable databases in a file, container or directory.

    sigtool lists a container by unpacking it into a temporary directory and reading that
    directory back, so its file order is the file system's (readdir): it differs between
    ext4 and tmpfs, and between two ext4 file systems (hash seed). Vigil uses a fixed order
    instead: container members in archive order, directory entries sorted by name. Within
    one file the lines come in file order, as in sigtool.
    """
    if path.is_dir():
        try:
            entries = sorted(path.iterdir())
        except OSError as exc:
            raise _Fail(f"listdir: Can't open directory {path} ({exc.strerror})") from None
        for entry in entries:
            if entry.is_file() and _ext(entry.name) in _LISTED + _CONTAINERS:
                yield from _database_files(entry, keys)
        return
    if _ext(path.name) in _CONTAINERS:
        for name, data in _load_container(str(path), "listdb", keys).members:
            if _ext(name) in _LISTED:
                yield name, data
        return
    if _ext(path.name) not in _LISTED:
        return  # sigtool lists nothing from other files (.fp, .info, ...)
    try:
        yield path.name, path.read_bytes()
    except OSError as exc:
        raise _Fail(f"listdb: Can't read {path} ({exc.strerror})") from None


def _ext(name: str) -> str:
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def _sig_name(ext: str, line: str) -> str | None:
    """The name sigtool prints for one line (a " (Clam)" suffix cut, as sigtool does)."""
    if ext == "crb":
        return line  # sigtool prints certificate rules whole
    if ext == "db":
        name = line.split("=", 1)[0]
    elif ext in ("ldb", "ldu"):
        name = line.split(";", 1)[0]
    elif ext in ("hdb", "hdu", "hsb", "hsu", "mdb", "mdu", "msb", "msu", "imp"):
        fields = line.split(":")
        if len(fields) <= 2:
            return None
        name = fields[2]
    else:
        name = line.split(":", 1)[0]
    return name.split(" (Clam)", 1)[0]


def _list_sigs(args: argparse.Namespace) -> int:
    target = Path(args.list_sigs or args.datadir or DEFAULT_DATADIR)
    if not target.exists():
        raise _Fail(f"--list-sigs: Can't get status of {target}")
    for name, data in _database_files(target, args.keys):
        ext = _ext(name)
        if ext == "cbc":  # bytecode: the name is on the second line, before ';'
            lines = data.decode("latin-1").split("\n")
            if len(lines) > 1 and ";" in lines[1]:
                print(lines[1].split(";", 1)[0])
            continue
        for raw in data.decode("latin-1").splitlines():
            line = raw.rstrip("\r")
            if not line.strip() or line.startswith("#"):
                continue
            sig = _sig_name(ext, line)
            if sig:
                print(sig)
    return 0


def _find_sigs(args: argparse.Namespace) -> int:
    try:
        pattern = re.compile(args.find_sigs)
    except re.error as exc:
        raise _Fail(f"--find-sigs: Can't compile regex ({exc})") from None
    targets = [Path(f) for f in args.files] or [Path(args.datadir or DEFAULT_DATADIR)]
    for target in targets:
        for name, data in _database_files(target, args.keys):
            for raw in data.decode("latin-1").splitlines():
                if pattern.search(raw):
                    print(f"[{name}] {raw}")
    return 0


# --- decode-sigs ----------------------------------------------------------------------------


class _DecodeError(Exception):
    pass


_HEX = re.compile(r"[0-9a-fA-F]{2}")


def _decode_hex(text: str, *, in_alt: bool = False) -> bytes:
    """Human-readable form of a body signature (sigtool's ``{WILDCARD_...}`` notation)."""
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        pair = text[i : i + 2]
        if _HEX.fullmatch(pair):
            out.append(int(pair, 16))
            i += 2
        elif pair == "??":
            out += b"{WILDCARD_IGNORE}"
            i += 2
        elif len(pair) == 2 and pair[1] == "?" and _HEX.fullmatch(pair[0] + "0"):
            out += f"{{WILDCARD_NIBBLE_HIGH:0x{int(pair[0], 16) << 4:x}}}".encode()
            i += 2
        elif len(pair) == 2 and pair[0] == "?" and _HEX.fullmatch("0" + pair[1]):
            out += f"{{WILDCARD_NIBBLE_LOW:0x{int(pair[1], 16):x}}}".encode()
            i += 2
        elif in_alt:
            raise _DecodeError(text[i:])
        elif ch == "*":
            out += b"{WILDCARD_ANY_STRING}"
            i += 1
        elif ch in "{[":
            close = text.find("}" if ch == "{" else "]", i)
            if close < 0:
                raise _DecodeError(text[i:])
            out += _range_text(text[i + 1 : close]).encode()
            i = close + 1
        elif text.startswith(("(B)", "(L)", "(W)"), i):
            i += 3
        elif ch == "(" or text.startswith("!(", i):
            negated = ch == "!"
            close = text.find(")", i)
            if close < 0:
                raise _DecodeError(text[i:])
            alts = text[i + 1 + negated : close].split("|")
            label = "EXCLUDING_STRING_ALTERNATIVE" if negated else "STRING_ALTERNATIVE"
            out += b"{" + label.encode() + b":"
            out += b"|".join(_decode_hex(alt, in_alt=True) for alt in alts) + b"}"
            i = close + 1
        else:
            raise _DecodeError(text[i:])
    return bytes(out)


def _range_text(body: str) -> str:
    low, dash, high = body.partition("-")
    if not (low.isdigit() or (dash and not low)) or not (high.isdigit() or not high):
        raise _DecodeError(body)
    if low and int(low) == 0:
        low = ""  # sigtool prints {0} and {0-} as nothing and {0-n} as {-n}
        if not high:
            return ""
    if not dash:
        return f"{{WILDCARD_ANY_STRING(LENGTH=={low})}}" if low else ""
    if not low:
        return f"{{WILDCARD_ANY_STRING(LENGTH<={high})}}"
    if not high:
        return f"{{WILDCARD_ANY_STRING(LENGTH>={low})}}"
    return f"{{WILDCARD_ANY_STRING(LENGTH>={low}&&<={high})}}"


def _decoded(text: str) -> bytes:
    try:
        return _decode_hex(text) + b"\n"
    except _DecodeError as exc:
        _err(f"ERROR: Decoding failed: {exc}")
        return b""


# How the body of one (sub)signature is shown: its hex, "ndb"/"db"/"ldb", and its offset text.
_Render = Callable[[str, str, str], bytes]


def _render_decoded(body: str, style: str, offset: str) -> bytes:
    head = b" +-> DECODED SUBSIGNATURE:\n" if style == "ldb" else b"DECODED SIGNATURE:\n"
    return head + _decoded(body)


def _decode_line(line: str, render: _Render = _render_decoded) -> bool:
    """Print one decoded signature; False for a format sigtool rejects."""
    if ";" in line:
        return _decode_ldb(line, render)
    if ":" in line:
        fields = line.split(":")
        if not 4 <= len(fields) <= 6:
            _err("ERROR: decodesig: Invalid or not supported signature format")
            print(f"TOKENS COUNT: {len(fields)}")
            return False
        if not fields[1].isdigit() or int(fields[1]) >= len(_TARGETS):
            _err("ERROR: decodesig: Invalid target type")
            return False
        head = f"VIRUS NAME: {fields[0]}\n"
        if len(fields) == 5:
            head += f"FUNCTIONALITY LEVEL: >={fields[4]}\n"
        elif len(fields) == 6:
            head += f"FUNCTIONALITY LEVEL: {fields[4]}..{fields[5]}\n"
        head += f"TARGET TYPE: {_TARGETS[int(fields[1])]}\n"
        head += f"OFFSET: {fields[2]}\n"
        _out(head.encode() + render(fields[3], "ndb", fields[2]))
        return True
    if "=" in line:
        name, _, body = line.partition("=")
        _out(f"VIRUS NAME: {name}\n".encode() + render(body, "db", "*"))
        return True
    print("decodesig: Not supported signature format")
    return False


def _decode_ldb(line: str, render: _Render) -> bool:
    fields = line.split(";")
    if len(fields) < 4:
        _err("ERROR: decodesig: Invalid or not supported signature format")
        print(f"TOKENS COUNT: {len(fields)}")
        return False
    name, tdb, expr, subsigs = fields[0], fields[1], fields[2], fields[3:]
    ids = {int(n) for n in re.findall(r"\d+", re.sub(r"[=<>],?\d+(,\d+)?", "", expr))}
    # as sigtool: the highest subsignature ID used, plus one (a PCRE's trigger-only
    # subsignatures need not appear in the expression)
    wanted = max(ids) + 1 if ids else 0
    if wanted != len(subsigs):
        _err(
            f"ERROR: decodesig: The number of subsignatures (=={len(subsigs)}) doesn't match "
            f"the IDs in the logical expression (=={wanted})"
        )
        return False
    out = f"VIRUS NAME: {name}\nTDB: {tdb}\nLOGICAL EXPRESSION: {expr}\n".encode()
    for index, sub in enumerate(subsigs):
        body, mods = sub, ""
        if "::" in sub:
            body, _, mods = sub.rpartition("::")
        offset = "ANY"
        if ":" in body:
            offset, _, body = body.partition(":")
        sigmod = " ".join(_SIGMODS[m] for m in mods if m in _SIGMODS) or "NONE"
        out += f" * SUBSIG ID {index}\n +-> OFFSET: {offset}\n +-> SIGMOD: {sigmod}\n".encode()
        out += render(body, "ldb", offset)
    _out(out)
    return True


def _decode_sigs(args: argparse.Namespace) -> int:
    for raw in sys.stdin.buffer.read().decode("latin-1").splitlines():
        line = raw.rstrip("\r")
        if line and not _decode_line(line):
            return 1
    return 0


# --- test-sigs ------------------------------------------------------------------------------


def _match_offsets(body: str, data: bytes) -> list[int] | None:
    """Start offsets of every match of body pattern ``body`` anywhere in ``data``, as sigtool
    does: the signature's offset, target type and modifiers are not applied. None when the
    pattern cannot be loaded."""
    try:
        pattern = parse_pattern(body)
        check_static(pattern, min_fixed_only=2)
    except PatternError:
        return None
    compiled = compile_pattern(pattern)
    return [start for start, _ in compiled.starts(data, 0, len(data), len(data) + 1)]


_PCRE_FLAGS = {"i": regex.I, "s": regex.S, "m": regex.M, "x": regex.X}


def _pcre_offsets(body: str, data: bytes) -> list[int] | None:
    """Where a ``Trigger/Regex/Flags`` subsignature's regex first matches (sigtool reports
    one match for a PCRE); None when it cannot be compiled."""
    first, last = body.find("/"), body.rfind("/")
    if first == last:
        return None
    flags = 0
    for flag in body[last + 1 :]:
        flags |= _PCRE_FLAGS.get(flag, 0)
    try:
        rx = regex.compile(body[first + 1 : last].encode("latin-1"), flags)
    except regex.error:
        return None
    m = rx.search(data)
    return [] if m is None else [m.start()]


def _match_text(offsets: list[int], exact_offset: bool) -> str:
    if not offsets:
        return "MATCH: ** NO **\n"
    verdict = "YES" if exact_offset else "YES/CHECK OFFSET"
    listed = " ".join(str(o) for o in sorted(offsets, reverse=True))
    if len(offsets) == 1:
        return f"MATCH: ** {verdict} ** (1 match at offset: {listed})\n"
    return f"MATCH: ** {verdict} ** ({len(offsets)} matches at offsets: {listed})\n"


def _render_tested(data: bytes) -> _Render:
    def render(body: str, style: str, offset: str) -> bytes:
        text = f" +-> SUBSIG: {body}\n" if style == "ldb" else f"SUBSIG: {body}\n"
        if not data:
            return text.encode()  # sigtool matches nothing in an empty file, silently
        offsets = _pcre_offsets(body, data) if "/" in body else _match_offsets(body, data)
        if offsets is None:
            _err("ERROR: matchsig: Can't parse signature")
            return text.encode()
        # sigtool says only "YES" when the pattern may sit anywhere; otherwise the offset
        # was not applied and the user has to check it
        exact = style == "db" or (style == "ndb" and offset == "*")
        return (text + _match_text(offsets, exact)).encode()

    return render


def _test_sigs(args: argparse.Namespace) -> int:
    """--test-sigs DB FILE: each signature of DB decoded, with where its patterns occur."""
    if len(args.files) != 1:
        raise _Fail("--test-sigs requires two arguments")
    try:
        db = Path(args.test_sigs).read_bytes()
        data = Path(args.files[0]).read_bytes()
    except OSError as exc:
        raise _Fail(f"testsigs: Can't open file {exc.filename}") from None
    render = _render_tested(data)
    for raw in db.decode("latin-1").split("\n"):
        line = raw.rstrip("\r")
        if not line:
            break  # sigtool stops reading at the first empty line
        if not _decode_line(line, render):
            return 1
    return 0


def _hex_dump(args: argparse.Namespace) -> int:
    _out(sys.stdin.buffer.read().hex().encode())
    return 0


# --- cdiff ----------------------------------------------------------------------------------


def _cdiff_script(path: str, action: str, keys: tuple[cvd.TrustedKey, ...]) -> bytes:
    """The script text of a ``.cdiff`` (signature checked) or a plain ``.script``."""
    data = _read(path, action)
    if not data.startswith(b"ClamAV-Diff:"):
        return data
    try:
        parsed = parse_cdiff(data, path)
    except DatabaseError as exc:
        raise _Fail(f"{action}: {exc}") from None
    if not verify_cdiff(parsed, keys):
        raise _Fail(f"{action}: {path}: Incorrect digital signature")
    return parsed.script


def _script_names(script: bytes) -> set[str]:
    names: set[str] = set()
    for line in script.split(b"\n"):
        words = line.rstrip(b"\r").split(b" ")
        if words[0] in (b"OPEN", b"UNLINK") and len(words) > 1:
            names.add(b" ".join(words[1:]).decode("latin-1"))
        elif words[0] == b"MOVE" and len(words) > 2:
            names.update(w.decode("latin-1") for w in words[1:3])
    return names


def _run_cdiff(args: argparse.Namespace) -> int:
    script = _cdiff_script(args.run_cdiff, "cdiff_apply", args.keys)
    before: dict[str, bytes] = {}
    for name in _script_names(script):
        if "/" not in name and name not in (".", "..") and Path(name).is_file():
            before[name] = Path(name).read_bytes()
    try:
        after = apply_cdiff(before, script, args.run_cdiff)
    except DatabaseError as exc:
        raise _Fail(f"cdiff_apply: {exc}") from None
    for name, data in after.items():
        if before.get(name) != data:
            _atomic_write(Path(name), data)
    for name in before:
        if name not in after:
            Path(name).unlink()
    return 0


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent or ".", prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _verify_cdiff(args: argparse.Namespace) -> int:
    if len(args.files) != 1:
        raise _Fail("verifydiff: --verify-cdiff needs DIFF and CVD/CLD")
    diff, target = args.verify_cdiff, args.files[0]
    script = _cdiff_script(diff, "verifydiff", args.keys)
    archive = _load_container(target, "verifydiff", args.keys)
    try:
        result = apply_cdiff(dict(archive.members), script, diff)
        _check_result(result, diff, args.keys)
    except DatabaseError as exc:
        raise _Fail(f"verifydiff: Can't apply {diff}: {exc}") from None
    print(f"Verification: {diff} correctly applies to {target}")
    return 0


def _check_result(members: dict[str, bytes], origin: str, keys: tuple[cvd.TrustedKey, ...]) -> None:
    """The patched members must agree with their (signed) ``.info`` index."""
    info = next((d for n, d in members.items() if n.lower().endswith(".info")), None)
    if info is None:
        raise DatabaseError(f"{origin}: the result has no .info member")
    line = info.split(b"\n", 1)[0].decode("latin-1").rstrip("\r ")
    header = cvd.parse_cvd_header(line.encode("latin-1").ljust(cvd.HEADER_SIZE), origin)
    cvd._check_against_info(
        header, tuple(members.items()), origin, signed=True, verify=True, keys=keys
    )


def _diff(args: argparse.Namespace) -> int:
    if len(args.files) != 1:
        raise _Fail("makediff: --diff needs OLD and NEW")
    old_path, new_path = args.diff, args.files[0]
    key = _signing_key(args, "makediff") if args.private_key else None
    new = _load_container(new_path, "makediff", args.keys)
    old = _load_container(old_path, "makediff", args.keys)
    if old.header.version != new.header.version - 1:
        raise _Fail(f"makediff: The old CVD must be {new.header.version - 1}")
    script = make_cdiff(dict(old.members), dict(new.members))
    stem = Path(new_path).name.rsplit(".", 1)[0]
    out = Path(new_path).parent / f"{stem}-{new.header.version}.script"
    try:
        if apply_cdiff(dict(old.members), script, str(out)) != dict(new.members):
            raise _Fail("makediff: Generated file is incorrect")
        out.write_bytes(script)
        if key is not None:
            signed = out.with_suffix(".cdiff")
            signed.write_bytes(sign_cdiff(script, new.header.version, key))
    except OSError as exc:
        raise _Fail(f"makediff: Can't write {out} ({exc.strerror})") from None
    print(f"Generated diff file {out}")
    if key is not None:
        print(f"Generated signed diff file {signed}")
    return 0


# --- build ----------------------------------------------------------------------------------


def _build(args: argparse.Namespace) -> int:
    target = Path(args.build)
    name = target.name.rsplit(".", 1)[0] if "." in target.name else target.name
    key = _signing_key(args, "build") if args.private_key and not args.unsigned else None
    ext = "cvd" if key is not None else "cud"
    out = target.with_name(f"{name}.{ext}")
    sources = [Path(f) for f in args.files] or sorted(
        p for p in Path(".").iterdir() if p.is_file() and p.name.startswith(f"{name}.")
    )
    members = []
    for src in sources:
        if src.name == "COPYING" or _ext(src.name) not in _CONTAINERS + ("info",):
            members.append((src.name, _read(str(src), "build")))
    if Path("COPYING").is_file() and not any(n == "COPYING" for n, _ in members):
        members.insert(0, ("COPYING", Path("COPYING").read_bytes()))
    if not any(n != "COPYING" for n, _ in members):
        raise _Fail(f"build: No database files for {name} in the current directory")
    version = args.cvd_version
    if version is None:
        version = _next_version(Path(args.datadir or DEFAULT_DATADIR), name)
    try:
        blob = build_cvd(
            members,
            name=name,
            version=version,
            flevel=args.flevel,
            builder=args.builder,
            key=key,
        )
        out.write_bytes(blob)
    except ValueError as exc:
        raise _Fail(f"build: {exc}") from None
    except OSError as exc:
        raise _Fail(f"build: Can't write {out} ({exc.strerror})") from None
    if not args.quiet:
        print(f"Database {out} created")
    return 0


def _signing_key(args: argparse.Namespace, action: str) -> SigningKey:
    try:
        return load_signing_key(Path(args.private_key).read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise _Fail(f"{action}: Can't load the private key {args.private_key} ({exc})") from None


def _next_version(datadir: Path, name: str) -> int:
    """One past the local container's version, as sigtool does (--cvd-version otherwise)."""
    for ext in _CONTAINERS:
        path = datadir / f"{name}.{ext}"
        try:
            with path.open("rb") as handle:
                return cvd.cvd_version(handle.read(cvd.HEADER_SIZE), str(path)) + 1
        except (OSError, DatabaseError):
            continue
    raise _Fail(f"build: No local {name} database in {datadir}; give --cvd-version")
