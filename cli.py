"""`mani`: the command line. Thin over `backend/`; every read command has `--json`.

Exit codes: 0 ok, 1 failed, 2 unusable input.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from backend.errors import ManiError, UnusableInput

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
        from sqlalchemy.exc import OperationalError

        from models.db import DatabaseNotMigrated

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
    from backend.oswho import os_user

    return os_user()


def table(headers: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

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
    from backend.audit import record
    from backend.dispatch import enqueue_job
    from backend.jobs import submit_csv
    from backend.settings import get_settings
    from models.db import session_scope

    settings = get_settings()
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
        from actors.runner import start_worker

        # The in-process worker's start and stop lines are noise next to a progress bar.
        logging.getLogger("dramatiq").setLevel(logging.WARNING)
        embedded = start_worker(threads=8, settings=settings)
    try:
        queued = enqueue_job(job.id) if created.accepted else True
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
    from backend.dispatch import broker_errors, live_workers

    try:
        if live_workers() == 0:
            typer.echo("No mani worker is consuming from this Redis: start one with `mani worker`; "
                       "the job is stored and waits for it.", err=True)
    except broker_errors():
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
    if not queued:
        echo("The job is stored and will be dispatched when the broker is reachable (`mani worker` sweeps for it).")
    elif embedded and not wait:
        echo("The job is stored. Run `mani worker` to send it, or submit with --wait.")


def _wait_for(job_id: int, *, show_progress: bool) -> dict:
    """Poll the store until the job is final; a progress bar on a terminal."""
    from backend.job_queries import get_job, job_counts
    from models import JOB_FINAL
    from models.db import session_scope

    def snapshot():
        with session_scope(read_only=True) as session:
            job = get_job(session=session, job_ref=job_id)
            return job, (job_counts(session=session, job_id=job.id) if job.status in JOB_FINAL else None)

    job, counts = snapshot()
    interactive = show_progress and sys.stderr.isatty()
    progress = None
    if interactive:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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
    from backend.job_queries import list_jobs
    from models.db import session_scope

    with session_scope(read_only=True) as session:
        jobs = list_jobs(session=session, status=status, job_type=job_type, company_id=company, search=search, limit=limit)
    documents = [
        {"job_id": j.uuid, "id": j.id, "type": j.type, "status": j.status, "company_id": j.company_id,
         "total": j.total, "sent": j.sent_count, "failed": j.failed_count, "created_at": j.created_at.isoformat()}
        for j in jobs
    ]
    emit(documents, as_json=as_json, human=lambda: table(
        ["ID", "JOB", "TYPE", "STATUS", "COMPANY", "SENT/TOTAL", "FAILED", "CREATED"],
        [[d["id"], d["job_id"][:8], d["type"], d["status"], d["company_id"] or "-", f"{d['sent']}/{d['total']}",
          d["failed"], d["created_at"][:19].replace("T", " ")] for d in documents],
    ))


@jobs_app.command("show")
@handles_errors
def jobs_show(job: JobRef, as_json: JsonOption = False) -> None:
    """A job's summary, counts and batches."""
    from backend.job_queries import get_job, job_summary
    from models.db import session_scope

    with session_scope(read_only=True) as session:
        summary = job_summary(session=session, job=get_job(session=session, job_ref=job))

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
    from backend.job_queries import get_job, list_recipients, recipient_document
    from models.db import session_scope

    with session_scope(read_only=True) as session:
        found = get_job(session=session, job_ref=job)
        documents = [recipient_document(r) for r in
                     list_recipients(session=session, job_id=found.id, status=status, search=search, limit=limit)]
    emit(documents, as_json=as_json, human=lambda: table(
        ["EMAIL", "STATUS", "ATTEMPTS", "SENT AT", "ERROR"],
        [[d["email"], d["status"], d["attempts"], (d["sent_at"] or "")[:19], (d["error"] or "")[:60]] for d in documents],
    ))


