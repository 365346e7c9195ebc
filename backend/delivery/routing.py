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

With `cloud_mode = sqs` or `api_gateway` the cloud path is a handoff to the company's own AWS
worker: the route's provider is the mode, and its settings and endpoint (the queue, or the
ingest URL) are what must be usable (`backend.delivery.handoff` does the handing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backend.companies.readiness import (
    REACH_TIMEOUT,
    cloud_provider_of,
    configuration_problems,
    handoff_mode_of,
    handoff_problems,
    reachability_problem,
)
from backend.companies.resolution import resolve
from backend.core.errors import ManiError


@dataclass(frozen=True, slots=True)
class Route:
    route: str  # "cloud" | "local"
    provider: str
    reason: str


class RouteUnavailable(ManiError):
    """The job wants the cloud path, it is unavailable, and `cloud_fallback_behavior` is `fail`."""


def _n(value: int) -> str:
    return f"{value:,}"


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

    # A handoff mode (sqs, api_gateway) is the job's "provider": the company's own worker sends.
    handoff = handoff_mode_of(resolved)
    provider = handoff or cloud_provider_of(resolved)
    problem = None
    if not system.get("cloud_offload_enabled"):
        problem = "cloud offload is off globally"
    elif not resolved.get("enabled"):
        problem = "its cloud is not enabled"
    else:
        problems = (handoff_problems(resolved, handoff) if handoff else
                    configuration_problems(resolved, provider, certificates=job.action in ("certificate", "both")))
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
