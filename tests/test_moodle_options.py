"""Selection options, the CLI's parsers, and the product's tables against Moodle's XMLDB file (no server)."""

from __future__ import annotations

import pytest
from sqlalchemy import BigInteger, Numeric, SmallInteger, String, Text

from backend.mail.templates import required_variables
from backend.moodle.source import (
    MoodleOptionsInvalid,
    SelectionOptions,
    parse_duration,
    parse_moment,
    parse_since,
)
from backend.moodle.source.schema import REQUIRED_TABLES, moodle_tables
from backend.moodle.source.selections import available_variables
from tests.support.moodle_schema import parse_xmldb


@pytest.mark.parametrize(
    "options, message",
    [
        ({"type": "welcome", "company_id": 1}, "Unknown Moodle selection 'welcome'"),
        ({"type": "welcome_std", "company_id": 1}, "welcome_std needs --since"),
        ({"type": "welcome_std", "company_id": 0, "since": 0}, "company id must be a positive number"),
        ({"type": "welcome_std", "company_id": 1, "since": 200, "at": 100}, "is after --at"),
        ({"type": "reminder", "company_id": 1}, "reminder needs --course"),
        ({"type": "reminder", "company_id": 1, "course_id": 2, "since": 5}, "--since applies to"),
        ({"type": "welcome_lic", "company_id": 1, "since": 0, "course_id": 2}, "--course applies to"),
        ({"type": "reminder", "company_id": 1, "course_id": 2, "include_completed": True}, "reengagement only"),
        ({"type": "certificate", "company_id": 1, "since": 0, "unless_activity_cmid": 4}, "--unless-activity applies"),
        ({"type": "reengagement", "company_id": 1, "course_id": 2, "inactive_for": 0}, "positive duration"),
        ({"type": "reengagement", "company_id": "2", "course_id": 2}, "must be a whole number"),
    ],
)
def test_bad_options_are_one_sentence(options, message):
    with pytest.raises(MoodleOptionsInvalid) as caught:
        SelectionOptions(**options)
    assert message in str(caught.value)
    assert caught.value.exit_code == 2


def test_describe_is_the_job_source_line():
    options = SelectionOptions(type="reengagement", company_id=2, course_id=7, at=1_800_000_000,
                               inactive_for=14 * 86400, include_completed=True, unless_activity_cmid=31)
    assert options.describe() == (
        "moodle: reengagement, company 2, course 7, inactive for 2w, completed included, "
        "unless activity 31 complete, as of 2027-01-15 08:00 UTC"
    )


def test_parsers():
    assert parse_duration("30d") == 30 * 86400 and parse_duration("24h") == 86400 and parse_duration("2w") == 14 * 86400
    assert parse_moment("2026-11-14T12:00Z") == parse_moment("2026-11-14 12:00") == 1_794_657_600
    assert parse_moment("1794657600") == 1_794_657_600
    assert parse_since("24h", at=1_000_000) == 1_000_000 - 86400
    assert parse_since("2026-11-14T12:00:00+00:00", at=0) == 1_794_657_600
    for bad in ("30", "d", "-3d", "0d"):
        with pytest.raises(MoodleOptionsInvalid, match="is not a duration"):
            parse_duration(bad)
    with pytest.raises(MoodleOptionsInvalid, match="is not a moment"):
        parse_moment("yesterday")


_KIND = {"int": (BigInteger, SmallInteger), "char": (String,), "text": (Text,), "number": (Numeric,)}


def test_product_tables_match_moodles_xmldb():
    """Every column the reader declares exists in IOMAD 4.4.5's XMLDB, with a matching type."""
    xml = parse_xmldb()
    tables = moodle_tables("mdl_")
    for table in tables.required:
        name = tables.unprefixed(table)
        assert name in xml, name
        for column in table.columns:
            field = xml[name].field(column.name)
            assert isinstance(column.type, _KIND[field.type]), (name, column.name)
            if field.type == "char":
                assert column.type.length == field.length, (name, column.name)
            assert column.nullable == (not field.notnull) or column.primary_key, (name, column.name)
    assert set(REQUIRED_TABLES) <= set(xml)


@pytest.mark.parametrize("kind", ["welcome_std", "welcome_lic", "reengagement", "reminder", "certificate"])
def test_every_selection_provides_what_its_default_template_requires(kind):
    provided = set(available_variables(kind, site_url="https://moodle.example")) | {"email", "site_name", "login_url"}
    if kind == "certificate":
        provided |= {"certificate_url", "certificate_code", "certificate_verify_url"}
    assert required_variables(kind) <= provided


def test_read_ahead_keeps_order_raises_in_the_callers_thread_and_stops_early():
    import threading

    from backend.moodle.source.readahead import read_ahead

    assert list(read_ahead(iter(range(50)), depth=2)) == list(range(50))

    def failing():
        yield 1
        raise RuntimeError("lost the server")

    reader = read_ahead(failing())
    assert next(reader) == 1
    with pytest.raises(RuntimeError, match="lost the server"):
        next(reader)

    produced = []

    def endless():
        for number in range(10**9):
            produced.append(number)
            yield number

    reader = read_ahead(endless(), depth=3)
    assert next(reader) == 0
    reader.close()  # stops the helper thread; it never runs far ahead
    assert not any(t.name == "moodle-read-ahead" and t.is_alive() for t in threading.enumerate())
    assert len(produced) <= 6
