"""Application certificates, the trust directory, and applying a machine's security settings to a client.

Server certificates are checked against the trust directory before any secure channel is opened: a certificate
that is not there is refused (and saved under `<trust_dir>/../rejected/` so a technician can review and move
it), unless trust-on-first-use is configured, which saves it as trusted and logs that it did.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import ipaddress
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from asyncua import Client, ua
from asyncua.crypto import security_policies, uacrypto
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from drivers.opcua.config import Identity, Security
from gateway.errors import DriverUnavailable

log = logging.getLogger(__name__)

POLICIES: dict[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256_Sha256_RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}
MODES = {"Sign": ua.MessageSecurityMode.Sign, "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt}


class UntrustedServer(DriverUnavailable):
    """The server's certificate is not in the trust directory."""


@dataclass(frozen=True)
class CertFiles:
    certificate: Path
    private_key: Path
    application_uri: str


def default_application_uri(hostname: str | None = None) -> str:
    return f"urn:kartech:gateway:{hostname or socket.gethostname()}"


def make_certificate(*, common_name: str, application_uri: str, hostnames: list[str], days: int = 825,
                     key_size: int = 2048, server: bool = False) -> tuple[bytes, bytes]:
    """A self-signed OPC UA application certificate (DER) and its private key (PEM, unencrypted)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Kartech")])
    alt: list[x509.GeneralName] = [x509.UniformResourceIdentifier(application_uri)]
    for h in hostnames:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            alt.append(x509.DNSName(h))
    now = dt.datetime.now(dt.UTC)
    usage = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=True,
                                     data_encipherment=True, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, *usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.DER), key_pem


def write_certificate(out_dir: Path, *, name: str = "kartech-gateway", common_name: str | None = None,
                      application_uri: str | None = None, hostnames: list[str] | None = None, days: int = 825,
                      force: bool = False) -> CertFiles:
    """Create `<name>.der` and `<name>.key.pem` in out_dir (key readable by the owner only)."""
    host = socket.gethostname()
    uri = application_uri or default_application_uri(host)
    cert_path, key_path = out_dir / f"{name}.der", out_dir / f"{name}.key.pem"
    if not force:
        for p in (cert_path, key_path):
            if p.exists():
                raise FileExistsError(f"{p} exists; pass --force to replace it (servers trusting the old "
                                      "certificate must then trust the new one)")
    der, key_pem = make_certificate(common_name=common_name or f"Kartech gateway {host}", application_uri=uri,
                                    hostnames=hostnames or [host, "localhost", "127.0.0.1"], days=days)
    out_dir.mkdir(parents=True, exist_ok=True)
    cert_path.write_bytes(der)
    key_path.touch(mode=0o600, exist_ok=True)
    key_path.chmod(0o600)
    key_path.write_bytes(key_pem)
    return CertFiles(cert_path, key_path, uri)


def load_cert(data: bytes) -> x509.Certificate:
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def application_uri_of(cert: x509.Certificate) -> str | None:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def thumbprint(cert: x509.Certificate) -> str:
    return hashlib.sha1(cert.public_bytes(serialization.Encoding.DER), usedforsecurity=False).hexdigest()


def describe(cert: x509.Certificate) -> str:
    return f"{cert.subject.rfc4514_string()}, SHA-1 thumbprint {thumbprint(cert)}"


def trusted_thumbprints(trust_dir: Path) -> set[str]:
    out: set[str] = set()
    if not trust_dir.is_dir():
        return out
    for p in trust_dir.iterdir():
        if p.suffix.lower() in (".der", ".pem", ".crt", ".cer") and p.is_file():
            try:
                out.add(thumbprint(load_cert(p.read_bytes())))
            except ValueError:
                log.warning("ignoring %s in the trust directory: not a certificate", p)
    return out


def _file_name(cert: x509.Certificate) -> str:
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    base = str(cn[0].value) if cn else "server"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in base)[:60]
    return f"{safe}-{thumbprint(cert)[:16]}.der"


def check_server_certificate(der: bytes, security: Security, endpoint: str, who: str) -> None:
    """Raise UntrustedServer unless the certificate is in the trust directory (or trusted on first use)."""
    assert security.trust_dir is not None
    trust_dir = Path(security.trust_dir)
    cert = load_cert(der)
    if thumbprint(cert) in trusted_thumbprints(trust_dir):
        return
    if security.trust_on_first_use:
        trust_dir.mkdir(parents=True, exist_ok=True)
        target = trust_dir / _file_name(cert)
        target.write_bytes(cert.public_bytes(serialization.Encoding.DER))
        log.warning("%s: trusting the server certificate of %s on first use (%s); saved as %s", who, endpoint,
                    describe(cert), target, extra={"driver": who})
        return
    rejected = trust_dir.parent / "rejected"
    saved = ""
    try:
        rejected.mkdir(parents=True, exist_ok=True)
        target = rejected / _file_name(cert)
        target.write_bytes(cert.public_bytes(serialization.Encoding.DER))
        saved = f"; it was saved as {target} — if it is the right server, move it into {trust_dir}/"
    except OSError:
        saved = f"; if it is the right server, put its certificate into {trust_dir}/"
    raise UntrustedServer(f"server certificate of {endpoint} is not trusted ({describe(cert)}){saved}")


def _format(data: bytes) -> str:
    return "pem" if data.lstrip().startswith(b"-----BEGIN") else "der"


def _first_cert(chain: bytes) -> bytes:
    """ServerCertificate may hold a chain of DER certificates; the first is the server's own."""
    if len(chain) > 4 and chain[0] == 0x30 and chain[1] == 0x82:
        return chain[: 4 + int.from_bytes(chain[2:4], "big")]
    return chain


