"""Throwaway Moodle databases on the real MariaDB and PostgreSQL, read through a SELECT-only login.

`moodle_site` is parametrised over both servers: per test session and server it creates a
database, builds the IOMAD tables from the XMLDB file under the prefix `mt_`, loads the
fixture site (tests/support/moodle_fixture.py), makes a login that may only SELECT, and drops
all of it afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.support.moodle_fixture import build_site
from tests.support.moodle_schema import create_moodle_tables

MARIADB_URL = os.environ.get("MANI_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
PREFIX = "mt_"
READONLY_PASSWORD = "Ro-pass-7f3a9c"


@dataclass(frozen=True)
class MoodleTestDB:
    kind: str  # "mariadb" | "postgres"
    admin_url: str  # full rights on the throwaway database
    readonly_url: str  # the SELECT-only login
    prefix: str
    database: str


def _unavailable(what: str, error: Exception) -> None:
    from tests.conftest import _unavailable as report

    report(what, error)


def _admin_engine(kind: str):
    from tests.conftest import POSTGRES_URL

    url = MARIADB_URL if kind == "mariadb" else POSTGRES_URL
    try:
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(text("select 1"))
    except Exception as error:  # noqa: BLE001 - any failure to connect means "not here"
        _unavailable(kind, error)
    return engine


def _make_mariadb(name: str, login: str) -> tuple[str, str]:
    admin = _admin_engine("mariadb")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
        for host in ("%", "localhost", "127.0.0.1"):
            connection.execute(text(f"CREATE USER '{login}'@'{host}' IDENTIFIED BY '{READONLY_PASSWORD}'"))
            connection.execute(text(f"GRANT SELECT ON `{name}`.* TO '{login}'@'{host}'"))
    base = make_url(MARIADB_URL).set(database=name)
    admin.dispose()
    return (base.render_as_string(hide_password=False),
            base.set(username=login, password=READONLY_PASSWORD).render_as_string(hide_password=False))


def _drop_mariadb(name: str, login: str) -> None:
    admin = _admin_engine("mariadb")
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        for host in ("%", "localhost", "127.0.0.1"):
            connection.execute(text(f"DROP USER IF EXISTS '{login}'@'{host}'"))
    admin.dispose()


def _make_postgres(name: str, login: str) -> tuple[str, str]:
    from tests.conftest import POSTGRES_URL

    admin = _admin_engine("postgres")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}" ENCODING \'UTF8\' TEMPLATE template0'))
        connection.execute(text(f"CREATE ROLE \"{login}\" LOGIN PASSWORD '{READONLY_PASSWORD}'"))
    admin.dispose()
    base = make_url(POSTGRES_URL).set(database=name)
    return (base.render_as_string(hide_password=False),
            base.set(username=login, password=READONLY_PASSWORD).render_as_string(hide_password=False))


def _grant_postgres(admin_url: str, login: str) -> None:
    engine = create_engine(admin_url)
    with engine.begin() as connection:
        connection.execute(text(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{login}"'))
    engine.dispose()


def _drop_postgres(name: str, login: str) -> None:
    admin = _admin_engine("postgres")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'DROP ROLE IF EXISTS "{login}"'))
    admin.dispose()


@pytest.fixture(scope="session")
def moodle_database_factory() -> Iterator:
    """Makes empty throwaway databases with a SELECT-only login; drops them all at the end."""
    made: list[tuple[str, str, str]] = []

    def make(kind: str) -> MoodleTestDB:
        suffix = uuid.uuid4().hex[:10]
        name, login = f"mani_moodle_{suffix}", f"mani_ro_{suffix}"
        maker = _make_mariadb if kind == "mariadb" else _make_postgres
        admin_url, readonly_url = maker(name, login)
        made.append((kind, name, login))
        return MoodleTestDB(kind=kind, admin_url=admin_url, readonly_url=readonly_url, prefix=PREFIX, database=name)

    yield make
    for kind, name, login in made:
        (_drop_mariadb if kind == "mariadb" else _drop_postgres)(name, login)


def populate(db: MoodleTestDB, *, prefix: str | None = None, with_config: bool = True, site=None) -> None:
    """Create the XMLDB tables under `prefix` and load the fixture site into them."""
    prefix = db.prefix if prefix is None else prefix
    engine = create_engine(db.admin_url)
    metadata = create_moodle_tables(engine, prefix, with_config=with_config)
    site = site or build_site()
    if not with_config:
        site.rows.pop("config", None)
    site.insert(engine, metadata, prefix)
    engine.dispose()
    if db.kind == "postgres":
        _grant_postgres(db.admin_url, make_url(db.readonly_url).username)


@pytest.fixture(scope="session", params=["mariadb", "postgres"])
def moodle_site(request, moodle_database_factory) -> MoodleTestDB:
    """The fixture site on each server, prefix `mt_`, for the whole session (tests only read it)."""
    db = moodle_database_factory(request.param)
    populate(db)
    return db
