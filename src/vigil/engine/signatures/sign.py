"""Detached ``.sign`` files (signatures.md §7.4): PKCS#7 signatures over whole database files.

A ``NAME-VERSION.cvd.sign`` (or ``.cdiff.sign``) is text: the line ``#clamsign-1.0``, then
lines ``MinFL:MaxFL:pkcs7-pem:<base64 DER PKCS#7>``. Each PKCS#7 is a detached SignedData
over the entire bytes of the ``.cvd``/``.cdiff``. A line counts only when the engine's
functionality level is within MinFL..MaxFL (an empty MaxFL has no upper bound).

Checking one line:

1. parse the SignedData (``cryptography`` loads the certificates but has no verifier for
   SignedData, so the few fields needed are read with the small DER reader below);
2. the signed attributes must carry a messageDigest equal to the hash of the file, and the
   signer's key must have signed those attributes (RSA PKCS#1 v1.5 or ECDSA);
3. the signer certificate must chain, through certificates carried in the PKCS#7, to one
   of the trusted CA certificates, every link valid at the time of the check.

The trusted CAs are never built in: ``load_trusted`` reads them from a PEM file or a
directory of ``*.crt``/``*.pem`` files (freshclam.conf ``CVDCertsDirectory``, or
``vigil update --cvdcertsdir``). ClamAV's test CA is ``verify/clamav.crt`` in its unit-test
data; the production CA ships with ClamAV 1.5 and later.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtensionOID

from vigil.engine.signatures.model import FLEVEL
from vigil.errors import DatabaseError, SignatureError

__all__ = [
    "SIGN_MAGIC",
    "SignLine",
    "check_sign_file",
    "load_trusted",
    "parse_sign_file",
    "sign_name",
    "verify_detached",
]

SIGN_MAGIC = "#clamsign-1.0"
MAX_CHAIN = 8

# DER encodings (tag and length stripped) of the object identifiers used here.
_OID_SIGNED_DATA = bytes.fromhex("2a864886f70d010702")
_OID_MESSAGE_DIGEST = bytes.fromhex("2a864886f70d010904")
_HASHES: dict[bytes, type[hashes.HashAlgorithm]] = {
    bytes.fromhex("2b0e03021a"): hashes.SHA1,
    bytes.fromhex("608648016503040201"): hashes.SHA256,
    bytes.fromhex("608648016503040202"): hashes.SHA384,
    bytes.fromhex("608648016503040203"): hashes.SHA512,
}


@dataclass(frozen=True, slots=True)
class SignLine:
    """One signature line: the FLEVEL range it applies to and its DER PKCS#7."""

    min_flevel: int
    max_flevel: int | None
    der: bytes
    lineno: int

    def applies(self, flevel: int) -> bool:
        """True when ``flevel`` is within MinFL..MaxFL."""
        return self.min_flevel <= flevel and (self.max_flevel is None or flevel <= self.max_flevel)


def sign_name(name: str, version: int, suffix: str) -> str:
    """The ``.sign`` file name for database ``name`` version ``version`` (suffix cvd/cdiff)."""
    return f"{name}-{version}.{suffix}.sign"


def parse_sign_file(data: bytes, origin: str) -> list[SignLine]:
    """The signature lines of a ``.sign`` file; SignatureError names the bad line."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise SignatureError(origin, 1, "not a text file") from None
    lines = text.splitlines()
    if not lines or lines[0].strip() != SIGN_MAGIC:
        raise SignatureError(origin, 1, f"missing {SIGN_MAGIC} header")
    result = []
    for lineno, raw in enumerate(lines[1:], start=2):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":", 3)
        if len(fields) != 4:
            raise SignatureError(origin, lineno, "expected MinFL:MaxFL:pkcs7-pem:DATA")
        low, high, kind, blob = fields
        if kind != "pkcs7-pem":
            raise SignatureError(origin, lineno, f"unknown signature type {kind!r}")
        if not low.isdigit() or (high and not high.isdigit()):
            raise SignatureError(origin, lineno, "functionality levels must be numbers")
        try:
            der = base64.b64decode(blob, validate=True)
        except (binascii.Error, ValueError):
            raise SignatureError(origin, lineno, "signature is not valid base64") from None
        result.append(SignLine(int(low), int(high) if high else None, der, lineno))
    return result


def load_trusted(path: str | os.PathLike[str]) -> list[x509.Certificate]:
    """CA certificates from a PEM file, or from every ``*.crt``/``*.pem`` in a directory."""
    where = Path(path)
    files = (
        sorted(p for p in where.iterdir() if p.suffix in (".crt", ".pem"))
        if where.is_dir()
        else [where]
    )
    certs: list[x509.Certificate] = []
    for file in files:
        try:
            certs += x509.load_pem_x509_certificates(file.read_bytes())
        except OSError as exc:
            raise DatabaseError(f"{file}: cannot read CA certificate: {exc.strerror}") from None
        except ValueError:
            raise DatabaseError(f"{file}: not a PEM certificate file") from None
    if not certs:
        raise DatabaseError(f"{where}: no CA certificates found")
    return certs


def check_sign_file(
    data: bytes,
    sign: bytes,
    trusted: list[x509.Certificate],
    origin: str,
    *,
    flevel: int = FLEVEL,
    at: dt.datetime | None = None,
) -> bool:
    """Check ``data`` against its ``.sign`` file contents ``sign``.

    True when a line for ``flevel`` verifies; False when no line applies to ``flevel`` (the
    caller then falls back to the legacy signature); SignatureError when the file is
    malformed or every applicable line fails (the reason of the last one).
    """
    lines = [s for s in parse_sign_file(sign, origin) if s.applies(flevel)]
    failure: SignatureError | None = None
    for line in lines:
        try:
            verify_detached(data, line.der, trusted, at=at)
            return True
        except DatabaseError as exc:
            failure = SignatureError(origin, line.lineno, str(exc))
    if failure is not None:
        raise failure
    return False


def verify_detached(
    data: bytes, der: bytes, trusted: list[x509.Certificate], *, at: dt.datetime | None = None
) -> x509.Certificate:
    """Verify a detached DER PKCS#7 over ``data``; returns the signer, DatabaseError if bad."""
    when = at or dt.datetime.now(dt.UTC)
    info, embedded = _signed_data(der)
    signer = _find_signer(info, embedded)
    digest_cls = _HASHES.get(info.digest_oid)
    if digest_cls is None:
        raise DatabaseError("unsupported digest algorithm")
    if info.signed_attrs is None:
        _check_key_signature(signer, info.signature, data, digest_cls())
    else:
        hasher = hashes.Hash(digest_cls())
        hasher.update(data)
        if _message_digest(info.signed_attrs) != hasher.finalize():
            raise DatabaseError("the file does not match the signed digest")
        _check_key_signature(signer, info.signature, info.signed_attrs, digest_cls())
    _check_chain(signer, embedded, trusted, when)
    return signer


