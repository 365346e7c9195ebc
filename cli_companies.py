"""`mani companies` (IOMAD tenants, their settings and API tokens) and `mani settings` (global)."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

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
from backend.moodle.tokens import issue_token, list_tokens, revoke_token
from cli_common import JsonOption, ManiTyper, emit, fail, handles_errors, iso, table, who
from models.db import session_scope

companies_app = ManiTyper(help="Companies (IOMAD tenants) and their cloud settings.")
settings_app = ManiTyper(help="Global settings stored in the database (over MANI_* and mani.toml).")

CompanyId = Annotated[str, typer.Argument(help="The company id (Moodle company id or Job JSON tenant_id).")]
Assignments = Annotated[list[str], typer.Argument(
    metavar="KEY=VALUE", help="Settings to store (repeatable); KEY= clears an override.", show_default=False)]


def human_value(value: Any) -> str:
    """A setting as a person writes it: on/off, not True/False; "(none)", not None."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return "(none)" if value is None or value == "" else str(value)


def _settings_table(described: dict) -> None:
    table(["SETTING", "VALUE", "FROM"],
          [[key, "" if entry["value"] is None else human_value(entry["value"]), entry["source"]]
           for key, entry in described["settings"].items()],
          no_wrap=("SETTING", "FROM"))


def _effective(session, company_id: str | None, keys) -> dict[str, tuple[Any, str]]:
    entries = describe(session=session, company_id=company_id)["settings"]
    return {key: (entries[key]["value"], entries[key]["source"]) for key in keys if key in entries}


def _print_changes(changes: dict, effective: dict[str, tuple[Any, str]]) -> None:
    """`enabled: off → on`, in the values in effect before and after (`from` names an inherited one)."""
    if not changes:
        typer.echo("nothing changed")
    for key, change in changes.items():
        before, after = effective.get(key, ((change["from"], None), (change["to"], None)))
        line = f"{key}: {human_value(before[0])} → {human_value(after[0])}"
        if after[1] and change["to"] is None:
            line += f" (from {after[1]})"  # the override was cleared: what shows through now
        typer.echo(line)


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
        ["ID", "NAME", "CLOUD", "PROVIDER", "THRESHOLD", "STORAGE"],
        [[r["id"], r["name"], "on" if r["enabled"] else "off", r["email_provider"], r["threshold"] or "(global)",
          r["storage"] or "(global)"] for r in rows],
        no_wrap=("ID", "CLOUD"),
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
    effective: dict = {}
    with session_scope() as session:
        if name is not None:
            before = get_company(session=session, company_id=company_id).name
            after = rename_company(session=session, company_id=company_id, name=name, actor=who(), source="cli").name
            if after != before:
                changes["name"] = {"from": before, "to": after}
        if values:
            before_values = _effective(session, company_id, values)
            changes.update(set_company_settings(
                session=session, company_id=company_id, values=values, actor=who(), source="cli"
            ))
            session.flush()
            after_values = _effective(session, company_id, values)
            effective = {key: (before_values[key], after_values[key]) for key in before_values}
    emit(changes, as_json=as_json, human=lambda: _print_changes(changes, effective))


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


@companies_app.command("token")
@handles_errors
def companies_token(
    company_id: CompanyId,
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


@companies_app.command("tokens")
@handles_errors
def companies_tokens(
    company_id: Annotated[Optional[str], typer.Argument(help="Only this company.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List API tokens (prefix, created, last used, revoked); never the tokens themselves."""
    with session_scope(read_only=True) as session:
        rows = list_tokens(session=session, company_id=company_id)
    documents = [{"id": r.id, "company_id": r.company_id, "prefix": r.prefix, "created_at": iso(r.created_at),
                  "created_by": r.created_by, "last_used_at": iso(r.last_used_at), "revoked_at": iso(r.revoked_at)}
                 for r in rows]
    emit(documents, as_json=as_json, human=lambda: table(
        ["ID", "COMPANY", "PREFIX", "CREATED", "LAST USED", "REVOKED"],
        [[d["id"], d["company_id"], d["prefix"] + "…", d["created_at"], d["last_used_at"], d["revoked_at"]]
         for d in documents]))


@companies_app.command("revoke-token")
@handles_errors
def companies_revoke_token(
    token_id: Annotated[int, typer.Argument(help="The token id (from `mani companies tokens`).")],
) -> None:
    """Revoke an API token at once."""
    with session_scope() as session:
        row = revoke_token(session=session, token_id=token_id, actor=who(), source="cli")
    typer.echo(f"token {row.id} ({row.prefix}…) of company {row.company_id} is revoked")


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
        before_values = _effective(session, None, values)
        changes = set_global_settings(session=session, values=values, actor=who(), source="cli")
        session.flush()
        after_values = _effective(session, None, values)
    effective = {key: (before_values[key], after_values[key]) for key in before_values}
    emit(changes, as_json=as_json, human=lambda: _print_changes(changes, effective))
