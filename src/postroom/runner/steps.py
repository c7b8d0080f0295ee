"""A bot's steps on one message, each run once: the journal says which are done, the outbox guards mail.

Every step records a journal entry when it is done (code steps also when they start), fenced by the
worker's claim; the last one and the message's "done" are one transaction. A re-run after a crash skips the
done steps and repeats the others in a way that cannot double their effect:

- **mail** (reply, forward, send) carries a Message-ID fixed for this message and step (derived, so every
  try has the same). The moment its content goes to the server is recorded (``submitting``), and the
  server's confirmation (``done``). A re-run with no entry sends it (nothing can have been delivered), with
  ``done`` does not; with ``submitting`` (the crash came between the two) it looks for that Message-ID in
  Sent, and where no copy can prove it either way it holds the message for a person
  (``postroom bot retry --resend``) instead of sending twice;
- **files** are written whole under a temporary name and linked into place without replacing anything; a
  re-run adopts an identical file the crashed try left (:mod:`postroom.runner.files`);
- **move and delete** come last: a message found gone from its folder on a later try is looked for in the
  move's target (by Message-ID), or, for a bot that deletes, counted as deleted;
- **mark** is idempotent; **python** and **command** steps are told their idempotency key
  (``context.key`` / ``POSTROOM_IDEMPOTENCY_KEY``) and get ``context.reply`` & co. with the same guarantees.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

from postroom.actions.folders import create_folder, sent_folder
from postroom.actions.manage import delete as delete_messages
from postroom.actions.manage import flag, mark_read, mark_unread, move, unflag
from postroom.actions.send import CopyAfterSendError, SendReceipt, forward, reply, send
from postroom.errors import ConfigError, DeliveryUnknownError, PostroomError
from postroom.logs import get_logger
from postroom.message.model import Message
from postroom.message.saving import attachment_file_name, name_matches
from postroom.message.structure import MimePart
from postroom.runner.definition import BotDefinition, StepSpec
from postroom.runner.files import place_file
from postroom.runner.ledger import Claim, Effect, Ledger
from postroom.runner.templates import render
from postroom.session import Session
from postroom.transports.contract import Appends, CreatesFolders, ItemResult, SubmitsMail
from postroom.transports.smtp import after_acceptance, before_handover

__all__ = ["DeliveryHeldError", "Job", "StepContext", "run_steps", "sent_copy_mode"]

_log = get_logger("postroom.runner")

#: How long to wait for a provider's own copy in Sent to show up before deciding a message did not go out.
SENT_COPY_GRACE = 3.0


class DeliveryHeldError(PostroomError):
    """A message's mail may have gone out and nothing can tell: held for a person instead of sent twice."""


def renewal_due(last_renewed: float, lease: float) -> bool:
    """Whether a claim last renewed at ``last_renewed`` must be renewed (and so checked) now: once a third
    of its lease has passed. Before that no other worker can hold it — a claim is taken over only after its
    lease ran out — and a new UIDVALIDITY, which voids claims at once, is found by the fenced journal write
    that follows every step. (Renewing before each message and each file was half the ledger's writes.)"""
    return time.time() - last_renewed > lease / 3


def sent_copy_mode(definition: BotDefinition, session: Session) -> str:
    """Where a sent message's copy is found again: "server", "client" or "none" (``sent_copy: auto`` resolved)."""
    if definition.sent_copy != "auto":
        return definition.sent_copy
    if session.can(SubmitsMail):
        return "server"
    provider = getattr(session.config, "provider", None)
    if provider in ("gmail", "microsoft365", "office365", "outlook.com"):
        return "server"
    return "client" if session.can(Appends) else "none"


