"""ClamAV incremental updates (``.cdiff``): read, verify, apply and make them.

A ``.cdiff`` is ``ClamAV-Diff:<version>:<script length>:`` + a gzip-compressed script +
``:`` + a signature (ClamAV's 2048-bit key, the same scheme as a ``.info`` DSIG) over the
SHA-256 of everything before that last colon. The script edits the unpacked members of the
previous version, one file at a time:

``OPEN name`` / ``CLOSE``   select a member (created if the script only adds to it)
``ADD line``                append ``line`` at the end of the open member
``DEL n prefix``            drop line ``n`` (of the member as opened) if it starts with prefix
                            (the check is one space-free token, as in ClamAV)
``XCHG n prefix line``      replace line ``n`` (checked the same way) with ``line``
``MOVE src dst a pa b pb``  move lines ``a..b`` of ``src`` to the end of ``dst``
``UNLINK name``             delete a member

Line numbers refer to the member as it was when opened, so edits are collected and applied
on ``CLOSE``. Every failure raises :class:`SignatureError` naming the script line.
"""

from __future__ import annotations

import difflib
import hashlib
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from vigil.engine.signatures.cvd import TrustedKey, pss_verify
from vigil.errors import DatabaseError, SignatureError

__all__ = [
    "CdiffFile",
    "apply_cdiff",
    "make_cdiff",
    "parse_cdiff",
    "pss_verify",
    "script_of",
    "verify_cdiff",
]

MAGIC = b"ClamAV-Diff:"
# Official scripts are a few hundred KiB; anything inflating past this is a bomb, not an update.
MAX_SCRIPT_SIZE = 256 * 1024 * 1024
# sigtool writes the first 16 characters (up to a space) of a replaced line as its check.
_CHECK_LEN = 16
# ClamAV's public key for the cdiff footer (a fact from libclamav_rust/src/cdiff.rs); the
# signature scheme is the one of a .info DSIG, with this key instead of the .info key.
_CDIFF_KEY_N = int(
    "147839058740774670902622285165579175702545996383762035320319892141055528472696874897719757"
    "921234421858172876949519498009087915275420171156005013033947786185358648452357000415900563"
    "182301024496122174585490160893133065913885907907965158196541023207257123008223563487240112"
    "326548375032417361779077841987008344406811247270605400357546996581058950500965762267530085"
    "968816988281856524249019216687583265784620032479064709820922981067896572119054889862810783"
    "463614695244848295595608862271980919954984406766396398304635932113860550653602884223940539"
    "98134458623712540683294034953818412458362198117811990006021989844180721010947"
)
_CDIFF_KEY_E = 100002053


@dataclass(frozen=True, slots=True)
class CdiffFile:
    """A parsed ``.cdiff``: ``signed`` is the header and gzip body the signature covers."""

    version: int
    script: bytes
    signed: bytes
    dsig: str


def parse_cdiff(data: bytes, origin: str) -> CdiffFile:
    """Split a distributed ``.cdiff`` and inflate its script; no signature check here."""
    if not data.startswith(MAGIC):
        raise DatabaseError(f"{origin}: not a cdiff file (ClamAV-Diff header missing)")
    fields = data.split(b":", 3)
    if len(fields) < 4 or not fields[1].isdigit() or not fields[2].isdigit():
        raise DatabaseError(f"{origin}: malformed ClamAV-Diff header")
    version, length = int(fields[1]), int(fields[2])
    body_start = len(fields[0]) + len(fields[1]) + len(fields[2]) + 3
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        script = inflater.decompress(data[body_start:], MAX_SCRIPT_SIZE + 1)
    except zlib.error as exc:
        raise DatabaseError(f"{origin}: script is not valid gzip data ({exc})") from None
    if len(script) > MAX_SCRIPT_SIZE or not inflater.eof:
        raise DatabaseError(f"{origin}: truncated or oversized gzip script")
    if len(script) != length:
        raise DatabaseError(f"{origin}: script is {len(script)} bytes, the header says {length}")
    rest = inflater.unused_data
    signed = data[: len(data) - len(rest)]
    dsig = ""
    if rest:
        if not rest.startswith(b":"):
            raise DatabaseError(f"{origin}: garbage after the gzip script")
        dsig = rest[1:].decode("latin-1").strip()
    return CdiffFile(version=version, script=script, signed=signed, dsig=dsig)


