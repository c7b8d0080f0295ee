"""postroom's loggers: every record of a logger named ``postroom`` or ``postroom.*`` is scrubbed of
secret values when it is made, whoever made the logger (``logging.getLogger("postroom.bot")`` too)."""

from __future__ import annotations

import logging
import traceback
from typing import Any

from postroom.redaction import redact

__all__ = ["JsonLogFormatter", "RedactingFilter", "get_logger"]

#: The context a bot adds to its records (``extra=``), printed by :class:`JsonLogFormatter` when present.
CONTEXT_FIELDS = ("bot", "run", "message_key", "step")


def _scrub(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # bad arguments: logging reports it when the record is handled, as it always does
        return
    clean = redact(message)
    if clean != message:
        record.msg = clean
        record.args = None
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        # rendered now, scrubbed: a formatter uses exc_text as it finds it
        record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message (scrubbed), and a bot's context fields."""

    def format(self, record: logging.LogRecord) -> str:
        import json

        document: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                document[name] = str(value)
        if record.exc_info:
            document["error"] = redact(self.formatException(record.exc_info))
        return json.dumps(document, ensure_ascii=False)


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs secret values from every record it passes.

    postroom's own records are scrubbed already; attach one to a handler to protect other
    loggers (e.g. ``imaplib`` debug output) too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        _scrub(record)
        return True


def _is_postroom(name: str) -> bool:
    return name == "postroom" or name.startswith("postroom.")


def _install() -> None:
    """Wrap the record factory (keeping any other one installed before): a filter on a logger does
    not reach records of its children, a factory sees every record."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "postroom_scrubs", False):
        return

    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if _is_postroom(record.name):
            _scrub(record)
        return record

    make_record.postroom_scrubs = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(make_record)


_install()


def get_logger(name: str) -> logging.Logger:
    """The logger ``name`` (under ``postroom``): its records are scrubbed as every postroom record is."""
    return logging.getLogger(name)
