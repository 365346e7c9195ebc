"""Which path a job takes: the company's cloud provider, or the system's own (local) path.

- `force_local`: the local path.
- `auto`: the cloud path when cloud offload is on globally, the company's `enabled` is true
  and the job has at least `threshold` recipients; else the local path.
- `force_cloud`: the cloud path whatever the threshold, but still only for a company whose
  cloud is enabled (an admin's "off" wins over a schedule's preference).

A cloud path that is switched off, misconfigured or unreachable (a TCP connect to its endpoint
with a short timeout) is "unavailable", and `cloud_fallback_behavior` decides: `queue_local`
takes the local path and says why; `fail` raises RouteUnavailable with the reason (the engine
fails the job with it). The local path's provider is the global `email_provider`.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from backend.companies.catalogue import resolve
from backend.core.errors import ManiError

CLOUD_PROVIDERS = ("ses", "mailgun", "sendgrid", "smtp")
DEFAULT_ENDPOINTS = {"mailgun": "https://api.mailgun.net", "sendgrid": "https://api.sendgrid.com"}
REACH_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class Route:
    route: str  # "cloud" | "local"
    provider: str
    reason: str


class RouteUnavailable(ManiError):
    """The job wants the cloud path, it is unavailable, and `cloud_fallback_behavior` is `fail`."""


def _n(value: int) -> str:
    return f"{value:,}"


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
    if get("cloud_mode", "workers") not in (None, "workers"):
        problems.append(f"cloud_mode {get('cloud_mode')} is not available yet (use workers)")
    if certificates and get("storage") in ("s3", "r2"):
        if not get("bucket"):
            problems.append(f"storage is {get('storage')} but bucket is not set")
        if get("storage") == "r2" and not get("s3_endpoint_url"):
            problems.append("storage is r2 but s3_endpoint_url is not set (https://<account>.r2.cloudflarestorage.com)")
    sender = get("sender")
    if sender:
        from backend.mail.mime import MessageError, split_sender

        try:
            split_sender(sender)
        except MessageError as error:
            problems.append(f"sender: {error}")
    return problems


def endpoint_of(resolved: Any, provider: str) -> tuple[str, int] | None:
    """(host, port) the provider talks to, or None when it cannot be told."""
    get = resolved.get
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


def _local(global_settings: Any) -> str:
    return str(global_settings.get("email_provider") or "outbox")


def choose_route(*, session, job, settings: Any | None = None, timeout: float = REACH_TIMEOUT) -> Route:
    """The route for `job` (stored by the engine on job.route/provider/route_reason); RouteUnavailable
    when the cloud path is wanted, unavailable, and the fallback is `fail`."""
    system = resolve(session=session, company_id=None, settings=settings)
    local = _local(system)
    preference = job.cloud_preference or "auto"
    if preference == "force_local":
        return Route("local", local, f"job prefers local -> {local}")
    if not job.company_id:
        if preference == "force_cloud":
            return _unavailable(system, local, "no company: the job forces cloud, but cloud settings belong to a company")
        return Route("local", local, f"no company -> {local}")

    resolved = resolve(session=session, company_id=job.company_id, settings=settings)
    who = f"company {job.company_id}"
    total, threshold = int(job.total or 0), int(resolved.get("threshold") or 0)
    if preference == "force_cloud":
        why = "job forces cloud"
    else:
        if not system.get("cloud_offload_enabled"):
            return Route("local", local, f"{who}: cloud offload is off globally -> {local}")
        if not resolved.get("enabled"):
            return Route("local", local, f"{who}: cloud not enabled -> {local}")
        if total < threshold:
            return Route("local", local, f"{who}: {_n(total)} < threshold {_n(threshold)} -> {local}")
        why = f"cloud enabled, {_n(total)} ≥ threshold {_n(threshold)}"

    provider = cloud_provider_of(resolved)
    problem = None
    if not system.get("cloud_offload_enabled"):
        problem = "cloud offload is off globally"
    elif not resolved.get("enabled"):
        problem = "its cloud is not enabled"
    else:
        problems = configuration_problems(resolved, provider, certificates=job.action in ("certificate", "both"))
        problem = f"{provider} is misconfigured ({'; '.join(problems)})" if problems else reachability_problem(
            resolved, provider, timeout=timeout
        )
    if problem is None:
        return Route("cloud", provider, f"{who}: {why} -> {provider}")
    return _unavailable(system, local, f"{who}: {why}, but {problem}")


def _unavailable(system: Any, local: str, reason: str) -> Route:
    if system.get("cloud_fallback_behavior") == "fail":
        raise RouteUnavailable(f"{reason}; cloud_fallback_behavior is fail.")
    return Route("local", local, f"{reason}; fallback queue_local -> {local}")
