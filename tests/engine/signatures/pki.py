"""A throw-away PKI for ``.sign`` tests: root CA, intermediate CA, signer (EC keys: fast)."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from functools import cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

START = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
END = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Pki:
    root: x509.Certificate
    intermediate: x509.Certificate
    signer: x509.Certificate
    signer_key: ec.EllipticCurvePrivateKey

    def root_pem(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.PEM)

    def pkcs7(self, data: bytes, *, with_intermediate: bool = True) -> bytes:
        builder = (
            pkcs7.PKCS7SignatureBuilder()
            .set_data(data)
            .add_signer(self.signer, self.signer_key, hashes.SHA256())
        )
        if with_intermediate:
            builder = builder.add_certificate(self.intermediate)
        options = [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary]
        return builder.sign(serialization.Encoding.DER, options)

    def sign_file(self, data: bytes, *, min_fl: int = 0, max_fl: str = "") -> bytes:
        blob = base64.b64encode(self.pkcs7(data)).decode()
        return f"#clamsign-1.0\n{min_fl}:{max_fl}:pkcs7-pem:{blob}\n".encode()


def _cert(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(START)
        .not_valid_after(END)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )


@cache
def make_pki(tag: str = "Test") -> Pki:
    """A root, an intermediate it signed, and a signer the intermediate signed."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _cert(f"{tag} Root", root_key, None, root_key, ca=True)
    mid_key = ec.generate_private_key(ec.SECP256R1())
    mid = _cert(f"{tag} Intermediate", mid_key, root, root_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    signer = _cert(f"{tag} Signer", key, mid, mid_key, ca=False)
    return Pki(root, mid, signer, key)