def verify_cdiff(cdiff: CdiffFile, keys: Sequence[TrustedKey] = ()) -> bool:
    """True when the footer signature matches: ClamAV's cdiff key, or one of ``keys`` (the
    user's own, VigilTrustedKeysDirectory), over SHA-256 of header+body."""
    if not cdiff.dsig:
        return False
    digest = hashlib.sha256(cdiff.signed).digest()
    return any(
        pss_verify(digest, cdiff.dsig, n, e)
        for n, e in ((_CDIFF_KEY_N, _CDIFF_KEY_E), *((k.n, k.e) for k in keys))
    )


def script_of(script: bytes, origin: str) -> bytes:
    """The plain script text of a whole ``.cdiff``, a bare gzip stream or plain text."""
    if script.startswith(MAGIC):
        return parse_cdiff(script, origin).script
    if script.startswith(b"\x1f\x8b"):
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            text = inflater.decompress(script, MAX_SCRIPT_SIZE + 1)
        except zlib.error as exc:
            raise DatabaseError(f"{origin}: script is not valid gzip data ({exc})") from None
        if len(text) > MAX_SCRIPT_SIZE or not inflater.eof:
            raise DatabaseError(f"{origin}: truncated or oversized gzip script")
        return text
    return script


@dataclass(slots=True)
class _OpenFile:
    name: str
    lineno: int  # script line of the OPEN
    edits: dict[int, tuple[int, bytes, bytes | None]] = field(default_factory=dict)
    adds: list[bytes] = field(default_factory=list)


def _lines(data: bytes) -> list[bytes]:
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return lines


