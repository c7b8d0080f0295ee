"""Opening a TCP connection (and implicit TLS) in stages that errors can name."""

from __future__ import annotations

import socket
import ssl

from postroom.transports.errors import StageTracker

__all__ = ["open_socket"]


def open_socket(where: StageTracker, tls: ssl.SSLContext | None) -> socket.socket:
    """Connect within ``connect_timeout``; wrap in TLS when ``tls`` is given.

    The returned socket uses ``read_timeout`` for every later read.
    """
    where.stage = "connect"
    sock = socket.create_connection((where.host, where.port), timeout=where.connect_timeout)
    try:
        if tls is not None:
            where.stage = "tls"
            sock = tls.wrap_socket(sock, server_hostname=where.host)
        sock.settimeout(where.read_timeout)
    except BaseException:
        sock.close()
        raise
    where.stage = "greeting"
    return sock
