"""Modal dialogs: confirm an action (saying what it touches), or ask for one line of text."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.validation import Validator
from textual.widgets import Button, Input, Label, Static


class ConfirmModal(ModalScreen[bool]):
    """Yes/no; the question should say how many recipients or messages the action touches."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes", tooltip="Go ahead with the action"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no", tooltip="Leave everything as it is"),
        Binding("left,right", "app.focus_next", "Move", show=False, id="confirm.move",
                tooltip="Move between the buttons"),
    ]

    def __init__(self, title: str, question: str, *, confirm_label: str = "Yes", danger: bool = False) -> None:
        super().__init__()
        self.title_text = title
        self.question = question
        self.confirm_label = confirm_label
        self.danger = danger

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-body") as body:
            body.border_title = self.title_text
            yield Static(self.question, id="confirm-question")
            with Horizontal(classes="modal-buttons"):
                yield Button(f"{self.confirm_label} [y]", id="confirm-yes", variant="error" if self.danger else "primary")
                yield Button("No [n]", id="confirm-no")

    def on_mount(self) -> None:
        self.query_one("#confirm-no" if self.danger else "#confirm-yes", Button).focus()

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes")


class PromptModal(ModalScreen[str | None]):
    """One line of text (a file path, say); Enter accepts, Escape cancels."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="prompt.cancel", tooltip="Close without doing anything"),
    ]

    def __init__(self, title: str, label: str, value: str = "", *, validators: list[Validator] | None = None,
                 suggester=None) -> None:
        super().__init__()
        self.title_text = title
        self.label = label
        self.value = value
        self.validators = validators or []
        self.suggester = suggester

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-body") as body:
            body.border_title = self.title_text
            yield Label(self.label)
            yield Input(self.value, id="prompt-input", validators=self.validators, suggester=self.suggester)
            yield Static("", id="prompt-error", classes="field-error")
            with Horizontal(classes="modal-buttons"):
                yield Button("OK [enter]", id="prompt-ok", variant="primary")
                yield Button("Cancel [esc]", id="prompt-cancel")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        result = event.validation_result
        self.query_one("#prompt-error", Static).update(
            "" if result is None or result.is_valid else "; ".join(result.failure_descriptions)
        )

    @on(Input.Submitted)
    @on(Button.Pressed, "#prompt-ok")
    def _accept(self) -> None:
        field = self.query_one(Input)
        result = field.validate(field.value)
        if result is not None and not result.is_valid:
            field.focus()
            return
        self.dismiss(field.value.strip())

    @on(Button.Pressed, "#prompt-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
