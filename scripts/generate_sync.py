"""Write client/budgetd_client/_sync.py from _async.py (the approach of
httpcore's unasync): the async client is written once, the sync one is
derived by plain substitutions. `make check-generated` fails on drift."""

from __future__ import annotations

import re
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "client" / "budgetd_client"

# Order matters: longer patterns first.
SUBSTITUTIONS = [
    (r'"""The async client\. .*?"""', '"""The sync client, generated from _async.py by scripts/generate_sync.py.\n\nDo not edit: change _async.py and run `make generate`."""'),
    (r"^import grpc\.aio\n", ""),
    (r"\bgrpc\.aio\.", "grpc."),
    (r"\bAsyncBudget\b", "Budget"),
    (r"\bAsyncGuard\b", "Guard"),
    (r"\basync def\b", "def"),
    (r"\basync with\b", "with"),
    (r"\bawait ", ""),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\bbetween tasks\b", "between threads"),
]


def render() -> str:
    text = (PACKAGE / "_async.py").read_text()
    for pattern, replacement in SUBSTITUTIONS:
        text = re.sub(pattern, replacement, text, flags=re.MULTILINE | re.DOTALL)
    return text


def main() -> int:
    target = PACKAGE / "_sync.py"
    target.write_text(render())
    print(f"wrote {target.relative_to(PACKAGE.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