def _join(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def _member_name(raw: bytes, where: str, lineno: int) -> str:
    name = raw.decode("latin-1")
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise SignatureError(where, lineno, f"bad database name {name!r}")
    return name


def _line_number(raw: bytes, where: str, lineno: int) -> int:
    if not raw.isdigit() or len(raw) > 12 or int(raw) < 1:
        raise SignatureError(where, lineno, f"bad line number {raw.decode('latin-1')!r}")
    return int(raw)


def apply_cdiff(members: dict[str, bytes], script: bytes, origin: str) -> dict[str, bytes]:
    """Apply a cdiff script to ``members`` (name -> contents); the input is left unchanged.

    ``script`` may be a whole ``.cdiff`` (its signature is not checked here), its gzip body or
    plain text. Raises :class:`SignatureError` (a ``DatabaseError``) naming ``origin`` and the
    script line for anything that does not apply.
    """
    text = script_of(script, origin)
    result = dict(members)
    current: _OpenFile | None = None
    lineno = 0
    for lineno, raw in enumerate(text.split(b"\n"), 1):
        line = raw.rstrip(b"\r")
        if not line.strip() or line.startswith(b"#"):
            continue  # blank lines and comments (old buffer-size hints) carry no edit
        command, _, rest = line.partition(b" ")
        if command == b"OPEN":
            if current is not None:
                raise SignatureError(origin, lineno, f"OPEN while {current.name} is open")
            current = _OpenFile(_member_name(rest, origin, lineno), lineno)
        elif command == b"ADD":
            _need_open(current, "ADD", origin, lineno).adds.append(rest)
        elif command in (b"DEL", b"XCHG"):
            target = _need_open(current, command.decode(), origin, lineno)
            number, _, tail = rest.partition(b" ")
            n = _line_number(number, origin, lineno)
            if command == b"DEL":
                check, new = tail.partition(b" ")[0], None
            else:
                check, sep, new = tail.partition(b" ")
                if not sep:
                    raise SignatureError(origin, lineno, "XCHG needs a line number, check, line")
            if n in target.edits:
                raise SignatureError(origin, lineno, f"line {n} is edited twice")
            target.edits[n] = (lineno, check, new)
        elif command == b"CLOSE":
            if current is None:
                raise SignatureError(origin, lineno, "CLOSE without OPEN")
            _close(result, current, origin)
            current = None
        elif command == b"UNLINK":
            if current is not None:
                raise SignatureError(origin, lineno, f"UNLINK while {current.name} is open")
            name = _member_name(rest, origin, lineno)
            if name not in result:
                raise SignatureError(origin, lineno, f"UNLINK of missing database {name}")
            del result[name]
        elif command == b"MOVE":
            if current is not None:
                raise SignatureError(origin, lineno, f"MOVE while {current.name} is open")
            _move(result, rest, origin, lineno)
        else:
            shown = command.decode("latin-1")[:40]
            raise SignatureError(origin, lineno, f"unknown command {shown!r}")
    if current is not None:
        raise SignatureError(origin, current.lineno, f"{current.name} is never closed")
    return result


def _need_open(current: _OpenFile | None, command: str, where: str, lineno: int) -> _OpenFile:
    if current is None:
        raise SignatureError(where, lineno, f"{command} without an open database")
    return current


def _check_line(lines: list[bytes], n: int, check: bytes, name: str, where: str, at: int) -> None:
    if n > len(lines):
        raise SignatureError(where, at, f"{name} has no line {n} (it has {len(lines)})")
    if not lines[n - 1].rstrip(b"\r").startswith(check):
        shown = lines[n - 1][:40].decode("latin-1")
        raise SignatureError(where, at, f"{name} line {n} is {shown!r}, not the expected one")


def _close(result: dict[str, bytes], target: _OpenFile, where: str) -> None:
    """Apply the collected edits of one member, then its appended lines."""
    if target.name not in result and target.edits:
        at = min(at for at, _, _ in target.edits.values())
        raise SignatureError(where, at, f"{target.name} does not exist")
    lines = _lines(result.get(target.name, b""))
    for n, (at, check, _) in sorted(target.edits.items()):
        _check_line(lines, n, check, target.name, where, at)
    out: list[bytes] = []
    for index, line in enumerate(lines, 1):
        edit = target.edits.get(index)
        if edit is None:
            out.append(line)
        elif edit[2] is not None:
            out.append(edit[2])
    out.extend(target.adds)
    result[target.name] = _join(out)


def _move(result: dict[str, bytes], args: bytes, where: str, lineno: int) -> None:
    parts = args.split(b" ")
    if len(parts) != 6:
        raise SignatureError(where, lineno, "MOVE needs src dst start check end check")
    src = _member_name(parts[0], where, lineno)
    dst = _member_name(parts[1], where, lineno)
    start = _line_number(parts[2], where, lineno)
    end = _line_number(parts[4], where, lineno)
    if src == dst or end < start:
        raise SignatureError(where, lineno, "MOVE needs two databases and start <= end")
    if src not in result:
        raise SignatureError(where, lineno, f"{src} does not exist")
    lines = _lines(result[src])
    _check_line(lines, start, parts[3], src, where, lineno)
    _check_line(lines, end, parts[5], src, where, lineno)
    moved = lines[start - 1 : end]
    result[src] = _join(lines[: start - 1] + lines[end:])
    result[dst] = _join(_lines(result.get(dst, b"")) + moved)


def _check_token(line: bytes) -> bytes:
    return line[:_CHECK_LEN].split(b" ", 1)[0]


def make_cdiff(old: dict[str, bytes], new: dict[str, bytes]) -> bytes:
    """A plain-text script that turns ``old`` members into ``new`` ones (``apply_cdiff``).

    Only appends can be expressed mid-file, so aligned lines are kept, changed ones become
    XCHG, removed ones DEL, and from the first insertion that is not at the end onwards the
    old lines are exchanged position by position.
    """
    out: list[bytes] = []
    for name, data in new.items():
        before = old.get(name)
        if before == data:
            continue
        edits = _file_edits(_lines(before or b""), _lines(data))
        if edits:
            out.append(b"OPEN " + name.encode("latin-1"))
            out.extend(edits)
            out.append(b"CLOSE")
    for name in old:
        if name not in new:
            out.append(b"UNLINK " + name.encode("latin-1"))
    return _join(out)


def _file_edits(old: list[bytes], new: list[bytes]) -> list[bytes]:
    edits: list[bytes] = []
    i = j = 0
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            i, j = i2, j2
            continue
        if tag == "insert" and i1 < len(old):
            break  # cannot insert mid-file: fall back to positional edits from here
        for k in range(min(i2 - i1, j2 - j1)):
            n = i1 + k + 1
            edits.append(b"XCHG %d %s %s" % (n, _check_token(old[n - 1]), new[j1 + k]))
        for n in range(i1 + (j2 - j1) + 1, i2 + 1):
            edits.append(b"DEL %d %s" % (n, _check_token(old[n - 1])))
        if tag == "insert" or j2 - j1 > i2 - i1:
            if i2 < len(old):
                i, j = i2, j1 + (i2 - i1)
                break
            edits.extend(b"ADD " + line for line in new[j1 + (i2 - i1) : j2])
        i, j = i2, j2
    else:
        return edits
    # Positional tail: exchange old[i:] with new[j:], then delete or append the surplus.
    for k in range(i, len(old)):
        src = j + (k - i)
        if src < len(new):
            if old[k] != new[src]:
                edits.append(b"XCHG %d %s %s" % (k + 1, _check_token(old[k]), new[src]))
        else:
            edits.append(b"DEL %d %s" % (k + 1, _check_token(old[k])))
    edits.extend(b"ADD " + line for line in new[j + len(old) - i :])
    return edits
