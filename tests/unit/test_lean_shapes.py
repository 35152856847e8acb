"""The lean structured content (mcp_todo.schemas.lean_content) and its text rendering (mcp_todo.server.render),
without a database."""

from __future__ import annotations

import pytest

from mcp_todo.schemas import (
    CategoryOut,
    RankedTask,
    RecurrenceOut,
    TagOut,
    TaskList,
    TaskOut,
    lean_content,
    to_the_second,
)
from mcp_todo.server.render import render

ZONE = "Europe/Paris"


def _task(**fields: object) -> TaskOut:
    base: dict[str, object] = {
        "id": 12,
        "title": "Buy milk",
        "time_zone": ZONE,
        "created_at": "2027-03-01T10:00:00.123456+01:00",
        "updated_at": "2027-03-01T10:00:00.123456+01:00",
    }
    return TaskOut.model_validate(base | fields)


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("2027-03-10T09:00:00.250000+01:00", "2027-03-10T09:00:00+01:00"),
        ("2027-03-10T09:00:00+01:00", "2027-03-10T09:00:00+01:00"),
        ("2027-03-10T09:00:00.1Z", "2027-03-10T09:00:00Z"),
        ("2027-03-10T09:00:00.5", "2027-03-10T09:00:00"),
    ],
)
def test_times_are_to_the_second(given: str, shown: str) -> None:
    assert to_the_second(given) == shown


def test_a_plain_task_is_its_id_title_and_creation() -> None:
    assert lean_content(_task(), ZONE) == {"id": 12, "title": "Buy milk", "created_at": "2027-03-01T10:00:00+01:00"}


def test_a_task_in_another_zone_keeps_it_and_says_so() -> None:
    task = _task(time_zone="Asia/Tokyo", due_date="2027-03-12T09:00:00+09:00")
    content = lean_content(task, ZONE)
    assert content["time_zone"] == "Asia/Tokyo"
    assert render(task, content, ZONE) == "#12 Buy milk · due Fri 2027-03-12 09:00 Asia/Tokyo"


def test_a_list_states_the_zone_and_time_once_and_renders_one_line_per_task() -> None:
    full = _task(
        priority="high",
        due_date="2027-03-12T09:00:00+01:00",
        category=CategoryOut(id=1, name="Home"),
        tags=[TagOut(id=2, name="shopping")],
        recurrence_rule="FREQ=WEEKLY;BYDAY=MO",
        recurrence=RecurrenceOut(
            text="every week on Monday", next_occurrences=["2027-03-15T09:00:00+01:00", "2027-03-22T09:00:00+01:00"]
        ),
        remind_at="2027-03-12T08:45:00+01:00",
    )
    listed = [RankedTask(**task.model_dump()) for task in (full, _task(id=13, title="Call mum"))]
    page = TaskList(tasks=listed, total=120, limit=2)
    content = lean_content(page, ZONE, "2027-03-10T14:00:00+01:00")
    assert (content["time_zone"], content["now"], "offset" in content) == (ZONE, "2027-03-10T14:00:00+01:00", False)
    assert all("time_zone" not in task and "updated_at" not in task for task in content["tasks"])
    assert content["tasks"][0]["recurrence"]["next_occurrences"] == ["2027-03-15T09:00:00+01:00"]
    assert render(page, content, ZONE).splitlines() == [
        "2 of 120 tasks · more: offset=2 · now Wed 2027-03-10 14:00 Europe/Paris",
        "#12 Buy milk · high · due Fri 2027-03-12 09:00 · #shopping · @Home · every week on Monday · remind 08:45",
        "#13 Call mum",
    ]


def test_every_time_of_a_task_is_to_the_second() -> None:
    """Every time field a task result has (`…_at`, `…_date`), the trash's `deleted_at` too, loses its fraction."""
    times = [name for name in TaskOut.model_fields if name.endswith(("_at", "_date"))]
    assert "deleted_at" in times and "due_date" in times
    given = {name: f"2027-03-{10 + i}T09:00:00.654321+01:00" for i, name in enumerate(times)}
    content = lean_content(_task(**given), ZONE)
    assert {name: content[name] for name in times} == {name: f"{value[:19]}+01:00" for name, value in given.items()}
