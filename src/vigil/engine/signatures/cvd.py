"""Reader for ClamAV's database containers (.cvd, .cld, .cud): header, signatures, tar members.

Pure: it takes the file's bytes and returns the members; the loader picks a parser per member.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vigil.errors import DatabaseError, SignatureError

HEADER_SIZE = 512
MAGIC = "ClamAV-VDB"
# Refuse bodies that inflate past this: it is far above what any official database inflates
# to, so a bigger body is a decompression bomb rather than a database.
MAX_TAR_SIZE = 2 * 1024**3

# Public RSA keys built into libclamav (facts taken from libclamav/dsig.c and readdb.c).
# The first signs the header MD5 of a .cvd; the second (2048-bit) signs every .info file.
_CVD_KEY_N = int(
    "118640995551645342603070001658453189751527774412027743746599405743243142607464144767361060"
    "640655844749760788890022283424922762488917565551002467771109669598189410434699034532232228"
    "621591089508178591428456220796841621637175567590476666928698770143328137383952820383197532"
    "047771780196576957695822641224262693037"
)
_CVD_KEY_E = 100001027
_INFO_KEY_N = int(
    "110888949830485454736595561066271949239289417917950476205916586974135810433227159121724968"
    "065253810558809645206184002243333205346602992339837553417406795028668299096799557343913926"
    "683783612215242053966310901051516412708572770803107343209516537005089417174191687239425078"
    "907029047027075874516216910507543078503833998653464872037984641785373922114027864813598244"
    "611972311028954150937703942166663244845939357624084685168266331921408266679234948220458053"
    "478099328484548458869717064243605586678627758760720594377033653802091016977385775154769350"
    "85469455279994113145977994084618328482151013142393373316337519977244732747977"
)
_INFO_KEY_E = 100002049

# ClamAV's base-64 digit order (not RFC 4648): a-z, A-Z, 0-9, '+', '/'.
_DSIG_DIGITS = {
    ch: value
    for value, ch in enumerate("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/")
}

# Members with one of these suffixes are loaded by ClamAV and so must match the .info index
# (readdb.h CLI_DBEXT); anything else (COPYING, the .info itself) is carried but never checked.
_DATABASE_SUFFIXES = (
    ".db", ".hdb", ".hdu", ".fp", ".mdb", ".mdu", ".hsb", ".hsu", ".sfp", ".msb", ".msu",
    ".ndb", ".ndu", ".ldb", ".ldu", ".sdb", ".zmd", ".rmd", ".pdb", ".gdb", ".wdb", ".cbc",
    ".ftm", ".cfg", ".cvd", ".cld", ".cud", ".cdb", ".cat", ".crb", ".idb", ".ioc", ".yar",
    ".yara", ".pwdb", ".ign", ".ign2", ".imp",
)  # fmt: skip

_DSIG_MAX_DIGITS = 1024

_NUMBER = re.compile(r"[0-9]{1,20}")
_SHA256_HEX = re.compile(r"[0-9A-Fa-f]{64}")
_MD5_HEX = re.compile(r"[0-9a-f]{32}")
_TAR_BLOCK = 512
_TAR_NAME_MAX = 100


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """An RSA-2048 public key trusted, besides ClamAV's own, to sign databases.

    It may make all three legacy signatures: the header DSIG over the body MD5, the ``.info``
    DSIG and the ``.cdiff`` DSIG (what ``vigil sigtool --build/--diff --private-key`` make).
    """

    n: int
    e: int
    source: str


@dataclass(frozen=True, slots=True)
class CvdHeader:
    """The colon-separated header line; ``build_time`` is kept as written (``14-58``, not ``:``)."""

    build_time: str
    version: int
    sigs: int
    flevel: int
    md5: str
    dsig: str
    builder: str
    build_secs: int | None


@dataclass(frozen=True, slots=True)
class CvdArchive:
    """A checked container: members in archive order, ``official`` False only for ``.cud``."""

    header: CvdHeader
    kind: str
    official: bool
    members: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class _InfoIndex:
    header: CvdHeader
    entries: dict[str, tuple[int, str]]  # name -> (size, lowercase sha256 hex)


def parse_cvd_header(raw: bytes, origin: str) -> CvdHeader:
    """Parse the 512-byte header; cut at NUL/newline and trailing spaces as libclamav does."""
    if len(raw) < HEADER_SIZE:
        raise DatabaseError(
            f"{origin}: truncated header ({len(raw)} bytes, a CVD header has {HEADER_SIZE})"
        )
    head = raw[:HEADER_SIZE].split(b"\0", 1)[0]
    text = head.decode("latin-1").split("\n", 1)[0].split("\r", 1)[0].rstrip(" ")
    try:
        return _parse_header_line(text)
    except ValueError as exc:
        raise DatabaseError(f"{origin}: {exc}") from None


def check_legacy_dsig(header: CvdHeader, keys: Sequence[TrustedKey] = ()) -> bool:
    """True when ``dsig`` decrypts, with ClamAV's key or one of ``keys``, to the header's MD5
    (spec §7.2)."""
    if not _MD5_HEX.fullmatch(header.md5):
        return False
    for n, e in ((_CVD_KEY_N, _CVD_KEY_E), *((k.n, k.e) for k in keys)):
        plain = _rsa_open(header.dsig, n, e, 16)
        if plain is not None and plain.hex() == header.md5:
            return True
    return False


def check_info_dsig(digest: bytes, sig: str, keys: Sequence[TrustedKey] = ()) -> bool:
    """True when ``sig`` is a valid ``.info``/``.cdiff`` DSIG over ``digest`` (a SHA-256) made
    by ClamAV's 2048-bit key or one of ``keys``."""
    return any(
        pss_verify(digest, sig, n, e)
        for n, e in ((_INFO_KEY_N, _INFO_KEY_E), *((k.n, k.e) for k in keys))
    )