@jobs_app.command("rejections")
@handles_errors
def jobs_rejections(job: JobRef, as_json: JsonOption = False) -> None:
    """The CSV rows a job rejected, with line and reason."""
    from backend.job_queries import get_job, list_rejections
    from models.db import session_scope

    with session_scope(read_only=True) as session:
        found = get_job(session=session, job_ref=job)
        documents = [{"line": r.line, "email": r.email, "reason": r.reason}
                     for r in list_rejections(session=session, job_id=found.id)]
    emit(documents, as_json=as_json, human=lambda: table(
        ["LINE", "EMAIL", "REASON"], [[d["line"], d["email"] or "", d["reason"]] for d in documents]))


def _job_action(name: str, job: str, as_json: bool, **options) -> None:
    from backend import job_actions
    from backend.dispatch import enqueue_batches, enqueue_job
    from models.db import session_scope

    action = getattr(job_actions, f"{name}_job")
    with session_scope() as session:
        result = action(session=session, job_ref=job, actor=who(), source="cli", **options)
    queued = True
    if result.dispatch:
        queued = enqueue_job(result.job.id)
    elif result.batch_ids:
        queued = enqueue_batches(result.batch_ids)
    if result.callback_ids:
        from backend.dispatch import enqueue_followups
        from backend.engine import Followups

        try:
            enqueue_followups(Followups(callback_ids=result.callback_ids))
        except Exception:  # noqa: BLE001 - the sweeper delivers due callbacks later
            pass
    document = {"job_id": result.job.uuid, "id": result.job.id, "status": result.job.status,
                "recipients": result.count, "enqueued": queued}
    verbs = {"retry": "queued for retry", "pause": "waiting while paused", "resume": "waiting",
             "cancel": "cancelled"}
    emit(document, as_json=as_json, human=lambda: typer.echo(
        f"Job {result.job.id} is {result.job.status}: {result.count:,} recipients {verbs[name]}."
        + ("" if queued else " The broker is unreachable; the sweeper will pick them up.")))


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
    from actors.runner import run_forever
    from backend.settings import get_settings
    from models.db import ensure_schema

    settings = get_settings()
    ensure_schema()
    broker = f"Redis {settings.redis_namespace}" if settings.redis_url else "the embedded broker (this process only)"
    typer.echo(f"mani worker: {processes} process(es) x {threads} threads on {broker}", err=True)
    run_forever(processes=processes, threads=threads, settings=settings)


@db_app.command("upgrade")
@handles_errors
def db_upgrade(as_json: JsonOption = False) -> None:
    """Migrate the database to the newest schema."""
    from models.db import upgrade

    before, after = upgrade()
    emit({"from": before, "to": after}, as_json=as_json,
         human=lambda: typer.echo(f"database at {after}" + ("" if before == after else f" (was {before or 'empty'})")))


@db_app.command("current")
@handles_errors
def db_current(as_json: JsonOption = False) -> None:
    """Show the schema revision of the database and of the code."""
    from models.db import current_revision, get_engine, head_revision

    engine = get_engine()
    document = {"database": current_revision(engine), "code": head_revision(engine),
                "url": engine.url.render_as_string(hide_password=True)}
    emit(document, as_json=as_json, human=lambda: typer.echo(
        f"{document['url']}: schema {document['database'] or 'empty'}, code needs {document['code']}"))


# --- parts mounted from other modules -----------------------------------------------------------


def _mount_optional() -> None:
    """Sub-apps of parts that live beside the core (certificates, companies, callbacks, serve)."""


_mount_optional()


def main() -> None:
    from backend.settings import get_settings

    logging.basicConfig(level=get_settings().log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Migrations announce every step at INFO; a person running `mani` wants only problems.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        from backend.secrets import install_log_masking

        install_log_masking()
    except ImportError:
        pass
    app(prog_name="mani")


if __name__ == "__main__":
    main()
