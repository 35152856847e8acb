"""The 17 tools (docs/tools.md): thin adapters from typed, bounded MCP arguments to one service call each.

`REGISTRY` at the end lists every tool with its hints. A tool returns a `CallToolResult` (an error result carries
its code; a raised error would be prefixed by the SDK), annotated with its model so the output schema is published.
Arguments that do not fit the schema (or that it does not name) are refused by `TodoTool` as one VALIDATION_ERROR
line, in the words of the published schema (`mcp_todo.server.arguments`).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field, Strict

from mcp_todo.domain.phrases import phrase_reader_warm, warm_phrase_reader
from mcp_todo.domain.reminder_times import MAX_LEAD_MINUTES
from mcp_todo.schemas import (
    CategoryList,
    CategoryOut,
    CompletedTask,
    DeletedCategory,
    DeletedTag,
    DeletedTask,
    ReminderOut,
    SearchResult,
    TagList,
    TagOut,
    TaskList,
    TaskOut,
    TaskPage,
    one_or_batch,
)
from mcp_todo.server.agenda import agenda_meta
from mcp_todo.server.arguments import TodoTool, publishable
from mcp_todo.server.render import understood_time
from mcp_todo.server.results import Outcome, Reading, run_tool
from mcp_todo.server.state import AppState
from mcp_todo.service import batches, categories, listing, reminders, search, tags, tasks
from mcp_todo.service import tasks as task_service  # add_task's `tasks` parameter hides the module's name
from mcp_todo.service.context import UNSET, Ctx
from mcp_todo.service.dependencies import MAX_BLOCKERS
from mcp_todo.service.hierarchy import MAX_BATCH_IDS, MAX_BATCH_TASKS, batch_ids
from mcp_todo.service.inputs import (
    CATEGORY_NAME_MAX,
    DESCRIPTION_MAX,
    QUERY_MAX,
    TAG_NAME_MAX,
    TITLE_MAX,
    is_phrase,
    rule_words,
    time_words,
)
from mcp_todo.service.listing import MAX_DAYS, MAX_LIMIT, MAX_OFFSET
from mcp_todo.service.tags import MAX_TAGS_PER_TASK

# --- argument types (shared so every tool says the same thing the same way) ------------------------------------

TIME = "ISO 8601 (user's zone unless offset; date = 23:59:59) or words: tomorrow 9am"
RULE = "RRULE or words: every weekday, monthly on the last friday"


# Strict: pydantic's lax mode reads true, "1" and 1.0 as 1; "task_id": "1" is a mistake to point out, not task 1.
Int = Annotated[int, Strict()]
# Ids above PostgreSQL's bigint cannot exist; the service says so, which keeps these schemas short.
TaskId = Annotated[Int, Field(ge=1)]
TagId = Annotated[Int, Field(ge=1)]
CategoryId = Annotated[Int, Field(ge=1)]
_Id = Annotated[Int, Field(ge=1)]
PriorityName = Literal["low", "medium", "high", "urgent"]
Time = Annotated[str, Field(min_length=1, max_length=64)]
Color = Annotated[str, Field(pattern=r"^#[0-9A-Fa-f]{6}$")]
Rule = Annotated[str, Field(min_length=1, max_length=500, description=RULE)]
Limit = Annotated[Int | None, Field(ge=1, le=MAX_LIMIT)]
Offset = Annotated[Int | None, Field(ge=0, le=MAX_OFFSET)]
Lead = Annotated[Int, Field(ge=0, le=MAX_LEAD_MINUTES)]
StatusFilter = Literal["pending", "completed", "all"] | None
TagFilter = Annotated[list[_Id] | None, Field(max_length=MAX_LIMIT, description="Tasks with any of these tags")]


# Subtasks (one level deep), repeating after completion, and batches of many tasks in one call.
ParentId = Annotated[_Id | None, Field(description="Parent task: makes this a subtask (one level)")]
RepeatFrom = Annotated[
    Literal["schedule", "completion"] | None,
    Field(description="completion: next due = rule's interval after completing (FREQ+INTERVAL only)"),
]
OneTaskId = Annotated[TaskId | None, Field(description="Task id (or task_ids)")]
# Dependencies: the tasks this one waits on.
Blockers = Annotated[list[Int], Field(max_length=MAX_BLOCKERS)]  # ids checked by the service
TaskIds = Annotated[
    list[_Id] | None,
    Field(min_length=1, max_length=MAX_BATCH_IDS, description="Batch instead of task_id: all or none"),
]
CompletedOrBatch = one_or_batch(CompletedTask)
DeletedOrBatch = one_or_batch(DeletedTask)
TaskOrBatch = one_or_batch(TaskOut)


class NewTaskItem(BaseModel):
    """One task of an add_task batch: add_task's fields."""

    # An unknown key ("duedate") is refused as in a single call, not dropped: the item would lose what it meant.
    model_config = ConfigDict(extra="forbid")

    title: Annotated[str, Field(min_length=1, max_length=TITLE_MAX)]
    description: Annotated[str | None, Field(max_length=DESCRIPTION_MAX)] = None
    priority: PriorityName | None = None
    due_date: Time | None = None
    category_id: _Id | None = None
    tag_ids: Annotated[list[_Id] | None, Field(max_length=MAX_TAGS_PER_TASK)] = None
    recurrence_rule: Rule | None = None
    remind_before_minutes: Lead | None = None
    parent_id: _Id | None = None
    recurrence_from: Literal["schedule", "completion"] | None = None
    blocked_by: Blockers | None = None

    def fields(self) -> dict[str, Any]:
        return {name: value for name, value in self.model_dump().items() if value is not None}


