"""scripts/generate_sync.py: the sync code is the async code rewritten, and a
rule that rewrites nothing, or a generated file that was edited, fails."""

from __future__ import annotations

import importlib.util
import sys

import pytest
from helpers import ROOT

_spec = importlib.util.spec_from_file_location("generate_sync", ROOT / "scripts" / "generate_sync.py")
assert _spec is not None and _spec.loader is not None
generate_sync = sys.modules["generate_sync"] = importlib.util.module_from_spec(_spec)  # dataclasses look it up
_spec.loader.exec_module(generate_sync)

SAMPLE = '''"""A sample. ``_sync_sample.py`` is generated from this file by ``scripts/generate_sync.py``; edit here,
then run ``make generate``."""

async def test_status(budget: AsyncBudget):
    async with budget.guard("a1"):
        assert (await budget.status("a1")).daily.spent_usd == 0
'''


def test_the_async_sample_becomes_sync_with_a_do_not_edit_header():
    (text,) = generate_sync.unasync({"sample.py": SAMPLE}, generate_sync.TEST_RULES[:1] + [
        (r"\bAsyncBudget\b", "Budget"), (r"\basync def\b", "def"), (r"\basync with\b", "with"), (r"\bawait ", "")]
    ).values()
    assert text.startswith('"""Generated from the async file by scripts/generate_sync.py: do not edit;')
    assert "def test_status(budget: Budget):\n    with budget.guard" in text
    code = text.split('"""')[-1]
    assert "assert (budget.status(" in code and "async" not in code and "await" not in code


def test_a_rule_that_matches_nothing_fails_the_generation_naming_it():
    with pytest.raises(generate_sync.UnusedRule, match=r"AsyncGuardedStream"):
        generate_sync.unasync({"sample.py": SAMPLE}, [(r"\basync def\b", "def"), (r"\bAsyncGuardedStream\b", "X")])


def test_every_rule_of_the_real_groups_is_used_and_the_committed_files_are_fresh():
    assert generate_sync.drift(generate_sync.GROUPS) == []


def test_an_edited_generated_file_is_drift(tmp_path):
    (tmp_path / "a.py").write_text("async def f():\n    await g()\n")
    group = generate_sync.Group([(r"\basync def\b", "def"), (r"\bawait ", "")], [("a.py", "b.py")])
    assert generate_sync.drift([group], tmp_path) == [tmp_path / "b.py"]  # not generated yet
    (tmp_path / "b.py").write_text("def f():\n    g()\n")
    assert generate_sync.drift([group], tmp_path) == []
    (tmp_path / "b.py").write_text("def f():\n    g()  # edited by hand\n")
    assert generate_sync.drift([group], tmp_path) == [tmp_path / "b.py"]