def load_trusted_keys(path: str | os.PathLike[str]) -> tuple[TrustedKey, ...]:
    """RSA-2048 public keys from a PEM file, or from every ``*.pem`` file of a directory.

    This is Vigil's ``VigilTrustedKeysDirectory``: ClamAV has no such option for the legacy
    signatures, so without it only databases signed by ClamAV's key verify. A directory may
    be empty (no extra key); a missing path, an unreadable file, a file that is not a PEM
    public key, or a key that is not RSA-2048 is a DatabaseError, so a typo never silently
    drops a key. Private keys are refused: the directory must not hold signing secrets.
    """
    where = Path(path)
    try:
        if where.is_dir():
            files = sorted(p for p in where.iterdir() if p.suffix == ".pem" and p.is_file())
        elif where.exists():
            files = [where]
        else:
            raise DatabaseError(f"{where}: trusted keys directory does not exist")
        stamp = tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    except OSError as exc:
        raise DatabaseError(f"{where}: cannot read trusted keys: {exc.strerror}") from None
    return _load_keys(stamp)


_KEY_CACHE: dict[tuple[tuple[str, int, int], ...], tuple[TrustedKey, ...]] = {}


def _load_keys(stamp: tuple[tuple[str, int, int], ...]) -> tuple[TrustedKey, ...]:
    """Parse the key files named in ``stamp``; cached on names, times and sizes, because
    every container of a load (and every reload) asks again."""
    cached = _KEY_CACHE.get(stamp)
    if cached is not None:
        return cached
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    keys: list[TrustedKey] = []
    for name, _, _ in stamp:
        try:
            pem = Path(name).read_bytes()
        except OSError as exc:
            raise DatabaseError(f"{name}: cannot read trusted key: {exc.strerror}") from None
        if b"PRIVATE KEY-----" in pem:
            raise DatabaseError(f"{name}: holds a private key; trust only the public key")
        try:
            key = load_pem_public_key(pem)
        except (ValueError, TypeError):
            raise DatabaseError(f"{name}: not a PEM public key") from None
        if not isinstance(key, rsa.RSAPublicKey) or key.key_size != 2048:
            raise DatabaseError(f"{name}: a trusted key must be a 2048-bit RSA public key")
        numbers = key.public_numbers()
        keys.append(TrustedKey(n=numbers.n, e=numbers.e, source=name))
    result = tuple(keys)
    if len(_KEY_CACHE) > 16:
        _KEY_CACHE.clear()
    _KEY_CACHE[stamp] = result
    return result


