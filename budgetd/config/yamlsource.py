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
    """One pass over libyaml's events (C), building the data and the line map
    in Python without PyYAML's composer and resolver: a 100,000-agent file
    loads in about a second instead of eight."""
    environ = os.environ if environ is None else environ
    result = Source(data={})
    issues: list[Issue] = []
    try:
        _Builder(result.lines, issues, environ).run(yaml.parse(text, Loader=_Loader), result)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(source, [Issue("", line, f"invalid YAML: {err.problem or err}")]) from None
    except yaml.YAMLError as err:
        raise ConfigError(source, [Issue("", None, f"invalid YAML: {err}")]) from None
    if issues:
        raise ConfigError(source, issues)
    return result


_NULLS = {"", "~", "null", "Null", "NULL"}
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False,
          "yes": True, "Yes": True, "YES": True, "no": False, "No": False, "NO": False,
          "on": True, "On": True, "ON": True, "off": False, "Off": False, "OFF": False}
_INT = re.compile(r"[-+]?(0|[1-9][0-9_]*)")
_FLOAT = re.compile(r"[-+]?([0-9][0-9_]*)?\.[0-9_]*([eE][-+]?[0-9]+)?|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+")
_TAGS = {"tag:yaml.org,2002:str": str, "tag:yaml.org,2002:int": int, "tag:yaml.org,2002:float": Decimal}


def _scalar(event: yaml.ScalarEvent):
    """YAML 1.1 plain scalars as PyYAML's safe loader reads them, except that
    numbers with a fraction become Decimal, and times ("09:00") and dates stay
    strings (no field here is a time or a date)."""
    value = event.value
    if event.tag in _TAGS:
        return _TAGS[event.tag](value)
    if event.style or not event.implicit[0]:  # libyaml: plain is "" (None in pure PyYAML)
        return value  # quoted, or tagged
    if value in _NULLS:
        return None
    if value in _BOOLS:
        return _BOOLS[value]
    first = value[0]
    if first.isdigit() or first in "+-.":
        if _INT.fullmatch(value):
            return int(value.replace("_", ""))
        if value.lower().lstrip("+") in _SPECIAL_FLOATS:  # refused as "not finite" by validation
            return float(_SPECIAL_FLOATS[value.lower().lstrip("+")])
        if _FLOAT.fullmatch(value):
            return Decimal(value.replace("_", ""))
    return value


class _Builder:
    def __init__(self, lines: dict[Path, int], issues: list[Issue], environ) -> None:
        self.lines = lines
        self.issues = issues
        self.environ = environ
        self.anchors: dict[str, object] = {}

    def run(self, events, result: Source) -> None:
        # Each open container: [value, path, pending key (mappings), anchor, merges, key line]
        stack: list[list] = []
        root_set = False

        def add(value, line: int) -> None:
            nonlocal root_set
            if not stack:
                result.data, root_set = value, True
                return
            top = stack[-1]
            container, path = top[0], top[1]
            if isinstance(container, list):
                self.lines.setdefault(path + (len(container),), line)
                container.append(value)
                return
            if top[2] is _NO_KEY:  # a key
                key = value
                if not isinstance(key, (str, int)) or isinstance(key, bool):
                    self.issues.append(Issue(dotted(path), line, f"key {key!r} must be a string"))
                    key = f"<{key!r}>"
                key = str(key)
                if key in container or (key in top[6] and key != "<<"):
                    self.issues.append(Issue(dotted(path + (key,)), line, "duplicate key"))
                top[2], top[5] = key, line
                top[6].add(key)
                return
            key, top[2] = top[2], _NO_KEY
            if key == "<<":  # merge keys: applied when the mapping ends
                top[4].extend(value if isinstance(value, list) else [value])
                return
            self.lines[path + (key,)] = top[5]
            container[key] = value

        for event in events:
            line = event.start_mark.line + 1
            if isinstance(event, yaml.ScalarEvent):
                value = _scalar(event)
                if isinstance(value, str) and "${" in value and stack and stack[-1][2] is not _NO_KEY:
                    top = stack[-1]
                    value = _substitute(value, top[1] + (top[2],), line, self.issues, self.environ)
                elif isinstance(value, str) and "${" in value and stack and isinstance(stack[-1][0], list):
                    value = _substitute(value, stack[-1][1], line, self.issues, self.environ)
                if event.anchor:
                    self.anchors[event.anchor] = value
                add(value, line)
            elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                path = self._child_path(stack)
                self.lines.setdefault(path, line)
                container = {} if isinstance(event, yaml.MappingStartEvent) else []
                stack.append([container, path, _NO_KEY, event.anchor, [], line, set()])
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                container, _, _, anchor, merges, _, _ = stack.pop()
                for merged in merges:
                    if isinstance(merged, dict):
                        for k, v in merged.items():
                            container.setdefault(k, v)
                if anchor:
                    self.anchors[anchor] = container
                add(container, line)
            elif isinstance(event, yaml.AliasEvent):
                if event.anchor not in self.anchors:
                    self.issues.append(Issue("", line, f"unknown alias *{event.anchor}"))
                add(self.anchors.get(event.anchor), line)
        if not root_set:
            result.data = {}

    @staticmethod
    def _child_path(stack) -> Path:
        if not stack:
            return ()
        top = stack[-1]
        if isinstance(top[0], list):
            return top[1] + (len(top[0]),)
        return top[1] + ((top[2],) if top[2] is not _NO_KEY else ())


_NO_KEY = object()


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
