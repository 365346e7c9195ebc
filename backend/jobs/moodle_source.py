"""Jobs from a Moodle selection: the reader (backend.moodle.source) with the CSV intake's address
check, its rows handed to `create_job` as the intake's own RecipientRow / RejectedRow.

    target = moodle_target(session=session, company="acme")   # which Moodle, which IOMAD company
    with target.open() as source:
        created = submit_moodle(session=session, source=source, target=target, options=options, ...)

This glue lives in the jobs room because the Moodle room sits below it and may not import it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlmodel import Session

from backend.companies.resolution import resolve
from backend.core.errors import ManiError, UnusableInput
from backend.core.settings import Settings, get_settings
from backend.jobs.create import JobCreated, create_job, in_chunks
from backend.jobs.intake import RecipientRow, RejectedRow, checked_address
from backend.jobs.preview import Preview, preview_rows
from backend.jobs.queries import company_choices
from backend.moodle.source import (
    InvalidRow,
    MoodleNotFound,
    MoodleSource,
    MoodleSourceError,
    Selection,
    SelectionOptions,
    SelectionType,
    company_courses,
    list_companies,
    open_moodle,
    select_recipients,
)
from backend.moodle.source.options import DEFAULT_INACTIVE_FOR, parse_duration, parse_moment, parse_since
from models import Company, MoodleCertificateClaim

# Completions looked up against earlier claims this many at a time (one query per chunk).
CLAIM_CHUNK = 1000


class NothingToSend(ManiError):
    """The selection matched nobody who still needs the mail: no job, and that is no failure."""

    exit_code = 0
    code = "nothing_to_send"


@dataclass(frozen=True, slots=True)
class MoodleTarget:
    """Which Moodle a mani company reads (its overrides, else the global settings), and which
    IOMAD company it is there."""

    database_url: str = field(repr=False)  # a secret: never printed
    prefix: str
    site_url: str | None
    iomad_company_id: int
    company_id: str | None  # the mani company whose settings send the job; None: the global ones

    def open(self) -> MoodleSource:
        return open_moodle(self.database_url or "", prefix=self.prefix)


def moodle_target(*, session: Session, company: str | int, settings: Settings | None = None) -> MoodleTarget:
    """`--company`: a mani company (its `moodle_company_id`, or its id when that is a number), or
    else an IOMAD company id read with the global settings. MoodleNotFound when it is neither."""
    settings = settings or get_settings()
    company = str(company).strip()
    mani_company = session.get(Company, company) if company else None
    if mani_company is not None:
        resolved = resolve(session=session, company_id=company, settings=settings)
        iomad_id = resolved["moodle_company_id"]
        if iomad_id is None:
            if not company.isdigit():
                raise MoodleNotFound(
                    f"Company {company!r} has no moodle_company_id: set it to its IOMAD company id with "
                    f"`mani companies set {company} moodle_company_id=N`."
                )
            iomad_id = int(company)
        company_id: str | None = company
    elif company.isdigit() and int(company) > 0:
        resolved = resolve(session=session, company_id=None, settings=settings)
        iomad_id, company_id = int(company), None
    else:
        raise MoodleNotFound(
            f"There is no company {company!r}: give a mani company (`mani companies list`) or an IOMAD company id."
        )
    return MoodleTarget(
        database_url=resolved["moodle_database_url"] or "", prefix=resolved["moodle_table_prefix"] or "mdl_",
        site_url=resolved["moodle_site_url"], iomad_company_id=int(iomad_id), company_id=company_id,
    )


def selection_options(
    *, selection_type: SelectionType | str, iomad_company_id: int, since: str | None, course: int | None,
    inactive_for: str | None, include_completed: bool, unless_activity: int | None, at: str | None,
) -> SelectionOptions:
    """Options as a person types them (the CLI's, the console's) as SelectionOptions;
    MoodleOptionsInvalid (exit 2) naming the option. `at`: ISO text, unix seconds, or None for now."""
    if at is None:
        moment = int(time.time())
    else:
        moment = at if isinstance(at, int) else parse_moment(at, option="--at")
    return SelectionOptions(
        type=selection_type, company_id=iomad_company_id, at=moment,
        since=parse_since(since, at=moment) if since is not None else None,
        course_id=course, include_completed=include_completed, unless_activity_cmid=unless_activity,
        inactive_for=parse_duration(inactive_for) if inactive_for is not None else DEFAULT_INACTIVE_FOR,
    )


def select_moodle_recipients(
    *, source: MoodleSource, options: SelectionOptions, site_url: str | None = None
) -> Selection:
    """`select_recipients` whose addresses are checked as a CSV's are, and whose rows are RecipientRow."""
    return select_recipients(
        source=source, options=options, site_url=site_url, check_address=checked_address,
        recipient_type=RecipientRow,
    )


