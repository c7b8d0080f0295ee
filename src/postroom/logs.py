"""postroom's loggers: every one scrubs secret values from what it logs."""

from __future__ import annotations

import logging

from postroom.redaction import redact

__all__ = ["RedactingFilter", "get_logger"]


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs secret values from every record it passes.

    Every postroom logger has one; attach one to a handler to protect other
    loggers (e.g. ``imaplib`` debug output) too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg = clean
            record.args = None
        return True


_filter = RedactingFilter()


def get_logger(name: str) -> logging.Logger:
    """The logger ``name`` (under ``postroom``), with the redacting filter attached.

    Filters on a parent logger do not apply to its children's records, so each
    logger gets its own.
    """
    logger = logging.getLogger(name)
    if _filter not in logger.filters:
        logger.addFilter(_filter)
    return logger
