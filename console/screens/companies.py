"""Companies and their cloud settings: list with their bounce rates, inspect (secrets masked),
edit, test the connection."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.containers import Horizontal
from textual.widgets import DataTable, Static

from backend.companies.connection_test import check_company_connections
from backend.companies.resolution import describe
from backend.companies.service import add_company
from backend.jobs import queries
from backend.jobs.queries import company_rates
from console import calls
from console.messages import ActionDone
from console.screens.base import ManiScreen
from console.screens.company_form import CheckResultsModal, CompanyFormScreen, shown_value
from console.screens.suppressions import SuppressionsScreen
from console.widgets.callbacks import bounce_cell, rates_text
from console.widgets.confirm import PromptModal
from console.widgets.fit_table import Col, FitTable

# The bounce rate goes when the list is narrow (80 columns); the line under the tables has it.
COMPANY_COLUMNS = (Col("id", "Id", min=6, max=16), Col("name", "Name", min=12, grow=True),
                   Col("bounce", "Bounce", justify="right", drop=1))
SETTING_COLUMNS = (Col("setting", "Setting"), Col("value", "Value", min=12, grow=True), Col("source", "From"))


class CompaniesLoaded(Message):
    """Every company (id, name) and its delivery rates over all its jobs."""

    def __init__(self, companies: list[tuple[str, str]], rates: dict) -> None:
        super().__init__()
        self.companies, self.rates = companies, rates


class SettingsDescribed(Message):
    """One company's effective settings, each with where it comes from (`resolution.describe`)."""

    def __init__(self, described: dict) -> None:
        super().__init__()
        self.described = described


class ConnectionTested(Message):
    """What `test connection` found for a company, one result per check."""

    def __init__(self, company_id: str, results: list) -> None:
        super().__init__()
        self.company_id, self.results = company_id, results


