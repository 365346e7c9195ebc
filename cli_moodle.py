"""`mani moodle ...`: check the Moodle database, list its companies and courses, preview a selection;
and the selection options `mani submit --moodle` shares with `mani moodle preview`.

Which Moodle: `--company` names a mani company (its moodle_* overrides and its moodle_company_id),
or, when no mani company has that id, an IOMAD company id read with the global settings.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Annotated, Optional

import typer

from backend.companies.resolution import resolve
from backend.core.settings import get_settings
from backend.jobs.moodle_source import (
    MoodlePreview,
    MoodleTarget,
    moodle_target,
    preview_moodle_selection,
    select_moodle_recipients,
    selection_options,
    submit_moodle_selection,
)
from backend.moodle.source import (
    MoodleOptionsInvalid,
    MoodleSource,
    PreviewInvalid,
    SelectionType,
    check_moodle,
    company_courses,
    list_companies,
    open_moodle,
)
from cli_common import JsonOption, ManiTyper, emit, handles_errors, plural, table
from models import Company
from models.db import session_scope

moodle_app = ManiTyper(
    help="Moodle/IOMAD as a source: check the database, list companies and courses, preview a selection.")

# The selection options, shared with `mani submit --moodle` ---------------------------------------

CompanyOption = Annotated[str, typer.Option(
    "--company", help="A mani company (its Moodle settings and moodle_company_id), or an IOMAD company id.")]
TypeOption = Annotated[SelectionType, typer.Option("--type", help="Which selection.", case_sensitive=False)]
SinceOption = Annotated[Optional[str], typer.Option(
    "--since", help="Start of the window: a duration back from --at (24h, 7d) or a moment (ISO 8601).")]
CourseOption = Annotated[Optional[int], typer.Option("--course", help="Moodle course id.")]
InactiveOption = Annotated[Optional[str], typer.Option(
    "--inactive-for", help="reengagement: no access for this long (default 30d).")]
IncludeCompletedOption = Annotated[bool, typer.Option(
    "--include-completed", help="reengagement: keep students who completed the course.")]
UnlessActivityOption = Annotated[Optional[int], typer.Option(
    "--unless-activity", help="Leave out students who completed this activity (course module id).")]
AtOption = Annotated[Optional[str], typer.Option("--at", help="Evaluate as of this moment (ISO 8601; default now).")]


def moodle_only_options_given(**given) -> None:
    """`mani submit --csv` with a selection option: say which option needs --moodle."""
    for name, value in given.items():
        if value not in (None, False):
            raise MoodleOptionsInvalid(f"--{name.replace('_', '-')} applies to --moodle jobs only.")


@contextmanager
def opened(company: str | None, *, iomad: bool = True):
    """(target, source) for `--company`: its Moodle and IOMAD company. Without a company, or with
    `iomad=False` (the check needs no IOMAD company), (None, source) of the Moodle it reads."""
    settings = get_settings()
    with session_scope(read_only=True) as session:
        target: MoodleTarget | None = None
        if company and iomad:
            target = moodle_target(session=session, company=company, settings=settings)
        else:
            own = company if company and session.get(Company, company) is not None else None
            resolved = resolve(session=session, company_id=own, settings=settings)
            url, prefix = resolved["moodle_database_url"] or "", resolved["moodle_table_prefix"] or "mdl_"
    source: MoodleSource = target.open() if target else open_moodle(url, prefix=prefix)
    try:
        yield target, source
    finally:
        source.close()


# Commands ---------------------------------------------------------------------------------------


@moodle_app.command("check")
@handles_errors
def check(
    company: Annotated[Optional[str], typer.Option(
        "--company", help="Check the Moodle this company reads (default: the global settings).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Can mani read this Moodle: tables under the prefix, the Moodle version, whether the login can write.

    Exits 1, with one sentence per problem, when something is missing or unreachable."""
    with opened(company, iomad=False) as (_target, source):
        report = check_moodle(source=source)

    def human() -> None:
        typer.echo(f"Moodle database: {report.database} (prefix {report.prefix})")
        if report.reachable:
            typer.echo(f"Server: {report.server}")
            version = report.moodle_release or report.moodle_version or "unknown"
            typer.echo(f"Moodle: {version}" + (f" (version {report.moodle_version})" if report.moodle_release else ""))
            found = sum(1 for table in report.tables if table.found and not table.missing_columns)
            typer.echo(f"Tables: {found} of {len(report.tables)} found complete")
            typer.echo("Login can write: " + {True: "yes", False: "no (SELECT only)", None: "unknown"}[report.can_write])
        for note in report.notes:
            typer.echo(f"note: {note}")
        for problem in report.problems:
            typer.echo(f"problem: {problem}", err=True)
        if report.ok:
            typer.echo("ok")

    emit({**report.model_dump(mode="json"), "ok": report.ok}, as_json=as_json, human=human)
    if not report.ok:
        raise typer.Exit(1)