def cvd_version(data_head: bytes, origin: str) -> int:
    """Version from the header alone, to choose between ``X.cvd`` and ``X.cld``."""
    return parse_cvd_header(data_head, origin).version


def read_cvd(
    data: bytes,
    origin: str,
    *,
    verify: bool = True,
    max_tar_size: int = MAX_TAR_SIZE,
    trusted_keys: str | os.PathLike[str] | Sequence[TrustedKey] | None = None,
) -> CvdArchive:
    """Check and unpack a whole container held in memory.

    With ``verify`` a ``.cvd`` must match its header MD5 and RSA signature, and the ``.info``
    of a ``.cvd``/``.cld`` must carry a valid DSIG line; ``verify=False`` skips only these
    cryptographic checks. Signatures by ClamAV's keys always verify; ``trusted_keys`` (keys,
    or a path for :func:`load_trusted_keys`) adds the user's own. The ``.info`` index (sizes,
    SHA-256, header agreement) is always enforced, as ClamAV does for all three kinds. A
    ``.cld`` header is never checked: freshclam writes it after applying a cdiff by copying the
    ``.info`` header line, whose MD5 and signature fields are placeholders, so the ``.info``
    DSIG is what protects a ``.cld``.
    """
    kind = _kind(origin)
    header = parse_cvd_header(data[:HEADER_SIZE], origin)
    keys: Sequence[TrustedKey] = ()
    if verify and trusted_keys is not None:
        if isinstance(trusted_keys, str | os.PathLike):
            keys = load_trusted_keys(trusted_keys)
        else:
            keys = trusted_keys
    body = memoryview(data)[HEADER_SIZE:]
    if verify and kind == "cvd":
        actual = hashlib.md5(body).hexdigest()
        if actual != header.md5:
            raise DatabaseError(
                f"{origin}: MD5 mismatch (header says {header.md5}, body is {actual})"
            )
        if not check_legacy_dsig(header, keys):
            raise DatabaseError(f"{origin}: digital signature verification failed")
    tar = _tar_bytes(body, origin, max_tar_size)
    members = _read_tar(tar, origin)
    _check_against_info(header, members, origin, signed=kind != "cud", verify=verify, keys=keys)
    return CvdArchive(header=header, kind=kind, official=kind != "cud", members=members)


def _kind(origin: str) -> str:
    lowered = origin.lower()
    for kind in ("cvd", "cld", "cud"):
        if lowered.endswith("." + kind):
            return kind
    raise DatabaseError(f"{origin}: not a .cvd, .cld or .cud file")


def _parse_header_line(text: str) -> CvdHeader:
    """Shared by the outer header and the copy in ``.info``; raises ValueError with a reason."""
    fields = text.split(":")
    if fields[0] != MAGIC:
        raise ValueError(f"not a CVD ({MAGIC} magic missing)")
    if len(fields) < 8:
        raise ValueError(f"header has {len(fields)} fields, expected at least 8")
    labels = ("build time", "version", "signature count", "functionality level", "MD5",
              "digital signature", "builder")  # fmt: skip
    for label, value in zip(labels, fields[1:8], strict=True):
        # libclamav's tokenizer merges empty fields, which would shift every later field.
        if not value:
            raise ValueError(f"empty {label} field")
    build_secs = None
    if len(fields) > 8 and fields[8].strip(" "):
        build_secs = _header_number(fields[8].strip(" "), "build time in seconds")
    return CvdHeader(
        build_time=fields[1],
        version=_header_number(fields[2], "version"),
        sigs=_header_number(fields[3], "signature count"),
        flevel=_header_number(fields[4], "functionality level"),
        md5=fields[5],
        dsig=fields[6],
        builder=fields[7],
        build_secs=build_secs,
    )


def _header_number(text: str, label: str) -> int:
    if not _NUMBER.fullmatch(text):
        raise ValueError(f"{label} is not a number: {text!r}")
    return int(text)