def _check_key_signature(
    cert: x509.Certificate, signature: bytes, message: bytes, algorithm: hashes.HashAlgorithm
) -> None:
    key = cert.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(algorithm))
        else:
            raise DatabaseError("unsupported signer key type")
    except InvalidSignature:
        raise DatabaseError("signature does not verify with the signer's key") from None


def _check_chain(
    cert: x509.Certificate,
    embedded: list[x509.Certificate],
    trusted: list[x509.Certificate],
    when: dt.datetime,
) -> None:
    """Walk issuer links from ``cert`` up to a trusted CA, checking each link."""
    for _ in range(MAX_CHAIN):
        _check_validity(cert, when)
        if cert in trusted:
            return
        issuer = _issuer_of(cert, trusted) or _issuer_of(cert, embedded)
        if issuer is None:
            raise DatabaseError(f"no trusted issuer for {cert.subject.rfc4514_string()}")
        if issuer not in trusted and not _is_ca(issuer):
            raise DatabaseError(f"{issuer.subject.rfc4514_string()} is not a CA certificate")
        if issuer in trusted:
            _check_validity(issuer, when)
            return
        cert = issuer
    raise DatabaseError("certificate chain is too long")


def _issuer_of(cert: x509.Certificate, pool: list[x509.Certificate]) -> x509.Certificate | None:
    for candidate in pool:
        if candidate == cert or candidate.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(candidate)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            continue
        return candidate
    return None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _check_validity(cert: x509.Certificate, when: dt.datetime) -> None:
    if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        raise DatabaseError(
            f"certificate {cert.subject.rfc4514_string()} is not valid at the time of the check"
        )


# --- a minimal DER reader for SignedData -----------------------------------------------


@dataclass(frozen=True, slots=True)
class _Tlv:
    tag: int
    value: bytes
    raw: bytes  # the whole element, tag and length included


@dataclass(frozen=True, slots=True)
class _SignerInfo:
    issuer: bytes | None  # raw DER Name, or None when identified by key id
    serial: bytes | None  # raw DER INTEGER contents
    key_id: bytes | None
    digest_oid: bytes
    signed_attrs: bytes | None  # re-tagged as SET OF, the bytes the signature covers
    signature: bytes


def _read_tlv(buf: bytes, pos: int) -> tuple[_Tlv, int]:
    """One element at ``pos``; returns it and the offset after it."""
    if pos + 2 > len(buf):
        raise DatabaseError("PKCS#7 data is truncated")
    tag, first = buf[pos], buf[pos + 1]
    if tag & 0x1F == 0x1F:
        raise DatabaseError("PKCS#7 data uses an unsupported tag")
    head = pos + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or head + count > len(buf):
            raise DatabaseError("PKCS#7 data has a bad length")
        length = int.from_bytes(buf[head : head + count], "big")
        head += count
    end = head + length
    if end > len(buf):
        raise DatabaseError("PKCS#7 data is truncated")
    return _Tlv(tag, buf[head:end], buf[pos:end]), end


def _children(value: bytes) -> list[_Tlv]:
    items = []
    pos = 0
    while pos < len(value):
        item, pos = _read_tlv(value, pos)
        items.append(item)
    return items


def _expect(item: _Tlv, tag: int, what: str) -> _Tlv:
    if item.tag != tag:
        raise DatabaseError(f"PKCS#7 data: bad {what}")
    return item


