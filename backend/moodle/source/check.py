"""`mani moodle check`: can mani read this Moodle, and could the login write to it?

Never tests by writing: the login's privileges are read from the server (SHOW GRANTS on
MariaDB/MySQL, has_table_privilege on PostgreSQL).
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import DBAPIError

from backend.moodle.source.connection import MoodleSource, describe_error
from backend.moodle.source.errors import MoodleSourceError, MoodleUnreachable

# Privileges that change data or structure; SELECT, SHOW VIEW, USAGE and the like do not.
_MYSQL_WRITE = {
    "ALL", "ALL PRIVILEGES", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "INDEX", "REFERENCES",
    "CREATE VIEW", "TRIGGER", "CREATE ROUTINE", "ALTER ROUTINE", "EVENT", "LOCK TABLES", "DELETE HISTORY",
}
_GRANT = re.compile(r"^GRANT (?P<privileges>.+?) ON (?P<target>\S+) TO ", re.IGNORECASE)


class TableStatus(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str  # without the prefix: user, company_users, ...
    table: str  # as in the database: mdl_user
    found: bool
    missing_columns: list[str] = []


class MoodleCheck(BaseModel):
    """The answer of `mani moodle check [--json]`; `ok` is False when something is missing or unreachable."""

    model_config = ConfigDict(frozen=True)

    database: str  # the URL, password masked
    prefix: str
    reachable: bool
    server: str | None = None
    tables: list[TableStatus] = []
    moodle_version: str | None = None
    moodle_release: str | None = None
    can_write: bool | None = None  # None: the privileges could not be read
    write_privileges: list[str] = []
    problems: list[str] = []  # one sentence each
    notes: list[str] = []

    @property
    def ok(self) -> bool:
        return not self.problems


def check_moodle(*, source: MoodleSource) -> MoodleCheck:
    """Connect, find each table (and column) mani reads under the prefix, read the Moodle version,
    and say whether the login can write. Never raises for a database problem: it reports it."""
    base = {"database": source.display_url, "prefix": source.prefix}
    try:
        with source.engine.connect() as connection:
            server = _server_version(connection, source)
            tables, problems = _tables(connection, source)
            version, release, notes = _version(connection, source)
            can_write, privileges, privilege_notes = _privileges(connection, source)
    except DBAPIError as error:
        described = describe_error(error, source)
        if not isinstance(described, MoodleUnreachable):
            described = MoodleUnreachable(str(described))
        return MoodleCheck(**base, reachable=False, problems=[str(described)])
    except MoodleSourceError as error:
        return MoodleCheck(**base, reachable=False, problems=[str(error)])
    notes += privilege_notes
    if can_write:
        notes.append(
            "The login can write to Moodle's tables; mani never writes, but a SELECT-only login is safer "
            "(see docs/moodle-database.md)."
        )
    return MoodleCheck(
        **base, reachable=True, server=server, tables=tables, moodle_version=version, moodle_release=release,
        can_write=can_write, write_privileges=privileges, problems=problems, notes=notes,
    )


def _server_version(connection, source: MoodleSource) -> str:
    if source.dialect == "mysql":
        return "MariaDB/MySQL " + str(connection.execute(text("SELECT VERSION()")).scalar())
    return "PostgreSQL " + str(connection.execute(text("SHOW server_version")).scalar())


def _tables(connection, source: MoodleSource) -> tuple[list[TableStatus], list[str]]:
    inspector = inspect(connection)
    present = set(inspector.get_table_names())
    statuses, problems = [], []
    for table in source.tables.required:
        name = source.tables.unprefixed(table)
        if table.name not in present:
            statuses.append(TableStatus(name=name, table=table.name, found=False))
            continue
        columns = {column["name"].lower() for column in inspector.get_columns(table.name)}
        missing = [column.name for column in table.columns if column.name not in columns]
        statuses.append(TableStatus(name=name, table=table.name, found=True, missing_columns=missing))
        if missing:
            problems.append(f"Table {table.name} lacks the column(s) {', '.join(missing)} that mani reads.")
    absent = [status.table for status in statuses if not status.found]
    if len(absent) == len(statuses):
        others = sorted({name.split("_", 1)[0] + "_" for name in present if name.endswith("_user")})
        hint = f" (tables with other prefixes: {', '.join(others)})" if others else ""
        problems.insert(0, f"No Moodle table was found under the prefix {source.prefix!r}{hint}; check moodle_table_prefix.")
    else:
        problems[:0] = [f"Table {name} is missing." for name in absent]
    return statuses, problems


def _version(connection, source: MoodleSource) -> tuple[str | None, str | None, list[str]]:
    config = source.tables.config
    if not inspect(connection).has_table(config.name):
        return None, None, [f"Table {config.name} is not there, so the Moodle version is unknown."]
    try:
        result = connection.execute(
            select(config.c.name, config.c.value).where(config.c.name.in_(("version", "release")))
        )
        rows = {row.name: row.value for row in result}
    except DBAPIError as error:
        connection.rollback()
        return None, None, [f"The Moodle version could not be read: {describe_error(error, source)}"]
    return rows.get("version"), rows.get("release"), []


def _privileges(connection, source: MoodleSource) -> tuple[bool | None, list[str], list[str]]:
    try:
        if source.dialect == "mysql":
            return (*_mysql_privileges(connection, source), [])
        return (*_postgres_privileges(connection, source), [])
    except DBAPIError as error:
        connection.rollback()
        return None, [], [f"The login's privileges could not be read: {describe_error(error, source)}"]


def _mysql_privileges(connection, source: MoodleSource) -> tuple[bool, list[str]]:
    database = connection.execute(text("SELECT DATABASE()")).scalar()
    lines = list(connection.execute(text("SHOW GRANTS")).scalars())
    if connection.execute(text("SELECT CURRENT_ROLE()")).scalar():
        lines += list(connection.execute(text("SHOW GRANTS FOR CURRENT_ROLE")).scalars())
    found = []
    for line in lines:
        match = _GRANT.match(line)
        if not match or not _mysql_target_covers(match.group("target"), database, source.prefix):
            continue
        privileges = [p.strip().split("(")[0].strip().upper() for p in _split_privileges(match.group("privileges"))]
        writes = [p for p in privileges if p in _MYSQL_WRITE]
        if writes:
            found.append(f"{', '.join(writes)} on {match.group('target')}")
    return bool(found), found


def _split_privileges(text_: str) -> list[str]:
    # "SELECT, UPDATE (a, b), INSERT": commas inside a column list do not separate privileges.
    parts, depth, current = [], 0, ""
    for char in text_:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return parts + [current]


def _mysql_target_covers(target: str, database: str | None, prefix: str) -> bool:
    """Does a grant's `db`.`table` target reach the Moodle tables of `database`?"""
    schema, _, table = target.partition(".")
    schema, table = schema.strip("`"), table.strip("`")
    if schema != "*" and not re.fullmatch(_like_to_regex(schema), database or ""):
        return False
    return table == "*" or table.startswith(prefix)


def _like_to_regex(pattern: str) -> str:
    """A grant's database name: `%` and `_` are wildcards, `\\_` a literal underscore."""
    out, index = [], 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            out.append(re.escape(pattern[index + 1]))
            index += 2
            continue
        out.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
        index += 1
    return "".join(out)


def _postgres_privileges(connection, source: MoodleSource) -> tuple[bool, list[str]]:
    names = [table.name for table in source.tables.required]
    rows = connection.execute(
        text(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relname = ANY(:names) AND n.nspname = ANY(current_schemas(false)) "
            "AND has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE') ORDER BY c.relname"
        ),
        {"names": names},
    ).scalars().all()
    if not rows:
        return False, []
    shown = ", ".join(rows[:3]) + (f" and {len(rows) - 3} more" if len(rows) > 3 else "")
    return True, [f"INSERT/UPDATE/DELETE/TRUNCATE on {shown}"]
