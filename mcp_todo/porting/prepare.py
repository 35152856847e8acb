"""A record checked and completed the way `add_task` would store it (pure: `now`, the zone and the lead are
arguments): the title and texts bounded, the zone known, the rule validated in that zone, the series anchored, the
reminder computed from the due date and lead. What cannot be kept is dropped with a note, so the task still lands."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, time
from zoneinfo import ZoneInfo

from mcp_todo.domain.errors import InvalidRecurrenceRuleError, TodoError, ValidationError
from mcp_todo.domain.reminder_times import MAX_LEAD_MINUTES, remind_at_for
from mcp_todo.domain.times import MAX_YEAR, MIN_YEAR, localize, resolve_zone
from mcp_todo.porting.records import Record
from mcp_todo.service.hierarchy import RECURRENCE_FROM, validated_rule
from mcp_todo.service.inputs import (
    CATEGORY_NAME_MAX,
    DESCRIPTION_MAX,
    PRIORITIES,
    TAG_NAME_MAX,
    TITLE_MAX,
    storable_text,
)
from mcp_todo.service.tags import MAX_TAGS_PER_TASK


@dataclass
class Prepared:
    """The columns of one task to write, except ids (category, tags, parent and series are resolved by `store`)."""

    uid: str
    title: str
    description: str | None
    status: str
    priority: str
    due: datetime | None
    time_zone: str
    category: str | None
    tags: list[str]
    rule: str | None
    recurrence_from: str
    series_key: str | None
    series_start: datetime | None
    series_start_wall: datetime | None
    lead: int | None
    remind_at: datetime | None
    reminder_sent: bool
    completed_at: datetime | None
    created_at: datetime
    parent_uid: str | None
    lost: list[str] = field(default_factory=list)


# Control characters other than line breaks and tabs cannot be stored (NUL) or only confuse a reader.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _clean(value: str, what: str) -> str:
    return storable_text(_CONTROL.sub("", value).encode("utf-8", "replace").decode("utf-8"), what)


def _aware(dt: datetime | None, zone: ZoneInfo) -> datetime | None:
    """`dt` in `zone`; a naive (floating) time is read as wall time there."""
    if dt is None:
        return None
    return localize(dt, zone) if dt.tzinfo is None else dt.astimezone(zone)


def _in_range(dt: datetime | None) -> bool:
    return dt is None or MIN_YEAR <= dt.year <= MAX_YEAR


def prepare(
    record: Record, *, user_zone: str, default_lead: int, now: datetime, all_day_at: time | None = None
) -> Prepared:
    """The record as it will be stored; ValidationError when it cannot be imported at all (no title, say). A task
    due on a date without a time is reminded of at `all_day_at` (`remind_at_for`)."""
    try:
        return _prepare(record, user_zone=user_zone, default_lead=default_lead, now=now, all_day_at=all_day_at)
    except OverflowError:
        # A time inside the years a task takes can still leave them in another zone (9998-12-31 23:00 -12:00).
        raise ValidationError(f"a time in it is outside the years {MIN_YEAR}–{MAX_YEAR}") from None


def _prepare(record: Record, *, user_zone: str, default_lead: int, now: datetime, all_day_at: time | None) -> Prepared:
    lost = list(record.lost)
    uid = _clean(record.uid, "uid").strip()
    if not uid or len(uid) > 255:
        raise ValidationError("its UID is empty or longer than 255 characters")
    title = " ".join(_clean(record.title, "title").split())
    if not title:
        raise ValidationError("it has no title (SUMMARY / description / CONTENT is empty)")
    if len(title) > TITLE_MAX:
        lost.append(f"title cut to {TITLE_MAX} characters")
        title = title[: TITLE_MAX - 1] + "…"
    description = _clean(record.description, "description").strip() if record.description else None
    if description and len(description) > DESCRIPTION_MAX:
        lost.append(f"description cut to {DESCRIPTION_MAX} characters")
        description = description[: DESCRIPTION_MAX - 1] + "…"
    priority = record.priority if record.priority in PRIORITIES else "medium"

    zone_name = user_zone
    if record.time_zone is not None:
        try:
            resolve_zone(record.time_zone)
            zone_name = record.time_zone
        except ValidationError:
            lost.append(f"time zone {record.time_zone[:64]!r} is not an IANA zone: kept the instant, in {user_zone}")
    zone = resolve_zone(zone_name)
    for name, value in (("due date", record.due), ("completion time", record.completed_at)):
        if not _in_range(value):
            raise ValidationError(f"its {name} is outside the years {MIN_YEAR}–{MAX_YEAR}")
    due = _aware(record.due, zone)
    due_wall = record.due_wall if (record.time_zone or user_zone) == zone_name else None
    if record.due is not None and record.due.tzinfo is None:
        due_wall = record.due  # a floating time: the wall time asked for, in the user's zone
    record.completed_at = _aware(record.completed_at, zone)
    # A creation or reminder time outside the years is not worth failing the task for: now, and no reminder.
    if not _in_range(record.created_at):
        lost.append(f"creation time outside the years {MIN_YEAR}–{MAX_YEAR}: created now")
        record.created_at = None
    record.created_at = _aware(record.created_at, zone)
    if not _in_range(record.remind_at):
        lost.append("reminder outside the supported years dropped")
        record.remind_at, record.lead, record.reminder_given = None, None, True
    record.remind_at = _aware(record.remind_at, zone)

    recurrence_from = record.recurrence_from if record.recurrence_from in RECURRENCE_FROM else "schedule"
    rule, series_key, series_start, series_wall = _schedule(record, recurrence_from, due, due_wall, zone_name, lost)

    lead, remind_at = _reminder(record, due, default_lead, lost, (zone_name, all_day_at))
    if not _in_range(remind_at):
        lost.append("reminder outside the supported years dropped")
        lead, remind_at = None, None
    sent = record.reminder_sent if record.reminder_sent is not None else remind_at is not None and remind_at <= now

    status = "completed" if record.status == "completed" else "pending"
    completed_at = (record.completed_at or now) if status == "completed" else None
    created_at = record.created_at if record.created_at is not None and _in_range(record.created_at) else now
    return Prepared(
        uid=uid,
        title=title,
        description=description or None,
        status=status,
        priority=priority,
        due=due,
        time_zone=zone_name,
        category=_label(record.category, CATEGORY_NAME_MAX, "category", lost) if record.category else None,
        tags=_tags(record.tags, lost),
        rule=rule,
        recurrence_from=recurrence_from if rule is not None else "schedule",
        series_key=series_key,
        series_start=series_start,
        series_start_wall=series_wall,
        lead=lead,
        remind_at=remind_at,
        reminder_sent=bool(sent),
        completed_at=completed_at,
        created_at=created_at,
        parent_uid=record.parent_uid.strip() if record.parent_uid and record.parent_uid.strip() else None,
        lost=lost,
    )


def _schedule(
    record: Record,
    recurrence_from: str,
    due: datetime | None,
    due_wall: datetime | None,
    zone_name: str,
    lost: list[str],
) -> tuple[str | None, str | None, datetime | None, datetime | None]:
    """(rule, series key, series start, its wall time) as `add_task` anchors them, the rule checked for its mode
    by the tools' own `validated_rule` (after completion: FREQ and INTERVAL, with COUNT or UNTIL, and nothing else);
    a rule that cannot be kept is dropped with a note (INVALID_RECURRENCE_RULE's message)."""
    if record.rule is None:
        return None, None, None, None
    if due is None:
        lost.append(f"repeat rule {record.rule[:80]!r} dropped: a recurring task needs a due date")
        return None, None, None, None
    zone = resolve_zone(zone_name)
    start, start_wall, key = due, due_wall, None
    series_start = (
        _aware(record.series.start, zone) if record.series is not None and _in_range(record.series.start) else None
    )
    if record.series is not None and series_start is not None and series_start <= due:
        start, start_wall, key = series_start, record.series.start_wall, record.series.key
    try:
        rule = validated_rule(record.rule, start, zone, recurrence_from)
    except InvalidRecurrenceRuleError as exc:
        mode = " (repeating after completion)" if recurrence_from == "completion" else ""
        lost.append(f"repeat rule {record.rule[:80]!r}{mode} dropped: {exc.message.split(' — ')[0]}")
        return None, None, None, None
    if start_wall is None:
        start_wall = start.astimezone(zone).replace(tzinfo=None)
    return rule, key, start, start_wall


def _reminder(
    record: Record, due: datetime | None, default_lead: int, lost: list[str], all_day: tuple[str, time | None]
) -> tuple[int | None, datetime | None]:
    zone, all_day_at = all_day
    if not record.reminder_given:
        if due is None:
            return None, None
        return default_lead, remind_at_for(due, default_lead, zone=zone, all_day_at=all_day_at)
    if record.lead is not None:
        if not 0 <= record.lead <= MAX_LEAD_MINUTES:
            lost.append(f"reminder {record.lead} minutes before the due date dropped (0 to {MAX_LEAD_MINUTES})")
            return None, None
        if due is None:
            lost.append("reminder relative to a due date dropped: the task has no due date")
            return None, None
        return record.lead, remind_at_for(due, record.lead, zone=zone, all_day_at=all_day_at)
    return None, record.remind_at


def _label(name: str, limit: int, what: str, lost: list[str]) -> str | None:
    try:
        cleaned = " ".join(_clean(name, what).split())
    except TodoError:
        cleaned = ""
    if not cleaned:
        return None
    if len(cleaned) > limit:
        lost.append(f"{what} {cleaned[:limit]!r}… cut to {limit} characters")
        cleaned = cleaned[:limit].rstrip()
    return cleaned


def _tags(names: list[str], lost: list[str]) -> list[str]:
    kept: dict[str, str] = {}
    dropped: dict[str, str] = {}
    seen: set[str] = set()
    for name in names:
        if name in seen:
            continue
        seen.add(name)
        if len(kept) < MAX_TAGS_PER_TASK:
            cleaned = _label(name, TAG_NAME_MAX, "tag", lost)
            if cleaned is not None:
                kept.setdefault(cleaned.lower(), cleaned)
        else:
            # Past the tenth, a name is only counted (a record may list thousands: cleaning each costs time).
            cleaned = " ".join(name.split())[:TAG_NAME_MAX]
            if cleaned and cleaned.lower() not in kept:
                dropped.setdefault(cleaned.lower(), cleaned)
    if dropped:
        shown = ", ".join(list(dropped.values())[:20]) + (f" and {len(dropped) - 20} more" if len(dropped) > 20 else "")
        lost.append(f"tags past the first {MAX_TAGS_PER_TASK} dropped: {shown}")
    return list(kept.values())
