"""Email templates: every type renders, escaping, strict variables, overrides and the sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.core.errors import UnusableInput
from backend.core.settings import JOB_TYPES, Settings
from backend.jobs.intake import RecipientRow, open_csv
from backend.mail.templates import (
    RenderError,
    UnknownJobType,
    build_context,
    check_variables,
    clear_template_cache,
    render,
    required_variables,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

TEMPLATE_DATA = {
    "welcome_std": {},
    "welcome_lic": {"license_name": "ACME-2025", "course_name": "Safety 101", "expiry_date": "31 December 2025"},
    "reengagement": {"course_name": "Safety 101", "last_access": "3 March 2025"},
    "reminder": {"course_name": "Safety 101", "due_date": "15 November 2025", "completion_percent": "45"},
    "certificate": {"course_name": "Safety 101", "certificate_url": "https://files.example.com/c/ABCD.pdf",
                    "certificate_code": "ABCD-2345"},
}
# A value from each type's template data that its subject shows.
SUBJECT_SHOWS = {"welcome_std": "Example Academy", "welcome_lic": "Safety 101", "reengagement": "Safety 101",
                 "reminder": "15 November 2025", "certificate": "Safety 101"}


@pytest.fixture
def settings(tmp_path) -> Settings:
    clear_template_cache()
    return Settings(site_name="Example Academy", login_url="https://moodle.example.com/login/index.php")


def context_for(job_type: str, settings: Settings, **row) -> dict:
    fields = {"email": "ana@example.com", "firstname": "Ana", "lastname": "García", "username": "agarcia",
              "password": "Tmp-7Qx!pL2m", "userid": "17"}
    fields.update(row)
    return build_context(row_fields=fields, variables={}, template_data=TEMPLATE_DATA[job_type], settings=settings)


@pytest.mark.parametrize("job_type", JOB_TYPES)
def test_each_type_renders_subject_text_and_html(job_type, settings):
    message = render(job_type, context_for(job_type, settings), settings=settings)
    assert SUBJECT_SHOWS[job_type] in message.subject
    assert "\n" not in message.subject and message.subject == message.subject.strip()
    assert message.text.startswith("Hello Ana,\n")
    assert "Example Academy" in message.text and "<" not in message.text
    assert message.html.startswith("<!DOCTYPE html>") and message.html.rstrip().endswith("</html>")
    assert "Hello Ana," in message.html
    for value in TEMPLATE_DATA[job_type].values():
        assert value in message.text and value in message.html
    check_variables(job_type, [*TEMPLATE_DATA[job_type], "firstname", "username"], settings=settings)


def test_welcome_std_shows_credentials_and_works_without_a_password(settings):
    message = render("welcome_std", context_for("welcome_std", settings), settings=settings)
    assert "agarcia" in message.text and "Tmp-7Qx!pL2m" in message.text
    assert "https://moodle.example.com/login/index.php" in message.html
    without = render("welcome_std", context_for("welcome_std", settings, password=None), settings=settings)
    assert "Temporary password" not in without.text and "Temporary password" not in without.html
    assert "Forgotten your username or password?" in without.text
    assert "password" not in required_variables("welcome_std", settings=settings)


def test_optional_variables_have_defaults_and_show_when_given(settings):
    context = context_for("certificate", settings)
    plain = render("certificate", context, settings=settings)
    assert "Grade" not in plain.text and "genuine" not in plain.text
    richer = render("certificate", {**context, "grade": "92%", "certificate_verify_url": "https://v.example.com/ABCD"},
                    settings=settings)
    assert "Grade:            92%" in richer.text
    assert 'href="https://v.example.com/ABCD"' in richer.html
    assert required_variables("certificate", settings=settings) == {
        "email", "site_name", "login_url", "course_name", "certificate_url", "certificate_code"}


def test_reminder_percent_accepts_common_spellings(settings):
    context = context_for("reminder", settings)
    for given, shown in [("45", "45%"), ("45.4 %", "45%"), (87.6, "88%"), ("120", "100%")]:
        message = render("reminder", {**context, "completion_percent": given}, settings=settings)
        assert f"You have completed {shown} of the course" in message.text
    unknown = render("reminder", {**context, "completion_percent": "n/a"}, settings=settings)
    assert "You have completed" not in unknown.text and "You have completed" not in unknown.html


def test_reminder_without_a_due_date_asks_without_a_date(settings):
    """A Moodle course without an end date gives an empty due_date: no "due on" with nothing after it."""
    context = context_for("reminder", settings)
    dated = render("reminder", context, settings=settings)
    assert "by 15 November 2025" in dated.subject and "is due on 15 November 2025" in dated.text
    for undated in (render("reminder", {**context, "due_date": ""}, settings=settings),
                    render("reminder", {k: v for k, v in context.items() if k != "due_date"}, settings=settings)):
        assert undated.subject == "Reminder: complete Safety 101"
        assert "due on" not in undated.text and "due on" not in undated.html
        assert "Safety 101 is not complete yet." in undated.text


def test_html_is_escaped_and_text_is_not(settings):
    context = context_for("welcome_std", settings, firstname='<script>alert("x")</script>', username="a&b")
    message = render("welcome_std", context, settings=settings)
    assert "<script>" not in message.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in message.html
    assert "a&amp;b" in message.html
    assert 'Hello <script>alert("x")</script>,' in message.text
    assert "a&b" in message.text


def test_subject_is_one_line_even_when_a_value_has_newlines(settings):
    context = context_for("reminder", settings)
    message = render("reminder", {**context, "course_name": "Safety\r\nBcc: evil@example.com"}, settings=settings)
    assert message.subject == "Reminder: complete Safety Bcc: evil@example.com by 15 November 2025"


def test_missing_variable_at_render_time_is_a_strict_error(settings):
    context = context_for("welcome_lic", settings)
    del context["course_name"]
    with pytest.raises(RenderError, match="'course_name' is undefined"):
        render("welcome_lic", context, settings=settings)


def test_check_variables_names_the_missing_variable(settings):
    with pytest.raises(UnusableInput) as caught:
        check_variables("welcome_lic", ["email", "firstname", "license_name", "expiry_date"], settings=settings)
    assert str(caught.value) == (
        "template variable 'course_name' of welcome_lic is not provided by any CSV column or template data."
    )
    with pytest.raises(UnusableInput, match="template variables 'course_name', 'last_access' of reengagement"):
        check_variables("reengagement", ["email"], settings=settings)


def test_certificate_fields_come_from_the_certificate_step(settings):
    with pytest.raises(UnusableInput, match="'certificate_code', 'certificate_url'"):
        check_variables("certificate", ["email", "course_name"], settings=settings)
    check_variables("certificate", ["email", "course_name"], settings=settings, generates_certificates=True)


def test_example_csvs_provide_their_types_variables(settings):
    for name, job_type in [("users.csv", "welcome_std"), ("licenses.csv", "welcome_lic"),
                           ("reminders.csv", "reminder")]:
        source = open_csv(EXAMPLES / name)
        check_variables(job_type, source.columns, settings=settings)
        for row in source:
            assert isinstance(row, RecipientRow)
            fields = {"email": row.email, "firstname": row.firstname, "lastname": row.lastname,
                      "username": row.username, "password": row.password, "userid": row.userid}
            context = build_context(row_fields=fields, variables=row.variables, template_data={}, settings=settings)
            message = render(job_type, context, settings=settings)
            assert row.firstname in message.html


def test_build_context_precedence_and_fullname(settings):
    context = build_context(
        row_fields={"email": "a@example.com", "firstname": "Ana", "lastname": "García", "username": None},
        variables={"course_name": "From CSV", "due_date": ""},
        template_data={"course_name": "From job", "due_date": "1 May", "username": "job-user",
                       "site_name": "Company Academy"},
        settings=settings,
    )
    assert context["course_name"] == "From CSV"
    assert context["due_date"] == "1 May"  # an empty CSV cell falls back to the job's value
    assert context["username"] == "job-user"
    assert context["fullname"] == "Ana García"
    assert context["site_name"] == "Company Academy"
    assert context["login_url"] == settings.login_url


def test_unknown_job_type_lists_the_known_ones(settings):
    with pytest.raises(UnknownJobType) as caught:
        render("newsletter", {}, settings=settings)
    assert str(caught.value) == (
        "unknown job type 'newsletter'; the known types are: "
        "welcome_std, welcome_lic, reengagement, reminder, certificate."
    )
    with pytest.raises(UnknownJobType):
        required_variables("newsletter", settings=settings)


def override_settings(tmp_path: Path, files: dict[str, str]) -> Settings:
    for name, content in files.items():
        path = tmp_path / "templates" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    clear_template_cache()
    return Settings(site_name="Example Academy", template_dir=tmp_path / "templates")


def test_override_dir_wins_file_by_file(tmp_path, settings):
    custom = override_settings(tmp_path, {
        "welcome_std/subject.txt.j2": "Bienvenue {{ firstname }} ({{ department }})\n",
        "_footer.txt.j2": "\n-- \nThe {{ site_name }} team\n",
    })
    context = {**context_for("welcome_std", settings), "department": "Ventes"}
    message = render("welcome_std", context, settings=custom)
    assert message.subject == "Bienvenue Ana (Ventes)"
    assert message.text.endswith("-- \nThe Example Academy team\n")
    assert "Log in to Example Academy" in message.html  # default HTML body still used
    assert "department" in required_variables("welcome_std", settings=custom)
    with pytest.raises(UnusableInput, match="'department' of welcome_std"):
        check_variables("welcome_std", ["email", "username"], settings=custom)
    # The defaults are untouched for settings without the override.
    assert render("welcome_std", context, settings=settings).subject.startswith("Welcome to")


def test_override_with_a_syntax_error_is_unusable_input(tmp_path):
    custom = override_settings(tmp_path, {"reminder/body.txt.j2": "Hello {{ firstname \n"})
    with pytest.raises(UnusableInput, match=r"reminder/body.txt.j2 has an error on line 1"):
        required_variables("reminder", settings=custom)
    with pytest.raises(UnusableInput, match=r"reminder/body.txt.j2 has an error on line 1"):
        render("reminder", {}, settings=custom)


def test_missing_override_dir_is_an_error_not_a_silent_fallback(tmp_path):
    clear_template_cache()
    missing = Settings(template_dir=tmp_path / "nowhere")
    with pytest.raises(UnusableInput, match="nowhere \\(MANI_TEMPLATE_DIR\\) is not a directory"):
        check_variables("reminder", ["email"], settings=missing)
    with pytest.raises(UnusableInput, match="is not a directory"):
        render("reminder", {}, settings=missing)


@pytest.mark.parametrize("source", [
    "{{ email.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ site_name.format.__globals__ }}",
    "{{ cycler.__init__.__globals__ }}",
])
def test_sandbox_blocks_unsafe_attribute_access(tmp_path, settings, source):
    custom = override_settings(tmp_path, {"welcome_std/subject.txt.j2": source})
    with pytest.raises(RenderError):
        render("welcome_std", context_for("welcome_std", settings), settings=custom)


def test_sandbox_blocks_mutating_the_context(tmp_path, settings):
    custom = override_settings(tmp_path, {"welcome_std/subject.txt.j2": "{{ tags.append('x') }}"})
    with pytest.raises(RenderError, match="unsafe"):
        render("welcome_std", {**context_for("welcome_std", settings), "tags": []}, settings=custom)
