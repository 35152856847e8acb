"""The user's tasks as records (what an export writes), and the user's defaults an import completes records with."""

from __future__ import annotations

from typing import Final

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from mcp_todo.db.models import UserSetting, table_of
from mcp_todo.porting.records import Parsed, Record, Series
from mcp_todo.settings import Settings

_user_settings = table_of(UserSetting)

_EXPORT: Final = text(
    "SELECT t.*, c.name AS category_name, c.color AS category_color, p.uid AS parent_uid, g.tag_names, g.tag_colors, "
    "dep.depends_on FROM tasks t "
    "LEFT JOIN categories c ON c.id = t.category_id AND c.user_id = t.user_id "
    "LEFT JOIN tasks p ON p.id = t.parent_id AND p.user_id = t.user_id AND p.deleted_at IS NULL "
    "LEFT JOIN LATERAL (SELECT array_agg(tg.name ORDER BY lower(tg.name), tg.id) AS tag_names, "
    "array_agg(tg.color ORDER BY lower(tg.name), tg.id) AS tag_colors "
    "FROM task_tags tt JOIN tags tg ON tg.id = tt.tag_id WHERE tt.task_id = t.id AND tt.user_id = t.user_id) g "
    "ON true LEFT JOIN LATERAL (SELECT array_agg(b.uid ORDER BY b.id) AS depends_on FROM task_dependencies d "
    "JOIN tasks b ON b.user_id = d.user_id AND b.id = d.blocker_id AND b.deleted_at IS NULL "
    "WHERE d.user_id = t.user_id AND d.task_id = t.id) dep ON true "
    "WHERE t.user_id = :user_id AND t.deleted_at IS NULL ORDER BY t.id"
)


async def export_records(conn: AsyncConnection, user_id: str) -> Parsed:
    """The user's tasks outside the trash, in id order (parents before their subtasks: a parent is older), with
    the colours of the labels they carry."""
    out = Parsed()
    for row in (await conn.execute(_EXPORT, {"user_id": user_id})).mappings():
        zone = row["time_zone"]
        series = None
        if row["series_id"] is not None and row["series_start"] is not None:
            series = Series(key=str(row["series_id"]), start=row["series_start"], start_wall=row["series_start_wall"])
        tags = list(row["tag_names"] or [])
        out.records.append(
            Record(
                uid=row["uid"],
                title=row["title"],
                where=f"task {row['id']}",
                description=row["description"],
                status=row["status"],
                priority=row["priority"],
                due=row["due_date"],
                due_wall=None,
                time_zone=zone,
                category=row["category_name"],
                tags=tags,
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
        )
        if row["category_name"] is not None:
            out.category_colors[row["category_name"]] = row["category_color"]
        out.tag_colors.update(zip(tags, row["tag_colors"] or [], strict=True))
    return out


async def user_defaults(conn: AsyncConnection, settings: Settings, user_id: str) -> tuple[str, int]:
    """The user's zone and reminder lead: their own (`mcp-todo user set`), else the server's."""
    c = _user_settings.c
    row = (await conn.execute(select(c.time_zone, c.reminder_lead_minutes).where(c.user_id == user_id))).one_or_none()
    zone = row.time_zone if row is not None and row.time_zone else settings.timezone
    lead = row.reminder_lead_minutes if row is not None and row.reminder_lead_minutes is not None else None
    return zone, settings.reminder_lead_minutes if lead is None else lead


# Users have no table of their own: a user is whoever owns a task, a label, settings or a token.
_OWNERS: Final = ("tasks", "categories", "tags", "user_settings", "api_tokens")
_KNOWN_USERS: Final = text(" UNION ".join(f"SELECT user_id FROM {table}" for table in _OWNERS) + " ORDER BY 1")
_USER_KNOWN: Final = text(
    "SELECT " + " OR ".join(f"EXISTS (SELECT 1 FROM {table} WHERE user_id = :user_id)" for table in _OWNERS)
)


async def known_users(conn: AsyncConnection) -> list[str]:
    rows = (await conn.execute(_KNOWN_USERS)).all()
    return [str(row[0]) for row in rows]


async def user_known(conn: AsyncConnection, user_id: str) -> bool:
    return bool(await conn.scalar(_USER_KNOWN, {"user_id": user_id}))
