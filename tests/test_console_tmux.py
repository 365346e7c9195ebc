"""A real-terminal smoke test: `mani-console` in tmux, driven with send-keys, read with capture-pane."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from docs.tools.demo import seed
from models.db import session_scope

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"), pytest.mark.slow]


def _console_command(tmp_path: Path) -> str:
    """The installed `mani-console`, or a stand-in that runs the same entry point from this checkout."""
    installed = shutil.which("mani-console")
    if installed:
        return installed
    shim = tmp_path / "bin" / "mani-console"
    shim.parent.mkdir(parents=True, exist_ok=True)
    shim.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -c 'import sys; from console.app import main; "
                    f"sys.exit(main())' \"$@\"\n")
    shim.chmod(0o755)
    return str(shim)


class Tmux:
    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, *args: str) -> str:
        return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", self.name)

    def wait_for(self, text: str, attempts: int = 150) -> str:
        screen = ""
        for _ in range(attempts):  # bounded polling: no timing is asserted
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared; the screen was:\n{screen}")

    def alive(self) -> bool:
        return subprocess.run(["tmux", "has-session", "-t", self.name], capture_output=True).returncode == 0


@pytest.fixture
def tmux_console(sqlite_db, mani_env, tmp_path):
    with session_scope() as session:
        seed(session=session)
    sessions = []

    def start(*options: str) -> Tmux:
        name = f"mani-smoke-{uuid.uuid4().hex[:8]}"
        env = {**mani_env, "PYTHONPATH": str(REPO), "TERM": "xterm-256color"}
        exports = " ".join(f"{key}={shlex.quote(value)}" for key, value in env.items())
        command = f"cd {shlex.quote(str(tmp_path))} && env {exports} {_console_command(tmp_path)} {' '.join(options)}"
        subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "100", "-y", "30", command], check=True,
                       env={**os.environ, **env})
        sessions.append(name)
        return Tmux(name)

    yield start
    for name in sessions:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)


def test_mani_console_runs_in_a_real_terminal(tmux_console):
    console = tmux_console("--refresh", "1")
    screen = console.wait_for("welcome_lic")
    assert "Send rate" in screen and "Active jobs" in screen
    console.run("send-keys", "-t", console.name, "2")
    console.wait_for("jobs 1–9 of 9")
    console.run("send-keys", "-t", console.name, "Enter")  # opens the newest job
    console.wait_for("Recipients")
    console.run("send-keys", "-t", console.name, "Escape")  # alone: ESC then a key reads as alt+key
    console.wait_for("jobs 1–9 of 9")
    console.run("send-keys", "-t", console.name, "6")
    console.wait_for("Audit log")
    console.run("send-keys", "-t", console.name, "?")
    console.wait_for("Everywhere")
    console.run("send-keys", "-t", console.name, "Escape")
    console.wait_for("entries 1–5 of 5")
    for _ in range(50):
        if "Everywhere" not in console.screen():
            break
        time.sleep(0.1)
    console.run("send-keys", "-t", console.name, "q")
    for _ in range(100):
        if not console.alive():
            break
        time.sleep(0.1)
    assert not console.alive()


def test_read_only_console_says_so_and_refuses(tmux_console):
    console = tmux_console("--read-only")
    console.wait_for("read-only")  # the top bar says so
    console.run("send-keys", "-t", console.name, "4")
    console.wait_for("Acme Training")
    console.run("send-keys", "-t", console.name, "e")
    console.wait_for("Read-only")
    assert "Settings of acme" not in console.screen()  # the edit form never opened
