"""Recovery benchmark: how soon mail flows again after every worker dies, and after Redis restarts empty.

    /work/venv/bin/python bench/recovery.py                      # 20,000 recipients, SQLite
    /work/venv/bin/python bench/recovery.py --db postgres --processes 2 --threads 8

Both scenarios run against bench/smtp_sink.py and a redis-server this script starts on a free
port of its own (the shared Redis is never restarted), with mani's shipped defaults (30 s
lease renewed every 10 s, sweeps every 2 s):

- SIGKILL: once `--kill-at` messages went out, every worker process gets SIGKILL (as the OOM
  killer would) and `mani worker` starts again at once. Printed: seconds from the restart to
  the first message sent again (target 45 s), and the job's end.
- Redis restart: the redis-server is SIGKILLed mid-job (every queued, delayed and fetched
  message is gone), the batches in hand finish, then Redis starts again, empty. Printed:
  seconds from the restart to the first message sent again (target 15 s).

The sink's counts are read from its stats file, rewritten every 0.5 s: figures are ±0.5 s.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO_DIR, SinkProcess, write_csv  # noqa: E402
from e2e_smtp import _stop, _wait_until_ready, mani_command, mani_environment, scratch_database  # noqa: E402

sys.path.insert(0, str(REPO_DIR))
from tests.support.redis_server import PrivateRedis  # noqa: E402

TARGETS = {"sigkill": 45.0, "redis": 15.0}


def _worker(command: list[str], env: dict, args, log_path: Path) -> subprocess.Popen:
    with open(log_path, "a") as log:
        return subprocess.Popen(
            command + ["worker", "--processes", str(args.processes), "--threads", str(args.threads)],
            env=env, cwd=REPO_DIR, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )


def _kill_tree(worker: subprocess.Popen) -> None:
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)


def _next_message(sink: SinkProcess, after: int, timeout: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if sink.stats()["messages"] > after:
            return time.monotonic() - started
        time.sleep(0.05)
    return None


def _quiet(sink: SinkProcess, seconds: float = 2.0) -> int:
    count = sink.stats()["messages"]
    while True:
        time.sleep(seconds)
        now = sink.stats()["messages"]
        if now == count:
            return now
        count = now


def _job_end(sink: SinkProcess, total: int, timeout: float) -> tuple[float | None, int]:
    """Seconds until every recipient got its message (duplicates do not count), and messages in all."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        stats = sink.stats()
        if stats["distinct_recipients"] >= total:
            time.sleep(1.0)  # late duplicates still count towards the total
            return time.monotonic() - started - 1.0, sink.stats()["messages"]
        time.sleep(0.1)
    return None, sink.stats()["messages"]


def scenario(name: str, args, workdir: Path) -> dict:
    command = mani_command()
    csv_path = write_csv(workdir / f"{name}.csv", args.recipients)
    redis = PrivateRedis().start()
    sink = SinkProcess(workdir, name=f"sink-{name}")
    result: dict = {"scenario": name}
    try:
        with scratch_database(args.db, workdir, args.postgres_url, f"recovery-{name}") as database_url:
            env = mani_environment(workdir, database_url, MANI_REDIS_URL=redis.url, MANI_REDIS_NAMESPACE="mani-recovery",
                                   MANI_EMAIL_PROVIDER="smtp", MANI_SMTP_URL=sink.url, MANI_BATCH_SIZE=str(args.batch_size))
            subprocess.run(command + ["db", "upgrade"], env=env, cwd=REPO_DIR, check=True, capture_output=True)
            log_path = workdir / f"{name}-worker.log"
            worker = _worker(command, env, args, log_path)
            try:
                _wait_until_ready(worker, log_path, args.processes)
                subprocess.run(command + ["submit", "--csv", str(csv_path), "--type", "welcome_std", "--json"],
                               env=env, cwd=REPO_DIR, check=True, capture_output=True)
                sink.wait_for(args.kill_at, timeout=300)
                if name == "sigkill":
                    _kill_tree(worker)
                    before = sink.stats()["messages"]
                    worker = _worker(command, env, args, log_path)  # the clock starts at the restart
                else:
                    redis.kill()
                    before = _quiet(sink)
                    redis.start()
                result["kill_at"] = before
                result["resumed_after_s"] = _next_message(sink, before, timeout=600)
                result["job_end_s"], result["messages"] = _job_end(sink, args.recipients, timeout=1200)
                result["duplicates"] = result["messages"] - args.recipients
            finally:
                _stop(worker)
    finally:
        sink.stop()
        redis.kill()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--kill-at", type=int, default=3_000, help="messages sent before the failure")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--postgres-url",
                        default=os.environ.get("MANI_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--only", choices=tuple(TARGETS), help="run one scenario")
    parser.add_argument("--keep", type=Path, help="keep the worker logs in this directory")
    args = parser.parse_args()
    print(f"recovery: {args.recipients:,} recipients, batches of {args.batch_size}, "
          f"{args.processes} process(es) x {args.threads} threads, {args.db}, failure after {args.kill_at:,} sent")
    failed = False
    for name in ([args.only] if args.only else list(TARGETS)):
        if args.keep:
            (args.keep / name).mkdir(parents=True, exist_ok=True)
            result = scenario(name, args, args.keep / name)
        else:
            with tempfile.TemporaryDirectory(prefix=f"mani-recovery-{name}-") as directory:
                result = scenario(name, args, Path(directory))
        resumed = result["resumed_after_s"]
        ok = resumed is not None and resumed <= TARGETS[name]
        failed |= not ok
        what = "SIGKILL of every worker, restart" if name == "sigkill" else "Redis restarted empty"
        print(f"  {what:34s} first message again after "
              f"{'never' if resumed is None else f'{resumed:5.1f} s'} (target <= {TARGETS[name]:.0f} s: "
              f"{'ok' if ok else 'MISSED'}); job done {result['job_end_s'] and round(result['job_end_s'], 1)} s "
              f"later; {result['messages']:,} messages for {args.recipients:,} recipients "
              f"({result['duplicates']:,} duplicates)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
