"""The connection to a Moodle/IOMAD database: read-only in intent, any table prefix.

MariaDB/MySQL goes through PyMySQL with `charset=utf8mb4` forced (Moodle's own charset: a
course name with an emoji must come back whole), PostgreSQL through psycopg. Every session is
put in read-only mode as a guard (`SET SESSION TRANSACTION READ ONLY`,
`default_transaction_read_only`), but the real protection is a SELECT-only login, which the
docs recommend and `check_moodle` reports on.

The URL is a secret: it is registered for log masking when opened, and every message shows it
masked (`mysql+pymysql://moodle:••••••@db/moodle`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    NoSuchModuleError,
    OperationalError,
)

from backend.core.secrets import MASK, mask_url, register_secret
from backend.moodle.source.errors import (
    MoodleNotFound,
    MoodleSchemaError,
    MoodleSourceError,
    MoodleUnreachable,
)
from backend.moodle.source.schema import MoodleTables, moodle_tables

DEFAULT_PREFIX = "mdl_"
CONNECT_TIMEOUT_SECONDS = 10
# Moodle's installer takes lowercase letters, digits and underscores; anything else is a typo.
_PREFIX = re.compile(r"[a-z0-9_]{0,40}\Z")
_DRIVERS = {
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
}
_ALLOWED_DRIVERS = {"mysql": {"", "pymysql"}, "mariadb": {"", "pymysql"},
                    "postgresql": {"", "psycopg"}, "postgres": {"", "psycopg"}}

# Server error codes that mean "the login or the server is the problem", not the query.
_MYSQL_CONNECT_ERRORS = {1044, 1045, 1049, 1698, 2002, 2003, 2005, 2006, 2013, 2055}
_MYSQL_NO_TABLE, _MYSQL_NO_COLUMN, _MYSQL_DENIED = {1146}, {1054}, {1142, 1143}
_PG_NO_TABLE, _PG_NO_COLUMN, _PG_DENIED = {"42P01"}, {"42703"}, {"42501"}


@dataclass(frozen=True, slots=True)
class MoodleDatabaseURL:
    """A checked `moodle_database_url`: the URL for SQLAlchemy, and how to show it."""

    url: URL
    masked: str

    @property
    def dialect(self) -> str:
        """'mysql' (MariaDB or MySQL) or 'postgresql'."""
        return self.url.get_backend_name()


def parse_database_url(text: str) -> MoodleDatabaseURL:
    """Check a Moodle database URL and pin its driver; MoodleSourceError naming what is wrong.

    Accepts `mysql://`, `mariadb://`, `mysql+pymysql://`, `postgresql://`, `postgres://`,
    `postgresql+psycopg://`. A MySQL URL always gets `charset=utf8mb4`, whatever it said.
    """
    shown = mask_url(text.strip()) if text else text
    if not text or not text.strip():
        raise MoodleSourceError("No Moodle database is configured: set moodle_database_url.")
    try:
        url = make_url(text.strip())
    except (ArgumentError, ValueError):
        raise MoodleSourceError(f"moodle_database_url {shown} is not a database URL.") from None
    backend, _, driver = url.drivername.partition("+")
    if backend not in _DRIVERS or driver not in _ALLOWED_DRIVERS[backend]:
        raise MoodleSourceError(
            f"moodle_database_url {shown} uses {url.drivername!r}; Moodle's databases are read through "
            "mysql+pymysql:// (MariaDB, MySQL) or postgresql+psycopg:// (PostgreSQL)."
        )
    url = url.set(drivername=_DRIVERS[backend])
    if url.get_backend_name() == "mysql":
        query = {key: value for key, value in url.query.items() if key.lower() != "charset"}
        url = url.set(query={**query, "charset": "utf8mb4"})
    if not url.database:
        raise MoodleSourceError(f"moodle_database_url {shown} names no database (…/moodle at its end).")
    if url.password:
        register_secret(url.password)
    return MoodleDatabaseURL(url=url, masked=mask_url(url.render_as_string(hide_password=False)) or "")


def check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        raise MoodleSourceError(
            f"moodle_table_prefix {prefix!r} is not a Moodle table prefix (lowercase letters, digits and "
            "underscores, like mdl_)."
        )
    return prefix


@dataclass(frozen=True)
class MoodleSource:
    """One Moodle database under one table prefix. Close it (or use `with`) when done."""

    engine: Engine
    prefix: str
    database: MoodleDatabaseURL

    @property
    def dialect(self) -> str:
        return self.database.dialect

    @property
    def display_url(self) -> str:
        return self.database.masked

    @cached_property
    def tables(self) -> MoodleTables:
        return moodle_tables(self.prefix)

    @contextmanager
    def connect(self, *, stream: bool = False, page_size: int = 2000) -> Iterator[Connection]:
        """A connection whose database errors come out as MoodleSourceError sentences.

        With `stream`, results come through a server-side cursor `page_size` rows at a time.
        """
        with reading(self):
            with self.engine.connect() as connection:
                if stream:
                    connection = connection.execution_options(stream_results=True, yield_per=page_size)
                yield connection

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> MoodleSource:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def open_moodle(
    url: str, *, prefix: str = DEFAULT_PREFIX, connect_timeout: int = CONNECT_TIMEOUT_SECONDS
) -> MoodleSource:
    """An engine on the Moodle database; nothing is connected until the first query."""
    database = parse_database_url(url)
    check_prefix(prefix)
    if database.dialect == "mysql":
        connect_args = {"connect_timeout": connect_timeout, "program_name": "mani"}
    else:
        connect_args = {
            "connect_timeout": connect_timeout,
            "application_name": "mani",
            "options": "-c default_transaction_read_only=on",
        }
    try:
        engine = create_engine(
            database.url, connect_args=connect_args, pool_pre_ping=True, pool_size=2, max_overflow=4,
            hide_parameters=True,
        )
    except (NoSuchModuleError, ImportError) as error:
        raise MoodleSourceError(f"The database driver for {database.masked} is not installed: {error}.") from None
    if database.dialect == "mysql":
        event.listen(engine, "connect", _mysql_read_only)
    return MoodleSource(engine=engine, prefix=prefix, database=database)


def _mysql_read_only(dbapi_connection, _record) -> None:
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET SESSION TRANSACTION READ ONLY")
        # Unix seconds are compared as numbers; the session zone matters only for server-side dates.
        cursor.execute("SET time_zone = '+00:00'")


# Errors -------------------------------------------------------------------------------------


@contextmanager
def reading(source: MoodleSource) -> Iterator[None]:
    """Turn the driver's errors into one sentence that names the database (masked), never its password."""
    try:
        yield
    except DBAPIError as error:
        raise describe_error(error, source) from None


