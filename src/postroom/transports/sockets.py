"""Opening a TCP connection (and implicit TLS) in stages that errors can name."""

from __future__ import annotations

import contextlib
import socket
import ssl

from postroom.transports.errors import StageTracker

__all__ = ["KEEPALIVE", "keep_alive", "open_socket"]


#: TCP keepalive: probe after 60 s of silence, every 15 s, give up after 4 — so a connection a NAT or firewall
#: dropped silently (an IDLE waiting for pushes) is found dead in about two minutes, not hours.
KEEPALIVE = {"TCP_KEEPIDLE": 60, "TCP_KEEPINTVL": 15, "TCP_KEEPCNT": 4}


def keep_alive(sock: socket.socket) -> None:
    """Turn TCP keepalive on, with :data:`KEEPALIVE`'s timing where the OS lets it be set."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in KEEPALIVE.items():
        option = getattr(socket, name, None)
        if option is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, option, value)


def open_socket(where: StageTracker, tls: ssl.SSLContext | None) -> socket.socket:
    """Connect within ``connect_timeout``; wrap in TLS when ``tls`` is given.

    The returned socket uses ``read_timeout`` for every later read.
    """
    where.stage = "connect"
    sock = socket.create_connection((where.host, where.port), timeout=where.connect_timeout)
    try:
        keep_alive(sock)
        if tls is not None:
            where.stage = "tls"
            sock = tls.wrap_socket(sock, server_hostname=where.host)
        sock.settimeout(where.read_timeout)
    except BaseException:
        sock.close()
        raise
    where.stage = "greeting"
    return sock
