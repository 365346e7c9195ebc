"""`mani jobs`: list, inspect, retry, pause, resume and cancel jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from actors import broker as broker_setup
from actors.enqueue import enqueue_after_commit
from backend.core import audit
from backend.core.errors import UnusableInput
from backend.jobs import actions as job_actions
from backend.jobs import queries
from backend.jobs.export import write_job_log
from cli_common import (
    JobRef,
    JobType,
    JsonOption,
    ManiTyper,
    WideOption,
    check_choice,
    known_company_ids,
    emit,
    handles_errors,
    plural,
    table,
    who,
)
from models import JobStatus, RecipientStatus
from models.db import session_scope

jobs_app = ManiTyper(help="List, inspect, retry, pause, resume and cancel jobs.")


@jobs_app.command("list")
@handles_errors
def jobs_list(
    status: Annotated[Optional[JobStatus], typer.Option(help="Only jobs in this status.")] = None,
    job_type: Annotated[Optional[JobType], typer.Option("--type", help="Only jobs of this type.")] = None,
    company: Annotated[Optional[str], typer.Option(help="Only this company's jobs.")] = None,
    search: Annotated[Optional[str], typer.Option(help="A job number, a uuid prefix or a recipient's email.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.", min=1)] = 50,
    wide: WideOption = False,
    as_json: JsonOption = False,
) -> None:
    """List jobs, newest first."""
    with session_scope(read_only=True) as session:
        if company is not None:
            check_choice(company, known_company_ids(session), what="company")
        jobs, _ = queries.search_jobs(session=session, status=status, job_type=job_type, company_id=company,
                                      search=search, limit=limit)
    # The uuid prefix only with --wide: at 80 columns, statuses and dates stay whole without it.
    headers = ["ID"] + (["JOB"] if wide else []) + ["TYPE", "STATUS", "COMPANY", "SENT/TOTAL", "FAILED", "CREATED"]
    emit(jobs, as_json=as_json, human=lambda: table(
        headers,
        [[job.id] + ([job.job_id] if wide else []) + [job.type, job.status, job.company_id or "-",
          f"{job.sent}/{job.total}", job.failed, job.created_at.strftime("%Y-%m-%d %H:%M")] for job in jobs],
        wide=wide, no_wrap=("ID", "JOB", "TYPE", "STATUS", "SENT/TOTAL", "FAILED", "CREATED"),
    ))


@jobs_app.command("show")
@handles_errors
def jobs_show(job: JobRef, as_json: JsonOption = False) -> None:
    """A job's summary, counts and batches."""
    with session_scope(read_only=True) as session:
        detail = queries.job_detail(session=session, job_ref=job)

    def human() -> None:
        s = detail
        typer.echo(f"Job {s.id} ({s.job_id})  {s.type}  {s.status.upper()}")
        typer.echo(f"  company {s.company_id or '-'}   route {s.route or '-'} via {s.provider or '-'}")
        if s.route_reason:
            typer.echo(f"  why: {s.route_reason}")
        typer.echo(f"  {s.sent:,}/{s.total:,} sent, {s.failed:,} failed, {s.skipped_duplicates:,} skipped, "
                   f"{plural(s.rejected, 'row')} rejected")
        typer.echo("  counts: " + ", ".join(f"{k} {v:,}" for k, v in sorted(s.counts.items())))
        if s.error:
            typer.echo(f"  error: {s.error}")
        typer.echo(f"  created {s.created_at.isoformat()}  started {s.started_at.isoformat() if s.started_at else '-'}"
                   f"  finished {s.finished_at.isoformat() if s.finished_at else '-'}")
        table(["BATCH", "STATUS", "SIZE", "SENT", "FAILED", "ATTEMPTS"],
              [[b.number, b.status, b.size, b.sent, b.failed, b.attempts] for b in s.batches[:50]],
              no_wrap=("STATUS",))
        if len(s.batches) > 50:
            typer.echo(f"  ... {len(s.batches) - 50} more batches (--json shows all)")
        if s.handoff:
            show_handoff(s.handoff)

    emit(detail, as_json=as_json, human=human)


