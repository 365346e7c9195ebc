"""`mani callbacks`: the signed status callbacks to Moodle: list, show, redeliver."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from actors.enqueue import enqueue_after_commit
from backend.core.errors import UnusableInput
from backend.core.followups import Followups
from backend.jobs import queries
from backend.moodle import callbacks
from cli_common import JsonOption, ManiTyper, WideOption, emit, handles_errors, plural, table, to_json, who
from models import DeliveryStatus
from models.db import session_scope

callbacks_app = ManiTyper(help="Signed status callbacks to Moodle: list, show, redeliver.")


@callbacks_app.command("list")
@handles_errors
def callbacks_list(
    job: Annotated[Optional[str], typer.Option("--job", help="Only this job (id, uuid or prefix).")] = None,
    status: Annotated[Optional[DeliveryStatus], typer.Option(help="Only deliveries in this status.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.", min=1)] = 50,
    wide: WideOption = False,
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
        table(["ID", "JOB", "KIND", "UPDATES", "STATUS", "ATTEMPTS", "LAST", "NEXT ATTEMPT"],
              [[d["id"], (d["job_uuid"] or "")[:8], d["kind"], d["updates"], d["status"], d["attempts"],
                d["last_status_code"] or d["last_error"] or "", d["next_attempt_at"]] for d in documents],
              wide=wide, no_wrap=("ID", "JOB", "STATUS"))
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
    wide: WideOption = False,
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
        table(["#", "AT", "CODE", "MS", "ERROR"],
              [[a["number"], a["started_at"], a["status_code"], a["duration_ms"], a["error"]]
               for a in document["attempt_log"]], wide=wide, no_wrap=("#", "AT", "CODE", "MS"))
        if preview is not None:
            typer.echo(to_json(preview))

    emit(document, as_json=as_json, human=human)


@callbacks_app.command("redeliver")
@handles_errors
def callbacks_redeliver(
    delivery_ids: Annotated[Optional[list[int]], typer.Argument(metavar="ID", help="Delivery ids.")] = None,
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
        f"{plural(len(done), 'delivery', 'deliveries')} due now"
        + ("" if queued else " (no worker reachable from here: `mani worker` sends them)")))
