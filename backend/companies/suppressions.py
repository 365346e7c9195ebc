"""The suppression list: per company, the addresses its jobs never mail again.

A hard bounce or a complaint (provider webhooks) adds the address, and so can an admin, by hand
or from a file. Job creation asks `suppressed_among` once per intake chunk, and the recipients
found end `suppressed` with the reason. Every write here is one statement for the whole list
given (never a round trip per address), and is audited in the caller's transaction.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from email_validator import EmailNotValidError
from sqlalchemy import delete, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from backend.core.audit import record
from backend.core.csv_out import spreadsheet_safe
from backend.core.errors import UnusableInput
from backend.mail.addresses import checked_address, normalize_email
from models import NO_COMPANY, Company, Suppression, utcnow

S = Suppression.__table__.c
SOURCES = ("bounce", "complaint", "admin", "import")
# Addresses per statement: far under every database's bound-parameter limit.
CHUNK = 1000
MAX_REASON = 500


@dataclass(frozen=True, slots=True)
class Entry:
    """One address to suppress, as given; `line` names it in an error (file line or argument)."""

    email: str
    reason: str
    line: int | None = None


def company_key(company_id: str | None) -> str:
    return NO_COMPANY if company_id is None else str(company_id)


def check_company(*, session: Session, company_id: str | None) -> str:
    """The list's key; a company that does not exist is unusable input."""
    if company_id is not None and session.get(Company, company_id) is None:
        raise UnusableInput(f"company {company_id!r} does not exist: add it with `mani companies add {company_id}`")
    return company_key(company_id)


