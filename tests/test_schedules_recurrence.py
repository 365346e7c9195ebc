"""Recurrence with a fixed clock: DST-stable local times, every N days from the start, month ends."""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from zoneinfo import ZoneInfo

import pytest

from backend.core.errors import UnusableInput
from backend.schedules.definition import ScheduleInput, check_input, recurrence_of
from backend.schedules.recurrence import Recurrence, parse_timezone

BERLIN = ZoneInfo("Europe/Berlin")
UTC = timezone.utc


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_nine_in_berlin_stays_nine_across_both_dst_changes():
    rule = Recurrence(frequency="daily", start=date(2027, 3, 26), at=time(9, 0), zone=BERLIN)
    runs = rule.upcoming(now=utc(2027, 3, 26, 0, 0), count=4)
    # CET (+1) until Sunday 28 March 2027, CEST (+2) after: 08:00 UTC, then 07:00 UTC.
    assert runs == [utc(2027, 3, 26, 8), utc(2027, 3, 27, 8), utc(2027, 3, 28, 7), utc(2027, 3, 29, 7)]
    assert {r.astimezone(BERLIN).strftime("%H:%M") for r in runs} == {"09:00"}
    autumn = rule.upcoming(now=utc(2027, 10, 30, 0, 0), count=2)  # back to CET on 31 October
    assert autumn == [utc(2027, 10, 30, 7), utc(2027, 10, 31, 8)]


def test_a_local_time_skipped_by_the_spring_change_runs_an_hour_later_by_the_clock():
    rule = Recurrence(frequency="daily", start=date(2027, 3, 27), at=time(2, 30), zone=BERLIN)
    runs = rule.upcoming(now=utc(2027, 3, 27), count=3)
    assert [r.astimezone(BERLIN).strftime("%d %H:%M") for r in runs] == ["27 02:30", "28 03:30", "29 02:30"]


def test_every_two_days_counts_from_the_start_date():
    rule = Recurrence(frequency="custom", start=date(2027, 1, 1), at=time(8, 0), zone=ZoneInfo("UTC"), interval_days=2)
    # Asked on 4 January: 1, 3, 5, 7 ... January, not 4, 6, 8.
    runs = rule.upcoming(now=utc(2027, 1, 4, 12), count=3)
    assert runs == [utc(2027, 1, 5, 8), utc(2027, 1, 7, 8), utc(2027, 1, 9, 8)]
    assert rule.upcoming(now=utc(2027, 1, 3, 8), count=1) == [utc(2027, 1, 3, 8)]


def test_monthly_on_the_31st_runs_on_the_last_day_of_shorter_months():
    rule = Recurrence(frequency="monthly", start=date(2027, 1, 31), at=time(6, 0), zone=ZoneInfo("UTC"))
    runs = rule.upcoming(now=utc(2027, 1, 1), count=6)
    assert [r.date() for r in runs] == [
        date(2027, 1, 31), date(2027, 2, 28), date(2027, 3, 31), date(2027, 4, 30), date(2027, 5, 31), date(2027, 6, 30)
    ]
    leap = Recurrence(frequency="monthly", start=date(2028, 1, 30), at=time(6, 0), zone=ZoneInfo("UTC"))
    assert [r.date() for r in leap.upcoming(now=utc(2028, 1, 1), count=3)] == [
        date(2028, 1, 30), date(2028, 2, 29), date(2028, 3, 30)
    ]


def test_weekly_keeps_the_start_weekday():
    rule = Recurrence(frequency="weekly", start=date(2027, 1, 8), at=time(16, 0), zone=BERLIN)  # a Friday
    runs = rule.upcoming(now=utc(2027, 1, 9), count=2)
    assert [r.astimezone(BERLIN).strftime("%a %d %H:%M") for r in runs] == ["Fri 15 16:00", "Fri 22 16:00"]


def test_between_lists_missed_occurrences():
    rule = Recurrence(frequency="daily", start=date(2027, 1, 1), at=time(9, 0), zone=ZoneInfo("UTC"))
    assert rule.between(after=utc(2027, 1, 2, 9), until=utc(2027, 1, 5, 9), limit=10) == [
        utc(2027, 1, 3, 9), utc(2027, 1, 4, 9), utc(2027, 1, 5, 9)
    ]
    assert rule.between(after=utc(2027, 1, 2, 9), until=utc(2027, 1, 5, 9), limit=2) == [
        utc(2027, 1, 4, 9), utc(2027, 1, 5, 9)
    ]


def spec(**changes) -> ScheduleInput:
    base = dict(name="Welcome", company_id="1", job_type="welcome_std", frequency="daily", time="09:00",
                timezone="Europe/Berlin", start="2027-03-01")
    base.update(changes)
    return ScheduleInput(**base)


def test_a_future_start_counts_from_the_start():
    schedule = check_input(spec(start="2027-06-01"), now=utc(2027, 3, 1))
    assert schedule.next_run_at == utc(2027, 6, 1, 7)
    assert recurrence_of(schedule).upcoming(now=schedule.next_run_at, count=2)[1] == utc(2027, 6, 2, 7)


def test_without_time_the_start_is_the_first_run():
    schedule = check_input(spec(time=None, start="2027-06-01T14:30"), now=utc(2027, 3, 1))
    assert (schedule.time_of_day, schedule.next_run_at) == ("14:30", utc(2027, 6, 1, 12, 30))


@pytest.mark.parametrize(("changes", "fragment"), [
    ({"timezone": "Mars/Olympus"}, "not an IANA time zone"),
    ({"frequency": "custom", "interval_days": 0}, "--interval-days must be 1 or more"),
    ({"frequency": "custom"}, "needs --interval-days"),
    ({"frequency": "hourly"}, "--frequency 'hourly'"),
    ({"time": "25:00"}, "not a time of day"),
    ({"job_type": "reminder"}, "reminder needs --course"),
    ({"unless_course_complete": True}, "applies to reengagement and reminder"),
    ({"action": "sms"}, "--action 'sms'"),
    ({"company_id": " "}, "--company is needed"),
])
def test_refusals_name_the_field(changes, fragment):
    with pytest.raises(UnusableInput) as refused:
        check_input(spec(**changes), now=utc(2027, 3, 1))
    assert fragment in str(refused.value)
    assert "\n" not in str(refused.value)


def test_parse_timezone_takes_iana_names():
    assert parse_timezone("America/New_York").key == "America/New_York"
    with pytest.raises(UnusableInput):
        parse_timezone("../etc/passwd")
