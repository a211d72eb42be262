"""Local test CA for the simulator's HTTPS: created on first use, kept in a directory.

DIR/ca.pem is the certificate clients trust (DIR/ca.der is the same in DER,
which MicroPython's ssl wants for cadata=); DIR/ca-key.pem signs server
certificates; DIR/server.pem and DIR/server-key.pem are what the server
presents, valid for 127.0.0.1, ::1, localhost and any extra names asked
for (a board on the LAN needs the host's LAN address). The CA is kept for
as long as it is valid, so clients keep trusting the same ca.pem; the
server certificate is reissued when a name is missing or it nears expiry.
Keys are ECDSA P-256 (cheap handshakes on an ESP32) and are written 0600.
This CA is for tests only: it must never be installed as a system trust
anchor, and nothing here ever prints or logs a private key.
"""
import datetime
import ipaddress
import os
import ssl
import tempfile
from typing import NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_NAMES = ("127.0.0.1", "::1", "localhost")
CA_DAYS = 3650
SERVER_DAYS = 397
RENEW_BEFORE_DAYS = 30
BACKDATE = datetime.timedelta(days=1)  # tolerate a client clock slightly behind


class TlsFiles(NamedTuple):
    """Paths of the CA certificate (PEM and DER) and of the server's certificate and key."""

    ca_cert: str
    ca_der: str
    server_cert: str
    server_key: str


def _write_atomically(path, data, private):
    directory = os.path.dirname(path)
    handle, temp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        if private:
            os.fchmod(handle, 0o600)
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def _key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _general_name(name):
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _new_ca(now):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Within for MicroPython"),
        x509.NameAttribute(NameOID.COMMON_NAME, "Within gateway simulator test CA"),
    ])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _new_server(ca_key, ca_cert, names, now):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gatewaysim")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + datetime.timedelta(days=SERVER_DAYS), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _load(path, loader):
    try:
        with open(path, "rb") as handle:
            return loader(handle.read())
    except (OSError, ValueError):
        return None


def _cert_names(cert):
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    names = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    return names | set(sans.get_values_for_type(x509.DNSName))


def _issued_by(cert, ca_cert):
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _canonical(name):
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name.lower()


def ensure_credentials(directory, extra_names=(), now=None):
    """Create or reuse the CA and a server certificate in `directory`; returns TlsFiles."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    names = []
    for name in DEFAULT_NAMES + tuple(extra_names):
        name = _canonical(name)
        if name not in names:
            names.append(name)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    files = TlsFiles(os.path.join(directory, "ca.pem"), os.path.join(directory, "ca.der"),
                     os.path.join(directory, "server.pem"), os.path.join(directory, "server-key.pem"))
    ca_key_path = os.path.join(directory, "ca-key.pem")
    renew_at = now + datetime.timedelta(days=RENEW_BEFORE_DAYS)

    ca_cert = _load(files.ca_cert, x509.load_pem_x509_certificate)
    ca_key = _load(ca_key_path, lambda data: serialization.load_pem_private_key(data, None))
    if (ca_cert is None or ca_key is None or ca_cert.not_valid_after_utc <= renew_at
            or ca_cert.public_key() != ca_key.public_key()):
        ca_key, ca_cert = _new_ca(now)
        _write_atomically(ca_key_path, _key_pem(ca_key), private=True)
        _write_atomically(files.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), private=False)
        server_cert = None
        new_ca = True
    else:
        new_ca = False
        server_cert = _load(files.server_cert, x509.load_pem_x509_certificate)
    if new_ca or not os.path.exists(files.ca_der):
        _write_atomically(files.ca_der, ca_cert.public_bytes(serialization.Encoding.DER), private=False)
    server_key = _load(files.server_key, lambda data: serialization.load_pem_private_key(data, None))
    if (server_cert is None or server_key is None
            or not _issued_by(server_cert, ca_cert)
            or server_cert.public_key() != server_key.public_key()
            or server_cert.not_valid_after_utc <= renew_at
            or not set(names) <= _cert_names(server_cert)):
        server_key, server_cert = _new_server(ca_key, ca_cert, names, now)
        _write_atomically(files.server_key, _key_pem(server_key), private=True)
        _write_atomically(files.server_cert, server_cert.public_bytes(serialization.Encoding.PEM),
                          private=False)
    return files


def server_context(files):
    """A TLS 1.2+ server context presenting the simulator's certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(files.server_cert, files.server_key)
    return context


def client_context(ca_path):
    """A verifying client context that trusts only `ca_path` (for tests and host tools)."""
    context = ssl.create_default_context(cafile=ca_path)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