def _chunks(items: list, size: int = CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def suppressed_among(*, session: Session, company_id: str | None, emails: Iterable[str]) -> dict[str, str]:
    """The normalized addresses among `emails` on the company's list, with their reason: one query."""
    emails = sorted(set(emails))
    if not emails:
        return {}
    query = select(S.email_norm, S.source, S.reason).where(
        S.company_key == company_key(company_id), S.email_norm.in_(emails))
    return {row.email_norm: f"{row.source}: {row.reason}" for row in session.execute(query)}


def _insert_ignoring_present(session: Session):
    """INSERT that leaves an address already on the list as it is (two webhooks may race)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(Suppression.__table__).on_conflict_do_nothing(
            index_elements=["company_key", "email_norm"])
    if dialect == "sqlite":
        return sqlite.insert(Suppression.__table__).on_conflict_do_nothing(
            index_elements=["company_key", "email_norm"])
    return insert(Suppression.__table__).prefix_with("IGNORE")


def checked_entries(entries: Iterable[Entry]) -> list[tuple[str, Entry]]:
    """Normalize every address; the first bad one is unusable input naming its line."""
    checked: dict[str, Entry] = {}
    for entry in entries:
        where = f"line {entry.line}: " if entry.line is not None else ""
        email = (entry.email or "").strip()
        if not email:
            raise UnusableInput(f"{where}the email address is missing.")
        try:
            norm = checked_address(email)
        except EmailNotValidError as error:
            raise UnusableInput(f"{where}{email!r} is not a valid email address ({error})") from None
        if len(entry.reason) > MAX_REASON:
            raise UnusableInput(f"{where}the reason for {email!r} is longer than {MAX_REASON} characters.")
        checked.setdefault(norm, entry)
    return list(checked.items())


def add(*, session: Session, company_id: str | None, entries: Iterable[Entry], source: str, actor: str,
        audit_source: str, job_id: int | None = None, address: str | None = None) -> int:
    """Put addresses on the company's list; returns how many were new. One audit entry for the call."""
    if source not in SOURCES:
        raise UnusableInput(f"unknown suppression source {source!r}: use one of {', '.join(SOURCES)}")
    key = check_company(session=session, company_id=company_id)
    checked = checked_entries(entries)
    now = utcnow()
    added: list[str] = []
    for chunk in _chunks(checked):
        present = set(session.execute(select(S.email_norm).where(
            S.company_key == key, S.email_norm.in_([norm for norm, _ in chunk]))).scalars())
        values = [{"company_key": key, "email_norm": norm, "source": source,
                   "reason": entry.reason.strip() or source, "job_id": job_id, "created_by": actor[:128],
                   "created_at": now} for norm, entry in chunk if norm not in present]
        if values:
            session.execute(_insert_ignoring_present(session), values)
            added += [value["email_norm"] for value in values]
    if added or source in ("admin", "import"):
        record(session=session, actor=actor, source=audit_source, action=f"suppression.{source}",
               target=f"company:{key or '-'}",
               details={"added": len(added), "given": len(checked), "emails": added[:50],
                        **({"job_id": job_id} if job_id is not None else {})},
               address=address)
    return len(added)


def remove(*, session: Session, company_id: str | None, emails: Iterable[str], actor: str, audit_source: str,
           address: str | None = None) -> int:
    """Take addresses off the company's list; returns how many were on it. Audited."""
    key = check_company(session=session, company_id=company_id)
    norms = sorted({normalize_email(email) for email in emails if email and email.strip()})
    if not norms:
        raise UnusableInput("give at least one email address to remove.")
    removed = 0
    for chunk in _chunks(norms):
        removed += session.execute(
            delete(Suppression.__table__).where(S.company_key == key, S.email_norm.in_(chunk))).rowcount
    record(session=session, actor=actor, source=audit_source, action="suppression.remove",
           target=f"company:{key or '-'}", details={"removed": removed, "given": len(norms), "emails": norms[:50]},
           address=address)
    return removed


def read_import_file(path: str | Path, *, default_reason: str) -> list[Entry]:
    """A CSV with an `email` column and an optional `reason` column, or one address per line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UnusableInput(f"file {path} does not exist.") from None
    except UnicodeDecodeError:
        raise UnusableInput(f"file {path} is not valid UTF-8; save it as UTF-8.") from None
    except OSError as error:
        raise UnusableInput(f"file {path} cannot be read: {error.strerror or error}.") from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise UnusableInput(f"file {path} is empty.")
    header = [cell.strip().lower() for cell in rows[0]]
    if "email" in header:
        email_at, reason_at, first = header.index("email"), header.index("reason") if "reason" in header else None, 1
    else:
        email_at, reason_at, first = 0, None, 0
    entries = []
    for number, row in enumerate(rows[first:], start=first + 1):
        if not any(cell.strip() for cell in row):
            continue
        email = row[email_at] if email_at < len(row) else ""
        reason = row[reason_at].strip() if reason_at is not None and reason_at < len(row) else ""
        entries.append(Entry(email=email, reason=reason or default_reason, line=number))
    if not entries:
        raise UnusableInput(f"file {path} lists no addresses.")
    return entries


EXPORT_COLUMNS = ("company", "email", "source", "reason", "job_id", "created_by", "created_at")


def export_rows(*, session: Session, company_id: str | None) -> Iterator[list[str]]:
    """The company's list as CSV rows (header first), every cell spreadsheet-safe, streamed."""
    key = company_key(company_id)
    yield list(EXPORT_COLUMNS)
    last_id = 0
    while True:
        rows = session.execute(select(Suppression.__table__).where(S.company_key == key, S.id > last_id)
                               .order_by(S.id).limit(CHUNK)).all()
        if not rows:
            return
        for row in rows:
            yield [spreadsheet_safe(value) for value in (
                row.company_key, row.email_norm, row.source, row.reason, row.job_id, row.created_by,
                row.created_at.isoformat() if row.created_at else "")]
        last_id = rows[-1].id


def count(*, session: Session, company_id: str | None) -> int:
    return session.execute(select(func.count()).select_from(Suppression.__table__)
                           .where(S.company_key == company_key(company_id))).scalar_one()
