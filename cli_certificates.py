"""`mani certificates`: preview templates, verify, revoke, list and export.

The commands import the certificate service and the renderer when they run: they load fpdf2,
which no other command needs (deferred imports on purpose).
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from backend.core.errors import UnusableInput
from backend.jobs import queries
from cli_common import JobRef, JsonOption, ManiTyper, WideOption, emit, handles_errors, parse_pairs, table, who
from models.db import session_scope

certificates_app = ManiTyper(help="Certificates: preview templates, verify, revoke and export.")

# `verify`'s exit code by status: valid 0; expired or revoked 1 (it exists, but does not hold).
VERIFY_EXIT = {"valid": 0, "expired": 1, "revoked": 1}


@certificates_app.command()
@handles_errors
def preview(
    template: Annotated[str, typer.Option("--template", "-t", help="Template name or .toml/.json file.")] = "default",
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the PDF.")] = Path("certificate-preview.pdf"),
    name: Annotated[str, typer.Option(help="Recipient name on the sample.")] = "Zoë Ångström-Kovačević",
    course: Annotated[str, typer.Option(help="Course name on the sample.")] = "Workplace Health & Safety",
    grade: Annotated[Optional[str], typer.Option(help="Grade on the sample (empty hides it).")] = "92%",
    field: Annotated[Optional[list[str]], typer.Option(
        "--set", metavar="KEY=VALUE", help="A custom field's value; give --set once per field.")] = None,
    expiry_days: Annotated[int, typer.Option(help="Show an expiry this many days ahead (0: none).")] = 365,
) -> None:
    """Write a sample certificate, to see a template before using it in a job."""
    from backend.certificates.service import fallback_fonts, template_dirs, verify_url
    from certificates import get_renderer, load_template, new_code, prepare_values

    template_obj = load_template(template, search_dirs=template_dirs())
    first, _, last = name.partition(" ")
    data: dict[str, Any] = {"firstname": first, "lastname": last, "fullname": name, "course_name": course,
                            "grade": grade or "", "email": "learner@example.com"}
    data.update(parse_pairs(field, what="--set"))
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
    from certificates.codes import normalize_code

    if normalize_code(code) is None:
        raise UnusableInput(f"{code!r} is not a certificate code: codes look like MANI-7K3F-Q9XZ-4M2P")
    with session_scope(read_only=True) as session:
        result = verify_code(session=session, code=code)

    def human() -> None:
        if result["status"] == "not_found":
            typer.echo(f"error: no certificate has the code {normalize_code(code)}", err=True)
            return
        typer.echo(f"{result['code']}: {result['status'].upper()}")
        for label, key in (("name", "fullname"), ("email", "email"), ("course", "course_name"),
                           ("issued", "issued_at"), ("expires", "expires_at"), ("revoked", "revoked_at"),
                           ("reason", "revoke_reason"), ("job", "job_id")):
            if result.get(key):
                typer.echo(f"  {label:8} {result[key]}")

    emit(result, as_json=as_json, human=human)
    raise typer.Exit(VERIFY_EXIT.get(result["status"], 2))


@certificates_app.command()
@handles_errors
def revoke(
    code: Annotated[str, typer.Argument(help="The certificate code.")],
    reason: Annotated[Optional[str], typer.Option(help="Why; shown by verify.")] = None,
) -> None:
    """Revoke a certificate. Retrying its job afterwards issues a new one with a new code."""
    from backend.certificates.service import revoke as revoke_code

    with session_scope() as session:
        certificate = revoke_code(session=session, code=code, reason=reason, actor=who(), source="cli")
        shown = certificate.code
    typer.echo(f"revoked {shown}" + (f" ({reason})" if reason else ""))


@certificates_app.command("list")
@handles_errors
def list_(
    job: JobRef,
    limit: Annotated[int, typer.Option(help="At most this many.", min=1)] = 100,
    offset: Annotated[int, typer.Option(help="Skip this many first.", min=0)] = 0,
    wide: WideOption = False,
    as_json: JsonOption = False,
) -> None:
    """The certificates issued for a job."""
    from backend.certificates.service import list_certificates

    with session_scope(read_only=True) as session:
        job_id = queries.resolve_job_ref(session=session, job_ref=job)
        rows = list_certificates(session=session, job_id=job_id, limit=limit, offset=offset)

    def human() -> None:
        if not rows:
            typer.echo("no certificates")
            return
        table(["CODE", "STATUS", "EMAIL", "NAME"],
              [[row["code"], row["status"], row["email"], row["fullname"]] for row in rows],
              wide=wide, no_wrap=("CODE", "STATUS"))

    emit(rows, as_json=as_json, human=human)


@certificates_app.command()
@handles_errors
def export(
    job: JobRef,
    zip_path: Annotated[Path, typer.Option("--zip", help="The ZIP file to write.")],
    include_revoked: Annotated[bool, typer.Option("--include-revoked", help="Also export revoked certificates.")] = False,
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
