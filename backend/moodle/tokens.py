"""Bearer tokens for the HTTP API: one company each, shown once, stored as a SHA-256 digest.

A plain SHA-256 is enough here: the tokens are 256 random bits, so there is nothing to
brute-force, and the digest is looked up by an index rather than compared in a loop.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, select

from backend.core import audit
from backend.core.errors import NotFound
from models import Company, utcnow
from models.callbacks import ApiToken

TOKEN_PREFIX = "mani_"


@dataclass(slots=True)
class IssuedToken:
    id: int
    company_id: str
    token: str  # the only time the plain token exists


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(*, session: Session, company_id: str, actor: str, source: str,
                revoke_others: bool = False) -> IssuedToken:
    """Create a token for a company; the plain value is returned once and never stored."""
    if session.get(Company, company_id) is None:
        raise NotFound(f"No company {company_id!r}.")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    revoked = []
    if revoke_others:
        for old in session.exec(
            select(ApiToken).where(ApiToken.company_id == company_id, ApiToken.revoked_at.is_(None))
        ).all():
            old.revoked_at = now
            session.add(old)
            revoked.append(old.id)
    row = ApiToken(company_id=company_id, token_hash=digest(token), prefix=token[: len(TOKEN_PREFIX) + 4],
                   created_at=now, created_by=actor)
    session.add(row)
    session.flush()
    audit.record(session=session, actor=actor, source=source, action="api_token.issue",
                 target=f"company:{company_id}", details={"token_id": row.id, "prefix": row.prefix,
                                                          "revoked": revoked})
    return IssuedToken(id=row.id, company_id=company_id, token=token)


def authenticate(*, session: Session, token: str | None, now: datetime | None = None) -> ApiToken | None:
    """The live token row for a presented bearer token, or None. Marks it used."""
    if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 256:
        return None
    wanted = digest(token)
    row = session.exec(select(ApiToken).where(ApiToken.token_hash == wanted)).first()
    # The index lookup found it by digest; compare again in constant time for good measure.
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_hash, wanted):
        return None
    row.last_used_at = now or utcnow()
    session.add(row)
    return row


def list_tokens(*, session: Session, company_id: str | None = None) -> list[ApiToken]:
    query = select(ApiToken).order_by(ApiToken.id)
    if company_id is not None:
        query = query.where(ApiToken.company_id == company_id)
    return list(session.exec(query).all())


def revoke_token(*, session: Session, token_id: int, actor: str, source: str) -> ApiToken:
    row = session.get(ApiToken, token_id)
    if row is None:
        raise NotFound(f"No API token {token_id}.")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.add(row)
        audit.record(session=session, actor=actor, source=source, action="api_token.revoke",
                     target=f"company:{row.company_id}", details={"token_id": row.id, "prefix": row.prefix})
    return row
