"""Request validation shared by the metrics RPCs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from northstar_metrics.domain.time import DAY_FORMAT, iso_day
from northstar_runtime.errors import FieldViolation, InvalidArgument

MAX_RANGE_DAYS = 3660


def invalid(field: str, description: str, reason: str) -> InvalidArgument:
    """INVALID_ARGUMENT naming one field and what is wrong with it."""
    return InvalidArgument(
        f"{field} {description}", reason=reason, violations=[FieldViolation(field, description)]
    )


def rejected(violations: Sequence[FieldViolation], reason: str) -> InvalidArgument:
    """INVALID_ARGUMENT naming every field found wrong."""
    return InvalidArgument(
        "; ".join(f"{v.field} {v.description}" for v in violations),
        reason=reason,
        violations=violations,
    )


def date_range(
    from_date: str, to_date: str, *, max_days: int = MAX_RANGE_DAYS
) -> tuple[date, date]:
    """Parse an inclusive ISO date range or raise INVALID_ARGUMENT naming the fields."""
    violations: list[FieldViolation] = []
    parsed: dict[str, date] = {}
    for name, text in (("from_date", from_date), ("to_date", to_date)):
        try:
            parsed[name] = iso_day(text)
        except ValueError:
            violations.append(FieldViolation(name, f"must be {DAY_FORMAT}, got {text!r}"))
    if not violations:
        first, last = parsed["from_date"], parsed["to_date"]
        if first > last:
            violations.append(FieldViolation("to_date", "must not be before from_date"))
        elif (last - first).days + 1 > max_days:
            violations.append(FieldViolation("to_date", f"the range is at most {max_days} days"))
    if violations:
        raise rejected(violations, "INVALID_DATE_RANGE")
    return parsed["from_date"], parsed["to_date"]