def moodle_job_rows(selection: Selection) -> Iterator[RecipientRow | RejectedRow]:
    """The rows for `create_job(rows=...)`: recipients as they are, a bad address as a rejection
    that names the Moodle user."""
    for row in selection.rows():
        if type(row) is InvalidRow:
            yield RejectedRow(line=row.line, email=row.email or None, reason=f"user {row.userid}: {row.reason}")
        else:
            yield row


def site_key(source: MoodleSource) -> str:
    """The Moodle site as the certificate claims name it: host, port, database and prefix, no login."""
    url = source.database.url
    return f"{url.get_backend_name()}://{url.host or ''}:{url.port or ''}/{url.database}/{source.prefix}"[:255]


class _CertificateClaims:
    """Leaves out completions an earlier job already took on, and remembers this job's for the next run."""

    def __init__(self, *, session: Session, site: str, reissue: bool) -> None:
        self.session, self.site, self.reissue = session, site, reissue
        self.new: list[tuple[int, int]] = []
        self.already = 0

    def filter(self, rows: Iterable[RecipientRow | RejectedRow]) -> Iterator[RecipientRow | RejectedRow]:
        claims = MoodleCertificateClaim.__table__.c
        for chunk in in_chunks(rows, CLAIM_CHUNK):
            pairs = [(int(row.userid), int(row.variables["courseid"])) for row in chunk if isinstance(row, RecipientRow)]
            taken: set[tuple[int, int]] = set()
            if pairs and not self.reissue:
                taken = set(self.session.execute(
                    select(claims.moodle_userid, claims.courseid).where(
                        claims.site == self.site, claims.moodle_userid.in_({user for user, _ in pairs}))
                ).tuples())
            for row in chunk:
                if isinstance(row, RecipientRow):
                    pair = (int(row.userid), int(row.variables["courseid"]))
                    if pair in taken:
                        self.already += 1
                        continue
                    self.new.append(pair)
                yield row

    def record(self, job_id: int) -> None:
        if not self.new:
            return
        table = MoodleCertificateClaim.__table__
        dialect = self.session.get_bind().dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        statement = insert(table).on_conflict_do_nothing(index_elements=["site", "moodle_userid", "courseid"])
        for start in range(0, len(self.new), 5000):
            self.session.execute(statement, [
                {"site": self.site, "moodle_userid": user, "courseid": course, "job_id": job_id}
                for user, course in self.new[start:start + 5000]
            ])


@dataclass(slots=True)
class MoodleJobCreated:
    created: JobCreated
    selection: Selection
    already_certified: int = 0

    @property
    def job(self):
        return self.created.job


def submit_moodle(
    *, session: Session, source: MoodleSource, target: MoodleTarget, options: SelectionOptions,
    template_data: dict | None = None, action: str = "email", cloud_preference: str = "auto",
    callback_url: str | None = None, allow_duplicates: bool = False, created_by: str | None = None,
    settings: Settings | None = None,
) -> MoodleJobCreated:
    """A job from the selection, streamed into `create_job` in the caller's transaction.

    Certificates: a completion (user, course) that an earlier job took on is left out, so each
    gets one certificate across runs; `allow_duplicates` issues them again. The address-based
    duplicate check stays for the mail types. NothingToSend when nobody is left to send to.
    """
    settings = settings or get_settings()
    selection = select_moodle_recipients(source=source, options=options, site_url=target.site_url)
    rows: Iterable[RecipientRow | RejectedRow] = moodle_job_rows(selection)
    claims = None
    if options.type == SelectionType.CERTIFICATE:
        claims = _CertificateClaims(session=session, site=site_key(source), reissue=allow_duplicates)
        rows = claims.filter(rows)
    try:
        created = create_job(
            session=session, job_type=options.type.value, rows=rows,
            available_variables=selection.available_variables, company_id=target.company_id,
            template_data=template_data, source="moodle", source_name=selection.source_name[:512],
            # A certificate is per completion, not per address: the claims replace the address check.
            allow_duplicates=allow_duplicates or claims is not None, callback_url=callback_url,
            cloud_preference=cloud_preference, action=action, created_by=created_by, settings=settings,
        )
    except UnusableInput as error:
        if selection.recipients == 0 and selection.invalid == 0:
            raise NothingToSend(f"No job: the selection matched nobody ({selection.source_name}).") from None
        if claims is not None and selection.invalid == 0 and claims.already == selection.recipients:
            raise NothingToSend(
                f"No job: all {claims.already:,} completions already had a certificate from an earlier job "
                f"({selection.source_name}); --allow-duplicates issues them again."
            ) from None
        if selection.recipients == 0:
            raise ManiError(f"No job: every one of the {selection.invalid:,} users selected has an unusable address "
                            f"({error}).") from None
        raise
    if claims is not None:
        claims.record(created.job.id)
    return MoodleJobCreated(created=created, selection=selection, already_certified=claims.already if claims else 0)


