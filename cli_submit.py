"""`mani submit`: a job from a CSV file or a Moodle selection (`--moodle`), or (`--dry-run`) the
preview of a CSV's, which writes nothing (`mani moodle preview` is a selection's)."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from actors import broker as broker_setup
from actors.enqueue import enqueue_after_commit
from actors.runner import start_worker
from backend.core.audit import record
from backend.core.errors import UnusableInput
from backend.core.settings import Settings, get_settings
from backend.jobs import queries
from backend.jobs.create import submit_csv
from backend.jobs.moodle_source import NothingToSend
from backend.jobs.preview import Preview, preview_csv
from cli_common import (
    CloudPreference,
    JobAction,
    JobType,
    JsonOption,
    ManiTyper,
    emit,
    handles_errors,
    parse_pairs,
    plural,
    who,
)
import cli_moodle
from models import JOB_FINAL, Job
from models.db import session_scope

# Registered without a name: `submit` is a top-level command.
submit_app = ManiTyper()

# Rejected rows printed after a submit or a dry run; `mani jobs rejections` (or --json) has all.
SHOWN_REJECTIONS = 20


@submit_app.command()
@handles_errors
def submit(
    job_type: Annotated[JobType, typer.Option("--type", help="What to send.")],
    csv_path: Annotated[Optional[Path], typer.Option("--csv", help="The CSV file: an `email` column, and any others.")] = None,
    moodle: Annotated[bool, typer.Option(
        "--moodle", help="Select the recipients in the Moodle database (`mani moodle preview` shows them).")] = False,
    company: Annotated[Optional[str], typer.Option(
        "--company", help="Send through this company's settings; with --moodle, also whose users.")] = None,
    data: Annotated[Optional[list[str]], typer.Option(
        "--data", metavar="KEY=VALUE", help="Template data; give --data once per value.")] = None,
    action: Annotated[JobAction, typer.Option(help="Email, certificate, or both.")] = JobAction.email,
    cloud: Annotated[CloudPreference, typer.Option(help="Where to send from.")] = CloudPreference.auto,
    callback_url: Annotated[Optional[str], typer.Option("--callback-url", help="Where status callbacks go.")] = None,
    allow_duplicates: Annotated[bool, typer.Option(
        "--allow-duplicates",
        help="Send even to recent recipients of the same type (--moodle certificate: issue again).")] = False,
    since: cli_moodle.SinceOption = None,
    course: cli_moodle.CourseOption = None,
    inactive_for: cli_moodle.InactiveOption = None,
    include_completed: cli_moodle.IncludeCompletedOption = False,
    unless_activity: cli_moodle.UnlessActivityOption = None,
    at: cli_moodle.AtOption = None,
    wait: Annotated[bool, typer.Option("--wait", help="Return when the job is final, with a progress bar.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Check the file (or the Moodle selection) and show what would be sent; write nothing.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Create a job from a CSV file, or from a Moodle selection (--moodle), and hand it to the workers."""
    if (csv_path is None) == (not moodle):
        raise UnusableInput("give either --csv FILE or --moodle (exactly one of them).")
    if moodle and not company:
        raise UnusableInput("--moodle needs --company: the company whose users it selects.")
    if not moodle:
        cli_moodle.moodle_only_options_given(since=since, course=course, inactive_for=inactive_for,
                                             include_completed=include_completed, unless_activity=unless_activity, at=at)
    settings = get_settings()
    template_data = parse_pairs(data, what="--data")
    if dry_run:
        if moodle:
            with session_scope(read_only=True) as session:
                made = cli_moodle.preview_selection(
                    session=session, company=company, selection_type=job_type, since=since, course=course,
                    inactive_for=inactive_for, include_completed=include_completed, unless_activity=unless_activity,
                    at=at, template_data=template_data, action=action, allow_duplicates=allow_duplicates,
                    settings=settings,
                )
            _show_dry_run(made.preview, as_json=as_json, extra=cli_moodle.selection_figures(made),
                          source=made.selection.source_name)
            return
        _dry_run(csv_path=csv_path, job_type=job_type, company=company, template_data=template_data,
                 action=action, allow_duplicates=allow_duplicates, as_json=as_json, settings=settings)
        return
    if wait and not settings.redis_url and (job_type == "certificate" or action in ("certificate", "both")):
        # Deferred: the renderer pool loads fpdf2, which only certificate jobs need.
        from certificates.pool import warm_up

        warm_up()  # render processes start (one per core) while the rows are read and the job written
    extra: dict = {}
    try:
        with session_scope() as session:
            if moodle:
                created, extra = cli_moodle.submit_selection(
                    session=session, company=company, selection_type=job_type, since=since, course=course,
                    inactive_for=inactive_for, include_completed=include_completed, unless_activity=unless_activity,
                    at=at, template_data=template_data, action=action, cloud_preference=cloud,
                    callback_url=callback_url, allow_duplicates=allow_duplicates, created_by=who(), settings=settings,
                )
            else:
                created = submit_csv(
                    session=session, path=csv_path, job_type=job_type, company_id=company,
                    template_data=template_data, action=action, cloud_preference=cloud,
                    callback_url=callback_url, allow_duplicates=allow_duplicates, created_by=who(), settings=settings,
                )
            record(session=session, actor=who(), source="cli", action="job.submit", target=created.job.uuid,
                   details={"type": job_type, "accepted": created.accepted,
                            **({"source": created.job.source_name} if moodle else {"file": str(csv_path)})})
    except NothingToSend as nothing:
        # A scheduled or repeated selection that finds nobody new is no failure: no job, exit 0.
        emit({"job_id": None, "accepted": 0, "message": str(nothing)}, as_json=as_json,
             human=lambda: typer.echo(str(nothing)))
        return
    job = created.job
    document = {
        "job_id": job.uuid, "id": job.id, "status": job.status, "type": job.type, "company_id": job.company_id,
        "source": job.source_name if moodle else str(csv_path),
        "total": created.rows_read, "accepted": created.accepted, "skipped_duplicates": created.skipped_duplicates,
        **extra,
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
    elif wait:
        outbox = settings.effective_outbox_dir / job.uuid
        if outbox.is_dir():  # only when this job wrote there (another provider writes no files)
            typer.echo(f"The messages are .eml files in {outbox}")
    if wait and document["status"] in ("failed", "partial_failure"):
        raise typer.Exit(1)


def preview_document(preview: Preview) -> dict:
    """The dry run's JSON: the same counts and first message the console's bulk tool shows."""
    return preview.public().model_dump(mode="json")


def _dry_run(*, csv_path: Path, job_type: str, company: str | None, template_data: dict, action: str,
             allow_duplicates: bool, as_json: bool, settings: Settings) -> None:
    with session_scope(read_only=True) as session:
        preview = preview_csv(session=session, path=csv_path, job_type=job_type, company_id=company,
                              template_data=template_data, allow_duplicates=allow_duplicates, action=action,
                              settings=settings)
    _show_dry_run(preview, as_json=as_json)


def _show_dry_run(preview: Preview, *, as_json: bool, extra: dict | None = None, source: str | None = None) -> None:
    document = {**({"source": source} if source else {}), **preview_document(preview), **(extra or {})}

    def human() -> None:
        if source:
            typer.echo(source)
        for name, value in (extra or {}).items():
            typer.echo(f"{name.replace('_', ' ')}: {value:,}")
        typer.echo(f"Dry run, nothing written: {plural(preview.rows_read, 'row')} read, "
                   f"{preview.accepted:,} would be sent, {preview.skipped_duplicates:,} skipped as recent "
                   f"duplicates, {preview.suppressed_count:,} suppressed, "
                   f"{plural(preview.rejected_count, 'row')} rejected.")
        for row in preview.rejected[:SHOWN_REJECTIONS]:
            typer.echo(f"  line {row.line}: {row.reason}" + (f" ({row.email})" if row.email else ""))
        if preview.rejected_count > SHOWN_REJECTIONS:
            typer.echo(f"  ... and {preview.rejected_count - SHOWN_REJECTIONS:,} more (--json lists "
                       f"the first {len(preview.rejected):,}).")
        if preview.without_username_count:
            typer.echo(f"{plural(preview.without_username_count, 'row')} without a username: their mail says to "
                       "log in with the email address (Moodle's \"Allow log in via email\" must be on).")
            for row in preview.without_username[:SHOWN_REJECTIONS]:
                typer.echo(f"  line {row.line}: {row.email}")
            if preview.without_username_count > SHOWN_REJECTIONS:
                typer.echo(f"  ... and {preview.without_username_count - SHOWN_REJECTIONS:,} more (--json lists "
                           f"the first {len(preview.without_username):,}).")
        message = preview.message
        if message is not None:
            typer.echo(f"\nFirst message, to {preview.message_to}:\nSubject: {message.subject}\n\n{message.text}")

    emit(document, as_json=as_json, human=human)


def _warn_if_no_worker() -> None:
    try:
        if broker_setup.live_workers() == 0:
            typer.echo("No mani worker is consuming from this Redis: start one with `mani worker`; "
                       "the job is stored and waits for it.", err=True)
    except broker_setup.BROKER_ERRORS:
        typer.echo("The broker is unreachable; the job is stored and waits for it.", err=True)


def _print_submitted(document: dict, rejected: list, *, queued: bool, wait: bool, embedded: bool) -> None:
    typer.echo(
        f"Job {document['id']} ({document['job_id']}): {plural(document['accepted'], 'recipient')} accepted, "
        f"{document['skipped_duplicates']:,} skipped as recent duplicates, "
        + (f"{document['counts'].get('suppressed', 0):,} suppressed, " if document['counts'].get('suppressed') else "")
        + f"{plural(len(rejected), 'row')} rejected."
    )
    for row in rejected[:SHOWN_REJECTIONS]:
        typer.echo(f"  line {row.line}: {row.reason}" + (f" ({row.email})" if row.email else ""))
    if len(rejected) > SHOWN_REJECTIONS:
        typer.echo(f"  ... and {len(rejected) - SHOWN_REJECTIONS:,} more: "
                   f"`mani jobs rejections {document['id']}` lists them all.")
    if not document["accepted"]:
        return
    if embedded and not wait:
        typer.echo(EMBEDDED_NOTICE)
    elif not queued:
        typer.echo("The job is stored and will be dispatched when the broker is reachable (`mani worker` sweeps for it).")


# Without Redis, the broker lives in the process that runs the job: nothing sends until one does.
EMBEDDED_NOTICE = "The job is stored. Run `mani worker` to send it, or submit with --wait."


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
