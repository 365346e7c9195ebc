"""`mani`: the command line. Thin over `backend/`; every read command has `--json`.

Exit codes: 0 ok, 1 failed, 2 unusable input.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy.exc import OperationalError

from actors import broker as broker_setup
from actors.enqueue import enqueue_after_commit
from actors.runner import run_forever, start_worker
from backend.companies import connection_test
from backend.companies.catalogue import parse_assignments
from backend.companies.resolution import describe
from backend.companies.service import (
    add_company,
    company_row,
    get_company,
    list_companies,
    rename_company,
    show_company,
)
from backend.companies.store import set_company_settings, set_global_settings
from backend.core.audit import record
from backend.core.errors import ManiError, UnusableInput
from backend.core.followups import Followups
from backend.core.logs import configure_logging
from backend.core.oswho import os_user
from backend.core.secrets import generate_key, generate_key_file
from backend.core.settings import get_settings
from backend.jobs import actions as job_actions
from backend.jobs import queries
from backend.jobs.create import submit_csv
from backend.moodle import callbacks
from backend.moodle.tokens import issue_token, list_tokens, revoke_token
from models import JOB_FINAL, Job
from models.db import (
    DatabaseNotMigrated,
    current_revision,
    ensure_schema,
    get_engine,
    head_revision,
    session_scope,
    upgrade,
)

app = typer.Typer(
    name="mani",
    help="Bulk email and certificates for Moodle/IOMAD, tracked per recipient.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
jobs_app = typer.Typer(help="List, inspect, retry, pause, resume and cancel jobs.", no_args_is_help=True)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
app.add_typer(db_app, name="db")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
JobRef = Annotated[str, typer.Argument(help="Job id: the number, the uuid, or a unique uuid prefix.")]


# --- plumbing ---------------------------------------------------------------------------------


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def handles_errors(command: Callable) -> Callable:
    """Turn expected failures into one line on stderr and the right exit code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ManiError as error:
            raise fail(str(error), error.exit_code) from None
        except DatabaseNotMigrated as error:
            raise fail(str(error)) from None
        except OperationalError as error:
            raise fail(f"the database is unreachable: {error.orig}") from None

    return wrapper


def emit(data: Any, *, as_json: bool, human: Callable[[], None] | None = None) -> None:
    if as_json or human is None:
        typer.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))
    else:
        human()


def who() -> str:
    return os_user()


def table(headers: list[str], rows: list[list[Any]]) -> None:
    output = Table(*headers, box=None, pad_edge=False, header_style="bold")
    for row in rows:
        output.add_row(*("" if cell is None else str(cell) for cell in row))
    Console().print(output)


