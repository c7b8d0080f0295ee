"""YAML read with the line of every value, so an error in a bot file names the line to fix.

:func:`load_with_lines` returns plain Python values (dicts, lists, strings, numbers) and a
:class:`Lines` map from a field's path (``steps[2].reply.body``) to its line. Only YAML's safe
subset is read: no tags that build objects, no aliases bigger than the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from postroom.errors import ConfigError

__all__ = ["BotFileError", "Lines", "load_with_lines"]


class BotFileError(ConfigError):
    """A bot file is wrong: names the file, the field and its line."""

    def __init__(self, source: str, field: str, line: int | None, problem: str, *, hint: str | None = None) -> None:
        self.source = source
        self.line = line
        where = f"{field} (line {line})" if line is not None else field
        super().__init__(f"{source}: {where}", problem, hint=hint)
        self.field = field

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "field": self.field, "line": self.line, "file": self.source}


@dataclass
class Lines:
    """Field path → 1-based line number."""

    found: dict[str, int] = field(default_factory=dict)

    def of(self, path: str) -> int | None:
        """The line of ``path``, else of the nearest enclosing field that has one."""
        while path:
            if path in self.found:
                return self.found[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return self.found.get("")


def load_with_lines(text: str, source: str) -> tuple[Any, Lines]:
    """The YAML document in ``text`` and the line of each field; a syntax error names its line."""
    import yaml

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "the file"
        problem = getattr(exc, "problem", None) or str(exc)
        line = mark.line + 1 if mark is not None else None
        raise BotFileError(
            source, "file", line, f"is not valid YAML at {where}: {problem}", hint="fix that line"
        ) from None
    lines = Lines()
    if node is None:
        return None, lines
    return _value(node, "", lines, source), lines


def _value(node: Any, path: str, lines: Lines, source: str) -> Any:
    import yaml

    lines.found.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                raise BotFileError(source, path or "bot", line, "a key must be a plain name")
            child = f"{path}.{key}" if path else key
            lines.found[child] = line
            if key in out:
                raise BotFileError(source, child, line, "is given twice", hint="keep one")
            out[key] = _value(value_node, child, lines, source)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_value(item, f"{path}[{index}]", lines, source) for index, item in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: Any) -> Any:
    """A scalar as YAML's safe loader types it (``true`` → True, ``3`` → 3, quoted → str)."""
    import yaml

    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()
