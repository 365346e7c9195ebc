"""Read the next pages of a streamed result while the caller works on the current one.

A selection's consumer (the job writer) spends its time in its own database; meanwhile the Moodle
server can be producing the next pages. One thread per selection fetches up to `depth` pages
ahead into a bounded queue, so memory stays at a few pages whatever the selection's size.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_END = object()


class _Failure:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def read_ahead(pages: Iterable[T], *, depth: int = 4) -> Iterator[T]:
    """`pages` as they come, fetched by a helper thread up to `depth` pages ahead.

    An error in the fetching thread is raised here, in the caller's thread. Closing this
    generator early stops the thread before it returns, so the caller may close the result.
    """
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def pump() -> None:
        try:
            for page in pages:
                while not stop.is_set():
                    try:
                        buffer.put(page, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            item = _END
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread as is
            item = _Failure(error)
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    thread = threading.Thread(target=pump, name="moodle-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()
