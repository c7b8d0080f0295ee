"""Readable text from an HTML body, for messages that have no text/plain part."""

from __future__ import annotations

import re
from html.parser import HTMLParser

__all__ = ["html_to_text"]

_BLOCK = {"p", "div", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "blockquote", "pre", "section"}
_SKIP = {"script", "style", "head", "title"}
_INDENT = "\x00"  # a nested list item's indent, kept through the stripping of each line


class _TextExtractor(HTMLParser):
    """Text with the structure a reader needs: blocks on lines, list items marked (``-`` or ``1.``), and each
    link's target after its text, when the text does not already say it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._lists: list[list[int] | None] = []  # per open list: [next number] for <ol>, None for <ul>
        self._links: list[tuple[str | None, int]] = []  # href, and where the link's text starts in parts

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self._skip += 1
        elif tag in {"ul", "ol"}:
            if not self._lists:
                self.parts.append("\n")
            self._lists.append([1] if tag == "ol" else None)
        elif tag == "li":
            current = self._lists[-1] if self._lists else None
            indent = _INDENT * max(len(self._lists) - 1, 0)
            if current is not None:
                self.parts.append(f"\n{indent}{current[0]}. ")
                current[0] += 1
            else:
                self.parts.append(f"\n{indent}- ")
        elif tag == "a":
            self._links.append((dict(attrs).get("href"), len(self.parts)))
        elif tag == "br" or tag in _BLOCK:
            self.parts.append("\n")
        elif tag == "td":
            self.parts.append("\t")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP and self._skip:
            self._skip -= 1
        elif tag in {"ul", "ol"} and self._lists:
            self._lists.pop()
            if not self._lists:
                self.parts.append("\n")
        elif tag == "a" and self._links:
            href, start = self._links.pop()
            shown = "".join(self.parts[start:]).strip()
            target = (href or "").strip()
            if target and not target.startswith(("#", "javascript:")) and target.removeprefix("mailto:") not in shown:
                self.parts.append(f" ({target.removeprefix('mailto:')})")
        elif tag in _BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(re.sub(r"\s+", " ", data.replace(_INDENT, "")))  # only our indents carry the marker


def html_to_text(html: str) -> str:
    """Text of ``html``: tags dropped, blocks on their own lines, entities decoded. Never raises."""
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):  # HTMLParser on hostile markup
        return re.sub(r"<[^>]*>", " ", html)
    text = "".join(parser.parts)
    lines = [line.strip().replace(_INDENT, "  ") for line in text.splitlines()]  # strip() keeps the markers
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
