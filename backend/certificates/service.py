"""Certificates as a service: issue per batch (idempotently), verify, revoke, export.

The engine calls `check_job_inputs` at submit time and `prepare_batch` before it renders a
batch's mail. Nothing here commits: the caller's `session_scope()` does.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, select

from backend.certificates.issue import (  # shared with the cloud worker, which keeps no database
    ACTIONS_WITH_CERTIFICATES,
    DEFAULT_VERIFY_URL,  # noqa: F401 - re-exported
    fallback_fonts,
    job_template,
    placeholder_values,
    storage_key,
    template_dirs,  # noqa: F401 - re-exported (cli)
    verify_url,
)
from backend.certificates.issue import attach_pdf as _attach
from backend.certificates.issue import expiry_days as _expiry_days
from backend.companies.resolution import resolve
from backend.core import audit
from backend.core.csv_out import csv_writer
from backend.core.errors import InvalidTransition, NotFound, UnusableInput
from backend.core.settings import get_settings
from backend.storage.base import Storage, setting_value
from backend.storage.registry import get_storage
from certificates import (
    CertificateError,
    RenderItem,
    Template,
    get_renderer,
    missing_fields,
    new_code,
    normalize_code,
    prepare_values,
    render_many,
    required_fields,
)
from models import Job, Recipient, utcnow
from models.certificates import Certificate


@dataclass
class CertificateResult:
    """One recipient's certificate for the mail: link and code, the PDF when attached, or an error."""

    code: str | None
    url: str | None
    pdf: bytes | None = None
    error: str | None = None
    verify_url: str | None = None
    reused: bool = False


def wants_certificates(job: Job) -> bool:
    return job.action in ACTIONS_WITH_CERTIFICATES or job.type == "certificate"


def check_job_inputs(*, job_type: str, action: str, available_fields: set[str], template_data: dict) -> None:
    """Raise UnusableInput for a bad template, font set-up or missing placeholder, before any row exists."""
    if action not in ACTIONS_WITH_CERTIFICATES and job_type != "certificate":
        return
    settings = get_settings()
    template = job_template(template_data, settings=settings)
    get_renderer(template, fallback_fonts=fallback_fonts(settings))  # fonts and images load now, not mid-job
    _expiry_days(template_data)
    available = set(available_fields) | {k for k, v in (template_data or {}).items() if v not in (None, "")}
    missing = missing_fields(required_fields(template), available)
    if missing:
        raise UnusableInput(
            f"certificate template '{template.name}' needs {', '.join(missing)}: "
            "add a CSV column or a template data value for each"
        )


def recipient_data(job: Job, recipient: Recipient) -> dict:
    """Placeholder values for one recipient: job template data, then CSV columns, then its own fields."""
    fields = {name: getattr(recipient, name, None) for name in ("email", "firstname", "lastname", "username", "userid")}
    return placeholder_values(template_data=job.template_data, variables=recipient.variables, fields=fields)


class _Storages:
    """The storages a job's certificates live in: the one new issues go to, and any older ones by name."""

    def __init__(self, *, session: Session, job: Job, settings):
        self.resolved = dict(resolve(session=session, company_id=job.company_id, settings=settings))
        self.settings = settings
        # The company's storage on the cloud path (certificate_generation_mode), local otherwise.
        mode = self.resolved.get("certificate_generation_mode") or "cloud_if_enabled"
        name = self.resolved.get("storage") or "local"
        if mode == "local" or (mode == "cloud_if_enabled" and job.route != "cloud"):
            name = "local"
        self.current = get_storage(settings=settings, company_settings=self.resolved, name=name)
        self._by_name: dict[str, Storage] = {self.current.name: self.current}

    def named(self, name: str) -> Storage:
        if name not in self._by_name:
            self._by_name[name] = get_storage(settings=self.settings, company_settings=self.resolved, name=name)
        return self._by_name[name]


def _current(session: Session, job_id: int, recipient_ids: list[int]) -> dict[int, Certificate]:
    rows = session.exec(
        select(Certificate)
        .where(Certificate.job_id == job_id, Certificate.recipient_id.in_(recipient_ids), Certificate.revoked_at.is_(None))
        .order_by(Certificate.id)
    ).all()
    return {row.recipient_id: row for row in rows}  # the newest issue wins


