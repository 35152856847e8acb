"""The user's tasks as records (what an export writes), and the user's defaults an import completes records with."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from mcp_todo.db import porting as porting_db
from mcp_todo.db.users import get_user_setting
from mcp_todo.porting.records import Parsed, Record, Series
from mcp_todo.settings import Settings


def record_of_row(row: Any) -> Record:
    """A stored task as the export describes it (and the CalDAV server renders it): a mapping of the task's columns
    with `category_name`, `parent_uid`, `tag_names` and `depends_on` (the uids of its blockers)."""
    series = None
    if row["series_id"] is not None and row["series_start"] is not None:
        series = Series(key=str(row["series_id"]), start=row["series_start"], start_wall=row["series_start_wall"])
    return Record(
        uid=row["uid"],
        title=row["title"],
        where=f"task {row['id']}",
        description=row["description"],
        status=row["status"],
        priority=row["priority"],
        due=row["due_date"],
        time_zone=row["time_zone"],
        category=row["category_name"],
        tags=list(row["tag_names"] or []),
        rule=row["recurrence_rule"],
        recurrence_from=row["recurrence_from"],
        series=series,
        lead=row["remind_before_minutes"],
        remind_at=row["remind_at"],
        reminder_given=True,
        reminder_sent=row["reminder_sent"],
        completed_at=row["completed_at"],
        created_at=row["created_at"],
        parent_uid=row["parent_uid"],
        depends_on=list(row["depends_on"] or ()),
    )


async def export_records(conn: AsyncConnection, user_id: str) -> Parsed:
    """The user's tasks outside the trash, in id order (parents before their subtasks: a parent is older), with
    the colours of the labels they carry."""
    out = Parsed()
    for row in await porting_db.export_rows(conn, user_id):
        out.records.append(record_of_row(row))
        if row["category_name"] is not None:
            out.category_colors[row["category_name"]] = row["category_color"]
        out.tag_colors.update(zip(list(row["tag_names"] or []), row["tag_colors"] or [], strict=True))
    return out


async def user_defaults(conn: AsyncConnection, settings: Settings, user_id: str) -> tuple[str, int]:
    """The user's zone and reminder lead: their own (`mcp-todo user set`), else the server's."""
    row = await get_user_setting(conn, user_id)
    zone = row.time_zone if row is not None and row.time_zone else settings.timezone
    lead = row.reminder_lead_minutes if row is not None and row.reminder_lead_minutes is not None else None
    return zone, settings.reminder_lead_minutes if lead is None else lead
