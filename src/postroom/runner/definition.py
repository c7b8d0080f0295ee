"""A bot's definition: its sessions, its loop, its steps and what to do on failure.

Read from a YAML bot file (:func:`load_bot`) or built in Python (:class:`postroom.runner.Bot`).
Every check runs before a run starts, and an error names the field and its line::

    examples/invoice-bot.yaml: steps[1].reply.body (line 14): {amount} is not a message field

The format is documented by :data:`postroom.runner.schema.BOT_SCHEMA` (``postroom bot schema``).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from postroom.errors import ConfigError
from postroom.filters import MessageFilter
from postroom.runner.templates import check_template
from postroom.runner.yaml_lines import BotFileError, Lines, load_with_lines

__all__ = [
    "STEP_KINDS",
    "BotDefinition",
    "BotFileError",
    "FailurePolicy",
    "OptionSpec",
    "SessionSpec",
    "StepSpec",
    "WatchSpec",
    "load_bot",
    "parse_bot",
    "parse_duration",
]


@dataclass(frozen=True)
class OptionSpec:
    """One option of a step: its type, whether it is required, its default, and what it does."""

    kind: Literal["str", "bool", "int", "strings", "template", "duration", "choice"]
    doc: str
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()


_SAVE_TO_SENT = OptionSpec("bool", "keep a copy in Sent (IMAP: appended by postroom; EWS/Outlook: by the server)")

#: The steps a bot can take, their options, and which option a bare value sets (``move: Processed``).
STEP_KINDS: dict[str, tuple[str | None, dict[str, OptionSpec]]] = {
    "save_attachments": (
        "folder",
        {
            "folder": OptionSpec("template", "the folder to save into (created if missing)", required=True),
            "pattern": OptionSpec("str", "a glob on the file name, e.g. '*.pdf'"),
            "include_inline": OptionSpec("bool", "also save inline parts (images in the body)", default=False),
        },
    ),
    "save_email": (
        "folder",
        {"folder": OptionSpec("template", "the folder to save the .eml into", required=True)},
    ),
    "reply": (
        "body",
        {
            "body": OptionSpec("template", "the reply's text", required=True),
            "reply_all": OptionSpec("bool", "also to the original To and Cc", default=False),
            "quote": OptionSpec("bool", "quote the original below", default=True),
            "html": OptionSpec("bool", "the body is HTML", default=False),
            "save_to_sent": _SAVE_TO_SENT,
        },
    ),
    "forward": (
        "to",
        {
            "to": OptionSpec("strings", "recipients", required=True),
            "body": OptionSpec("template", "text above the forwarded message", default=""),
            "as_attachment": OptionSpec("bool", "attach the original as .eml", default=False),
            "save_to_sent": _SAVE_TO_SENT,
        },
    ),
    "send": (
        None,
        {
            "to": OptionSpec("strings", "recipients", required=True),
            "subject": OptionSpec("template", "the subject", required=True),
            "body": OptionSpec("template", "the text", default=""),
            "save_to_sent": _SAVE_TO_SENT,
        },
    ),
    "move": ("folder", {"folder": OptionSpec("str", "the folder to move the message to", required=True)}),
    "mark": (
        "as",
        {
            "as": OptionSpec(
                "choice", "read status or flag", required=True, choices=("read", "unread", "flagged", "unflagged")
            )
        },
    ),
    "delete": (None, {}),
    "python": (
        "call",
        {"call": OptionSpec("str", "module:function, called as function(message, context)", required=True)},
    ),
    "command": (
        "run",
        {
            "run": OptionSpec("strings", "the program and its arguments (no shell)", required=True),
            "timeout": OptionSpec("duration", "how long it may take", default=300.0),
        },
    ),
}

#: Steps that change the message itself: nothing may follow a move or delete, since the message is gone.
_ENDS_MESSAGE = {"move", "delete"}


@dataclass(frozen=True)
class StepSpec:
    """One step: its kind, its checked options, and its path in the file (``steps[2]``)."""

    kind: str
    options: Mapping[str, Any]
    path: str
    #: A Python step's function (the Python API passes it directly; a bot file names it as module:function).
    function: Callable[..., Any] | None = None

    @property
    def label(self) -> str:
        return f"{self.path}.{self.kind}"


@dataclass(frozen=True)
class FailurePolicy:
    """What happens to a message whose steps fail: tried again ``retries`` times, waiting ``backoff`` (doubling
    each time, at most ``max_backoff``), then left in place (``then="leave"``, with an alert in the log and in
    ``postroom bot status``) or moved to ``folder`` (``then="move"``)."""

    retries: int = 3
    backoff: float = 30.0
    max_backoff: float = 3600.0
    then: Literal["leave", "move"] = "leave"
    folder: str | None = None

    def wait(self, attempts: int) -> float:
        """Seconds to wait before the next try after ``attempts`` failed ones."""
        return float(min(self.max_backoff, self.backoff * 2 ** max(0, attempts - 1)))


@dataclass(frozen=True)
class WatchSpec:
    """How ``--watch`` keeps up: IMAP IDLE (re-issued at least every ``idle_restart``, a NOOP at least every
    ``noop``) plus a reconcile every ``reconcile`` that catches what a silent IDLE missed; a trigger that has not
    heard from its server for ``stale_after`` is reported stale and reconnects."""

    reconcile: float = 60.0
    idle: bool = True
    idle_restart: float = 25 * 60.0
    noop: float = 5 * 60.0

    @property
    def stale_after(self) -> float:
        return max(3 * self.reconcile, 30.0)


@dataclass(frozen=True)
class SessionSpec:
    """Where a bot's mailbox is: a saved profile, the embedded sandbox server, or inline settings (secrets as
    references: ``vault:NAME/ATTRIBUTE``, ``var:NAME``, ``env:NAME``)."""

    name: str
    profile: str | None = None
    embedded: str | None = None
    #: Inline settings as written (secret references, or an insecure value the check warned about): never shown.
    settings: Mapping[str, Any] | None = field(default=None, repr=False)
    path: str = "session"
    #: A config built in Python (the Python API), used as it is.
    config: Any = field(default=None, repr=False)


@dataclass(frozen=True)
class BotDefinition:
    """A checked bot: build with :func:`load_bot` / :func:`parse_bot`, or :class:`postroom.runner.Bot`."""

    name: str
    sessions: tuple[SessionSpec, ...]
    loop: MessageFilter
    steps: tuple[StepSpec, ...]
    on_failure: FailurePolicy = field(default_factory=FailurePolicy)
    #: The ledger's SQLAlchemy URL; None: SQLite in postroom's data folder.
    ledger: str | None = None
    #: Messages processed at once by the embedded runner (threads, one connection each).
    workers: int = 2
    watch: WatchSpec = field(default_factory=WatchSpec)
    #: How long a claim on a message lasts without renewal before another worker may take it over.
    claim_lease: float = 120.0
    #: Where a sent reply can be found again after a crash: "server" (the provider files a copy in Sent, as
    #: Gmail, Microsoft 365, EWS and Outlook do), "client" (postroom appends it), "none"; "auto" picks.
    sent_copy: Literal["auto", "server", "client", "none"] = "auto"
    #: The Celery broker (``postroom worker`` / ``run --celery``); None: ``redis://localhost:6379/0``.
    broker: str | None = None
    #: Serve Prometheus metrics on this port (0: a free one), or None for none.
    metrics_port: int | None = None
    #: "crash": what a step did survives the bot's crash or kill -9 (the OS has it); "power": it also survives a
    #: power cut (each saved file and each SQLite ledger commit is flushed to disk first; slower).
    durability: Literal["crash", "power"] = "crash"
    #: Also claim each message on the mail server (IMAP CONDSTORE: a keyword set by compare-and-set), so that
    #: deployments which share no ledger never both take one.
    server_claim: bool = False
    #: The file it came from, for messages.
    source: str = "<bot>"
    #: The file's folder: relative paths in steps are relative to it.
    base_dir: Path = field(default_factory=Path.cwd)
    subject_pattern: re.Pattern[str] | None = None

    def step_has(self, kind: str) -> bool:
        return any(step.kind == kind for step in self.steps)


def parse_duration(field_name: str, value: Any) -> float:
    """Seconds from ``30``, ``"30s"``, ``"5m"``, ``"2h"``, ``"1d"``."""
    if isinstance(value, bool):
        raise ConfigError(field_name, f"{value!r} is not a duration", hint="write e.g. 30s, 5m or 2h")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", str(value))
        if found is None:
            raise ConfigError(field_name, f"{value!r} is not a duration", hint="write e.g. 30s, 5m or 2h")
        unit = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600, "d": 86400}[found.group(2)]
        seconds = float(found.group(1)) * unit
    if seconds < 0:
        raise ConfigError(field_name, "must not be negative")
    return seconds


class _Reader:
    """Checks a parsed bot document, turning each problem into a :class:`BotFileError` with its line."""

    def __init__(self, source: str, lines: Lines) -> None:
        self.source = source
        self.lines = lines

    def fail(self, path: str, problem: str, hint: str | None = None) -> BotFileError:
        return BotFileError(self.source, path, self.lines.of(path), problem, hint=hint)

    def mapping(self, value: Any, path: str, allowed: set[str] | None = None) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"must be a mapping (name: value), not {_kind(value)}")
        if allowed is not None:
            unknown = sorted(set(value) - allowed)
            if unknown:
                raise self.fail(
                    f"{path}.{unknown[0]}" if path else unknown[0],
                    f"{unknown[0]!r} is not a setting here",
                    hint=f"known: {', '.join(sorted(allowed))}",
                )
        return value

    def option(self, spec: OptionSpec, value: Any, path: str, *, has_match: bool) -> Any:
        if spec.kind in ("str", "template"):
            if not isinstance(value, str) or (not value.strip() and spec.required):
                raise self.fail(path, f"must be text, not {_kind(value)}")
            if spec.kind == "template":
                self.wrap(path, lambda: check_template(path, value, has_match=has_match))
            return value
        if spec.kind == "bool":
            if not isinstance(value, bool):
                raise self.fail(path, f"must be true or false, not {_kind(value)}")
            return value
        if spec.kind == "int":
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise self.fail(path, f"must be a whole number ≥ 0, not {value!r}")
            return value
        if spec.kind == "strings":
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, list) or not items or not all(isinstance(i, str) and i for i in items):
                raise self.fail(path, "must be text or a list of text")
            return tuple(items)
        if spec.kind == "duration":
            return self.wrap(path, lambda: parse_duration(path, value))
        if value not in spec.choices:
            raise self.fail(path, f"{value!r} is not one of {', '.join(spec.choices)}")
        return value

    def wrap(self, path: str, check: Callable[[], Any]) -> Any:
        try:
            return check()
        except BotFileError:
            raise
        except ConfigError as exc:
            problem = str(exc).partition(": ")[2] or str(exc)
            raise self.fail(path, problem.split("\n")[0], exc.hint) from None


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "text", bool: "true/false", type(None): "empty"}.get(
        type(value), type(value).__name__
    )


_TOP = {
    "bot",
    "session",
    "sessions",
    "loop",
    "steps",
    "on_failure",
    "ledger",
    "workers",
    "watch",
    "claim_lease",
    "sent_copy",
    "broker",
    "metrics_port",
    "durability",
    "server_claim",
}
_LOOP = {
    "folder",
    "include_subfolders",
    "status",
    "subject",
    "sender",
    "since",
    "before",
    "regex",
    "case_sensitive",
    "order",
    "limit",
}


def load_bot(path: str | Path) -> BotDefinition:
    """The bot defined in the YAML file at ``path``, checked."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("bot", f"{file} does not exist", hint="give the path of a bot file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("bot", f"{file} cannot be read ({type(exc).__name__})") from None
    return parse_bot(text, source=str(path), base_dir=file.resolve().parent)