@dataclass
class _Issue:
    """A new certificate between its values and its stored PDF."""

    recipient_id: int
    email: str
    code: str
    issued_at: datetime
    expires_at: datetime | None
    link: str
    values: dict
    key: str = ""
    sha256: str = ""
    size: int = 0


def prepare_batch(*, session: Session, job: Job, recipients: Sequence[Recipient]) -> dict[int, CertificateResult]:
    """Issue (or reuse) each recipient's certificate; set its certificate_url and certificate_code.

    Idempotent: a recipient with a current (unrevoked) certificate for this job keeps it, with
    no new render and no new upload. A recipient whose certificate cannot be made gets a result
    with `error`; the others go on. A storage failure raises (StorageError) so the batch is retried.
    All rows are flushed once; the caller commits.

    This is `plan_batch`, `issue_planned` and `record_batch` in one session. A worker runs them in
    three steps instead, so no database transaction (SQLite's write lock) stays open while the
    certificates render.
    """
    plan = plan_batch(session=session, job=job, recipients=recipients)
    issue_planned(plan)
    return record_batch(session=session, plan=plan)


@dataclass
class BatchPlan:
    """What a batch's certificate step found (reads only), then made (renders and uploads)."""

    job_id: int
    job_uuid: str
    template: Template | None
    attach: bool
    ttl: int
    storages: _Storages | None
    results: dict[int, CertificateResult]
    issues: list[_Issue]


def plan_batch(*, session: Session, job: Job, recipients: Sequence[Recipient]) -> BatchPlan:
    """Reuse current certificates, prepare the values of new ones; reads only."""
    plan = BatchPlan(job.id, job.uuid, None, False, 0, None, {}, [])
    if not recipients:
        return plan
    settings = get_settings()
    data = job.template_data or {}
    try:
        plan.template = job_template(data, settings=settings)
        get_renderer(plan.template, fallback_fonts=fallback_fonts(settings))  # a font or image gone: every row fails
        expiry_days = _expiry_days(data)
    except UnusableInput as error:  # the template went away since submit: every row fails the same way
        plan.results = {r.id: CertificateResult(code=None, url=None, error=str(error)) for r in recipients}
        return plan
    plan.attach = _attach(data)
    plan.storages = storages = _Storages(session=session, job=job, settings=settings)
    plan.ttl = ttl = int(setting_value(settings, "presigned_url_ttl", 604800))
    existing = _current(session, job.id, [r.id for r in recipients])
    for recipient in recipients:
        certificate = existing.get(recipient.id)
        if certificate is not None:
            stored_in = storages.named(certificate.storage_backend)
            url = stored_in.url(certificate.storage_key, ttl=ttl)
            try:
                pdf = stored_in.get(certificate.storage_key) if plan.attach else None
            except NotFound:  # frozen as issued: never silently re-rendered
                plan.results[recipient.id] = CertificateResult(code=None, url=None, error=(
                    f"certificate {certificate.code} is missing from storage; revoke it and retry to issue a new one"))
                continue
            plan.results[recipient.id] = CertificateResult(certificate.code, url, pdf, reused=True,
                                                           verify_url=verify_url(certificate.code, settings=settings))
            continue
        code = new_code()
        issued_at = utcnow()
        expires_at = issued_at + timedelta(days=expiry_days) if expiry_days else None
        link = verify_url(code, settings=settings)
        try:
            values = prepare_values(plan.template, recipient_data(job, recipient), code=code, verify_url=link,
                                    issued_at=issued_at, expires_at=expires_at)
        except CertificateError as error:
            plan.results[recipient.id] = CertificateResult(code=None, url=None, error=str(error))
            continue
        plan.issues.append(_Issue(recipient.id, recipient.email, code, issued_at, expires_at, link, values))
    return plan


