"""Storing overrides of the settings catalogue: a company's, or the installation's global ones.

All or nothing: every value is parsed and every secret encrypted before anything changes; the
change is audited with secrets masked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlmodel import Session

from backend.companies.catalogue import ALL_SETTINGS, SETTINGS_CATALOGUE, SettingSpec, parse_value, shown
from backend.companies.resolution import company_of, reveal_or_unreadable, settings_or_default
from backend.core import audit
from backend.core.errors import UnusableInput
from backend.core.secrets import encrypt
from models import GlobalSetting, utcnow


def _validated(values: Mapping[str, Any], *, catalogue: dict[str, SettingSpec], scope: str) -> dict[str, Any]:
    if not values:
        raise UnusableInput("Nothing to set: give one or more KEY=VALUE.")
    parsed, errors = {}, []
    for key, raw in values.items():
        spec = catalogue.get(key)
        if spec is None:
            errors.append(f"unknown {scope} setting {key!r} (valid: {', '.join(sorted(catalogue))})")
            continue
        try:
            parsed[key] = parse_value(spec, raw, scope=scope)
        except ValueError as error:
            errors.append(f"{key} {error} (got {shown(spec, str(raw))!r})")
    if errors:
        raise UnusableInput("Nothing was changed: " + "; ".join(errors) + ".")
    return parsed


def _apply(*, session: Session, values: Mapping[str, Any], scope: str, settings: Any, read, write,
           actor: str, source: str, action: str, target: str) -> dict[str, dict]:
    """Validate all, encrypt secrets (SecretKeyMissing before anything changes), write, audit masked."""
    settings = settings_or_default(settings)
    parsed = _validated(values, catalogue=SETTINGS_CATALOGUE[scope], scope=scope)
    tokens = {k: encrypt(str(v), settings=settings) for k, v in parsed.items() if v is not None and ALL_SETTINGS[k].secret}
    reveal = reveal_or_unreadable(settings)
    changes: dict[str, dict] = {}
    for key, value in parsed.items():
        spec = ALL_SETTINGS[key]
        old = read(key, reveal)
        write(key, spec, None if value is None else tokens.get(key, value))
        if old != value:
            changes[key] = {"from": shown(spec, old), "to": shown(spec, value)}
    if changes:
        audit.record(session=session, actor=actor, source=source, action=action, target=target,
                     details={"changes": changes})
    return changes


def set_company_settings(
    *, session: Session, company_id: str, values: Mapping[str, Any], actor: str, source: str, settings: Any | None = None
) -> dict[str, dict]:
    """Validate and store overrides (None or "" clears one); all or nothing. Returns the masked changes."""
    company = company_of(session, company_id)
    plain, secrets = dict(company.settings or {}), dict(company.secrets or {})

    def read(key, reveal):
        return reveal(secrets[key]) if key in secrets else plain.get(key)

    def write(key, spec, stored):
        plain.pop(key, None)
        secrets.pop(key, None)
        if stored is not None:
            (secrets if spec.secret else plain)[key] = stored

    changes = _apply(session=session, values=values, scope="company", settings=settings, read=read, write=write,
                     actor=actor, source=source, action="company.settings", target=f"company:{company_id}")
    # New dicts: SQLAlchemy does not see changes made inside a JSON value.
    company.settings, company.secrets, company.updated_at = plain, secrets, utcnow()
    session.add(company)
    return changes


def set_global_settings(
    *, session: Session, values: Mapping[str, Any], actor: str, source: str, settings: Any | None = None
) -> dict[str, dict]:
    """Validate and store global overrides (None or "" clears one); all or nothing. Returns the masked changes."""

    def read(key, reveal):
        row = session.get(GlobalSetting, key)
        return None if row is None else (reveal(row.value) if row.is_secret else json.loads(row.value))

    def write(key, spec, stored):
        row = session.get(GlobalSetting, key)
        if stored is None:
            if row is not None:
                session.delete(row)
            return
        row = row or GlobalSetting(key=key, value="")
        row.value = stored if spec.secret else json.dumps(stored)
        row.is_secret, row.updated_at = spec.secret, utcnow()
        session.add(row)

    return _apply(session=session, values=values, scope="global", settings=settings, read=read, write=write,
                  actor=actor, source=source, action="settings.global", target="global")
