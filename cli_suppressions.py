"""`mani suppressions`: the per-company suppression list (list, add, remove, import, export).

A hard bounce or a complaint puts an address on its company's list by itself; these commands are
for the admin. Every change is audited. Exit codes: 0 ok, 1 failed, 2 unusable input (a bad
address names its line or argument).
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Optional

import typer

from backend.companies import suppressions
from backend.core.csv_out import csv_writer
from backend.jobs import queries
from cli_common import JsonOption, ManiTyper, WideOption, emit, handles_errors, plural, table, who
from models.db import session_scope

suppressions_app = ManiTyper(help="The suppression list: addresses a company's jobs never mail again.")

CompanyOption = Annotated[Optional[str], typer.Option(
    "--company", help="The company's list; without it, the list of jobs that have no company.")]


class AddSource(StrEnum):
    admin = "admin"
    bounce = "bounce"
    complaint = "complaint"


def _label(company: str | None) -> str:
    return f"company {company}" if company is not None else "jobs without a company"


@suppressions_app.command("list")
@handles_errors
def list_command(
    company: CompanyOption = None,
    search: Annotated[Optional[str], typer.Option("--search", help="Part of an address or a reason.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many, newest first.")] = 200,
    wide: WideOption = False,
    as_json: JsonOption = False,
) -> None:
    """The addresses on a list, newest first."""
    with session_scope(read_only=True) as session:
        suppressions.check_company(session=session, company_id=company)
        rows, total = queries.suppressions(session=session, company_id=company, search=search, limit=limit)
    document = {"company_id": company, "total": total, "suppressions": [row.model_dump(mode="json") for row in rows]}

    def human() -> None:
        if not rows:
            typer.echo(f"No suppressed addresses for {_label(company)}.")
            return
        table(["EMAIL", "SOURCE", "REASON", "JOB", "ADDED", "BY"],
              [[row.email, row.source, row.reason, row.job_id, row.created_at.strftime("%Y-%m-%d %H:%M"),
                row.created_by] for row in rows], wide=wide, no_wrap=("SOURCE", "JOB", "ADDED"))
        shown = f"{len(rows):,} of {total:,}" if total > len(rows) else f"{total:,}"
        typer.echo(f"{shown} suppressed for {_label(company)}.")

    emit(document, as_json=as_json, human=human)


@suppressions_app.command("add")
@handles_errors
def add_command(
    emails: Annotated[list[str], typer.Argument(help="One or more addresses.")],
    company: CompanyOption = None,
    reason: Annotated[str, typer.Option("--reason", help="Why; shown on every recipient it keeps out.")] = "added by an admin",
    source: Annotated[AddSource, typer.Option("--source", help="What this entry records.")] = AddSource.admin,
    as_json: JsonOption = False,
) -> None:
    """Put addresses on a list: later jobs end them `suppressed` with the reason."""
    entries = [suppressions.Entry(email=email, reason=reason, line=None) for email in emails]
    with session_scope() as session:
        added = suppressions.add(session=session, company_id=company, entries=entries, source=source.value,
                                 actor=who(), audit_source="cli")
    _report({"company_id": company, "given": len(emails), "added": added}, as_json,
            f"{added:,} of {len(emails):,} added to the suppression list of {_label(company)}"
            + ("" if added == len(emails) else " (the rest were on it already)") + ".")


@suppressions_app.command("remove")
@handles_errors
def remove_command(
    emails: Annotated[list[str], typer.Argument(help="One or more addresses.")],
    company: CompanyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Take addresses off a list, so later jobs mail them again."""
    with session_scope() as session:
        removed = suppressions.remove(session=session, company_id=company, emails=emails, actor=who(),
                                      audit_source="cli")
    _report({"company_id": company, "given": len(emails), "removed": removed}, as_json,
            f"{removed:,} of {len(emails):,} removed from the suppression list of {_label(company)}.")
    if removed == 0:
        raise typer.Exit(1)


@suppressions_app.command("import")
@handles_errors
def import_command(
    path: Annotated[Path, typer.Argument(help="A CSV with an `email` column (and `reason`), or one address a line.")],
    company: CompanyOption = None,
    reason: Annotated[str, typer.Option("--reason", help="The reason for rows that give none.")] = "imported",
    as_json: JsonOption = False,
) -> None:
    """Add every address of a file; nothing is added when any row is bad (exit 2 names it)."""
    entries = suppressions.read_import_file(path, default_reason=reason)
    with session_scope() as session:
        added = suppressions.add(session=session, company_id=company, entries=entries, source="import",
                                 actor=who(), audit_source="cli")
    _report({"company_id": company, "rows": len(entries), "added": added}, as_json,
            f"{added:,} of {len(entries):,} rows added to the suppression list of {_label(company)}.")


@suppressions_app.command("export")
@handles_errors
def export_command(
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="The CSV file; without it, standard output.")] = None,
    company: CompanyOption = None,
) -> None:
    """The whole list as CSV; a cell a spreadsheet would run as a formula starts with a quote."""
    with session_scope(read_only=True) as session:
        suppressions.check_company(session=session, company_id=company)
        if out is None:
            writer = csv_writer(sys.stdout)
            for row in suppressions.export_rows(session=session, company_id=company):
                writer.writerow(row)
            return
        with open(out, "w", encoding="utf-8", newline="") as handle:
            writer = csv_writer(handle)
            written = -1
            for row in suppressions.export_rows(session=session, company_id=company):
                writer.writerow(row)
                written += 1
    typer.echo(f"wrote {out}: {plural(written, 'address', 'addresses')}.", err=True)


def _report(document: dict, as_json: bool, sentence: str) -> None:
    emit(document, as_json=as_json, human=lambda: typer.echo(sentence))
