"""Which Moodle database a schedule's company reads: the company's `moodle_database_url` when it
has its own, else the global one, under `moodle_table_prefix`.

The settings catalogue may or may not list the Moodle settings (company overrides); this reads
them from the resolved company settings when it does, and from the settings object otherwise.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from backend.companies.resolution import resolve
from backend.core.settings import Settings
from backend.moodle.source import DEFAULT_PREFIX, MoodleSource, MoodleSourceError, open_moodle


def _setting(resolved: Any, settings: Settings, key: str) -> Any:
    value = resolved.get(key) if resolved is not None else None
    return value if value not in (None, "") else getattr(settings, key, None)


def open_company_moodle(*, session: Session, company_id: str, settings: Settings) -> tuple[MoodleSource, str | None]:
    """The company's Moodle source (close it when done) and its site URL for course links, if known.
    MoodleSourceError when none is configured or the URL is unusable."""
    resolved = resolve(session=session, company_id=company_id, settings=settings)
    url = _setting(resolved, settings, "moodle_database_url")
    if not url:
        raise MoodleSourceError(
            "No Moodle database is configured for this company: set moodle_database_url (MANI_MOODLE_DATABASE_URL)."
        )
    prefix = _setting(resolved, settings, "moodle_table_prefix") or DEFAULT_PREFIX
    site_url = _setting(resolved, settings, "moodle_site_url")
    return open_moodle(url, prefix=prefix), site_url
