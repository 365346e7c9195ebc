"""Can a company's cloud path be used? Settings complete for its provider (and storage), and the
provider's endpoint reachable. Routing asks before a job takes the cloud path; the connection
check (`mani companies test`) asks before it tries each piece for real.
"""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit

from backend.mail.mime import MessageError, split_sender

CLOUD_PROVIDERS = ("ses", "mailgun", "sendgrid", "smtp")
# cloud_mode values that hand a job to the company's own AWS worker instead of mani's workers.
HANDOFF_MODES = ("sqs", "api_gateway")
DEFAULT_ENDPOINTS = {"mailgun": "https://api.mailgun.net", "sendgrid": "https://api.sendgrid.com"}
REACH_TIMEOUT = 2.0


def cloud_provider_of(resolved: Any) -> str:
    return str(resolved.get("email_provider") or "outbox")


def configuration_problems(resolved: Any, provider: str, *, certificates: bool = False) -> list[str]:
    """What is missing or wrong for `provider` (and storage, when the job stores certificates)."""
    get = resolved.get
    problems: list[str] = []
    if provider not in CLOUD_PROVIDERS:
        problems.append(f"email_provider resolves to {provider}, which is not a cloud provider (ses, mailgun, sendgrid, smtp)")
    elif provider == "ses":
        if not get("aws_region"):
            problems.append("aws_region is not set")
    elif provider == "mailgun":
        problems += [f"{key} is not set" for key in ("mailgun_domain", "mailgun_api_key") if not get(key)]
    elif provider == "sendgrid":
        if not get("sendgrid_api_key"):
            problems.append("sendgrid_api_key is not set")
    elif provider == "smtp" and not get("smtp_url"):
        problems.append("smtp_url is not set")
    needs_aws = provider == "ses" or (certificates and get("storage") in ("s3", "r2"))
    if needs_aws and bool(get("aws_access_key_id")) != bool(get("aws_secret_access_key")):
        problems.append("set both aws_access_key_id and aws_secret_access_key, or neither (IAM role)")
    if certificates and get("storage") in ("s3", "r2"):
        if not get("bucket"):
            problems.append(f"storage is {get('storage')} but bucket is not set")
        if get("storage") == "r2" and not get("s3_endpoint_url"):
            problems.append("storage is r2 but s3_endpoint_url is not set (https://<account>.r2.cloudflarestorage.com)")
    sender = get("sender")
    if sender:
        try:
            split_sender(sender)
        except MessageError as error:
            problems.append(f"sender: {error}")
    return problems


def handoff_mode_of(resolved: Any) -> str | None:
    """`sqs` or `api_gateway` when the company hands its cloud jobs to its own worker, else None."""
    mode = resolved.get("cloud_mode")
    return mode if mode in HANDOFF_MODES else None


def handoff_problems(resolved: Any, mode: str) -> list[str]:
    """What is missing for handing jobs to the company's worker by `mode` (sqs or api_gateway)."""
    get = resolved.get
    problems: list[str] = []
    if mode == "sqs":
        if not get("sqs_queue_url"):
            problems.append("sqs_queue_url is not set (the stack's JobQueueUrl)")
        if bool(get("aws_access_key_id")) != bool(get("aws_secret_access_key")):
            problems.append("set both aws_access_key_id and aws_secret_access_key, or neither (IAM role)")
    else:
        problems += [f"{key} is not set (the stack's {what})" for key, what in
                     (("cloud_endpoint", "IngestUrl"), ("cloud_auth_token", "ingest token")) if not get(key)]
    if not get("cloud_callback_secret"):
        problems.append("cloud_callback_secret is not set (the stack's CallbackSecret)")
    if not get("public_url"):
        problems.append("public_url is not set (the worker reports to {public_url}/api/v1/callbacks)")
    return problems


def endpoint_of(resolved: Any, provider: str) -> tuple[str, int] | None:
    """(host, port) the provider (or handoff mode) talks to, or None when it cannot be told."""
    get = resolved.get
    if provider in HANDOFF_MODES:
        url = get("sqs_queue_url") if provider == "sqs" else get("cloud_endpoint")
        try:
            parts = urlsplit(url or "")
            return (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)) if parts.hostname else None
        except ValueError:
            return None
    if provider == "smtp":
        url = get("smtp_url") or ""
        try:
            parts = urlsplit(url)
            return (parts.hostname, parts.port or (465 if parts.scheme == "smtps" else 25)) if parts.hostname else None
        except ValueError:
            return None
    if provider == "ses":
        url = get("ses_endpoint_url") or f"https://email.{get('aws_region')}.amazonaws.com"
    else:
        url = get(f"{provider}_api_url") or DEFAULT_ENDPOINTS.get(provider)
    if not url:
        return None
    try:
        parts = urlsplit(url)
        return (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)) if parts.hostname else None
    except ValueError:
        return None


def reachability_problem(resolved: Any, provider: str, *, timeout: float = REACH_TIMEOUT) -> str | None:
    """None when a TCP connection to the provider's endpoint opens within `timeout`, else why not."""
    endpoint = endpoint_of(resolved, provider)
    if endpoint is None:
        return f"{provider} has no usable endpoint"
    return connect_problem(provider, *endpoint, timeout=timeout)


def connect_problem(label: str, host: str, port: int, *, timeout: float = REACH_TIMEOUT) -> str | None:
    """None when a TCP connection to host:port opens within `timeout`, else a short reason."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as error:
        why = "timed out" if isinstance(error, (socket.timeout, TimeoutError)) else (error.strerror or str(error)).lower()
        return f"{label} is unreachable ({why} at {host}:{port})"


def queue_endpoint(queue_url: str) -> str:
    """The SQS endpoint a queue URL lives at (its scheme and host), so a local queue stays local."""
    parts = urlsplit(queue_url)
    return f"{parts.scheme}://{parts.netloc}"


def sqs_client(resolved: Any, *, timeout: float, attempts: int = 1):
    """A boto3 SQS client for the company's queue: its region and keys, or the host's IAM role."""
    # Deferred: boto3 loads in about a second, and only the SQS handoff and its check need it.
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "sqs", endpoint_url=queue_endpoint(resolved.get("sqs_queue_url")),
        aws_access_key_id=resolved.get("aws_access_key_id"), aws_secret_access_key=resolved.get("aws_secret_access_key"),
        config=Config(region_name=resolved.get("aws_region") or "us-east-1", retries={"total_max_attempts": attempts},
                      connect_timeout=timeout, read_timeout=timeout),
    )