def _unset() -> Any:
    return UNSET


def _keep(description: str) -> Any:
    """`update_task`/`set_reminder`: an omitted argument is untouched and `null` clears, so omitted needs its own
    default, which the SDK would otherwise fill in (a default_factory keeps the JSON schema free of it)."""
    return Field(default_factory=_unset, description=description)


# --- plumbing ---------------------------------------------------------------------------------------------------


Words = dict[str, Any]
"""Arguments that may be given in words, as the service reads them: times as ISO 8601, rules as RRULE."""

_TIMES: Final = frozenset({"due_date", "due_after", "due_before", "remind_at"})


async def _call(ctx: Context[AppState, Any], tool: str, action: Callable[[Ctx], Awaitable[Outcome]]) -> CallToolResult:
    return await _call_words(ctx, tool, lambda c, _: action(c))


async def _call_words(
    ctx: Context[AppState, Any], tool: str, action: Callable[[Ctx, Words], Awaitable[Outcome]], **given: Any
) -> CallToolResult:
    """Run `action` with `given` read (times in `_TIMES`, `recurrence_rule`), saying in the result how each time was
    understood. None and UNSET pass through unread."""
    state = ctx.request_context.lifespan_context
    user = state.user_for_request()
    reading = Reading(time_zone=state.settings.timezone, now=state.clock())

    async def call() -> Outcome:
        service_ctx = await state.service_context(user, reading.now)
        reading.time_zone = service_ctx.time_zone
        if not phrase_reader_warm() and _has_phrase(given):
            await asyncio.to_thread(warm_phrase_reader)
        return await action(service_ctx, read_words(service_ctx, given, reading))

    return await run_tool(tool, user, call, reading)


def _has_phrase(given: dict[str, Any]) -> bool:
    """Whether a time in `given` (or in one of its batch items) is in words."""
    return any(
        (isinstance(value, str) and name in _TIMES and is_phrase(value))
        or (name == "tasks" and isinstance(value, list) and any(_has_phrase(item) for item in value))
        for name, value in given.items()
    )


