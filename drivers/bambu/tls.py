"""How the gateway checks a Bambu Lab printer's certificate before it sends the access code.

A printer's certificate is signed by Bambu Lab's printer CA and names the printer's serial (CN), not its address,
so ordinary host name checking against the IP fails. Two ways, both before the MQTT CONNECT carrying the access
code leaves the gateway:

- `ca_file`: the chain is verified against that CA and the name checked is the serial (sent as SNI, as Bambu Studio
  does, and matched by Python's own host name check);
- `fingerprint_sha256`: the printer's own certificate is pinned; anything else is refused after the handshake.

Only the public `ssl` API is used: an `SSLContext` that names the serial as the server, and (pinning) an
`SSLSocket` subclass set as the context's documented `sslsocket_class`.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import ssl
from pathlib import Path

from drivers.bambu.config import PrinterTls


class _PinnedSocket(ssl.SSLSocket):
    pin: bytes = b""

    def do_handshake(self, block: bool = False) -> None:
        super().do_handshake(block)
        der = self.getpeercert(binary_form=True) or b""
        if not hmac.compare_digest(hashlib.sha256(der).digest(), self.pin):
            got = hashlib.sha256(der).hexdigest()
            err = ssl.SSLCertVerificationError(
                f"certificate fingerprint mismatch: the printer's certificate has SHA-256 {got}, not the pinned one")
            err.verify_message = err.args[0]
            raise err


class PrinterContext(ssl.SSLContext):
    """A client context that always names `server_name` (the printer's serial) as the server it expects."""

    server_name: str = ""

    def wrap_socket(self, sock: socket.socket, server_side: bool = False, do_handshake_on_connect: bool = True,
                    suppress_ragged_eofs: bool = True, server_hostname: str | bytes | None = None,
                    session: ssl.SSLSession | None = None) -> ssl.SSLSocket:
        return super().wrap_socket(sock, server_side, do_handshake_on_connect, suppress_ragged_eofs,
                                   self.server_name, session)


def printer_context(tls: PrinterTls, serial: str) -> PrinterContext:
    """The TLS context for one printer; raises OSError / ssl.SSLError when the CA file cannot be read."""
    ctx = PrinterContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.server_name = serial
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.ca_file is not None:
        ctx.load_verify_locations(cafile=str(Path(tls.ca_file).expanduser()))
        # Bambu Lab's printer CA lacks the key usage extension that strict X.509 checking (default from Python
        # 3.13) demands; every other check stays on
        ctx.verify_flags &= ~ssl.VERIFY_X509_STRICT
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx
    assert tls.fingerprint_sha256 is not None
    # the pin replaces chain and name checks: exactly this certificate and no other
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    pinned = type("PinnedSocket", (_PinnedSocket,), {"pin": bytes.fromhex(tls.fingerprint_sha256)})
    ctx.sslsocket_class = pinned
    return ctx
