"""Moodle tables made from Moodle's own XMLDB files, on MariaDB or PostgreSQL, under any prefix.

The tests and the bench build their Moodle from `tests/support/moodle/install_subset.xml` (the
IOMAD 4.4.5 definitions) rather than from hand-written tables, so the product's queries meet the
real column types, NOT NULLs, defaults and indexes. The product itself only reads; this module
is test support.

Types follow Moodle's XMLDB generators (lib/ddl/mysql_sql_generator.php, postgres_sql_generator.php):
int(n) is BIGINT above 9 digits, INT/INTEGER above 4 (MEDIUMINT on MySQL for 5-6), SMALLINT
above 2, TINYINT (MySQL) below; char is VARCHAR(n) and a NOT NULL char without a default gets
DEFAULT ''; text is LONGTEXT (MySQL) or TEXT; number(n, d) is DECIMAL/NUMERIC. XMLDB foreign keys
become plain indexes, as Moodle creates them (it makes no FK constraints).
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql

XML_DIR = Path(__file__).resolve().parent / "moodle"
INSTALL_SUBSET = XML_DIR / "install_subset.xml"
CONFIG_TABLE = XML_DIR / "config_table.xml"


@dataclass(frozen=True)
class XmldbField:
    name: str
    type: str
    length: int | None
    decimals: int | None
    notnull: bool
    sequence: bool
    default: str | None


@dataclass(frozen=True)
class XmldbTable:
    name: str
    fields: tuple[XmldbField, ...]
    primary: tuple[str, ...]
    unique_keys: tuple[tuple[str, ...], ...]
    foreign_keys: tuple[tuple[str, ...], ...]
    indexes: tuple[tuple[tuple[str, ...], bool], ...]  # (fields, unique)

    def field(self, name: str) -> XmldbField:
        return next(f for f in self.fields if f.name == name)


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parse_xmldb(path: Path = INSTALL_SUBSET) -> dict[str, XmldbTable]:
    """The tables of one XMLDB file, by unprefixed name."""
    tables: dict[str, XmldbTable] = {}
    for element in ElementTree.parse(path).getroot().iter("TABLE"):
        fields = []
        for field in element.iter("FIELD"):
            length = field.get("LENGTH")
            decimals = field.get("DECIMALS")
            fields.append(
                XmldbField(
                    name=field.get("NAME"),
                    type=field.get("TYPE"),
                    length=int(length) if length else None,
                    decimals=int(decimals) if decimals else None,
                    notnull=field.get("NOTNULL") == "true",
                    sequence=field.get("SEQUENCE") == "true",
                    default=field.get("DEFAULT"),
                )
            )
        primary: tuple[str, ...] = ()
        unique_keys, foreign_keys = [], []
        for key in element.iter("KEY"):
            columns = _names(key.get("FIELDS"))
            kind = key.get("TYPE")
            if kind == "primary":
                primary = columns
            elif kind == "unique":
                unique_keys.append(columns)
            elif kind in ("foreign", "foreign-unique"):
                (unique_keys if kind == "foreign-unique" else foreign_keys).append(columns)
        indexes = tuple((_names(index.get("FIELDS")), index.get("UNIQUE") == "true") for index in element.iter("INDEX"))
        tables[element.get("NAME")] = XmldbTable(
            name=element.get("NAME"), fields=tuple(fields), primary=primary, unique_keys=tuple(unique_keys),
            foreign_keys=tuple(foreign_keys), indexes=indexes,
        )
    return tables


def column_type(field: XmldbField):
    """The SQLAlchemy type Moodle's generators would give this field (per dialect where they differ)."""
    if field.type == "int":
        length = field.length or 10
        if length > 9:
            return BigInteger()
        if length > 6:
            return Integer()
        if length > 4:
            return Integer().with_variant(mysql.MEDIUMINT(), "mysql", "mariadb")
        if length > 2:
            return SmallInteger()
        return SmallInteger().with_variant(mysql.TINYINT(), "mysql", "mariadb")
    if field.type == "char":
        return String(field.length or 255)
    if field.type == "text":
        return Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
    if field.type == "number":
        return Numeric(field.length or 10, field.decimals or 0)
    if field.type == "float":
        return Float()
    raise ValueError(f"XMLDB type {field.type!r} of field {field.name} is not supported here")


def _server_default(field: XmldbField) -> str | None:
    if field.sequence:
        return None
    if field.default is not None:
        return field.default
    if field.type == "char" and field.notnull:
        return ""  # Moodle's generators: default_for_char
    return None


def _index_name(prefix: str, table: str, kind: str, number: int, columns: tuple[str, ...]) -> str:
    # Index names are schema-wide on PostgreSQL and at most 63/64 characters on both.
    digest = hashlib.sha1(",".join(columns).encode()).hexdigest()[:6]
    return f"{prefix}{table}"[:40] + f"_{kind}{number}_{digest}"


def build_metadata(prefix: str, *paths: Path) -> MetaData:
    """A MetaData with every table of the XMLDB files at `paths`, named `prefix + name`."""
    metadata = MetaData()
    for path in paths or (INSTALL_SUBSET,):
        for name, spec in parse_xmldb(path).items():
            columns = []
            for field in spec.fields:
                default = _server_default(field)
                columns.append(
                    Column(
                        field.name,
                        BigInteger() if field.sequence else column_type(field),
                        primary_key=field.name in spec.primary,
                        autoincrement=field.sequence,
                        nullable=not field.notnull,
                        server_default=default,
                    )
                )
            table = Table(
                prefix + name, metadata, *columns,
                mysql_engine="InnoDB", mysql_charset="utf8mb4", mysql_collate="utf8mb4_unicode_ci",
            )
            indexed: set[tuple[str, ...]] = set()
            for number, columns_ in enumerate(spec.unique_keys):
                table.append_constraint(
                    UniqueConstraint(*columns_, name=_index_name(prefix, name, "uk", number, columns_))
                )
                indexed.add(columns_)
            for number, (columns_, unique) in enumerate(spec.indexes):
                Index(_index_name(prefix, name, "ix", number, columns_), *(table.c[c] for c in columns_), unique=unique)
                indexed.add(columns_)
            for number, columns_ in enumerate(spec.foreign_keys):
                if columns_ not in indexed:
                    Index(_index_name(prefix, name, "fk", number, columns_), *(table.c[c] for c in columns_))
                    indexed.add(columns_)
    return metadata


def create_moodle_tables(engine: Engine, prefix: str, *, with_config: bool = True) -> MetaData:
    """Create the XMLDB tables (and `config` unless told not to) under `prefix`; returns their MetaData."""
    paths = (INSTALL_SUBSET, CONFIG_TABLE) if with_config else (INSTALL_SUBSET,)
    metadata = build_metadata(prefix, *paths)
    metadata.create_all(engine)
    return metadata


def drop_moodle_tables(engine: Engine, prefix: str) -> None:
    build_metadata(prefix, INSTALL_SUBSET, CONFIG_TABLE).drop_all(engine, checkfirst=True)