def read_words(ctx: Ctx, given: dict[str, Any], reading: Reading, prefix: str = "") -> Words:
    """`given` as the service reads it: times (`_TIMES`) and `recurrence_rule` in words turned into ISO 8601 and
    RRULE, each time's reading noted in `reading` (under `prefix` + its name); None and UNSET pass through."""
    words: Words = {}
    for name, value in given.items():
        if isinstance(value, str) and name in _TIMES:
            words[name], moment = time_words(value, now=ctx.now, time_zone=ctx.time_zone, field=prefix + name)
            reading.understood[prefix + name] = understood_time(moment)
        elif isinstance(value, str) and name == "recurrence_rule":
            words[name] = rule_words(value)
        elif name == "tasks" and isinstance(value, list):  # add_task's batch: each item read as one task
            words[name] = [read_words(ctx, item, reading, f"{prefix}tasks[{i}].") for i, item in enumerate(value)]
        else:
            words[name] = value
    return words


# --- tasks ------------------------------------------------------------------------------------------------------


async def add_task(
    ctx: Context[AppState, Any],
    title: Annotated[str | None, Field(min_length=1, max_length=TITLE_MAX, description="Required unless tasks")] = None,
    description: Annotated[str | None, Field(max_length=DESCRIPTION_MAX)] = None,
    priority: PriorityName | None = "medium",
    due_date: Annotated[Time | None, Field(description=TIME)] = None,
    category_id: Annotated[_Id | None, Field(description="From list_categories")] = None,
    tag_ids: Annotated[list[_Id] | None, Field(max_length=MAX_TAGS_PER_TASK, description="From list_tags")] = None,
    recurrence_rule: Annotated[Rule | None, Field(description=RULE + "; needs due_date")] = None,
    remind_before_minutes: Annotated[Lead | None, Field(description="Lead; default from settings")] = None,
    parent_id: ParentId = None,
    recurrence_from: RepeatFrom = None,
    blocked_by: Blockers | None = None,
    tasks: Annotated[
        list[NewTaskItem] | None,
        Field(min_length=1, max_length=MAX_BATCH_TASKS, description="Instead of one task's fields: 1-50 tasks"),
    ] = None,
) -> Annotated[CallToolResult, TaskOrBatch]:
    """Create a task (or a batch: tasks). Every task with a due date gets a reminder before it; a rule makes it
    repeat."""
    if tasks is not None:
        items = [item.fields() for item in tasks]
        return await _call_words(
            ctx,
            "add_task",
            lambda c, w: batches.add_tasks(c, w["tasks"], one_task=title is not None),
            tasks=items,
        )
    return await _call_words(
        ctx,
        "add_task",
        lambda c, w: task_service.add_task(
            c,
            title,
            description=description,
            priority=priority or "medium",
            due_date=w["due_date"],
            category_id=category_id,
            tag_ids=tag_ids,
            recurrence_rule=w["recurrence_rule"],
            remind_before_minutes=remind_before_minutes,
            parent_id=parent_id,
            recurrence_from=recurrence_from or "schedule",
            blocked_by=blocked_by,
        ),
        due_date=due_date,
        recurrence_rule=recurrence_rule,
    )


async def list_tasks(
    ctx: Context[AppState, Any],
    status: Annotated[
        Literal["pending", "completed", "all", "deleted"] | None, Field(description="Default all; deleted: the trash")
    ] = "all",
    priority: PriorityName | None = None,
    category_id: _Id | None = None,
    tag_ids: TagFilter = None,
    due_after: Annotated[Time | None, Field(description="due >= this; " + TIME)] = None,
    due_before: Annotated[Time | None, Field(description="due < this")] = None,
    sort_by: Literal["created_at", "updated_at", "due_date", "priority", "title", "next"] | None = "created_at",
    sort_order: Literal["asc", "desc"] | None = "desc",
    limit: Limit = 50,
    offset: Offset = 0,
    parent_id: Annotated[_Id | None, Field(description="Subtasks of this task")] = None,
    ready: Annotated[bool | None, Field(description="true: unblocked; false: blocked")] = None,
) -> Annotated[CallToolResult, TaskList]:
    """List tasks matching all given filters. Tasks without a due date sort last; priority sorts urgent highest."""
    return await _call_words(
        ctx,
        "list_tasks",
        lambda c, w: listing.list_tasks(
            c,
            status=status or "all",
            priority=priority,
            category_id=category_id,
            tag_ids=tag_ids,
            due_after=w["due_after"],
            due_before=w["due_before"],
            sort_by=sort_by or "created_at",
            sort_order=sort_order or "desc",
            limit=limit or 50,
            offset=offset or 0,
            parent_id=parent_id,
            ready=ready,
        ),
        due_after=due_after,
        due_before=due_before,
    )