@dataclass
class Job:
    """One claimed message being processed: what every step needs."""

    definition: BotDefinition
    ledger: Ledger
    claim: Claim
    session: Session
    mail: Message
    match: re.Match[str] | None
    identity: str
    effects: dict[str, Effect]
    sent_copy: str
    log_extra: dict[str, Any] = field(default_factory=dict)
    _sent_folder: str | None = None
    #: When the claim was last renewed (taken, or written through a fenced journal entry).
    renewed_at: float = 0.0

    def record(
        self,
        seq: str,
        kind: str,
        state: str,
        *,
        message_id: str | None = None,
        finish: bool = False,
        new_key: str | None = None,
        **detail: Any,
    ) -> None:
        self.ledger.record_effect(
            self.claim,
            seq,
            kind,
            state,
            message_id=message_id,
            detail=detail,
            lease=self.definition.claim_lease,
            finish=finish,
            new_key=new_key,
        )
        self.renewed_at = time.time()
        self.effects[seq] = Effect(seq, kind, state, message_id, detail)

    def check_claim(self) -> None:
        """Before something that cannot be undone: renew the claim if it is due (:func:`renewal_due`), or
        raise :class:`LostClaimError` if another worker has taken it over."""
        if renewal_due(self.renewed_at, self.definition.claim_lease):
            self.ledger.renew(self.claim, self.definition.claim_lease)
            self.renewed_at = time.time()

    @property
    def rerun(self) -> bool:
        """Whether an earlier try may have done part of this message's work (it was claimed before)."""
        return not self.claim.first or bool(self.effects)

    def idempotency_key(self, seq: str) -> str:
        return f"{self.definition.name}:{self.claim.item_id}:{seq}"

    def message_id_for(self, seq: str) -> str:
        """The Message-ID of this message's mail at step ``seq``: the same on every try."""
        digest = hashlib.sha256(f"{self.identity}\n{self.idempotency_key(seq)}".encode()).hexdigest()[:16]
        login = self.session.resolve_login()
        user = login.username.reveal() if login.username is not None else ""
        domain = user.rpartition("@")[2] if "@" in user else "postroom.invalid"
        return f"<postroom.{self.definition.name}.{self.claim.item_id}.{seq.replace('.', '-')}.{digest}@{domain}>"

    def in_sent(self, message_id: str) -> bool:
        """Whether Sent holds ``message_id`` (False where the session cannot look)."""
        if not self.session.can(Appends):
            return False
        if self._sent_folder is None:
            self._sent_folder = sent_folder(self.session, True)
        folder = self._sent_folder
        return bool(self.session.call(lambda mailbox: cast(Appends, mailbox).has_message_id(folder, message_id)))

    def path(self, template: str) -> Path:
        folder = Path(render(template, self.mail, self.match)).expanduser()
        return folder if folder.is_absolute() else self.definition.base_dir / folder


def run_steps(job: Job, *, upto: int | None = None) -> bool:
    """Run the definition's steps that are not done yet (those before index ``upto`` only, when given). The
    last step's journal entry and the message's "done" are one transaction; returns False when every step
    had been done before (the caller finishes), and always when ``upto`` stops before the last."""
    steps = job.definition.steps
    new_key: str | None = None
    for index, step in enumerate(steps[:upto]):
        seq = str(index)
        done = job.effects.get(seq)
        if done is not None and done.state == "done":
            continue
        started = time.perf_counter()
        detail = _STEPS[step.kind](job, step, seq)
        new_key = detail.pop("new_key", None) or new_key
        if record_step(job, index, detail, new_key=new_key, seconds=time.perf_counter() - started):
            return True
    return False


def record_step(job: Job, index: int, detail: dict[str, Any], *, new_key: str | None, seconds: float) -> bool:
    """Journal step ``index`` done with ``detail`` (with the message's "done" if it is the last), log it and
    count it; returns whether it was the last."""
    from postroom.runner.metrics import observe_step

    steps = job.definition.steps
    step, seq, last = steps[index], str(index), index == len(steps) - 1
    recorded = job.effects.get(seq)
    if recorded is None or recorded.state != "done":  # (mail is recorded done as the server accepts it)
        job.record(
            seq, step.kind, "done", message_id=detail.pop("message_id", None), finish=last, new_key=new_key, **detail
        )
    elif last:
        job.ledger.finish(job.claim, new_key=new_key)
    _log.info(
        "%s: %s done in %.0f ms", job.claim.key, step.label, seconds * 1000, extra={**job.log_extra, "step": step.label}
    )
    observe_step(job.definition.name, step.kind, seconds)
    return last


