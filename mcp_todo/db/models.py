"""The tables, as SQLModel classes: the one Python definition of the schema, shared by the server and the workers.

The migrations build the database (never `create_all`), `sql/schema.sql` is the reviewed DDL, and
tests/integration/test_schema.py checks all three against each other: schema.sql against the migrations through the
catalogs, these classes against a migrated database through alembic's metadata comparison. So the indexes,
constraints and server defaults are spelled here exactly as the migrations create them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Computed,
    DateTime,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR, UUID
from sqlmodel import Field, SQLModel

metadata: MetaData = SQLModel.metadata

_NOW = text("now()")
# The expressions PostgreSQL stores for the generated columns (as pg_get_expr shows them), so a comparison with a
# migrated database sees the same text.
PRIORITY_RANK = "CASE priority WHEN 'urgent' THEN 4 WHEN 'high' THEN 3 WHEN 'medium' THEN 2 ELSE 1 END"
SEARCH_VECTOR = (
    "setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A') "
    "|| setweight(to_tsvector('english'::regconfig, coalesce(description, '')), 'B')"
)


def _tz(*, nullable: bool = True, now: bool = False) -> Any:
    return Column(DateTime(timezone=True), nullable=nullable, server_default=_NOW if now else None)


def _id(*, always: bool = False) -> Any:
    """The id of a per-user table: the second column of its primary key (user_id, id)."""
    return Column(BigInteger, Identity(always=always), primary_key=True)


def _user_key() -> Any:
    """user_id, leading the primary key of a per-user table (the column a distributed database shards on)."""
    return Column(Text, primary_key=True)


class Category(SQLModel, table=True):
    __tablename__ = "categories"
    __table_args__ = (
        PrimaryKeyConstraint("user_id", "id", name="categories_pkey"),
        Index("uq_categories_user_name", "user_id", text("lower(name)"), unique=True),
    )

    id: int | None = Field(default=None, sa_column=_id())
    user_id: str = Field(sa_column=_user_key())
    name: str = Field(sa_column=Column(String(50), nullable=False))
    color: str | None = Field(default=None, sa_column=Column(String(7)))
    created_at: datetime | None = Field(default=None, sa_column=_tz(nullable=False, now=True))


class Tag(SQLModel, table=True):
    __tablename__ = "tags"
    __table_args__ = (
        PrimaryKeyConstraint("user_id", "id", name="tags_pkey"),
        Index("uq_tags_user_name", "user_id", text("lower(name)"), unique=True),
    )

    id: int | None = Field(default=None, sa_column=_id())
    user_id: str = Field(sa_column=_user_key())
    name: str = Field(sa_column=Column(String(30), nullable=False))
    color: str | None = Field(default=None, sa_column=Column(String(7)))
    created_at: datetime | None = Field(default=None, sa_column=_tz(nullable=False, now=True))


class Task(SQLModel, table=True):
    __tablename__ = "tasks"
    __table_args__ = (
        PrimaryKeyConstraint("user_id", "id", name="tasks_pkey"),
        CheckConstraint("status IN ('pending', 'completed')", name="ck_tasks_status"),
        CheckConstraint("priority IN ('low', 'medium', 'high', 'urgent')", name="ck_tasks_priority"),
        CheckConstraint("char_length(title) BETWEEN 1 AND 200", name="ck_tasks_title_length"),
        CheckConstraint("char_length(description) <= 10000", name="ck_tasks_description_length"),
        CheckConstraint("recurrence_rule IS NULL OR due_date IS NOT NULL", name="ck_tasks_recurrence_needs_due"),
        CheckConstraint("remind_before_minutes BETWEEN 0 AND 525600", name="ck_tasks_lead"),
        Index("ix_tasks_user_created", "user_id", text("created_at DESC"), text("id DESC")),
        Index("ix_tasks_user_status_due", "user_id", "status", "due_date"),
        Index("ix_tasks_user_category", "user_id", "category_id"),
        Index("ix_tasks_search", "user_id", "search_vector", postgresql_using="gin"),
        Index(
            "uq_tasks_series_due",
            "user_id",
            "series_id",
            "due_date",
            unique=True,
            postgresql_where=text("series_id IS NOT NULL"),
        ),
        Index(
            "uq_tasks_previous",
            "user_id",
            "previous_task_id",
            unique=True,
            postgresql_where=text("previous_task_id IS NOT NULL"),
        ),
        # Cross-user by design: the reminder scheduler looks for the earliest unsent reminder of any user.
        Index("ix_tasks_reminder_due", "remind_at", postgresql_where=text("status = 'pending' AND NOT reminder_sent")),
        CheckConstraint("recurrence_from IN ('schedule', 'completion')", name="ck_tasks_recurrence_from"),
        CheckConstraint("parent_id IS NULL OR parent_id <> id", name="ck_tasks_not_own_parent"),
        Index("ix_tasks_parent", "parent_id", postgresql_where=text("parent_id IS NOT NULL")),
        Index("ix_tasks_trash", "deleted_at", postgresql_where=text("deleted_at IS NOT NULL")),
        Index("uq_tasks_user_uid", "user_id", "uid", unique=True),
        Index("ix_tasks_user_change", "user_id", "change_xid"),
        # NO ACTION: SET NULL would null user_id too; deleting a category uncategorises its tasks first.
        ForeignKeyConstraint(
            ["user_id", "category_id"], ["categories.user_id", "categories.id"], name="fk_tasks_category"
        ),
        ForeignKeyConstraint(
            ["user_id", "parent_id"], ["tasks.user_id", "tasks.id"], name="fk_tasks_parent", ondelete="CASCADE"
        ),
    )

    id: int | None = Field(default=None, sa_column=_id())
    user_id: str = Field(sa_column=_user_key())
    title: str = Field(sa_column=Column(String(200), nullable=False))
    description: str | None = Field(default=None, sa_column=Column(Text))
    status: str = Field(
        default="pending", sa_column=Column(String(10), nullable=False, server_default=text("'pending'"))
    )
    priority: str = Field(
        default="medium", sa_column=Column(String(10), nullable=False, server_default=text("'medium'"))
    )
    due_date: datetime | None = Field(default=None, sa_column=_tz())
    time_zone: str = Field(sa_column=Column(Text, nullable=False))
    category_id: int | None = Field(default=None, sa_column=Column(BigInteger))
    recurrence_rule: str | None = Field(default=None, sa_column=Column(Text))
    # The series: the id of its anchor occurrence, and the anchor's due date (RFC 5545 DTSTART).
    series_id: int | None = Field(default=None, sa_column=Column(BigInteger))
    series_start: datetime | None = Field(default=None, sa_column=_tz())
    # The anchor's due date as the naive wall time asked for, in the task's zone (a time a DST gap skips, e.g.).
    series_start_wall: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=False)))
    # The occurrence this one was created from; unique, so one completion makes at most one successor.
    previous_task_id: int | None = Field(default=None, sa_column=Column(BigInteger))
    remind_before_minutes: int | None = Field(default=None, sa_column=Column(Integer))
    remind_at: datetime | None = Field(default=None, sa_column=_tz())
    reminder_sent: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=text("false")))
    completed_at: datetime | None = Field(default=None, sa_column=_tz())
    created_at: datetime | None = Field(default=None, sa_column=_tz(nullable=False, now=True))
    updated_at: datetime | None = Field(default=None, sa_column=_tz(nullable=False, now=True))
    # Generated by PostgreSQL (STORED, so they can be indexed); never written by the application.
    priority_rank: int | None = Field(
        default=None, sa_column=Column(SmallInteger, Computed(PRIORITY_RANK, persisted=True))
    )
    search_vector: str | None = Field(default=None, sa_column=Column(TSVECTOR, Computed(SEARCH_VECTOR, persisted=True)))
    # A subtask's parent (same user, checked by the service); deleting a parent deletes its subtasks.
    parent_id: int | None = Field(default=None, sa_column=Column(BigInteger))
    # "schedule": the rule's dates; "completion": a fixed interval after each completion.
    recurrence_from: str = Field(
        default="schedule", sa_column=Column(String(10), nullable=False, server_default=text("'schedule'"))
    )
    deleted_at: datetime | None = Field(default=None, sa_column=_tz())  # in the trash since
    uid: str | None = Field(
        default=None, sa_column=Column(Text, nullable=False, server_default=text("(gen_random_uuid())::text"))
    )
    # The id of the last transaction that wrote the row, set by a trigger (CalDAV sync tokens and ETags).
    change_xid: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default=text("0")))


class TaskTag(SQLModel, table=True):
    __tablename__ = "task_tags"
    __table_args__ = (
        PrimaryKeyConstraint("user_id", "task_id", "tag_id", name="task_tags_pkey"),
        ForeignKeyConstraint(
            ["user_id", "task_id"], ["tasks.user_id", "tasks.id"], name="fk_task_tags_task", ondelete="CASCADE"
        ),
        ForeignKeyConstraint(
            ["user_id", "tag_id"], ["tags.user_id", "tags.id"], name="fk_task_tags_tag", ondelete="CASCADE"
        ),
        Index("ix_task_tags_user_tag", "user_id", "tag_id"),
    )

    user_id: str = Field(sa_column=_user_key())
    task_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    tag_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))


class TaskDependency(SQLModel, table=True):
    """An edge "task_id waits on blocker_id", both tasks of one user (`mcp_todo.db.dependencies`)."""

    __tablename__ = "task_dependencies"
    __table_args__ = (
        ForeignKeyConstraint(
            ["user_id", "task_id"], ["tasks.user_id", "tasks.id"], name="fk_task_dependencies_task", ondelete="CASCADE"
        ),
        ForeignKeyConstraint(
            ["user_id", "blocker_id"],
            ["tasks.user_id", "tasks.id"],
            name="fk_task_dependencies_blocker",
            ondelete="CASCADE",
        ),
        CheckConstraint("task_id <> blocker_id", name="ck_task_dependencies_not_self"),
        Index("ix_task_dependencies_blocker", "user_id", "blocker_id"),
    )

    user_id: str = Field(sa_column=Column(Text, primary_key=True))
    task_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    blocker_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    created_at: datetime | None = Field(default=None, sa_column=_tz(nullable=False, now=True))


class OutboxRow(SQLModel, table=True):
    """One event, written in the transaction of the change it describes (the transactional outbox)."""

    __tablename__ = "outbox"
    __table_args__ = (
        PrimaryKeyConstraint("user_id", "id", name="outbox_pkey"),
        UniqueConstraint("user_id", "event_id", name="outbox_event_id_key"),
        # Cross-user by design: the relay reads the unpublished rows of every user in commit order.
        Index("ix_outbox_pending", "id", postgresql_where=text("published_at IS NULL AND parked_at IS NULL")),
        Index("ix_outbox_published", "published_at", postgresql_where=text("published_at IS NOT NULL")),
        # Cross-user by design: local mode's live feed reads the rows newer than an id.
        Index("ix_outbox_id", "id"),
    )

    id: int | None = Field(default=None, sa_column=_id(always=True))
    event_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    event_type: str = Field(sa_column=Column(Text, nullable=False))
    topics: list[str] = Field(sa_column=Column(ARRAY(Text), nullable=False))
    message_key: str = Field(sa_column=Column(Text, nullable=False))
    task_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    user_id: str = Field(sa_column=_user_key())
    payload: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    created_at: datetime | None = Field(default=None, sa_column=_tz(nullable=False, now=True))
    published_at: datetime | None = Field(default=None, sa_column=_tz())
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default=text("0")))
    parked_at: datetime | None = Field(default=None, sa_column=_tz())
    last_error: str | None = Field(default=None, sa_column=Column(Text))


class Notification(SQLModel, table=True):
    """The user's inbox: one row per delivered reminder."""

    __tablename__ = "notifications"
    __table_args__ = (
        PrimaryKeyConstraint("user_id", "id", name="notifications_pkey"),
        UniqueConstraint("user_id", "task_id", "remind_at", name="uq_notifications_task_remind"),
        Index("ix_notifications_user_created", "user_id", text("created_at DESC")),
    )

    id: int | None = Field(default=None, sa_column=_id())
    user_id: str = Field(sa_column=_user_key())
    task_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    remind_at: datetime = Field(sa_column=_tz(nullable=False))
    title: str = Field(sa_column=Column(Text, nullable=False))
    due_date: datetime | None = Field(default=None, sa_column=_tz())
    message: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime | None = Field(default=None, sa_column=_tz(nullable=False, now=True))
    delivered_at: datetime | None = Field(default=None, sa_column=_tz())


