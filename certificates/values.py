"""Placeholder values for one certificate: the recipient's data, dates formatted, mani's own fields."""

from __future__ import annotations

import unicodedata
from datetime import date, datetime, timezone

from certificates.errors import CertificateError
from certificates.template import DEFAULTED_FIELDS, OPTIONAL_FIELDS, SYSTEM_FIELDS, Template

NAME_FIELDS = {"fullname", "firstname", "lastname"}


def normalize_text(text: str) -> str:
    """NFC, so 'e' + combining acute becomes one 'é' glyph that every font has."""
    return unicodedata.normalize("NFC", text)


def format_date(value, fmt: str) -> str:
    """A date for print: ISO strings, dates and unix timestamps are formatted; anything else as given."""
    if value is None or value == "":
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = datetime.fromtimestamp(value, tz=timezone.utc)
    if isinstance(value, str):
        text = value.strip()
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00")) if "T" in text or " " in text else date.fromisoformat(text)
        except ValueError:
            if text.isdigit() and len(text) >= 9:
                value = datetime.fromtimestamp(int(text), tz=timezone.utc)
            else:
                return text
    return value.strftime(fmt)


def prepare_values(template: Template, data: dict, *, code: str, verify_url: str,
                   issued_at: datetime, expires_at: datetime | None = None) -> dict[str, str]:
    """Every placeholder's text for one certificate; raises CertificateError for a missing value."""
    # NFC, and any run of whitespace (tabs, newlines from a CSV cell) as one space.
    values = {key: " ".join(normalize_text(str(value)).split()) for key, value in data.items()
              if value is not None and not isinstance(value, (dict, list))}
    if not values.get("fullname"):
        values["fullname"] = " ".join(p for p in (values.get("firstname", ""), values.get("lastname", "")) if p)
    for name, default in template.fields.items():
        if not values.get(name) and default is not None:
            values[name] = default
    values["completion_date"] = format_date(values.get("completion_date") or issued_at.date(), template.date_format)
    values["issued_date"] = format_date(issued_at, template.date_format)
    values["expiry_date"] = format_date(expires_at, template.date_format) if expires_at else ""
    values["code"] = code
    values["verify_url"] = verify_url
    missing = sorted(
        name for name in template.placeholders
        if not values.get(name) and name not in OPTIONAL_FIELDS | SYSTEM_FIELDS | DEFAULTED_FIELDS
    )
    if missing:
        label = "a name" if set(missing) & NAME_FIELDS else ", ".join(missing)
        raise CertificateError(f"the certificate needs {label} and this recipient has none ({', '.join(missing)} empty)")
    return values