def _signed_data(der: bytes) -> tuple[_SignerInfo, list[x509.Certificate]]:
    """The first SignerInfo and the certificates of a ContentInfo holding SignedData.

    RFC 5652 §5. The certificates are read one by one rather than with ``pkcs7``'s loader,
    which warns about the unsorted SET that ClamAV's signing tool writes.
    """
    content_info, end = _read_tlv(der, 0)
    if end != len(der):
        raise DatabaseError("PKCS#7 data has trailing bytes")
    outer = _children(_expect(content_info, 0x30, "ContentInfo").value)
    if len(outer) != 2 or _expect(outer[0], 0x06, "content type").value != _OID_SIGNED_DATA:
        raise DatabaseError("not a PKCS#7 SignedData")
    explicit = _children(_expect(outer[1], 0xA0, "content").value)
    if len(explicit) != 1:
        raise DatabaseError("PKCS#7 data: bad content")
    signed_data = _children(_expect(explicit[0], 0x30, "SignedData").value)
    if len(signed_data) < 4:
        raise DatabaseError("PKCS#7 data: SignedData is too short")
    encap = _children(_expect(signed_data[2], 0x30, "encapsulated content").value)
    if len(encap) != 1:
        raise DatabaseError("PKCS#7 signature is not detached")
    certs = []
    if signed_data[3].tag == 0xA0:
        for item in _children(signed_data[3].value):
            if item.tag == 0x30:
                certs.append(_load_certificate(item.raw))
    signers = _children(_expect(signed_data[-1], 0x31, "signer infos").value)
    if not signers:
        raise DatabaseError("PKCS#7 data has no signer")
    fields = _children(_expect(signers[0], 0x30, "SignerInfo").value)
    if len(fields) < 5:
        raise DatabaseError("PKCS#7 data: SignerInfo is too short")
    sid = fields[1]
    issuer = serial = key_id = None
    if sid.tag == 0x30:
        parts = _children(sid.value)
        if len(parts) != 2:
            raise DatabaseError("PKCS#7 data: bad signer identifier")
        issuer = parts[0].raw
        serial = _expect(parts[1], 0x02, "serial").value
    elif sid.tag == 0x80:
        key_id = sid.value
    else:
        raise DatabaseError("PKCS#7 data: bad signer identifier")
    digest_alg = _children(_expect(fields[2], 0x30, "digest algorithm").value)
    digest_oid = _expect(digest_alg[0], 0x06, "digest algorithm").value if digest_alg else b""
    rest = fields[3:]
    signed_attrs = None
    if rest[0].tag == 0xA0:  # [0] IMPLICIT SET OF Attribute: signed as a plain SET
        signed_attrs = b"\x31" + rest[0].raw[1:]
        rest = rest[1:]
    if len(rest) < 2:
        raise DatabaseError("PKCS#7 data: SignerInfo is too short")
    signature = _expect(rest[1], 0x04, "signature").value
    return _SignerInfo(issuer, serial, key_id, digest_oid, signed_attrs, signature), certs


def _load_certificate(der: bytes) -> x509.Certificate:
    # ClamAV's test intermediate CA has serial number 0, which cryptography accepts with a
    # deprecation warning; the warning says nothing useful to a user, so it is silenced.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        try:
            return x509.load_der_x509_certificate(der)
        except (ValueError, x509.InvalidVersion):
            raise DatabaseError("PKCS#7 data carries a bad certificate") from None


def _message_digest(signed_attrs: bytes) -> bytes:
    attrs, _ = _read_tlv(signed_attrs, 0)
    for attr in _children(attrs.value):
        parts = _children(_expect(attr, 0x30, "attribute").value)
        if len(parts) == 2 and parts[0].value == _OID_MESSAGE_DIGEST:
            values = _children(parts[1].value)
            if len(values) == 1:
                return _expect(values[0], 0x04, "message digest").value
    raise DatabaseError("PKCS#7 signed attributes have no message digest")


def _find_signer(info: _SignerInfo, certs: list[x509.Certificate]) -> x509.Certificate:
    for cert in certs:
        if info.key_id is not None:
            try:
                ski = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_KEY_IDENTIFIER)
            except x509.ExtensionNotFound:
                continue
            if isinstance(ski.value, x509.SubjectKeyIdentifier) and ski.value.digest == info.key_id:
                return cert
        elif _tbs_serial_issuer(cert) == (info.serial, info.issuer):
            return cert
    raise DatabaseError("the PKCS#7 data does not carry the signer's certificate")


def _tbs_serial_issuer(cert: x509.Certificate) -> tuple[bytes, bytes]:
    """Serial number and issuer Name exactly as encoded in the certificate.

    Compared raw, because ``serial_number`` warns about the zero serials of test CAs.
    """
    tbs, _ = _read_tlv(cert.tbs_certificate_bytes, 0)
    fields = _children(tbs.value)
    if fields and fields[0].tag == 0xA0:  # explicit version
        fields = fields[1:]
    if len(fields) < 3:
        return b"", b""
    return fields[0].value, fields[2].raw
