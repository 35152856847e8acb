"""The public shapes: what every tool returns (docs/tools.md). The events have their own models in `mcp_todo/events.py`.

Times are ISO 8601 strings, to the second, in the task's own zone with a numeric offset, so a reader never has to
guess the zone. Descriptions stay short: all 17 tools' schemas together are sent to the model on every `tools/list`.

Results are lean (`lean_content`): a field that is null, an empty list, or the default its schema states is left
out, and a task's `time_zone` appears only where it differs from the user's zone, which a list states once. The
published output schemas say so: such a field is not `required`, and has no null type.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["pending", "completed"]
Priority = Literal["low", "medium", "high", "urgent"]


def drop_property_titles(schema: dict[str, Any]) -> None:
    """Remove pydantic's per-property "title": it only repeats the name, and costs tokens in every tools/list."""
    for prop in schema.get("properties", {}).values():
        if isinstance(prop, dict):
            prop.pop("title", None)


def _compact(schema: dict[str, Any]) -> None:
    """Output schemas in their shortest equivalent form: no titles, no `additionalProperties: true` (JSON Schema's
    default), and `{"type": ["string", "null"]}` for a nullable scalar instead of pydantic's two-branch anyOf (13
    tools repeat the Task schema in every tools/list)."""
    drop_property_titles(schema)
    schema.pop("title", None)
    if schema.get("additionalProperties") is True:
        del schema["additionalProperties"]
    for prop in schema.get("properties", {}).values():
        branches = prop.get("anyOf")
        if (
            isinstance(branches, list)
            and len(branches) == 2
            and branches[1] == {"type": "null"}
            and set(branches[0]) == {"type"}
            and isinstance(branches[0]["type"], str)
        ):
            del prop["anyOf"]
            prop["type"] = [branches[0]["type"], "null"]


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with every local `$ref` replaced by its definition and no `$defs` (none of these shapes is
    recursive). Each definition is used once per tool, so this costs no size, and clients validating a result
    (the SDK's client does, with jsonschema) no longer resolve a reference per task and tag."""
    definitions = schema.get("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, list):
            return [resolve(item) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = resolve(definitions[ref.removeprefix("#/$defs/")])
            return {**target, **{key: resolve(value) for key, value in node.items() if key != "$ref"}}
        return {key: resolve(value) for key, value in node.items() if key != "$defs"}

    def nullable_in_place(node: Any) -> Any:
        # `anyOf: [{type: object, …}, {type: null}]` → `{type: [object, null], …}`: the same instances validate
        # (properties and required constrain objects only), and a validating client skips a branch per task.
        if isinstance(node, list):
            return [nullable_in_place(item) for item in node]
        if not isinstance(node, dict):
            return node
        node = {key: nullable_in_place(value) for key, value in node.items()}
        branches = node.get("anyOf")
        if (
            isinstance(branches, list)
            and len(branches) == 2
            and branches[1] == {"type": "null"}
            and isinstance(branches[0], dict)
            and isinstance(branches[0].get("type"), str)
            and not {"anyOf", "oneOf", "allOf", "enum", "const"} & set(branches[0])
        ):
            rest = {key: value for key, value in node.items() if key != "anyOf"}
            node = {**branches[0], **rest, "type": [branches[0]["type"], "null"]}
        return node

    resolved: dict[str, Any] = nullable_in_place(resolve(schema))
    return resolved


def _absent() -> Any:
    """An optional output field, left out of a result unless it says something (`lean_schema` publishes it so)."""
    return Field(default=None)


class _Shape(BaseModel):
    model_config = ConfigDict(json_schema_extra=_compact)


class CategoryOut(_Shape):
    id: int
    name: str
    color: str | None = Field(default=None, description="#RRGGBB")


class TagOut(_Shape):
    id: int
    name: str
    color: str | None = Field(default=None, description="#RRGGBB")


class RecurrenceOut(_Shape):
    text: str = Field(description="The rule in words")
    next_occurrences: list[str] = Field(default_factory=list, description="Next due dates (up to 5)")


class TaskOut(_Shape):
    # A column added to the table shows in a task's results before this model names it (`service.shapes`).
    model_config = ConfigDict(json_schema_extra=_compact, extra="allow")

    id: int
    title: str
    description: str | None = None
    status: Status = "pending"
    priority: Priority = "medium"
    due_date: str | None = None
    # Never None in a TaskOut; the default lets a lean result leave it out (it is then the user's zone).
    time_zone: str = Field(default=None, description="IANA zone; absent = the user's")  # type: ignore[assignment]
    category: CategoryOut | None = None
    tags: list[TagOut] = Field(default_factory=list)
    recurrence_rule: str | None = Field(default=None, description="RFC 5545 RRULE")
    recurrence: RecurrenceOut | None = None
    remind_at: str | None = None
    reminder_sent: bool = False
    completed_at: str | None = None
    created_at: str
    # Never None in a TaskOut; a lean result leaves it out while the task was never changed (it is then created_at).
    updated_at: str = Field(default=None, description="absent = created_at")  # type: ignore[assignment]
    # Absent (null) unless they say something: a subtask's parent, counts of subtasks, "completion" (repeats the
    # rule's interval after each completion), and since when the task is in the trash.
    parent_id: int | None = _absent()
    open_subtasks: int | None = _absent()
    total_subtasks: int | None = _absent()
    recurrence_from: str | None = _absent()
    deleted_at: str | None = _absent()
    # Dependencies, absent when empty: the open tasks this one waits on, and how many open tasks wait on it.
    blocked_by: list[int] | None = _absent()
    blocks: int | None = _absent()


class CompletedTask(TaskOut):
    next_occurrence: str | None = Field(default=None, description="Due date of the next occurrence (created shortly)")


def _dependencies_as_in_list_tasks(schema: dict[str, Any]) -> None:
    """The other task lists' schemas leave the dependency fields to list_tasks's (their results carry them, and the
    schemas are open): three more lists repeating them would cost 250 bytes of every tools/list."""
    _compact(schema)
    for name in ("blocked_by", "blocks"):
        schema.get("properties", {}).pop(name, None)


class PagedTask(TaskOut):
    """A task of get_overdue_tasks and get_upcoming_tasks."""

    model_config = ConfigDict(json_schema_extra=_dependencies_as_in_list_tasks)


class ScoredTask(TaskOut):
    model_config = ConfigDict(json_schema_extra=_dependencies_as_in_list_tasks)

    relevance_score: float


class RankedTask(TaskOut):
    """A task of list_tasks: in a sort_by="next" list, the terms that placed it, in words."""

    why: list[str] | None = _absent()


# Filled in by the server (`lean_content`), not by the service: what a model cannot know by itself.
_ZONE = Field(default=None)  # the user's IANA zone
_NOW = Field(default=None)  # the current local time in the user's zone


class TaskList(_Shape):
    tasks: list[RankedTask] = Field(default_factory=list)
    total: int = Field(description="Matching tasks before paging")
    limit: int
    offset: int = 0
    time_zone: str | None = _ZONE
    now: str | None = _NOW


class TaskPage(_Shape):
    tasks: list[PagedTask] = Field(default_factory=list)
    total: int = Field(description="Matching tasks before the limit")
    time_zone: str | None = _ZONE
    now: str | None = _NOW


class SearchResult(_Shape):
    tasks: list[ScoredTask] = Field(default_factory=list)
    total: int = Field(description="Matching tasks before paging")
    query: str
    time_zone: str | None = _ZONE


class DeletedTask(_Shape):
    deleted_task_id: int
    title: str
    trashed_subtasks: int | None = _absent()


class BatchItem(_Shape):
    task_id: int
    outcome: Literal["created", "completed", "unchanged", "trashed", "tagged", "untagged"]
    next_occurrence: str | None = _absent()


# One batch call (task_ids or tasks): every item's outcome, in the order given; all or nothing.
class BatchResult(_Shape):
    results: list[BatchItem]


def one_or_batch(single: type[BaseModel]) -> type[BaseModel]:
    """The output shape of a tool that takes either one task or a batch: an object that is `single` or a
    BatchResult (the SDK wants an object schema, so the union is not wrapped in a "result" field)."""

    def either(schema: dict[str, Any]) -> None:
        branches = [inline_refs(model.model_json_schema()) for model in (single, BatchResult)]
        schema.clear()
        schema.update({"type": "object", "anyOf": branches})

    return type(f"{single.__name__}OrBatch", (BaseModel,), {"model_config": ConfigDict(json_schema_extra=either)})


class CategoryCount(CategoryOut):
    task_count: int


class TagCount(TagOut):
    task_count: int


class CategoryList(_Shape):
    categories: list[CategoryCount] = Field(default_factory=list)
    total: int


class TagList(_Shape):
    tags: list[TagCount] = Field(default_factory=list)
    total: int


class DeletedCategory(_Shape):
    deleted_category_id: int
    tasks_affected: int = Field(description="Tasks left uncategorised")


class DeletedTag(_Shape):
    deleted_tag_id: int
    tasks_affected: int = Field(description="Tasks the tag was removed from")


class ReminderOut(_Shape):
    task_id: int
    remind_at: str | None = Field(default=None, description="When the reminder fires; absent when cleared")


# --- lean results -------------------------------------------------------------------------------------------------


_SECONDS_END: Final = len("2027-03-10T09:00:00")
_TIMES: Final = ("due_date", "remind_at", "completed_at", "created_at", "updated_at", "next_occurrence", "deleted_at")


def to_the_second(value: str) -> str:
    """An ISO time without its fraction (`…T09:00:00.250000+01:00` → `…T09:00:00+01:00`). Results are to the second;
    the stored time and the events keep the fraction. (Slicing, not a regex: it runs for every time of every task.)"""
    if len(value) <= _SECONDS_END or value[_SECONDS_END] != ".":
        return value
    end = _SECONDS_END + 1
    while end < len(value) and value[end].isdigit():
        end += 1
    return value[:_SECONDS_END] + value[end:]


def _lean_task(task: dict[str, Any], user_zone: str, *, in_list: bool = False) -> dict[str, Any]:
    for key in _TIMES:
        if key in task:
            task[key] = to_the_second(task[key])
    if "recurrence" in task and "next_occurrences" in task["recurrence"]:
        task["recurrence"]["next_occurrences"] = [to_the_second(t) for t in task["recurrence"]["next_occurrences"]]
    if task.get("time_zone") == user_zone:
        del task["time_zone"]
    if task.get("updated_at") == task.get("created_at"):
        del task["updated_at"]
    if in_list and "next_occurrences" in task.get("recurrence", {}):
        # A list gives the rule in words and the next date only; the task's own results (add, update) give five.
        del task["recurrence"]["next_occurrences"][1:]
    score = task.get("relevance_score")
    if isinstance(score, float):
        task["relevance_score"] = round(score, 4)
    return task


TASK_LISTS: Final = (TaskList, TaskPage, SearchResult)


def lean_list(kind: type[BaseModel], content: dict[str, Any], user_zone: str, now: str | None) -> dict[str, Any]:
    """A task list's lean content (its tasks already lean): no empty list of tasks, and the user's zone and local
    time stated once (a search, which is not about time, states the zone only)."""
    if not content.get("tasks", True):
        del content["tasks"]
    content["time_zone"] = user_zone
    if now is not None and kind is not SearchResult:
        content["now"] = now
    return content


def lean_content(model: BaseModel, user_zone: str, now: str | None = None) -> dict[str, Any]:
    """The structured content of a result: no nulls, no empty lists, no stated defaults, a
    task's zone only where it is not the user's. A task list also states the user's zone and local time."""
    content = model.model_dump(mode="json", exclude_defaults=True)
    if isinstance(model, TASK_LISTS):
        content["tasks"] = [_lean_task(task, user_zone, in_list=True) for task in content.get("tasks", ())]
        return lean_list(type(model), content, user_zone, now)
    if isinstance(model, TaskOut):
        _lean_task(content, user_zone)
    elif "remind_at" in content:
        content["remind_at"] = to_the_second(content["remind_at"])
    return content


def lean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """An output schema as `lean_content` fills it: a field whose default is null or [] is never null (it is left
    out instead), and that default goes unsaid (absent means it). Works in place on an inlined schema."""

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item)
            return
        if not isinstance(node, dict):
            return
        for prop in node.get("properties", {}).values():
            if isinstance(prop, dict) and "default" in prop and prop["default"] in (None, []):
                del prop["default"]
                kind = prop.get("type")
                if isinstance(kind, list) and "null" in kind:
                    rest = [k for k in kind if k != "null"]
                    prop["type"] = rest[0] if len(rest) == 1 else rest
        for value in node.values():
            visit(value)

    visit(schema)
    return schema
