"""Read YAML into plain data while remembering where every key stood.

Three things the stock loaders do not do for us:
- numbers with a fraction become ``Decimal`` from their text (``25.50`` is
  never a float on its way to nanodollars);
- each key path remembers its line, so validation errors can name it;
- duplicate keys are an error instead of the last one silently winning.
``${NAME}`` and ``${NAME:-default}`` in strings are replaced from the
environment, so secrets stay out of the file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from decimal import Decimal

import yaml

Path = tuple[str | int, ...]
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SPECIAL_FLOATS = {".inf": "Infinity", "+.inf": "Infinity", "-.inf": "-Infinity", ".nan": "NaN"}

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: much faster


@dataclass(frozen=True)
class Issue:
    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.path or '(top level)'}: {self.message}"


class ConfigError(Exception):
    """A config was refused; ``issues`` says what and where."""

    def __init__(self, source: str, issues: list[Issue]) -> None:
        self.source = source
        self.issues = issues
        super().__init__("\n".join(f"{source}: {issue}" for issue in issues))


def dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@dataclass
class Source:
    data: object
    lines: dict[Path, int] = field(default_factory=dict)

    def line_of(self, path: Path) -> int | None:
        """The line of the deepest known prefix of ``path``."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None


def parse(text: str, source: str, environ: dict[str, str] | None = None) -> Source:
    environ = os.environ if environ is None else environ
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(source, [Issue("", line, f"invalid YAML: {err.problem or err}")]) from None
    except yaml.YAMLError as err:
        raise ConfigError(source, [Issue("", None, f"invalid YAML: {err}")]) from None
    result = Source(data={})
    if node is None:
        return result
    issues: list[Issue] = []
    constructor = yaml.SafeLoader("")
    result.data = _build(node, (), result.lines, issues, constructor, environ)
    if issues:
        raise ConfigError(source, issues)
    return result


def _build(node, path: Path, lines, issues, constructor, environ):
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        constructor.flatten_mapping(node)  # YAML merge keys (<<)
        out = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, constructor)
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                issues.append(Issue(dotted(path), key_node.start_mark.line + 1, f"key {key!r} must be a string"))
                continue
            key = str(key)
            child = path + (key,)
            if key in out:
                issues.append(Issue(dotted(child), key_node.start_mark.line + 1, "duplicate key"))
                continue
            lines[child] = key_node.start_mark.line + 1
            out[key] = _build(value_node, child, lines, issues, constructor, environ)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, path + (i,), lines, issues, constructor, environ) for i, item in enumerate(node.value)]
    value = _scalar(node, constructor)
    if isinstance(value, str):
        value = _substitute(value, path, node.start_mark.line + 1, issues, environ)
    return value


def _scalar(node, constructor):
    if node.tag == "tag:yaml.org,2002:float":
        text = node.value.replace("_", "")
        return Decimal(_SPECIAL_FLOATS.get(text.lower(), text))
    return constructor.construct_object(node, deep=True)


def _substitute(value: str, path: Path, line: int, issues: list[Issue], environ) -> str:
    def replace(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        issues.append(Issue(dotted(path), line, f"environment variable {name} is not set"))
        return ""

    return _ENV_REF.sub(replace, value)