async def complete_task(
    ctx: Context[AppState, Any], task_id: OneTaskId = None, task_ids: TaskIds = None
) -> Annotated[CallToolResult, CompletedOrBatch]:
    """Mark a task (and its open subtasks) completed. For a repeating task, the next occurrence is created shortly
    after."""

    async def action(c: Ctx) -> BaseModel:
        many = batch_ids(task_id, task_ids)
        return await (tasks.complete_task(c, task_id or 0) if many is None else batches.complete_tasks(c, many))

    return await _call(ctx, "complete_task", action)


async def update_task(
    ctx: Context[AppState, Any],
    task_id: TaskId,
    title: Annotated[str | None, Field(min_length=1, max_length=TITLE_MAX), _keep("New title")],
    description: Annotated[str | None, Field(max_length=DESCRIPTION_MAX), _keep("null clears")],
    priority: Annotated[PriorityName | None, _keep("New priority")],
    due_date: Annotated[Time | None, _keep("null clears; " + TIME)],
    category_id: Annotated[_Id | None, _keep("null uncategorises")],
    recurrence_rule: Annotated[Rule | None, _keep("null stops repeating; " + RULE)],
    status: Annotated[Literal["pending", "completed"] | None, _keep("pending reopens or restores from trash")],
    parent_id: Annotated[_Id | None, _keep("Parent task; null: top level")],
    recurrence_from: Annotated[Literal["schedule", "completion"] | None, _keep("schedule or completion")],
    blocked_by: Annotated[Blockers | None, _keep("[] clears")],
) -> Annotated[CallToolResult, TaskOut]:
    """Change a task's fields: omitted ones stay, null clears. A new due date keeps the rule, moves the reminder."""
    return await _call_words(
        ctx,
        "update_task",
        lambda c, w: tasks.update_task(
            c,
            task_id,
            title=title,
            description=description,
            priority=priority,
            due_date=w["due_date"],
            category_id=category_id,
            recurrence_rule=w["recurrence_rule"],
            status=status,
            parent_id=parent_id,
            recurrence_from=recurrence_from,
            blocked_by=blocked_by,
        ),
        due_date=due_date,
        recurrence_rule=recurrence_rule,
    )


async def delete_task(
    ctx: Context[AppState, Any], task_id: OneTaskId = None, task_ids: TaskIds = None
) -> Annotated[CallToolResult, DeletedOrBatch]:
    """Move a task and its subtasks to the trash (kept 30 days; update_task status=pending restores)."""

    async def action(c: Ctx) -> BaseModel:
        many = batch_ids(task_id, task_ids)
        return await (tasks.delete_task(c, task_id or 0) if many is None else batches.delete_tasks(c, many))

    return await _call(ctx, "delete_task", action)


async def search_tasks(
    ctx: Context[AppState, Any],
    query: Annotated[
        str, Field(max_length=QUERY_MAX, description='Words, "exact phrase", -exclude; empty lists all, newest first')
    ],
    status: StatusFilter = "all",
    priority: PriorityName | None = None,
    category_id: _Id | None = None,
    tag_ids: TagFilter = None,
    limit: Limit = 20,
    offset: Offset = 0,
    parent_id: Annotated[_Id | None, Field(description="Subtasks of this task")] = None,
) -> Annotated[CallToolResult, SearchResult]:
    """Search tasks by words in title and description (English stemming). Title matches rank first."""
    return await _call(
        ctx,
        "search_tasks",
        lambda c: search.search_tasks(
            c,
            query,
            status=status or "all",
            priority=priority,
            category_id=category_id,
            tag_ids=tag_ids,
            limit=limit or 20,
            offset=offset or 0,
            parent_id=parent_id,
        ),
    )


