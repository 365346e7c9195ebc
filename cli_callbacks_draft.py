"""Draft CLI for issue 6, to be pasted into cli.py (drop the `from cli import ...` line then).

    app.add_typer(callbacks_app, name="callbacks")
    app.command("serve")(serve)
    app.command("rates")(rates)
    companies_app.command("token")(companies_token)          # mani companies token ID
    companies_app.command("tokens")(companies_tokens)        # mani companies tokens [ID]
    companies_app.command("revoke-token")(companies_revoke_token)
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from cli import JsonOption, emit, handles_errors, table, who

callbacks_app = typer.Typer(help="Signed status callbacks to Moodle: list, show, redeliver.", no_args_is_help=True)


def _iso(value) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def _delivery_document(delivery, job_uuid: str | None) -> dict:
    return {
        "id": delivery.id, "job_id": delivery.job_id, "job_uuid": job_uuid, "kind": delivery.kind,
        "batch_id": delivery.batch_id, "updates": len(delivery.recipient_ids), "url": delivery.url,
        "status": delivery.status, "attempts": delivery.attempts, "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error, "next_attempt_at": _iso(delivery.next_attempt_at),
        "created_at": _iso(delivery.created_at), "delivered_at": _iso(delivery.delivered_at),
    }


def _enqueue(delivery_ids: list[int]) -> bool:
    from backend.dispatch import broker_errors, enqueue_followups
    from backend.engine import Followups

    try:
        enqueue_followups(Followups(callback_ids=delivery_ids))
    except broker_errors():
        return False
    return True


@callbacks_app.command("list")
@handles_errors
def callbacks_list(
    job: Annotated[Optional[str], typer.Option("--job", help="Only this job (id, uuid or prefix).")] = None,
    status: Annotated[Optional[str], typer.Option(help="pending, delivered or failed.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.", min=1)] = 50,
    as_json: JsonOption = False,
) -> None:
    """List callback deliveries, with the delivered share when one job is named."""
    from backend import callbacks
    from backend.job_queries import get_job
    from models import Job
    from models.db import session_scope

    with session_scope(read_only=True) as session:
        job_row = get_job(session=session, job_ref=job) if job else None
        rows = callbacks.list_deliveries(session=session, job_id=job_row.id if job_row else None, status=status,
                                         limit=limit)
        uuids = {j.id: j.uuid for j in session.query(Job).filter(Job.id.in_({r.job_id for r in rows}))}
        stats = callbacks.callback_stats(session=session, job_id=job_row.id) if job_row else None
    documents = [_delivery_document(r, uuids.get(r.job_id)) for r in rows]
    summary = None
    if stats is not None:
        summary = {"total": stats.total, "delivered": stats.delivered, "pending": stats.pending,
                   "failed": stats.failed, "delivered_share": stats.delivered_share}

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
    from backend import callbacks
    from models import Job
    from models.db import session_scope

    with session_scope(read_only=True) as session:
        delivery = callbacks.get_delivery(session=session, delivery_id=delivery_id)
        job = session.get(Job, delivery.job_id)
        attempts = callbacks.list_attempts(session=session, delivery_id=delivery_id)
        preview = callbacks.build_payload(session=session, delivery=delivery, job=job) if body else None
    document = _delivery_document(delivery, job.uuid)
    document["attempt_log"] = [
        {"number": a.number, "at": _iso(a.started_at), "status_code": a.status_code, "error": a.error,
         "duration_ms": a.duration_ms, "updates": a.update_count, "response": a.response_excerpt}
        for a in attempts
    ]
    if preview is not None:
        document["body"] = preview

    def human() -> None:
        for key in ("id", "job_uuid", "kind", "url", "status", "attempts", "updates", "next_attempt_at",
                    "delivered_at", "last_error"):
            typer.echo(f"{key:>16}: {document[key] if document[key] is not None else '-'}")
        table(["#", "at", "code", "ms", "error"],
              [[a["number"], a["at"], a["status_code"], a["duration_ms"], a["error"]] for a in document["attempt_log"]])
        if preview is not None:
            import json

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
    from backend import callbacks
    from backend.errors import UnusableInput
    from backend.job_queries import get_job
    from models.db import session_scope

    with session_scope() as session:
        ids = list(delivery_ids or [])
        if job or all_failed:
            job_id = get_job(session=session, job_ref=job).id if job else None
            ids += callbacks.failed_delivery_ids(session=session, job_id=job_id)
        if not ids:
            raise UnusableInput("Nothing to redeliver: name delivery ids, or --job JOB, or --failed.")
        done = callbacks.redeliver(session=session, delivery_ids=sorted(set(ids)), actor=who(), source="cli")
    queued = _enqueue(done)
    emit({"redelivered": done, "enqueued": queued}, as_json=as_json, human=lambda: typer.echo(
        f"{len(done)} deliveries due now" + ("" if queued else " (the broker is down: the sweeper sends them)")))


@handles_errors
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (keep 127.0.0.1 behind a reverse proxy).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8080,
) -> None:
    """Run the HTTP API (Job JSON, worker callbacks, provider webhooks, /healthz, /metrics)."""
    from backend.api.app import serve as run
    from models.db import ensure_schema

    ensure_schema()
    typer.echo(f"mani serve: http://{host}:{port}", err=True)
    run(host=host, port=port)


@handles_errors
def rates(
    job: Annotated[Optional[str], typer.Option("--job", help="One job (id, uuid or prefix).")] = None,
    company: Annotated[Optional[str], typer.Option("--company", help="One company.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Bounce and complaint rates (the seeds' target: bounces under 2 %)."""
    from backend.job_queries import get_job
    from backend.webhooks import delivery_rates
    from models.db import session_scope

    with session_scope(read_only=True) as session:
        job_id = get_job(session=session, job_ref=job).id if job else None
        document = delivery_rates(session=session, job_id=job_id, company_id=company).as_dict()

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
    from backend.tokens import issue_token
    from models.db import session_scope

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
    from backend.tokens import list_tokens
    from models.db import session_scope

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
    from backend.tokens import revoke_token
    from models.db import session_scope

    with session_scope() as session:
        row = revoke_token(session=session, token_id=token_id, actor=who(), source="cli")
    typer.echo(f"token {row.id} ({row.prefix}…) of company {row.company_id} is revoked")
