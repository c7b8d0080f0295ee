"""File names from mail made safe: a name can never escape the folder it is saved in."""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

__all__ = ["name_variants", "reserve_path", "safe_filename"]

_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')
_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\..*)?$", re.IGNORECASE)
MAX_NAME_BYTES = 200


def safe_filename(name: str | None, fallback: str = "attachment", *, from_text: bool = False) -> str:
    """A plain file name: no folders, no ``..``, no control or reserved characters, bounded length.

    A sender's path keeps only its last component; ``from_text=True`` (a name made
    from a subject) keeps every word and replaces the separators instead.
    """
    text = unicodedata.normalize("NFC", name or "")
    if not from_text:
        text = re.split(r"[/\\]", text)[-1]  # the last path component, whatever separator the sender used
    text = _UNSAFE.sub("_", text).strip(" .")
    if not text or set(text) <= {"_", "."}:
        text = fallback
    if _RESERVED.match(text):
        text = f"_{text}"
    stem, dot, extension = text.rpartition(".")
    if not dot or len(extension) > 16:
        stem, extension = text, ""
    suffix = f".{extension}" if extension else ""
    while len((stem + suffix).encode("utf-8")) > MAX_NAME_BYTES and stem:
        stem = stem[:-1]
    return (stem.rstrip(" .") or fallback) + suffix


def name_variants(folder: Path, name: str) -> Iterator[Path]:
    """``folder/name``, then ``folder/name (2).ext``, ``(3)`` ...: the names keeping both tries in turn."""
    stem, dot, extension = name.rpartition(".")
    if not dot:
        stem, extension = name, ""
    suffix = f".{extension}" if extension else ""
    for counter in range(1, 10_000):
        yield folder / (name if counter == 1 else f"{stem} ({counter}){suffix}")


def reserve_path(folder: Path, name: str, *, overwrite: bool) -> Path:
    """A path for ``name`` inside ``folder``: the name itself, or ``name (2).ext`` ... when keeping both.

    The file is created empty (exclusively when not overwriting), so two savers never pick the same name.
    """
    folder = folder.resolve()
    for candidate in name_variants(folder, name):
        if not overwrite and os.path.lexists(candidate):
            continue  # taken: the cheap check first (a hostile message may hold hundreds of one name)
        if candidate.resolve().parent != folder:  # defence in depth: never outside the folder
            raise ValueError(f"refusing to write outside {folder}")
        flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_BINARY", 0) | (os.O_TRUNC if overwrite else os.O_EXCL)
        try:
            os.close(os.open(candidate, flags, 0o644))
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"no free name for {name!r} in {folder}")