# --- categories and tags ----------------------------------------------------------------------------------------


async def add_category(
    ctx: Context[AppState, Any],
    name: Annotated[str, Field(min_length=1, max_length=CATEGORY_NAME_MAX, description="Unique, ignoring case")],
    color: Annotated[Color | None, Field(description="#RRGGBB")] = None,
) -> Annotated[CallToolResult, CategoryOut]:
    """Create a category to group tasks (at most 50)."""
    return await _call(ctx, "add_category", lambda c: categories.add_category(c, name, color))


async def list_categories(ctx: Context[AppState, Any]) -> Annotated[CallToolResult, CategoryList]:
    """List categories with how many tasks each has."""
    return await _call(ctx, "list_categories", categories.list_categories)


async def delete_category(
    ctx: Context[AppState, Any], category_id: CategoryId
) -> Annotated[CallToolResult, DeletedCategory]:
    """Delete a category. Its tasks stay, uncategorised."""
    return await _call(ctx, "delete_category", lambda c: categories.delete_category(c, category_id))


async def add_tag(
    ctx: Context[AppState, Any],
    name: Annotated[str, Field(min_length=1, max_length=TAG_NAME_MAX, description="Unique, ignoring case")],
    color: Annotated[Color | None, Field(description="#RRGGBB")] = None,
) -> Annotated[CallToolResult, TagOut]:
    """Create a tag (at most 100); put it on tasks with add_tag_to_task."""
    return await _call(ctx, "add_tag", lambda c: tags.add_tag(c, name, color))


async def list_tags(ctx: Context[AppState, Any]) -> Annotated[CallToolResult, TagList]:
    """List tags with how many tasks carry each."""
    return await _call(ctx, "list_tags", tags.list_tags)


async def delete_tag(ctx: Context[AppState, Any], tag_id: TagId) -> Annotated[CallToolResult, DeletedTag]:
    """Delete a tag and remove it from every task."""
    return await _call(ctx, "delete_tag", lambda c: tags.delete_tag(c, tag_id))


async def add_tag_to_task(
    ctx: Context[AppState, Any], tag_id: TagId, task_id: OneTaskId = None, task_ids: TaskIds = None
) -> Annotated[CallToolResult, TaskOrBatch]:
    """Put a tag on a task (at most 10 per task). Already there: no change."""

    async def action(c: Ctx) -> BaseModel:
        many = batch_ids(task_id, task_ids)
        if many is None:
            return await tags.add_tag_to_task(c, task_id or 0, tag_id)
        return await batches.tag_tasks(c, many, tag_id, add=True)

    return await _call(ctx, "add_tag_to_task", action)


async def remove_tag_from_task(
    ctx: Context[AppState, Any], tag_id: TagId, task_id: OneTaskId = None, task_ids: TaskIds = None
) -> Annotated[CallToolResult, TaskOrBatch]:
    """Take a tag off a task. Not there: no change."""

    async def action(c: Ctx) -> BaseModel:
        many = batch_ids(task_id, task_ids)
        if many is None:
            return await tags.remove_tag_from_task(c, task_id or 0, tag_id)
        return await batches.tag_tasks(c, many, tag_id, add=False)

    return await _call(ctx, "remove_tag_from_task", action)


# --- reminders and agenda ---------------------------------------------------------------------------------------


async def set_reminder(
    ctx: Context[AppState, Any],
    task_id: TaskId,
    *,
    remind_before_minutes: Annotated[Lead | None, Field(description="Minutes before the due date")] = None,
    remind_at: Annotated[Time | None, _keep("Exact time; null clears the reminder. " + TIME)],
) -> Annotated[CallToolResult, ReminderOut]:
    """Set when a task's reminder fires: give exactly one of remind_before_minutes or remind_at."""
    return await _call_words(
        ctx,
        "set_reminder",
        lambda c, w: reminders.set_reminder(
            c, task_id, remind_before_minutes=remind_before_minutes, remind_at=w["remind_at"]
        ),
        remind_at=remind_at,
    )


