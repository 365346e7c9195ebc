"""mani's side of the cloud offload, end to end against real local servers: a job handed to the
stack's queue in moto (server mode) or to its intake behind a local HTTP server, the Lambda
handler run on the messages received from moto (S3, SES, DynamoDB, Secrets Manager in moto),
its callbacks into mani's own API served by uvicorn, and mani's callbacks on to Moodle's
receiver. Then what happens when the queue or the endpoint does not take the batch."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

import cli
from api.app import create_app
from api.common import ApiConfig
from backend.companies.connection_test import check_company_connections
from backend.companies.service import add_company
from backend.companies.store import set_company_settings, set_global_settings
from backend.core.settings import reset_settings_cache
from backend.delivery import engine
from backend.jobs import queries
from backend.ops.metrics import collect_families
from backend.moodle import callbacks
from models import Batch, Job, Recipient, utcnow
from models.callbacks import CallbackDelivery
from models.db import session_scope
from tests.support.aws_stack import CALLBACK_SECRET, EventSource, LambdaContext, aws_environment, deploy_stack
from tests.support.callbacks import SECRET as MOODLE_SECRET
from tests.support.cloud import dead_url, free_port, moto_server  # noqa: F401
from tests.support.engine import people, run_inline, submit, write_csv
from tests.support.receiver import Receiver

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Tried to parse AWS")]


@pytest.fixture
def keyed(monkeypatch):
    from cryptography.fernet import Fernet

    monkeypatch.setenv("MANI_SECRET_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("MANI_BATCH_SIZE", "4")
    monkeypatch.setenv("MANI_RETRY_SCHEDULE", "0,0")
    reset_settings_cache()


@pytest.fixture
def stack(moto_server):
    moto_server.verify("mani.test")
    return deploy_stack(moto_server)


@pytest.fixture
def worker(moto_server, stack, monkeypatch):
    """The stack's functions' environment (worker and intake alike) pointed at moto."""
    from cloud_workers.aws import lambda_handler

    env = aws_environment(moto_server, {**stack.ingest_env, **stack.worker_env}) | {"SEND_RATE": "0"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    lambda_handler.reset()
    yield lambda_handler
    lambda_handler.reset()


@pytest.fixture
def moodle():
    with Receiver(MOODLE_SECRET) as receiver:
        yield receiver


@pytest.fixture
def mani_api(serve_app):
    url = serve_app(create_app(config=ApiConfig()))
    with session_scope() as session:
        set_global_settings(session=session, values={"public_url": url}, actor="t", source="test")
    return url


def acme(moodle_url: str, **values) -> None:
    with session_scope() as session:
        add_company(session=session, company_id="acme", name="Acme Training", actor="t", source="test")
    with session_scope() as session:
        set_company_settings(session=session, company_id="acme", actor="t", source="test", values={
            "enabled": "true", "threshold": "0", "cloud_callback_secret": CALLBACK_SECRET,
            "callback_url": moodle_url, "callback_secret": MOODLE_SECRET, **values})


def local_queue_url(moto, stack) -> str:
    """The stack's queue at moto's address (the stack's output names AWS's host)."""
    return moto.client("sqs").get_queue_url(QueueName=stack.queue_url.rsplit("/", 1)[1])["QueueUrl"]


def sqs_settings(moto, stack) -> dict:
    return {"cloud_mode": "sqs", "sqs_queue_url": local_queue_url(moto, stack), "aws_region": moto.region,
            "aws_access_key_id": "AKIAMANITEST", "aws_secret_access_key": "moto-secret"}


def connection_checks() -> dict:
    with session_scope() as session:
        return {c.name: c for c in check_company_connections(session=session, company_id="acme")}


def job_state(job_id: int) -> tuple[Job, list[Batch], list[Recipient]]:
    with session_scope() as session:
        job = session.get(Job, job_id)
        batches = list(session.execute(select(Batch).where(Batch.job_id == job_id).order_by(Batch.number)).scalars())
        rows = list(session.execute(select(Recipient).where(Recipient.job_id == job_id).order_by(Recipient.id)).scalars())
        session.expunge_all()
        return job, batches, rows


def forward_to_moodle() -> int:
    """What the actors would do after the API's commit: finish the job, deliver mani's callbacks."""
    with session_scope() as session:
        running = list(session.execute(select(Job.id).where(Job.status == "processing")).scalars())
        for job_id in running:
            engine.finish_job(session=session, job_id=job_id)
    delivered = 0
    with httpx.Client(timeout=10) as client:
        for _ in range(5):
            with session_scope() as session:
                due = list(session.execute(select(CallbackDelivery.id).where(CallbackDelivery.status == "pending")
                                           .order_by(CallbackDelivery.id)).scalars())
            if not due:
                break
            for delivery_id in due:
                with session_scope() as session:
                    outcome = callbacks.deliver(session=session, delivery_id=delivery_id, http_client=client)
                    delivered += outcome.result == "delivered"
    return delivered


def test_a_certificate_job_goes_by_sqs_to_the_worker_and_back_through_mani_to_moodle(
        cb_db, keyed, moto_server, stack, worker, moodle, mani_api, tmp_path):
    acme(moodle.url, **sqs_settings(moto_server, stack))
    rows = [{**person, "userid": 7000 + i} for i, person in enumerate(people(10))]
    job_id = submit(write_csv(tmp_path / "c.csv", rows), "certificate", company_id="acme",
                    template_data={"course_name": "Safe Lab Work"})
    run_inline(job_id)

    job, batches, recipients = job_state(job_id)
    assert (job.route, job.provider, job.status) == ("cloud", "sqs", "processing"), job.route_reason
    assert len(batches) == 3 and all(b.handoff_at and b.status == "processing" and b.lease_until is None for b in batches)
    source = EventSource(moto_server, stack, worker.handler)
    assert source.count() == 3 and {r.status for r in recipients} == {"processing"}
    for batch in batches:  # the message ids SQS answered, one message per batch
        assert len(batch.handoff_ref.split(",")) == 1 and len(batch.handoff_ref) >= 30
    message = source.sqs.receive_message(QueueUrl=stack.queue_url, VisibilityTimeout=0)["Messages"][0]
    body = json.loads(message["Body"])
    assert body["callback_url"] == f"{mani_api}/api/v1/callbacks" and body["tenant_id"] == "acme"
    assert body["job_id"] == job.uuid and body["type"] == "certificate" and body["generate_certificate"] is True
    by_id = {r.id: r for r in recipients}
    for item in body["recipients"]:
        assert by_id[item["recipient_id"]].userid == str(item["userid"]) and "password" not in item
    assert "Tmp-" not in message["Body"]  # the temporary passwords are sealed

    responses = source.drain()
    assert responses == [{"batchItemFailures": []}] * 3
    assert len(moto_server.deliveries) == 10

    job, batches, recipients = job_state(job_id)
    assert {r.status for r in recipients} == {"sent"} and all(r.certificate_url for r in recipients)
    assert all(r.secret is None for r in recipients)  # wiped once reported
    assert all(b.status == "completed" and b.reported_at and b.sent_count == 4 - (b.number == 3) * 2 for b in batches)
    assert forward_to_moodle() >= 3
    job, _, _ = job_state(job_id)
    assert job.status == "completed" and job.sent_count == 10
    assert {moodle.statuses[(job.uuid, str(7000 + i))] for i in range(10)} == {"completed"}
    assert moodle.job_statuses[job.uuid] == "completed" and not moodle.rejected


def test_a_refused_queue_is_retried_then_falls_back_to_local_sending(sqlite_cb_db, keyed, moto_server, stack, moodle,
                                                                   mani_api, tmp_path, monkeypatch):
    monkeypatch.setenv("MANI_EMAIL_PROVIDER", "outbox")
    reset_settings_cache()
    acme(moodle.url, **sqs_settings(moto_server, stack) | {"sqs_queue_url": local_queue_url(moto_server, stack) + "-gone"})
    job_id = submit(write_csv(tmp_path / "u.csv", people(6)), company_id="acme")
    job = run_inline(job_id)
    assert job.status == "completed" and job.route == "local" and job.provider == "outbox"
    assert "handoff by sqs failed after 3 tries" in job.route_reason and "fallback queue_local -> outbox" in job.route_reason
    _, batches, recipients = job_state(job_id)
    assert all(b.handoff_at is None and b.attempts == 3 for b in batches)
    assert {r.status for r in recipients} == {"sent"} and {r.attempts for r in recipients} == {1}  # no attempt burnt


def test_an_unreachable_queue_with_fallback_fail_fails_the_batches(sqlite_cb_db, keyed, moto_server, stack, moodle,
                                                                 mani_api, tmp_path, dead_url):
    acme(moodle.url, **sqs_settings(moto_server, stack))
    with session_scope() as session:
        set_global_settings(session=session, values={"cloud_fallback_behavior": "fail"}, actor="t", source="test")
    job_id = submit(write_csv(tmp_path / "u.csv", people(6)), company_id="acme")
    with session_scope() as session:
        batch_ids = engine.dispatch_job(session=session, job_id=job_id).batch_ids
    # The queue goes away after routing saw it.
    with session_scope() as session:
        set_company_settings(session=session, company_id="acme", actor="t", source="test",
                             values={"sqs_queue_url": dead_url + "/123456789012/mani-test-jobs"})
    job = run_inline(job_id, batch_ids=batch_ids)
    assert job.status == "failed"
    _, batches, recipients = job_state(job_id)
    assert {r.status for r in recipients} == {"permanently_failed"} and all(r.secret is None for r in recipients)
    assert all("cloud_fallback_behavior is fail" in r.last_error and "cannot be reached" in r.last_error
               for r in recipients)
    assert all(b.status == "failed" for b in batches)


# api_gateway: the stack's ingest() behind a small local HTTP server ----------------------------


class Gateway:
    """API Gateway's HTTP API in front of the intake function: payload 2.0 events to `ingest`,
    after answering the first `busy` requests 503 (and 429) as a throttled gateway would."""

    def __init__(self, ingest):
        self.ingest, self.busy, self.seen = ingest, [], []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                return None

            def _handle(self, method: str):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                gateway.seen.append((method, self.path, dict(self.headers)))
                if gateway.busy:
                    self.send_response(gateway.busy.pop(0))
                    self.send_header("Retry-After", "0")
                    self.end_headers()
                    return
                event = {"version": "2.0", "rawPath": self.path, "body": body.decode(), "isBase64Encoded": False,
                         "headers": {k.lower(): v for k, v in self.headers.items()},
                         "requestContext": {"http": {"method": method, "path": self.path}}}
                answer = gateway.ingest(event, LambdaContext(seconds=29))
                payload = answer["body"].encode()
                self.send_response(answer["statusCode"])
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self):  # noqa: N802
                self._handle("POST")

            def do_GET(self):  # noqa: N802
                self._handle("GET")

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/jobs"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gateway(moto_server, stack, worker):
    server = Gateway(worker.ingest)
    token = moto_server.client("secretsmanager").get_secret_value(SecretId=stack.physical["IngestToken"])["SecretString"]
    yield server, token
    server.close()


def test_api_gateway_mode_posts_signed_batches_with_backoff_and_the_worker_reports_back(
        sqlite_cb_db, keyed, moto_server, stack, worker, gateway, moodle, mani_api, tmp_path):
    server, token = gateway
    acme(moodle.url, cloud_mode="api_gateway", cloud_endpoint=server.url, cloud_auth_token=token)
    checks = connection_checks()
    assert checks["handoff settings"].ok and checks["cloud endpoint"].ok and checks["public url"].ok, checks
    assert token not in str(checks)
    server.busy = [503, 429]  # the first batch is throttled twice, then taken
    job_id = submit(write_csv(tmp_path / "u.csv", people(6)), company_id="acme")
    run_inline(job_id)
    job, batches, recipients = job_state(job_id)
    assert (job.route, job.provider) == ("cloud", "api_gateway") and all(b.handoff_at for b in batches)
    posts = [s for s in server.seen if s[0] == "POST"]
    assert len(posts) == 4 and all(h["Authorization"] == f"Bearer {token}" and len(h["X-Signature"]) == 64
                                   for _, _, h in posts)
    assert {r.status for r in recipients} == {"processing"} and all(r.secret for r in recipients)

    source = EventSource(moto_server, stack, worker.handler)
    assert source.drain() == [{"batchItemFailures": []}] * 2
    texts = {d.to: d.text for d in moto_server.deliveries}
    assert all(f"Tmp-{i:05d}!x" in texts[f"user{i}@example.com"] for i in range(6))  # sealed, opened by the worker
    forward_to_moodle()
    job, batches, recipients = job_state(job_id)
    assert job.status == "completed" and {r.status for r in recipients} == {"sent"}
    assert all(r.secret is None for r in recipients)


def test_api_gateway_refusing_the_token_falls_back_at_once(sqlite_cb_db, keyed, moto_server, stack, gateway, moodle,
                                                         mani_api, tmp_path):
    server, _ = gateway
    acme(moodle.url, cloud_mode="api_gateway", cloud_endpoint=server.url, cloud_auth_token="not-the-token")
    checks = connection_checks()
    assert not checks["cloud endpoint"].ok and "401" in checks["cloud endpoint"].detail
    job_id = submit(write_csv(tmp_path / "u.csv", people(3)), company_id="acme")
    job = run_inline(job_id)
    assert job.status == "completed" and job.route == "local"
    assert "answered 401" in job.route_reason and "after" not in job.route_reason.split("failed", 1)[1][:7]
def test_a_handed_off_batch_with_no_report_is_flagged_stuck(sqlite_cb_db, keyed, moto_server, stack, moodle,
                                                          mani_api, tmp_path):
    acme(moodle.url, **sqs_settings(moto_server, stack))
    job_id = submit(write_csv(tmp_path / "u.csv", people(6)), company_id="acme")
    run_inline(job_id)
    with session_scope() as session:
        detail = queries.job_detail(session=session, job_ref=str(job_id))
    assert detail.handoff is not None and detail.handoff.mode == "sqs"
    assert [b.stuck for b in detail.handoff.batches] == [False, False] and detail.handoff.stuck == 0
    with session_scope() as session:
        session.execute(update(Batch).where(Batch.job_id == job_id, Batch.number == 1)
                        .values(handoff_at=utcnow() - timedelta(hours=2)))
    with session_scope() as session:
        detail = queries.job_detail(session=session, job_ref=str(job_id))
    assert [b.stuck for b in detail.handoff.batches] == [True, False] and detail.handoff.stuck == 1
    with session_scope() as session:
        (family,) = [f for f in collect_families(session) if f.name == "mani_cloud_handoff_batches"]
    assert {s.labels["state"]: s.value for s in family.samples} == {"open": 2, "stuck": 1}
    assert detail.handoff.batches[0].message_ids and detail.handoff.stuck_after == 3600
    shown = CliRunner().invoke(cli.app, ["jobs", "show", str(job_id)])
    assert shown.exit_code == 0, shown.output
    assert "handoff: 2 batches handed off by sqs, 2 open, 1 stuck (no report for 3,600 s)" in shown.output
    assert shown.output.count("STUCK") == 2  # the column and the one stuck batch
    as_json = json.loads(CliRunner().invoke(cli.app, ["jobs", "show", str(job_id), "--json"]).output)
    assert [b["stuck"] for b in as_json["handoff"]["batches"]] == [True, False]


@pytest.mark.parametrize("claim_check", [True, False], ids=["claim-check", "split"])
def test_a_batch_too_big_for_a_message_goes_by_claim_check_or_in_parts(
        sqlite_cb_db, keyed, moto_server, stack, worker, moodle, mani_api, tmp_path, monkeypatch, claim_check):
    from backend.delivery import handoff

    monkeypatch.setattr(handoff, "SQS_MESSAGE_LIMIT", 3_000)  # a 4-recipient batch no longer fits
    storage = {"storage": "s3", "bucket": stack.bucket, "s3_endpoint_url": moto_server.url} if claim_check else {}
    acme(moodle.url, **sqs_settings(moto_server, stack), **storage)
    rows = [{**person, "motto": "x" * 900} for person in people(8)]
    job_id = submit(write_csv(tmp_path / "u.csv", rows), company_id="acme")
    run_inline(job_id)
    _, batches, _ = job_state(job_id)
    source = EventSource(moto_server, stack, worker.handler)
    if claim_check:
        assert all(b.handoff_ref.endswith("(claim check)") and b.handoff_ref.count(",") == 0 for b in batches)
        keys = [o["Key"] for o in moto_server.client("s3").list_objects_v2(Bucket=stack.bucket)["Contents"]]
        assert len(keys) == 2 and all(k.startswith("claim-check/") for k in keys)
        assert source.count() == 2
    else:
        assert all(b.handoff_ref.count(",") >= 1 for b in batches)  # each batch in several messages
        assert source.count() == sum(b.handoff_ref.count(",") + 1 for b in batches) > 2
    assert all(r == {"batchItemFailures": []} for r in source.drain())
    assert len(moto_server.deliveries) == 8
    forward_to_moodle()
    job, batches, recipients = job_state(job_id)
    assert job.status == "completed" and {r.status for r in recipients} == {"sent"}
    assert all(b.status == "completed" for b in batches)


def test_an_admins_retry_of_a_reported_failure_is_sent_again_by_the_worker(
        sqlite_cb_db, keyed, moto_server, stack, worker, moodle, mani_api, tmp_path):
    from backend.jobs.actions import retry_job

    acme(moodle.url, **sqs_settings(moto_server, stack))
    job_id = submit(write_csv(tmp_path / "u.csv", people(3)), company_id="acme")
    run_inline(job_id)
    source = EventSource(moto_server, stack, worker.handler)
    source.drain()
    forward_to_moodle()
    assert len(moto_server.deliveries) == 3
    # As if the worker had reported user1 failed (a bounce at send time, say).
    with session_scope() as session:
        session.execute(update(Recipient).where(Recipient.job_id == job_id, Recipient.email == "user1@example.com")
                        .values(status="permanently_failed", last_error="refused", sent_at=None))
        session.execute(update(Job).where(Job.id == job_id).values(status="partial_failure", sent_count=2,
                                                                   failed_count=1))
    with session_scope() as session:
        followups = retry_job(session=session, job_ref=str(job_id), actor="t", source="test").followups
    run_inline(job_id, batch_ids=followups.batch_ids + [b for b, _ in followups.delayed_batches])
    assert source.drain() == [{"batchItemFailures": []}]
    # A new run: the worker's record of the first one does not answer for it.
    assert [d.to for d in moto_server.deliveries].count("user1@example.com") == 2
    forward_to_moodle()
    job, _, recipients = job_state(job_id)
    retried = next(r for r in recipients if r.email == "user1@example.com")
    assert (retried.status, retried.attempts) == ("sent", 1)  # a retry resets attempts and job.status == "completed"