def _rsa_open(sig: str, modulus: int, exponent: int, size: int) -> bytes | None:
    """Raw RSA "decrypt" of a ClamAV base-64 signature into ``size`` big-endian bytes.

    The signature string is a little-endian number: its first character is the lowest digit.
    Returns None for a character outside the alphabet, an absurdly long string (real ones
    have at most 342 digits; the cap keeps hostile input from costing quadratic time) or a
    result wider than ``size``.
    """
    if len(sig) > _DSIG_MAX_DIGITS:
        return None
    value = 0
    for position, ch in enumerate(sig):
        digit = _DSIG_DIGITS.get(ch)
        if digit is None:
            return None
        value |= digit << (6 * position)
    plain = pow(value, exponent, modulus)
    if plain.bit_length() > 8 * size:
        return None
    return plain.to_bytes(size, "big")


def pss_verify(digest: bytes, sig: str, modulus: int, exponent: int) -> bool:
    """ClamAV's RSA-PSS-like check (dsig.c) of a ``.info``/``.cdiff`` DSIG, 2048-bit key.

    Layout of the opened block: 223 masked bytes, the 32-byte hash H, then 0xbc. The mask is
    MGF1-SHA256(H); unmasked, the block ends in 0x01 + a 32-byte salt, and H must equal
    SHA256(8 zero bytes + digest + salt).
    """
    block_len = 256 - 32 - 1
    plain = _rsa_open(sig, modulus, exponent, 256)
    if plain is None or plain[-1] != 0xBC:
        return False
    masked, expected = plain[:block_len], plain[block_len : block_len + 32]
    unmasked = bytearray(a ^ b for a, b in zip(masked, mgf1(expected, block_len), strict=True))
    unmasked[0] &= 0x7F
    marker = unmasked.find(b"\x01")
    if marker < 0 or block_len - (marker + 1) != 32:
        return False
    salt = bytes(unmasked[marker + 1 :])
    return hashlib.sha256(bytes(8) + digest + salt).digest() == expected


def mgf1(seed: bytes, length: int) -> bytes:
    """MGF1 with SHA-256 (RFC 8017 B.2.1), the mask of the DSIG scheme."""
    blocks = (length + 31) // 32
    return b"".join(hashlib.sha256(seed + i.to_bytes(4, "big")).digest() for i in range(blocks))[
        :length
    ]


def _tar_bytes(body: memoryview, origin: str, limit: int) -> bytes:
    """The body as plain tar: ClamAV treats it as uncompressed iff it starts with ``COPYING``."""
    if bytes(body[:7]) == b"COPYING":
        if len(body) > limit:
            raise DatabaseError(f"{origin}: tar body is larger than {limit} bytes")
        return bytes(body)
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip wrapper, CRC checked at the end
    try:
        tar = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise DatabaseError(f"{origin}: body is not valid gzip data ({exc})") from None
    if len(tar) > limit:
        raise DatabaseError(f"{origin}: uncompressed body is larger than {limit} bytes")
    if not inflater.eof:
        raise DatabaseError(f"{origin}: truncated gzip body")
    return tar


def _read_tar(tar: bytes, origin: str) -> tuple[tuple[str, bytes], ...]:
    """Regular-file members in order; refuses anything ClamAV's own tar reader refuses."""
    members: list[tuple[str, bytes]] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(tar), mode="r|") as archive:
            for member in archive:
                _check_member(member, origin)
                stream = archive.extractfile(member)
                members.append((member.name, stream.read() if stream is not None else b""))
            if archive.pax_headers:
                raise DatabaseError(f"{origin}: tar body uses pax extended headers")
            end = archive.offset
    except (tarfile.TarError, EOFError) as exc:
        raise DatabaseError(f"{origin}: corrupt tar body ({exc})") from None
    # tarfile quietly stops at a damaged header past the first; ClamAV stops only at a block
    # that starts with NUL, or at the end of data, so anything else is corruption.
    trailer = tar[end : end + _TAR_BLOCK]
    if trailer and (len(trailer) < _TAR_BLOCK or trailer[0] != 0):
        raise DatabaseError(f"{origin}: corrupt or truncated tar header at offset {end}")
    return tuple(members)


def _check_member(member: tarfile.TarInfo, origin: str) -> None:
    name = member.name
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        raise DatabaseError(f"{origin}: tar member {name!r} is not a regular file")
    if member.pax_headers:
        raise DatabaseError(f"{origin}: tar member {name!r} uses pax extended headers")
    if name in ("", ".", "..") or "/" in name or "\\" in name:
        raise DatabaseError(f"{origin}: tar member name {name!r} is not a plain file name")
    if len(name.encode("utf-8", "surrogateescape")) > _TAR_NAME_MAX:
        raise DatabaseError(f"{origin}: tar member name {name[:40]!r}... is too long")


