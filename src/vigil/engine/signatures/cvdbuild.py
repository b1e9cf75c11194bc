"""Build ClamAV database containers (``.cvd`` signed, ``.cud`` unsigned) for private mirrors.

The layout is what :func:`vigil.engine.signatures.cvd.read_cvd` checks: a 512-byte header,
then a gzip-compressed ustar archive holding ``COPYING``, ``<name>.info`` (header copy, then
``file:size:sha256`` per database, then ``DSIG:`` when signed) and the database files.

Without a key the result is a ``.cud``: its header carries placeholders and no ``.info``
DSIG, and Vigil (like ClamAV) loads it as unofficial. With a 2048-bit RSA private key (PEM)
both signatures are made the way ClamAV's checks expect; such a ``.cvd`` verifies only
against the matching public key, never against ClamAV's built-in one.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

from vigil.engine.signatures.cvd import _DATABASE_SUFFIXES, HEADER_SIZE, MAGIC, mgf1

__all__ = [
    "SigningKey",
    "build_cvd",
    "count_signatures",
    "load_signing_key",
    "make_dsig",
    "sign_cdiff",
]

_DIGITS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"
_BLOCK = 256  # a 2048-bit modulus: the .info DSIG scheme is defined for this size only
_DEFAULT_COPYING = b"Built with Vigil's sigtool; see the signature authors for terms.\n"
# Files whose lines are not signatures, so they do not count toward the header's total.
_NOT_COUNTED = (".info", ".cfg", ".ign", ".ign2", ".ftm", ".fp", ".sfp", ".wdb", ".pdb")


@dataclass(frozen=True, slots=True)
class SigningKey:
    """The private half of an RSA key: modulus ``n`` and private exponent ``d``."""

    n: int
    d: int


def load_signing_key(pem: bytes) -> SigningKey:
    """Read a 2048-bit RSA private key in PEM form (ValueError on anything else)."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size != 8 * _BLOCK:
        raise ValueError("the signing key must be a 2048-bit RSA private key")
    numbers = key.private_numbers()
    return SigningKey(n=numbers.public_numbers.n, d=numbers.d)


def _encode(value: int) -> str:
    """ClamAV's base-64 number: little-endian digits, first character least significant."""
    digits = []
    while value:
        digits.append(_DIGITS[value & 63])
        value >>= 6
    return "".join(digits) or "a"


def make_dsig(digest: bytes, key: SigningKey) -> str:
    """Sign a SHA-256 digest in the ``.info``/cdiff DSIG scheme (inverse of ``pss_verify``)."""
    salt = os.urandom(32)
    hashed = hashlib.sha256(bytes(8) + digest + salt).digest()
    block_len = _BLOCK - 32 - 1
    db = bytes(block_len - 33) + b"\x01" + salt
    masked = bytearray(a ^ b for a, b in zip(db, mgf1(hashed, block_len), strict=True))
    masked[0] &= 0x7F
    encoded = int.from_bytes(bytes(masked) + hashed + b"\xbc", "big")
    return _encode(pow(encoded, key.d, key.n))


def count_signatures(members: Sequence[tuple[str, bytes]]) -> int:
    """Signature lines (not comments or blanks) in the database members."""
    total = 0
    for name, data in members:
        lowered = name.lower()
        if not lowered.endswith(_DATABASE_SUFFIXES) or lowered.endswith(_NOT_COUNTED):
            continue
        total += sum(1 for line in data.splitlines() if line.strip() and not line.startswith(b"#"))
    return total


def _tar(members: Sequence[tuple[str, bytes]], mtime: int) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), mtime, 0o644
            info.uname = info.gname = "root"
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def build_cvd(
    members: Sequence[tuple[str, bytes]],
    *,
    name: str,
    version: int,
    flevel: int,
    builder: str,
    key: SigningKey | None = None,
    build_secs: int | None = None,
) -> bytes:
    """A whole container for ``name`` (e.g. ``daily``) from ``(file name, bytes)`` members.

    ``COPYING`` goes first (a short one is supplied if missing); any ``.info`` given is
    replaced by a fresh index. Signed when ``key`` is given (write it as ``.cvd``), else
    unsigned (write it as ``.cud``).
    """
    if ":" in builder or not builder:
        raise ValueError("the builder name must be non-empty and free of ':'")
    secs = int(time.time()) if build_secs is None else build_secs
    stamp = time.strftime("%d %b %Y %H-%M +0000", time.gmtime(secs))
    files = [(n, d) for n, d in members if n != "COPYING" and not n.lower().endswith(".info")]
    copying = next((d for n, d in members if n == "COPYING"), _DEFAULT_COPYING)
    sigs = count_signatures(files)
    head = f"{MAGIC}:{stamp}:{version}:{sigs}:{flevel}"
    info = f"{head}:X:X:{builder}:{secs}\n".encode()
    for fname, data in files:
        if fname.lower().endswith(_DATABASE_SUFFIXES):
            info += f"{fname}:{len(data)}:{hashlib.sha256(data).hexdigest()}\n".encode()
    if key is not None:
        info += f"DSIG:{make_dsig(hashlib.sha256(info).digest(), key)}\n".encode()
    tar = _tar([("COPYING", copying), (f"{name}.info", info), *files], secs)
    body = gzip.compress(tar, mtime=0)
    md5 = hashlib.md5(body, usedforsecurity=False).hexdigest()
    dsig = _encode(pow(int(md5, 16), key.d, key.n)) if key is not None else "X"
    header = f"{head}:{md5}:{dsig}:{builder}:{secs}".encode()
    if len(header) > HEADER_SIZE:
        raise ValueError("the CVD header does not fit in 512 bytes")
    return header.ljust(HEADER_SIZE, b" ") + body


def sign_cdiff(script: bytes, version: int, key: SigningKey) -> bytes:
    """A distributable ``NAME-VERSION.cdiff`` from a plain script, signed with ``key``.

    The layout :func:`vigil.engine.signatures.cdiff.parse_cdiff` reads: the ``ClamAV-Diff``
    header with the version and the script length, the gzip script, ``:`` and the DSIG over
    the SHA-256 of everything before that colon.
    """
    signed = f"ClamAV-Diff:{version}:{len(script)}:".encode() + gzip.compress(script, mtime=0)
    return signed + b":" + make_dsig(hashlib.sha256(signed).digest(), key).encode()
