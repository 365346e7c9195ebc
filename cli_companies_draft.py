"""Draft for cli.py: `mani companies ...`, `mani settings ...`, `mani keys generate`.

Thin over backend.companies, backend.company_settings, backend.connection_test and
backend.secrets. Uses cli.py's plumbing (fail, handles_errors, emit, who, table, JsonOption);
mount with:

    from cli_companies_draft import companies_app, keys_app, settings_app
    app.add_typer(companies_app, name="companies")
    app.add_typer(settings_app, name="settings")
    app.add_typer(keys_app, name="keys")

Exit codes: 0 ok, 1 failed (a connection check failed, a secret key is missing), 2 unusable input.
Every secret is shown masked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cli import JsonOption, emit, fail, handles_errors, table, who

companies_app = typer.Typer(help="Companies (IOMAD tenants) and their cloud settings.", no_args_is_help=True)
settings_app = typer.Typer(help="Global settings stored in the database (over MANI_* and mani.toml).", no_args_is_help=True)
keys_app = typer.Typer(help="The key that encrypts stored secrets.", no_args_is_help=True)

CompanyId = Annotated[str, typer.Argument(help="The company id (Moodle company id or Job JSON tenant_id).")]
Assignments = Annotated[list[str], typer.Argument(help="KEY=VALUE ...; KEY= clears an override.", show_default=False)]


def _settings_table(described: dict) -> None:
    rows = []
    for key, entry in described["settings"].items():
        value = entry["value"]
        shown = "" if value is None else (str(value).lower() if isinstance(value, bool) else str(value))
        rows.append([key, shown, entry["source"]])
    table(["setting", "value", "from"], rows)


def _changes(changes: dict) -> None:
    if not changes:
        typer.echo("nothing changed")
    for key, change in changes.items():
        typer.echo(f"{key}: {change['from']} -> {change['to']}")


@companies_app.command("add")
@handles_errors
def companies_add(
    company_id: CompanyId,
    name: Annotated[str, typer.Option("--name", help="The company's name.")],
    as_json: JsonOption = False,
) -> None:
    """Add a company; it inherits every global setting until `mani companies set` overrides one."""
    from backend.companies import add_company, company_row
    from models.db import session_scope

    with session_scope() as session:
        row = company_row(add_company(session=session, company_id=company_id, name=name, actor=who(), source="cli"))
    emit(row, as_json=as_json, human=lambda: typer.echo(f"added company {row['id']} ({row['name']})"))


@companies_app.command("list")
@handles_errors
def companies_list(as_json: JsonOption = False) -> None:
    """Every company, with its cloud switch and provider."""
    from backend.companies import company_row, list_companies
    from models.db import session_scope

    with session_scope(read_only=True) as session:
        rows = [company_row(company) for company in list_companies(session=session)]
    emit(rows, as_json=as_json, human=lambda: table(
        ["id", "name", "cloud", "provider", "threshold", "storage"],
        [[r["id"], r["name"], "on" if r["enabled"] else "off", r["email_provider"], r["threshold"] or "(global)",
          r["storage"] or "(global)"] for r in rows],
    ))


@companies_app.command("show")
@handles_errors
def companies_show(company_id: CompanyId, as_json: JsonOption = False) -> None:
    """A company and every setting it resolves to (secrets masked), with where each comes from."""
    from backend.companies import show_company
    from models.db import session_scope

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
    from backend.companies import get_company, rename_company
    from backend.company_settings import parse_assignments, set_company_settings
    from models.db import session_scope

    values = parse_assignments(assignments or [])
    if not values and name is None:
        raise fail("give KEY=VALUE pairs or --name NAME", 2)
    changes: dict = {}
    with session_scope() as session:
        if name is not None:
            before = get_company(session=session, company_id=company_id).name
            after = rename_company(session=session, company_id=company_id, name=name, actor=who(), source="cli").name
            if after != before:
                changes["name"] = {"from": before, "to": after}
        if values:
            changes.update(set_company_settings(
                session=session, company_id=company_id, values=values, actor=who(), source="cli"
            ))
    emit(changes, as_json=as_json, human=lambda: _changes(changes))


@companies_app.command("test")
@handles_errors
def companies_test(company_id: CompanyId, as_json: JsonOption = False) -> None:
    """Check each configured piece for real (provider, sender, storage, queue, callback URL)."""
    from backend import connection_test
    from models.db import session_scope

    with session_scope(read_only=True) as session:
        results = connection_test.test_company(session=session, company_id=company_id)
    document = {"company": company_id, "ok": all(r.ok for r in results), "checks": [r.as_dict() for r in results]}

    def human() -> None:
        width = max(len(r.name) for r in results)
        for r in results:
            typer.echo(f"{'ok  ' if r.ok else 'FAIL'} {r.name.ljust(width)}  {r.detail}")

    emit(document, as_json=as_json, human=human)
    if not document["ok"]:
        raise typer.Exit(1)


@settings_app.command("show")
@handles_errors
def settings_show(as_json: JsonOption = False) -> None:
    """Every global setting (secrets masked) and where its value comes from."""
    from backend.company_settings import describe
    from models.db import session_scope

    with session_scope(read_only=True) as session:
        document = describe(session=session, company_id=None)
    emit(document, as_json=as_json, human=lambda: _settings_table(document))


@settings_app.command("set")
@handles_errors
def settings_set(assignments: Assignments, as_json: JsonOption = False) -> None:
    """Store global settings in the database: `mani settings set cloud_fallback_behavior=fail`."""
    from backend.company_settings import parse_assignments, set_global_settings
    from models.db import session_scope

    values = parse_assignments(assignments or [])
    with session_scope() as session:
        changes = set_global_settings(session=session, values=values, actor=who(), source="cli")
    emit(changes, as_json=as_json, human=lambda: _changes(changes))


@keys_app.command("generate")
@handles_errors
def keys_generate(
    path: Annotated[Optional[Path], typer.Option("--path", help="Where to write the key (default: the configured key file).")] = None,
    print_only: Annotated[bool, typer.Option("--print", help="Print a new key for MANI_SECRET_KEY instead of writing a file.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing key file (stored secrets become unreadable).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Make the key that encrypts stored secrets (mode 0600). Copy it to every host."""
    from backend.secrets import generate_key, generate_key_file
    from backend.settings import get_settings

    if print_only:
        key = generate_key()
        emit({"key": key}, as_json=as_json, human=lambda: typer.echo(key))
        return
    target = generate_key_file(path or get_settings().effective_secret_key_file, overwrite=force)
    document = {"path": str(target), "mode": "0600"}
    emit(document, as_json=as_json, human=lambda: typer.echo(
        f"wrote a new key to {target} (mode 0600); copy it to every host, or set MANI_SECRET_KEY_FILE to it"
    ))
