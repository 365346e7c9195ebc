"""Editing one company's overrides, or the global settings: one field per catalogue setting,
checked as you type.

The form is built from `backend.companies.catalogue.SETTINGS_CATALOGUE`, so a setting added there
(a new provider's key, say) appears here with its validation and no console change. Secret
fields never show the stored value: leave them empty to keep it, type to replace it.
"""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.validation import ValidationResult, Validator
from textual.widgets import Input, Label, Select, Static

from backend.companies.catalogue import SETTINGS_CATALOGUE, parse_value
from backend.companies.resolution import describe
from backend.companies.store import set_company_settings, set_global_settings
from console import calls
from console.messages import ActionDone
from console.screens.base import ManiScreen
from console.widgets.confirm import ConfirmModal

INHERIT = "__inherit__"


def shown_value(value) -> str:
    """A setting's value as the form takes it: `true`, `a,b`, or – when unset."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def in_effect(entry: dict, *, inherit: bool) -> str:
    """What an empty field means: the value in effect and where it comes from, e.g.
    `(inherit: 500, from global)` in a company's form, `(500, from settings)` in the global one."""
    value = entry.get("value")
    said = "not set" if value is None else f"{shown_value(value)}, from {entry.get('source', 'default')}"
    return f"(inherit: {said})" if inherit else f"({said})"


class SpecValidator(Validator):
    """The catalogue's own parser: the message is the one `mani companies set` would give."""

    def __init__(self, spec, scope: str) -> None:
        super().__init__()
        self.spec, self.scope = spec, scope

    def validate(self, value: str) -> ValidationResult:
        try:
            parse_value(self.spec, value, scope=self.scope)
        except ValueError as error:
            return self.failure(str(error))
        return self.success()


class FormLoaded(Message):
    """The settings as stored (`resolution.describe`): what the form starts from."""

    def __init__(self, described: dict) -> None:
        super().__init__()
        self.described = described


