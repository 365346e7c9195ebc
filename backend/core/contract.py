"""Pydantic building blocks of mani's HTTP contracts (Job JSON, Callback JSON, webhooks).

The same models validate requests and are published as `/openapi.json`, so what the spec
promises is what the server checks. Validation errors become `InvalidFields`, one entry per
field, named the way the Job JSON names them: `recipients[3].email`.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, Field, ValidationError

from backend.core.errors import InvalidFields
from backend.core.json_body import MAX_INTEGER, text_problem

Model = TypeVar("Model", bound=BaseModel)


def _storable(value: str) -> str:
    problem = text_problem(value)
    if problem:
        raise ValueError(problem)
    return value


# Text a database can store: no NUL, no lone surrogate.
SafeStr = Annotated[str, AfterValidator(_storable)]
ShortStr = Annotated[SafeStr, Field(max_length=255)]
# Whole numbers within a 64-bit column; unix seconds between 1970 and 2100.
WholeNumber = Annotated[int, Field(ge=-MAX_INTEGER, le=MAX_INTEGER)]
UnixSeconds = Annotated[float, Field(ge=0, le=4_102_444_800, allow_inf_nan=False)]
Scalar = SafeStr | WholeNumber | Annotated[float, Field(allow_inf_nan=False)] | bool | None


def field_name(location: tuple) -> str:
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        elif text:
            text += f".{part}"
        else:
            text = str(part)
    return text or "body"


_UNION_TAGS = {"str", "int", "float", "bool", "none", "list", "dict", "model"}


def _union_tag(part: Any) -> bool:
    return isinstance(part, str) and (part in _UNION_TAGS or part.startswith(("constrained-", "function-", "lax-"))
                                      or "[" in part)


def field_errors(error: ValidationError) -> list[dict]:
    """Pydantic's errors as {"field", "message"}, one per field (the first message wins)."""
    found: dict[str, str] = {}
    for item in error.errors(include_url=False, include_input=False):
        # Unions add the member's tag to the location (`str`, `constrained-int`, ...): drop it.
        location = tuple(p for p in item["loc"] if not _union_tag(p))
        found.setdefault(field_name(location), item["msg"].removeprefix("Value error, "))
    return [{"field": name, "message": message} for name, message in found.items()]


def validate(model: type[Model], payload: Any, *, what: str = "The body") -> Model:
    """`payload` as `model`; InvalidFields naming each bad field otherwise."""
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        errors = field_errors(error)
        first = errors[0]
        raise InvalidFields(f"{what} is not valid: {first['field']} {first['message'].lower()}.",
                            errors[:200]) from None


def problems(model: type[BaseModel], payload: Any) -> list[dict]:
    """The field errors `validate` would raise, or [] (to merge with a domain parser's own)."""
    try:
        model.model_validate(payload)
    except ValidationError as error:
        return field_errors(error)
    return []
