"""What every `mani` sub-app shares: the Typer classes, errors and exit codes, JSON and tables.

Exit codes: 0 ok, 1 failed, 2 unusable input. Every error is one line on stderr that starts with
`error:` (bad options included: `ManiGroup.main` formats Click's usage errors the same way).
"""

from __future__ import annotations

import functools
import json
import re
import sys
from enum import StrEnum
from typing import Annotated, Any, Callable, Iterable, Sequence

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import OperationalError
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from backend.core.errors import ManiError, UnusableInput
from backend.core.oswho import os_user
from backend.core.settings import JOB_TYPES
from backend.jobs import queries
from backend.jobs.create import ACTIONS, CLOUD_PREFERENCES
from models.db import DatabaseNotMigrated

# --- choices: Typer shows them in --help and refuses anything else with exit code 2 ----------

JobType = StrEnum("JobType", {name: name for name in JOB_TYPES})
JobAction = StrEnum("JobAction", {name: name for name in ACTIONS})
CloudPreference = StrEnum("CloudPreference", {name: name for name in CLOUD_PREFERENCES})


# --- the Typer classes ---------------------------------------------------------------------------


def _flags_without_type(params: list) -> list:
    """Typer's rich help writes Python types: `<bool>` after every flag (even --help), though a
    flag takes no value, and `<list[str]>` for a repeatable value. Flags get no type; a repeatable
    value shows its metavar, or its item type followed by `...`."""
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""
        elif isinstance(param, (TyperOption, TyperArgument)) and "display_type_rich" not in vars(param):
            param.display_type_rich = functools.partial(_repeatable_type, param.display_type_rich, param.metavar)
    return params


def _repeatable_type(shown: Callable, metavar: str | None, ctx: typer.Context) -> str | None:
    label = shown(ctx)
    if not label or "list[" not in label:
        return label
    if metavar:
        return None  # the metavar (KEY=VALUE) says it, in the name column or the usage line
    return re.sub(r"list\[(.*?)\]", r"\1", label).rstrip(".") + "..."


class ManiCommand(TyperCommand):
    def get_params(self, ctx: typer.Context) -> list:
        return _flags_without_type(super().get_params(ctx))


class ManiGroup(TyperGroup):
    def get_params(self, ctx: typer.Context) -> list:
        return _flags_without_type(super().get_params(ctx))

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        """Click's usage errors (an unknown --status, a missing option) as one `error:` line, exit 2."""
        try:
            result = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                  standalone_mode=False, **extra)
        except typer.TyperException as error:  # Click's errors (Typer vendors Click since 0.29)
            if not standalone_mode:
                raise
            if type(error).__name__ == "NoArgsIsHelpError":
                sys.exit(2)  # `mani jobs` alone: the help is printed already
            context = getattr(error, "ctx", None)
            typer.echo(f"error: {usage_error_line(error)}", err=True)
            sys.exit(error.exit_code)
        except typer.Abort:
            if not standalone_mode:
                raise
            typer.echo("Aborted.", err=True)
            sys.exit(1)
        if not standalone_mode:
            return result
        # Non-standalone, Typer returns the exit code of a `typer.Exit` (and None after success).
        sys.exit(result if isinstance(result, int) else 0)


def usage_error_line(error: typer.TyperException) -> str:
    """Click's message on one line, with where to look: `Invalid value for '--type': 'x' is not
    one of 'welcome_std', ... (`mani submit --help` lists them)`."""
    message = " ".join(error.format_message().replace("Value error, ", "").split())
    context = getattr(error, "ctx", None)
    if context is None:
        return message
    what = "commands" if isinstance(context.command, TyperGroup) else "options"
    return f"{message} (`{context.command_path} --help` lists the {what})"


class ManiTyper(typer.Typer):
    """A Typer app whose commands and groups use the classes above; every sub-app is one of these."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("cls", ManiGroup)
        options.setdefault("no_args_is_help", True)
        options.setdefault("pretty_exceptions_enable", False)
        super().__init__(**options)

    def command(self, name: str | None = None, **options: Any) -> Callable:
        options.setdefault("cls", ManiCommand)
        return super().command(name, **options)


# --- shared options ------------------------------------------------------------------------------

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
WideOption = Annotated[bool, typer.Option("--wide", help="Show long cells whole, on one line each.")]
JobRef = Annotated[str, typer.Argument(help="Job id: the number, the uuid, or a unique uuid prefix.")]


# --- errors and output ---------------------------------------------------------------------------


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def handles_errors(command: Callable) -> Callable:
    """Turn expected failures into one line on stderr and the right exit code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ManiError as error:
            raise fail(str(error), error.exit_code) from None
        except DatabaseNotMigrated as error:
            raise fail(str(error)) from None
        except OperationalError as error:
            raise fail(f"the database is unreachable: {error.orig}") from None

    return wrapper


def to_json(data: Any) -> str:
    """JSON as mani writes it everywhere: public models by their own serialiser, Unicode as is."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    elif isinstance(data, list) and data and isinstance(data[0], BaseModel):
        data = [item.model_dump(mode="json") for item in data]
    return json.dumps(data, indent=2, default=str, ensure_ascii=False)


def emit(data: Any, *, as_json: bool, human: Callable[[], None] | None = None) -> None:
    if as_json or human is None:
        typer.echo(to_json(data))
    else:
        human()


def who() -> str:
    return os_user()


def table(headers: list[str], rows: Iterable[Sequence[Any]], *, wide: bool = False,
          no_wrap: Iterable[str] = ()) -> None:
    """A table with a header row. It fits the terminal: long cells wrap (never cut); `wide`
    prints every cell whole on one line, however wide the table gets. Columns in `no_wrap`
    (ids, statuses, dates) are never broken; the others give way."""
    cells = [["" if cell is None else str(cell) for cell in row] for row in rows]
    keep = set(no_wrap)
    output = Table(box=None, pad_edge=False, header_style="bold")
    for header in headers:
        output.add_column(header, no_wrap=wide or header in keep, overflow="fold")
    for row in cells:
        output.add_row(*row)
    if wide:
        widths = [max([len(header)] + [len(row[i]) for row in cells]) for i, header in enumerate(headers)]
        Console(width=sum(widths) + 2 * len(widths)).print(output, soft_wrap=True)
    else:
        Console().print(output)


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """`1 row`, `2 rows`, `1,000 rows`."""
    return f"{count:,} {singular if count == 1 else (plural_form or singular + 's')}"


def parse_pairs(pairs: list[str] | None, *, what: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UnusableInput(f"{what} {pair!r} is not KEY=VALUE")
        values[key.strip()] = value
    return values


def iso(value) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def check_choice(value: str | None, valid: Iterable[str], *, what: str) -> None:
    """Exit 2 naming the valid values when a filter names something that does not exist."""
    known = list(valid)
    if value is not None and value not in known:
        shown = ", ".join(known[:30]) + (f" and {len(known) - 30} more" if len(known) > 30 else "")
        raise UnusableInput(f"unknown {what} {value!r}: use one of {shown}" if known else
                            f"unknown {what} {value!r}: there are none yet")


def known_company_ids(session) -> list[str]:
    """Companies that exist, and company ids that jobs name (a Job JSON tenant need not be added)."""
    ids = [company_id for company_id, _ in queries.company_choices(session=session)]
    return sorted(set(ids) | set(queries.job_company_ids(session=session)))
