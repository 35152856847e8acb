"""Through the MCP client: batch calls (task_ids, tasks: all or nothing), repeating after completion
(recurrence_from) and a recurring parent's subtasks, with the recurrer's handler making the next occurrence."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.events import TASK_COMPLETED, Envelope
from mcp_todo.handlers.next_occurrence import handle_task_completed, handle_task_completed_batch
from tests.integration.tool_client import Clock, Tools, outbox, row_counts, server_for, tools_of


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2027, 1, 2, 15, 0, tzinfo=UTC))


@pytest.fixture
async def tools(db: AsyncEngine, database_dsn: str, clock: Clock) -> AsyncIterator[Tools]:
    async with tools_of(server_for(db, database_dsn, "alice", clock=clock)) as client:
        yield client


async def completions(db: AsyncEngine) -> list[Envelope]:
    return [Envelope.from_dict(row["payload"]) for row in await outbox(db) if row["event_type"] == TASK_COMPLETED]


async def unchanged(db: AsyncEngine, before: tuple[dict[str, int], list[dict[str, Any]]]) -> bool:
    return (await row_counts(db), await outbox(db)) == before


# --- batches ------------------------------------------------------------------------------------------------------


async def test_batches_complete_tag_untag_and_trash_many_tasks(tools: Tools, db: AsyncEngine) -> None:
    ids = [(await tools.add_task(title=f"task {n}"))["id"] for n in range(3)]
    tag = await tools.add_tag(name="batch")
    await tools.complete_task(task_id=ids[0])

    tagged = await tools.add_tag_to_task(task_ids=ids, tag_id=tag["id"])
    assert [(r["task_id"], r["outcome"]) for r in tagged["results"]] == [(i, "tagged") for i in ids]
    again = await tools.add_tag_to_task(task_ids=ids[:1], tag_id=tag["id"])
    assert again["results"][0]["outcome"] == "unchanged"
    untagged = await tools.remove_tag_from_task(task_ids=ids[1:], tag_id=tag["id"])
    assert [r["outcome"] for r in untagged["results"]] == ["untagged", "untagged"]

    done = await tools.complete_task(task_ids=ids)
    assert [r["outcome"] for r in done["results"]] == ["unchanged", "completed", "completed"]
    assert len(await completions(db)) == 3

    trashed = await tools.delete_task(task_ids=ids[1:])
    assert [r["outcome"] for r in trashed["results"]] == ["trashed", "trashed"]
    assert [t["id"] for t in (await tools.list_tasks())["tasks"]] == [ids[0]]


async def test_a_batch_with_bad_items_names_each_and_changes_nothing(tools: Tools, db: AsyncEngine) -> None:
    first = await tools.add_task(title="one")
    second = await tools.add_task(title="two")
    await tools.delete_task(task_id=second["id"])
    before = (await row_counts(db), await outbox(db))

    message = await tools.error("complete_task", {"task_ids": [first["id"], 999, second["id"]]})
    assert message.startswith(
        "NOT_FOUND: 2 of 3 items failed, so nothing was changed — task_ids[1]: NOT_FOUND: task 999"
    )
    assert f"task_ids[2]: NOT_FOUND: task {second['id']} is in the trash" in message
    assert (await tools.list_tasks(status="pending"))["total"] == 1
    assert await unchanged(db, before)

    for arguments, expected in (
        ({"task_ids": [first["id"], first["id"]]}, "VALIDATION_ERROR: task_ids[1] repeats task"),
        ({"task_id": first["id"], "task_ids": [first["id"]]}, "VALIDATION_ERROR: give exactly one of task_id"),
        ({}, "VALIDATION_ERROR: give exactly one of task_id"),
    ):
        for tool in ("complete_task", "delete_task"):
            assert (await tools.error(tool, arguments)).startswith(expected), (tool, arguments)
    too_many = await tools.error("delete_task", {"task_ids": list(range(1, 102))})
    assert "task_ids" in too_many
    assert (await tools.error("delete_task", {"task_ids": []})).count("task_ids")
    assert await unchanged(db, before)


async def test_add_task_takes_a_batch_of_tasks_all_or_nothing(tools: Tools, db: AsyncEngine) -> None:
    home = await tools.add_category(name="Home")
    parent = await tools.add_task(title="Plan the week")
    made = await tools.add_task(
        tasks=[
            {"title": "Monday", "due_date": "2027-01-04T09:00", "category_id": home["id"], "parent_id": parent["id"]},
            {"title": "Tuesday", "priority": "high", "parent_id": parent["id"]},
            {"title": "Gym", "due_date": "2027-01-04T07:00", "recurrence_rule": "FREQ=DAILY;INTERVAL=2"},
        ]
    )
    assert [r["outcome"] for r in made["results"]] == ["created"] * 3
    listed = {t["title"]: t for t in (await tools.list_tasks())["tasks"]}
    assert listed["Monday"]["category"]["id"] == home["id"] and listed["Tuesday"]["priority"] == "high"
    assert (listed["Plan the week"]["open_subtasks"], listed["Plan the week"]["total_subtasks"]) == (2, 2)
    created = [row for row in await outbox(db) if row["event_type"] == "task.created"]
    assert [row["task_id"] for row in created][-3:] == [r["task_id"] for r in made["results"]]

    before = (await row_counts(db), await outbox(db))
    message = await tools.error(
        "add_task",
        {
            "tasks": [
                {"title": "fine"},
                {"title": "bad category", "category_id": 999},
                {"title": "bad rule", "due_date": "2027-01-04", "recurrence_rule": "FREQ=HOURLY"},
            ]
        },
    )
    assert message.startswith("VALIDATION_ERROR: 2 of 3 items failed, so nothing was changed")
    assert "tasks[1]: NOT_FOUND: category 999" in message and "tasks[2]: INVALID_RECURRENCE_RULE" in message
    both = await tools.error("add_task", {"title": "one", "tasks": [{"title": "two"}]})
    assert both.startswith("VALIDATION_ERROR: give either one task's fields")
    assert await unchanged(db, before)


# --- repeating after completion -----------------------------------------------------------------------------------


async def test_repeat_after_completion_keeps_the_wall_time_across_dst(
    tools: Tools, db: AsyncEngine, clock: Clock
) -> None:
    task = await tools.add_task(
        title="Water plants",
        due_date="2027-03-10T09:00",
        recurrence_rule="FREQ=DAILY;INTERVAL=3",
        recurrence_from="completion",
    )
    assert task["recurrence_from"] == "completion"
    assert task["recurrence"]["text"] == "3 days after completion"
    assert not task["recurrence"].get("next_occurrences")

    # Done on the evening of March 11 (EST); three days later is March 14, the day clocks go forward: 09:00 EDT.
    clock.fixed = datetime(2027, 3, 12, 1, 30, tzinfo=UTC)
    done = await tools.complete_task(task_id=task["id"])
    assert done["next_occurrence"] == "2027-03-14T09:00:00-04:00"
    [completed] = await completions(db)
    assert completed.data["recurrence_from"] == "completion"

    new_id = await handle_task_completed(db, completed)
    assert new_id is not None
    assert await handle_task_completed(db, completed) is None  # a replay creates nothing more
    [successor] = [t for t in (await tools.list_tasks(status="pending"))["tasks"]]
    assert successor["id"] == new_id and successor["due_date"] == "2027-03-14T09:00:00-04:00"
    assert successor["recurrence_from"] == "completion" and successor["recurrence_rule"] == "FREQ=DAILY;INTERVAL=3"
    created = [row for row in await outbox(db) if row["event_type"] == "task.created" and row["task_id"] == new_id]
    assert created[0]["payload"]["data"]["recurrence"]["text"] == "3 days after completion"


async def test_repeat_after_completion_counts_down_and_ends(tools: Tools, db: AsyncEngine, clock: Clock) -> None:
    task = await tools.add_task(
        title="Physio",
        due_date="2027-01-04T18:00",
        recurrence_rule="FREQ=WEEKLY;COUNT=2",
        recurrence_from="completion",
    )
    assert task["recurrence"]["text"] == "1 week after completion, twice"
    clock.fixed = datetime(2027, 1, 6, 12, 0, tzinfo=UTC)  # done on Wednesday: next Wednesday at 18:00
    done = await tools.complete_task(task_id=task["id"])
    assert done["next_occurrence"] == "2027-01-13T18:00:00-05:00"
    second_id = await handle_task_completed(db, (await completions(db))[-1])
    assert second_id is not None
    second = next(t for t in (await tools.list_tasks(status="pending"))["tasks"] if t["id"] == second_id)
    assert second["recurrence_rule"] == "FREQ=WEEKLY;COUNT=1" and second["recurrence"]["text"].endswith(", once")
    clock.fixed = datetime(2027, 1, 14, 12, 0, tzinfo=UTC)
    last = await tools.complete_task(task_id=second_id)
    assert last.get("next_occurrence") is None
    assert await handle_task_completed(db, (await completions(db))[-1]) is None


async def test_repeat_after_completion_takes_an_interval_only(tools: Tools, db: AsyncEngine) -> None:
    before = (await row_counts(db), await outbox(db))
    byday = await tools.error(
        "add_task",
        {
            "title": "x",
            "due_date": "2027-01-04",
            "recurrence_rule": "FREQ=WEEKLY;BYDAY=MO",
            "recurrence_from": "completion",
        },
    )
    assert byday.startswith("INVALID_RECURRENCE_RULE: BYDAY cannot be used when repeating after completion")
    no_rule = await tools.error("add_task", {"title": "x", "recurrence_from": "completion"})
    assert no_rule.startswith("VALIDATION_ERROR: recurrence_from=completion repeats a recurrence_rule's interval")
    assert await unchanged(db, before)

    weekly = await tools.add_task(title="Review", due_date="2027-01-04T09:00", recurrence_rule="FREQ=WEEKLY;BYDAY=MO")
    switch = await tools.error("update_task", {"task_id": weekly["id"], "recurrence_from": "completion"})
    assert switch.startswith("INVALID_RECURRENCE_RULE: BYDAY")
    switched = await tools.update_task(
        task_id=weekly["id"], recurrence_rule="FREQ=WEEKLY;INTERVAL=2", recurrence_from="completion"
    )
    assert switched["recurrence"]["text"] == "2 weeks after completion"
    back = await tools.update_task(task_id=weekly["id"], recurrence_from="schedule")
    assert back.get("recurrence_from") is None and back["recurrence"]["text"] == "every 2 weeks"
    cleared = await tools.update_task(task_id=weekly["id"], recurrence_rule=None)
    assert cleared.get("recurrence_from") is None and cleared["recurrence"] is None


async def test_a_recurring_parents_next_occurrence_gets_fresh_subtasks(
    tools: Tools, db: AsyncEngine, clock: Clock
) -> None:
    parent = await tools.add_task(title="Weekly shop", due_date="2027-01-04T10:00", recurrence_rule="FREQ=WEEKLY")
    milk = await tools.add_task(title="Milk", parent_id=parent["id"], priority="high")
    bread = await tools.add_task(title="Bread", parent_id=parent["id"])
    eggs = await tools.add_task(title="Eggs", parent_id=parent["id"])
    await tools.complete_task(task_id=milk["id"])
    await tools.delete_task(task_id=eggs["id"])  # trashed: not copied
    clock.fixed = datetime(2027, 1, 4, 16, 0, tzinfo=UTC)
    await tools.complete_task(task_id=parent["id"])  # completes Bread too
    [parent_done] = [e for e in await completions(db) if e.task_id == parent["id"]]

    # The same event twice in one batch, and again later: one successor, one set of copies.
    results = await handle_task_completed_batch(db, [parent_done, parent_done])
    new_id = results[0]
    assert new_id is not None and results[1] is None
    assert await handle_task_completed(db, parent_done) is None
    copies = (await tools.list_tasks(parent_id=new_id, sort_order="asc"))["tasks"]
    assert [(t["title"], t["status"], t["priority"]) for t in copies] == [
        ("Milk", "pending", "high"),
        ("Bread", "pending", "medium"),
    ]
    assert all(t.get("due_date") is None for t in copies)
    successor = next(t for t in (await tools.list_tasks(status="pending"))["tasks"] if t["id"] == new_id)
    assert (successor["open_subtasks"], successor["total_subtasks"]) == (2, 2)
    created = [row["task_id"] for row in await outbox(db) if row["event_type"] == "task.created"][-3:]
    assert created == [new_id, *(t["id"] for t in copies)]
    assert {t["id"] for t in (await tools.list_tasks(parent_id=parent["id"]))["tasks"]} == {milk["id"], bread["id"]}
