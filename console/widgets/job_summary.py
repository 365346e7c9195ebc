"""The lines at the top of Job detail: what the job is, how far it got, how its mail and its
callbacks fared, which route it took and why."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual.widgets import Static

from backend.jobs.public import JobDetailPublic
from console.widgets import cells
from console.widgets.callbacks import callbacks_text, rates_text


class JobSummary(Static):
    """The route's reason and an error wrap, so they are read in full at 80 columns; the other
    lines are cut to the width (and laid out again when it changes)."""

    def __init__(self, **options) -> None:
        super().__init__("Loading…", **options)
        self._shown: tuple[JobDetailPublic, datetime] | None = None

    def show(self, detail: JobDetailPublic, now: datetime) -> None:
        self._shown = (detail, now)
        self._render_lines()

    def on_resize(self) -> None:
        self._render_lines()

    def _render_lines(self) -> None:
        if self._shown is None or not self.size.width:
            return
        detail, now = self._shown
        job, width = detail, self.size.width
        wide = self.app.size.width >= 120
        company = (f"{detail.company_name} ({job.company_id})" if wide else job.company_id) if job.company_id \
            else "no company"
        head = Text.assemble((f"Job {job.id}", "bold"), f" · {job.type} · {company} · ", cells.status_text(job.status))
        if wide:
            head.append(f" · {job.job_id}", style="dim")
        pending = sum(detail.counts.get(s, 0) for s in ("pending", "processing", "retry_pending"))
        progress = Text.assemble(
            cells.progress_bar(job.done, job.failed, job.total, width=20 if wide else 10), "  ",
            (f"{cells.number(job.sent)} sent", "green"), " · ", (f"{cells.number(job.failed)} failed", "red"),
            f" · {cells.number(pending)} to go · of {cells.number(job.total)}",
        )
        cut = [head, progress]
        # How the mail and the callbacks fared: the seeds' targets are < 2 % bounces, > 99 % delivered.
        forms = [Text(" · ").join([rates_text(detail.rates, counts=counts, target=target),
                                   callbacks_text(detail.callbacks)])
                 for counts, target in ((True, True), (False, True), (False, False))]
        cut.append(next((form for form in forms if form.cell_len <= width), forms[-1]))
        cut.append(Text(
            f"created {cells.age(now, job.created_at)} ago by {job.created_by or '–'} · "
            f"{cells.ellipsis(job.source_name, 40 if wide else 24)} · skipped {detail.skipped_duplicates} · "
            f"rejected {detail.rejected}", style="dim",
        ))
        for line in cut:
            line.truncate(width, overflow="ellipsis")
        route = Text.assemble(("route ", "bold"), (f"{detail.route or '–'} via {detail.provider or '–'}", "bold"))
        if detail.route_reason:
            route.append(f": {detail.route_reason}")
        elif not detail.route:
            route.append(": chosen when the job is dispatched", style="dim")
        lines = [*cut[:-1], route]
        if detail.handoff:
            lines.append(handoff_text(detail, now, width))
        lines.append(cut[-1])
        if detail.error:
            lines.append(Text(f"error: {detail.error}", style="bold red"))
        self.update(Text("\n").join(lines))


def handoff_text(detail: JobDetailPublic, now: datetime, width: int) -> Text:
    """Batches at the company's own cloud worker: how many, the last one's age, open and stuck."""
    handoff = detail.handoff
    last = max(b.handed_off_at for b in handoff.batches)
    line = Text.assemble(("handoff ", "bold"), f"{handoff.handed_off} batches to {handoff.mode}, last "
                         f"{cells.age(now, last)} ago · {cells.number(handoff.open)} awaiting the worker")
    if handoff.stuck:
        line.append(" · ")
        line.append(f"{handoff.stuck} stuck (no report in {handoff.stuck_after // 60} min)", style="bold red")
    line.truncate(width, overflow="ellipsis")
    return line
