"""`mani certificates ...`: preview, verify, revoke, list and export. Thin over backend.certificates.

Exit codes: 0 ok (verify: valid), 1 failed (verify: expired or revoked), 2 unusable input
(verify: no such code).
"""

from __future__ import annotations

import functools
import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from backend.errors import ManiError, UnusableInput

app = typer.Typer(help="Certificates: preview templates, verify, revoke and export.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _handles_errors(command: Callable) -> Callable:
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ManiError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(error.exit_code) from None

    return wrapper


def _emit(data: Any, *, as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))
    else:
        human()


@app.command()
@_handles_errors
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
    from backend.certificates import fallback_fonts, template_dirs, verify_url
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


@app.command()
@_handles_errors
def verify(
    code: Annotated[str, typer.Argument(help="The certificate code, e.g. MANI-7K3F-Q9XZ-4M2P (any case).")],
    as_json: JsonOption = False,
) -> None:
    """Who, what and when for a code, and whether it is valid, expired or revoked."""
    from backend.certificates import verify as verify_code
    from models.db import session_scope

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

    _emit(result, as_json=as_json, human=human)
    raise typer.Exit({"valid": 0, "expired": 1, "revoked": 1}.get(result["status"], 2))


@app.command()
@_handles_errors
def revoke(
    code: Annotated[str, typer.Argument(help="The certificate code.")],
    reason: Annotated[Optional[str], typer.Option(help="Why; shown by verify.")] = None,
) -> None:
    """Revoke a certificate. Retrying its job afterwards issues a new one with a new code."""
    from backend.certificates import revoke as revoke_code
    from backend.oswho import os_user
    from models.db import session_scope

    with session_scope() as session:
        certificate = revoke_code(session=session, code=code, reason=reason, actor=os_user(), source="cli")
        shown = certificate.code
    typer.echo(f"revoked {shown}" + (f" ({reason})" if reason else ""))


@app.command("list")
@_handles_errors
def list_(
    job: Annotated[str, typer.Argument(help="Job id: the number, the uuid, or a unique uuid prefix.")],
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
    offset: Annotated[int, typer.Option(help="Skip this many first.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """The certificates issued for a job."""
    from backend.certificates import list_certificates
    from models.db import session_scope

    with session_scope(read_only=True) as session:
        rows = list_certificates(session=session, job_ref=job, limit=limit, offset=offset)

    def human() -> None:
        for row in rows:
            typer.echo(f"{row['code']}  {row['status']:8} {row['email']:32} {row['fullname']}")
        if not rows:
            typer.echo("no certificates")

    _emit(rows, as_json=as_json, human=human)


@app.command()
@_handles_errors
def export(
    job: Annotated[str, typer.Argument(help="Job id: the number, the uuid, or a unique uuid prefix.")],
    zip_path: Annotated[Path, typer.Option("--zip", help="The ZIP file to write.")],
    include_revoked: Annotated[bool, typer.Option(help="Also export revoked certificates.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Write every certificate of a job into one ZIP (streamed: any job size, constant memory)."""
    from backend.certificates import export_zip
    from models.db import session_scope

    with session_scope(read_only=True) as session:
        if sys.stderr.isatty() and not as_json:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                          TimeRemainingColumn(), transient=True) as bar:
                task = bar.add_task("exporting", total=None)
                result = export_zip(session=session, job_ref=job, path=zip_path, include_revoked=include_revoked,
                                    progress=lambda done, total: bar.update(task, completed=done, total=total))
        else:
            result = export_zip(session=session, job_ref=job, path=zip_path, include_revoked=include_revoked)
    summary = {"path": str(result.path), "certificates": result.count, "missing": result.missing,
               "bytes": result.bytes_written}
    _emit(summary, as_json=as_json, human=lambda: typer.echo(
        f"wrote {result.path}: {result.count} certificates, {result.bytes_written:,} bytes"
        + (f"; {len(result.missing)} missing from storage: {', '.join(result.missing[:5])}" if result.missing else "")))
    if result.missing:
        raise typer.Exit(1)
