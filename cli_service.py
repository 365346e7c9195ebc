"""Running mani: `mani worker`, `mani serve`, `mani rates`, `mani audit`, `mani db` and `mani keys`."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from actors.runner import run_forever
from backend.core.secrets import generate_key, generate_key_file
from backend.core.settings import get_settings
from backend.jobs import queries
from cli_common import (
    JsonOption,
    ManiTyper,
    WideOption,
    check_choice,
    emit,
    handles_errors,
    known_company_ids,
    table,
)
from models.db import current_revision, ensure_schema, get_engine, head_revision, session_scope, upgrade

# Registered without a name: worker, serve, rates and audit are top-level commands.
service_app = ManiTyper()
db_app = ManiTyper(help="The database schema.")
keys_app = ManiTyper(help="The key that encrypts stored secrets.")


class Lane(str, Enum):
    send = "send"
    callbacks = "callbacks"


@service_app.command()
@handles_errors
def worker(
    processes: Annotated[int, typer.Option(help="Worker processes.", min=1)] = 1,
    threads: Annotated[int, typer.Option(help="Sending threads per process.", min=1)] = 8,
    queues: Annotated[Optional[list[Lane]], typer.Option(
        "--queues", help="Lanes to run (repeat for several): send, callbacks. Default: both.")] = None,
) -> None:
    """Run Dramatiq workers and the sweeper until SIGTERM (ready for systemd).

    Mail and callbacks to Moodle run on separate threads (MANI_CALLBACK_THREADS for callbacks)."""
    settings = get_settings()
    ensure_schema()
    lanes = [lane.value for lane in queues] if queues else [lane.value for lane in Lane]
    broker = f"Redis {settings.redis_namespace}" if settings.redis_url else "the embedded broker (this process only)"
    typer.echo(f"mani worker: {processes} process(es) x {threads} threads, lanes {', '.join(lanes)}, on {broker}",
               err=True)
    run_forever(processes=processes, threads=threads, settings=settings, lanes=lanes)


@service_app.command()
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


@service_app.command()
@handles_errors
def rates(
    job: Annotated[Optional[str], typer.Option("--job", help="One job (id, uuid or prefix).")] = None,
    company: Annotated[Optional[str], typer.Option("--company", help="One company.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Bounce and complaint rates of delivered messages (keep bounces under 2 %)."""
    with session_scope(read_only=True) as session:
        if company is not None:
            check_choice(company, known_company_ids(session), what="company")
        job_id = queries.resolve_job_ref(session=session, job_ref=job) if job else None
        rates_ = queries.delivery_rates(session=session, job_id=job_id, company_id=company)

    def pct(value) -> str:
        return "-" if value is None else f"{value:.2%}"

    emit(rates_, as_json=as_json, human=lambda: typer.echo(
        f"{rates_.delivered:,} delivered, {rates_.bounced:,} bounced ({pct(rates_.bounce_rate)}), "
        f"{rates_.complained:,} complained ({pct(rates_.complaint_rate)})"))


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


@keys_app.command("generate")
@handles_errors
def keys_generate(
    path: Annotated[Optional[Path], typer.Option(
        "--path", help="Where to write the key (default: the configured key file).")] = None,
    print_only: Annotated[bool, typer.Option(
        "--print", help="Print a new key for MANI_SECRET_KEY instead of writing a file.")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace an existing key file (stored secrets become unreadable).")] = False,
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


@service_app.command()
@handles_errors
def audit(
    search: Annotated[Optional[str], typer.Option(help="Only entries whose actor, action, source or target match.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.", min=1)] = 50,
    wide: WideOption = False,
    as_json: JsonOption = False,
) -> None:
    """The audit log: who changed what, from where, newest first."""
    with session_scope(read_only=True) as session:
        entries, _ = queries.audit_entries(session=session, search=search, limit=limit)
    emit(entries, as_json=as_json, human=lambda: table(
        ["AT", "ACTOR", "SOURCE", "ACTION", "TARGET", "DETAILS"],
        [[e.at.strftime("%Y-%m-%d %H:%M"), e.actor, e.source, e.action, e.target or "",
          to_json_line(e.details)] for e in entries],
        wide=wide, no_wrap=("AT", "SOURCE", "ACTION")))


def to_json_line(value) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, separators=(", ", ": "))
