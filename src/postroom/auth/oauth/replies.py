"""How an authorization server's error reply reads in a postroom message."""

from __future__ import annotations

from postroom.credentials import redact

__all__ = ["error_detail"]


def error_detail(error: str, description: str | None) -> str:
    """``error: description`` on one line, bounded, secrets scrubbed (``error`` alone without a description)."""
    text = redact(" ".join((description or "").split()))[:400]
    return f"{error}: {text}" if text else error
