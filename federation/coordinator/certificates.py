"""The coordinator's TLS material: a private CA and a server certificate.

Sites verify the SuperLink against ``ca.crt`` (hospital IT copies it beside
``node.toml``); the server certificate names every address the sites dial, with
``IP:127.0.0.1`` and ``DNS:localhost`` always included so loopback works.
Private keys are written with mode 0600 and never leave the coordinator's folder.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOOPBACK_NAMES = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class TlsFiles:
    """Where the coordinator's certificates lie."""

    ca_certificate: Path
    ca_key: Path
    server_certificate: Path
    server_key: Path

    @classmethod
    def in_folder(cls, folder: Path) -> TlsFiles:
        return cls(
            ca_certificate=folder / "ca.crt",
            ca_key=folder / "ca.key",
            server_certificate=folder / "server.pem",
            server_key=folder / "server.key",
        )

    def exist(self) -> bool:
        return all(p.is_file() for p in (self.ca_certificate, self.ca_key, self.server_certificate, self.server_key))


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` readable by its owner only, before any byte is written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def subject_alternative_names(hosts: list[str]) -> x509.SubjectAlternativeName:
    """IP addresses as ``IP:`` entries and names as ``DNS:`` entries, loopback included."""
    entries: list[x509.GeneralName] = []
    for host in dict.fromkeys([*hosts, *LOOPBACK_NAMES]):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            entries.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(entries)


def create_tls_files(
    *, folder: Path, hosts: list[str], days: int = 825, name: str = "workbench coordinator"
) -> TlsFiles:
    """A new CA and a server certificate for ``hosts``, written into ``folder``.

    Refuses to overwrite existing files: a new CA would lock out every site that
    already trusts the old one.
    """
    files = TlsFiles.in_folder(folder)
    existing = [
        p for p in (files.ca_certificate, files.ca_key, files.server_certificate, files.server_key) if p.exists()
    ]
    if existing:
        raise FileExistsError(
            f"TLS files already exist in {folder} ({', '.join(p.name for p in existing)}); a new CA would "
            "lock out every site that trusts the current one. Use another folder, or delete them on purpose."
        )
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
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
        .sign(ca_key, hashes.SHA384())
    )
    server_key = ec.generate_private_key(ec.SECP384R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0] if hosts else LOOPBACK_NAMES[0])]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(subject_alternative_names(hosts), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA384())
    )
    folder.mkdir(parents=True, exist_ok=True)
    _write_private(files.ca_key, _key_pem(ca_key))
    _write_private(files.server_key, _key_pem(server_key))
    files.ca_certificate.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.server_certificate.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    return files


def certificate_hosts(path: Path) -> list[str]:
    """The addresses a server certificate is valid for (its SANs)."""
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(v) for v in sans.get_values_for_type(x509.IPAddress)] + list(sans.get_values_for_type(x509.DNSName))


def issue_server_certificate(
    *, ca: TlsFiles, hosts: list[str], certificate: Path, key: Path, days: int = 825, name: str = "study service"
) -> None:
    """A further server certificate signed by the coordinator's CA (``ca``), for ``hosts``
    (loopback included), written to ``certificate`` and ``key`` (0600): a second TLS
    service at the coordinator (the study service) gets a key of its own, and everyone
    who trusts ``ca.crt`` trusts it."""
    ca_key = serialization.load_pem_private_key(ca.ca_key.read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(ca.ca_certificate.read_bytes())
    now = dt.datetime.now(dt.UTC)
    server_key = ec.generate_private_key(ec.SECP384R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} {hosts[0] if hosts else ''}")]))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(subject_alternative_names(hosts), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA384())
    )
    _write_private(key, _key_pem(server_key))
    certificate.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
