"""Modified UTF-7 for IMAP mailbox names (RFC 3501 §5.1.3)."""

from __future__ import annotations

import base64

__all__ = ["decode_mailbox", "encode_mailbox"]


def encode_mailbox(name: str) -> str:
    """``"Entwürfe"`` → ``"Entw&APw-rfe"``."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            data = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(data).decode("ascii").rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def decode_mailbox(name: str) -> str:
    """``"Entw&APw-rfe"`` → ``"Entwürfe"``; malformed sequences are kept as they are."""
    out: list[str] = []
    i = 0
    while i < len(name):
        char = name[i]
        end = name.find("-", i + 1) if char == "&" else -1
        if char != "&" or end < 0:
            out.append(char)
            i += 1
            continue
        chunk = name[i + 1 : end]
        if not chunk:
            out.append("&")
        else:
            try:
                data = base64.b64decode(chunk.replace(",", "/") + "=" * (-len(chunk) % 4))
                out.append(data.decode("utf-16-be"))
            except (ValueError, UnicodeDecodeError):
                out.append(name[i : end + 1])
        i = end + 1
    return "".join(out)