def show_handoff(handoff) -> None:
    """The batches handed to the company's own cloud worker, stuck ones flagged."""
    typer.echo(f"  handoff: {plural(handoff.handed_off, 'batch', 'batches')} handed off by {handoff.mode}, {handoff.open:,} open, "
               f"{handoff.stuck:,} stuck (no report for {handoff.stuck_after:,} s)")
    table(["BATCH", "STATUS", "HANDED OFF", "LAST REPORT", "MESSAGE", "STUCK"],
          [[b.number, b.status, b.handed_off_at.strftime("%Y-%m-%d %H:%M:%S"),
            b.reported_at.strftime("%Y-%m-%d %H:%M:%S") if b.reported_at else "-",
            (b.message_ids[0] if b.message_ids else "-") + (" +claim check" if b.claim_check else ""),
            "STUCK" if b.stuck else ""] for b in handoff.batches[:50]],
          no_wrap=("STATUS", "HANDED OFF", "LAST REPORT"))


@jobs_app.command("recipients")
@handles_errors
def jobs_recipients(
    job: JobRef,
    status: Annotated[Optional[RecipientStatus], typer.Option(help="Only recipients in this status.")] = None,
    search: Annotated[Optional[str], typer.Option(help="Only emails containing this.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="At most this many.", min=1)] = None,
    wide: WideOption = False,
    as_json: JsonOption = False,
) -> None:
    """Every recipient of a job with status, attempts, last error and sent time."""
    with session_scope(read_only=True) as session:
        job_id = queries.resolve_job_ref(session=session, job_ref=job)
        recipients = queries.list_recipients(session=session, job_id=job_id, status=status, search=search, limit=limit)
    emit(recipients, as_json=as_json, human=lambda: table(
        ["EMAIL", "STATUS", "ATTEMPTS", "SENT AT", "ERROR"],
        [[r.email, r.status, r.attempts, r.sent_at.strftime("%Y-%m-%d %H:%M:%S") if r.sent_at else "", r.error or ""]
         for r in recipients],
        wide=wide, no_wrap=("STATUS", "ATTEMPTS", "SENT AT"),
    ))


@jobs_app.command("rejections")
@handles_errors
def jobs_rejections(job: JobRef, wide: WideOption = False, as_json: JsonOption = False) -> None:
    """The CSV rows a job rejected, with line and reason."""
    with session_scope(read_only=True) as session:
        job_id = queries.resolve_job_ref(session=session, job_ref=job)
        rejections = queries.list_rejections(session=session, job_id=job_id)
    emit(rejections, as_json=as_json, human=lambda: table(
        ["LINE", "EMAIL", "REASON"], [[r.line, r.email or "", r.reason] for r in rejections],
        wide=wide, no_wrap=("LINE",)))


@jobs_app.command("export")
@handles_errors
def jobs_export(
    job: JobRef,
    output: Annotated[Path, typer.Option("--output", "-o", help="The CSV file to write.")],
    as_json: JsonOption = False,
) -> None:
    """Every recipient of a job as CSV (email, names, status, attempts, last error, ...), spreadsheet-safe."""
    with session_scope() as session:
        job_id = queries.resolve_job_ref(session=session, job_ref=job)
        try:
            with output.expanduser().open("w", newline="", encoding="utf-8") as handle:
                rows = write_job_log(session=session, job_id=job_id, handle=handle)
        except OSError as error:
            raise UnusableInput(f"cannot write {output}: {error.strerror or error}.") from None
        audit.record(session=session, actor=who(), source="cli", action="job.export", target=str(job_id),
                     details={"path": str(output), "rows": rows})
    result = {"job_id": job_id, "path": str(output), "rows": rows}
    emit(result, as_json=as_json, human=lambda: typer.echo(f"{plural(rows, 'recipient')} written to {output}"))


VERBS = {"retry": "set to retry", "pause": "held while paused", "resume": "waiting to send",
         "cancel": "cancelled"}


def _job_action(name: str, job: str, as_json: bool, **options) -> None:
    action = getattr(job_actions, f"{name}_job")
    with session_scope() as session:
        result = action(session=session, job_ref=job, actor=who(), source="cli", **options)
    queued = enqueue_after_commit(result.followups)
    done = result.public.model_copy(update={"enqueued": queued})

    def human() -> None:
        typer.echo(f"Job {done.id} is {done.status}: {plural(done.recipients, 'recipient')} {VERBS[name]}.")
        if name in ("retry", "resume") and done.recipients and not queued:
            typer.echo(_not_queued())

    emit(done, as_json=as_json, human=human)


def _not_queued() -> str:
    if not broker_setup.reaches_workers():
        # The embedded default: the broker lives in the process that sends, and this one exits now.
        return "Nothing sends until a worker runs: start `mani worker`; it picks them up from the store."
    return "The broker is unreachable; the sweeper will pick them up."


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
