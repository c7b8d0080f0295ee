"""The Python face of bots: a :class:`Bot` whose steps are decorated functions, run like a bot file.

::

    from postroom.runner import Bot

    bot = Bot("invoices", session=config, loop={"status": "unread", "subject": r"Invoice \\d+", "regex": True})

    @bot.step
    def handle(mail, context):
        mail.save_attachments("out/")          # idempotent on its own? use the bot-file step for exactly once
        context.reply("Thank you, received.")  # sent once, whatever crashes
        context.move("Processed")

    report = bot.run()                          # or bot.run(watch=True)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from postroom.config.base import ServerConfig
from postroom.errors import ConfigError
from postroom.filters import MessageFilter
from postroom.runner.definition import (
    BotDefinition,
    FailurePolicy,
    SessionSpec,
    StepSpec,
    WatchSpec,
    _subject_pattern,
)
from postroom.runner.local import LocalRunner, RunReport

__all__ = ["Bot"]


class Bot:
    """A bot built in Python. ``session``: a config (``EmailServer(...)``) or a profile's name."""

    def __init__(
        self,
        name: str,
        *,
        session: ServerConfig | str,
        loop: Mapping[str, Any] | MessageFilter | None = None,
        on_failure: FailurePolicy | None = None,
        ledger: str | None = None,
        workers: int = 2,
        watch: WatchSpec | None = None,
        sent_copy: Literal["auto", "server", "client", "none"] = "auto",
        claim_lease: float = 120.0,
        variables: Mapping[str, str] | None = None,
    ) -> None:
        if isinstance(loop, MessageFilter):
            chosen = loop
        else:
            given = dict(loop or {})
            if "sender" in given:
                sender = given.pop("sender")
                given["senders"] = (sender,) if isinstance(sender, str) else tuple(sender)
            chosen = MessageFilter(**given)
        spec = (
            SessionSpec(name="main", profile=session)
            if isinstance(session, str)
            else SessionSpec(name="main", config=session)
        )
        self.variables = dict(variables or {})
        self._base = dict(
            name=name,
            sessions=(spec,),
            loop=chosen,
            on_failure=on_failure or FailurePolicy(),
            ledger=ledger,
            workers=workers,
            watch=watch or WatchSpec(),
            sent_copy=sent_copy,
            claim_lease=claim_lease,
            source=f"<bot {name}>",
            base_dir=Path.cwd(),
            subject_pattern=_subject_pattern(chosen),
        )
        self._steps: list[StepSpec] = []

    def step(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """Add ``function(message, context)`` as the next step (a decorator)."""
        if not callable(function):
            raise ConfigError("step", f"{function!r} is not callable")
        index = len(self._steps)
        self._steps.append(
            StepSpec("python", {"call": getattr(function, "__qualname__", "step")}, f"steps[{index}]", function)
        )
        return function

    @property
    def definition(self) -> BotDefinition:
        if not self._steps:
            raise ConfigError("steps", "the bot has no steps", hint="decorate a function with @bot.step")
        return BotDefinition(steps=tuple(self._steps), **self._base)  # type: ignore[arg-type]

    def run(self, *, watch: bool = False) -> RunReport:
        """Process what is there (or, with ``watch``, keep going until interrupted) and report."""
        return LocalRunner(self.definition, variables=self.variables).run(watch=watch)
