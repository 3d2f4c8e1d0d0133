"""Every command in the README, run as written from the repository, works.

The README's fenced blocks are run in the order they appear, from the
repository root, with the kind of fence saying how:

    ```sh           each block in a shell of its own (bash -e: every command must succeed)
    ```sh daemon    a long-running command (make run): started in the background and
                    waited for until budgetd answers its health check; the blocks after it
                    run against it; at the end it gets `kill -HUP <pid>` (must stay up)
                    and `kill <pid>` (must drain and exit 0), the PID it printed
    ```sh install   a command that installs into the reader's environment: run in a
                    throwaway virtualenv this test makes (its bin first on PATH)
    ```sh notest    not run: `make test` (this test is part of it)
    ```python       run with the throwaway virtualenv's python, against the daemon (the
                    OpenAI examples against a loopback fake of the OpenAI API)
    ```yaml         each block must pass `budgetctl check-config` as a file of its own
    anything else   (```text, ```console) not run: reference, or what a test cannot
                    have (Docker, a real Slack)

The shell never has the repository's .venv/bin on PATH (unless a block puts
it there), so the README must say how to reach what it uses. Every failure
names the block's line and shows its output.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from fake_provider import FakeProvider
from grpc_health.v1 import health_pb2
from helpers import ROOT, free_port, health_status, script, wait_until

README = ROOT / "README.md"
DOCS = ROOT / "docs"
SERVING = health_pb2.HealthCheckResponse.SERVING

KINDS = {
    ("sh", ""): "shell",
    ("sh", "daemon"): "daemon",
    ("sh", "install"): "install",
    ("sh", "notest"): "skip",
    ("python", ""): "python",
    ("python", "notest"): "skip",
    ("yaml", ""): "yaml",
    ("text", ""): "skip",
    ("console", ""): "skip",
}
# So the test cannot pass by running nothing.
MIN_RUNNABLE = 8  # shell, daemon, install and python blocks
MIN_PYTHON = 1
ONLY_SKIPPED_SH = {"make test"}  # the one shell command the test may leave out

BLOCK_SECONDS = {"shell": 120, "install": 600, "python": 90}
START_SECONDS = 300  # make run on a stale .venv reinstalls it first
STOP_SECONDS = 60


@dataclass
class Block:
    line: int  # of the opening fence, 1-based
    info: str
    text: str

    @property
    def kind(self) -> str | None:
        lang, _, attrs = self.info.partition(" ")
        return KINDS.get((lang, attrs.strip()))

    def name(self) -> str:
        return f"README.md line {self.line} (```{self.info})"


def readme_blocks(text: str) -> list[Block]:
    blocks, open_at, info, body = [], None, "", []
    for number, line in enumerate(text.splitlines(), 1):
        if open_at is None:
            if line.startswith("```"):
                open_at, info, body = number, line[3:].strip(), []
        elif line.strip() == "```":
            blocks.append(Block(open_at, info, "\n".join(body) + "\n"))
            open_at = None
        else:
            body.append(line)
    assert open_at is None, f"README.md line {open_at}: a fence that is never closed"
    return blocks


def _env_without_venv(tmp: Path, port: int, provider: FakeProvider) -> dict[str, str]:
    """The environment of a reader on a fresh clone: no virtualenv active,
    no budgetd settings of ours, a port and store of the test's own."""
    venv_bin = str(ROOT / ".venv" / "bin")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BUDGETD_", "OPENAI_", "PYTEST_")) and k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                                  if p and os.path.realpath(p) != os.path.realpath(venv_bin))
    env.update({
        "BUDGETD_LISTEN": f"127.0.0.1:{port}",
        "BUDGETD_ADDRESS": f"127.0.0.1:{port}",
        "BUDGETD_DASHBOARD_LISTEN": f"127.0.0.1:{free_port()}",
        "RUN_DIR": str(tmp / "run"),
        "OPENAI_API_KEY": "sk-readme-test",
        "OPENAI_BASE_URL": provider.base_url,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
    })
    return env


def _tail(text: str, lines: int = 80) -> str:
    kept = text.rstrip().splitlines()
    return "\n".join((["..."] if len(kept) > lines else []) + kept[-lines:])


