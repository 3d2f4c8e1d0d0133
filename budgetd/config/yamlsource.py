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
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

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
    # No document, or one that is empty: nothing or only comments. Kept
    # apart from {} so that an editor's truncate-then-write, read half way,
    # is refused instead of loading a config with no agents.
    empty: bool = False

    def line_of(self, path: Path) -> int | None:
        """The line of the deepest known prefix of ``path``."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None


def parse(text: str, source: str, environ: Mapping[str, str] | None = None, with_lines: bool = True) -> Source:
    """One pass over libyaml's events (C), building the data and the line map
    in Python without PyYAML's composer and resolver: a 100,000-agent file
    loads in about a second instead of eight.

    ``with_lines=False`` skips the line map (errors found here still name
    their line): validation asks for it only when it has something to say.
    The map of a million agents holds three million paths; each doubling of
    a dict that size holds the GIL for a quarter of a second and more, which
    stalls the daemon's loop while a reload parses in its worker thread."""
    environ = os.environ if environ is None else environ
    result = Source(data={})
    issues: list[Issue] = []
    try:
        loader = _Loader(text)
        try:
            _Builder(result.lines if with_lines else None, issues, environ).run(_events(loader), result)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(source, [Issue("", line, f"invalid YAML: {err.problem or err}")]) from None
    except yaml.YAMLError as err:
        raise ConfigError(source, [Issue("", None, f"invalid YAML: {err}")]) from None
    if issues:
        raise ConfigError(source, issues)
    return result


def _events(loader):
    """The loader's events, as yaml.parse gives them, without its
    check_event call per event (700,000 for 100,000 agents)."""
    get_event = loader.get_event
    while (event := get_event()) is not None:
        yield event


_NULLS = {"", "~", "null", "Null", "NULL"}
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False,
          "yes": True, "Yes": True, "YES": True, "no": False, "No": False, "NO": False,
          "on": True, "On": True, "ON": True, "off": False, "Off": False, "OFF": False}
_INT = re.compile(r"[-+]?(0|[1-9][0-9_]*)")
_FLOAT = re.compile(r"[-+]?([0-9][0-9_]*)?\.[0-9_]*([eE][-+]?[0-9]+)?|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+")
_TAGS = {"tag:yaml.org,2002:str": str, "tag:yaml.org,2002:int": int, "tag:yaml.org,2002:float": Decimal}


def _scalar(event: yaml.ScalarEvent, plain_seen: dict):
    """YAML 1.1 plain scalars as PyYAML's safe loader reads them, except that
    numbers with a fraction become Decimal, and times ("09:00") and dates stay
    strings (no field here is a time or a date). ``plain_seen``: the plain
    scalars read so far and their values (all immutable): a big file repeats
    its keys and amounts."""
    value = event.value
    if event.tag in _TAGS:
        return _TAGS[event.tag](value)
    if event.style or not event.implicit[0]:  # libyaml: plain is "" (None in pure PyYAML)
        return value  # quoted, or tagged
    known = plain_seen.get(value, _NO_KEY)
    if known is _NO_KEY:
        known = plain_seen[value] = _plain(value)
    return known


def _plain(value: str):
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
    """Builds the data from the events in one loop. The innermost open
    container's state lives in local variables (a 100,000-agent file is
    about 700,000 events, so every attribute lookup and call per event
    shows in the load time); enclosing ones wait on a stack."""

    def __init__(self, lines: dict[Path, int] | None, issues: list[Issue], environ) -> None:
        self.lines = lines
        self.issues = issues
        self.environ = environ
        self.anchors: dict[str, object] = {}

    def run(self, events, result: Source) -> None:
        lines, issues, environ, anchors = self.lines, self.issues, self.environ, self.anchors
        scalar_event, alias_event = yaml.ScalarEvent, yaml.AliasEvent
        map_start, seq_start = yaml.MappingStartEvent, yaml.SequenceStartEvent
        map_end, seq_end = yaml.MappingEndEvent, yaml.SequenceEndEvent
        document_start = yaml.DocumentStartEvent
        documents = 0
        stack: list[tuple] = []  # the enclosing containers' states
        # The innermost open container (None at the top level), its path, the
        # key waiting for its value (mappings), its anchor, its merge keys'
        # values, and the line of the waiting key.
        # Any: which of dict or list a container is, is_map says (checked once, not per value).
        container: Any = None
        path: tuple[Any, ...] = ()
        key: Any = _NO_KEY
        merges: list[Any] = []
        is_map, anchor, key_line = False, None, 0
        root: object = _NO_KEY
        plain_seen: dict = {}

        for event in events:
            kind = type(event)
            if kind is scalar_event:
                value = _scalar(event, plain_seen)
                if type(value) is str and "${" in value and container is not None:
                    line = event.start_mark.line + 1
                    if not is_map:
                        value = _substitute(value, path, line, issues, environ)
                    elif key is not _NO_KEY:
                        value = _substitute(value, path + (key,), line, issues, environ)
                if event.anchor:
                    anchors[event.anchor] = value
            elif kind is map_start or kind is seq_start:
                child: tuple[Any, ...]
                if container is None:
                    child = ()
                elif not is_map:
                    child = path + (len(container),)
                else:
                    child = path + (key,) if key is not _NO_KEY else path
                if lines is not None:
                    lines.setdefault(child, event.start_mark.line + 1)
                stack.append((container, is_map, path, key, anchor, merges, key_line))
                is_map = kind is map_start
                container, path, key, anchor, merges = ({} if is_map else []), child, _NO_KEY, event.anchor, []
                continue
            elif kind is map_end or kind is seq_end:
                value = container
                for merged in merges:
                    if isinstance(merged, dict):
                        for k, v in merged.items():
                            value.setdefault(k, v)
                if anchor:
                    anchors[anchor] = value
                container, is_map, path, key, anchor, merges, key_line = stack.pop()
            elif kind is alias_event:
                if event.anchor not in anchors:
                    issues.append(Issue("", event.start_mark.line + 1, f"unknown alias *{event.anchor}"))
                value = anchors.get(event.anchor)
            else:  # stream and document events
                if kind is document_start:
                    documents += 1
                    if documents == 2:  # PyYAML's safe_load would refuse it; the last must not silently win
                        issues.append(Issue("", event.start_mark.line + 1,
                                            "a second YAML document (---): budgets.yaml is one document"))
                continue

            # Place the value in the innermost container.
            if container is None:
                root = value
            elif not is_map:
                if lines is not None:
                    lines.setdefault(path + (len(container),), event.start_mark.line + 1)
                container.append(value)
            elif key is _NO_KEY:  # the value is a key
                line = event.start_mark.line + 1
                if not isinstance(value, (str, int)) or isinstance(value, bool):
                    issues.append(Issue(dotted(path), line, f"key {value!r} must be a string"))
                    value = f"<{value!r}>"
                key, key_line = str(value), line
                if key in container:  # every key but "<<" is in the container once its value came
                    issues.append(Issue(dotted(path + (key,)), line, "duplicate key"))
            elif key == "<<":  # merge keys: applied when the mapping ends
                merges.extend(value if isinstance(value, list) else [value])
                key = _NO_KEY
            else:
                if lines is not None:
                    lines[path + (key,)] = key_line
                container[key] = value
                key = _NO_KEY
        result.empty = root is _NO_KEY or root is None
        result.data = {} if root is _NO_KEY else root


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