def parse_pairs(pairs: list[str] | None, *, what: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UnusableInput(f"{what} {pair!r} is not KEY=VALUE")
        values[key.strip()] = value
    return values


# --- submit -----------------------------------------------------------------------------------


@app.command()
@handles_errors
def submit(
    csv_path: Annotated[Path, typer.Option("--csv", help="The CSV file: an `email` column, and any others.")],
    job_type: Annotated[str, typer.Option("--type", help="welcome_std, welcome_lic, reengagement, reminder or certificate.")],
    company: Annotated[Optional[str], typer.Option("--company", help="Send through this company's settings.")] = None,
    data: Annotated[Optional[list[str]], typer.Option("--data", help="Template data, KEY=VALUE; repeatable.")] = None,
    action: Annotated[str, typer.Option(help="email, certificate or both.")] = "email",
    cloud: Annotated[str, typer.Option(help="auto, force_cloud or force_local.")] = "auto",
    callback_url: Annotated[Optional[str], typer.Option("--callback-url", help="Where status callbacks go.")] = None,
    allow_duplicates: Annotated[bool, typer.Option("--allow-duplicates", help="Send even to recent recipients of the same type.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Return when the job is final, with a progress bar.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Create a job from a CSV file and hand it to the workers."""
    settings = get_settings()
    if wait and not settings.redis_url and (job_type == "certificate" or action in ("certificate", "both")):
        from certificates.pool import warm_up

        warm_up()  # render processes start (one per core) while the CSV is read and the job written
    with session_scope() as session:
        created = submit_csv(
            session=session, path=csv_path, job_type=job_type, company_id=company,
            template_data=parse_pairs(data, what="--data"), action=action, cloud_preference=cloud,
            callback_url=callback_url, allow_duplicates=allow_duplicates, created_by=who(), settings=settings,
        )
        record(session=session, actor=who(), source="cli", action="job.submit", target=created.job.uuid,
               details={"type": job_type, "accepted": created.accepted, "file": str(csv_path)})
    job = created.job
    document = {
        "job_id": job.uuid, "id": job.id, "status": job.status, "type": job.type, "company_id": job.company_id,
        "total": created.rows_read, "accepted": created.accepted, "skipped_duplicates": created.skipped_duplicates,
        "rejected": [{"line": r.line, "email": r.email, "reason": r.reason} for r in created.rejected],
        "counts": created.counts,
    }
    embedded = None
    if wait and not settings.redis_url and created.accepted:

        # The in-process worker's start and stop lines are noise next to a progress bar.
        logging.getLogger("dramatiq").setLevel(logging.WARNING)
        embedded = start_worker(threads=8, settings=settings, poll_ms=100)
    try:
        queued = enqueue_after_commit(created.followups)
        if not as_json:
            _print_submitted(document, created.rejected, queued=queued, wait=wait, embedded=not settings.redis_url)
        if wait and created.accepted:
            document.update(_wait_for(job.id, show_progress=not as_json))
    finally:
        if embedded is not None:
            embedded.stop()
    if as_json:
        emit(document, as_json=True)
    elif wait and (job.provider or settings.email_provider) == "outbox":
        typer.echo(f"The messages are .eml files in {settings.effective_outbox_dir / job.uuid}")
    if wait and document["status"] in ("failed", "partial_failure"):
        raise typer.Exit(1)


def _warn_if_no_worker() -> None:
    try:
        if broker_setup.live_workers() == 0:
            typer.echo("No mani worker is consuming from this Redis: start one with `mani worker`; "
                       "the job is stored and waits for it.", err=True)
    except broker_setup.BROKER_ERRORS:
        typer.echo("The broker is unreachable; the job is stored and waits for it.", err=True)


def _print_submitted(document: dict, rejected: list, *, queued: bool, wait: bool, embedded: bool) -> None:
    echo = functools.partial(typer.echo, err=False)
    echo(
        f"Job {document['id']} ({document['job_id']}): {document['accepted']:,} recipients accepted, "
        f"{document['skipped_duplicates']:,} skipped as recent duplicates, {len(rejected):,} rows rejected."
    )
    for row in rejected[:20]:
        echo(f"  line {row.line}: {row.reason}" + (f" ({row.email})" if row.email else ""))
    if len(rejected) > 20:
        echo(f"  ... and {len(rejected) - 20:,} more: `mani jobs rejections {document['id']}` lists them all.")
    if not document["accepted"]:
        return
    if embedded and not wait:
        echo("The job is stored. Run `mani worker` to send it, or submit with --wait.")
    elif not queued:
        echo("The job is stored and will be dispatched when the broker is reachable (`mani worker` sweeps for it).")


def _wait_for(job_id: int, *, show_progress: bool) -> dict:
    """Poll the store until the job is final; a progress bar on a terminal."""
    def snapshot():
        with session_scope(read_only=True) as session:
            job = session.get(Job, job_id)
            return job, (queries.recipient_counts(session=session, job_id=job.id) if job.status in JOB_FINAL else None)

    job, counts = snapshot()
    interactive = show_progress and sys.stderr.isatty()
    progress = None
    if interactive:

        progress = Progress(TextColumn("[bold]job {task.fields[job]}[/] {task.fields[status]}"), BarColumn(),
                            MofNCompleteColumn(), TextColumn("failed {task.fields[failed]}"), TimeElapsedColumn(),
                            transient=False)
        progress.start()
        task = progress.add_task("send", total=job.total, job=job.id, status=job.status, failed=0)
    last_line = started = time.monotonic()
    warned = False
    try:
        while job.status not in JOB_FINAL:
            time.sleep(0.3)
            job, counts = snapshot()
            if not warned and job.status in ("pending", "queued") and time.monotonic() - started > 10:
                warned = True
                _warn_if_no_worker()
            done = job.sent_count + job.failed_count
            if progress is not None:
                progress.update(task, completed=done, status=job.status, failed=job.failed_count)
            elif show_progress and time.monotonic() - last_line > 10:
                typer.echo(f"job {job.id}: {job.status}, {done:,}/{job.total:,} done", err=True)
                last_line = time.monotonic()
        if progress is not None:
            progress.update(task, completed=job.sent_count + job.failed_count, status=job.status, failed=job.failed_count)
    finally:
        if progress is not None:
            progress.stop()
    if show_progress:
        typer.echo(f"Job {job.id} {job.status}: {job.sent_count:,} sent, {job.failed_count:,} failed.")
    return {"status": job.status, "counts": counts or {}}


# --- jobs -------------------------------------------------------------------------------------


@jobs_app.command("list")
@handles_errors
def jobs_list(
    status: Annotated[Optional[str], typer.Option(help="Only jobs in this status.")] = None,
    job_type: Annotated[Optional[str], typer.Option("--type", help="Only jobs of this type.")] = None,
    company: Annotated[Optional[str], typer.Option(help="Only this company's jobs.")] = None,
    search: Annotated[Optional[str], typer.Option(help="A job id prefix or a recipient's email.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """List jobs, newest first."""
    with session_scope(read_only=True) as session:
        jobs, _ = queries.search_jobs(session=session, status=status, job_type=job_type, company_id=company,
                                      search=search, limit=limit)
    documents = [job.model_dump(mode="json") for job in jobs]
    emit(documents, as_json=as_json, human=lambda: table(
        ["ID", "JOB", "TYPE", "STATUS", "COMPANY", "SENT/TOTAL", "FAILED", "CREATED"],
        [[d["id"], d["job_id"][:8], d["type"], d["status"], d["company_id"] or "-", f"{d['sent']}/{d['total']}",
          d["failed"], d["created_at"][:19].replace("T", " ")] for d in documents],
    ))


@jobs_app.command("show")
@handles_errors
def jobs_show(job: JobRef, as_json: JsonOption = False) -> None:
    """A job's summary, counts and batches."""
    with session_scope(read_only=True) as session:
        summary = queries.job_detail(session=session, job_ref=job).model_dump(mode="json")

    def human() -> None:
        s = summary
        typer.echo(f"Job {s['id']} ({s['job_id']})  {s['type']}  {s['status'].upper()}")
        typer.echo(f"  company {s['company_id'] or '-'}   route {s['route'] or '-'} via {s['provider'] or '-'}")
        if s["route_reason"]:
            typer.echo(f"  why: {s['route_reason']}")
        typer.echo(f"  {s['sent']:,}/{s['total']:,} sent, {s['failed']:,} failed, {s['skipped_duplicates']:,} skipped, "
                   f"{s['rejected']:,} rejected rows")
        typer.echo("  counts: " + ", ".join(f"{k} {v:,}" for k, v in sorted(s["counts"].items())))
        if s["error"]:
            typer.echo(f"  error: {s['error']}")
        typer.echo(f"  created {s['created_at']}  started {s['started_at'] or '-'}  finished {s['finished_at'] or '-'}")
        table(["BATCH", "STATUS", "SIZE", "SENT", "FAILED", "ATTEMPTS"],
              [[b["number"], b["status"], b["size"], b["sent"], b["failed"], b["attempts"]] for b in s["batches"][:50]])
        if len(s["batches"]) > 50:
            typer.echo(f"  ... {len(s['batches']) - 50} more batches (--json shows all)")

    emit(summary, as_json=as_json, human=human)


@jobs_app.command("recipients")
@handles_errors
def jobs_recipients(
    job: JobRef,
    status: Annotated[Optional[str], typer.Option(help="Only recipients in this status.")] = None,
    search: Annotated[Optional[str], typer.Option(help="Only emails containing this.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="At most this many.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Every recipient of a job with status, attempts, last error and sent time."""
    with session_scope(read_only=True) as session:
        job_id = queries.resolve_job_ref(session=session, job_ref=job)
        documents = [r.model_dump(mode="json") for r in
                     queries.list_recipients(session=session, job_id=job_id, status=status, search=search, limit=limit)]
    emit(documents, as_json=as_json, human=lambda: table(
        ["EMAIL", "STATUS", "ATTEMPTS", "SENT AT", "ERROR"],
        [[d["email"], d["status"], d["attempts"], (d["sent_at"] or "")[:19], (d["error"] or "")[:60]] for d in documents],
    ))


@jobs_app.command("rejections")
@handles_errors
def jobs_rejections(job: JobRef, as_json: JsonOption = False) -> None:
    """The CSV rows a job rejected, with line and reason."""
    with session_scope(read_only=True) as session:
        job_id = queries.resolve_job_ref(session=session, job_ref=job)
        documents = [r.model_dump(mode="json") for r in queries.list_rejections(session=session, job_id=job_id)]
    emit(documents, as_json=as_json, human=lambda: table(
        ["LINE", "EMAIL", "REASON"], [[d["line"], d["email"] or "", d["reason"]] for d in documents]))


def _job_action(name: str, job: str, as_json: bool, **options) -> None:
    action = getattr(job_actions, f"{name}_job")
    with session_scope() as session:
        result = action(session=session, job_ref=job, actor=who(), source="cli", **options)
    queued = enqueue_after_commit(result.followups)
    done = result.public.model_copy(update={"enqueued": queued})
    verbs = {"retry": "queued for retry", "pause": "waiting while paused", "resume": "waiting",
             "cancel": "cancelled"}
    emit(done.model_dump(mode="json"), as_json=as_json, human=lambda: typer.echo(
        f"Job {done.id} is {done.status}: {done.recipients:,} recipients {verbs[name]}."
        + ("" if queued else _not_queued())))


def _not_queued() -> str:
    if not broker_setup.reaches_workers():
        return " `mani worker` picks them up from the store."
    return " The broker is unreachable; the sweeper will pick them up."


@jobs_app.command("retry")
@handles_errors
def jobs_retry(
    job: JobRef,
    recipient: Annotated[Optional[str], typer.Option("--recipient", help="Only this email.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Send failed and permanently failed recipients again."""
    _job_action("retry", job, as_json, email=recipient)


@jobs_app.command("pause")
@handles_errors
def jobs_pause(job: JobRef, as_json: JsonOption = False) -> None:
    """Stop sending after the current chunk; resume picks up where it stopped."""
    _job_action("pause", job, as_json)


@jobs_app.command("resume")
@handles_errors
def jobs_resume(job: JobRef, as_json: JsonOption = False) -> None:
    """Carry on with a paused job."""
    _job_action("resume", job, as_json)


@jobs_app.command("cancel")
@handles_errors
def jobs_cancel(job: JobRef, as_json: JsonOption = False) -> None:
    """Stop a job for good; unsent recipients end `cancelled`."""
    _job_action("cancel", job, as_json)


# --- worker and database ----------------------------------------------------------------------


@app.command()
@handles_errors
def worker(
    processes: Annotated[int, typer.Option(help="Worker processes.", min=1)] = 1,
    threads: Annotated[int, typer.Option(help="Threads per process.", min=1)] = 8,
) -> None:
    """Run Dramatiq workers and the sweeper until SIGTERM (ready for systemd)."""
    settings = get_settings()
    ensure_schema()
    broker = f"Redis {settings.redis_namespace}" if settings.redis_url else "the embedded broker (this process only)"
    typer.echo(f"mani worker: {processes} process(es) x {threads} threads on {broker}", err=True)
    run_forever(processes=processes, threads=threads, settings=settings)


@db_app.command("upgrade")
@handles_errors
def db_upgrade(as_json: JsonOption = False) -> None:
    """Migrate the database to the newest schema."""
    before, after = upgrade()
    emit({"from": before, "to": after}, as_json=as_json,
         human=lambda: typer.echo(f"database at {after}" + ("" if before == after else f" (was {before or 'empty'})")))


@db_app.command("current")
@handles_errors
def db_current(as_json: JsonOption = False) -> None:
    """Show the schema revision of the database and of the code."""
    engine = get_engine()
    document = {"database": current_revision(engine), "code": head_revision(engine),
                "url": engine.url.render_as_string(hide_password=True)}
    emit(document, as_json=as_json, human=lambda: typer.echo(
        f"{document['url']}: schema {document['database'] or 'empty'}, code needs {document['code']}"))


# --- companies, settings and keys ---------------------------------------------------------

companies_app = typer.Typer(help="Companies (IOMAD tenants) and their cloud settings.", no_args_is_help=True)
settings_app = typer.Typer(help="Global settings stored in the database (over MANI_* and mani.toml).", no_args_is_help=True)
keys_app = typer.Typer(help="The key that encrypts stored secrets.", no_args_is_help=True)

CompanyId = Annotated[str, typer.Argument(help="The company id (Moodle company id or Job JSON tenant_id).")]
Assignments = Annotated[list[str], typer.Argument(help="KEY=VALUE ...; KEY= clears an override.", show_default=False)]


def _settings_table(described: dict) -> None:
    rows = []
    for key, entry in described["settings"].items():
        value = entry["value"]
        shown = "" if value is None else (str(value).lower() if isinstance(value, bool) else str(value))
        rows.append([key, shown, entry["source"]])
    table(["setting", "value", "from"], rows)


def _changes(changes: dict) -> None:
    if not changes:
        typer.echo("nothing changed")
    for key, change in changes.items():
        typer.echo(f"{key}: {change['from']} -> {change['to']}")


@companies_app.command("add")
@handles_errors
def companies_add(
    company_id: CompanyId,
    name: Annotated[str, typer.Option("--name", help="The company's name.")],
    as_json: JsonOption = False,
) -> None:
    """Add a company; it inherits every global setting until `mani companies set` overrides one."""
    with session_scope() as session:
        row = company_row(add_company(session=session, company_id=company_id, name=name, actor=who(), source="cli"))
    emit(row, as_json=as_json, human=lambda: typer.echo(f"added company {row['id']} ({row['name']})"))


@companies_app.command("list")
@handles_errors
def companies_list(as_json: JsonOption = False) -> None:
    """Every company, with its cloud switch and provider."""
    with session_scope(read_only=True) as session:
        rows = [company_row(company) for company in list_companies(session=session)]
    emit(rows, as_json=as_json, human=lambda: table(
        ["id", "name", "cloud", "provider", "threshold", "storage"],
        [[r["id"], r["name"], "on" if r["enabled"] else "off", r["email_provider"], r["threshold"] or "(global)",
          r["storage"] or "(global)"] for r in rows],
    ))


@companies_app.command("show")
@handles_errors
def companies_show(company_id: CompanyId, as_json: JsonOption = False) -> None:
    """A company and every setting it resolves to (secrets masked), with where each comes from."""
    with session_scope(read_only=True) as session:
        document = show_company(session=session, company_id=company_id)

    def human() -> None:
        typer.echo(f"{document['id']}  {document['name']}")
        _settings_table(document)

    emit(document, as_json=as_json, human=human)


@companies_app.command("set")
@handles_errors
def companies_set(
    company_id: CompanyId,
    assignments: Assignments = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Rename the company.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Override settings for one company: `mani companies set acme enabled=true email_provider=mailgun`."""
    values = parse_assignments(assignments or [])
    if not values and name is None:
        raise fail("give KEY=VALUE pairs or --name NAME", 2)
    changes: dict = {}
    with session_scope() as session:
        if name is not None:
            before = get_company(session=session, company_id=company_id).name
            after = rename_company(session=session, company_id=company_id, name=name, actor=who(), source="cli").name
            if after != before:
                changes["name"] = {"from": before, "to": after}
        if values:
            changes.update(set_company_settings(
                session=session, company_id=company_id, values=values, actor=who(), source="cli"
            ))
    emit(changes, as_json=as_json, human=lambda: _changes(changes))


@companies_app.command("test")
@handles_errors
def companies_test(company_id: CompanyId, as_json: JsonOption = False) -> None:
    """Check each configured piece for real (provider, sender, storage, queue, callback URL)."""
    with session_scope(read_only=True) as session:
        results = connection_test.check_company_connections(session=session, company_id=company_id)
    document = {"company": company_id, "ok": all(r.ok for r in results), "checks": [r.as_dict() for r in results]}

    def human() -> None:
        width = max(len(r.name) for r in results)
        for r in results:
            typer.echo(f"{'ok  ' if r.ok else 'FAIL'} {r.name.ljust(width)}  {r.detail}")

    emit(document, as_json=as_json, human=human)
    if not document["ok"]:
        raise typer.Exit(1)


@settings_app.command("show")
@handles_errors
def settings_show(as_json: JsonOption = False) -> None:
    """Every global setting (secrets masked) and where its value comes from."""
    with session_scope(read_only=True) as session:
        document = describe(session=session, company_id=None)
    emit(document, as_json=as_json, human=lambda: _settings_table(document))


@settings_app.command("set")
@handles_errors
def settings_set(assignments: Assignments, as_json: JsonOption = False) -> None:
    """Store global settings in the database: `mani settings set cloud_fallback_behavior=fail`."""
    values = parse_assignments(assignments or [])
    with session_scope() as session:
        changes = set_global_settings(session=session, values=values, actor=who(), source="cli")
    emit(changes, as_json=as_json, human=lambda: _changes(changes))


@keys_app.command("generate")
@handles_errors
def keys_generate(
    path: Annotated[Optional[Path], typer.Option("--path", help="Where to write the key (default: the configured key file).")] = None,
    print_only: Annotated[bool, typer.Option("--print", help="Print a new key for MANI_SECRET_KEY instead of writing a file.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing key file (stored secrets become unreadable).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Make the key that encrypts stored secrets (mode 0600). Copy it to every host."""
    if print_only:
        key = generate_key()
        emit({"key": key}, as_json=as_json, human=lambda: typer.echo(key))
        return
    target = generate_key_file(path or get_settings().effective_secret_key_file, overwrite=force)
    document = {"path": str(target), "mode": "0600"}
    emit(document, as_json=as_json, human=lambda: typer.echo(
        f"wrote a new key to {target} (mode 0600); copy it to every host, or set MANI_SECRET_KEY_FILE to it"
    ))


# --- callbacks, the HTTP API and delivery rates ---------------------------------------------

callbacks_app = typer.Typer(help="Signed status callbacks to Moodle: list, show, redeliver.", no_args_is_help=True)


def _iso(value) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


@callbacks_app.command("list")
@handles_errors
def callbacks_list(
    job: Annotated[Optional[str], typer.Option("--job", help="Only this job (id, uuid or prefix).")] = None,
    status: Annotated[Optional[str], typer.Option(help="pending, delivered or failed.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.", min=1)] = 50,
    as_json: JsonOption = False,
) -> None:
    """List callback deliveries, with the delivered share when one job is named."""
    with session_scope(read_only=True) as session:
        job_id = queries.resolve_job_ref(session=session, job_ref=job) if job else None
        rows = queries.list_deliveries(session=session, job_id=job_id, status=status, limit=limit)
        stats = queries.callback_stats(session=session, job_id=job_id) if job_id is not None else None
    documents = [row.model_dump(mode="json") for row in rows]
    summary = stats.model_dump(mode="json") if stats is not None else None

    def human() -> None:
        table(["id", "job", "kind", "updates", "status", "attempts", "last", "next attempt"],
              [[d["id"], (d["job_uuid"] or "")[:8], d["kind"], d["updates"], d["status"], d["attempts"],
                d["last_status_code"] or (d["last_error"] or "")[:30], d["next_attempt_at"]] for d in documents])
        if summary:
            share = "-" if summary["delivered_share"] is None else f"{summary['delivered_share']:.1%}"
            typer.echo(f"{summary['delivered']}/{summary['total']} delivered ({share}), "
                       f"{summary['pending']} pending, {summary['failed']} failed")

    emit({"deliveries": documents, "stats": summary} if summary else documents, as_json=as_json, human=human)


@callbacks_app.command("show")
@handles_errors
def callbacks_show(
    delivery_id: Annotated[int, typer.Argument(help="The delivery id (from `mani callbacks list`).")],
    body: Annotated[bool, typer.Option("--body", help="Also print the body it would send now.")] = False,
    as_json: JsonOption = False,
) -> None:
    """One delivery and every attempt: time, status code, error, duration."""
    with session_scope(read_only=True) as session:
        delivery, attempts = queries.delivery_log(session=session, delivery_id=delivery_id)
        preview = callbacks.build_payload(
            session=session, delivery=callbacks.get_delivery(session=session, delivery_id=delivery_id)
        ) if body else None
    document = delivery.model_dump(mode="json")
    document["attempt_log"] = [attempt.model_dump(mode="json") for attempt in attempts]
    if preview is not None:
        document["body"] = preview

    def human() -> None:
        for key in ("id", "job_uuid", "kind", "url", "status", "attempts", "updates", "next_attempt_at",
                    "delivered_at", "last_error"):
            typer.echo(f"{key:>16}: {document[key] if document[key] is not None else '-'}")
        table(["#", "at", "code", "ms", "error"],
              [[a["number"], a["started_at"], a["status_code"], a["duration_ms"], a["error"]]
               for a in document["attempt_log"]])
        if preview is not None:

            typer.echo(json.dumps(preview, indent=2, ensure_ascii=False))

    emit(document, as_json=as_json, human=human)


@callbacks_app.command("redeliver")
@handles_errors
def callbacks_redeliver(
    delivery_ids: Annotated[Optional[list[int]], typer.Argument(help="Delivery ids.")] = None,
    job: Annotated[Optional[str], typer.Option("--job", help="Every failed delivery of this job.")] = None,
    all_failed: Annotated[bool, typer.Option("--failed", help="Every failed delivery (of --job, or of all jobs).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Send deliveries again now, with a fresh retry schedule; Moodle gets the current state."""
    with session_scope() as session:
        ids = list(delivery_ids or [])
        if job or all_failed:
            job_id = queries.resolve_job_ref(session=session, job_ref=job) if job else None
            ids += callbacks.failed_delivery_ids(session=session, job_id=job_id)
        if not ids:
            raise UnusableInput("Nothing to redeliver: name delivery ids, or --job JOB, or --failed.")
        done = callbacks.redeliver(session=session, delivery_ids=sorted(set(ids)), actor=who(), source="cli")
    queued = enqueue_after_commit(Followups(callback_ids=done))
    emit({"redelivered": done, "enqueued": queued}, as_json=as_json, human=lambda: typer.echo(
        f"{len(done)} deliveries due now" + ("" if queued else " (the broker is down: the sweeper sends them)")))


@handles_errors
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (keep 127.0.0.1 behind a reverse proxy).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8080,
) -> None:
    """Run the HTTP API (Job JSON, worker callbacks, provider webhooks, /healthz, /metrics)."""
    ensure_schema()
    typer.echo(f"mani serve: http://{host}:{port}", err=True)
    # Deferred: the web stack (starlette, uvicorn, prometheus-client) is for `mani serve` alone.
    from api.app import serve as serve_api

    serve_api(host=host, port=port)


@handles_errors
def rates(
    job: Annotated[Optional[str], typer.Option("--job", help="One job (id, uuid or prefix).")] = None,
    company: Annotated[Optional[str], typer.Option("--company", help="One company.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Bounce and complaint rates (the seeds' target: bounces under 2 %)."""
    with session_scope(read_only=True) as session:
        job_id = queries.resolve_job_ref(session=session, job_ref=job) if job else None
        document = queries.delivery_rates(session=session, job_id=job_id, company_id=company).model_dump(mode="json")

    def pct(value) -> str:
        return "-" if value is None else f"{value:.2%}"

    emit(document, as_json=as_json, human=lambda: typer.echo(
        f"{document['delivered']} delivered, {document['bounced']} bounced ({pct(document['bounce_rate'])}), "
        f"{document['complained']} complained ({pct(document['complaint_rate'])})"))


@handles_errors
def companies_token(
    company_id: Annotated[str, typer.Argument(help="The company (IOMAD id / Job JSON tenant_id).")],
    revoke_others: Annotated[bool, typer.Option("--revoke-others", help="Revoke the company's older tokens.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Make a bearer token for the HTTP API; it is shown this once and stored only hashed."""
    with session_scope() as session:
        issued = issue_token(session=session, company_id=company_id, actor=who(), source="cli",
                             revoke_others=revoke_others)
    emit({"id": issued.id, "company_id": issued.company_id, "token": issued.token}, as_json=as_json,
         human=lambda: (typer.echo(issued.token),
                        typer.echo("Store it in Moodle now: mani keeps only its hash.", err=True)))


@handles_errors
def companies_tokens(
    company_id: Annotated[Optional[str], typer.Argument(help="Only this company.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List API tokens (prefix, created, last used, revoked); never the tokens themselves."""
    with session_scope(read_only=True) as session:
        rows = list_tokens(session=session, company_id=company_id)
    documents = [{"id": r.id, "company_id": r.company_id, "prefix": r.prefix, "created_at": _iso(r.created_at),
                  "created_by": r.created_by, "last_used_at": _iso(r.last_used_at), "revoked_at": _iso(r.revoked_at)}
                 for r in rows]
    emit(documents, as_json=as_json, human=lambda: table(
        ["id", "company", "prefix", "created", "last used", "revoked"],
        [[d["id"], d["company_id"], d["prefix"] + "…", d["created_at"], d["last_used_at"], d["revoked_at"]]
         for d in documents]))


@handles_errors
def companies_revoke_token(
    token_id: Annotated[int, typer.Argument(help="The token id (from `mani companies tokens`).")],
) -> None:
    """Revoke an API token at once."""
    with session_scope() as session:
        row = revoke_token(session=session, token_id=token_id, actor=who(), source="cli")
    typer.echo(f"token {row.id} ({row.prefix}…) of company {row.company_id} is revoked")


# --- certificates ---------------------------------------------------------------------------
# The certificate commands import the certificate service when they run: it loads fpdf2, which
# no other command needs (a deferred import on purpose).

certificates_app = typer.Typer(help="Certificates: preview templates, verify, revoke and export.", no_args_is_help=True)

@certificates_app.command()
@handles_errors
def preview(
    template: Annotated[str, typer.Option("--template", "-t", help="Template name or .toml/.json file.")] = "default",
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the PDF.")] = Path("certificate-preview.pdf"),
    name: Annotated[str, typer.Option(help="Recipient name on the sample.")] = "Zoë Ångström-Kovačević",
    course: Annotated[str, typer.Option(help="Course name on the sample.")] = "Workplace Health & Safety",
    grade: Annotated[Optional[str], typer.Option(help="Grade on the sample (empty hides it).")] = "92%",
    field: Annotated[Optional[list[str]], typer.Option("--set", help="KEY=VALUE for a custom field; repeatable.")] = None,
    expiry_days: Annotated[int, typer.Option(help="Show an expiry this many days ahead (0: none).")] = 365,
) -> None:
    """Write a sample certificate, to see a template before using it in a job."""
    from backend.certificates.service import fallback_fonts, template_dirs, verify_url
    from certificates import get_renderer, load_template, new_code, prepare_values

    template_obj = load_template(template, search_dirs=template_dirs())
    first, _, last = name.partition(" ")
    data: dict[str, Any] = {"firstname": first, "lastname": last, "fullname": name, "course_name": course,
                            "grade": grade or "", "email": "learner@example.com"}
    for pair in field or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UnusableInput(f"--set {pair!r} is not KEY=VALUE")
        data[key.strip()] = value
    for custom, default in template_obj.fields.items():
        data.setdefault(custom, default if default is not None else f"[{custom}]")
    code = new_code()
    now = datetime.now(timezone.utc)
    values = prepare_values(template_obj, data, code=code, verify_url=verify_url(code), issued_at=now,
                            expires_at=now + timedelta(days=expiry_days) if expiry_days > 0 else None)
    pdf = get_renderer(template_obj, fallback_fonts=fallback_fonts()).render(values, created_at=now)
    out = out.expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(pdf)
    typer.echo(f"wrote {out} ({len(pdf):,} bytes, template {template_obj.name}, sample code {code})")


@certificates_app.command()
@handles_errors
def verify(
    code: Annotated[str, typer.Argument(help="The certificate code, e.g. MANI-7K3F-Q9XZ-4M2P (any case).")],
    as_json: JsonOption = False,
) -> None:
    """Who, what and when for a code, and whether it is valid, expired or revoked."""
    from backend.certificates.service import verify as verify_code

    with session_scope(read_only=True) as session:
        result = verify_code(session=session, code=code)

    def human() -> None:
        if result["status"] == "not_found":
            typer.echo(f"{code}: no such certificate")
            return
        typer.echo(f"{result['code']}: {result['status'].upper()}")
        for label, key in (("name", "fullname"), ("email", "email"), ("course", "course_name"),
                           ("issued", "issued_at"), ("expires", "expires_at"), ("revoked", "revoked_at"),
                           ("reason", "revoke_reason"), ("job", "job_id")):
            if result.get(key):
                typer.echo(f"  {label:8} {result[key]}")

    emit(result, as_json=as_json, human=human)
    raise typer.Exit({"valid": 0, "expired": 1, "revoked": 1}.get(result["status"], 2))


@certificates_app.command()
@handles_errors
def revoke(
    code: Annotated[str, typer.Argument(help="The certificate code.")],
    reason: Annotated[Optional[str], typer.Option(help="Why; shown by verify.")] = None,
) -> None:
    """Revoke a certificate. Retrying its job afterwards issues a new one with a new code."""
    from backend.certificates.service import revoke as revoke_code

    with session_scope() as session:
        certificate = revoke_code(session=session, code=code, reason=reason, actor=os_user(), source="cli")
        shown = certificate.code
    typer.echo(f"revoked {shown}" + (f" ({reason})" if reason else ""))


@certificates_app.command("list")
@handles_errors
def list_(
    job: Annotated[str, typer.Argument(help="Job id: the number, the uuid, or a unique uuid prefix.")],
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
    offset: Annotated[int, typer.Option(help="Skip this many first.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """The certificates issued for a job."""
    from backend.certificates.service import list_certificates

    with session_scope(read_only=True) as session:
        job_id = queries.resolve_job_ref(session=session, job_ref=job)
        rows = list_certificates(session=session, job_id=job_id, limit=limit, offset=offset)

    def human() -> None:
        for row in rows:
            typer.echo(f"{row['code']}  {row['status']:8} {row['email']:32} {row['fullname']}")
        if not rows:
            typer.echo("no certificates")

    emit(rows, as_json=as_json, human=human)


@certificates_app.command()
@handles_errors
def export(
    job: Annotated[str, typer.Argument(help="Job id: the number, the uuid, or a unique uuid prefix.")],
    zip_path: Annotated[Path, typer.Option("--zip", help="The ZIP file to write.")],
    include_revoked: Annotated[bool, typer.Option(help="Also export revoked certificates.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Write every certificate of a job into one ZIP (streamed: any job size, constant memory)."""
    from backend.certificates.service import export_zip

    with session_scope(read_only=True) as session:
        job_id = queries.resolve_job_ref(session=session, job_ref=job)
        if sys.stderr.isatty() and not as_json:

            with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                          TimeRemainingColumn(), transient=True) as bar:
                task = bar.add_task("exporting", total=None)
                result = export_zip(session=session, job_id=job_id, path=zip_path, include_revoked=include_revoked,
                                    progress=lambda done, total: bar.update(task, completed=done, total=total))
        else:
            result = export_zip(session=session, job_id=job_id, path=zip_path, include_revoked=include_revoked)
    summary = {"path": str(result.path), "certificates": result.count, "missing": result.missing,
               "bytes": result.bytes_written}
    emit(summary, as_json=as_json, human=lambda: typer.echo(
        f"wrote {result.path}: {result.count} certificates, {result.bytes_written:,} bytes"
        + (f"; {len(result.missing)} missing from storage: {', '.join(result.missing[:5])}" if result.missing else "")))
    if result.missing:
        raise typer.Exit(1)


def _mount() -> None:
    """Register the sub-apps and the top-level commands defined above."""
    app.add_typer(companies_app, name="companies")
    app.add_typer(settings_app, name="settings")
    app.add_typer(keys_app, name="keys")
    app.add_typer(callbacks_app, name="callbacks")
    app.add_typer(certificates_app, name="certificates")
    app.command("serve")(serve)
    app.command("rates")(rates)
    companies_app.command("token")(companies_token)
    companies_app.command("tokens")(companies_tokens)
    companies_app.command("revoke-token")(companies_revoke_token)


_mount()


def main() -> None:
    configure_logging(get_settings().log_level)
    app(prog_name="mani")


if __name__ == "__main__":
    main()
