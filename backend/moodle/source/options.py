"""What a Moodle selection is asked for: typed, checked options, and the parsers the CLI uses.

Every check here needs no database; what needs one (does company 7 exist? is activity 31 in
course 4?) happens when the selection is opened (`selections.select_recipients`).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum

from backend.moodle.source.errors import MoodleOptionsInvalid

DAY = 86400
DEFAULT_INACTIVE_FOR = 30 * DAY
_DURATION = re.compile(r"\s*(\d+)\s*([smhdw])\s*\Z", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": DAY, "w": 7 * DAY}


class SelectionType(StrEnum):
    """The five selections; their names are the job types they feed."""

    WELCOME_STD = "welcome_std"
    WELCOME_LIC = "welcome_lic"
    REENGAGEMENT = "reengagement"
    REMINDER = "reminder"
    CERTIFICATE = "certificate"


# Which types read a time window, and which are about one course.
WINDOWED = frozenset({SelectionType.WELCOME_STD, SelectionType.WELCOME_LIC, SelectionType.CERTIFICATE})
COURSE_REQUIRED = frozenset({SelectionType.REENGAGEMENT, SelectionType.REMINDER})
COURSE_ALLOWED = COURSE_REQUIRED | {SelectionType.CERTIFICATE}


def _now() -> int:
    return int(time.time())


@dataclass(frozen=True, slots=True)
class SelectionOptions:
    """One selection, as of `at` (unix seconds). Windows are closed: since <= t <= at.

    - `since`: the window's start for welcome_std, welcome_lic and certificate (required there).
    - `course_id`: required for reengagement and reminder; for certificate it narrows the
      company's courses to one.
    - `inactive_for` (seconds), `include_completed`: reengagement only.
    - `unless_activity_cmid`: reengagement and reminder leave out students who completed that
      activity (state 1 or 2).
    Raises MoodleOptionsInvalid (one sentence, exit 2) for options that cannot be used together.
    """

    type: SelectionType
    company_id: int
    since: int | None = None
    at: int = field(default_factory=_now)
    course_id: int | None = None
    inactive_for: int = DEFAULT_INACTIVE_FOR
    include_completed: bool = False
    unless_activity_cmid: int | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "type", SelectionType(self.type))
        except ValueError:
            names = ", ".join(t.value for t in SelectionType)
            raise MoodleOptionsInvalid(f"Unknown Moodle selection {self.type!r}: use one of {names}.") from None
        for name in ("company_id", "course_id", "unless_activity_cmid", "since", "at", "inactive_for"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise MoodleOptionsInvalid(f"{_label(name)} must be a whole number, not {value!r}.")
        kind = self.type
        if self.company_id <= 0:
            raise MoodleOptionsInvalid(f"The company id must be a positive number, not {self.company_id}.")
        if self.at <= 0:
            raise MoodleOptionsInvalid(f"--at must be a moment after 1970, not {self.at}.")
        if kind in WINDOWED:
            if self.since is None:
                raise MoodleOptionsInvalid(f"{kind} needs --since: the start of its window.")
            if self.since < 0:
                raise MoodleOptionsInvalid(f"--since must be a moment after 1970, not {self.since}.")
            if self.since > self.at:
                raise MoodleOptionsInvalid(
                    f"--since ({format_moment(self.since)}) is after --at ({format_moment(self.at)}): the window is empty."
                )
        elif self.since is not None:
            raise MoodleOptionsInvalid(f"--since applies to welcome_std, welcome_lic and certificate, not {kind}.")
        if kind in COURSE_REQUIRED and self.course_id is None:
            raise MoodleOptionsInvalid(f"{kind} needs --course: the course whose students it selects.")
        if self.course_id is not None:
            if kind not in COURSE_ALLOWED:
                raise MoodleOptionsInvalid(f"--course applies to reengagement, reminder and certificate, not {kind}.")
            if self.course_id <= 0:
                raise MoodleOptionsInvalid(f"The course id must be a positive number, not {self.course_id}.")
        if kind != SelectionType.REENGAGEMENT:
            if self.include_completed:
                raise MoodleOptionsInvalid(f"--include-completed applies to reengagement only, not {kind}.")
            if self.inactive_for != DEFAULT_INACTIVE_FOR:
                raise MoodleOptionsInvalid(f"--inactive-for applies to reengagement only, not {kind}.")
        elif self.inactive_for <= 0:
            raise MoodleOptionsInvalid(f"--inactive-for must be a positive duration, not {self.inactive_for} seconds.")
        if self.unless_activity_cmid is not None:
            if kind not in COURSE_REQUIRED:
                raise MoodleOptionsInvalid(f"--unless-activity applies to reengagement and reminder, not {kind}.")
            if self.unless_activity_cmid <= 0:
                raise MoodleOptionsInvalid(
                    f"The activity id (course module id) must be a positive number, not {self.unless_activity_cmid}."
                )

    def describe(self) -> str:
        """The job's source line: `moodle: welcome_std, company 2, since 2026-11-14 12:00 UTC`."""
        parts = [f"moodle: {self.type}", f"company {self.company_id}"]
        if self.course_id is not None:
            parts.append(f"course {self.course_id}")
        if self.type == SelectionType.REENGAGEMENT:
            parts.append(f"inactive for {format_duration(self.inactive_for)}")
            if self.include_completed:
                parts.append("completed included")
        if self.unless_activity_cmid is not None:
            parts.append(f"unless activity {self.unless_activity_cmid} complete")
        if self.since is not None:
            parts.append(f"since {format_moment(self.since)}")
        parts.append(f"as of {format_moment(self.at)}")
        return ", ".join(parts)


def _label(name: str) -> str:
    return {
        "company_id": "The company id", "course_id": "The course id",
        "unless_activity_cmid": "--unless-activity", "since": "--since", "at": "--at",
        "inactive_for": "--inactive-for",
    }[name]


# Parsing and formatting ---------------------------------------------------------------------


def parse_duration(text: str, *, option: str = "--inactive-for") -> int:
    """'30d', '24h', '90m', '2w', '3600s' -> seconds; MoodleOptionsInvalid otherwise."""
    match = _DURATION.match(str(text))
    if not match or int(match.group(1)) <= 0:
        raise MoodleOptionsInvalid(f"{option} {text!r} is not a duration: use a number and a unit, like 30d, 24h or 90m.")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]


def parse_moment(text: str, *, option: str = "--at") -> int:
    """An ISO 8601 date or date-time (UTC unless it says otherwise), or unix seconds -> unix seconds."""
    value = str(text).strip()
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise MoodleOptionsInvalid(
            f"{option} {text!r} is not a moment: use ISO 8601 (2026-11-14 or 2026-11-14T12:00Z) or unix seconds."
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp())


def parse_since(text: str, *, at: int) -> int:
    """`--since`: a duration back from `at` ('24h', '7d') or a moment (ISO or unix seconds)."""
    if _DURATION.match(str(text)):
        return at - parse_duration(text, option="--since")
    return parse_moment(text, option="--since")


def format_moment(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def format_date(seconds: int | None) -> str:
    """A Moodle time as an ISO date (UTC); '' for none. Certificates and templates format it further."""
    if not seconds or seconds <= 0:
        return ""
    return datetime.fromtimestamp(seconds, tz=timezone.utc).date().isoformat()


def format_duration(seconds: int) -> str:
    for unit, size in (("w", 7 * DAY), ("d", DAY), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