def parse_bot(text: str, *, source: str = "<bot>", base_dir: Path | None = None) -> BotDefinition:
    """The bot defined by the YAML ``text``, checked."""
    document, lines = load_with_lines(text, source)
    read = _Reader(source, lines)
    top = read.mapping(document, "", _TOP)
    name = top.get("bot")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name):
        raise read.fail(
            "bot", f"{name!r} is not a bot name", hint="letters, digits, '.', '_' and '-', e.g. invoice-bot"
        )
    sessions = _sessions(read, top)
    loop_settings = read.mapping(top.get("loop") or {}, "loop", _LOOP)
    loop = _loop(read, loop_settings)
    has_match = bool(loop.regex and loop.subject)
    steps = _steps(read, top.get("steps"), has_match=has_match)
    failure = _failure(read, top.get("on_failure") or {})
    watch = _watch(read, top.get("watch") or {})
    workers = top.get("workers", 2)
    if not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= 64:
        raise read.fail("workers", f"{workers!r} is not a number of workers", hint="1 to 64")
    sent_copy = top.get("sent_copy", "auto")
    if sent_copy not in ("auto", "server", "client", "none"):
        raise read.fail("sent_copy", f"{sent_copy!r} is not one of auto, server, client, none")
    ledger = top.get("ledger")
    if ledger is not None and (not isinstance(ledger, str) or "://" not in ledger):
        raise read.fail("ledger", f"{ledger!r} is not a database URL", hint="e.g. postgresql+psycopg://bot@db/postroom")
    metrics = top.get("metrics_port")
    if metrics is not None and (not isinstance(metrics, int) or isinstance(metrics, bool) or not 0 <= metrics < 65536):
        raise read.fail("metrics_port", f"{metrics!r} is not a port number")
    broker = top.get("broker")
    if broker is not None and (not isinstance(broker, str) or "://" not in broker):
        raise read.fail("broker", f"{broker!r} is not a broker URL", hint="e.g. redis://localhost:6379/0")
    server_claim = top.get("server_claim", False)
    if not isinstance(server_claim, bool):
        raise read.fail("server_claim", "must be true or false")
    durability = top.get("durability", "crash")
    if durability not in ("crash", "power"):
        raise read.fail("durability", f"{durability!r} is not crash or power")
    claim = read.wrap("claim_lease", lambda: parse_duration("claim_lease", top.get("claim_lease", 120)))
    if claim < 5:
        raise read.fail("claim_lease", "must be at least 5s")
    return BotDefinition(
        name=name,
        sessions=sessions,
        loop=loop,
        steps=steps,
        on_failure=failure,
        ledger=ledger,
        workers=workers,
        watch=watch,
        claim_lease=claim,
        sent_copy=sent_copy,
        broker=broker,
        metrics_port=metrics,
        durability=durability,
        server_claim=server_claim,
        source=source,
        base_dir=base_dir or Path.cwd(),
        subject_pattern=_subject_pattern(loop),
    )


