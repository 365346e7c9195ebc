"""One place that turns a worker's outcome into a message, as harlequin does with a single
`Worker.StateChanged` handler instead of a try/except in every `@work` method.

`Worker.StateChanged` does not bubble: it reaches the node that started the worker, so every
node that starts workers (screens, and widgets such as the callbacks pane) mixes this in.
"""

from __future__ import annotations

from textual.message import Message
from textual.worker import Worker, WorkerState

from console.calls import explain
from console.messages import ActionFailed


class WorkerResults:
    """Mixin for a Textual node: a worker's returned `Message` is posted to the node; an error
    becomes `ActionFailed(worker.name, why)`. A cancelled worker (replaced by a newer exclusive
    one) delivers nothing, so a slow, stale read never overwrites a fresh one."""

    def busy(self, *groups: str) -> bool:
        """Whether a worker of this node in one of `groups` is still running (a timer's refresh
        waits for it rather than cancelling it: with an interval shorter than a read, cancelling
        would mean no read ever lands)."""
        return any(worker.node is self and worker.group in groups and not worker.is_finished
                   for worker in self.app.workers)

    # Named, not `@on(...)`: Textual finds `on_<message>` methods on mixins too (it walks the MRO).
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state is WorkerState.SUCCESS and isinstance(worker.result, Message):
            self.post_message(worker.result)
        elif event.state is WorkerState.ERROR and worker.error is not None:
            self.post_message(ActionFailed(worker.name, explain(worker.error)))
