"""Test connection (`mani companies test ID`, the console's button): every configured piece of a
company's cloud setup checked for real, one line each.

- settings: complete for the provider and storage chosen;
- SES: the account (`GetAccount`: sending enabled, quota, rate; `GetSendQuota` where the
  endpoint has no v2 account API), and that the sender identity is verified;
- Mailgun: the sending domain (GET domains/<domain>) with the key;
- SendGrid: the key's scopes include `mail.send` (GET /v3/scopes);
- SMTP: connect, TLS as configured, and log in;
- storage: write, read back and delete a small object (S3/R2 bucket or local folder);
- SQS queue and callback URL, when set: the queue's attributes, a TCP connection;
- a handoff company (`cloud_mode` sqs or api_gateway): its handoff settings, the queue (its
  attributes and dead-letter queue; no test message, which the worker would take for a job) or
  the ingest endpoint (an authenticated `GET /health`), and `public_url` (mani's `/healthz`).
  The email provider is the stack's SES then, so mani's own provider is not checked.

Nothing raises for a failed check; no detail holds a secret.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from backend.companies.readiness import (
    CLOUD_PROVIDERS,
    cloud_provider_of,
    configuration_problems,
    connect_problem,
    handoff_mode_of,
    handoff_problems,
    sqs_client,
)
from backend.companies.resolution import resolve
from backend.core.secrets import mask_text
from backend.core.settings import get_settings
from backend.mail.mime import split_sender
from backend.mail.providers.mailgun import MailgunProvider, describe_failure
from backend.mail.providers.sendgrid import DEFAULT_API_URL
from backend.mail.providers.ses import sender_of
from backend.mail.providers.smtp import SmtpProvider
from backend.storage.registry import get_storage

TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


def _run(name: str, check, *args: Any) -> CheckResult:
    try:
        ok, detail = check(*args)
    except Exception as error:  # noqa: BLE001 - a check reports its failure, it never raises
        ok, detail = False, describe_error(error)
    return CheckResult(name, bool(ok), mask_text(" ".join(str(detail).split()))[:400])


_URL = re.compile(r"https?://[^\s/:'\"]+(?::\d+)?")


def describe_error(error: BaseException) -> str:
    """One plain sentence for a failed check; network failures say what failed, not the stack of
    wrappers (requests, urllib3 and the provider's client each wrap the one before)."""
    chain, seen = [], set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or current.__context__
    text = " ".join(" ".join(str(e).split()) for e in chain)
    where = _URL.search(text)
    target = where.group(0) if where else "the server"
    if any(isinstance(e, socket.gaierror) for e in chain) or "Failed to resolve" in text \
            or "Name or service not known" in text:
        return f"cannot resolve the host of {target}"
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "Connection refused" in text:
        return f"{target} refused the connection"
    if any(isinstance(e, (TimeoutError, socket.timeout)) for e in chain) or "timed out" in text.lower():
        return f"{target} did not answer in time"
    first = " ".join(str(error).split())
    return f"{type(error).__name__}: {first[:300]}" if first else type(error).__name__


def check_company_connections(
    *, session, company_id: str, settings: Any | None = None, timeout: float = TIMEOUT
) -> list[CheckResult]:
    """One CheckResult per configured piece of `company_id`'s cloud setup."""
    settings = settings or get_settings()
    resolved = resolve(session=session, company_id=company_id, settings=settings)
    provider = cloud_provider_of(resolved)
    storage = resolved.get("storage") or "local"
    mode = handoff_mode_of(resolved)
    if mode:
        return _handoff_checks(resolved, mode, settings, storage, timeout)
    results: list[CheckResult] = []
    problems = configuration_problems(resolved, provider, certificates=storage != "local") if provider in CLOUD_PROVIDERS else []
    results.append(CheckResult("settings", not problems, "; ".join(problems) or f"complete for {provider} and {storage} storage"))
    checks = {"ses": _ses, "mailgun": _mailgun, "sendgrid": _sendgrid, "smtp": _smtp}
    if provider in checks:
        if problems:
            results.append(CheckResult(provider, False, "not tried: the settings are incomplete"))
        else:
            results.append(_run(provider, checks[provider], resolved, settings, timeout))
            if provider == "ses":
                results.append(_run("ses sender", _ses_identity, resolved, settings, timeout))
    else:
        results.append(CheckResult("email provider", True, f"no cloud provider: the company sends with {provider}"))
    results.append(_run(f"storage ({storage})", _storage, resolved, settings))
    if resolved.get("sqs_queue_url"):
        results.append(_run("sqs queue", _sqs, resolved, timeout))
    if resolved.get("callback_url"):
        results.append(_run("callback url", _callback, resolved, timeout))
    return results


def _handoff_checks(resolved, mode: str, settings, storage: str, timeout: float) -> list[CheckResult]:
    problems = handoff_problems(resolved, mode)
    results = [CheckResult("handoff settings", not problems, "; ".join(problems) or f"complete for cloud_mode {mode}")]
    if mode == "sqs" and resolved.get("sqs_queue_url"):
        results.append(_run("sqs queue", _sqs_handoff, resolved, timeout))
    elif mode == "api_gateway" and resolved.get("cloud_endpoint") and resolved.get("cloud_auth_token"):
        results.append(_run("cloud endpoint", _cloud_endpoint, resolved, timeout))
    if storage != "local":  # the claim check stores batches too big for a message there
        results.append(_run(f"storage ({storage})", _storage, resolved, settings))
    if resolved.get("public_url"):
        results.append(_run("public url", _public_url, resolved, timeout))
    if resolved.get("callback_url"):
        results.append(_run("callback url", _callback, resolved, timeout))
    return results


def _sqs_handoff(resolved, timeout):
    url = resolved.get("sqs_queue_url")
    answer = sqs_client(resolved, timeout=timeout).get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "RedrivePolicy", "VisibilityTimeout"])
    attributes = answer.get("Attributes", {})
    depth = attributes.get("ApproximateNumberOfMessages", "?")
    if not attributes.get("RedrivePolicy"):
        return False, f"the queue answers ({depth} messages waiting) but has no dead-letter queue: is it the stack's JobQueueUrl?"
    return True, f"the queue answers ({depth} messages waiting), with a dead-letter queue"


