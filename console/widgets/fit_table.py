"""A DataTable whose columns always fit its width: no horizontal scrollbar, no cut column.

Each column says how wide it would like to be, how narrow it may get, and whether it is the
one to drop when even the narrowest layout does not fit (`drop`: higher numbers go first).
The table keeps the rows it was given and lays them out again whenever its width changes:
values are cut with an ellipsis, a `Choice` column shows the longest form that fits
(`1,860/3,000` or `1.9k/3k`), and a callable gets the width (a progress bar as wide as its column).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Union

from rich.text import Text
from textual import events
from textual.widgets import DataTable


class Choice:
    """Forms of one value, longest first. A column shows the same form in every row: the
    longest one that fits for all of them."""

    def __init__(self, *options: str | Text) -> None:
        self.options = [option if isinstance(option, Text) else Text(option) for option in options]


def _form(cells: Iterable[Cell], width: int) -> int:
    """The longest form of a column's `Choice`s that fits `width` in every row."""
    choices = [cell for cell in cells if isinstance(cell, Choice)]
    most = max((len(choice.options) for choice in choices), default=1)
    for form in range(most):
        if all(choice.options[min(form, len(choice.options) - 1)].cell_len <= width for choice in choices):
            return form
    return most - 1


Cell = Union[str, Text, Choice, Callable[[int], Text], None]


@dataclass(frozen=True)
class Col:
    """One column. `width`: the width it would like (None: as wide as its widest value, up to
    `max`); `min`: as narrow as it may get (None: its wanted width, so it never shrinks);
    `drop`: 0 for a column always shown, else dropped when the table is too narrow, the
    highest first; `grow`: takes the width left over; `short`: the header when narrower than `label`."""

    key: str
    label: str
    width: int | None = None
    min: int | None = None
    max: int | None = None
    drop: int = 0
    grow: bool = False
    short: str | None = None
    justify: str | None = None  # "right" for numbers


def as_text(value: Cell, width: int, justify: str | None = None, form: int = 0) -> Text:
    """A cell's value as one line of at most `width` cells; `form`: which of a `Choice`'s forms."""
    if isinstance(value, Choice):
        text = value.options[min(form, len(value.options) - 1)].copy()
    elif callable(value):
        text = value(width)
    elif isinstance(value, Text):
        text = value.copy()
    else:
        text = Text("" if value is None else str(value))
    text.no_wrap, text.end = True, ""
    if justify:
        text.justify = justify
    if text.cell_len > width:
        text.truncate(width, overflow="ellipsis")
    return text


def _natural(value: Cell, shortest: bool) -> int:
    if isinstance(value, Choice):
        return (value.options[-1] if shortest else value.options[0]).cell_len
    if callable(value):
        return 0
    return as_text(value, 10_000).cell_len


def layout(columns: Sequence[Col], rows: Iterable[Mapping[str, Cell]], available: int,
           padding: int = 1) -> list[tuple[Col, int]]:
    """The columns to show and their content widths, so that they fit `available` cells."""
    rows = list(rows)
    wanted: dict[str, int] = {}
    least: dict[str, int] = {}
    # Which columns get room first: names (cut with an ellipsis, they lose most), then values
    # with a shorter form, then bars, then the column that takes what is left (`grow`).
    rank: dict[str, int] = {}
    for col in columns:
        label = len(col.label)
        choices = any(isinstance(row.get(col.key), Choice) for row in rows)
        rank[col.key] = 3 if col.grow else 2 if col.width is not None else 1 if choices else 0
        if col.width is not None:
            want = col.width
        else:
            want = max([label, *(_natural(row.get(col.key), False) for row in rows)])
            if col.max is not None:
                want = min(want, col.max)
        wanted[col.key] = want
        if col.min is not None:
            least[col.key] = min(col.min, want)
        elif choices:
            least[col.key] = max([len(col.short or col.label), *(_natural(row.get(col.key), True) for row in rows)])
        else:
            least[col.key] = want

    def need(shown: list[Col]) -> int:
        return sum(least[col.key] + 2 * padding for col in shown)

    shown = list(columns)
    while need(shown) > available:
        droppable = [col for col in shown if col.drop]
        if not droppable:
            break
        shown.remove(max(droppable, key=lambda col: (col.drop, shown.index(col))))
    widths = {col.key: least[col.key] for col in shown}
    spare = available - need(shown)
    for level in (0, 1, 2, 3):  # a cell at a time, in turn, so that no name alone is cut short
        hungry = [col for col in sorted(shown, key=lambda col: col.drop) if rank[col.key] == level]
        while spare > 0 and hungry:
            hungry = [col for col in hungry if widths[col.key] < wanted[col.key]]
            for col in hungry[:spare]:
                widths[col.key] += 1
                spare -= 1
    growers = [col for col in shown if col.grow]
    for index, col in enumerate(growers):
        share = spare // (len(growers) - index)
        if col.max is not None:
            share = min(share, max(col.max - widths[col.key], 0))
        widths[col.key] += share
        spare -= share
    return [(col, widths[col.key]) for col in shown]


