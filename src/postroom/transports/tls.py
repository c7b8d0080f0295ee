"""The one place TLS contexts are made: verified by default, TLS 1.2 at least."""

from __future__ import annotations

import ssl
from pathlib import Path

__all__ = ["client_context", "describe_tls"]


def client_context(*, verify: bool = True, ca_file: Path | str | None = None) -> ssl.SSLContext:
    """A client context. The stdlib's own defaults for IMAP/POP/SMTP do *not* verify; this does."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def describe_tls(sock: object) -> tuple[str | None, str | None]:
    """(TLS version, cipher name) of a socket, or (None, None) when it is not TLS."""
    if isinstance(sock, ssl.SSLSocket):
        cipher = sock.cipher()
        return sock.version(), cipher[0] if cipher else None
    return None, None
