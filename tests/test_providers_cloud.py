"""SES, Mailgun and SendGrid providers, and S3/R2 storage, against real local servers:
moto in server mode, and HTTP servers that speak Mailgun's and SendGrid's APIs."""

from __future__ import annotations

import email.parser
import email.policy
import time

import httpx
import pytest

from backend.core.settings import Settings
from backend.mail.mime import compose
from backend.mail.providers import get_provider
from backend.mail.providers.base import Attachment, Outcome, OutgoingMessage, ProviderError
from backend.mail.providers.mailgun import MailgunProvider
from backend.mail.providers.sendgrid import SendGridProvider
from backend.mail.providers.ses import SesProvider, classify_client_error
from backend.mail.ratelimit import LocalRateLimiter
from backend.storage.base import ObjectNotFound
from backend.storage.registry import get_storage
from tests.support.cloud import max_excess

SENDER = "Mani Sender <noreply@mani.test>"


def messages(count: int, *, start: int = 0, html: bool = True) -> list[OutgoingMessage]:
    return [
        OutgoingMessage(
            recipient_id=i,
            to_address=f"user{i}@example.com",
            to_name=f"User {i}, Jr.",
            subject=f"Welcome {i} — ünïcode",
            text=f"Hello user {i}\nYour password is pw-{i}\n",
            html=f"<p>Hello <b>user {i}</b></p>" if html else None,
            message_id=f"mani.job-1.{i}@mani.test",
            variables={"firstname": f"User{i}"},
        )
        for i in range(start, start + count)
    ]


def send_until_done(provider, batch: list[OutgoingMessage], *, rounds: int = 40):
    """What the engine does: keep what is final, wait out THROTTLED ones and send them again."""
    pending = {m.recipient_id: m for m in batch}
    final, throttled = {}, 0
    with provider:
        for _ in range(rounds):
            if not pending:
                break
            wait = 0.0
            for result in provider.send(list(pending.values())):
                if result.outcome == Outcome.THROTTLED:
                    throttled += 1
                    wait = max(wait, result.retry_after or 1.0)
                else:
                    final[result.recipient_id] = result
                    pending.pop(result.recipient_id)
            time.sleep(wait)
    return final, throttled


def assert_own_message(delivery, message: OutgoingMessage) -> None:
    assert delivery.to == message.to_address
    assert delivery.subject == message.subject
    assert delivery.text.replace("\r\n", "\n") == message.text
    if message.html is None:
        assert delivery.html is None
    else:
        assert delivery.html.replace("\r\n", "\n").rstrip("\n") == message.html


# SES ----------------------------------------------------------------------------------------


def ses(moto, **options) -> SesProvider:
    return SesProvider(
        sender=SENDER, region=moto.region, access_key_id="AKIAMANITEST", secret_access_key="moto-secret",
        endpoint_url=moto.url, **options,
    )


def test_ses_sends_the_composed_mime_to_each_recipient(moto_server):
    moto_server.verify("mani.test")
    batch = messages(30)
    with ses(moto_server) as provider:
        results = provider.send(batch)
    assert [r.outcome for r in results] == [Outcome.SENT] * 30
    by_to = {d.to: d for d in moto_server.deliveries}
    assert len(by_to) == 30
    for message, result in zip(batch, results):
        delivery = by_to[message.to_address]
        assert result.external_id == delivery.external_id
        assert delivery.headers["Message-ID"] == f"<{message.message_id}>"
        assert_own_message(delivery, message)
        # Byte for byte what the SMTP and outbox providers send (all but the Date line).
        expected = compose(message, sender=SENDER)
        strip_date = lambda raw: b"\r\n".join(l for l in raw.split(b"\r\n") if not l.startswith(b"Date:"))  # noqa: E731
        assert strip_date(delivery.raw) == strip_date(expected)


@pytest.mark.xdist_group("timing")  # measures the rate a server saw: not beside other timed tests
def test_ses_throttling_is_waited_out_within_the_rate_limit(moto_server):
    moto_server.verify("mani.test")
    moto_server.throttle(3)
    rate = 25.0
    limiter = LocalRateLimiter(key="ses-throttle-test", rate=rate)
    batch = messages(40)
    final, throttled = send_until_done(ses(moto_server, limiter=limiter), batch)
    assert throttled >= 3 and moto_server.throttled == 3
    assert {r.outcome for r in final.values()} == {Outcome.SENT}
    assert sorted(d.to for d in moto_server.deliveries) == sorted(m.to_address for m in batch)
    excess = max_excess([(d.at, 1) for d in moto_server.deliveries], rate=rate)
    assert excess <= 1 + rate * 0.1, f"ran {excess:.1f} messages ahead of {rate}/s"