def issue_planned(plan: BatchPlan) -> None:
    """Render every new certificate of the plan (on every core) and store it; no database work."""
    if not plan.issues:
        return
    storage = plan.storages.current
    # Every new certificate of the batch at once: one fpdf2 document per run of them.
    pdfs = render_many(plan.template, [RenderItem(i.values, created_at=i.issued_at) for i in plan.issues],
                       fallback_fonts=fallback_fonts())
    for issue, pdf in zip(plan.issues, pdfs):
        if isinstance(pdf, CertificateError):
            plan.results[issue.recipient_id] = CertificateResult(code=None, url=None, error=str(pdf))
            continue
        issue.key = storage_key(plan.job_uuid, issue.recipient_id, issue.code)
        storage.put(issue.key, pdf, content_type="application/pdf")
        issue.sha256, issue.size = hashlib.sha256(pdf).hexdigest(), len(pdf)
        plan.results[issue.recipient_id] = CertificateResult(
            issue.code, storage.url(issue.key, ttl=plan.ttl), pdf if plan.attach else None, verify_url=issue.link)


def record_batch(*, session: Session, plan: BatchPlan) -> dict[int, CertificateResult]:
    """Write the certificates issued and every recipient's link: two executemany statements."""
    if plan.storages is None:
        return plan.results
    storage = plan.storages.current
    rows = [
        {"code": i.code, "job_id": plan.job_id, "recipient_id": i.recipient_id, "email": i.email,
         "fullname": i.values["fullname"][:512], "course_name": i.values.get("course_name", "")[:512],
         "template": plan.template.name, "issued_at": i.issued_at, "expires_at": i.expires_at,
         "revoked_at": None, "revoke_reason": None, "storage_backend": storage.name, "storage_key": i.key,
         "sha256": i.sha256, "size": i.size}
        for i in plan.issues if i.key
    ]
    if rows:
        session.execute(insert(Certificate), rows)
    linked = {rid: result for rid, result in plan.results.items() if result.error is None}
    if linked:
        session.execute(update(Recipient), [{"id": rid, "certificate_url": r.url, "certificate_code": r.code}
                                            for rid, r in linked.items()])
        for loaded in list(session.identity_map.values()):  # the caller's Recipient objects see the links too
            if isinstance(loaded, Recipient) and loaded.id in linked:
                set_committed_value(loaded, "certificate_url", linked[loaded.id].url)
                set_committed_value(loaded, "certificate_code", linked[loaded.id].code)
    return plan.results


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def status_of(certificate: Certificate, *, now: datetime | None = None) -> str:
    if certificate.revoked_at is not None:
        return "revoked"
    if certificate.expires_at is not None and certificate.expires_at <= (now or utcnow()):
        return "expired"
    return "valid"


def _find(session: Session, code: str) -> Certificate | None:
    canonical = normalize_code(code)
    if canonical is None:
        return None
    return session.exec(select(Certificate).where(Certificate.code == canonical)).first()


def verify(*, session: Session, code: str) -> dict:
    """Who, what and when for a code, and whether it is valid, expired, revoked or not found."""
    certificate = _find(session, code)
    if certificate is None:
        return {"code": code, "valid": False, "status": "not_found", "email": None, "fullname": None,
                "course_name": None, "issued_at": None, "expires_at": None, "revoked_at": None,
                "revoke_reason": None, "job_id": None}
    job = session.get(Job, certificate.job_id) if certificate.job_id else None
    status = status_of(certificate)
    return {
        "code": certificate.code, "valid": status == "valid", "status": status, "email": certificate.email,
        "fullname": certificate.fullname, "course_name": certificate.course_name,
        "issued_at": _iso(certificate.issued_at), "expires_at": _iso(certificate.expires_at),
        "revoked_at": _iso(certificate.revoked_at), "revoke_reason": certificate.revoke_reason,
        "job_id": job.uuid if job else None, "template": certificate.template,
    }


def revoke(*, session: Session, code: str, reason: str | None = None, actor: str, source: str) -> Certificate:
    """Revoke one certificate (audited). A later retry of its job issues a new one with a new code."""
    certificate = _find(session, code)
    if certificate is None:
        raise NotFound(f"no certificate {code!r}")
    if certificate.revoked_at is not None:
        raise InvalidTransition(f"certificate {certificate.code} was already revoked on {certificate.revoked_at:%Y-%m-%d %H:%M} UTC")
    certificate.revoked_at = utcnow()
    certificate.revoke_reason = reason
    session.add(certificate)
    audit.record(session=session, actor=actor, source=source, action="certificate.revoke", target=certificate.code,
                 details={"reason": reason, "job_id": certificate.job_id, "email": certificate.email})
    session.flush()
    return certificate