def health_url(endpoint: str) -> str:
    """The stack's `GET /health` beside its `POST /jobs` (the IngestUrl)."""
    base = endpoint.rstrip("/")
    return (base[: -len("/jobs")] if base.endswith("/jobs") else base) + "/health"


def _cloud_endpoint(resolved, timeout):
    url = health_url(resolved.get("cloud_endpoint"))
    response = httpx.get(url, headers={"Authorization": f"Bearer {resolved.get('cloud_auth_token')}"}, timeout=timeout)
    if response.status_code == 401:
        return False, f"{url} refused cloud_auth_token (401)"
    if response.status_code != 200:
        return False, f"{url} answered {response.status_code}"
    try:
        queued = response.json().get("queued", "?")
    except ValueError:
        queued = "?"
    return True, f"{url} answered with the token ({queued} messages waiting)"


def _public_url(resolved, timeout):
    url = resolved.get("public_url").rstrip("/") + "/healthz"
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as error:
        return False, f"{url} did not answer ({type(error).__name__}): the worker's callbacks could not reach mani"
    return response.status_code == 200, f"{url} answered {response.status_code}"


# SES ----------------------------------------------------------------------------------------


def _ses_client(resolved, settings, timeout: float, service: str = "sesv2"):
    # Deferred here and below: boto3 loads in about a second, and only SES and SQS checks need it.
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        service,
        endpoint_url=resolved.get("ses_endpoint_url"),
        aws_access_key_id=resolved.get("aws_access_key_id"),
        aws_secret_access_key=resolved.get("aws_secret_access_key"),
        config=Config(region_name=resolved.get("aws_region"), retries={"total_max_attempts": 1},
                      connect_timeout=timeout, read_timeout=timeout),
    )


def _ses(resolved, settings, timeout):
    from botocore.exceptions import ClientError

    try:
        account = _ses_client(resolved, settings, timeout).get_account()
    except ClientError as error:
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status != 404 and error.response.get("Error", {}).get("Code") not in ("UnknownOperationException", "404"):
            raise
        # An endpoint without the v2 account API (older or compatible servers): v1's quota says as much.
        quota = _ses_client(resolved, settings, timeout, "ses").get_send_quota()
        return True, (
            f"reachable; quota {quota['Max24HourSend']:,.0f}/24h at {quota['MaxSendRate']:g}/s, "
            f"{quota['SentLast24Hours']:,.0f} sent in the last 24h"
        )
    quota = account.get("SendQuota", {})
    enabled = account.get("SendingEnabled", True)
    production = "production access" if account.get("ProductionAccessEnabled") else "sandbox (verified recipients only)"
    return enabled, (
        f"sending {'enabled' if enabled else 'DISABLED'}, {production}; quota {quota.get('Max24HourSend', 0):,.0f}/24h "
        f"at {quota.get('MaxSendRate', 0):g}/s, {quota.get('SentLast24Hours', 0):,.0f} sent in the last 24h"
    )