def _subject_pattern(loop: MessageFilter) -> re.Pattern[str] | None:
    if not (loop.regex and loop.subject):
        return None
    return re.compile(loop.subject, 0 if loop.case_sensitive else re.IGNORECASE)


def _sessions(read: _Reader, top: dict[str, Any]) -> tuple[SessionSpec, ...]:
    if ("session" in top) == ("sessions" in top):
        raise read.fail("session", "give session (one mailbox) or sessions (a list), exactly one of them")
    if "session" in top:
        return (_session(read, top["session"], "session", "main"),)
    items = top["sessions"]
    if not isinstance(items, list) or not items:
        raise read.fail("sessions", "must be a list of sessions")
    found = []
    for index, item in enumerate(items):
        path = f"sessions[{index}]"
        entry = read.mapping(item, path)
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise read.fail(f"{path}.name", "each session of a list needs a name")
        found.append(_session(read, {k: v for k, v in entry.items() if k != "name"}, path, name))
    names = [s.name for s in found]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise read.fail("sessions", f"the name {duplicate!r} is given twice")
    return tuple(found)


def _session(read: _Reader, value: Any, path: str, name: str) -> SessionSpec:
    if isinstance(value, str):
        return SessionSpec(name=name, profile=value, path=path)
    entry = read.mapping(value, path)
    if "profile" in entry:
        read.mapping(entry, path, {"profile"})
        return SessionSpec(name=name, profile=str(entry["profile"]), path=path)
    if "embedded" in entry:
        read.mapping(entry, path, {"embedded"})
        if entry["embedded"] != "sandbox":
            raise read.fail(f"{path}.embedded", f"{entry['embedded']!r} is not an embedded server", hint="sandbox")
        return SessionSpec(name=name, embedded="sandbox", path=path)
    if "protocol" not in entry or "auth" not in entry:
        raise read.fail(
            path,
            "needs profile: NAME, embedded: sandbox, or inline settings with protocol and auth",
            hint="e.g. protocol: imap, host: imap.example.com, auth: {mode: basic, username: var:USER, "
            "password: vault:mail/password}",
        )
    _check_settings(read, entry, path)
    return SessionSpec(name=name, settings=entry, path=path)


