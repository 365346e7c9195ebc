"""The one read side: jobs, recipients, batches, rejections and callback deliveries, for the
CLI, the console and the HTTP API.

Everything here only reads (the engine keeps its own internal reads), and returns the frozen
models of `backend.jobs.public`, never ORM objects. Recipient pages use keyset paging on the
`recipients (job_id, id)` and `(job_id, status, id)` indexes, so a 50,000-recipient job opens
as fast as a small one (`bench/console.py` has the figures). User text never reaches a LIKE
pattern unescaped.

One module per area (jobs, recipients, activity, dashboard); callers import from here.
"""

from __future__ import annotations

from backend.jobs.queries.tables import (  # noqa: F401 - the read side, in one place
    Statuses,
)
from backend.jobs.queries.recipients import (  # noqa: F401 - the read side, in one place
    LOG_COLUMNS,
    iter_recipient_log,
    list_recipients,
    recipients_page,
)
from backend.jobs.queries.activity import (  # noqa: F401 - the read side, in one place
    audit_entries,
    callback_stats,
    company_rates,
    delivery_log,
    delivery_rates,
    failed_deliveries,
    list_deliveries,
    suppressions,
)
from backend.jobs.queries.jobs import (  # noqa: F401 - the read side, in one place
    cancellable_recipients,
    company_choices,
    count_cancellable,
    count_recipients,
    count_retryable,
    get_job,
    handoff_of,
    job_company_ids,
    job_detail,
    list_batches,
    list_rejections,
    provider_outages,
    recipient_counts,
    resolve_job_ref,
    retryable_recipients,
    search_jobs,
)
from backend.jobs.queries.dashboard import (  # noqa: F401 - the read side, in one place
    dashboard,
    format_duration,
    job_issues,
)
