"""How a setting resolves for a company: its override, then the global override in the database,
then the settings object (MANI_* environment, mani.toml), then the catalogue's default.

Secrets are Fernet tokens at rest (`Company.secrets`, `GlobalSetting.is_secret`), plain text
only in `resolve()` (for the engine), masked everywhere else (`describe()`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from sqlmodel import Session, select

from backend.companies.catalogue import ALL_SETTINGS, SETTINGS_CATALOGUE, UNREADABLE, SettingSpec, shown
from backend.core.errors import ManiError, NotFound
from backend.core.secrets import decrypt, mask
from backend.core.settings import get_settings
from models import Company, GlobalSetting


class ResolvedSettings(Mapping[str, Any]):
    """Every setting's effective value for one company (secrets decrypted): for the engine only."""

    def __init__(self, *, company_id: str | None, values: dict[str, Any], sources: dict[str, str]):
        self.company_id = company_id
        self.sources = sources
        self._values = {"company_id": company_id, **values}

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, key: str) -> Any:
        try:
            return self.__dict__["_values"][key]
        except KeyError:
            raise AttributeError(key) from None

    def __repr__(self) -> str:
        shown = {k: (mask(v) if k in ALL_SETTINGS and ALL_SETTINGS[k].secret and v else v) for k, v in self._values.items()}
        return f"ResolvedSettings({shown!r})"


def _settings_value(spec: SettingSpec, settings: Any) -> Any:
    attr = spec.settings_attr or spec.key
    value = getattr(settings, attr, None)
    if value is None or value == "":
        return None
    return list(value) if isinstance(value, (list, tuple)) else value


def settings_or_default(settings: Any | None) -> Any:
    return get_settings() if settings is None else settings


def company_of(session: Session, company_id: str) -> Company:
    company = session.get(Company, company_id)
    if company is None:
        raise NotFound(f"There is no company {company_id!r}; add it with `mani companies add {company_id} --name NAME`.")
    return company


def _layers(*, session: Session, company_id: str | None, settings: Any, reveal, keys: dict[str, SettingSpec]):
    """(key, value, source, company's own stored value) per setting, `reveal` turning tokens into text."""
    company = company_of(session, company_id) if company_id else None
    rows = {row.key: row for row in session.exec(select(GlobalSetting)).all()}
    for key, spec in keys.items():
        own = None
        if company is not None and spec.scope != "global":
            if key in (company.secrets or {}):
                own = reveal(company.secrets[key])
            elif key in (company.settings or {}):
                own = company.settings[key]
        if own is not None and not (key == "email_provider" and own == "system"):
            yield key, own, "company", own
            continue
        if spec.scope != "company" and key in rows:
            row = rows[key]
            yield key, (reveal(row.value) if row.is_secret else json.loads(row.value)), "global", own
            continue
        value = _settings_value(spec, settings)
        if value is not None:
            yield key, value, "settings", own
        else:
            yield key, spec.default, "default", own


def resolve(*, session: Session, company_id: str | None, settings: Any | None = None) -> ResolvedSettings:
    """Effective values (secrets in plain text) for `company_id`, or the global ones for None."""
    settings = settings_or_default(settings)
    values, sources = {}, {}
    for key, value, source, _own in _layers(
        session=session, company_id=company_id, settings=settings, reveal=lambda t: decrypt(t, settings=settings), keys=ALL_SETTINGS
    ):
        values[key], sources[key] = value, source
    return ResolvedSettings(company_id=company_id, values=values, sources=sources)


def reveal_or_unreadable(settings: Any):
    """Decrypts a stored secret, or answers UNREADABLE (so a lost key never hides the other settings)."""

    def reveal(token: str) -> Any:
        try:
            return decrypt(token, settings=settings)
        except ManiError:
            return UNREADABLE

    return reveal


def describe(*, session: Session, company_id: str | None = None, settings: Any | None = None) -> dict:
    """Every setting with its effective value, where it comes from, and the company's own value: all masked."""
    settings = settings_or_default(settings)
    scope = "company" if company_id else "global"
    company = company_of(session, company_id) if company_id else None
    entries: dict[str, dict] = {}
    for key, value, source, own in _layers(
        session=session, company_id=company_id, settings=settings, reveal=reveal_or_unreadable(settings),
        keys=SETTINGS_CATALOGUE[scope],
    ):
        spec = ALL_SETTINGS[key]
        entries[key] = {
            "value": shown(spec, value),
            "source": source,
            "set": shown(spec, own),
            "secret": spec.secret,
            "type": spec.kind,
            "choices": list(spec.choices_for(scope)),
            "default": spec.default,
            "description": spec.description,
        }
    return {
        "scope": scope,
        "company": {"id": company.id, "name": company.name} if company else None,
        "settings": entries,
    }