class FitTable(DataTable):
    """Give it `Col`s and rows of {column key: value}; it shows what fits, and re-fits on resize."""

    def __init__(self, columns: Sequence[Col] = (), **options) -> None:
        super().__init__(**options)
        self._specs: list[Col] = list(columns)
        self._rows: list[tuple[str | None, Mapping[str, Cell]]] = []
        self._shape: list[tuple[Col, int]] | None = None

    @property
    def shown_columns(self) -> list[str]:
        """The keys of the columns on screen now."""
        return [col.key for col, _ in self._shape or []]

    def set_columns(self, columns: Sequence[Col]) -> None:
        self._specs = list(columns)
        self._refit(force=True)

    def set_rows(self, rows: Iterable[tuple[str | None, Mapping[str, Cell]]]) -> None:
        """Replace the rows ((key, {column key: value})); the cursor stays on the same line.

        When the rows have the same keys as before and the columns keep their widths (a refresh
        of the same page), the cells are updated in place: the cursor and the scroll do not move.
        """
        rows = list(rows)
        same_keys = (self._shape is not None and len(rows) == self.row_count == len(self._rows)
                     and all(new == old is not None for (new, _), (old, _) in zip(rows, self._rows)))
        self._rows = rows
        if same_keys and self.size.width > 0:
            shape = layout(self._specs, (cells for _, cells in rows), self._available(), self.cell_padding)
            if shape == self._shape:
                self._update_cells()
                return
        self._refit(force=True)

    def _update_cells(self) -> None:
        shape = self._shape or []
        forms = {col.key: _form((cells.get(col.key) for _, cells in self._rows), width) for col, width in shape}
        for key, cells in self._rows:
            for col, width in shape:
                value = as_text(cells.get(col.key), width, col.justify, forms[col.key])
                if self.get_cell(key, col.key) != value:
                    self.update_cell(key, col.key, value)

    def _available(self) -> int:
        width = self.size.width
        visible = self.size.height - (self.header_height if self.show_header else 0)
        if len(self._rows) > visible:
            width -= self.styles.scrollbar_size_vertical
        return width

    def _refit(self, force: bool = False) -> None:
        if self.size.width <= 0:
            return  # not laid out yet: the first resize fits it
        shape = layout(self._specs, (cells for _, cells in self._rows), self._available(), self.cell_padding)
        if not force and shape == self._shape:
            return
        self._shape = shape
        row, column = self.cursor_coordinate
        self.clear(columns=True)
        for col, width in shape:
            label = col.short if col.short and width < len(col.label) else col.label
            self.add_column(as_text(label, width, col.justify), width=width, key=col.key)
        forms = {col.key: _form((cells.get(col.key) for _, cells in self._rows), width) for col, width in shape}
        for key, cells in self._rows:
            self.add_row(*(as_text(cells.get(col.key), width, col.justify, forms[col.key]) for col, width in shape),
                         key=key)
        if self._rows:
            self.move_cursor(row=min(row, len(self._rows) - 1), column=min(column, len(shape) - 1), animate=False)

    def on_resize(self, event: events.Resize) -> None:
        self._refit()
