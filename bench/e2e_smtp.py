"""End-to-end mail benchmark: mani against a bare smtplib loop and a cron-style sender.

    /work/venv/bin/python bench/e2e_smtp.py                    # 50,000 recipients, SQLite
    /work/venv/bin/python bench/e2e_smtp.py --db postgres --recipients 10000

Every phase sends the same welcome messages (text + html) to bench/smtp_sink.py running in
its own process, restarted per phase so each count is that phase's alone:
- sink ceiling: pipelined raw sockets, the most the sink can take here (for reference);
- raw limit: the legacy `email.mime` API (the cheapest composer in the standard library) and
  `smtplib.sendmail` over one persistent connection per process, with mani's process count
  (`--raw-threads 8` adds a run with as many connections as mani's threads, for comparison);
- naive: one connection per message, in sequence, as a cron job sends (run on a sample and
  extrapolated);
- CSV intake: `backend.jobs.create.submit_csv` in a process of its own, on a scratch database;
- mani: `mani worker --processes P --threads T` against Redis, then `mani submit --csv ...
  --type welcome_std --wait` timed to the end, with the workers' peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    REPO_DIR,
    SENDER,
    SinkProcess,
    compose_rates,
    cpu_seconds,
    csv_rows,
    descendants,
    legacy_mime,
    naive,
    peak_rss_mb,
    process_name,
    raw_limit,
    sink_ceiling,
    write_csv,
)

TARGETS = {"seconds_50k": 60.0, "ratio": 1.5, "rss_mb": 300.0, "intake_50k": 3.0}


# mani -------------------------------------------------------------------------------------------


def mani_command() -> list[str]:
    script = Path(sys.executable).with_name("mani")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli"]


@contextmanager
def scratch_database(kind: str, workdir: Path, postgres_url: str, name: str):
    """A fresh database URL: a SQLite file in `workdir`, or a PostgreSQL database dropped after."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / name}.db"
        return
    from sqlalchemy import create_engine, text

    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    database = f"mani_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{database}"'))
    try:
        yield admin.url.set(database=database).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


def mani_environment(workdir: Path, database_url: str, **extra: str) -> dict[str, str]:
    from cryptography.fernet import Fernet

    env = {key: value for key, value in os.environ.items() if not key.startswith("MANI_")}
    env.update(
        MANI_DATA_DIR=str(workdir / "mani-data"),
        MANI_CONFIG=str(workdir / "no-config.toml"),
        MANI_DATABASE_URL=database_url,
        MANI_SENDER=SENDER,
        MANI_SECRET_KEY=Fernet.generate_key().decode(),
        MANI_LOG_LEVEL="WARNING",
        PYTHONPATH=str(REPO_DIR) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    env.update(extra)
    return env


def _intake_probe(csv_path: str) -> None:
    """Run in a child process (env already set): time submit_csv alone, print JSON."""
    from backend.jobs.create import submit_csv
    from models.db import get_engine, session_scope, upgrade

    upgrade(get_engine())
    started = time.perf_counter()
    with session_scope() as session:
        created = submit_csv(session=session, path=Path(csv_path), job_type="welcome_std")
    seconds = time.perf_counter() - started
    accepted = created.accepted if isinstance(created.accepted, int) else len(created.accepted)
    print(json.dumps({"seconds": seconds, "accepted": accepted}))


def intake_seconds(csv_path: Path, workdir: Path, *, db: str, postgres_url: str) -> dict:
    """backend.jobs.create.submit_csv on `csv_path` into a scratch database, commit included."""
    try:
        with scratch_database(db, workdir, postgres_url, "intake") as url:
            done = subprocess.run(
                [sys.executable, __file__, "--intake-probe", str(csv_path)],
                env=mani_environment(workdir, url), cwd=REPO_DIR, capture_output=True, text=True, timeout=600,
            )
    except Exception as error:  # noqa: BLE001 - a bench reports, it does not crash
        return {"seconds": None, "error": f"{type(error).__name__}: {error}"}
    if done.returncode != 0:
        return {"seconds": None, "error": (done.stderr.strip().splitlines() or ["failed"])[-1][:160]}
    return json.loads(done.stdout.strip().splitlines()[-1])


class RssWatcher(threading.Thread):
    """Polls the VmHWM of a process tree, keeping each process's peak."""

    def __init__(self, root: int):
        super().__init__(daemon=True)
        self.root, self.peaks, self.names, self.cpu = root, {}, {}, {}
        self.stopping = threading.Event()

    def sample(self) -> None:
        for pid in descendants(self.root):
            peak = peak_rss_mb(pid)
            if peak is not None:
                self.peaks[pid] = max(peak, self.peaks.get(pid, 0.0))
                self.names.setdefault(pid, process_name(pid))
            used = cpu_seconds(pid)
            if used is not None:
                self.cpu[pid] = used

    def run(self) -> None:
        while not self.stopping.wait(0.5):
            self.sample()


def _clear_redis(url: str, namespace: str) -> None:
    try:
        import redis

        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(f"{namespace}*", count=1000))
        if keys:
            client.delete(*keys)
    except Exception:  # noqa: BLE001
        pass


