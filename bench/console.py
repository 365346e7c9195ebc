"""How fast the console's queries are on a big store: 1,000 jobs and 1,000,000 recipients.

    python bench/console.py                          # SQLite file in a temp dir
    python bench/console.py --db postgres            # PostgreSQL at $MANI_TEST_POSTGRES_URL or the default
    python bench/console.py --db postgres --url postgresql+psycopg://postgres@127.0.0.1:5432/test

Seeds with bulk inserts (executemany / COPY) into the schema the migrations create (with its
`recipients (job_id, id)` and `(job_id, status, id)` indexes, which keyset paging uses), then
times what the console runs off the UI thread: a dashboard refresh (`dashboard_snapshot` +
broker stats) and opening a job of 50,000 recipients (`job_detail` + the first recipients page),
plus paging and filtering in that job. Targets: refresh < 100 ms, job detail open < 300 ms.

On PostgreSQL, `--url` names a server and a database to connect to; the bench creates a
throwaway database of its own there and drops it at the end, so it never touches that one.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

JOBS, RECIPIENTS, BIG_JOB = 1000, 1_000_000, 50_000
ACTIVE = 20
BIG_JOB_ID = 10
NOW = datetime.now(timezone.utc).replace(microsecond=0)


def job_sizes() -> list[int]:
    """Job BIG_JOB_ID (a running one, its rows in the middle of the table) has 50,000."""
    rest = (RECIPIENTS - BIG_JOB) // (JOBS - 1)
    sizes = [rest] * JOBS
    sizes[BIG_JOB_ID - 1] = BIG_JOB
    sizes[0] += RECIPIENTS - sum(sizes)
    return sizes


def seed(engine) -> tuple[int, float]:
    """Bulk-insert the store; returns (big job id, seconds)."""
    started = time.perf_counter()
    sizes = job_sizes()
    jobs, batches, recipients = [], [], []
    recipient_id = batch_id = 0
    fmt = (lambda d: d.replace(tzinfo=None).isoformat(sep=" ")) if engine.dialect.name == "sqlite" else (lambda d: d)
    for job_id, size in enumerate(sizes, start=1):
        active = job_id <= ACTIVE
        status = ("processing" if job_id <= 10 else "queued" if job_id <= 15 else "paused") if active else "completed"
        created = NOW - (timedelta(minutes=30 + job_id) if active else timedelta(hours=job_id))
        sent = int(size * 0.6) if status in ("processing", "paused") else 0 if status == "queued" else size - 5
        failed = 0 if status == "queued" else 5
        jobs.append((job_id, f"{job_id:08x}-be4c-4000-8000-{job_id:012x}", "welcome_std", "email", status, "csv",
                     f"bench-{job_id}.csv", "{}", "auto", False, size, 0, 0, -(-size // 200), sent, failed, 0, 0,
                     fmt(created), fmt(NOW), fmt(created), fmt(created) if status != "queued" else None,
                     None if active else fmt(created + timedelta(minutes=20)),
                     fmt(NOW - timedelta(seconds=5)) if status == "processing" else None, 0))
        for number, start in enumerate(range(0, size, 200), start=1):
            batch_id += 1
            n = min(200, size - start)
            b_sent = max(0, min(n, sent - start))
            b_failed = max(0, min(n - b_sent, sent + failed - start - b_sent)) if b_sent < n else 0
            batches.append((batch_id, job_id, number, n, "completed" if b_sent + b_failed == n else "queued", 1, 0,
                            b_sent, b_failed, fmt(created)))
            for i in range(start, start + n):
                recipient_id += 1
                if i < sent:
                    status_r, when = "sent", created + timedelta(seconds=(i * 1200) // max(sent, 1))
                elif i < sent + failed:
                    status_r, when = "failed", None
                else:
                    status_r, when = ("pending" if active else "sent"), (None if active else created)
                email = f"user{recipient_id}@example{job_id % 50}.org"
                recipients.append((recipient_id, job_id, batch_id, i + 2, email, email, "First", "Last", "{}",
                                   status_r, 1 if when else 0, "SMTP 550 user unknown" if status_r == "failed" else None,
                                   fmt(when) if when else None))
    job_cols = ("id, uuid, type, action, status, source, source_name, template_data, cloud_preference, allow_duplicates, "
                "total, skipped_duplicates, rejected_count, batch_count, sent_count, failed_count, bounced_count, "
                "complained_count, created_at, updated_at, enqueued_at, started_at, finished_at, last_progress_at, "
                "dispatch_attempts")
    batch_cols = "id, job_id, number, size, status, attempts, recoveries, sent_count, failed_count, created_at"
    recipient_cols = ("id, job_id, batch_id, line, email, email_norm, firstname, lastname, variables, status, attempts, "
                      "last_error, sent_at")
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if engine.dialect.name == "postgresql":
            for table, cols, rows in (("jobs", job_cols, jobs), ("batches", batch_cols, batches),
                                      ("recipients", recipient_cols, recipients)):
                with cursor.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            for table in ("jobs", "batches", "recipients"):
                cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
            cursor.execute("ANALYZE")
        else:
            cursor.execute("BEGIN")
            for table, cols, rows in (("jobs", job_cols, jobs), ("batches", batch_cols, batches),
                                      ("recipients", recipient_cols, recipients)):
                marks = ", ".join("?" * len(cols.split(",")))
                cursor.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", rows)
            cursor.execute("COMMIT")
            cursor.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
    return BIG_JOB_ID, time.perf_counter() - started


def timed(fn, runs: int) -> tuple[float, float]:
    """(first run, median of the next `runs`) in milliseconds."""
    samples = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples[0], statistics.median(samples[1:])


@contextlib.contextmanager
def throwaway_postgres(server_url: str) -> Iterator[str]:
    """A new, empty database on the server of `server_url`, dropped afterwards."""
    from sqlalchemy import create_engine

    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    name = f"mani_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        from models.db import dispose_engines

        dispose_engines()
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--url", help="sqlite: the database file's URL (empty); postgres: a server to create a "
                                      "throwaway database on")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="mani-bench-"))
    os.environ.setdefault("MANI_DATA_DIR", str(workdir))
    if args.db == "sqlite":
        os.environ["MANI_DATABASE_URL"] = args.url or f"sqlite:///{workdir / 'bench.db'}"
        return run(args)
    server = args.url or os.environ.get("MANI_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    with throwaway_postgres(server) as url:
        os.environ["MANI_DATABASE_URL"] = url
        return run(args)


def run(args: argparse.Namespace) -> int:
    from sqlalchemy import text

    from backend.jobs import queries
    from backend.ops import deadletters
    from models.db import get_engine, session_scope, upgrade

    engine = get_engine()
    upgrade(engine)
    with engine.connect() as connection:
        if connection.execute(text("select count(*) from jobs")).scalar_one():
            print(f"{engine.url.render_as_string()} is not empty: give an empty database.", file=sys.stderr)
            return 1
    big_job, seconds = seed(engine)
    print(f"seeded {JOBS:,} jobs and {RECIPIENTS:,} recipients into {args.db} in {seconds:.1f} s")

    def refresh():
        with session_scope(read_only=True) as session:
            queries.dashboard(session=session, now=NOW)
        deadletters.broker_stats()

    def open_job():
        with session_scope(read_only=True) as session:
            queries.job_detail(session=session, job_ref=big_job)
        with session_scope(read_only=True) as session:
            queries.recipients_page(session=session, job_id=big_job, limit=100)

    def page(**options):
        def run():
            with session_scope(read_only=True) as session:
                queries.recipients_page(session=session, job_id=big_job, limit=100, **options)
        return run

    def history_email():
        with session_scope(read_only=True) as session:
            queries.search_jobs(session=session, search="user987654@example")

    results = [
        ("dashboard refresh", refresh, 100),
        (f"job detail open ({BIG_JOB:,} recipients)", open_job, 300),
        ("  next page (keyset)", page(after_id=25_000), None),
        ("  last page", page(last=True), None),
        ("  filter: failed", page(status=["failed", "permanently_failed"]), None),
        ("  search address", page(search="user4242@"), None),
        ("history search by address", history_email, None),
    ]
    print(f"{'query':44} {'first ms':>9} {'median ms':>10}  target")
    failed = False
    for name, fn, target in results:
        first, median = timed(fn, args.runs)
        verdict = "" if target is None else (f"< {target} ms ok" if median < target else f"< {target} ms MISSED")
        failed |= target is not None and median >= target
        print(f"{name:44} {first:9.1f} {median:10.1f}  {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