# -- mail: the outbox ----------------------------------------------------------------------------------


def send_once(job: Job, seq: str, kind: str, deliver: Callable[[str], SendReceipt]) -> dict[str, Any]:
    """Send the mail of step ``seq`` at most once (see the module's docstring)."""
    prior = job.effects.get(seq)
    message_id = prior.message_id if prior is not None and prior.message_id else job.message_id_for(seq)
    if prior is not None and prior.state in ("submitting", "unknown"):
        if _went_out(job, message_id):
            _log.info(
                "%s: %s was sent before the crash (found in Sent); not sending it again", job.claim.key, message_id
            )
            return {"message_id": message_id, "found_in_sent": True}
        if job.sent_copy != "server":
            job.record(seq, kind, "unknown", message_id=message_id)
            raise _held(message_id, job)
    # nothing is recorded before: until its content goes out nothing can have been delivered, and a try after a
    # crash derives the same Message-ID again
    token = before_handover.set(lambda: job.record(seq, kind, "submitting", message_id=message_id))
    accepted = after_acceptance.set(lambda: job.record(seq, kind, "done", message_id=message_id))
    try:
        receipt = deliver(message_id)
    except CopyAfterSendError as exc:
        _log.warning("%s: %s went out, but its copy in Sent failed: %s", job.claim.key, message_id, exc.__cause__)
        return {"message_id": message_id, "recipients": list(exc.receipt.recipients), "copy_failed": str(exc.__cause__)}
    except DeliveryUnknownError:
        if _went_out(job, message_id):
            return {"message_id": message_id, "found_in_sent": True}
        if job.sent_copy != "server":
            job.record(seq, kind, "unknown", message_id=message_id)
            raise _held(message_id, job) from None
        raise  # the provider files every sent message, and this one is not there: it did not go out; retried
    finally:
        before_handover.reset(token)
        after_acceptance.reset(accepted)
    return {"message_id": message_id, "recipients": list(receipt.recipients)}


def _went_out(job: Job, message_id: str) -> bool:
    if job.in_sent(message_id):
        return True
    if job.sent_copy == "server":  # the provider's copy may take a moment to be filed
        time.sleep(SENT_COPY_GRACE)
        return job.in_sent(message_id)
    return False


def _held(message_id: str, job: Job) -> DeliveryHeldError:
    return DeliveryHeldError(
        f"{message_id} may have been delivered before the connection or the worker was lost, and no copy in "
        "Sent can tell; held instead of sent twice",
        hint=f"check with the recipient, then `postroom bot retry {job.definition.source} --resend "
        f"--key '{job.claim.key}'` to send it, or `postroom bot forget` to drop it",
    )


def _save_to_sent(job: Job, step: StepSpec) -> bool:
    wanted = step.options.get("save_to_sent")
    if wanted is not None:
        return bool(wanted)
    return job.sent_copy == "client" or job.session.can(SubmitsMail)


def _reply(job: Job, step: StepSpec, seq: str) -> dict[str, Any]:
    options = step.options
    body = render(options["body"], job.mail, job.match)
    chosen = {"reply_all": options["reply_all"], "quote": options["quote"], "html": options["html"]}
    return send_once(job, seq, "reply", _replying(job, body, {**chosen, "save_to_sent": _save_to_sent(job, step)}))


def _forward(job: Job, step: StepSpec, seq: str) -> dict[str, Any]:
    options = step.options
    body = render(options["body"], job.mail, job.match)
    chosen = {"as_attachment": options["as_attachment"], "save_to_sent": _save_to_sent(job, step)}
    return send_once(job, seq, "forward", _forwarding(job, list(options["to"]), body, chosen))


def _send(job: Job, step: StepSpec, seq: str) -> dict[str, Any]:
    options = step.options
    chosen = {
        "to": [render(to, job.mail, job.match) for to in options["to"]],
        "subject": " ".join(render(options["subject"], job.mail, job.match).split()),
        "body": render(options["body"], job.mail, job.match),
        "save_to_sent": _save_to_sent(job, step),
    }
    return send_once(job, seq, "send", _sending(job, chosen))


# -- files --------------------------------------------------------------------------------------------


