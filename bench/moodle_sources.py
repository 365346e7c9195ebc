"""Moodle selections at IOMAD scale: 100,000 users and 500,000 enrolments, 50,000 recipients per selection,
from the query to a stored job, on MariaDB and PostgreSQL.

Run: .venv/bin/python bench/moodle_sources.py [--servers mariadb,postgres] [--users 100000]
     [--mariadb-url URL] [--postgres-url URL] [--keep] [--cli]
Builds a throwaway database per server (tables from tests/support/moodle/install_subset.xml,
prefix mdl_), loads the site in bulk, then for each selection runs one child process that reads
the selection and writes the job into a fresh embedded store (SQLite, create_job). Prints per
selection: recipients, seconds (query + job) and the child's peak RSS. Targets: <= 10 s and
<= 300 MB for 50,000 recipients.

With --cli, each selection is also run as the admin runs it: `mani submit --moodle --company 1
--type ... --json` in a fresh process and a fresh embedded store, timed from the process start
to its exit (imports, settings, query, job, commit; no sending), peak RSS from wait4.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import peak_rss_mb  # noqa: E402

AT = 1_800_000_000
DAY = 86400
COURSES = 5
TRACKED = 10
CHUNK = 20_000
TARGET_SECONDS, TARGET_MB = 10.0, 300.0
SELECTIONS = {
    "welcome_std": {"since": AT - DAY},
    "welcome_lic": {"since": AT - DAY},
    "reengagement": {"course_id": 1},
    "reminder": {"course_id": 1},
    "certificate": {"since": AT - 7 * DAY},
}


# Loading ------------------------------------------------------------------------------------------


def site_rows(users: int):
    """(table, columns, row generator) in load order. Half the users are new, half completed course 1."""
    half = users // 2

    def user_rows():
        for uid in range(1, users + 1):
            created = AT - 3600 if uid <= half else AT - 400 * DAY
            email = f"user{uid}@example.com" if uid % 5000 else "broken-address"
            yield (uid, "manual", 1, 1, f"user{uid}", "", "", f"Fïrst{uid % 97}", f"Låst{uid % 89}", email, created)

    def company_users():
        for uid in range(1, users + 1):
            yield (1, uid, 1, 0)
            if uid % 10 == 0:  # a tenth are in two departments
                yield (1, uid, 2, 0)

    def enrolments():
        for course in range(1, COURSES + 1):
            for uid in range(1, users + 1):
                yield (course, uid, 0, AT - 100 * DAY, 0, AT - 100 * DAY)

    def role_assignments():
        for course in range(1, COURSES + 1):
            for uid in range(1, users + 1):
                yield (5, 100 + course, uid)

    def last_access():
        for uid in range(1, users + 1):  # course 1: the first half stopped coming 60 days ago
            yield (uid, 1, AT - 60 * DAY if uid <= half else AT - DAY)

    def activity_completions():
        for uid in range(1, half + 1):
            for cmid in (1, 2, 3):
                yield (cmid, uid, 1, AT - 10 * DAY)

    def completions():
        for uid in range(half + 1, users + 1):
            yield (uid, 1, AT - DAY)

    def grades():
        for uid in range(half + 1, users + 1):
            yield (1, uid, 50 + uid % 50)

    def allocations():
        for uid in range(1, half + 1):
            yield (1, uid, 1, AT - 3600)

    return [
        ("company", ("id", "name", "shortname", "city", "country"), iter([(1, "Bench Co", "bench", "Oslo", "NO")])),
        ("role", ("id", "shortname", "name", "description", "archetype", "sortorder"),
         iter([(5, "student", "", "", "student", 5)])),
        ("course", ("id", "fullname", "shortname", "enddate"),
         ((c, f"Course {c} 🎓", f"c{c}", AT + 30 * DAY) for c in range(1, COURSES + 1))),
        ("company_course", ("companyid", "courseid", "departmentid"), ((1, c, 1) for c in range(1, COURSES + 1))),
        ("context", ("id", "contextlevel", "instanceid"), ((100 + c, 50, c) for c in range(1, COURSES + 1))),
        ("enrol", ("id", "enrol", "courseid", "status"), ((c, "manual", c, 0) for c in range(1, COURSES + 1))),
        ("modules", ("id", "name"), iter([(1, "quiz")])),
        ("course_modules", ("id", "course", "module", "instance", "completion"),
         ((cm, 1, 1, cm, 1) for cm in range(1, TRACKED + 1))),
        ("grade_items", ("id", "courseid", "itemtype", "grademax"), iter([(1, 1, "course", 100)])),
        ("companylicense", ("id", "name", "companyid", "expirydate"), iter([(1, "Bench license", 1, AT + 365 * DAY)])),
        ("user", ("id", "auth", "confirmed", "mnethostid", "username", "password", "idnumber", "firstname",
                  "lastname", "email", "timecreated"), user_rows()),
        ("company_users", ("companyid", "userid", "departmentid", "suspended"), company_users()),
        ("user_enrolments", ("enrolid", "userid", "status", "timestart", "timeend", "timecreated"), enrolments()),
        ("role_assignments", ("roleid", "contextid", "userid"), role_assignments()),
        ("user_lastaccess", ("userid", "courseid", "timeaccess"), last_access()),
        ("course_modules_completion", ("coursemoduleid", "userid", "completionstate", "timemodified"),
         activity_completions()),
        ("course_completions", ("userid", "course", "timecompleted"), completions()),
        ("grade_grades", ("itemid", "userid", "finalgrade"), grades()),
        ("companylicense_users", ("licenseid", "userid", "licensecourseid", "issuedate"), allocations()),
    ]


def _chunks(rows, size):
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def load(engine, kind: str, prefix: str, users: int) -> tuple[int, float]:
    """Bulk-load the site: COPY on PostgreSQL, multi-row INSERT executemany on MariaDB."""
    started = time.perf_counter()
    total = 0
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for table, columns, rows in site_rows(users):
            name = f"{prefix}{table}"
            column_list = ", ".join(f'"{c}"' if kind == "postgres" else f"`{c}`" for c in columns)
            if kind == "postgres":
                with cursor.copy(f'COPY "{name}" ({column_list}) FROM STDIN') as copy:
                    for row in rows:
                        copy.write_row(row)
                        total += 1
            else:
                statement = f"INSERT INTO `{name}` ({column_list}) VALUES ({', '.join(['%s'] * len(columns))})"
                for chunk in _chunks(rows, CHUNK):
                    cursor.executemany(statement, chunk)
                    total += len(chunk)
        raw.commit()
        # Fresh statistics, as a live Moodle's autovacuum / InnoDB keep them.
        if kind == "postgres":
            cursor.execute("ANALYZE")
            raw.commit()
        else:
            for table, _, _ in site_rows(0):
                cursor.execute(f"ANALYZE TABLE `{prefix}{table}`")
                cursor.fetchall()
    finally:
        raw.close()
    return total, time.perf_counter() - started


# Measuring (child process) --------------------------------------------------------------------------


def measure(url: str, prefix: str, kind: str) -> dict:
    """One selection, query to stored job, in this (fresh) process."""
    from backend.jobs.create import create_job
    from backend.jobs.moodle_source import moodle_job_rows, select_moodle_recipients
    from backend.moodle.source import SelectionOptions, open_moodle
    from models.db import get_engine, session_scope, upgrade

    upgrade(get_engine())
    # The read alone first (the figure that is the Moodle server's and the reader's), then the whole path.
    with open_moodle(url, prefix=prefix) as source:
        started = time.perf_counter()
        selection = select_moodle_recipients(
            source=source, options=SelectionOptions(type=kind, company_id=1, at=AT, **SELECTIONS[kind]),
        )
        sum(1 for _ in moodle_job_rows(selection))
        read_seconds = time.perf_counter() - started
    started = time.perf_counter()
    with open_moodle(url, prefix=prefix) as source:
        selection = select_moodle_recipients(
            source=source, options=SelectionOptions(type=kind, company_id=1, at=AT, **SELECTIONS[kind]),
            site_url="https://moodle.example.org",
        )
        with session_scope() as session:
            created = create_job(
                session=session, job_type=kind, rows=moodle_job_rows(selection),
                available_variables=selection.available_variables, source="moodle",
                source_name=selection.source_name,
            )
            accepted, rejected = created.accepted, len(created.rejected)
    seconds = time.perf_counter() - started
    return {"recipients": accepted, "invalid": rejected, "seconds": seconds, "read_seconds": read_seconds,
            "peak_rss_mb": peak_rss_mb(os.getpid())}


CLI_OPTIONS = {
    "welcome_std": ["--since", "24h"],
    "welcome_lic": ["--since", "24h"],
    "reengagement": ["--course", "1"],
    "reminder": ["--course", "1"],
    "certificate": ["--since", "7d"],
}


def run_cli(url: str, prefix: str, kind: str) -> dict:
    """`mani submit --moodle` in its own process: wall seconds to exit, peak RSS (wait4), its JSON."""
    mani = Path(sys.executable).parent / "mani"
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "MANI_DATA_DIR": folder, "MANI_CONFIG": str(Path(folder) / "none.toml"),
               "MANI_MOODLE_DATABASE_URL": url, "MANI_MOODLE_TABLE_PREFIX": prefix}
        env.pop("MANI_DATABASE_URL", None)
        env.pop("MANI_REDIS_URL", None)
        subprocess.run([str(mani), "db", "upgrade"], env=env, capture_output=True, check=True)
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(AT))
        command = [str(mani), "submit", "--moodle", "--company", "1", "--type", kind, *CLI_OPTIONS[kind],
                   "--at", at, "--json"]
        started = time.perf_counter()
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            child = subprocess.Popen(command, env=env, stdout=out, stderr=err)
            _, status, usage = os.wait4(child.pid, 0)
            seconds = time.perf_counter() - started
            child.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read().decode(), err.read().decode()
    if child.returncode != 0:
        raise RuntimeError(f"mani submit --moodle --type {kind} failed:\n{stderr[-3000:]}")
    document = json.loads(stdout)
    return {"recipients": document["accepted"], "invalid": document.get("invalid", 0), "seconds": seconds,
            "peak_rss_mb": usage.ru_maxrss / 1024}


def run_child(url: str, prefix: str, kind: str) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "MANI_DATA_DIR": folder, "MANI_CONFIG": str(Path(folder) / "none.toml")}
        env.pop("MANI_DATABASE_URL", None)
        env.pop("MANI_REDIS_URL", None)
        output = subprocess.run(
            [sys.executable, __file__, "--measure", kind, "--url", url, "--prefix", prefix],
            env=env, capture_output=True, text=True, check=False,
        )
    if output.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{output.stderr[-3000:]}")
    return json.loads(output.stdout.strip().splitlines()[-1])


# Main ------------------------------------------------------------------------------------------------


def bench_server(kind: str, admin_url: str, users: int, keep: bool, cli: bool = False) -> list[str]:
    from sqlalchemy import create_engine, text

    from tests.support.moodle_schema import create_moodle_tables

    name = f"mani_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        if kind == "mariadb":
            connection.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
        else:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    failures = []
    try:
        engine = create_engine(url)
        create_moodle_tables(engine, "mdl_", with_config=False)
        rows, seconds = load(engine, kind, "mdl_", users)
        engine.dispose()
        print(f"\n{kind}: loaded {rows:,} rows ({users:,} users, {users * COURSES:,} enrolments) "
              f"in {seconds:.1f} s ({rows / seconds:,.0f} rows/s)")
        for selection in SELECTIONS:
            result = run_child(url, "mdl_", selection)
            ok = result["seconds"] <= TARGET_SECONDS and result["peak_rss_mb"] <= TARGET_MB
            print(f"  {selection:<13} {result['recipients']:>7,} recipients + {result['invalid']:>3} invalid -> job "
                  f"in {result['seconds']:5.2f} s (reading alone {result['read_seconds']:4.2f} s), peak RSS {result['peak_rss_mb']:6.1f} MB  {'ok' if ok else 'OVER'}")
            if not ok:
                failures.append(f"{kind} {selection}")
        for selection in SELECTIONS if cli else ():
            result = run_cli(url, "mdl_", selection)
            ok = result["seconds"] <= TARGET_SECONDS and result["peak_rss_mb"] <= TARGET_MB
            print(f"  mani submit --moodle --type {selection:<13} {result['recipients']:>7,} recipients "
                  f"+ {result['invalid']:>3} invalid: {result['seconds']:5.2f} s to exit, "
                  f"peak RSS {result['peak_rss_mb']:6.1f} MB  {'ok' if ok else 'OVER'}")
            if not ok:
                failures.append(f"{kind} mani submit --moodle {selection}")
    finally:
        if not keep:
            with admin.connect() as connection:
                if kind == "mariadb":
                    connection.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
                else:
                    connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        else:
            print(f"  kept database {name}")
        admin.dispose()
    return failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="mariadb,postgres")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--mariadb-url", default=os.environ.get("MANI_TEST_MARIADB_URL",
                                                               "mysql+pymysql://root@127.0.0.1:3306/test"))
    parser.add_argument("--postgres-url", default=os.environ.get("MANI_TEST_POSTGRES_URL",
                                                                "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--keep", action="store_true", help="keep the bench databases")
    parser.add_argument("--cli", action="store_true", help="also time `mani submit --moodle` per selection")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", default="mdl_", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.url, args.prefix, args.measure)))
        return
    print(f"targets: 50,000 recipients from query to stored job in <= {TARGET_SECONDS:.0f} s, "
          f"peak RSS <= {TARGET_MB:.0f} MB (per selection, in its own process)")
    # Figures from a busy machine are not figures: say how busy it was.
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    failures = []
    for kind in args.servers.split(","):
        url = args.mariadb_url if kind == "mariadb" else args.postgres_url
        failures += bench_server(kind, url, args.users, args.keep, args.cli)
    if failures:
        print(f"\nover target: {', '.join(failures)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
