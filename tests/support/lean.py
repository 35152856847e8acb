"""The full shape of a lean result (mcp_todo.schemas.lean_content), as a program reading one fills it in: absent
fields are null, empty lists or the defaults the schema states, and a task's zone is the user's. Tests written
against the full shape read results through this; the lean tests check the shape on the wire itself."""

from __future__ import annotations

from typing import Any

TASK_DEFAULTS: dict[str, Any] = {
    "description": None,
    "status": "pending",
    "priority": "medium",
    "due_date": None,
    "category": None,
    "recurrence_rule": None,
    "recurrence": None,
    "remind_at": None,
    "reminder_sent": False,
    "completed_at": None,
    "parent_id": None,
    "open_subtasks": None,
    "total_subtasks": None,
    "recurrence_from": None,
    "deleted_at": None,
}


def full_task(task: dict[str, Any], zone: str) -> dict[str, Any]:
    full = {**TASK_DEFAULTS, "time_zone": zone, **task}
    full.setdefault("updated_at", full["created_at"])
    full["tags"] = [{"color": None, **tag} for tag in task.get("tags", [])]
    if full["category"] is not None:
        full["category"] = {"color": None, **full["category"]}
    if full["recurrence"] is not None:
        full["recurrence"] = {"next_occurrences": [], **full["recurrence"]}
    return full


_TASK_TOOLS = frozenset({"add_task", "complete_task", "update_task", "add_tag_to_task", "remove_tag_from_task"})
_LIST_TOOLS = frozenset({"list_tasks", "search_tasks", "get_overdue_tasks", "get_upcoming_tasks"})


def full_result(tool: str, content: dict[str, Any], zone: str) -> dict[str, Any]:
    """`tool`'s lean `content` with every field a test may read."""
    full = {key: value for key, value in content.items() if key != "understood"}
    if "results" in full:  # a batch: one outcome per task
        full["results"] = [{"next_occurrence": None, **item} for item in full["results"]]
        return full
    if tool in _LIST_TOOLS:
        zone = full.pop("time_zone", zone)
        full.pop("now", None)
        full["tasks"] = [full_task(task, zone) for task in full.get("tasks", [])]
        if tool == "list_tasks":
            full.setdefault("offset", 0)
    elif tool in _TASK_TOOLS:
        full = full_task(full, zone)
        if tool == "complete_task":
            full.setdefault("next_occurrence", None)
    elif tool in ("list_categories", "list_tags"):
        key = "categories" if tool == "list_categories" else "tags"
        full[key] = [{"color": None, **item} for item in full.get(key, [])]
    elif tool == "set_reminder":
        full.setdefault("remind_at", None)
    elif tool in ("add_category", "add_tag"):
        full.setdefault("color", None)
    return full