class CompaniesScreen(ManiScreen):
    NAV = "companies"
    HELP = """\
**Companies.** Each company (IOMAD tenant), its bounce rate over all its jobs (red from the
seeds' 2 %; the line under the tables has the complaint rate too), and its effective cloud
settings, with where each value comes from (company, global, file, default). Secrets are
always masked. `e` or Enter edits the company's overrides in a form that checks each value as
you type; `t` tests the connection (provider, storage, callback); `a` adds a company; `s`
opens the company's suppression list."""

    BINDINGS = [
        Binding("e", "edit", "Edit", id="companies.edit", tooltip="Edit the selected company's settings"),
        Binding("t", "test", "Test connection", id="companies.test", tooltip="Check the company's provider and storage"),
        Binding("a", "add", "Add", id="companies.add", tooltip="Add a company"),
        Binding("g", "global_settings", "Global", id="companies.global", tooltip="Edit the global settings every company inherits"),
        Binding("ctrl+r,f5", "reload", "Refresh", show=False, id="companies.refresh", tooltip="Read again"),
        Binding("s", "suppressions", "Suppressions", show=False, id="companies.suppressions",
                tooltip="The selected company's suppression list"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.companies: list[tuple[str, str]] = []
        self.rates: dict = {}
        self.described: dict | None = None

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="companies-main"):
            table = FitTable(COMPANY_COLUMNS, id="companies", cursor_type="row", zebra_stripes=True)
            table.border_title = "Companies"
            yield table
            settings = FitTable(SETTING_COLUMNS, id="company-settings", cursor_type="row", zebra_stripes=True)
            settings.border_title = "Settings"
            yield settings
        yield Static("", id="company-rates", classes="status-line")
        yield Static("", id="company-detail", classes="detail-line")

    def on_mount(self) -> None:
        self.query_one("#companies").focus()

    def on_screen_resume(self) -> None:
        self.load()

    def action_reload(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="companies")
    def load(self) -> CompaniesLoaded:
        def read_all(*, session) -> tuple[list, dict]:
            return queries.company_choices(session=session), company_rates(session=session)

        return CompaniesLoaded(*calls.read(self, read_all))

    @work(thread=True, exclusive=True, exit_on_error=False, group="company-settings")
    def load_settings(self, company_id: str) -> SettingsDescribed:
        return SettingsDescribed(calls.read(self, describe, company_id=company_id))

    @on(CompaniesLoaded)
    def _loaded(self, message: CompaniesLoaded) -> None:
        self.companies, self.rates = message.companies, message.rates
        table = self.query_one("#companies", FitTable)
        keep = table.cursor_row
        table.set_rows((company_id, {"id": company_id, "name": name, "bounce": bounce_cell(self.rates.get(company_id))})
                       for company_id, name in self.companies)
        if self.companies:
            table.move_cursor(row=min(max(keep, 0), len(self.companies) - 1), animate=False)
            self.load_settings(self.selected_id())
            self._show_rates()
        else:
            self.query_one("#company-detail", Static).update("No companies yet: press a to add one.")

    @on(SettingsDescribed)
    def _settings_described(self, message: SettingsDescribed) -> None:
        self._show_settings(message.described)

    def _show_settings(self, described: dict) -> None:
        self.described = described
        table = self.query_one("#company-settings", FitTable)
        rows = []
        for key, entry in described["settings"].items():
            style = "bold" if entry["source"] == "company" else "dim" if entry["source"] == "default" else ""
            rows.append((key, {"setting": key, "value": Text(shown_value(entry["value"]), style=style),
                               "source": entry["source"]}))
        table.set_rows(rows)
        company = described.get("company") or {}
        table.border_title = f"Settings of {company.get('name', '')}"
        self._describe_row()

    @on(DataTable.RowHighlighted, "#company-settings")
    def _describe_row(self) -> None:
        table = self.query_one("#company-settings", DataTable)
        if not self.described or not table.row_count:
            return
        key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        entry = self.described["settings"].get(key, {})
        # The value in full (the table may cut it), where it comes from, and what it is for.
        self.query_one("#company-detail", Static).update(Text.assemble(
            (f"{key} = ", "bold"), (shown_value(entry.get("value")), "bold"), (f" ({entry.get('source', '–')})", "dim"),
            " · ", entry.get("description", ""), (" Secret: shown masked." if entry.get("secret") else "", "italic")))

    @on(DataTable.RowHighlighted, "#companies")
    def _company_highlighted(self) -> None:
        if self.companies:
            self.load_settings(self.selected_id())
            self._show_rates()

    def _show_rates(self) -> None:
        """The selected company's bounce and complaint rates over all its jobs."""
        company_id = self.selected_id()
        rates = self.rates.get(company_id)
        line = Text.assemble((f"{company_id}: ", "bold"))
        if rates is None or not rates.delivered:
            line.append("nothing sent yet, so no bounce or complaint rate", style="dim")
        else:
            line.append(f"{rates.delivered:,} sent · ")
            line.append_text(rates_text(rates, target=self.app.size.width >= 100))
            line.append(" · all jobs", style="dim")
        self.query_one("#company-rates", Static).update(line)

    @on(DataTable.RowSelected, "#companies")
    def _company_selected(self) -> None:
        self.action_edit()

    def selected_id(self) -> str | None:
        table = self.query_one("#companies", DataTable)
        if not self.companies or table.cursor_row < 0:
            return None
        return self.companies[min(table.cursor_row, len(self.companies) - 1)][0]

    # Actions --------------------------------------------------------------------------------------

    def action_edit(self) -> None:
        company_id = self.selected_id()
        if company_id is None:
            return
        if self.refuse_if_read_only():
            return
        self.app.push_screen(CompanyFormScreen(company_id), lambda saved: self.load() if saved else None)

    def action_suppressions(self) -> None:
        """Watching the list is a read: allowed in read-only mode too."""
        self.app.push_screen(SuppressionsScreen(self.selected_id()))

    def action_global_settings(self) -> None:
        if self.refuse_if_read_only():
            return
        self.app.push_screen(CompanyFormScreen(None), lambda saved: self.load() if saved else None)

    def action_add(self) -> None:
        if self.refuse_if_read_only():
            return

        def got_id(company_id: str | None) -> None:
            if company_id:
                self.app.push_screen(PromptModal("Add a company", f"Name of company {company_id}:", ""),
                                     lambda name: self.add(company_id, name) if name else None)

        self.app.push_screen(PromptModal("Add a company", "Company id (the IOMAD company id or tenant id):"), got_id)

    @work(thread=True, exclusive=True, exit_on_error=False, group="company-action")
    def add(self, company_id: str, name: str) -> ActionDone:
        calls.write(self, add_company, company_id=company_id, name=name, actor=self.app.config.actor,
                    source="console")
        return ActionDone("add", f"Company {company_id} added.")

    def action_test(self) -> None:
        company_id = self.selected_id()
        if company_id is not None:
            self.notify(f"Testing {company_id}'s connections…", timeout=3)
            self.test_connection(company_id)

    @work(thread=True, exclusive=True, exit_on_error=False, group="company-test")
    def test_connection(self, company_id: str) -> ConnectionTested:
        results = calls.read(self, check_company_connections, company_id=company_id)

        def audit(*, session) -> None:
            calls.audit(self, session=session, action="company.test", target=f"company:{company_id}",
                        details={r.name: ("ok" if r.ok else "failed") for r in results})

        # A test changes nothing, so read-only mode allows it; it is still audited.
        calls._with_session(self, audit, read_only=False)
        return ConnectionTested(company_id, results)

    @on(ConnectionTested)
    def _tested(self, message: ConnectionTested) -> None:
        self.app.push_screen(CheckResultsModal(message.company_id, message.results))

    def after_action(self, message: ActionDone) -> None:
        self.load()