def test_ses_unverified_sender_is_a_configuration_error(moto_server):
    with ses(moto_server) as provider, pytest.raises(ProviderError, match="authority to send from"):
        provider.send(messages(3))


def test_ses_bad_address_is_permanent_and_dead_endpoint_unavailable(moto_server, dead_url):
    moto_server.verify("mani.test")
    batch = messages(2)
    batch[1].to_address = "not an address"
    with ses(moto_server) as provider:
        results = provider.send(batch)
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.PERMANENT]
    with SesProvider(sender=SENDER, region="us-east-1", access_key_id="a", secret_access_key="b", endpoint_url=dead_url) as p:
        assert {r.outcome for r in p.send(messages(3))} == {Outcome.UNAVAILABLE}


@pytest.mark.parametrize(
    "code, message, status, expected",
    [
        ("TooManyRequestsException", "Maximum sending rate exceeded.", 429, "throttled"),
        ("Throttling", "Maximum sending rate exceeded.", 400, "throttled"),
        ("LimitExceededException", "Daily message quota exceeded.", 400, "throttled"),
        ("MessageRejected", "Email address is on the suppression list", 400, "permanent"),
        ("MailFromDomainNotVerifiedException", "MAIL FROM domain not verified", 400, "permanent"),
        ("BadRequestException", "Invalid address user@", 400, "permanent"),
        ("MessageRejected", "Email address is not verified: noreply@mani.test", 400, "config"),
        ("UnrecognizedClientException", "The security token included in the request is invalid", 403, "config"),
        ("InternalFailure", "oops", 500, "unavailable"),
    ],
)
def test_ses_error_classification(code, message, status, expected):
    assert classify_client_error(code, message, status, sender_address="noreply@mani.test")[0] == expected


# Mailgun ------------------------------------------------------------------------------------


def mailgun(server, **options) -> MailgunProvider:
    return MailgunProvider(api_key=server.api_key, domain="mg.example.com", sender=SENDER, api_url=server.url, **options)


def test_mailgun_batches_of_1000_each_recipient_gets_their_own_message(mailgun_server):
    batch = messages(2500)
    with mailgun(mailgun_server) as provider:
        results = provider.send(batch)
    assert [c["count"] for c in mailgun_server.calls] == [1000, 1000, 500]
    assert mailgun_server.leaks == 0
    assert all(len(c["fields"]["to"]) == len(set(c["to"])) for c in mailgun_server.calls)
    ids = [c["id"] for c in mailgun_server.calls]
    assert [r.external_id for r in results] == [ids[0]] * 1000 + [ids[1]] * 1000 + [ids[2]] * 500
    by_to = {d.to: d for d in mailgun_server.deliveries}
    for message in batch:
        assert_own_message(by_to[message.to_address], message)
        assert by_to[message.to_address].headers["X-Mani-Message-Id"] == message.message_id


def test_mailgun_duplicates_attachments_and_bad_addresses(mailgun_server):
    batch = messages(6, html=False)
    batch[1].to_address = batch[0].to_address  # one address twice: recipient variables are keyed by address
    batch[2].attachments = [Attachment("certificate.pdf", b"%PDF-1.4 fake")]
    batch[3].to_address = "rejected@example.com"
    mailgun_server.rejected.add("rejected@example.com")
    with mailgun(mailgun_server) as provider:
        results = provider.send(batch)
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.SENT, Outcome.SENT, Outcome.PERMANENT, Outcome.SENT, Outcome.SENT]
    assert "not a valid address" in results[3].error
    accepted = [c for c in mailgun_server.calls]
    assert all(len(set(c["to"])) == len(c["to"]) for c in accepted)
    mime = [d for d in mailgun_server.deliveries if d.raw is not None]
    assert len(mime) == 1 and b"certificate.pdf" in mime[0].raw and mime[0].to == batch[2].to_address
    assert sorted(d.text for d in mailgun_server.deliveries if d.to == batch[0].to_address) == sorted(
        [batch[0].text, batch[1].text]
    )