def describe_error(error: DBAPIError, source: MoodleSource) -> MoodleSourceError:
    where = source.display_url
    reason = _reason(error, source)
    code = _code(error)
    if error.connection_invalidated or code in _MYSQL_CONNECT_ERRORS or _pg_connect_error(error):
        return MoodleUnreachable(f"Cannot reach the Moodle database at {where}: {reason}.")
    if code in _MYSQL_NO_TABLE or code in _PG_NO_TABLE:
        return MoodleSchemaError(
            f"A table mani reads is missing in {where} under the prefix {source.prefix!r} ({reason}); "
            "check moodle_table_prefix, or run `mani moodle check`."
        )
    if code in _MYSQL_NO_COLUMN or code in _PG_NO_COLUMN:
        return MoodleSchemaError(f"The Moodle database at {where} lacks a column mani reads ({reason}).")
    if code in _MYSQL_DENIED or code in _PG_DENIED:
        return MoodleSourceError(
            f"The login of {where} may not read a table mani needs ({reason}); grant it SELECT on the Moodle tables."
        )
    return MoodleSourceError(f"Reading the Moodle database at {where} failed: {reason}.")


def _code(error: DBAPIError) -> int | str | None:
    """MySQL's error number (PyMySQL), else PostgreSQL's SQLSTATE (psycopg)."""
    original = error.orig
    args = getattr(original, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return getattr(original, "sqlstate", None) or None


def _pg_connect_error(error: DBAPIError) -> bool:
    code = _code(error)
    if isinstance(code, str):
        # 08: connection exceptions; 28: invalid authorization; 3D000: no such database; 57P0x: shutdown.
        return code.startswith(("08", "28", "57P")) or code == "3D000"
    # Without a code the driver itself failed: it could not resolve, connect or authenticate.
    return code is None and isinstance(error, OperationalError)


def _reason(error: DBAPIError, source: MoodleSource) -> str:
    original = error.orig
    args = getattr(original, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        text = str(args[1])
    else:
        text = str(original)
    text = " ".join(text.split())
    password = source.database.url.password
    if password:
        text = text.replace(str(password), MASK)
    return text.rstrip(".") or type(original).__name__


def require(found, what: str) -> None:
    """MoodleNotFound naming `what` when `found` is falsy (a company, course, activity, role)."""
    if not found:
        raise MoodleNotFound(f"{what} does not exist in the Moodle database.")