async def apply_security(client: Client, endpoint: str, security: Security, identity: Identity, who: str,
                         timeout_s: float, *, warn_insecure: bool = True) -> None:
    """Configure `client` for the machine's policy, mode and identity. Raises DriverUnavailable."""
    if security.policy == "None":
        if warn_insecure and not _loopback(endpoint):  # nothing crosses a network on loopback: nothing to act on
            log.warning("%s: connecting to %s with security policy None (no signing, no encryption), as "
                        "configured", who, endpoint, extra={"driver": who})
    else:
        assert security.mode is not None
        assert security.certificate is not None
        assert security.private_key is not None
        policy = POLICIES[security.policy]
        mode = MODES[security.mode]
        try:
            async with asyncio.timeout(timeout_s * 2):
                endpoints = await Client(endpoint, timeout=timeout_s).connect_and_get_server_endpoints()
        except (OSError, TimeoutError, ua.UaError) as err:
            raise DriverUnavailable(f"cannot reach {endpoint} to read its endpoints: {err or type(err).__name__}") \
                from err
        match = [e for e in endpoints if e.SecurityPolicyUri == policy.URI and e.SecurityMode == mode]
        if not match:
            offered = sorted({f"{e.SecurityPolicyUri.rpartition('#')[2]}/{e.SecurityMode.name}" for e in endpoints})
            raise DriverUnavailable(f"{endpoint} offers no endpoint with {security.policy}/{security.mode}; "
                                    f"it offers: {', '.join(offered)}")
        der = _first_cert(match[0].ServerCertificate or b"")
        if not der:
            raise DriverUnavailable(f"{endpoint} sent no server certificate for {security.policy}")
        await asyncio.to_thread(check_server_certificate, der, security, endpoint, who)
        try:
            cert_bytes = await asyncio.to_thread(Path(security.certificate).read_bytes)
            key_bytes = await asyncio.to_thread(Path(security.private_key).read_bytes)
            own = load_cert(cert_bytes)
        except (OSError, ValueError) as err:
            raise DriverUnavailable(f"cannot read the gateway certificate {security.certificate} or its key "
                                    f"{security.private_key}: {err}") from err
        client.application_uri = application_uri_of(own) or client.application_uri
        try:
            await client.set_security(
                policy, uacrypto.CertProperties(cert_bytes, _format(cert_bytes)),
                uacrypto.CertProperties(key_bytes, _format(key_bytes), password=security.private_key_password),
                server_certificate=der, mode=mode)
        except (OSError, ValueError, TypeError) as err:
            raise DriverUnavailable(f"cannot load the gateway certificate or key ({security.certificate}, "
                                    f"{security.private_key}): {err}") from err
    if identity.type == "username":
        assert identity.username is not None
        client.set_user(identity.username)
        client.set_password(identity.password or "")
    elif identity.type == "certificate":
        assert identity.certificate is not None
        assert identity.private_key is not None
        try:
            await client.load_client_certificate(identity.certificate)
            await client.load_private_key(identity.private_key)
        except (OSError, ValueError) as err:
            raise DriverUnavailable(f"cannot load the user certificate {identity.certificate}: {err}") from err


def _loopback(endpoint: str) -> bool:
    host = urlparse(endpoint).hostname or ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