async def get_overdue_tasks(ctx: Context[AppState, Any], limit: Limit = 50) -> Annotated[CallToolResult, TaskPage]:
    """List pending tasks past their due date, oldest first."""
    return await _call(ctx, "get_overdue_tasks", lambda c: listing.get_overdue_tasks(c, limit=limit or 50))


async def get_upcoming_tasks(
    ctx: Context[AppState, Any],
    days: Annotated[Int | None, Field(ge=1, le=MAX_DAYS, description="Days ahead")] = 7,
    limit: Limit = 50,
) -> Annotated[CallToolResult, TaskPage]:
    """List pending tasks due in the next days, soonest first."""
    return await _call(
        ctx, "get_upcoming_tasks", lambda c: listing.get_upcoming_tasks(c, days=days or 7, limit=limit or 50)
    )


# --- the registry -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolSpec:
    fn: Callable[..., Awaitable[CallToolResult]]
    read_only: bool
    destructive: bool
    idempotent: bool

    @property
    def annotations(self) -> ToolAnnotations:
        """The hints, each sent only where it differs from the MCP default (readOnly false, destructive true,
        idempotent false, openWorld true; destructive and idempotent mean nothing for a read-only tool): the same
        meaning in fewer bytes of every tools/list."""
        if self.read_only:
            return ToolAnnotations(read_only_hint=True, open_world_hint=False)
        return ToolAnnotations(
            destructive_hint=None if self.destructive else False,
            idempotent_hint=True if self.idempotent else None,
            open_world_hint=False,
        )


#                  tool                   read-only  destructive  idempotent
REGISTRY: Final = (
    ToolSpec(add_task,                    False,     False,       False),
    ToolSpec(list_tasks,                  True,      False,       True),
    ToolSpec(complete_task,               False,     False,       True),
    ToolSpec(update_task,                 False,     True,        True),
    ToolSpec(delete_task,                 False,     True,        True),
    ToolSpec(search_tasks,                True,      False,       True),
    ToolSpec(add_category,                False,     False,       False),
    ToolSpec(list_categories,             True,      False,       True),
    ToolSpec(delete_category,             False,     True,        True),
    ToolSpec(add_tag,                     False,     False,       False),
    ToolSpec(list_tags,                   True,      False,       True),
    ToolSpec(delete_tag,                  False,     True,        True),
    ToolSpec(add_tag_to_task,             False,     False,       True),
    ToolSpec(remove_tag_from_task,        False,     True,        True),
    ToolSpec(set_reminder,                False,     True,        True),
    ToolSpec(get_overdue_tasks,           True,      False,       True),
    ToolSpec(get_upcoming_tasks,          True,      False,       True),
)  # fmt: skip


# Tools whose result is the one task they changed: their output schema lists its main fields (`publishable`).
BRIEF_RESULTS: Final = frozenset(
    {"add_task", "update_task", "complete_task", "add_tag_to_task", "remove_tag_from_task"}
)


def build_tools() -> list[Tool]:
    """The registry as SDK tools (`TodoTool`: argument errors as VALIDATION_ERROR), with compact, valid JSON
    Schemas (`publishable`); the agenda's two tools name its page (`mcp_todo.server.agenda`)."""
    built: list[Tool] = []
    for spec in REGISTRY:
        tool = TodoTool.from_function(
            spec.fn,
            description=inspect.cleandoc(spec.fn.__doc__ or ""),
            annotations=spec.annotations,
            meta=agenda_meta(spec.fn.__name__),
        )
        takes_words = bool(_TIMES & set(tool.parameters.get("properties", {})))
        publishable(tool, takes_words=takes_words, brief=tool.name in BRIEF_RESULTS)
        built.append(tool)
    return built
