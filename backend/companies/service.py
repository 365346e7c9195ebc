"""Companies (IOMAD tenants): add, list, show, rename. Settings live in `backend.companies.catalogue`."""

from __future__ import annotations

import re
from typing import Any

from sqlmodel import Session, select

from backend.companies.resolution import describe
from backend.core import audit
from backend.core.errors import NotFound, UnusableInput
from models import Company, utcnow

# Moodle company ids are numbers, Job JSON tenant ids are strings: allow both, nothing odd.
_COMPANY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


def _clean_name(name: str | None) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise UnusableInput("A company needs a name (--name NAME).")
    if len(name) > 255:
        raise UnusableInput("A company name may have at most 255 characters.")
    return name


def get_company(*, session: Session, company_id: str) -> Company:
    company = session.get(Company, company_id)
    if company is None:
        raise NotFound(f"There is no company {company_id!r}; add it with `mani companies add {company_id} --name NAME`.")
    return company


def list_companies(*, session: Session) -> list[Company]:
    return list(session.exec(select(Company).order_by(Company.id)).all())


def add_company(*, session: Session, company_id: str, name: str, actor: str, source: str) -> Company:
    """A new company with no overrides (it inherits every global setting)."""
    company_id = (company_id or "").strip()
    if not _COMPANY_ID.match(company_id):
        raise UnusableInput(
            f"{company_id!r} is not a usable company id: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit."
        )
    name = _clean_name(name)
    if session.get(Company, company_id) is not None:
        raise UnusableInput(f"Company {company_id!r} already exists; change it with `mani companies set` or `--name`.")
    company = Company(id=company_id, name=name, settings={}, secrets={})
    session.add(company)
    session.flush()
    audit.record(
        session=session, actor=actor, source=source, action="company.add",
        target=f"company:{company_id}", details={"name": name},
    )
    return company


def rename_company(*, session: Session, company_id: str, name: str, actor: str, source: str) -> Company:
    company = get_company(session=session, company_id=company_id)
    name = _clean_name(name)
    if name != company.name:
        audit.record(
            session=session, actor=actor, source=source, action="company.rename",
            target=f"company:{company_id}", details={"from": company.name, "to": name},
        )
        company.name, company.updated_at = name, utcnow()
        session.add(company)
    return company


def company_row(company: Company) -> dict[str, Any]:
    """One line of `mani companies list --json` (no secrets: only plain overrides are read)."""
    own = company.settings or {}
    return {
        "id": company.id,
        "name": company.name,
        "enabled": bool(own.get("enabled", False)),
        "email_provider": own.get("email_provider", "system"),
        "threshold": own.get("threshold"),
        "storage": own.get("storage"),
        "overrides": sorted(set(own) | set(company.secrets or {})),
        "created_at": company.created_at.isoformat(),
        "updated_at": company.updated_at.isoformat(),
    }


def show_company(*, session: Session, company_id: str, settings: Any | None = None) -> dict[str, Any]:
    """`mani companies show ID --json`: the company and every setting (masked), with its source."""
    company = get_company(session=session, company_id=company_id)
    described = describe(session=session, company_id=company_id, settings=settings)
    return {**company_row(company), "settings": described["settings"]}
