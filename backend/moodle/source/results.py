"""Typed, frozen results of the Moodle reader, one shape for the CLI's --json, the API and the console."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_serializer


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class PreviewRecipient(_Frozen):
    """One selected recipient. Serialised flat: userid, email, the template variables, and
    `courseid` (certificate) or `completion_percent` (reminder) where the type has them."""

    userid: int
    email: str
    variables: dict[str, str]
    courseid: int | None = None
    completion_percent: int | None = None
    has_completion_percent: bool = False

    @model_serializer(mode="plain")
    def _flat(self) -> dict[str, Any]:
        data: dict[str, Any] = {"userid": self.userid, "email": self.email, **self.variables}
        if self.courseid is not None:
            data["courseid"] = self.courseid
        if self.has_completion_percent:
            data["completion_percent"] = self.completion_percent
        return data


class PreviewInvalid(_Frozen):
    """A user the selection matched but who cannot be mailed: an empty or malformed address."""

    userid: int
    email: str
    reason: str


class MoodlePreview(_Frozen):
    """`mani moodle preview --json`: {"recipients": [...], "invalid": [...]}."""

    recipients: list[PreviewRecipient]
    invalid: list[PreviewInvalid]


class MoodleCompany(_Frozen):
    id: int
    name: str
    shortname: str
    suspended: bool


class MoodleCourse(_Frozen):
    id: int
    fullname: str
    shortname: str
    visible: bool


class MoodleActivity(_Frozen):
    """A course module that tracks completion (what `--unless-activity` and the pickers offer)."""

    cmid: int
    module: str
    idnumber: str | None
    visible: bool
    completion: int
