"""Loading budgets.yaml: parse with line numbers, validate in full, or refuse.

A config is either entirely valid or not loaded at all; callers keep the
config they had when ``load_config`` raises ``ConfigError``.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from pydantic import ValidationError

from .resolve import AgentBudget, Resolver
from .schema import Config
from .yamlsource import ConfigError, Issue, dotted, parse

__all__ = ["AgentBudget", "Config", "ConfigError", "Issue", "Resolver", "load_config", "load_config_text"]


def load_config_text(text: str, source: str = "<config>", environ: dict[str, str] | None = None) -> Config:
    # The line map is built only when validation has an error to place.
    parsed = parse(text, source, environ, with_lines=False)
    if parsed.empty:
        raise ConfigError(source, [Issue("", None, "the file is empty (or holds only comments): refused, as "
                                                   "a config with no budgets would refuse every agent")])
    if not isinstance(parsed.data, dict):
        line = parse(text, source, environ).line_of(())
        raise ConfigError(source, [Issue("", line, "the top level must be a mapping of keys")])
    try:
        config = Config.model_validate(parsed.data)
    except ValidationError as err:
        errors = err.errors()
    else:
        _take_apart(parsed.data)
        return config
    del parsed
    parsed = parse(text, source, environ)
    issues = []
    for e in errors:
        loc = tuple(part for part in e["loc"] if part != "[key]")
        message = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            message = "unknown key"
        elif isinstance(e.get("input"), (float, Decimal)) and not Decimal(e["input"]).is_finite():
            message = f"must be a finite number, got {e['input']}"
        issues.append(Issue(dotted(loc), parsed.line_of(loc), message))
    raise ConfigError(source, issues) from None


def _take_apart(data: dict) -> None:
    """Free the parsed data entry by entry: freed whole, a million agents'
    dicts go in one C call that holds the GIL for a third of a second, a
    stall of the daemon's loop while a reload runs in its worker thread."""
    for value in data.values():
        if isinstance(value, dict):
            for _ in range(len(value)):
                value.popitem()


def load_config(path: str | Path, environ: dict[str, str] | None = None) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(str(path), [Issue("", None, f"cannot read the file: {err}")]) from None
    return load_config_text(text, str(path), environ)