@pytest.mark.xdist_group("timing")  # measures the rate a server saw: not beside other timed tests
def test_mailgun_throttling_and_rate(mailgun_server):
    mailgun_server.throttle(2)
    rate = 40.0
    batch = messages(120)
    provider = mailgun(mailgun_server, limiter=LocalRateLimiter(key="mailgun-rate-test", rate=rate))
    final, throttled = send_until_done(provider, batch)
    assert mailgun_server.throttled == 2 and throttled >= 40
    assert {r.outcome for r in final.values()} == {Outcome.SENT}
    assert sorted(d.to for d in mailgun_server.deliveries) == sorted(m.to_address for m in batch)
    assert max(c["count"] for c in mailgun_server.calls) <= rate  # one second's worth per call
    excess = max_excess([(c["at"], c["count"]) for c in mailgun_server.calls], rate=rate)
    assert excess <= rate + rate * 0.1


def test_mailgun_bad_key_raises_and_dead_endpoint_is_unavailable(mailgun_server, dead_url):
    provider = MailgunProvider(api_key="key-wrong", domain="mg.example.com", sender=SENDER, api_url=mailgun_server.url)
    with provider, pytest.raises(ProviderError, match="401"):
        provider.send(messages(2))
    with MailgunProvider(api_key="k", domain="mg.example.com", sender=SENDER, api_url=dead_url) as provider:
        assert {r.outcome for r in provider.send(messages(2))} == {Outcome.UNAVAILABLE}


# SendGrid -----------------------------------------------------------------------------------


def sendgrid(server, **options) -> SendGridProvider:
    return SendGridProvider(api_key=server.api_key, sender=SENDER, api_url=server.url, **options)


def test_sendgrid_1000_personalizations_per_call_each_with_its_own_content(sendgrid_server):
    batch = messages(2100)
    with sendgrid(sendgrid_server) as provider:
        results = provider.send(batch)
    assert [c["count"] for c in sendgrid_server.calls] == [1000, 1000, 100]
    ids = [c["id"] for c in sendgrid_server.calls]
    assert [r.external_id for r in results] == [ids[0]] * 1000 + [ids[1]] * 1000 + [ids[2]] * 100
    by_to = {d.to: d for d in sendgrid_server.deliveries}
    for message in batch:
        delivery = by_to[message.to_address]
        assert_own_message(delivery, message)
        assert delivery.headers["custom_args.mani_message_id"] == message.message_id
    first = sendgrid_server.calls[0]["request"]
    assert first["from"] == {"email": "noreply@mani.test", "name": "Mani Sender"}
    assert all(len(p["to"]) == 1 for p in first["personalizations"])  # nobody sees another's address


def test_sendgrid_large_bodies_attachments_and_field_errors(sendgrid_server):
    batch = messages(5)
    batch[0].html = "<p>" + "x" * 12_000 + "</p>"  # over the 10,000-byte substitution cap
    batch[1].attachments = [Attachment("certificate.pdf", b"%PDF-1.4 fake")]
    batch[2].to_address = "rejected@example.com"
    sendgrid_server.rejected.add("rejected@example.com")
    with sendgrid(sendgrid_server) as provider:
        results = provider.send(batch)
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.SENT, Outcome.PERMANENT, Outcome.SENT, Outcome.SENT]
    assert "valid address" in results[2].error
    by_to = {d.to: d for d in sendgrid_server.deliveries}
    assert by_to[batch[0].to_address].html == batch[0].html
    with_attachment = [c for c in sendgrid_server.calls if c["request"].get("attachments")]
    assert len(with_attachment) == 1 and with_attachment[0]["count"] == 1


@pytest.mark.xdist_group("timing")  # measures the rate a server saw: not beside other timed tests
def test_sendgrid_throttling_honours_reset_and_rate(sendgrid_server):
    sendgrid_server.throttle(2)
    rate = 40.0
    batch = messages(120)
    final, throttled = send_until_done(sendgrid(sendgrid_server, limiter=LocalRateLimiter(key="sg-rate", rate=rate)), batch)
    assert sendgrid_server.throttled == 2 and throttled >= 40
    assert {r.outcome for r in final.values()} == {Outcome.SENT}
    assert sorted(d.to for d in sendgrid_server.deliveries) == sorted(m.to_address for m in batch)
    excess = max_excess([(c["at"], c["count"]) for c in sendgrid_server.calls], rate=rate)
    assert excess <= rate + rate * 0.1