@moodle_app.command("companies")
@handles_errors
def companies(as_json: JsonOption = False) -> None:
    """The IOMAD companies of the Moodle the global settings read."""
    with opened(None) as (_target, source):
        rows = list_companies(source=source)
    emit([row.model_dump(mode="json") for row in rows], as_json=as_json, human=lambda: table(
        ["id", "name", "shortname", "suspended"],
        [[row.id, row.name, row.shortname, "yes" if row.suspended else ""] for row in rows], no_wrap=("id",)))


@moodle_app.command("courses")
@handles_errors
def courses(company: CompanyOption, as_json: JsonOption = False) -> None:
    """The company's own courses (what --course takes), by name."""
    with opened(company) as (target, source):
        rows = company_courses(source=source, company_id=target.iomad_company_id)
    emit([row.model_dump(mode="json") for row in rows], as_json=as_json, human=lambda: table(
        ["id", "fullname", "shortname", "visible"],
        [[row.id, row.fullname, row.shortname, "yes" if row.visible else "no"] for row in rows], no_wrap=("id",)))


@moodle_app.command("preview")
@handles_errors
def preview(
    selection_type: TypeOption,
    company: CompanyOption,
    since: SinceOption = None,
    course: CourseOption = None,
    inactive_for: InactiveOption = None,
    include_completed: IncludeCompletedOption = False,
    unless_activity: UnlessActivityOption = None,
    at: AtOption = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="Recipients shown (human output; JSON lists all).")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Who a selection would send to, and who it cannot (bad addresses). Writes nothing.

    --json streams {"recipients": [...], "invalid": [...]}."""
    with opened(company) as (target, source):
        options = selection_options(
            selection_type=selection_type, iomad_company_id=target.iomad_company_id, since=since, course=course,
            inactive_for=inactive_for, include_completed=include_completed, unless_activity=unless_activity, at=at,
        )
        selection = select_moodle_recipients(source=source, options=options, site_url=target.site_url)
        if as_json:
            selection.write_preview_json(sys.stdout)
            return
        shown, invalid = [], []
        for row in selection.preview_rows():
            if isinstance(row, PreviewInvalid):
                invalid.append(row)
            elif len(shown) < limit:
                shown.append(row)
    typer.echo(selection.source_name)
    typer.echo(f"{plural(selection.recipients, 'recipient')}, {selection.invalid:,} with an unusable address.")
    if shown:
        columns = list(shown[0].model_dump(mode="json"))
        table(columns, [[row.model_dump(mode="json").get(c) for c in columns] for row in shown],
              no_wrap=("userid", "courseid"))
        if selection.recipients > len(shown):
            typer.echo(f"... and {selection.recipients - len(shown):,} more (--json lists them all).")
    for row in invalid[:50]:
        typer.echo(f"  user {row.userid}: {row.reason}" + (f" ({row.email})" if row.email else ""))
    if len(invalid) > 50:
        typer.echo(f"  ... and {len(invalid) - 50:,} more (--json lists them all).")


def submit_selection(*, session, company: str, settings, **options):
    """`mani submit --moodle`: the job in the caller's transaction, and the figures its JSON adds.
    NothingToSend (caught by submit) when nobody is left to send to."""
    made = submit_moodle_selection(session=session, company=company, settings=settings, **options)
    return made.created, selection_figures(made)


def selection_figures(made) -> dict:
    """What a Moodle job's JSON (or dry run) adds: users selected, unusable addresses, and for
    certificates the completions an earlier job already took on."""
    figures = {"selected": made.selection.recipients, "invalid": made.selection.invalid}
    if made.selection.type == SelectionType.CERTIFICATE:
        figures["already_certified"] = made.already_certified
    return figures


def preview_selection(*, session, company: str, settings, **options) -> MoodlePreview:
    """`mani submit --moodle --dry-run`: what the job would be, written nowhere."""
    return preview_moodle_selection(session=session, company=company, settings=settings, **options)
