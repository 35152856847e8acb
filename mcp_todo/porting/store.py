"""Records written as tasks: the database side of an import (`source` reads the tasks an export writes).

An import is one transaction; each record is written in a savepoint of its own, so a record the database refuses is
reported and the others land. A record is matched to an existing task by its uid (unique per user): unchanged, it is
skipped; changed, it is updated (through `change_task`, as `update_task`). Every write emits the events the tools
would (`task.created`, `task.updated`, `task.completed`, built by `service.changes`), in the same transaction, so the
workers see imported tasks (their reminders) like any other.

The rules of `service.hierarchy` hold for imported tasks as for the tools' ones: subtasks are one level deep (a
deeper chain in the file, or a link onto a subtask of the account, joins its top-level task; a task with subtasks
stays top-level) and a subtask has no rule of its own (dropped). What a record loses to them is reported, as partly
kept: the record still lands.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Final

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mcp_todo.db import dependencies as dependencies_db
from mcp_todo.db import labels
from mcp_todo.db import porting as porting_db
from mcp_todo.db import tasks as tasks_db
from mcp_todo.db.outbox import write_events
from mcp_todo.domain.errors import TodoError
from mcp_todo.porting.prepare import Prepared, prepare
from mcp_todo.porting.progress import Progress
from mcp_todo.porting.records import Outcome, Parsed, Record, describe
from mcp_todo.porting.report import Report
from mcp_todo.porting.source import user_defaults
from mcp_todo.service import dependencies
from mcp_todo.service.categories import MAX_CATEGORIES_PER_USER
from mcp_todo.service.changes import task_completed, task_created, task_updated
from mcp_todo.service.context import Ctx, translate_db_error
from mcp_todo.service.dependencies import MAX_BLOCKERS
from mcp_todo.service.edits import change_task
from mcp_todo.service.hierarchy import SUBTASK_NO_RULE, require_parent
from mcp_todo.service.tags import MAX_TAGS_PER_USER
from mcp_todo.settings import Settings

log = logging.getLogger(__name__)

# The columns an import writes and compares (the rest are the database's: id, user, timestamps, generated ones).
_COMPARED: Final = (
    "title",
    "description",
    "status",
    "priority",
    "due_date",
    "time_zone",
    "category_id",
    "recurrence_rule",
    "recurrence_from",
    "series_start",
    "remind_before_minutes",
    "remind_at",
    "completed_at",
    "parent_id",
)


_MISSING: Final = object()


class _Refused(Exception):
    """A record the import skips on purpose (not a failure)."""


def parents_first(records: list[Record], rejected: list[Outcome]) -> list[Record]:
    """The records with every parent in the file before its subtasks; the records of a parent cycle, and those
    repeating an earlier record's UID, are refused."""
    by_uid: dict[str, Record] = {}
    for record in records:
        if record.uid in by_uid:
            rejected.append(Outcome(describe(record.where, record.uid), "another record of this file has the same UID"))
        else:
            by_uid[record.uid] = record
    records = list(by_uid.values())
    ordered: list[Record] = []
    state: dict[str, int] = {}  # 1: being placed, 2: placed
    for record in records:
        chain: list[Record] = []
        current: Record | None = record
        while current is not None and state.get(current.uid) is None:
            state[current.uid] = 1
            chain.append(current)
            parent = current.parent_uid
            current = by_uid.get(parent) if parent is not None and parent != current.uid else None
        if current is not None and state.get(current.uid) == 1:
            cycle = {item.uid for item in chain[[item.uid for item in chain].index(current.uid) :]}
            for item in chain:
                state[item.uid] = 2
                if item.uid in cycle:
                    rejected.append(Outcome(describe(item.where, item.uid), "its parent chain is a cycle"))
                else:
                    ordered.append(item)
            continue
        for item in reversed(chain):
            state[item.uid] = 2
            ordered.append(item)
    cycle_free = {item.uid for item in ordered}
    # A subtask whose parent was refused lands at the top level.
    for item in ordered:
        if item.parent_uid is not None and item.parent_uid in by_uid and item.parent_uid not in cycle_free:
            item.parent_uid = None
            item.lost.append("its parent was not imported: imported as a top-level task")
    return ordered