def _save_attachments(job: Job, step: StepSpec, seq: str) -> dict[str, Any]:
    folder = job.path(step.options["folder"])
    rerun = job.rerun  # a crashed try may have saved some of them
    saved = []
    for part in job.mail.attachments(include_inline=step.options["include_inline"]):
        name = attachment_file_name(part)
        if not name_matches(name, step.options["pattern"]):
            continue
        path, size = place_file(
            folder,
            name,
            _streamer(job.mail, part),
            rerun=rerun,
            flush=job.definition.durability == "power",
            before_placing=job.check_claim,
        )
        saved.append({"path": str(path), "size": size})
    return {"files": saved}


def _streamer(mail: Message, part: MimePart) -> Callable[[BinaryIO], int]:
    return lambda sink: mail.stream_part(part, sink)


def _save_email(job: Job, step: StepSpec, seq: str) -> dict[str, Any]:
    from postroom.message.filenames import safe_filename

    folder = job.path(step.options["folder"])
    rerun = job.rerun
    name = safe_filename(job.mail.subject[:120], f"message-{job.mail.uid}", from_text=True) + ".eml"
    raw = job.mail.raw()

    def produce(sink: Any) -> int:
        sink.write(raw)
        return len(raw)

    path, size = place_file(
        folder, name, produce, rerun=rerun, flush=job.definition.durability == "power", before_placing=job.check_claim
    )
    return {"files": [{"path": str(path), "size": size}]}


# -- the message itself ---------------------------------------------------------------------------------


def _move(job: Job, step: StepSpec, seq: str) -> dict[str, Any]:
    return move_once(job, seq, step.options["folder"])


def move_once(job: Job, seq: str, folder: str) -> dict[str, Any]:
    return moved_detail(move_all(job.session, [job.mail], folder)[0])


def move_all(session: Session, mails: list[Message], folder: str) -> list[ItemResult]:
    """Move ``mails`` to ``folder`` in one bulk move (a result per message), making the folder if it is missing
    (never made, or deleted since)."""
    try:
        return move(session, mails, folder)
    except ConfigError as exc:
        if exc.field != "folder" or not session.can(CreatesFolders):
            raise
        create_folder(session, folder)
        return move(session, mails, folder)


def moved_detail(result: ItemResult) -> dict[str, Any]:
    """A move step's journal detail; its error if the message was not moved."""
    if not result.ok:
        assert result.error is not None
        raise result.error
    return {"new_key": str(result.new_key) if result.new_key else None, "status": result.status}


def _delete(job: Job, step: StepSpec, seq: str) -> dict[str, Any]:
    result = delete_messages(job.session, job.mail)[0]
    if not result.ok:
        assert result.error is not None
        raise result.error
    return {"status": result.status}


def _mark(job: Job, step: StepSpec, seq: str) -> dict[str, Any]:
    action = {"read": mark_read, "unread": mark_unread, "flagged": flag, "unflagged": unflag}[step.options["as"]]
    result = action(job.session, job.mail)[0]
    if not result.ok:
        assert result.error is not None
        raise result.error
    return {"as": step.options["as"]}


# -- code -----------------------------------------------------------------------------------------------


def _python(job: Job, step: StepSpec, seq: str) -> dict[str, Any]:
    function = step.function or _import(step.options["call"], f"{step.label}.call")
    job.record(seq, "python", "pending")
    result = function(job.mail, StepContext(job, seq))
    return {"result": result if isinstance(result, str | int | float | bool | type(None)) else repr(result)}


def _import(target: str, field_name: str) -> Callable[..., Any]:
    module_name, _, attribute = target.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            field_name, f"cannot import {target!r} ({exc})", hint="check the module is importable"
        ) from None
    if not callable(found):
        raise ConfigError(field_name, f"{target!r} is not callable")
    return cast(Callable[..., Any], found)