class Runner:
    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp, self.env = tmp, env
        self.failures: list[str] = []
        self.venv: Path | None = None
        self.daemon: subprocess.Popen | None = None
        self.daemon_block: Block | None = None
        self.daemon_log = tmp / "daemon.log"
        self.pid: int | None = None
        self.ran: dict[str, int] = {}

    def fail(self, block: Block, what: str, output: str = "") -> None:
        message = f"{block.name()}: {what}\n--- the block ---\n{block.text.rstrip()}"
        if output:
            message += f"\n--- its output ---\n{_tail(output)}"
        self.failures.append(message)

    # -- environments -----------------------------------------------------------
    def venv_env(self) -> dict[str, str]:
        if self.venv is None:
            self.venv = self.tmp / "reader-venv"
            subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True, capture_output=True)
        env = dict(self.env)
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env['PATH']}"
        env["VIRTUAL_ENV"] = str(self.venv)
        return env

    # -- blocks -----------------------------------------------------------------
    def run(self, block: Block) -> None:
        kind = block.kind
        self.ran[kind] = self.ran.get(kind, 0) + 1
        if kind == "daemon":
            self.start_daemon(block)
        elif kind in ("shell", "install"):
            env = self.venv_env() if kind == "install" else self.env
            self.execute(block, ["bash", "-e", "-x", "-c", block.text], env, BLOCK_SECONDS[kind])
        elif kind == "python":
            if self.venv is None:
                self.fail(block, "a python block before any ```sh install block installed the client")
                return
            path = self.tmp / f"readme_line_{block.line}.py"
            path.write_text(block.text)
            self.execute(block, [str(self.venv / "bin" / "python"), str(path)], self.venv_env(),
                         BLOCK_SECONDS[kind])
        elif kind == "yaml":
            path = self.tmp / f"readme_line_{block.line}.yaml"
            path.write_text(block.text)
            env = dict(self.env, SLACK_WEBHOOK_URL="https://hooks.slack.invalid/readme-test")
            self.execute(block, [script("budgetctl"), "check-config", str(path)], env, 30)

    def execute(self, block: Block, argv: list[str], env: dict[str, str], seconds: float) -> None:
        try:
            done = subprocess.run(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, timeout=seconds)
        except subprocess.TimeoutExpired as err:
            out = err.stdout.decode(errors="replace") if isinstance(err.stdout, bytes) else (err.stdout or "")
            self.fail(block, f"did not finish within {seconds} s", out)
            return
        if done.returncode != 0:
            # bash -x traces the block's own commands (+); not those of what it sources (++).
            self.fail(block, f"exited {done.returncode}", re.sub(r"(?m)^\+\++ .*\n", "", done.stdout))

    # -- the daemon ---------------------------------------------------------------
    def start_daemon(self, block: Block) -> None:
        if self.daemon is not None:
            self.fail(block, "a second ```sh daemon block (the README starts one daemon)")
            return
        self.daemon_block = block
        log = self.daemon_log.open("w")
        self.daemon = subprocess.Popen(["bash", "-e", "-c", f"exec {block.text.strip()}"], cwd=ROOT, env=self.env,
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        log.close()
        address = self.env["BUDGETD_ADDRESS"]
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.daemon.poll() is not None:
                self.fail(block, f"exited {self.daemon.returncode} before it answered on {address}", self.log())
                self.daemon = None
                return
            if health_status(address, timeout=0.5) == SERVING:
                break
            time.sleep(0.2)
        else:
            self.fail(block, f"did not answer on {address} within {START_SECONDS} s", self.log())
            return
        # What the README says make run prints: its address and its PID (the
        # banner follows the listening log line; what is missing is said below).
        with contextlib.suppress(AssertionError):
            wait_until(lambda: address in self.log() and re.search(r"\bpid (\d+)", self.log()), 5)
        out = self.log()
        if address not in out:
            self.fail(block, f"the daemon is up but did not print its address {address}", out)
        found = re.search(r"\bpid (\d+)", out)
        if found is None:
            self.fail(block, "the daemon is up but did not print its PID (`kill <pid>` stops it)", out)
        else:
            self.pid = int(found.group(1))
        if not (Path(self.env["RUN_DIR"]) / "budgetd.db").exists():
            self.fail(block, f"RUN_DIR={self.env['RUN_DIR']} was not used for the store", out)

    def log(self) -> str:
        return self.daemon_log.read_text(errors="replace") if self.daemon_log.exists() else ""

    def stop_daemon(self) -> None:
        """What the README says: `kill -HUP <pid>` reloads, `kill <pid>` stops it."""
        if self.daemon is None:
            return
        block = self.daemon_block
        address = self.env["BUDGETD_ADDRESS"]
        try:
            if self.pid is not None:
                reloads = self.log().count("config reloaded")
                os.kill(self.pid, signal.SIGHUP)
                with contextlib.suppress(AssertionError):  # said below, with the daemon's output
                    wait_until(lambda: self.log().count("config reloaded") > reloads or self.daemon.poll() is not None)
                if health_status(address) != SERVING or self.daemon.poll() is not None:
                    self.fail(block, f"after `kill -HUP {self.pid}` budgetd no longer answers", self.log())
                os.kill(self.pid, signal.SIGTERM)
            else:
                os.killpg(self.daemon.pid, signal.SIGTERM)
            try:
                code = self.daemon.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.fail(block, f"still running {STOP_SECONDS} s after SIGTERM", self.log())
                return
            if code != 0:
                self.fail(block, f"exited {code} after SIGTERM (a drain exits 0)", self.log())
            if health_status(address, timeout=0.5) is not None:
                self.fail(block, f"something still answers on {address} after the daemon exited", self.log())
        finally:
            if self.daemon.poll() is None:
                os.killpg(self.daemon.pid, signal.SIGKILL)
                self.daemon.wait(10)


@pytest.mark.timeout(1200)
def test_every_readme_command_works_as_written(tmp_path):
    blocks = readme_blocks(README.read_text())
    unknown = [f"{b.name()}" for b in blocks if b.kind is None]
    assert not unknown, ("fences this test does not know (see its docstring for the kinds): "
                         + ", ".join(unknown))
    for b in blocks:
        if b.info.startswith("sh") and b.kind == "skip":
            assert b.text.strip() in ONLY_SKIPPED_SH, f"{b.name()} is left out of the test: {b.text.strip()!r}"
    runnable = [b for b in blocks if b.kind in ("shell", "daemon", "install", "python")]
    assert len(runnable) >= MIN_RUNNABLE, f"only {len(runnable)} runnable blocks in README.md"
    assert sum(b.kind == "python" for b in blocks) >= MIN_PYTHON
    assert sum(b.kind == "daemon" for b in blocks) == 1, "the README should start budgetd with one ```sh daemon block"

    with FakeProvider() as provider:
        runner = Runner(tmp_path, _env_without_venv(tmp_path, free_port(), provider))
        try:
            for block in blocks:
                runner.run(block)
        finally:
            runner.stop_daemon()
        if runner.failures:
            pytest.fail(f"{len(runner.failures)} README block(s) failed:\n\n" + "\n\n".join(runner.failures)
                        + f"\n\n--- the daemon's output ---\n{_tail(runner.log(), 40)}", pytrace=False)
    # The wrap examples reached the (fake) OpenAI API through the guarded client.
    assert provider.requests, "no README example called the OpenAI API"


# -- links ----------------------------------------------------------------------
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
MD_NAME = re.compile(r"[\w./-]*\w\.md\b")
UPWARD = re.compile(r"(?<![\w.])(?:\.\./)+[\w./-]*")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    inside, anchors = False, set()
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            inside = not inside
        elif not inside and line.startswith("#"):
            anchors.add(_slug(line.lstrip("#")))
    return anchors


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def test_readme_and_docs_name_only_what_the_repository_has():
    """Links resolve (files and headings) and stay inside the repository; a
    Markdown file named in the text exists in it (a reader of the repository
    has nothing else)."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    md_names = {Path(name).name for name in tracked if name.endswith(".md")} | {p.name for p in _pages()}
    broken = []
    for page in _pages():
        text = page.read_text()
        where = page.relative_to(ROOT)
        for target in LINK.findall(text):
            if re.match(r"[a-z]+://|mailto:", target):
                continue
            file_part, _, anchor = target.partition("#")
            dest = (page.parent / file_part).resolve() if file_part else page
            if not dest.is_relative_to(ROOT):
                broken.append(f"{where}: {target} points outside the repository")
            elif not dest.exists():
                broken.append(f"{where}: {target} does not exist")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{where}: {target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
        for path in UPWARD.findall(text):
            if not (page.parent / path).resolve().is_relative_to(ROOT):
                broken.append(f"{where}: {path} is outside the repository")
        for name in set(MD_NAME.findall(text)):
            if Path(name).name not in md_names:
                broken.append(f"{where}: names {name}, which the repository does not have")
    assert not broken, "\n".join(broken)