def test_sendgrid_bad_key_raises_and_dead_endpoint_is_unavailable(sendgrid_server, dead_url):
    with SendGridProvider(api_key="SG.wrong", sender=SENDER, api_url=sendgrid_server.url) as provider:
        with pytest.raises(ProviderError, match="401"):
            provider.send(messages(2))
    with SendGridProvider(api_key="SG.x", sender=SENDER, api_url=dead_url) as provider:
        assert {r.outcome for r in provider.send(messages(2))} == {Outcome.UNAVAILABLE}


# Through the registry, from a company's resolved settings -----------------------------------


def test_registry_builds_each_provider_from_company_settings(session, moto_server, mailgun_server, sendgrid_server):
    from backend.companies.resolution import resolve
    from backend.companies.service import add_company
    from backend.companies.store import set_company_settings

    moto_server.verify("mani.test")
    add_company(session=session, company_id="acme", name="Acme", actor="t", source="test")
    common = {"sender": "noreply@mani.test", "sender_name": "Acme Academy"}
    configs = {
        "ses": {"aws_region": "us-east-1", "aws_access_key_id": "AKIAX", "aws_secret_access_key": "moto-secret-123",
                "ses_endpoint_url": moto_server.url},
        "mailgun": {"mailgun_domain": "mg.example.com", "mailgun_api_key": mailgun_server.api_key,
                    "mailgun_api_url": mailgun_server.url},
        "sendgrid": {"sendgrid_api_key": sendgrid_server.api_key, "sendgrid_api_url": sendgrid_server.url},
    }
    settings = Settings()
    for name, values in configs.items():
        set_company_settings(session=session, company_id="acme", values={**common, **values, "email_provider": name},
                             actor="t", source="test")
        resolved = resolve(session=session, company_id="acme")
        with get_provider(name, settings=settings, company_settings=dict(resolved)) as provider:
            assert provider.name == name
            results = provider.send(messages(3))
        assert {r.outcome for r in results} == {Outcome.SENT}, results
    for server in (moto_server, mailgun_server, sendgrid_server):
        assert len(server.deliveries) == 3
    parsed = email.parser.BytesParser(policy=email.policy.default).parsebytes(moto_server.deliveries[0].raw)
    assert str(parsed["From"]) == "Acme Academy <noreply@mani.test>"
    assert mailgun_server.calls[0]["fields"]["from"] == ["Acme Academy <noreply@mani.test>"]


# S3 / R2 storage ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["s3", "r2"])
def test_s3_and_r2_storage(moto_server, name):
    moto_server.client("s3").create_bucket(Bucket="certs")
    company_settings = {
        "storage": name, "bucket": "certs", "aws_region": "us-east-1", "aws_access_key_id": "AKIAX",
        "aws_secret_access_key": "moto-secret", "s3_endpoint_url": moto_server.url, "presigned_url_ttl": 600,
    }
    storage = get_storage(settings=Settings(), company_settings=company_settings)
    key = "certificates/job-1/7-ABC123.pdf"
    assert not storage.exists(key)
    storage.put(key, b"%PDF first", content_type="application/pdf")
    storage.put(key, b"%PDF second", content_type="application/pdf")  # idempotent: overwrites
    assert storage.exists(key) and storage.get(key) == b"%PDF second"
    with storage.open_stream(key) as stream:
        assert stream.read() == b"%PDF second"
    url = storage.url(key)
    assert "X-Amz-Expires=600" in url and "Signature" in url
    fetched = httpx.get(url)
    assert fetched.status_code == 200 and fetched.content == b"%PDF second"
    assert fetched.headers["content-type"] == "application/pdf"
    storage.delete(key)
    storage.delete(key)  # absent is fine
    with pytest.raises(ObjectNotFound):
        storage.get(key)


def test_r2_needs_an_endpoint():
    from backend.core.errors import UnusableInput

    with pytest.raises(UnusableInput, match="s3_endpoint_url"):
        get_storage(settings=Settings(), company_settings={"storage": "r2", "bucket": "certs"})
