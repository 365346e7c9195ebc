"""A `certificate` job end to end: a real Redis worker renders, stores and mails each certificate."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import pytest
from typer.testing import CliRunner

import cli
from tests.support.engine import submit, write_csv
from tests.support.pdfs import qpdf_check
from tests.support.workers import run_on_worker

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.xdist_group("workers")]

NAMES = [("Zoë", "Øster-Ångström"), ("Дмитрий", "Иванов"), ("Αλέξανδρος", "Παπαδόπουλος")]


def test_certificate_job_through_a_redis_worker_mails_every_link(sqlite_db, redis_smtp, tmp_path):
    smtp_sink = redis_smtp
    rows = [{"email": f"cert{i}@example.com", "firstname": first, "lastname": last}
            for i, (first, last) in enumerate(NAMES)]
    job_id = submit(write_csv(tmp_path / "c.csv", rows), "certificate",
                    template_data={"course_name": "Fire Safety 101"})
    job = run_on_worker(job_id, log=tmp_path / "worker.log")
    assert (job.status, job.sent_count) == ("completed", 3)

    result = CliRunner().invoke(cli.app, ["jobs", "recipients", str(job_id), "--json"])
    recipients = {r["email"]: r for r in json.loads(result.stdout)}
    mails = {m.rcpt_tos[0]: m.parsed for m in smtp_sink.messages}
    assert set(mails) == set(recipients)
    for email, recipient in recipients.items():
        code, url = recipient["certificate_code"], recipient["certificate_url"]
        assert code and code.startswith("MANI-") and url
        body = mails[email].get_body(("plain",)).get_content()
        assert url in body and code in body
        pdf = Path(urlparse(url).path)
        qpdf_check(pdf.read_bytes())  # rendered in the worker process: checked here
