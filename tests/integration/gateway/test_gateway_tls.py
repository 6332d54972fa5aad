"""DICOM TLS: a certificate chain made here with `cryptography`, dcmtk's echoscu as the TLS client."""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from duet.local.stack import free_ports

from .conftest import require_binary

pytestmark = pytest.mark.integration


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path


def make_pki(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("duet test CA"))
        .issuer_name(_name("duet test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": folder / "ca.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for role in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(f"duet {role}"))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
        )
        if role == "server":
            import ipaddress

            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        certificate = builder.sign(ca_key, hashes.SHA256())
        paths[f"{role}_cert"] = folder / f"{role}.pem"
        paths[f"{role}_cert"].write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        paths[f"{role}_key"] = _write_key(key, folder / f"{role}.key")
    return paths


def test_tls_echo_and_plain_association_refused_on_the_tls_port(gateway_factory, tmp_path: Path):
    pki = make_pki(tmp_path)
    (tls_port,) = free_ports(1)
    gateway = gateway_factory(
        ALLOWED_CALLING_AES="MODALITY",
        TLS_PORT=tls_port,
        TLS_CERT_FILE=pki["server_cert"],
        TLS_KEY_FILE=pki["server_key"],
        TLS_CA_FILE=pki["ca"],
    ).start()
    echoscu = require_binary("echoscu", "dcmtk")
    base = [echoscu, "-aet", "MODALITY", "-aec", "DUET", "-to", "10"]
    tls = ["+tls", str(pki["client_key"]), str(pki["client_cert"]), "+cf", str(pki["ca"])]
    secured = subprocess.run(
        [*base, *tls, "127.0.0.1", str(tls_port)], check=False, capture_output=True, text=True, timeout=60
    )
    assert secured.returncode == 0, secured.stdout + secured.stderr
    plain = subprocess.run(
        [*base, "127.0.0.1", str(tls_port)], check=False, capture_output=True, text=True, timeout=60
    )
    assert plain.returncode != 0
    # Without a client certificate the CA does not vouch for, the TLS handshake fails.
    anonymous = subprocess.run(
        [*base, "+tla", "+cf", str(pki["ca"]), "127.0.0.1", str(tls_port)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert anonymous.returncode != 0
    # The plain port still answers plain associations.
    assert subprocess.run([*base, "127.0.0.1", str(gateway.port)], check=False, timeout=60).returncode == 0
