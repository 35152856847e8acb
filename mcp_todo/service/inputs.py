"""Checks on arguments the service receives. The tools' schemas bound them already; these keep the service safe
when it is called directly (workers, tests) and catch what a JSON schema cannot (NUL bytes, lone surrogates)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Final, get_args

from mcp_todo.domain.errors import ValidationError
from mcp_todo.domain.phrases import read_phrase
from mcp_todo.domain.rrule_phrases import rule_from_words
from mcp_todo.domain.times import parse_user_time, resolve_zone
from mcp_todo.schemas import Priority

TITLE_MAX: Final = 200
DESCRIPTION_MAX: Final = 10_000
CATEGORY_NAME_MAX: Final = 50
TAG_NAME_MAX: Final = 30
QUERY_MAX: Final = 500
MAX_ID: Final = 2**63 - 1
PRIORITIES: Final = frozenset(get_args(Priority))

_COLOR = re.compile(r"#[0-9A-Fa-f]{6}")


def storable_text(value: str, field: str) -> str:
    """`value` unchanged, if PostgreSQL can store it (no NUL, no lone surrogate)."""
    if "\x00" in value:
        raise ValidationError(f"{field} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"{field} must be valid Unicode text (it contains a lone surrogate)") from None
    return value


def name_text(value: str, field: str, max_len: int) -> str:
    """A required one-line text (title, name): trimmed, 1..max_len characters."""
    value = storable_text(value, field).strip()
    if not value:
        raise ValidationError(f"{field} must not be empty")
    if len(value) > max_len:
        raise ValidationError(f"{field} must be at most {max_len} characters (got {len(value)})")
    return value


def description_text(value: str | None) -> str | None:
    """An optional free text; empty means none."""
    if value is None or value == "":
        return None
    value = storable_text(value, "description")
    if len(value) > DESCRIPTION_MAX:
        raise ValidationError(f"description must be at most {DESCRIPTION_MAX} characters (got {len(value)})")
    return value


def priority_value(value: str) -> str:
    if value not in PRIORITIES:
        raise ValidationError(f"priority must be one of low, medium, high, urgent (got {value[:20]!r})")
    return value


def color_value(value: str | None) -> str | None:
    if value is None:
        return None
    if not _COLOR.fullmatch(value):
        raise ValidationError(f"color must be #RRGGBB, e.g. #1E90FF (got {value[:20]!r})")
    return value


def entity_id(value: int, kind: str) -> int:
    """An id as the database can hold it (a positive bigint)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        lister = {"task": "list_tasks", "category": "list_categories", "tag": "list_tags"}.get(kind, "the list tools")
        raise ValidationError(f"{kind}_id must be a whole number from 1 to {MAX_ID} — {lister} shows the ids")
    return value


def distinct_ids(values: list[int], kind: str) -> list[int]:
    return list(dict.fromkeys(entity_id(v, kind) for v in values))


# An ISO 8601 argument starts with a 4-digit year; anything else is read as a phrase.
_ISO_START = re.compile(r"\s*[0-9]{4}-")


def is_phrase(value: str) -> bool:
    """Whether a time argument is words (read by the phrase reader), not ISO 8601."""
    return not _ISO_START.match(value)


def time_words(value: str, *, now: datetime, time_zone: str, field: str) -> tuple[str, datetime]:
    """A time argument in ISO 8601 or in words, as the ISO text the service reads and the instant it stands for (in
    the user's zone, for saying how it was understood)."""
    zone = resolve_zone(time_zone)
    if not is_phrase(value):
        return value, parse_user_time(value, zone, field=field)
    read = read_phrase(value, now, zone, field=field)
    return read.argument(), read.moment(zone)


def rule_words(value: str) -> str:
    """A recurrence rule as RRULE, or in words ("every weekday") turned into one."""
    return rule_from_words(value)