class ApiToken(SQLModel, table=True):
    """A bearer token for the HTTP transports; only a SHA-256 of its secret is stored."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        UniqueConstraint("secret_sha256", name="uq_api_tokens_secret"),
        Index("ix_api_tokens_user", "user_id", "id"),
    )

    id: int | None = Field(default=None, sa_column=_id())
    user_id: str = Field(sa_column=Column(Text, nullable=False))
    secret_sha256: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime | None = Field(default=None, sa_column=_tz(nullable=False, now=True))
    expires_at: datetime | None = Field(default=None, sa_column=_tz())
    revoked_at: datetime | None = Field(default=None, sa_column=_tz())
    last_used_at: datetime | None = Field(default=None, sa_column=_tz())


class UserSetting(SQLModel, table=True):
    """A user's own zone and reminder lead (`mcp-todo user set`); null or no row = the server's default."""

    __tablename__ = "user_settings"
    __table_args__ = (CheckConstraint("reminder_lead_minutes BETWEEN 0 AND 525600", name="ck_user_settings_lead"),)

    user_id: str = Field(sa_column=Column(Text, primary_key=True))
    time_zone: str | None = Field(default=None, sa_column=Column(Text))
    reminder_lead_minutes: int | None = Field(default=None, sa_column=Column(Integer))
    updated_at: datetime | None = Field(default=None, sa_column=_tz(nullable=False, now=True))


class DavTombstone(SQLModel, table=True):
    """A task that left a CalDAV collection (deleted for good, moved, its uid changed), written by a trigger."""

    __tablename__ = "dav_tombstones"
    __table_args__ = (
        Index("ix_dav_tombstones_user_change", "user_id", "change_xid"),
        Index("ix_dav_tombstones_made", "made_at"),
    )

    user_id: str = Field(sa_column=Column(Text, primary_key=True))
    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True))
    uid: str = Field(sa_column=Column(Text, nullable=False))
    href: str = Field(sa_column=Column(Text, nullable=False))
    category_id: int | None = Field(default=None, sa_column=Column(BigInteger))
    change_xid: int = Field(sa_column=Column(BigInteger, nullable=False))
    made_at: datetime | None = Field(default=None, sa_column=_tz(nullable=False, now=True))


class DavSyncHorizon(SQLModel, table=True):
    """Per user, the stamp of the newest tombstone pruned: a sync token that does not see it is refused."""

    __tablename__ = "dav_sync_horizons"

    user_id: str = Field(sa_column=Column(Text, primary_key=True))
    pruned_xid: int = Field(sa_column=Column(BigInteger, nullable=False))


class DavCollectionName(SQLModel, table=True):
    """The path segment a CalDAV client gave a collection it created (MKCALENDAR)."""

    __tablename__ = "dav_collection_names"
    __table_args__ = (
        ForeignKeyConstraint(
            ["user_id", "category_id"],
            ["categories.user_id", "categories.id"],
            name="fk_dav_collection_names_category",
            ondelete="CASCADE",
        ),
        Index("ix_dav_collection_names_category", "category_id"),
    )

    user_id: str = Field(sa_column=Column(Text, primary_key=True))
    segment: str = Field(sa_column=Column(Text, primary_key=True))
    category_id: int = Field(sa_column=Column(BigInteger, nullable=False))


class DavTaskProperties(SQLModel, table=True):
    """What a CalDAV client wrote that mcp-todo does not model, verbatim, and the name it PUT the task under."""

    __tablename__ = "dav_task_properties"
    __table_args__ = (
        Index("uq_dav_task_properties_href", "user_id", "href", unique=True),
        Index("ix_dav_task_properties_task", "task_id"),
        ForeignKeyConstraint(
            ["user_id", "task_id"],
            ["tasks.user_id", "tasks.id"],
            name="fk_dav_task_properties_task",
            ondelete="CASCADE",
        ),
    )

    user_id: str = Field(sa_column=Column(Text, primary_key=True))
    task_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    href: str | None = Field(default=None, sa_column=Column(Text))
    kept: str | None = Field(default=None, sa_column=Column(Text))


def table_of(model: type[SQLModel]) -> Table:
    """The Core table of a model class, for `select(...)`/`insert(...)` over its columns."""
    # SQLModel sets `__table__` when it creates a table class; its type hints do not declare it.
    return cast(Table, model.__table__)  # type: ignore[attr-defined]