def run_mani(args, csv_path: Path, workdir: Path, sink: SinkProcess) -> dict:
    """Start the workers, time `mani submit --wait`, stop the workers; what happened."""
    command = mani_command()
    probe = subprocess.run(command + ["--help"], cwd=REPO_DIR, capture_output=True, text=True)
    if probe.returncode != 0:
        return {"seconds": None, "error": "the mani CLI does not run yet: " + (probe.stderr.strip().splitlines() or ["?"])[-1][:120]}
    try:
        import redis

        redis.Redis.from_url(args.redis_url, socket_connect_timeout=2).ping()
    except Exception as error:  # noqa: BLE001
        return {"seconds": None, "error": f"Redis at {args.redis_url} is not reachable ({error})"}

    namespace = f"mani-bench-{uuid.uuid4().hex[:8]}"
    with scratch_database(args.db, workdir, args.postgres_url, "mani") as database_url:
        env = mani_environment(
            workdir, database_url, MANI_REDIS_URL=args.redis_url, MANI_REDIS_NAMESPACE=namespace,
            MANI_EMAIL_PROVIDER="smtp", MANI_SMTP_URL=sink.url,
        )
        upgrade = subprocess.run(command + ["db", "upgrade"], env=env, cwd=REPO_DIR, capture_output=True, text=True)
        if upgrade.returncode != 0 and args.db == "postgres":
            return {"seconds": None, "error": "mani db upgrade failed: " + upgrade.stderr.strip()[-160:]}
        log_path = workdir / "worker.log"
        with open(log_path, "w") as log:
            worker = subprocess.Popen(
                command + ["worker", "--processes", str(args.processes), "--threads", str(args.threads)],
                env=env, cwd=REPO_DIR, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        watcher = RssWatcher(worker.pid)
        try:
            _wait_until_ready(worker, log_path, args.processes)
            watcher.sample()
            cpu_at_start = dict(watcher.cpu)
            watcher.start()
            children_before = os.times()
            started = time.perf_counter()
            submit = subprocess.run(
                command + ["submit", "--csv", str(csv_path), "--type", "welcome_std", "--wait", "--json"],
                env=env, cwd=REPO_DIR, capture_output=True, text=True, timeout=3600,
            )
            seconds = time.perf_counter() - started
            children_after = os.times()
            watcher.sample()
            sink_cpu = sink.cpu_seconds()
        finally:
            watcher.stopping.set()
            _stop(worker)
            _clear_redis(args.redis_url, namespace)
    worker_cpu = sum(used - cpu_at_start.get(pid, 0.0) for pid, used in watcher.cpu.items())
    submit_cpu = (children_after.children_user + children_after.children_system) - (
        children_before.children_user + children_before.children_system
    )
    outcome: dict = {
        "seconds": seconds, "exit": submit.returncode, "cpu": worker_cpu + submit_cpu,
        "worker_cpu": round(worker_cpu, 2), "submit_cpu": round(submit_cpu, 2), "sink_cpu": sink_cpu,
    }
    try:
        summary = json.loads(submit.stdout[submit.stdout.index("{"):])
        outcome.update(status=summary.get("status"), accepted=summary.get("accepted"), counts=summary.get("counts"))
    except ValueError:
        outcome["error"] = (submit.stderr.strip().splitlines() or ["no JSON from mani submit"])[-1][:160]
    if watcher.peaks:
        outcome["peak_rss_mb"] = round(max(watcher.peaks.values()), 1)
        outcome["rss_by_process"] = {f"{pid} {watcher.names.get(pid, '')[:40]}": round(mb, 1) for pid, mb in watcher.peaks.items()}
    return outcome


def _wait_until_ready(worker: subprocess.Popen, log_path: Path, processes: int, timeout: float = 60.0) -> None:
    """Until the worker log says the processes are ready, or the tree is up and settled."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if worker.poll() is not None:
            raise RuntimeError("mani worker exited: " + log_path.read_text()[-300:])
        text = log_path.read_text(errors="replace").lower()
        if text.count("ready") >= processes:
            return
        if len(descendants(worker.pid)) > processes and time.monotonic() - started > 8:
            return
        time.sleep(0.2)


def _stop(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


# Running the phases, and the report ---------------------------------------------------------------


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--intake-probe":
        _intake_probe(sys.argv[2])
        return 0
    parser = argparse.ArgumentParser(description="mani end to end against raw smtplib, on a local SMTP sink.")
    parser.add_argument("--recipients", type=int, default=50_000)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument(
        "--raw-threads", type=int, default=1,
        help="also time the raw limit with this many threads (connections) per process, like mani's --threads",
    )
    parser.add_argument("--naive-sample", type=int, default=2_000)
    parser.add_argument("--sink-impl", choices=("minimal", "aiosmtpd"), default="minimal")
    parser.add_argument("--redis-url", default=os.environ.get("MANI_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("MANI_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
        help="an existing database to connect to; the bench creates and drops its own next to it",
    )
    parser.add_argument("--skip", action="append", default=[], choices=("ceiling", "raw", "naive", "intake", "mani"))
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, CSV, SQLite file)")
    args = parser.parse_args()

    n = args.recipients
    workdir = Path(tempfile.mkdtemp(prefix="mani-bench-"))
    rows = csv_rows(n)
    started = time.perf_counter()
    csv_path = write_csv(workdir / "users.csv", n)
    print(f"{n:,} rows written to {csv_path} in {time.perf_counter() - started:.2f} s; {os.cpu_count()} CPUs,"
          f" load average {os.getloadavg()[0]:.2f} (other work on the machine skews wall times)")
    results: dict[str, dict] = {}

    def sink_phase(name: str, run, expected: int) -> None:
        """Run one baseline on a fresh sink; `run` answers (seconds, client CPU) for all n."""
        with SinkProcess(workdir, impl=args.sink_impl, name=name) as sink:
            seconds, cpu = run(sink)
            stats = sink.wait_for(expected, timeout=30)
            sink_cpu = sink.cpu_seconds()
        if sink_cpu is not None and expected < n:
            sink_cpu *= n / expected  # the naive sample, extrapolated like its time
        ok = stats["messages"] >= expected and stats["distinct_recipients"] >= expected
        results[name] = {"seconds": seconds, "cpu": cpu, "sink_cpu": sink_cpu, "messages": stats["messages"], "ok": ok}
        note = "" if ok else f"  (sink counted only {stats['messages']:,} of {expected:,})"
        print(f"  {name:<8} {seconds:8.2f} s  {n / seconds:9,.0f} msg/s  client CPU {cpu:6.2f} s"
              f"  sink CPU {sink_cpu or 0:6.2f} s{note}", flush=True)

    rates = compose_rates(rows)
    print("compose, one core: " + ", ".join(f"{k} {v:,.0f} msg/s" for k, v in rates.items()))
    sample = legacy_mime(rows[0])
    if "ceiling" not in args.skip:
        sink_phase("ceiling", lambda sink: sink_ceiling(sink.port, n, sample), n)
    if "raw" not in args.skip:
        sink_phase("raw", lambda sink: raw_limit(rows, sink.port, args.processes), n)
    if args.raw_threads > 1:
        sink_phase("raw_mt", lambda sink: raw_limit(rows, sink.port, args.processes, args.raw_threads), n)
    if "naive" not in args.skip:
        k = min(args.naive_sample, n)
        sink_phase("naive", lambda sink: tuple(value * n / k for value in naive(rows[:k], sink.port)), k)
        results["naive"]["sample"] = k
    if "intake" not in args.skip:
        results["intake"] = intake_seconds(csv_path, workdir, db=args.db, postgres_url=args.postgres_url)
        print(f"  intake   {results['intake']}", flush=True)
    if "mani" not in args.skip:
        with SinkProcess(workdir, impl=args.sink_impl, name="mani") as sink:
            outcome = run_mani(args, csv_path, workdir, sink)
            stats = sink.wait_for(n, timeout=30)
        outcome["delivered"] = stats["messages"]
        outcome["distinct"] = stats["distinct_recipients"]
        outcome["connections"] = stats["connections"]
        results["mani"] = outcome
        print(f"  mani     {json.dumps({k: v for k, v in outcome.items() if k != 'log'})}", flush=True)

    print_table(results, n, args)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    if args.keep:
        print(f"kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def print_table(results: dict[str, dict], n: int, args) -> None:
    raw = results.get("raw", {}).get("seconds")
    scale = n / 50_000
    print()
    print(f"{n:,} recipients, {args.processes} processes x {args.threads} threads, db={args.db}")
    print(f"{'phase':<52} {'seconds':>9} {'emails/s':>10} {'x raw':>7} {'CPU s':>7} {'sink CPU s':>10}")
    labels = {
        "ceiling": "sink ceiling (pipelined raw sockets, 2 connections)",
        "raw": f"raw limit (email.mime + smtplib, {args.processes} persistent conns)",
    }
    if args.raw_threads > 1:
        labels["raw_mt"] = f"raw, {args.processes} processes x {args.raw_threads} threads/conns (extra)"
    labels["naive"] = "naive (1 connection/message, sequential)"
    labels["mani"] = "mani submit --wait (end to end)"
    for key, label in labels.items():
        result = results.get(key)
        if not result or result.get("seconds") is None:
            reason = (result or {}).get("error", "skipped")
            print(f"{label:<52} {'-':>9} {'-':>10} {'-':>7} {'-':>7} {'-':>10}   {reason}")
            continue
        seconds = result["seconds"]
        ratio = f"{seconds / raw:.2f}" if raw else "-"
        cpu = f"{result['cpu']:.1f}" if result.get("cpu") is not None else "-"
        sink_cpu = f"{result['sink_cpu']:.1f}" if result.get("sink_cpu") is not None else "-"
        extra = f"   extrapolated from {result['sample']:,}" if key == "naive" else ""
        print(f"{label:<52} {seconds:9.2f} {n / seconds:10,.0f} {ratio:>7} {cpu:>7} {sink_cpu:>10}{extra}")
    print("CPU s: the senders' user+system time (mani: worker processes + the submit command);"
          " Redis and the database not included.")

    print("\ntargets" + (f" (scaled to {n:,} recipients; they are set for 50,000)" if n != 50_000 else ""))
    mani = results.get("mani", {})
    intake = results.get("intake", {})

    def verdict(value, limit, unit, fmt="{:.2f}"):
        if value is None:
            return f"  n/a (limit {limit:g} {unit})"
        return f"{fmt.format(value):>8} {unit}  (limit {limit:g})  {'PASS' if value <= limit else 'FAIL'}"

    seconds = mani.get("seconds")
    complete = mani.get("status") == "completed" and mani.get("delivered", 0) >= n and mani.get("distinct", 0) >= n
    if seconds is not None and not complete:
        print(f"  INCOMPLETE: mani ended {mani.get('status')!r} (exit {mani.get('exit')}), the sink got"
              f" {mani.get('delivered', 0):,} messages for {mani.get('distinct', 0):,} distinct recipients of {n:,}")
        seconds = None
    print(f"  all final within 60 s per 50k      {verdict(seconds, TARGETS['seconds_50k'] * scale, 's')}")
    ratio = seconds / raw if seconds and raw else None
    print(f"  at most 1.5x the raw limit's time  {verdict(ratio, TARGETS['ratio'], 'x')}")
    print(f"  worker peak RSS (largest process)  {verdict(mani.get('peak_rss_mb'), TARGETS['rss_mb'], 'MB', '{:.0f}')}")
    print(f"  CSV intake within 3 s per 50k      {verdict(intake.get('seconds'), TARGETS['intake_50k'] * scale, 's')}")
    if mani.get("seconds") is not None:
        print(f"  sink: {mani.get('delivered', 0):,} messages, {mani.get('distinct', 0):,} distinct recipients,"
              f" {mani.get('connections', 0):,} connections")


if __name__ == "__main__":
    sys.exit(main())