class CompanyFormScreen(ManiScreen):
    NAV = "companies"
    HELP = """\
**Edit company settings** (or, from `g`, the global settings). One field per setting. Empty
means "inherit": the global value for a company, the file or default for a global setting; an
empty field shows the value in effect and where it comes from. Each field is checked as you
type. Secret fields stay empty: type a new value to replace the stored one, or leave it empty to
keep it. `ctrl+s` shows what changes and asks before saving (all or nothing); Escape leaves."""

    BINDINGS = [
        Binding("ctrl+s", "save", "Save", id="form.save", tooltip="Show what changes, ask, then store it"),
        Binding("escape", "leave", "Back", id="form.back", tooltip="Leave without saving"),
    ]

    def __init__(self, company_id: str | None) -> None:
        """`company_id=None` edits the global settings (stored in the database)."""
        super().__init__()
        self.company_id = company_id
        self.scope = "company" if company_id else "global"
        self.original: dict[str, str] = {}
        self.effective: dict[str, str] = {}
        self.specs: dict = {}
        self.select_options: dict[str, list[tuple[str, str]]] = {}

    def compose_body(self) -> ComposeResult:
        self.specs = SETTINGS_CATALOGUE[self.scope]
        inherit = "(inherit)" if self.company_id else "(reading…)"  # until loaded: the value in effect
        with VerticalScroll(id="company-form") as form:
            form.border_title = f"Settings of {self.company_id}" if self.company_id else "Global settings"
            for key, spec in self.specs.items():
                with Vertical(classes="form-field", id=f"field-{key}"):
                    yield Label(Text.assemble((key, "bold"), "  ", (spec.description, "dim")))
                    choices = spec.choices_for(self.scope)
                    if spec.kind == "bool" or choices:
                        options = [("true", "true"), ("false", "false")] if spec.kind == "bool" else [
                            (c, c) for c in choices]
                        self.select_options[key] = options
                        yield Select([(inherit, INHERIT), *options], value=INHERIT, allow_blank=False,
                                     compact=True, id=f"setting-{key}")
                    else:
                        yield Input(compact=True, password=spec.secret, id=f"setting-{key}",
                                    validators=[SpecValidator(spec, self.scope)], valid_empty=True,
                                    placeholder=inherit if not spec.secret else "(not set)")
                    yield Static("", classes="field-error", id=f"error-{key}")
        yield Static("ctrl+s saves · Escape leaves without saving", classes="status-line", id="form-status")

    def on_mount(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="company-form")
    def load(self) -> FormLoaded:
        return FormLoaded(calls.read(self, describe, company_id=self.company_id))

    @on(FormLoaded)
    def _loaded(self, message: FormLoaded) -> None:
        for key, entry in message.described["settings"].items():
            own = entry.get("set")
            widget = self.query_one(f"#setting-{key}")
            self.effective[key] = in_effect(entry, inherit=bool(self.company_id)) if own is None else (
                "(inherit)" if self.company_id else "(file or default)")
            if entry.get("secret"):
                # Never the stored value, only whether there is one (masked by the backend).
                widget.placeholder = f"set ({own}): type to replace" if own is not None else "(not set)"
                self.original[key] = ""
                continue
            text = "" if own is None else shown_value(own)
            self.original[key] = text
            if isinstance(widget, Select):
                with self.prevent(Select.Changed):
                    widget.set_options([(self.effective[key], INHERIT), *self.select_options[key]])
                    widget.value = text if text else INHERIT
            else:
                widget.placeholder = self.effective[key]
                widget.value = text
        first = self.query("#company-form Select, #company-form Input").first()
        first.focus()

    def _value(self, key: str) -> str:
        widget = self.query_one(f"#setting-{key}")
        value = widget.value
        if isinstance(widget, Select):
            return "" if value == INHERIT or value is Select.NULL else str(value)
        return value.strip()

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        key = (event.input.id or "").removeprefix("setting-")
        result = event.validation_result
        error = self.query_one(f"#error-{key}", Static)
        error.update("" if result is None or result.is_valid else "✖ " + "; ".join(result.failure_descriptions))
        error.set_class(not (result is None or result.is_valid), "-shown")

    def changes(self) -> dict[str, str | None]:
        changed: dict[str, str | None] = {}
        for key, spec in self.specs.items():
            value = self._value(key)
            if spec.secret:
                if value:
                    changed[key] = value
            elif value != self.original.get(key, ""):
                changed[key] = value or None
        return changed

    def action_save(self) -> None:
        if self.refuse_if_read_only():
            return
        invalid = [key for key in self.specs if not isinstance(self.query_one(f"#setting-{key}"), Select)
                   and not self.query_one(f"#setting-{key}", Input).is_valid]
        if invalid:
            self.notify(f"Fix {', '.join(invalid)} first.", severity="error")
            self.query_one(f"#setting-{invalid[0]}").focus()
            return
        changes = self.changes()
        if not changes:
            self.notify("Nothing changed.", severity="warning")
            return
        whose = f"{self.company_id}'s settings" if self.company_id else "the global settings"
        self.confirm("Save settings", f"Save {len(changes)} change{'s' if len(changes) != 1 else ''} to {whose}?\n"
                     + "\n".join(self.describe_change(key, value) for key, value in changes.items()),
                     lambda: self.save(changes), label="Save")

    def describe_change(self, key: str, value: str | None) -> str:
        """`threshold: 500 → 750`; empty means inherit, and a secret is never shown."""
        if self.specs[key].secret:
            return f"• {key}: replaced (the new value is stored encrypted, never shown)"
        before = self.original.get(key) or self.effective.get(key, "(inherit)")
        after = value or ("(inherit)" if self.company_id else "(file or default)")
        return f"• {key}: {before} → {after}"

    @work(thread=True, exclusive=True, exit_on_error=False, group="company-save")
    def save(self, values: dict[str, str | None]) -> ActionDone:
        if self.company_id:
            changed = calls.write(self, set_company_settings, company_id=self.company_id, values=values,
                                  actor=self.app.config.actor, source="console")
        else:
            changed = calls.write(self, set_global_settings, values=values, actor=self.app.config.actor,
                                  source="console")
        whose = f"of {self.company_id}" if self.company_id else "(global)"
        return ActionDone("save", f"Saved {len(changed)} setting(s) {whose}: {', '.join(sorted(changed)) or 'no change'}.")

    def after_action(self, message: ActionDone) -> None:
        self.dismiss(True)

    def action_leave(self) -> None:
        if self.changes():
            self.confirm_leave()
        else:
            self.dismiss(False)

    def confirm_leave(self) -> None:
        self.app.push_screen(ConfirmModal("Unsaved changes", f"Leave without saving {len(self.changes())} change(s)?",
                                          confirm_label="Leave"), lambda leave: self.dismiss(False) if leave else None)


class CheckResultsModal(ModalScreen[None]):
    """What `test connection` found, one line per check."""

    BINDINGS = [Binding("escape,enter", "close", "Close", id="checks.close", tooltip="Close the results")]

    def __init__(self, company_id: str, results: list) -> None:
        super().__init__()
        self.company_id = company_id
        self.results = results

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-body") as body:
            body.border_title = f"Connection test: {self.company_id}"
            # One paragraph per check, wrapped: a provider's answer is read whole, never cut.
            lines = [Text.assemble(("ok   " if result.ok else "FAIL ", "bold green" if result.ok else "bold red"),
                                   (result.name, "bold"), " · ", result.detail or "")
                     for result in self.results]
            with VerticalScroll(id="check-results"):
                yield Static(Text("\n").join(lines), id="check-results-text")
            ok = all(result.ok for result in self.results)
            yield Static(Text("All checks passed." if ok else "Some checks failed.",
                              style="green" if ok else "bold red"))

    def action_close(self) -> None:
        self.dismiss(None)
