"""Job detail in a real terminal follows a job that a real worker is sending, with no key pressed.

`mani-console` runs in tmux on the test's SQLite store and Redis namespace; a real `mani worker`
sends a rate-limited job to a real SMTP server. The screen is read with capture-pane: the job's
"N sent" count must show several values in turn while nobody touches the keyboard.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
import uuid

import pytest

from actors.enqueue import enqueue_after_commit
from backend.companies.store import set_company_settings
from backend.core.followups import Followups
from backend.core.settings import reset_settings_cache
from models import Company
from models.db import session_scope
from tests.support.engine import people, submit, write_csv
from tests.support.workers import WorkerProcess, wait_for_job
from tests.test_console_tmux import REPO, Tmux, _console_command

pytestmark = [pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
              pytest.mark.redis, pytest.mark.slow, pytest.mark.xdist_group("workers")]

SENT = re.compile(r"([\d,]+) sent")


def test_job_detail_counts_move_while_a_worker_sends(sqlite_db, redis_smtp, tmp_path, monkeypatch):
    monkeypatch.setenv("MANI_BATCH_SIZE", "10")
    reset_settings_cache()
    with session_scope() as session:
        session.add(Company(id="paced", name="Paced Co"))
        session.flush()
        # 120 recipients at 8 a second: about 15 s of sending, so the screen can watch it happen.
        set_company_settings(session=session, company_id="paced", values={"rate_limit": "8"}, actor="test", source="cli")
    job_id = submit(write_csv(tmp_path / "paced.csv", people(120, domain="paced.example")), company_id="paced")

    name = f"mani-live-{uuid.uuid4().hex[:8]}"
    env = {key: value for key, value in os.environ.items() if key.startswith("MANI_")}
    env.update(PYTHONPATH=str(REPO), TERM="xterm-256color")
    exports = " ".join(f"{key}={shlex.quote(value)}" for key, value in env.items())
    command = f"cd {shlex.quote(str(tmp_path))} && env {exports} {_console_command(tmp_path)} --refresh 1"
    subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "160", "-y", "48", command], check=True)
    console = Tmux(name)
    worker = None
    try:
        console.wait_for("Active jobs")
        console.run("send-keys", "-t", name, "2")  # History
        console.wait_for("jobs 1–1 of 1")
        console.run("send-keys", "-t", name, "Enter")  # the job's detail
        console.wait_for("Recipients")
        console.wait_for(" 0 sent")  # loaded, and nothing sent yet

        worker = WorkerProcess(threads=4, log=tmp_path / "worker.log")
        assert enqueue_after_commit(Followups(dispatch_job_ids=[job_id]))
        seen: list[int] = []  # from here on, no key is sent: only the screen is read
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            counts = [int(found.replace(",", "")) for found in SENT.findall(console.screen())]
            if counts and (not seen or counts[0] != seen[-1]):
                seen.append(counts[0])
            if seen and seen[-1] == 120:
                break
            time.sleep(0.25)
        job = wait_for_job(job_id, timeout=60, log=worker.log)
    finally:
        if worker is not None:
            worker.stop()
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
    assert job.status == "completed" and job.sent_count == 120
    assert seen == sorted(seen), f"the sent count went backwards: {seen}"
    assert seen[-1] == 120, f"the screen never showed the job's end; it showed {seen}"
    between = [count for count in seen if 0 < count < 120]
    assert len(between) >= 2, f"the screen showed too few counts on the way (no refresh by itself?): {seen}"
