"""A table that shows one page of a large result and asks for the next one at its edges.

The widget never holds more than one page: moving past the last row (or pressing `]`) posts
`PagedTable.PageRequest("next")`, and the screen's worker fetches that page with keyset
paging. So 50,000 recipients cost the same as 100.
"""

from __future__ import annotations

from textual.binding import Binding
from textual.message import Message

from console.widgets.fit_table import FitTable


class PagedTable(FitTable):
    BINDINGS = [
        Binding("right_square_bracket", "page('next')", "Next page", show=False, id="page.next",
                tooltip="Show the next page of rows"),
        Binding("left_square_bracket", "page('previous')", "Prev page", show=False, id="page.previous",
                tooltip="Show the previous page of rows"),
        Binding("ctrl+home", "page('first')", "First page", show=False, id="page.first",
                tooltip="Jump to the first page"),
        Binding("ctrl+end", "page('last')", "Last page", show=False, id="page.last",
                tooltip="Jump to the last page"),
    ]

    class PageRequest(Message):
        def __init__(self, table: PagedTable, direction: str) -> None:
            super().__init__()
            self.table = table
            self.direction = direction  # next, previous, first, last

        @property
        def control(self) -> PagedTable:
            return self.table

    has_next = False
    has_previous = False

    def action_page(self, direction: str) -> None:
        if direction == "next" and not self.has_next or direction == "previous" and not self.has_previous:
            self.app.bell()
            return
        self.post_message(self.PageRequest(self, direction))

    def action_cursor_down(self) -> None:
        if self.row_count and self.cursor_row >= self.row_count - 1 and self.has_next:
            self.post_message(self.PageRequest(self, "next"))
            return
        super().action_cursor_down()

    def action_cursor_up(self) -> None:
        if self.cursor_row <= 0 and self.has_previous:
            self.post_message(self.PageRequest(self, "previous:end"))
            return
        super().action_cursor_up()

    def action_page_down(self) -> None:
        if self.row_count and self.cursor_row >= self.row_count - 1 and self.has_next:
            self.post_message(self.PageRequest(self, "next"))
            return
        super().action_page_down()

    def action_page_up(self) -> None:
        if self.cursor_row <= 0 and self.has_previous:
            self.post_message(self.PageRequest(self, "previous:end"))
            return
        super().action_page_up()
