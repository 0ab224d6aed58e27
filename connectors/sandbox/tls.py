"""HTTPS for the sandboxes: a throwaway CA and a server certificate for 127.0.0.1 / localhost
(made with `cryptography`), and a mixin that serves a SandboxServer over TLS. The one way the
sandboxes and the tests stand for a tracker behind a corporate CA (`ca_bundle`), or for an
authority that must be HTTPS (Microsoft Entra ID). Used by tests and sandboxes only."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


@dataclass(frozen=True, slots=True)
class TestCA:
    """A CA and a server certificate for 127.0.0.1 / localhost, as files."""

    ca_file: Path  # trust this (ca_bundle, connection_verify)
    cert_file: Path  # the server's certificate chain
    key_file: Path

    __test__ = False  # not a pytest class

    @classmethod
    def create(cls, directory: Path | None = None) -> TestCA:
        where = Path(directory or tempfile.mkdtemp(prefix="sandbox-ca-"))
        ca_key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        ca = (
            x509.CertificateBuilder()
            .subject_name(_name("claude-nine-sync sandbox CA"))
            .issuer_name(_name("claude-nine-sync sandbox CA"))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        server = (
            x509.CertificateBuilder()
            .subject_name(_name("127.0.0.1"))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        pem = serialization.Encoding.PEM
        ca_file, cert_file, key_file = where / "ca.pem", where / "server.pem", where / "server.key"
        ca_file.write_bytes(ca.public_bytes(pem))
        cert_file.write_bytes(server.public_bytes(pem))
        key_file.write_bytes(
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        return cls(ca_file, cert_file, key_file)

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


_SHARED_CA: TestCA | None = None


def shared_ca() -> TestCA:
    """One CA per process (generating keys costs; every HTTPS sandbox can share it)."""
    global _SHARED_CA
    if _SHARED_CA is None:
        _SHARED_CA = TestCA.create()
    return _SHARED_CA


class HttpsMixin:
    """Makes a SandboxServer speak HTTPS with `self.tls` (a TestCA): the listening socket is
    wrapped after it is bound; each connection's handshake runs in its handler thread (on the
    first read), never in the accept loop."""

    tls: TestCA | None = None

    def start(self, port: int = 0) -> Any:
        started = super().start(port)  # type: ignore[misc]
        if self.tls is not None:
            server = self._server  # type: ignore[attr-defined]
            server.socket = self.tls.server_context().wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        return started

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"  # type: ignore[attr-defined]