def _ses_identity(resolved, settings, timeout):
    from botocore.exceptions import ClientError

    _name, address = split_sender(sender_of(resolved, settings))
    client = _ses_client(resolved, settings, timeout)
    for identity in (address, address.rsplit("@", 1)[-1]):
        try:
            answer = client.get_email_identity(EmailIdentity=identity)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "NotFoundException":
                continue
            raise
        verified = answer.get("VerifiedForSendingStatus") or answer.get("VerificationStatus") == "SUCCESS"
        return verified, f"{identity} is {'verified' if verified else 'not verified'} for sending ({address})"
    return False, f"neither {address} nor its domain is an SES identity: verify one before sending"


# Mailgun, SendGrid, SMTP --------------------------------------------------------------------


def _mailgun(resolved, settings, timeout):
    provider = MailgunProvider(
        api_key=resolved.get("mailgun_api_key"), domain=resolved.get("mailgun_domain"),
        sender=sender_of(resolved, settings), api_url=resolved.get("mailgun_api_url"), timeout=timeout,
    )
    client = provider.make_client()
    try:
        response = client.domains.get(domain=provider.domain)
    finally:
        client.close()
    if response.status_code == 200:
        try:
            state = (response.json().get("domain") or {}).get("state", "unknown")
        except ValueError:
            state = "unknown"
        return state in ("active", "unknown"), f"domain {provider.domain}: state {state}"
    if response.status_code in (401, 403):
        return False, f"{response.status_code}: the API key was refused"
    return False, f"{response.status_code}: {describe_failure(response)} (domain {provider.domain})"


def _sendgrid(resolved, settings, timeout):
    url = (resolved.get("sendgrid_api_url") or DEFAULT_API_URL).rstrip("/") + "/v3/scopes"
    response = httpx.get(url, headers={"Authorization": f"Bearer {resolved.get('sendgrid_api_key')}"}, timeout=timeout)
    if response.status_code in (401, 403):
        return False, f"{response.status_code}: the API key was refused"
    if response.status_code != 200:
        return False, f"{response.status_code}: {response.text[:200]}"
    scopes = response.json().get("scopes") or []
    if "mail.send" not in scopes:
        return False, f"the key lacks the mail.send scope ({len(scopes)} scopes)"
    return True, f"the key has mail.send ({len(scopes)} scopes)"


def _smtp(resolved, settings, timeout):
    p = SmtpProvider.from_url(resolved.get("smtp_url"), sender="check@example.com", timeout=timeout)
    context = ssl.create_default_context(cafile=p.cafile)
    if not p.verify:
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    if p.security == "ssl":
        client = smtplib.SMTP_SSL(p.host, p.port, timeout=timeout, context=context, local_hostname="localhost")
    else:
        client = smtplib.SMTP(p.host, p.port, timeout=timeout, local_hostname="localhost")
    try:
        client.ehlo()
        if p.security == "starttls":
            client.starttls(context=context)
            client.ehlo()
        if p.username:
            client.login(p.username, p.password or "")
        client.noop()
    finally:
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()
    how = {"ssl": "TLS", "starttls": "STARTTLS", "plain": "no TLS"}[p.security]
    return True, f"{p.host}:{p.port} answered ({how}{', logged in as ' + p.username if p.username else ', no login'})"


# Storage, SQS, callback ---------------------------------------------------------------------


def _storage(resolved, settings):
    storage = get_storage(settings=settings, company_settings=resolved)
    key = f"mani-connection-test/{uuid.uuid4().hex}.txt"
    payload = b"mani connection test\n"
    storage.put(key, payload, content_type="text/plain")
    try:
        if storage.get(key) != payload:
            return False, f"wrote {key} but read back something else"
    finally:
        storage.delete(key)
    if storage.exists(key):
        return False, f"wrote and read {key}, but it is still there after delete"
    where = f"bucket {resolved.get('bucket')}" if getattr(storage, "bucket", None) else "the local folder"
    return True, f"wrote, read and deleted a test object in {where}"


def _sqs(resolved, timeout):
    url = resolved.get("sqs_queue_url")
    client = sqs_client(resolved, timeout=timeout)
    attributes = client.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    depth = attributes.get("Attributes", {}).get("ApproximateNumberOfMessages", "?")
    return True, f"the queue answers ({depth} messages waiting)"


def _callback(resolved, timeout):
    parts = urlsplit(resolved.get("callback_url"))
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    problem = connect_problem("the callback URL", host, port, timeout=timeout)
    return problem is None, problem or f"{host}:{port} accepts connections"
