"""The text content of a result: a compact rendering for a model to read, not the JSON again (that stays in
`structuredContent` for programs). One line per task:

    #12 Buy milk · high · due Fri 2027-03-12 09:00 · #shopping · @Home · every week on Monday · remind 08:45

Times are shown in the user's zone with their weekday; a task kept in another zone shows its due date and reminder
in that zone, and says so. Works on the lean
structured content (`mcp_todo.schemas.lean_content`), so both always say the same thing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from mcp_todo.domain.times import resolve_zone
from mcp_todo.schemas import (
    BatchResult,
    CategoryList,
    CategoryOut,
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
)

_DESCRIPTION_IN_LIST: Final = 80
SEP: Final = " · "


def local_time(value: str, zone: ZoneInfo, *, with_seconds: bool = False) -> str:
    """`Fri 2027-03-12 09:00` (the end of a day, 23:59:59, is the date alone)."""
    moment = datetime.fromisoformat(value).astimezone(zone)
    if moment.hour == 23 and moment.minute == 59 and moment.second == 59:
        return moment.strftime("%a %Y-%m-%d")
    return moment.strftime("%a %Y-%m-%d %H:%M:%S" if with_seconds else "%a %Y-%m-%d %H:%M")


def understood_time(moment: datetime) -> str:
    """How a time argument was read, for the model to check with the user: `2027-03-12T09:00:00+01:00 (Friday)`."""
    return f"{moment.isoformat(timespec='seconds')} ({moment.strftime('%A')})"


def now_line(now: datetime) -> str:
    return f"now {now.strftime('%a %Y-%m-%d %H:%M')} {now.tzinfo}"


def _cut(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def task_line(task: Mapping[str, Any], user_zone: ZoneInfo, *, full: bool = False) -> str:
    """One task on one line; `full` adds its description and the next occurrences of a repeating task."""
    zone = resolve_zone(task["time_zone"]) if "time_zone" in task else user_zone
    elsewhere = f" {zone.key}" if zone.key != user_zone.key else ""
    parts = [f"#{task['id']} {task['title']}"]
    if task.get("status") == "completed":
        parts.append("done " + local_time(task["completed_at"], user_zone) if "completed_at" in task else "done")
    if "priority" in task:
        parts.append(task["priority"])
    if "due_date" in task:
        parts.append(f"due {local_time(task['due_date'], zone)}{elsewhere}")
    parts.extend(f"#{tag['name']}" for tag in task.get("tags", ()))
    if "category" in task:
        parts.append(f"@{task['category']['name']}")
    if "recurrence" in task:
        parts.append(task["recurrence"]["text"])
    elif "recurrence_rule" in task:
        parts.append(task["recurrence_rule"])
    if "remind_at" in task:
        parts.append(("reminded " if task.get("reminder_sent") else "remind ") + _reminder(task, zone))
    if "parent_id" in task:
        parts.append(f"subtask of #{task['parent_id']}")
    if "total_subtasks" in task:
        parts.append(f"subtasks {task.get('open_subtasks', 0)}/{task['total_subtasks']} open")
    if "deleted_at" in task:
        parts.append("in trash since " + local_time(task["deleted_at"], user_zone))
    if "why" in task:  # a "next" list: the terms that placed it (a blocked task says what blocks it)
        parts.append("why: " + ", ".join(task["why"]))
    elif "blocked_by" in task:
        parts.append("blocked by " + ", ".join(f"#{i}" for i in task["blocked_by"]))
    if "blocks" in task and "why" not in task:
        parts.append(f"unblocks {task['blocks']}")
    if "relevance_score" in task:
        parts.append(f"score {task['relevance_score']:.2f}")
    line = SEP.join(parts)
    description = task.get("description")
    if description:
        line += "\n  " + (description if full else _cut(description, _DESCRIPTION_IN_LIST))
    if full and task.get("recurrence", {}).get("next_occurrences"):
        line += "\n  next: " + ", ".join(local_time(d, zone) for d in task["recurrence"]["next_occurrences"])
    return line


def _reminder(task: Mapping[str, Any], zone: ZoneInfo) -> str:
    remind = datetime.fromisoformat(task["remind_at"]).astimezone(zone)
    due = datetime.fromisoformat(task["due_date"]).astimezone(zone) if "due_date" in task else None
    if due is not None and due.date() == remind.date():
        return remind.strftime("%H:%M")
    return local_time(task["remind_at"], zone)


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def render(model: BaseModel | type[BaseModel], content: Mapping[str, Any], user_zone: str) -> str:
    """The text for a result: `model` (or its class) says what it is, `content` (its lean structured content) what
    it says."""
    kind = model if isinstance(model, type) else type(model)
    zone = resolve_zone(user_zone)
    if issubclass(kind, (TaskList, TaskPage, SearchResult)):
        return _task_list(content, zone)
    if issubclass(kind, CategoryList):
        return _labels(content.get("categories", ()), content["total"], "category", "@")
    if issubclass(kind, TagList):
        return _labels(content.get("tags", ()), content["total"], "tag", "#")
    if issubclass(kind, DeletedTask):
        return f"deleted #{content['deleted_task_id']} {content['title']}"
    if issubclass(kind, DeletedCategory):
        left = _count(content.get("tasks_affected", 0), "task")
        return f"deleted category {content['deleted_category_id']}; {left} left uncategorised"
    if issubclass(kind, DeletedTag):
        return (
            f"deleted tag {content['deleted_tag_id']}; removed from {_count(content.get('tasks_affected', 0), 'task')}"
        )
    if issubclass(kind, ReminderOut):
        if "remind_at" in content:
            return f"#{content['task_id']} reminder at {local_time(content['remind_at'], zone)}"
        return f"#{content['task_id']} reminder cleared"
    if issubclass(kind, TaskOut):
        line = task_line(content, zone, full=True)
        if "next_occurrence" in content:
            line += f"\n  next occurrence due {local_time(content['next_occurrence'], zone)}"
        return line
    if issubclass(kind, (CategoryOut, TagOut)):
        mark = "@" if issubclass(kind, CategoryOut) else "#"
        color = f" {content['color']}" if "color" in content else ""
        return f"{mark}{content['name']} (id {content['id']}{color})"
    if issubclass(kind, BatchResult):
        lines = [f"{_count(len(content.get('results', ())), 'task')}:"]
        for item in content.get("results", ()):
            line = f"#{item['task_id']} {item['outcome']}"
            if "next_occurrence" in item:
                line += f", next due {local_time(item['next_occurrence'], zone)}"
            lines.append(line)
        return "\n".join(lines)
    return json.dumps(content, ensure_ascii=False, separators=(",", ":"))


def _task_list(content: Mapping[str, Any], zone: ZoneInfo) -> str:
    tasks = content.get("tasks", ())
    offset = content.get("offset", 0)
    head = [f"{len(tasks)} of {_count(content['total'], 'task')}"]
    if "query" in content:
        head[0] += f" matching {content['query']!r}"
    if offset:
        head.append(f"offset {offset}")
    if "limit" in content and offset + len(tasks) < content["total"]:
        head.append(f"more: offset={offset + len(tasks)}")
    if "now" in content:
        head.append(now_line(datetime.fromisoformat(content["now"]).astimezone(zone)))
    else:
        head.append(f"zone {zone.key}")
    return "\n".join([SEP.join(head), *(task_line(task, zone) for task in tasks)])


def _labels(items: Any, total: int, kind: str, mark: str) -> str:
    plural = "categories" if kind == "category" else "tags"
    lines = [f"{total} {kind if total == 1 else plural}"]
    for item in items:
        color = f" {item['color']}" if "color" in item else ""
        lines.append(f"{mark}{item['name']} (id {item['id']}{color}) · {_count(item.get('task_count', 0), 'task')}")
    return "\n".join(lines)


def server_instructions(base: str, time_zone: str, now: datetime) -> str:
    """The server's instructions with what a model cannot know: the user's zone and the local date and time (at the
    session's start; the task lists state the current time on every call)."""
    local = now.astimezone(resolve_zone(time_zone))
    return (
        f"{base} The user's time zone is {time_zone}; at the session's start it was "
        f"{local.strftime('%A %Y-%m-%d %H:%M')} there. Times may be given in words (tomorrow 9am, next friday) and "
        "rules too (every weekday); each result says how a time was understood: tell the user."
    )
