"""The bot file's format as JSON Schema, made from the same tables the checks use (``postroom bot schema``)."""

from __future__ import annotations

from typing import Any

from postroom.runner.definition import STEP_KINDS, OptionSpec

__all__ = ["bot_schema"]

_TYPES: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "template": {"type": "string", "description": "text with {field} placeholders"},
    "bool": {"type": "boolean"},
    "int": {"type": "integer", "minimum": 0},
    "strings": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]},
    "duration": {"oneOf": [{"type": "number"}, {"type": "string", "pattern": r"^\d+(\.\d+)?(ms|s|m|h|d)?$"}]},
}
_DURATION = _TYPES["duration"]


def _option(spec: OptionSpec) -> dict[str, Any]:
    found = dict(_TYPES.get(spec.kind, {"enum": list(spec.choices)}))
    found["description"] = spec.doc + (f" (default: {spec.default!r})" if spec.default is not None else "")
    return found


def _step(kind: str) -> dict[str, Any]:
    shorthand, options = STEP_KINDS[kind]
    body: dict[str, Any] = {
        "type": "object",
        "properties": {name: _option(spec) for name, spec in options.items()},
        "required": [name for name, spec in options.items() if spec.required],
        "additionalProperties": False,
    }
    choices: list[dict[str, Any]] = [body]
    if shorthand is not None:
        choices.append(_option(options[shorthand]))
    if not options:
        choices.append({"type": ["boolean", "null"]})
    return {
        "type": "object",
        "properties": {kind: {"oneOf": choices}},
        "required": [kind],
        "additionalProperties": False,
    }


def bot_schema() -> dict[str, Any]:
    """The JSON Schema of a bot file."""
    session = {
        "oneOf": [
            {"type": "string", "description": "a profile's name"},
            {"type": "object", "properties": {"profile": {"type": "string"}}, "required": ["profile"]},
            {"type": "object", "properties": {"embedded": {"const": "sandbox"}}, "required": ["embedded"]},
            {
                "type": "object",
                "description": "inline settings, as `postroom profiles show` prints them; secrets as references",
                "required": ["protocol", "auth"],
            },
        ]
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "postroom bot",
        "type": "object",
        "required": ["bot", "loop", "steps"],
        "additionalProperties": False,
        "properties": {
            "bot": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"},
            "session": session,
            "sessions": {"type": "array", "items": {"allOf": [session, {"required": ["name"]}]}},
            "loop": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "folder": {"type": "string"},
                    "include_subfolders": {"type": "boolean"},
                    "status": {"enum": ["all", "read", "unread"]},
                    "subject": {"type": "string"},
                    "sender": _TYPES["strings"],
                    "since": {"type": "string", "format": "date"},
                    "before": {"type": "string", "format": "date"},
                    "regex": {"type": "boolean"},
                    "case_sensitive": {"type": "boolean"},
                    "order": {"enum": ["newest", "oldest"]},
                    "limit": {"type": "integer", "minimum": 1},
                },
            },
            "steps": {"type": "array", "minItems": 1, "items": {"oneOf": [_step(kind) for kind in STEP_KINDS]}},
            "on_failure": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "retries": {"type": "integer", "minimum": 0, "maximum": 100},
                    "backoff": _DURATION,
                    "max_backoff": _DURATION,
                    "then": {"enum": ["leave", "move"]},
                    "folder": {"type": "string"},
                },
            },
            "ledger": {"type": "string", "description": "a SQLAlchemy URL; default: SQLite in the data folder"},
            "workers": {"type": "integer", "minimum": 1, "maximum": 64},
            "watch": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "reconcile": _DURATION,
                    "idle": {"type": "boolean"},
                    "idle_restart": _DURATION,
                    "noop": _DURATION,
                },
            },
            "claim_lease": _DURATION,
            "sent_copy": {"enum": ["auto", "server", "client", "none"]},
            "broker": {"type": "string"},
            "metrics_port": {"type": "integer", "minimum": 0, "maximum": 65535},
            "durability": {"enum": ["crash", "power"]},
            "server_claim": {"type": "boolean"},
        },
    }
