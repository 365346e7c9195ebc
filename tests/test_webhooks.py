"""Provider webhooks: signed Mailgun events, and SES events through SNS signed with a test
certificate the test makes itself (served from a local HTTP server)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from sqlmodel import select

from api.app import create_app
from api.common import ApiConfig
from backend.jobs import queries
from backend.moodle import webhooks
from models import AuditEntry, Job, Recipient, utcnow
from models.callbacks import CallbackDelivery, WebhookEvent
from models.db import session_scope
from tests.support.callbacks import add_company, make_job, set_recipients

pytestmark = pytest.mark.usefixtures("cb_db")
MAILGUN_KEY = "key-test-signing"
TOPIC = "arn:aws:sns:eu-west-1:123456789012:mani-ses-events"


# A fake SNS: a self-signed certificate and a SubscribeURL, served over HTTP -----------------

class FakeSns:
    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        now = datetime.now(timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
                .not_valid_after(now + timedelta(days=30)).sign(self.key, hashes.SHA256()))
        self.pem = cert.public_bytes(serialization.Encoding.PEM)
        self.confirmations: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                if self.path.startswith("/confirm"):
                    fake.confirmations.append(self.path)
                    data = b"<ConfirmSubscriptionResponse/>"
                else:
                    data = fake.pem
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def message(self, kind: str, *, message: str, version: str = "2", **extra) -> dict:
        doc = {"Type": kind, "MessageId": str(uuid.uuid4()), "TopicArn": TOPIC, "Message": message,
               "Timestamp": "2025-11-18T12:00:00.000Z", "SignatureVersion": version,
               "SigningCertURL": f"{self.base}/SimpleNotificationService-test.pem", **extra}
        if kind != "Notification":
            doc.setdefault("Token", "token-123")
            doc.setdefault("SubscribeURL", f"{self.base}/confirm?Action=ConfirmSubscription&Token=token-123")
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.key.sign(webhooks.sns_string_to_sign(doc), padding.PKCS1v15(), algorithm)
        doc["Signature"] = base64.b64encode(signature).decode()
        return doc

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sns():
    fake = FakeSns()
    webhooks._cert_cache.clear()
    yield fake
    fake.close()
    webhooks._cert_cache.clear()


@pytest.fixture
def world(serve_app, sns):
    """A company with a callback URL, a sent job of three with provider ids, and the API."""
    add_company("c1", callback_url="http://127.0.0.1:9/moodle")
    job_id = make_job(company_id="c1", recipients=3, status="completed")
    set_recipients(job_id, status="sent", sent_at=utcnow(), external_id=True)
    config = ApiConfig(mailgun_signing_key=MAILGUN_KEY, sns_cert_url_pattern=r"^http://127\.0\.0\.1:\d+/",
                       sns_topic_arns=(TOPIC,))
    url = serve_app(create_app(config=config))
    with session_scope() as session:
        rows = session.exec(select(Recipient).where(Recipient.job_id == job_id).order_by(Recipient.id)).all()
        job_uuid = session.get(Job, job_id).uuid
    with httpx.Client(base_url=url, timeout=30) as client:
        yield {"client": client, "job_id": job_id, "job_uuid": job_uuid, "recipients": rows}


def _recipient(rid: int) -> Recipient:
    with session_scope() as session:
        return session.get(Recipient, rid)


def _job(job_id: int) -> Job:
    with session_scope() as session:
        return session.get(Job, job_id)


# Mailgun -------------------------------------------------------------------------------------

def _mailgun(event: str, recipient: Recipient, *, key: str = MAILGUN_KEY, severity: str | None = None,
             message_id: str | None = None, event_id: str | None = None) -> dict:
    stamp, token = str(int(time.time())), uuid.uuid4().hex + uuid.uuid4().hex[:18]
    data = {"event": event, "id": event_id or uuid.uuid4().hex, "recipient": recipient.email,
            "timestamp": time.time(),
            "message": {"headers": {"message-id": message_id or recipient.external_id.strip("<>")}},
            "delivery-status": {"code": 550, "description": "No such user"}}
    if severity:
        data["severity"] = severity
    signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return {"signature": {"timestamp": stamp, "token": token, "signature": signature}, "event-data": data}


def test_mailgun_permanent_failure_bounces_once(world):
    client, first = world["client"], world["recipients"][0]
    event = _mailgun("failed", first, severity="permanent")
    answer = client.post("/webhooks/mailgun", json=event)
    assert answer.status_code == 200 and answer.json()["events"][0]["outcome"] == "applied"
    assert _recipient(first.id).status == "bounced" and "No such user" in _recipient(first.id).last_error
    assert client.post("/webhooks/mailgun", json=event).status_code == 200  # Mailgun retried it
    assert _job(world["job_id"]).bounced_count == 1
    with session_scope() as session:
        [delivery] = session.exec(select(CallbackDelivery)).all()
        assert delivery.kind == "updates" and delivery.recipient_ids == [first.id]
        assert delivery.next_attempt_at is not None
        assert session.exec(select(AuditEntry).where(AuditEntry.action == "webhook.mailgun")).first()


def test_mailgun_complaint_temporary_failure_and_our_message_id(world):
    client, (first, second, third) = world["client"], world["recipients"]
    assert client.post("/webhooks/mailgun", json=_mailgun("failed", first, severity="temporary")).json()[
        "events"][0]["outcome"] == "ignored"
    assert _recipient(first.id).status == "sent"
    ours = f"mani.{world['job_uuid']}.{second.id}@mani.localhost"
    assert client.post("/webhooks/mailgun", json=_mailgun("complained", second, message_id=ours)).status_code == 200
    assert _recipient(second.id).status == "complained"
    unknown = _mailgun("failed", third, severity="permanent", message_id="<nobody@mg.example.com>")
    unknown["event-data"]["recipient"] = "stranger@example.com"
    assert client.post("/webhooks/mailgun", json=unknown).json()["events"][0]["outcome"] == "unmatched"
    job = _job(world["job_id"])
    assert (job.bounced_count, job.complained_count) == (0, 1)


def test_mailgun_bad_signature_is_401_and_audited(world):
    client, first = world["client"], world["recipients"][0]
    assert client.post("/webhooks/mailgun", json=_mailgun("failed", first, severity="permanent",
                                                         key="wrong")).status_code == 401
    stale = _mailgun("failed", first, severity="permanent")
    stale["signature"]["timestamp"] = str(int(time.time()) - 3 * 86400)
    stale["signature"]["signature"] = hmac.new(MAILGUN_KEY.encode(), (stale["signature"]["timestamp"] + stale[
        "signature"]["token"]).encode(), hashlib.sha256).hexdigest()
    assert client.post("/webhooks/mailgun", json=stale).status_code == 401
    assert client.post("/webhooks/mailgun", content=b"nope").status_code == 400
    assert _recipient(first.id).status == "sent"
    with session_scope() as session:
        entries = session.exec(select(AuditEntry).where(AuditEntry.action == "webhook.mailgun.rejected")).all()
    assert len(entries) == 3 and all(e.address == "127.0.0.1" for e in entries)


# SES through SNS -----------------------------------------------------------------------------

def _ses_bounce(recipient: Recipient, bounce_type: str = "Permanent") -> str:
    return json.dumps({"notificationType": "Bounce",
                       "bounce": {"bounceType": bounce_type, "bounceSubType": "General",
                                  "bouncedRecipients": [{"emailAddress": recipient.email,
                                                         "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]},
                       "mail": {"messageId": recipient.external_id.strip("<>"), "destination": [recipient.email]}})


def test_sns_subscription_confirmation_visits_the_subscribe_url(world, sns):
    message = sns.message("SubscriptionConfirmation", message="You have chosen to subscribe", version="1")
    answer = world["client"].post("/webhooks/ses", content=json.dumps(message),
                                  headers={"x-amz-sns-message-type": "SubscriptionConfirmation"})
    assert answer.status_code == 200 and answer.json()["confirmed"] is True
    assert sns.confirmations == ["/confirm?Action=ConfirmSubscription&Token=token-123"]


def test_sns_subscribe_url_elsewhere_is_not_visited(world, sns):
    message = sns.message("SubscriptionConfirmation", message="subscribe",
                          SubscribeURL="https://evil.example.com/confirm?Token=1")
    answer = world["client"].post("/webhooks/ses", content=json.dumps(message))
    assert answer.status_code == 401 and sns.confirmations == []


@pytest.mark.parametrize("version", ["1", "2"])
def test_sns_permanent_bounce_and_complaint(world, sns, version):
    client, (first, second, _) = world["client"], world["recipients"]
    answer = client.post("/webhooks/ses", content=json.dumps(sns.message("Notification", message=_ses_bounce(first),
                                                                         version=version)))
    assert answer.status_code == 200 and answer.json()["events"][0]["outcome"] == "applied"
    assert _recipient(first.id).status == "bounced"
    complaint = json.dumps({"notificationType": "Complaint",
                            "complaint": {"complainedRecipients": [{"emailAddress": second.email}],
                                          "complaintFeedbackType": "abuse"},
                            "mail": {"messageId": second.external_id.strip("<>")}})
    assert client.post("/webhooks/ses", content=json.dumps(sns.message("Notification", message=complaint,
                                                                       version=version))).status_code == 200
    assert _recipient(second.id).status == "complained"
    job = _job(world["job_id"])
    assert (job.bounced_count, job.complained_count) == (1, 1)


def test_sns_transient_bounce_is_ignored(world, sns):
    first = world["recipients"][0]
    message = sns.message("Notification", message=_ses_bounce(first, "Transient"))
    assert world["client"].post("/webhooks/ses", content=json.dumps(message)).status_code == 200
    assert _recipient(first.id).status == "sent"


def test_sns_forgeries_are_refused(world, sns):
    client, first = world["client"], world["recipients"][0]
    tampered = sns.message("Notification", message=_ses_bounce(first))
    tampered["Message"] = tampered["Message"].replace("Permanent", "Permanent ")
    assert client.post("/webhooks/ses", content=json.dumps(tampered)).status_code == 401
    elsewhere = sns.message("Notification", message=_ses_bounce(first),
                            SigningCertURL="https://evil.example.com/cert.pem")
    assert client.post("/webhooks/ses", content=json.dumps(elsewhere)).status_code == 401
    other_topic = sns.message("Notification", message=_ses_bounce(first), TopicArn="arn:aws:sns:x:1:other")
    assert client.post("/webhooks/ses", content=json.dumps(other_topic)).status_code == 401
    old_version = sns.message("Notification", message=_ses_bounce(first))
    old_version["SignatureVersion"] = "3"
    assert client.post("/webhooks/ses", content=json.dumps(old_version)).status_code == 401
    assert _recipient(first.id).status == "sent"
    with session_scope() as session:
        assert len(session.exec(select(AuditEntry).where(AuditEntry.action == "webhook.ses.rejected")).all()) == 4
        assert session.exec(select(WebhookEvent)).all() == []


def test_the_default_pattern_only_allows_amazon_hosts():
    import re

    pattern = webhooks.DEFAULT_SNS_CERT_PATTERN
    assert re.match(pattern, "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem")
    assert re.match(pattern, "https://sns.cn-north-1.amazonaws.com.cn/x.pem")
    for url in ("http://sns.eu-west-1.amazonaws.com/x.pem", "https://sns.eu-west-1.amazonaws.com.evil.io/x.pem",
                "https://evil.io/sns.eu-west-1.amazonaws.com/x.pem", "https://sns.amazonaws.com@evil.io/x.pem"):
        assert not re.match(pattern, url), url


# Rates ---------------------------------------------------------------------------------------

def test_delivery_rates_per_job_and_company(world, sns):
    client, (first, second, _) = world["client"], world["recipients"]
    client.post("/webhooks/mailgun", json=_mailgun("failed", first, severity="permanent"))
    client.post("/webhooks/mailgun", json=_mailgun("complained", second))
    other_job = make_job(company_id=None, recipients=4)
    set_recipients(other_job, status="sent", sent_at=utcnow())
    with session_scope() as session:
        rates = queries.delivery_rates(session=session, job_id=world["job_id"])
        assert (rates.delivered, rates.bounced, rates.complained) == (3, 1, 1)
        assert rates.bounce_rate == pytest.approx(1 / 3)
        assert queries.delivery_rates(session=session, company_id="c1").model_dump() == rates.model_dump()
        assert queries.delivery_rates(session=session).delivered == 7
        assert queries.delivery_rates(session=session, company_id="none").bounce_rate is None


# Per-company keys (issue 11: `mani companies set ID mailgun_webhook_signing_key=...` was refused) ----

def test_a_companys_own_mailgun_key_is_a_masked_setting_and_checks_its_path(world):
    from typer.testing import CliRunner

    from cli import app

    own_key = "company-own-mailgun-key-0123456789"
    result = CliRunner().invoke(app, ["companies", "set", "c1", f"mailgun_webhook_signing_key={own_key}", "--json"])
    assert result.exit_code == 0, result.output
    shown = CliRunner().invoke(app, ["companies", "show", "c1", "--json"]).output
    assert own_key not in result.output and own_key not in shown
    assert json.loads(shown)["settings"]["mailgun_webhook_signing_key"]["value"].startswith("••••••")
    client, first = world["client"], world["recipients"][0]
    event = _mailgun("failed", first, severity="permanent", key=own_key)
    assert client.post("/webhooks/mailgun", json=event).status_code == 401  # not the global key
    assert client.post("/webhooks/mailgun/c1", json=event).status_code == 200
    assert _recipient(first.id).status == "bounced"


def test_a_companys_sns_topic_allow_list(world, sns):
    from backend.companies.store import set_company_settings

    other = "arn:aws:sns:eu-west-1:123456789012:company-topic"
    client, first = world["client"], world["recipients"][0]
    message = sns.message("Notification", message=_ses_bounce(first), TopicArn=other)
    assert client.post("/webhooks/ses/c1", content=json.dumps(message)).status_code == 401
    with session_scope() as session:
        set_company_settings(session=session, company_id="c1", values={"sns_topic_arns": f"{TOPIC}, {other}"},
                             actor="t", source="cli")
    assert client.post("/webhooks/ses/c1", content=json.dumps(message)).status_code == 200
    assert client.post("/webhooks/ses", content=json.dumps(message)).status_code == 401
