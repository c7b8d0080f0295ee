"""*Save attachments* and *Save email*: to disk, streamed, never outside the target folder."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from postroom.errors import ConfigError
from postroom.message.filenames import reserve_path, safe_filename
from postroom.message.structure import MimePart, content_of, parse_raw, structure_of

if TYPE_CHECKING:  # the model imports this module for mail.save_attachments(); this one needs only the type
    from postroom.message.model import Message

__all__ = ["SavedFile", "attachment_file_name", "name_matches", "save_attachments", "save_email"]


@dataclass(frozen=True)
class SavedFile:
    """One file written: where, from which attachment name, how many bytes."""

    path: Path
    name: str
    size: int
    content_type: str


def _target_folder(folder: Path | str) -> Path:
    path = Path(folder).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError("folder", f"cannot create {path}: {exc.strerror}") from None
    if not path.is_dir():
        raise ConfigError("folder", f"{path} is not a folder")
    return path


def _write(path: Path, produce: Callable[[BinaryIO], int]) -> int:
    """Stream into a temp file beside ``path``, then move it into place; no half-written files."""
    tmp = path.with_name(f".{path.name}.partial")
    try:
        with tmp.open("w+b") as handle:
            size = produce(handle)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        path.unlink(missing_ok=True)  # the reserved empty name
        raise
    return size


def save_attachments(
    message: Message,
    folder: Path | str,
    *,
    overwrite: bool = False,
    pattern: str | None = None,
    include_inline: bool = False,
    include_nested: bool = False,
) -> list[SavedFile]:
    """Save the message's attachments into ``folder``.

    ``overwrite=False`` keeps both (``name (2).pdf``). ``pattern`` is a glob on the
    file name (case-insensitive). An attached email is saved as ``.eml``; with
    ``include_nested=True`` its own attachments are saved too. Names are decoded
    (RFC 2047/2231) and then made safe, so no name can leave ``folder``.
    """
    target = _target_folder(folder)
    saved: list[SavedFile] = []
    for part in message.attachments(include_inline=include_inline):
        name = _name_for(part)
        if not name_matches(name, pattern):
            continue
        path = reserve_path(target, name, overwrite=overwrite)
        size = _write(path, lambda sink, part=part: message.stream_part(part, sink))  # type: ignore[misc]
        saved.append(SavedFile(path, name, size, part.content_type))
        if include_nested and part.is_message:
            saved += _save_nested(message.part_content(part), target, overwrite=overwrite, pattern=pattern)
    return saved


def name_matches(name: str, pattern: str | None) -> bool:
    """Whether a file name passes the (case-insensitive) glob; no pattern passes everything."""
    return pattern is None or fnmatch.fnmatch(name.casefold(), pattern.casefold())


def attachment_file_name(part: MimePart) -> str:
    """The safe file name an attachment is saved under (before any ``(2)`` for a clash)."""
    return _name_for(part)


def _name_for(part: MimePart) -> str:
    fallback = "message.eml" if part.is_message else f"attachment-{part.fetch_section}"
    name = safe_filename(part.filename, fallback)
    if part.is_message and not name.lower().endswith(".eml"):
        name += ".eml"
    return name


def _save_nested(raw: bytes, target: Path, *, overwrite: bool, pattern: str | None) -> list[SavedFile]:
    """The attachments of an attached email, and of the emails attached to it: parsed and described
    once, then walked (a hostile message nests thousands of emails; the description stops at MAX_NESTING)."""
    parsed = parse_raw(raw)
    saved: list[SavedFile] = []
    pending = [structure_of(parsed)]
    built: dict[int, bytes] = {}  # each nested email's bytes, built once for all the levels that hold it
    while pending:
        for part in pending.pop(0).attachments():
            name = _name_for(part)
            if name_matches(name, pattern):
                data = content_of(parsed, part, built)
                path = reserve_path(target, name, overwrite=overwrite)
                saved.append(SavedFile(path, name, _write(path, _bytes_producer(data)), part.content_type))
            if part.is_message and part.children:
                pending.append(part.children[0])
    return saved


def save_email(message: Message, path: Path | str, *, overwrite: bool = False) -> Path:
    """Save the message as ``.eml``, byte for byte as the server holds it.

    ``path`` is a file, or an existing folder (the file is then named after the subject). A file of that
    name is kept, as :func:`save_attachments` keeps one: the message goes to ``name (2).eml`` (the path
    returned), unless ``overwrite=True``.
    """
    target = Path(path).expanduser()
    if target.is_dir() or str(path).endswith((os.sep, "/")):
        folder = _target_folder(target)
        name = safe_filename(message.subject[:120], f"message-{message.uid}", from_text=True) + ".eml"
        final = reserve_path(folder, name, overwrite=overwrite)
    else:
        folder = _target_folder(target.parent)
        final = reserve_path(folder, safe_filename(target.name, "message.eml"), overwrite=overwrite)
    _write(final, _bytes_producer(message.raw()))
    return final


def _bytes_producer(data: bytes) -> Callable[[BinaryIO], int]:
    def produce(sink: BinaryIO) -> int:
        sink.write(data)
        return len(data)

    return produce