def list_certificates(*, session: Session, job_id: int, limit: int | None = 100, offset: int = 0) -> list[dict]:
    """A job's certificates (every issue, newest last) as plain dicts."""
    query = select(Certificate).where(Certificate.job_id == job_id).order_by(Certificate.id).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    now = utcnow()
    return [
        {"code": c.code, "status": status_of(c, now=now), "recipient_id": c.recipient_id, "email": c.email,
         "fullname": c.fullname, "course_name": c.course_name, "issued_at": _iso(c.issued_at),
         "expires_at": _iso(c.expires_at), "revoked_at": _iso(c.revoked_at), "storage_backend": c.storage_backend,
         "storage_key": c.storage_key, "sha256": c.sha256, "size": c.size}
        for c in session.exec(query).all()
    ]


@dataclass
class ExportResult:
    path: Path
    count: int
    missing: list[str]
    bytes_written: int


_UNSAFE = re.compile(r"[^\w.\-]+", re.UNICODE)


def export_zip(*, session: Session, job_id: int, path: str | Path,
               progress: Callable[[int, int], None] | None = None, include_revoked: bool = False) -> ExportResult:
    """Write every certificate of a job into a ZIP, one PDF at a time (constant memory, ZIP64).

    The archive is written beside `path` and renamed into place when complete. It holds
    `<name>-<code>.pdf` files and a `manifest.csv`. PDFs missing from storage are listed in
    the result (and the manifest) instead of failing the export.
    """
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    storages = _Storages(session=session, job=job, settings=get_settings())
    conditions = [Certificate.job_id == job.id]
    if not include_revoked:
        conditions.append(Certificate.revoked_at.is_(None))
    total = len(session.exec(select(Certificate.id).where(*conditions)).all())
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(handle)
    done, missing, last_id = 0, [], 0
    columns = (Certificate.id, Certificate.code, Certificate.email, Certificate.fullname, Certificate.course_name,
               Certificate.issued_at, Certificate.expires_at, Certificate.revoked_at, Certificate.storage_key,
               Certificate.storage_backend)
    try:
        with tempfile.TemporaryFile("w+b") as manifest_file, \
                zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            manifest = io.TextIOWrapper(manifest_file, encoding="utf-8", newline="")
            writer = csv_writer(manifest)  # names and courses come from CSVs: spreadsheet-safe
            writer.writerow(["code", "email", "fullname", "course_name", "issued_at", "expires_at", "revoked_at", "file"])
            while True:  # keyset pages: no ORM identity map grows with the job
                page = session.exec(select(*columns).where(*conditions, Certificate.id > last_id)
                                    .order_by(Certificate.id).limit(500)).all()
                if not page:
                    break
                for row in page:
                    last_id = row.id
                    name = f"{_UNSAFE.sub('-', row.fullname).strip('-')[:80] or 'certificate'}-{row.code}.pdf"
                    try:
                        with storages.named(row.storage_backend).open_stream(row.storage_key) as source, \
                                archive.open(name, "w", force_zip64=True) as sink:
                            shutil.copyfileobj(source, sink, 1 << 20)
                    except NotFound:
                        missing.append(row.code)
                        name = ""
                    writer.writerow([row.code, row.email, row.fullname, row.course_name, _iso(row.issued_at),
                                     _iso(row.expires_at), _iso(row.revoked_at), name or "(missing from storage)"])
                    done += 1
                    if progress is not None:
                        progress(done, total)
            manifest.flush()
            manifest.detach()  # keep the binary file open; the text layer is done
            manifest_file.seek(0)
            with archive.open("manifest.csv", "w", force_zip64=True) as sink:
                shutil.copyfileobj(manifest_file, sink, 1 << 20)
        os.replace(partial, target)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return ExportResult(path=target, count=done - len(missing), missing=missing, bytes_written=target.stat().st_size)