def _command(job: Job, step: StepSpec, seq: str) -> dict[str, Any]:
    job.record(seq, "command", "pending")
    properties = job.mail.properties(with_bodies=True)
    document = json.dumps(
        {"bot": job.definition.name, "idempotency_key": job.idempotency_key(seq), "message": dict(properties)},
        default=str,
        ensure_ascii=False,
    )
    argv = list(step.options["run"])
    environment = {
        **os.environ,
        "POSTROOM_IDEMPOTENCY_KEY": job.idempotency_key(seq),
        "POSTROOM_BOT": job.definition.name,
    }
    try:
        done = subprocess.run(
            argv,
            input=document.encode(),
            capture_output=True,
            timeout=step.options["timeout"],
            cwd=job.definition.base_dir,
            env=environment,
            check=False,
        )
    except FileNotFoundError:
        raise ConfigError(f"{step.label}.run", f"{argv[0]!r} was not found", hint="give the program's path") from None
    except subprocess.TimeoutExpired:
        raise PostroomError(f"{step.label}: {argv[0]} did not finish within {step.options['timeout']:.0f}s") from None
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise PostroomError(f"{step.label}: {argv[0]} exited with {done.returncode}: {' | '.join(tail)}")
    return {"exit": 0, "stdout": done.stdout.decode(errors="replace")[-2000:]}


_STEPS: dict[str, Callable[[Job, StepSpec, str], dict[str, Any]]] = {
    "save_attachments": _save_attachments,
    "save_email": _save_email,
    "reply": _reply,
    "forward": _forward,
    "send": _send,
    "move": _move,
    "delete": _delete,
    "mark": _mark,
    "python": _python,
    "command": _command,
}


class StepContext:
    """What a Python step gets beside the message: the session, and mail and moves that happen once.

    Each call is a journal entry of its own (``3.1``, ``3.2`` …), so a step run again after a crash gets the
    recorded result of the calls its first run finished instead of doing them twice.
    """

    def __init__(self, job: Job, seq: str) -> None:
        self._job = job
        self._seq = seq
        self._calls = 0
        self.session = job.session
        self.bot = job.definition.name
        #: Stable for this message and step across tries: give it to outside systems to deduplicate.
        self.key = job.idempotency_key(seq)
        self.attempt = job.claim.attempts + 1
        self.match = job.match

    def _next(self) -> tuple[str, Effect | None]:
        self._calls += 1
        seq = f"{self._seq}.{self._calls}"
        return seq, self._job.effects.get(seq)

    def _once(self, kind: str, act: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
        seq, prior = self._next()
        if prior is not None and prior.state == "done":
            return dict(prior.detail, message_id=prior.message_id)
        detail = act(seq)
        message_id = detail.get("message_id")
        self._job.record(
            seq, kind, "done", message_id=message_id, **{k: v for k, v in detail.items() if k != "message_id"}
        )
        return detail

    def reply(self, body: str, **options: Any) -> dict[str, Any]:
        """Reply once (options as :func:`postroom.reply`)."""
        job = self._job
        return self._once("reply", lambda seq: send_once(job, seq, "reply", _replying(job, body, options)))

    def forward(self, to: str | list[str], body: str = "", **options: Any) -> dict[str, Any]:
        """Forward once (options as :func:`postroom.forward`)."""
        job = self._job
        return self._once("forward", lambda seq: send_once(job, seq, "forward", _forwarding(job, to, body, options)))

    def send(self, **options: Any) -> dict[str, Any]:
        """Send a new message once (options as :func:`postroom.send`)."""
        job = self._job
        return self._once("send", lambda seq: send_once(job, seq, "send", _sending(job, options)))

    def move(self, folder: str) -> dict[str, Any]:
        """Move the message once (the step should end after this: the message is gone from the folder)."""
        return self._once("move", lambda seq: move_once(self._job, seq, folder))


def _replying(job: Job, body: str, options: dict[str, Any]) -> Callable[[str], SendReceipt]:
    return lambda message_id: reply(job.session, job.mail, body, message_id=message_id, **options)


def _forwarding(job: Job, to: str | list[str], body: str, options: dict[str, Any]) -> Callable[[str], SendReceipt]:
    return lambda message_id: forward(job.session, job.mail, to, body, message_id=message_id, **options)


def _sending(job: Job, options: dict[str, Any]) -> Callable[[str], SendReceipt]:
    return lambda message_id: send(job.session, message_id=message_id, **options)
