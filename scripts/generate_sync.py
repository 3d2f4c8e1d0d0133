"""Write client/budgetd_client/_sync.py from _async.py (the approach of
httpcore's unasync): the async client is written once, the sync one is
derived by plain substitutions. `make check-generated` fails on drift."""

from __future__ import annotations

import re
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "client" / "budgetd_client"

# (async source, generated sync file) pairs.
FILES = [("_async.py", "_sync.py"), ("_async_wrap.py", "_sync_wrap.py")]

# Order matters: longer patterns first.
SUBSTITUTIONS = [
    (r'\A"""(.*?)``_sync\w*\.py`` is generated from\s+this\s+file\s+by\s+``scripts/generate_sync\.py``;\s+edit\s+here,\s+then\s+run\s+``make generate``\.',
     r'"""Generated from the async file by scripts/generate_sync.py: do not edit; change the\nasync file and run `make generate`.'),
    (r"\b_async_wrap\b", "_sync_wrap"),
    (r"\bis_async=True\b", "is_async=False"),
    (r"\bAsyncGuardedStream\b", "GuardedStream"),
    (r"\bAsyncOpenAI\b", "OpenAI"),
    (r"\b__aiter__\b", "__iter__"),
    (r"\b__anext__\b", "__next__"),
    (r"^import grpc\.aio\n", ""),
    (r"^import asyncio\n", ""),
    (r"\bawait asyncio\.sleep\(", "time.sleep("),
    (r"\bTaskRetrier\b", "ThreadRetrier"),
    (r"\bgrpc\.aio\.", "grpc."),
    (r"\bgrpc\.aio\b", "grpc"),
    (r"\bAsyncBudget\b", "Budget"),
    (r"\bAsyncGuard\b", "Guard"),
    (r"\basync def\b", "def"),
    (r"\basync with\b", "with"),
    (r"\basync for\b", "for"),
    (r"\bawait ", ""),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\bbetween tasks\b", "between threads"),
]


def render(source: str) -> str:
    text = (PACKAGE / source).read_text()
    for pattern, replacement in SUBSTITUTIONS:
        text = re.sub(pattern, replacement, text, flags=re.MULTILINE | re.DOTALL)
    return text


def main() -> int:
    for source, target in FILES:
        (PACKAGE / target).write_text(render(source))
        print(f"wrote client/budgetd_client/{target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
