"""The public shapes: what every tool returns (docs/tools.md). The events have their own models in `mcp_todo/events.py`.

Times are ISO 8601 strings in the task's own zone with a numeric offset, so a reader never has to guess the zone.
Descriptions stay short: all 17 tools' schemas together are sent to the model on every `tools/list`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["pending", "completed"]
Priority = Literal["low", "medium", "high", "urgent"]


def drop_property_titles(schema: dict[str, Any]) -> None:
    """Remove pydantic's per-property "title": it only repeats the name, and costs tokens in every tools/list."""
    for prop in schema.get("properties", {}).values():
        if isinstance(prop, dict):
            prop.pop("title", None)


def _compact(schema: dict[str, Any]) -> None:
    """Output schemas in their shortest equivalent form: no titles, and `{"type": ["string", "null"]}` for a
    nullable scalar instead of pydantic's two-branch anyOf (13 tools repeat the Task schema in every tools/list)."""
    drop_property_titles(schema)
    schema.pop("title", None)
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


def _drop_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _absent() -> Any:
    """An optional output field, absent (null) unless it says something; its schema does not repeat the default."""
    return Field(default=None, json_schema_extra=_drop_default)


class _Shape(BaseModel):
    model_config = ConfigDict(json_schema_extra=_compact)


class CategoryOut(_Shape):
    id: int
    name: str
    color: str | None = Field(description="#RRGGBB or null")


class TagOut(_Shape):
    id: int
    name: str
    color: str | None = Field(description="#RRGGBB or null")


class RecurrenceOut(_Shape):
    text: str = Field(description="The rule in plain English")
    next_occurrences: list[str] = Field(description="Next due dates after this task's (up to 5)")


class TaskOut(_Shape):
    id: int
    title: str
    description: str | None
    status: Status
    priority: Priority
    due_date: str | None
    time_zone: str = Field(description="IANA zone the task's times are shown in")
    category: CategoryOut | None
    tags: list[TagOut]
    recurrence_rule: str | None = Field(description="RFC 5545 RRULE")
    recurrence: RecurrenceOut | None
    remind_at: str | None
    reminder_sent: bool = Field(description="Whether the reminder has fired")
    completed_at: str | None
    created_at: str
    updated_at: str
    # Absent (null) unless they say something: a subtask's parent, counts of subtasks, "completion" (repeats the
    # rule's interval after each completion), and since when the task is in the trash.
    parent_id: int | None = _absent()
    open_subtasks: int | None = _absent()
    total_subtasks: int | None = _absent()
    recurrence_from: str | None = _absent()
    deleted_at: str | None = _absent()


class CompletedTask(TaskOut):
    next_occurrence: str | None = Field(
        description="Due date of the occurrence that will follow (created shortly), or null"
    )


class ScoredTask(TaskOut):
    relevance_score: float


class TaskList(_Shape):
    tasks: list[TaskOut]
    total: int = Field(description="Matching tasks before paging")
    limit: int
    offset: int


class TaskPage(_Shape):
    tasks: list[TaskOut]
    total: int = Field(description="Matching tasks before the limit")


class SearchResult(_Shape):
    tasks: list[ScoredTask]
    total: int = Field(description="Matching tasks before paging")
    query: str


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
    categories: list[CategoryCount]
    total: int


class TagList(_Shape):
    tags: list[TagCount]
    total: int


class DeletedCategory(_Shape):
    deleted_category_id: int
    tasks_affected: int = Field(description="Tasks left uncategorised")


class DeletedTag(_Shape):
    deleted_tag_id: int
    tasks_affected: int = Field(description="Tasks the tag was removed from")


class ReminderOut(_Shape):
    task_id: int
    remind_at: str | None = Field(description="When the reminder fires, or null when cleared")