def _check_against_info(
    header: CvdHeader,
    members: tuple[tuple[str, bytes], ...],
    origin: str,
    *,
    signed: bool,
    verify: bool,
    keys: Sequence[TrustedKey],
) -> None:
    """Apply the ``.info`` index: ClamAV uses the first member named ``*.info`` and needs one."""
    found = next(((n, d) for n, d in members if n.lower().endswith(".info")), None)
    if found is None:
        raise DatabaseError(f"{origin}: no .info member")
    info_name, info_data = found
    index = _parse_info(info_data, f"{origin}/{info_name}", signed=signed, verify=verify, keys=keys)
    pairs = (
        ("version", index.header.version, header.version),
        ("signature count", index.header.sigs, header.sigs),
        ("functionality level", index.header.flevel, header.flevel),
        ("build time", index.header.build_secs or 0, header.build_secs or 0),
    )
    for label, inner, outer in pairs:
        if inner != outer:
            raise DatabaseError(
                f"{origin}: {info_name} disagrees with the header on {label} ({inner} != {outer})"
            )
    for name, data in members:
        if not name.lower().endswith(_DATABASE_SUFFIXES):
            continue
        entry = index.entries.get(name)
        if entry is None:
            raise DatabaseError(f"{origin}: {name} is not listed in {info_name}")
        size, sha256 = entry
        if len(data) != size:
            raise DatabaseError(
                f"{origin}: {name} size mismatch ({info_name} says {size}, member has {len(data)})"
            )
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise DatabaseError(
                f"{origin}: {name} SHA-256 mismatch ({info_name} says {sha256}, member is {actual})"
            )


def _parse_info(
    data: bytes, where: str, *, signed: bool, verify: bool, keys: Sequence[TrustedKey]
) -> _InfoIndex:
    """Parse ``.info``: header copy, ``name:size:sha256`` lines, then ``DSIG:`` if signed.

    The DSIG covers the SHA-256 of every byte before its line. In an unsigned container
    ClamAV 1.4.6 reads a DSIG line as a malformed entry and rejects it; so do we.
    """
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    header: CvdHeader | None = None
    entries: dict[str, tuple[int, str]] = {}
    has_dsig = False
    offset = 0
    for lineno, raw in enumerate(lines, 1):
        start, offset = offset, offset + len(raw) + 1
        if signed and raw.startswith(b"DSIG:"):
            has_dsig = True
            digest = hashlib.sha256(data[:start]).digest()
            if verify and not check_info_dsig(digest, raw[5:].decode("latin-1"), keys):
                raise SignatureError(where, lineno, "digital signature verification failed")
            break  # ClamAV ignores anything after the signature
        line = raw.decode("latin-1").rstrip("\r")
        if line.startswith(MAGIC + ":"):
            if header is not None:
                raise SignatureError(where, lineno, "second ClamAV-VDB header line")
            try:
                header = _parse_header_line(line.rstrip(" "))
            except ValueError as exc:
                raise SignatureError(where, lineno, str(exc)) from None
            continue
        if header is None:
            raise SignatureError(where, lineno, "the first line must be the ClamAV-VDB header")
        if line.startswith("DSIG:"):
            raise SignatureError(where, lineno, "DSIG line in an unsigned (.cud) container")
        fields = line.split(":")
        if len(fields) != 3:
            raise SignatureError(where, lineno, f"expected name:size:sha256, got {line[:80]!r}")
        name, size, sha256 = fields
        if not _NUMBER.fullmatch(size):
            raise SignatureError(where, lineno, f"size is not a number: {size!r}")
        if not _SHA256_HEX.fullmatch(sha256):
            raise SignatureError(where, lineno, f"malformed SHA-256: {sha256!r}")
        entries.setdefault(name, (int(size), sha256.lower()))
    if header is None:
        raise DatabaseError(f"{where}: no ClamAV-VDB header line")
    if signed and verify and not has_dsig:
        raise DatabaseError(f"{where}: digital signature (DSIG line) not found")
    return _InfoIndex(header=header, entries=entries)
