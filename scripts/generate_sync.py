"""Write the sync client and its tests from the async ones (the approach of
httpcore's unasync): the async code is written once, the sync code is
derived by plain substitutions.

    scripts/generate_sync.py          write the generated files
    scripts/generate_sync.py --check  write nothing; fail if a file differs

Either way it fails when a substitution matches nowhere in its files: a rule
left over after the async code changed is a rule nobody can trust.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIENT = "client/budgetd_client"

Rule = tuple[str, str]  # (regular expression, replacement)

# The async file's docstring says where its sync twin comes from; the twin's says not to edit it.
HEADER: Rule = (
    r'\A"""(.*?)``\w+\.py`` is generated from\s+this\s+file\s+by\s+``scripts/generate_sync\.py``;\s+edit\s+here,'
    r'\s+then\s+run\s+``make generate``\.',
    r'"""Generated from the async file by scripts/generate_sync.py: do not edit; change the\nasync file and run '
    r'`make generate`.')

# What async and sync code share; after the rules particular to each (longer patterns first).
COMMON: list[Rule] = [
    (r"\bAsyncBudget\b", "Budget"),
    (r"\basync def\b", "def"),
    (r"\bawait ", ""),
]

CLIENT_RULES: list[Rule] = [
    HEADER,
    (r"\b_async_wrap\b", "_sync_wrap"),
    (r"\bis_async=True\b", "is_async=False"),
    (r"\bAsyncGuardedStream\b", "GuardedStream"),
    (r"\b__aiter__\b", "__iter__"),
    (r"\b__anext__\b", "__next__"),
    (r"^import grpc\.aio\n", ""),
    (r"^import asyncio\n", ""),
    (r"\bawait asyncio\.sleep\(", "time.sleep("),
    (r"\bTaskRetrier\b", "ThreadRetrier"),
    (r"\bgrpc\.aio\b", "grpc"),
    (r"\bAsyncGuard\b", "Guard"),
    (r"\basync for\b", "for"),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\bbetween tasks\b", "between threads"),
    *COMMON,
]

TEST_RULES: list[Rule] = [
    HEADER,
    # `with pytest.raises(...)` around `async with` stays two blocks when both become `with`.
    (r'\A(""".*?""")\n', r"\1\n# ruff: noqa: SIM117\n"),
    (r"\bAsyncFakeBudget\b", "FakeBudget"),
    (r"\bAsyncOpenAI\b", "OpenAI"),
    (r"\basync with\b", "with"),
    *COMMON,
]


@dataclass(frozen=True)
class Group:
    """Files rewritten by one list of rules: (async source, generated file) pairs."""

    rules: list[Rule]
    files: list[tuple[str, str]]


GROUPS = [
    Group(CLIENT_RULES, [(f"{CLIENT}/_async.py", f"{CLIENT}/_sync.py"),
                         (f"{CLIENT}/_async_wrap.py", f"{CLIENT}/_sync_wrap.py")]),
    Group(TEST_RULES, [("tests/e2e/test_async_client.py", "tests/e2e/test_sync_client.py")]),
]


class UnusedRule(Exception):
    """A substitution matched nowhere in the files of its group."""


def unasync(sources: dict[str, str], rules: list[Rule]) -> dict[str, str]:
    """Each source text rewritten by every rule in order; raises UnusedRule
    naming the rules that matched in none of them."""
    uses = dict.fromkeys(range(len(rules)), 0)
    rewritten = {}
    for name, text in sources.items():
        for i, (pattern, replacement) in enumerate(rules):
            text, count = re.subn(pattern, replacement, text, flags=re.MULTILINE | re.DOTALL)
            uses[i] += count
        rewritten[name] = text
    unused = [rules[i][0] for i, count in uses.items() if not count]
    if unused:
        raise UnusedRule(f"rules that match nothing in {', '.join(sources)}: {unused}; remove them")
    return rewritten


def render(group: Group, root: Path = ROOT) -> dict[Path, str]:
    """The generated files of a group, by path, as they should read."""
    sources = {source: (root / source).read_text() for source, _ in group.files}
    rewritten = unasync(sources, group.rules)
    return {root / target: rewritten[source] for source, target in group.files}


def drift(groups: list[Group], root: Path = ROOT) -> list[Path]:
    """The generated files that do not read as they should."""
    return [path for group in groups for path, text in render(group, root).items()
            if not path.exists() or path.read_text() != text]


def main(argv: list[str]) -> int:
    try:
        if "--check" in argv:
            stale = drift(GROUPS)
            for path in stale:
                print(f"{path.relative_to(ROOT)} is stale: run 'make generate' and commit the result")
            return 1 if stale else 0
        for group in GROUPS:
            for path, text in render(group).items():
                path.write_text(text)
                print(f"wrote {path.relative_to(ROOT)}")
    except UnusedRule as err:
        print(f"generate_sync: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
