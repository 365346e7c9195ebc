"""Certificate templates as data: what a validated template is, what it needs, where it is found.

A template is a TOML (or JSON) file; `certificates.validate` checks it and builds a `Template`.
See docs/certificates.md for the format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

TEMPLATES_DIR = Path(__file__).parent / "templates"

# Portrait width x height in mm.
PAGE_SIZES = {"A3": (297.0, 420.0), "A4": (210.0, 297.0), "A5": (148.0, 210.0),
              "LETTER": (215.9, 279.4), "LEGAL": (215.9, 355.6)}

# Placeholders mani fills itself; the data never has to provide them.
SYSTEM_FIELDS = frozenset({"code", "verify_url", "issued_date", "expiry_date"})
# Placeholders the recipient or the job provides.
DATA_FIELDS = frozenset({"fullname", "firstname", "lastname", "email", "course_name", "completion_date", "grade"})
BUILTIN_FIELDS = SYSTEM_FIELDS | DATA_FIELDS
# An element using one of these, left empty, is not drawn ("Grade: {grade}" disappears).
OPTIONAL_FIELDS = frozenset({"grade", "expiry_date"})
# Filled when absent: completion_date is the day of issue.
DEFAULTED_FIELDS = frozenset({"completion_date"})
# What the data must hold for a placeholder that is derived from other fields.
DERIVED_FIELDS = {"fullname": frozenset({"firstname", "lastname"})}

Color = tuple[int, int, int]


@dataclass(frozen=True)
class Text:
    """A literal-and-placeholder string compiled once: parts alternate literal, field name."""

    source: str
    parts: tuple[tuple[bool, str], ...]  # (is_field, literal or field name)

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(value for is_field, value in self.parts if is_field)

    def render(self, values: dict[str, str]) -> str:
        return "".join(values.get(value, "") if is_field else value for is_field, value in self.parts)


@dataclass(frozen=True)
class TextElement:
    number: int
    text: Text
    x: float
    y: float
    w: float
    h: float
    align: str
    font: str
    style: str
    size: float
    color: Color
    min_size: float
    upper: bool
    spacing: float


@dataclass(frozen=True)
class LineElement:
    number: int
    x1: float
    y1: float
    x2: float
    y2: float
    width: float
    color: Color


@dataclass(frozen=True)
class RectElement:
    number: int
    x: float
    y: float
    w: float
    h: float
    width: float
    color: Color | None
    fill: Color | None


@dataclass(frozen=True)
class ImageElement:
    number: int
    path: Path
    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True)
class QRElement:
    number: int
    data: Text
    x: float
    y: float
    size: float
    color: Color


Element = TextElement | LineElement | RectElement | ImageElement | QRElement


@dataclass(frozen=True)
class Template:
    name: str
    source: Path | None
    width: float
    height: float
    background: Color | None
    background_image: Path | None
    elements: tuple[Element, ...]
    fields: dict[str, str | None] = field(default_factory=dict)  # custom field -> default (None: required)
    date_format: str = "%d %B %Y"
    description: str = ""

    @property
    def placeholders(self) -> frozenset[str]:
        found: set[str] = set()
        for element in self.elements:
            if isinstance(element, TextElement):
                found |= element.text.fields
            elif isinstance(element, QRElement):
                found |= element.data.fields
        return frozenset(found)

    @property
    def fonts(self) -> set[tuple[str, str]]:
        return {(e.font, e.style) for e in self.elements if isinstance(e, TextElement)}


def required_fields(template: Template) -> set[str]:
    """Names the data (CSV columns, recipient fields or job template data) must provide.

    `{fullname}` needs `firstname` and `lastname` (a `fullname` column also does; see
    `missing_fields`). mani's own fields, optional ones and defaulted ones are not listed.
    """
    needed: set[str] = set()
    for name in template.placeholders:
        if name in SYSTEM_FIELDS or name in OPTIONAL_FIELDS or name in DEFAULTED_FIELDS:
            continue
        if name in template.fields and template.fields[name] is not None:
            continue
        needed |= DERIVED_FIELDS.get(name, {name})
    return needed


def missing_fields(required: set[str], available: set[str]) -> list[str]:
    """The required names `available` lacks, with a `fullname` column standing in for the parts."""
    have = set(available)
    if "fullname" in have:
        have |= DERIVED_FIELDS["fullname"]
    if "firstname" in have:  # a one-part name is a name: lastname may be absent for everyone
        have.add("lastname")
    return sorted(required - have)