def _check_settings(read: _Reader, entry: dict[str, Any], path: str) -> None:
    """Build the config once, so a wrong setting or an insecure secret is found now, with its line."""
    from postroom.auth import auth_from_profile
    from postroom.transports.registry import backend

    auth = read.mapping(entry["auth"], f"{path}.auth")
    settings = {k: v for k, v in entry.items() if k != "auth"}

    def build() -> None:
        backend(str(settings.get("protocol"))).from_profile(settings, auth_from_profile(auth))

    from postroom.credentials.refs import parse_ref
    from postroom.credentials.sources import Insecure, InsecureSecretWarning

    for name, value in auth.items():
        if name != "mode" and isinstance(value, str) and isinstance(parse_ref(value, name), Insecure):
            where = f"{path}.auth.{name}"
            warnings.warn(
                InsecureSecretWarning(
                    f"{read.source}: {where} (line {read.lines.of(where)}) is a secret written into the bot file; "
                    "anyone who can read the file can read it — give vault:NAME/ATTRIBUTE, var:NAME or env:NAME"
                ),
                stacklevel=4,
            )
    try:
        build()
    except ConfigError as exc:
        field_name = exc.field if exc.field in entry else (f"auth.{exc.field}" if exc.field in auth else "")
        where = f"{path}.{field_name}" if field_name else path
        problem = str(exc).partition(": ")[2] or str(exc)
        raise read.fail(where, problem, exc.hint) from None
    except (KeyError, TypeError) as exc:
        raise read.fail(f"{path}.auth", f"is missing {exc}", hint="see `postroom bot schema`") from None