async def import_records(
    engine: AsyncEngine,
    settings: Settings,
    user_id: str,
    parsed: Parsed,
    *,
    now: datetime,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> Report:
    report = Report(dry_run=dry_run)
    report.failed.extend(parsed.rejected)
    report.skipped.extend(parsed.skipped)
    ordered = parents_first(parsed.records, report.failed)
    async with engine.connect() as conn:
        transaction = await conn.begin()
        try:
            if any(record.depends_on for record in ordered):
                await dependencies_db.lock_user(conn, user_id)  # before any row lock, as every dependency write
            zone, lead = await user_defaults(conn, settings, user_id)
            ctx = Ctx(engine=engine, user_id=user_id, settings=settings, now=now, time_zone=zone)
            writer = _Writer(conn, ctx, parsed)
            await writer.load()
            for done, record in enumerate(ordered):
                if progress is not None:
                    progress(done, len(ordered))
                where = describe(record.where, record.uid)
                try:
                    prepared = prepare(
                        record, user_zone=zone, default_lead=lead, now=now, all_day_at=settings.all_day_reminder_time
                    )
                except TodoError as exc:
                    report.failed.append(Outcome(where, exc.message))
                    continue
                try:
                    if writer.unchanged(prepared):
                        kind = "unchanged"
                    else:
                        async with conn.begin_nested():
                            kind = await writer.write(prepared)
                    writer.keep()
                except _Refused as exc:
                    writer.forget()
                    report.skipped.append(Outcome(where, str(exc)))
                    continue
                except TodoError as exc:
                    writer.forget()
                    report.failed.append(Outcome(where, exc.message))
                    continue
                except sa_exc.DBAPIError as exc:
                    writer.forget()
                    translated = translate_db_error(exc)
                    if translated is None or translated.code == "UNAVAILABLE":
                        raise
                    report.failed.append(Outcome(where, translated.message))
                    continue
                {"added": report.added, "updated": report.updated, "unchanged": report.unchanged}[kind].append(where)
                if prepared.lost:
                    report.partly_kept.append(Outcome(where, "; ".join(prepared.lost)))
            await _link_dependencies(conn, ctx, writer, ordered, report)
        except BaseException:
            await transaction.rollback()
            raise
        if dry_run:
            await transaction.rollback()
        else:
            await transaction.commit()
    if progress is not None:
        progress(len(ordered), len(ordered))
    log.info(
        "import done",
        extra={
            "user_id": user_id,
            "added": len(report.added),
            "updated": len(report.updated),
            "unchanged": len(report.unchanged),
            "skipped": len(report.skipped),
            "failed": len(report.failed),
            "dry_run": dry_run,
        },
    )
    return report


async def _link_dependencies(
    conn: AsyncConnection, ctx: Ctx, writer: _Writer, records: list[Record], report: Report
) -> None:
    """The dependencies the file gives, once every task of it is in (a task may wait on one further down the file):
    a record that names blockers gets exactly those, each by its UID; one not found (or in the trash), or a list that
    would close a cycle, is reported as not kept. A task whose open blockers changed gets its `task.updated`."""
    for record in records:
        found = writer.known.get(record.uid)
        if not record.depends_on or found is None or found["deleted_at"] is not None:
            continue
        task_id, lost, blockers = int(found["id"]), [], []
        for uid in record.depends_on:
            blocker = writer.known.get(uid)
            if blocker is None or blocker["deleted_at"] is not None or uid == record.uid:
                lost.append(f"depends on UID {uid}, which is not an imported task: not kept")
            else:
                blockers.append(int(blocker["id"]))
        if len(blockers) > MAX_BLOCKERS:
            lost.append(f"waits on {len(blockers)} tasks: the first {MAX_BLOCKERS} kept")
            blockers = blockers[:MAX_BLOCKERS]
        try:
            async with conn.begin_nested():
                before = await tasks_db.fetch(conn, ctx.user_id, task_id)
                if await dependencies.set_blockers(conn, ctx, task_id, blockers):
                    after = await tasks_db.fetch(conn, ctx.user_id, task_id)
                    await write_events(conn, task_updated(ctx, before, after))
        except TodoError as exc:
            lost.append(f"dependencies not kept: {exc.message.split(' — ')[0]}")
        if lost:
            report.partly_kept.append(Outcome(describe(record.where, record.uid), "; ".join(lost)))


class _Writer:
    """Writes the prepared records of one import. It reads the user's tasks and labels once, so a record that
    matches its task costs no statement at all, and remembers the series ids it assigned by the file's series keys.
    What a record's savepoint adds to those caches is dropped again when the savepoint rolls back (`forget`)."""

    def __init__(self, conn: AsyncConnection, ctx: Ctx, parsed: Parsed) -> None:
        self.conn = conn
        self.ctx = ctx
        self.parsed = parsed
        self.series_ids: dict[str, int] = {}
        self.known: dict[str, dict[str, Any]] = {}  # uid → the task's row, with "tag_ids"
        self.labels: dict[tuple[str, str], int] = {}  # (kind, lower-case name) → id
        self.uid_of: dict[int, str] = {}  # task id → uid
        self._staged: list[tuple[dict[Any, Any], Any, Any]] = []

    @property
    def user_id(self) -> str:
        return self.ctx.user_id

    async def load(self) -> None:
        for row in await porting_db.known_tasks(self.conn, self.user_id):
            self.known[row["uid"]] = {**row, "tag_ids": set(row["tag_ids"] or ())}
            self.uid_of[int(row["id"])] = str(row["uid"])
        for kind in (labels.CATEGORY, labels.TAG):
            for label_id, name in await porting_db.label_names(self.conn, kind, self.user_id):
                self.labels[(kind.noun, name.lower())] = label_id

    def _stage(self, cache: dict[Any, Any], key: Any, value: Any) -> None:
        self._staged.append((cache, key, cache.get(key, _MISSING)))
        cache[key] = value

    def keep(self) -> None:
        self._staged.clear()

    def forget(self) -> None:
        for cache, key, old in reversed(self._staged):
            if old is _MISSING:
                cache.pop(key, None)
            else:
                cache[key] = old
        self._staged.clear()

    def _placement(self, task: Prepared, own_id: int | None) -> tuple[int | None, list[str]]:
        """The parent the task gets and what of the file's parent link is not kept, from what was read (no
        statement). Subtasks are one level deep (`service.hierarchy`): a parent that is itself a subtask gives its
        own parent, so a deeper chain of the file (or onto the account's subtasks) flattens onto its top-level task."""
        if task.parent_uid is None:
            return None, []
        parent = self.known.get(task.parent_uid)
        if parent is None:
            return None, [f"parent UID {task.parent_uid} not found: imported as a top-level task"]
        if parent["deleted_at"] is not None:
            return None, [f"parent UID {task.parent_uid} is in the trash: imported as a top-level task"]
        parent_id, notes = int(parent["id"]), []
        if parent["parent_id"] is not None:
            parent_id = int(parent["parent_id"])
            top = self.uid_of.get(parent_id, f"of task {parent_id}")
            notes.append(
                f"parent UID {task.parent_uid} is itself a subtask (of UID {top}); subtasks are one level deep: "
                f"attached to UID {top}"
            )
        if parent_id == own_id:
            return None, [f"parent UID {task.parent_uid} is one of its own subtasks: kept at the top level"]
        return parent_id, notes

    def unchanged(self, task: Prepared) -> bool:
        """Whether the record matches its task exactly, told from what was read up front (no statement)."""
        found = self.known.get(task.uid)
        if found is None or found["deleted_at"] is not None:
            return False
        parent_id, notes = self._placement(task, int(found["id"]))
        if notes or (parent_id is not None and task.rule is not None):
            return False  # the write path says what was not kept
        category = self.labels.get(("category", task.category.lower())) if task.category else None
        tags = {self.labels.get(("tag", name.lower())) for name in task.tags}
        if (task.category and category is None) or None in tags or tags != found["tag_ids"]:
            return False
        values = self._values(task, category, parent_id)
        if any(found[name] != values[name] for name in _COMPARED):
            return False
        if task.series_key is not None and found["series_id"] is not None:
            self.series_ids.setdefault(task.series_key, int(found["series_id"]))
        return (task.rule is None) == (found["series_id"] is None)

    async def write(self, task: Prepared) -> str:
        found = self.known.get(task.uid)
        if found is not None and found["deleted_at"] is not None:
            raise _Refused(
                f"task {found['id']} has this UID and is in the trash — restore it (update_task status=pending) "
                "to update it"
            )
        if found is not None and task.series_key is not None and found["series_id"] is not None:
            self.series_ids.setdefault(task.series_key, int(found["series_id"]))
        parent_id = await self._parent_id(task, found)
        values = self._values(task, await self._category_id(task), parent_id)
        tag_ids = await self._tag_ids(task)
        if found is None:
            new_id = await self._insert(task, values, tag_ids)
            known: dict[str, Any] = {
                "id": new_id,
                "deleted_at": None,
                "series_id": None,
                "tag_ids": set(),
                "parent_id": parent_id,
            }
            self._stage(self.known, task.uid, known)
            self._stage(self.uid_of, new_id, task.uid)
            return "added"
        kind = await self._update(int(found["id"]), task, values, tag_ids)
        self._stage(self.known, task.uid, {**found, "parent_id": parent_id})
        return kind

    async def _parent_id(self, task: Prepared, found: dict[str, Any] | None) -> int | None:
        """The parent as `_placement` finds it, checked by the tools' own `require_parent` when the link is new (a
        task with subtasks cannot become one); a subtask's rule is dropped, as it repeats with its parent. What is
        not kept is noted on the task."""
        own_id = int(found["id"]) if found is not None else None
        parent_id, notes = self._placement(task, own_id)
        if parent_id is not None and (found is None or found["parent_id"] != parent_id):
            try:
                await require_parent(self.conn, self.user_id, parent_id, own_id)
            except TodoError as exc:
                notes.append(f"parent UID {task.parent_uid} not kept: {exc.message.split(' — ')[0]}")
                parent_id = None
        if parent_id is not None and task.rule is not None:
            notes.append(f"repeat rule {task.rule!r} dropped: {SUBTASK_NO_RULE.split(' — ')[0]}")
            task.rule, task.recurrence_from = None, "schedule"
            task.series_key, task.series_start, task.series_start_wall = None, None, None
        task.lost.extend(notes)
        return parent_id

    @staticmethod
    def _values(task: Prepared, category_id: int | None, parent_id: int | None) -> dict[str, Any]:
        return {
            "title": task.title,
            "description": task.description,
            "status": task.status,
            "priority": task.priority,
            "due_date": task.due,
            "time_zone": task.time_zone,
            "category_id": category_id,
            "recurrence_rule": task.rule,
            "recurrence_from": task.recurrence_from,
            "series_start": task.series_start,
            "series_start_wall": task.series_start_wall,
            "remind_before_minutes": task.lead,
            "remind_at": task.remind_at,
            "reminder_sent": task.reminder_sent,
            "completed_at": task.completed_at,
            "parent_id": parent_id,
        }

    async def _label_id(self, kind: labels.LabelKind, name: str, color: str | None, limit: int) -> int | None:
        key = (kind.noun, name.lower())
        if key in self.labels:
            return self.labels[key]
        await labels.lock_user_scope(self.conn, kind, self.user_id)
        found = await labels.id_by_name(self.conn, kind, self.user_id, name)
        if found is None:
            if await labels.count(self.conn, kind, self.user_id) >= limit:
                return None
            found = await labels.insert_label(self.conn, kind, self.user_id, name, color, self.ctx.now)
            if found is None:
                found = await labels.id_by_name(self.conn, kind, self.user_id, name)
        if found is not None:
            self._stage(self.labels, key, found)
        return found

    async def _category_id(self, task: Prepared) -> int | None:
        if task.category is None:
            return None
        color = self.parsed.category_colors.get(task.category)
        category_id = await self._label_id(labels.CATEGORY, task.category, color, MAX_CATEGORIES_PER_USER)
        if category_id is None:
            task.lost.append(f"category {task.category!r} dropped: you have {MAX_CATEGORIES_PER_USER} already")
        return category_id

    async def _tag_ids(self, task: Prepared) -> list[int]:
        ids: list[int] = []
        for name in task.tags:
            tag_id = await self._label_id(labels.TAG, name, self.parsed.tag_colors.get(name), MAX_TAGS_PER_USER)
            if tag_id is None:
                task.lost.append(f"tag {name!r} dropped: you have {MAX_TAGS_PER_USER} tags already")
            elif tag_id not in ids:
                ids.append(tag_id)
        return ids

    def _series_id(self, task: Prepared, own_id: int) -> int | None:
        if task.rule is None:
            return None
        if task.series_key is None:
            return own_id
        return self.series_ids.setdefault(task.series_key, own_id)

    async def _insert(self, task: Prepared, values: dict[str, Any], tag_ids: list[int]) -> int:
        new_id = await porting_db.next_task_id(self.conn)
        series_id = self._series_id(task, new_id)
        await porting_db.insert_task(
            self.conn,
            dict(
                id=new_id,
                user_id=self.user_id,
                uid=task.uid,
                series_id=series_id,
                created_at=task.created_at,
                updated_at=self.ctx.now,
                **values,
            ),
        )
        await porting_db.link_tags(self.conn, self.user_id, new_id, tag_ids)
        row = await tasks_db.fetch(self.conn, self.user_id, new_id)
        await write_events(self.conn, [task_created(self.ctx, row)])
        return new_id

    async def _update(self, task_id: int, task: Prepared, values: dict[str, Any], tag_ids: list[int]) -> str:
        """Change the task the way `update_task` does (`change_task`: one statement, its `task.updated`), then
        complete it when the file does (its own `task.completed`, at the file's completion time)."""
        before = await tasks_db.fetch(self.conn, self.user_id, task_id, for_update=True)
        current_tags = {tag.id for tag in before.tags}
        changes = {name: values[name] for name in _COMPARED if getattr(before, name) != values[name]}
        if task.rule is not None and (before.series_id is None or "series_start" in changes):
            changes["series_id"] = self._series_id(task, task_id)
            changes["series_start_wall"] = values["series_start_wall"]
        elif task.rule is None and before.series_id is not None:
            changes.update(series_id=None, series_start=None, series_start_wall=None)
        if "remind_at" in changes:
            changes["reminder_sent"] = values["reminder_sent"]
        if not changes and current_tags == set(tag_ids):
            return "unchanged"
        completing = changes.get("status") == "completed"
        first = {k: v for k, v in changes.items() if not completing or k not in ("status", "completed_at")}
        if current_tags != set(tag_ids):
            await porting_db.unlink_tags(self.conn, self.user_id, task_id)
            await porting_db.link_tags(self.conn, self.user_id, task_id, tag_ids)
        _, events = await change_task(self.conn, self.ctx, before, first)
        if completing:
            done = {"status": "completed", "completed_at": changes["completed_at"]}
            events.append(
                task_completed(self.ctx, await tasks_db.update(self.conn, self.user_id, task_id, done, self.ctx.now))
            )
        await write_events(self.conn, events)
        return "updated"
