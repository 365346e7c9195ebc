"""The handoff's building blocks without servers: sealed passwords, the Job JSON message and
its size rules, the callback body, and the worker's settling rules on a local outbox."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from backend.moodle import signing
from backend.certificates.issue import derived_code
from backend.cloud.handoff_crypto import HandoffCryptoError, decrypt_for_worker, encrypt_for_worker
from backend.cloud.job_message import (
    POINTER_CLASS,
    InvalidJobMessage,
    build_job_message,
    encode,
    message_bodies,
    parse_job_message,
    pointer_of,
    recipient_entry,
    resolve_body,
)
from backend.cloud.worker import (
    CALLBACK_TRIES,
    MemoryAttempts,
    WorkerContext,
    callback_payload,
    deliver_recipients,
    report_to_callback,
)
from backend.core.errors import UnusableInput
from backend.mail.providers.base import Outcome, SendResult
from backend.core.settings import Settings
from certificates import normalize_code

SECRET = "handoff-secret-0123456789"
JOB = str(uuid.UUID(int=7))


def test_a_sealed_password_opens_only_for_its_job_and_recipient():
    token = encrypt_for_worker("Pässwörd-1!", secret=SECRET, job_id=JOB, recipient_id=41)
    assert token.startswith("w1:") and "Pässwörd" not in token
    assert encrypt_for_worker("Pässwörd-1!", secret=SECRET, job_id=JOB, recipient_id=41) != token  # fresh nonce
    assert decrypt_for_worker(token, secret=SECRET, job_id=JOB, recipient_id=41) == "Pässwörd-1!"
    for secret, job, rid in ((SECRET + "x", JOB, 41), (SECRET, str(uuid.UUID(int=8)), 41), (SECRET, JOB, 42)):
        with pytest.raises(HandoffCryptoError):
            decrypt_for_worker(token, secret=secret, job_id=job, recipient_id=rid)
    raw = bytearray(base64.urlsafe_b64decode(token[3:]))
    raw[20] ^= 1
    tampered = "w1:" + base64.urlsafe_b64encode(bytes(raw)).decode()
    with pytest.raises(HandoffCryptoError):
        decrypt_for_worker(tampered, secret=SECRET, job_id=JOB, recipient_id=41)
    with pytest.raises(HandoffCryptoError):
        decrypt_for_worker("plain", secret=SECRET, job_id=JOB, recipient_id=41)


def message(count: int = 3, **extra) -> dict:
    recipients = [recipient_entry(job_id=JOB, recipient_id=i, email=f"u{i}@example.com", userid=str(100 + i),
                                  firstname="Ann", password="pw" if i == 1 else None, secret=SECRET,
                                  variables={"grade": "B", "password": "never"}) for i in range(1, count + 1)]
    return build_job_message(job_id=JOB, tenant_id=3, job_type="certificate", action="both",
                             callback_url="https://mani.example.com/api/v1/callbacks", recipients=recipients,
                             batch=2, template_data={"course_name": "Chemistry"}, **extra)


def test_the_job_message_carries_mani_ids_and_no_plain_password():
    built = message()
    body = encode(built)
    assert '"password"' not in body and "never" not in body and '"pw"' not in body
    first = built["recipients"][0]
    assert first["recipient_id"] == 1 and first["userid"] == 101 and first["password_encrypted"].startswith("w1:")
    parsed = parse_job_message(json.loads(body))
    assert parsed.job_id == JOB and parsed.batch == 2 and parsed.wants_certificates and parsed.wants_email
    assert [r.recipient_id for r in parsed.recipients] == [1, 2, 3]
    assert parsed.recipients[1].variables == {"grade": "B"}


@pytest.mark.parametrize("change, reason", [
    ({"job_id": "nope"}, "job_id must be a UUID"),
    ({"callback_url": None}, "no callback_url"),
    ({"callback_url": "ftp://x"}, "callback_url must be"),
    ({"recipients": []}, "recipients must be a non-empty list"),
    ({"recipients": [{"email": "a@b.c"}]}, "recipients\\[0\\].recipient_id"),
    ({"recipients": [{"recipient_id": 1, "email": "nobody"}]}, "recipients\\[0\\].email"),
    ({"action": "fax"}, "action must be one of"),
    ({"template_data": []}, "template_data must be an object"),
])
def test_an_unusable_message_names_its_field(change, reason):
    with pytest.raises(InvalidJobMessage, match=reason):
        parse_job_message({**message(), **change})


def test_a_batch_too_big_for_the_queue_goes_by_claim_check_or_is_split():
    big = message(count=40)
    for item in big["recipients"]:
        item["essay"] = "y" * 1000
    assert len(message_bodies(big)) == 1  # fits 256 KiB
    stored = {}

    def store(key: str, payload: bytes) -> str:
        stored[key] = payload
        return "the-bucket"

    (body,) = message_bodies(big, limit=8_000, store=store)
    assert json.loads(body)[0] == POINTER_CLASS and pointer_of(body) == ("the-bucket", next(iter(stored)))
    assert resolve_body(body, fetch=lambda bucket, key: stored[key]) == json.loads(encode(big))
    parts = message_bodies(big, limit=8_000)
    assert len(parts) > 1 and all(len(p.encode()) <= 8_000 for p in parts)
    assert sorted(r["recipient_id"] for p in parts for r in json.loads(p)["recipients"]) == list(range(1, 41))
    with pytest.raises(UnusableInput, match="does not fit"):
        message_bodies(message(count=1), limit=100)


def test_certificate_codes_are_fixed_per_recipient_and_valid():
    code = derived_code(SECRET.encode(), JOB, 5)
    assert code == derived_code(SECRET.encode(), JOB, 5) and normalize_code(code) == code
    assert code != derived_code(SECRET.encode(), JOB, 6) != derived_code(b"other", JOB, 5)


class Provider:
    """A provider answering from a script (the real SES is exercised against moto elsewhere)."""

    max_batch = 1

    def __init__(self, answers: dict[str, list[Outcome]]):
        self.answers, self.sent = answers, []

    def send(self, messages):
        (outgoing,) = messages
        outcome = (self.answers.get(outgoing.to_address) or [Outcome.SENT]).pop(0)
        if outcome == Outcome.SENT:
            self.sent.append(outgoing)
        return [SendResult(outgoing.recipient_id, outcome, external_id="x", error=f"{outcome}",
                           retry_after=0.01 if outcome == Outcome.THROTTLED else None)]


def context(provider, tmp_path, **extra) -> WorkerContext:
    from backend.storage.local import LocalStorage

    return WorkerContext(settings=Settings(), sender="Mani <noreply@mani.test>", secret=SECRET, provider=provider,
                         storage=LocalStorage(tmp_path / "certs"), margin=0.0, sleep=lambda s: None, **extra)


def test_permanent_transient_and_throttled_recipients_settle_by_the_rules(tmp_path):
    provider = Provider({"u1@example.com": [Outcome.PERMANENT],
                         "u2@example.com": [Outcome.TRANSIENT] * 10,
                         "u3@example.com": [Outcome.THROTTLED, Outcome.THROTTLED, Outcome.SENT]})
    attempts = MemoryAttempts()
    report = deliver_recipients(parse_job_message(message()), ctx=context(provider, tmp_path, attempts=attempts))
    settled = {r["recipient_id"]: r for r in report.settled}
    assert settled[1]["status"] == "failed" and settled[1]["attempts"] == 1
    assert settled[3]["status"] == "completed" and settled[3]["attempts"] == 1  # throttling costs no attempt
    assert list(report.not_done) == [2] and attempts.counts == {(JOB, 2): 3}
    # The message's last delivery: a transient failure is settled as failed, attempts counted on.
    report = deliver_recipients(parse_job_message(message()),
                                ctx=context(provider, tmp_path, attempts=attempts, receive_count=5))
    assert {r["recipient_id"]: r["attempts"] for r in report.settled if r["status"] == "failed"}[2] == 6
    assert "gave up after 6 attempts" in next(r for r in report.settled if r["recipient_id"] == 2)["error_message"]


def test_a_plain_password_in_a_message_is_refused_for_that_recipient(tmp_path):
    built = message()
    built["recipients"][1]["password"] = "plain"
    report = deliver_recipients(parse_job_message(built), ctx=context(Provider({}), tmp_path))
    failed = [r for r in report.settled if r["status"] == "failed"]
    assert [r["recipient_id"] for r in failed] == [2] and "plain-text password" in failed[0]["error_message"]


def test_the_callback_is_signed_fresh_on_every_try_and_says_where_it_comes_from(tmp_path):
    parsed = parse_job_message(message())
    report = deliver_recipients(parsed, ctx=context(Provider({}), tmp_path))
    posts = []

    def post(url, body, headers):
        posts.append((body, headers))
        return 503 if len(posts) < 3 else 200

    report_to_callback(parsed, report, ctx=context(Provider({}), tmp_path, post=post))
    assert report.reported and len(posts) == 3 <= CALLBACK_TRIES
    for body, headers in posts:
        payload = signing.verify(body, headers["X-Signature"], SECRET)
        assert payload["source"] == "worker" and payload["batch"] == 2
    update = json.loads(posts[-1][0])["recipient_updates"][0]
    assert set(update) >= {"userid", "recipient_id", "status", "certificate_url", "timesent", "error_message", "attempts"}
    assert callback_payload(parsed, report.settled)["job_id"] == JOB