def _loop(read: _Reader, settings: dict[str, Any]) -> MessageFilter:
    given = dict(settings)
    sender = given.pop("sender", None)
    if sender is not None:
        given["senders"] = tuple([sender] if isinstance(sender, str) else sender)
    for name in ("since", "before"):
        if isinstance(given.get(name), str):
            import datetime as dt

            text = given[name]
            try:
                given[name] = dt.date.fromisoformat(text)
            except ValueError:
                raise read.fail(f"loop.{name}", f"{text!r} is not a date", hint="write YYYY-MM-DD") from None

    def build() -> MessageFilter:
        return MessageFilter(**given)

    try:
        return build()
    except ConfigError as exc:
        name = {"senders": "sender"}.get(exc.field, exc.field)
        problem = str(exc).partition(": ")[2] or str(exc)
        raise read.fail(f"loop.{name}" if name in settings else "loop", problem, exc.hint) from None
    except TypeError as exc:
        raise read.fail("loop", str(exc)) from None


def _steps(read: _Reader, value: Any, *, has_match: bool) -> tuple[StepSpec, ...]:
    if not isinstance(value, list) or not value:
        raise read.fail("steps", "must be a list of steps", hint=f"steps: {', '.join(STEP_KINDS)}")
    steps: list[StepSpec] = []
    for index, item in enumerate(value):
        path = f"steps[{index}]"
        if isinstance(item, str):
            item = {item: None}
        entry = read.mapping(item, path)
        if len(entry) != 1:
            raise read.fail(path, "each step is one name with its options", hint="e.g. - move: Processed")
        kind, options = next(iter(entry.items()))
        if kind not in STEP_KINDS:
            raise read.fail(f"{path}.{kind}", f"{kind!r} is not a step", hint=f"steps: {', '.join(STEP_KINDS)}")
        if steps and steps[-1].kind in _ENDS_MESSAGE:
            raise read.fail(
                f"{path}.{kind}", f"comes after {steps[-1].kind}, which took the message away", hint="move it earlier"
            )
        steps.append(StepSpec(kind, _options(read, kind, options, f"{path}.{kind}", has_match=has_match), path))
    return tuple(steps)


