"""When a schedule runs: python-dateutil's `rrule` over local wall-clock times, placed in the
schedule's IANA timezone with `zoneinfo`. No calendar arithmetic by hand.

- The rule runs on naive local times ("09:00"), and each occurrence is then given the zone: so
  09:00 Europe/Berlin stays 09:00 local on both sides of a daylight-saving change (its UTC time
  moves by an hour). A local time that does not exist on the day clocks go forward (02:30) is
  read with the offset before the change, so it runs an hour later by the clock (03:30); a local
  time that happens twice (the day clocks go back) runs at the first of the two.
- `custom` every N days counts from the start date (`rrule(DAILY, interval=N)`).
- `monthly` runs on the start's day of the month; on the 29th, 30th or 31st a shorter month gets
  its last day instead (`bymonthday=(day, -1)` with `bysetpos=1`: the first of "that day" and
  "the last day" that the month has).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.relativedelta import relativedelta
from dateutil.rrule import DAILY, MONTHLY, WEEKLY, rrule

from backend.core.errors import UnusableInput

# Occurrences looked at before giving up on finding one (a rule always has one; this bounds a bug).
MAX_SCAN = 100_000


class Frequency(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    CUSTOM = "custom"


def parse_timezone(name: str) -> ZoneInfo:
    """An IANA zone name ('Europe/Berlin', 'UTC'); UnusableInput naming it otherwise."""
    try:
        if not name or name != name.strip() or name.startswith(("/", ".")):
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UnusableInput(
            f"--timezone {name!r} is not an IANA time zone: use a name like Europe/Berlin, America/New_York or UTC."
        ) from None


def parse_time_of_day(text: str) -> time:
    """'09:00' or '9:30' -> time(9, 0); UnusableInput otherwise."""
    try:
        hours, minutes = str(text).strip().split(":")
        if not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
            raise ValueError(text)
        return time(int(hours), int(minutes))
    except ValueError:
        raise UnusableInput(f"--time {text!r} is not a time of day: use HH:MM, like 09:00 or 17:30.") from None


def format_time_of_day(value: time) -> str:
    return f"{value.hour:02d}:{value.minute:02d}"


@dataclass(frozen=True, slots=True)
class Recurrence:
    """A checked rule: the start date and time of day in `zone`, how often."""

    frequency: Frequency
    start: date
    at: time
    zone: ZoneInfo
    interval_days: int | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "frequency", Frequency(self.frequency))
        except ValueError:
            raise UnusableInput(
                f"--frequency {self.frequency!r} is not one of daily, weekly, monthly, custom."
            ) from None
        if self.frequency == Frequency.CUSTOM:
            if self.interval_days is None:
                raise UnusableInput("--frequency custom needs --interval-days N (every N days from the start date).")
            if self.interval_days <= 0:
                raise UnusableInput(f"--interval-days must be 1 or more, not {self.interval_days}.")
        elif self.interval_days is not None:
            raise UnusableInput(f"--interval-days applies to --frequency custom, not {self.frequency}.")

    @property
    def first_local(self) -> datetime:
        return datetime.combine(self.start, self.at)

    def rule(self) -> rrule:
        first = self.first_local
        if self.frequency == Frequency.DAILY:
            return rrule(DAILY, dtstart=first)
        if self.frequency == Frequency.CUSTOM:
            return rrule(DAILY, interval=self.interval_days, dtstart=first)
        if self.frequency == Frequency.WEEKLY:
            return rrule(WEEKLY, dtstart=first)
        day = first.day
        if day > 28:
            return rrule(MONTHLY, dtstart=first, bymonthday=(day, -1), bysetpos=1)
        return rrule(MONTHLY, dtstart=first, bymonthday=day)

    def place(self, local: datetime) -> datetime:
        """A naive local occurrence as an aware UTC datetime (fold=0: see the module's docstring)."""
        return local.replace(tzinfo=self.zone).astimezone(timezone.utc)

    def occurrences(self, *, on_or_after: datetime) -> Iterator[datetime]:
        """Occurrences (UTC) at or after `on_or_after`, in order, without end."""
        # Start the rule's scan a day early in local time: an offset can move a UTC moment to the
        # previous or next local day, and `place` decides exactly.
        scan_from = on_or_after.astimezone(self.zone).replace(tzinfo=None) - timedelta(days=1)
        scanned = 0
        for local in self.rule().xafter(scan_from, inc=True):
            moment = self.place(local)
            if moment >= on_or_after:
                yield moment
            scanned += 1
            if scanned > MAX_SCAN:
                raise RuntimeError("no occurrence found in the rule's next 100,000 steps")

    def next_at_or_after(self, moment: datetime) -> datetime:
        return next(self.occurrences(on_or_after=moment))

    def upcoming(self, *, now: datetime, count: int) -> list[datetime]:
        """The next `count` occurrences at or after `now` (counted from the start when it is later)."""
        found = []
        for moment in self.occurrences(on_or_after=now):
            found.append(moment)
            if len(found) >= count:
                break
        return found

    def between(self, *, after: datetime, until: datetime, limit: int) -> list[datetime]:
        """Occurrences with after < t <= until, at most `limit` (the latest ones kept)."""
        found: list[datetime] = []
        for moment in self.occurrences(on_or_after=after + timedelta(microseconds=1)):
            if moment > until:
                break
            found.append(moment)
            if len(found) > limit:
                found.pop(0)
        return found

    def period_before(self, moment: datetime) -> datetime:
        """One period back from `moment`: the default start of the first window."""
        local = moment.astimezone(self.zone)
        if self.frequency == Frequency.DAILY:
            back = relativedelta(days=1)
        elif self.frequency == Frequency.WEEKLY:
            back = relativedelta(weeks=1)
        elif self.frequency == Frequency.MONTHLY:
            back = relativedelta(months=1)
        else:
            back = relativedelta(days=self.interval_days)
        return self.place(local.replace(tzinfo=None) - back)