@dataclass(slots=True)
class MoodlePreview:
    """What `submit_moodle` would make of the selection now: the CSV preview's counts, sample and
    first message, and the completions left out because an earlier job took them on."""

    preview: Preview
    selection: Selection
    already_certified: int = 0


def preview_moodle(
    *, session: Session, source: MoodleSource, target: MoodleTarget, options: SelectionOptions,
    template_data: dict | None = None, action: str = "email", allow_duplicates: bool = False, sample: int = 20,
    settings: Settings | None = None,
) -> MoodlePreview:
    """The dry run of `submit_moodle` (the console's preview, `mani submit --moodle --dry-run`): writes nothing."""
    selection = select_moodle_recipients(source=source, options=options, site_url=target.site_url)
    rows: Iterable[RecipientRow | RejectedRow] = moodle_job_rows(selection)
    claims = None
    if options.type == SelectionType.CERTIFICATE:
        claims = _CertificateClaims(session=session, site=site_key(source), reissue=allow_duplicates)
        rows = claims.filter(rows)
    preview = preview_rows(
        session=session, rows=rows, columns=["userid", "email", *selection.available_variables],
        available_variables=selection.available_variables, job_type=options.type.value, company_id=target.company_id,
        template_data=template_data, allow_duplicates=allow_duplicates or claims is not None, action=action,
        sample=sample, settings=settings,
    )
    return MoodlePreview(preview=preview, selection=selection, already_certified=claims.already if claims else 0)


def _typed_selection(*, session: Session, company: str, settings: Settings | None, selection_type: str,
                     **typed_options):
    """The company's Moodle target and the selection options checked from what an admin typed."""
    target = moodle_target(session=session, company=company, settings=settings)
    options = selection_options(selection_type=selection_type, iomad_company_id=target.iomad_company_id,
                                **typed_options)
    return target, options


def preview_moodle_selection(
    *, session: Session, company: str, selection_type: str, since: str | None = None, course: int | None = None,
    inactive_for: str | None = None, include_completed: bool = False, unless_activity: int | None = None,
    at: str | int | None = None, settings: Settings | None = None, **preview_options,
) -> MoodlePreview:
    """`preview_moodle` for `--company` and options as typed (the CLI's dry run, the console's preview)."""
    target, options = _typed_selection(
        session=session, company=company, settings=settings, selection_type=selection_type, since=since,
        course=course, inactive_for=inactive_for, include_completed=include_completed,
        unless_activity=unless_activity, at=at,
    )
    with target.open() as source:
        return preview_moodle(session=session, source=source, target=target, options=options, settings=settings,
                              **preview_options)


def submit_moodle_selection(
    *, session: Session, company: str, selection_type: str, since: str | None = None, course: int | None = None,
    inactive_for: str | None = None, include_completed: bool = False, unless_activity: int | None = None,
    at: str | int | None = None, settings: Settings | None = None, **job_options,
) -> MoodleJobCreated:
    """`submit_moodle` for `--company` and options as typed (`mani submit --moodle`, the console's send)."""
    target, options = _typed_selection(
        session=session, company=company, settings=settings, selection_type=selection_type, since=since,
        course=course, inactive_for=inactive_for, include_completed=include_completed,
        unless_activity=unless_activity, at=at,
    )
    with target.open() as source:
        return submit_moodle(session=session, source=source, target=target, options=options, settings=settings,
                             **job_options)


def moodle_company_choices(*, session: Session, settings: Settings | None = None) -> tuple[list[tuple[str, str]], str | None]:
    """(label, --company value) for pickers: mani's companies, then the IOMAD companies of the
    global Moodle that no mani company stands for; and why the Moodle could not be read, if not."""
    settings = settings or get_settings()
    choices = [(f"{name} ({company_id})", company_id) for company_id, name in company_choices(session=session)]
    resolved = resolve(session=session, company_id=None, settings=settings)
    if not resolved["moodle_database_url"]:
        return choices, "No Moodle database is configured: set moodle_database_url."
    try:
        with open_moodle(resolved["moodle_database_url"], prefix=resolved["moodle_table_prefix"] or "mdl_") as source:
            taken = {value for _, value in choices}
            choices += [(f"IOMAD {c.id}: {c.name}", str(c.id)) for c in list_companies(source=source)
                        if str(c.id) not in taken]
    except MoodleSourceError as error:
        return choices, str(error)
    return choices, None


def moodle_course_choices(*, session: Session, company: str, settings: Settings | None = None):
    """The company's own Moodle courses (id, full name), for course pickers."""
    target = moodle_target(session=session, company=company, settings=settings)
    with target.open() as source:
        return company_courses(source=source, company_id=target.iomad_company_id)