def _options(read: _Reader, kind: str, value: Any, path: str, *, has_match: bool) -> dict[str, Any]:
    shorthand, specs = STEP_KINDS[kind]
    if value is None or (value is True and kind == "delete"):
        value = {}
    elif not isinstance(value, dict):
        if shorthand is None:
            raise read.fail(path, f"{kind} takes options ({', '.join(specs)})")
        value = {shorthand: value}
    given = read.mapping(value, path, set(specs))
    options: dict[str, Any] = {}
    for name, spec in specs.items():
        if name in given:
            options[name] = read.option(spec, given[name], f"{path}.{name}", has_match=has_match)
        elif spec.required:
            raise read.fail(f"{path}.{name}", "is required", hint=spec.doc)
        else:
            options[name] = spec.default
    if kind == "python":
        call = options["call"]
        if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", call):
            raise read.fail(f"{path}.call", f"{call!r} is not module:function", hint="e.g. mybot.steps:record")
    return options


def _failure(read: _Reader, value: Any) -> FailurePolicy:
    entry = read.mapping(value, "on_failure", {"retries", "backoff", "max_backoff", "then", "folder"})
    retries = entry.get("retries", 3)
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 100:
        raise read.fail("on_failure.retries", f"{retries!r} is not a number of retries", hint="0 to 100")
    then = entry.get("then", "leave")
    if then not in ("leave", "move"):
        raise read.fail("on_failure.then", f"{then!r} is not leave or move")
    folder = entry.get("folder")
    if then == "move" and not (isinstance(folder, str) and folder.strip()):
        raise read.fail("on_failure.folder", "then: move needs the folder to move failed messages to")
    return FailurePolicy(
        retries=retries,
        backoff=read.wrap("on_failure.backoff", lambda: parse_duration("backoff", entry.get("backoff", 30))),
        max_backoff=read.wrap(
            "on_failure.max_backoff", lambda: parse_duration("max_backoff", entry.get("max_backoff", 3600))
        ),
        then=then,
        folder=folder,
    )


def _watch(read: _Reader, value: Any) -> WatchSpec:
    entry = read.mapping(value, "watch", {"reconcile", "idle", "idle_restart", "noop"})
    idle = entry.get("idle", True)
    if not isinstance(idle, bool):
        raise read.fail("watch.idle", "must be true or false")
    reconcile = read.wrap("watch.reconcile", lambda: parse_duration("reconcile", entry.get("reconcile", 60)))
    restart = read.wrap("watch.idle_restart", lambda: parse_duration("idle_restart", entry.get("idle_restart", 1500)))
    noop = read.wrap("watch.noop", lambda: parse_duration("noop", entry.get("noop", 300)))
    if not 0.05 <= reconcile <= 86400:
        raise read.fail("watch.reconcile", "must be between 50ms and 1d")
    if restart > 25 * 60:
        raise read.fail("watch.idle_restart", "must be at most 25m (RFC 2177 allows 29, NATs less)")
    if noop > 5 * 60:
        raise read.fail("watch.noop", "must be at most 5m")
    return WatchSpec(reconcile=reconcile, idle=idle, idle_restart=restart, noop=noop)
