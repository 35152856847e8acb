"""Two users on one database never see or touch each other's rows: another user's id reads exactly like a missing one,
and nothing of theirs shows in a list, a search, a count or the notifications resource."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.tool_client import Tools, execute, outbox, row_counts, server_for, tools_of


@pytest.fixture
async def alice(db: AsyncEngine, database_dsn: str) -> AsyncIterator[Tools]:
    async with tools_of(server_for(db, database_dsn, "alice")) as tools:
        yield tools


@pytest.fixture
async def bob(db: AsyncEngine, database_dsn: str) -> AsyncIterator[Tools]:
    async with tools_of(server_for(db, database_dsn, "bob")) as tools:
        yield tools


@pytest.fixture
async def bobs(bob: Tools) -> dict[str, Any]:
    """Bob's things: a category, a tag, a tagged categorised task."""
    category = await bob.add_category(name="Secret")
    tag = await bob.add_tag(name="private")
    task = await bob.add_task(
        title="bob's secret plan",
        description="nobody else may read this",
        due_date="2020-01-01",
        category_id=category["id"],
        tag_ids=[tag["id"]],
    )
    return {"category": category, "tag": tag, "task": task}


def missing_task(task_id: int) -> str:
    return f"NOT_FOUND: task {task_id} does not exist for this user — list_tasks shows the ids"


def missing_category(category_id: int) -> str:
    return f"NOT_FOUND: category {category_id} does not exist for this user — list_categories shows the ids"


def missing_tag(tag_id: int) -> str:
    return f"NOT_FOUND: tag {tag_id} does not exist for this user — list_tags shows the ids"


async def test_another_users_ids_are_not_found_everywhere(alice: Tools, bobs: dict[str, Any], db: AsyncEngine) -> None:
    task_id, category_id, tag_id = bobs["task"]["id"], bobs["category"]["id"], bobs["tag"]["id"]
    own_task = await alice.add_task(title="mine")
    before = await row_counts(db)
    events_before = await outbox(db)

    expectations: list[tuple[str, dict[str, Any], str]] = [
        ("complete_task", {"task_id": task_id}, missing_task(task_id)),
        ("update_task", {"task_id": task_id, "title": "hijacked"}, missing_task(task_id)),
        ("update_task", {"task_id": own_task["id"], "category_id": category_id}, missing_category(category_id)),
        ("delete_task", {"task_id": task_id}, missing_task(task_id)),
        ("delete_category", {"category_id": category_id}, missing_category(category_id)),
        ("delete_tag", {"tag_id": tag_id}, missing_tag(tag_id)),
        ("add_tag_to_task", {"task_id": task_id, "tag_id": tag_id}, missing_task(task_id)),
        ("add_tag_to_task", {"task_id": own_task["id"], "tag_id": tag_id}, missing_tag(tag_id)),
        ("remove_tag_from_task", {"task_id": task_id, "tag_id": tag_id}, missing_task(task_id)),
        ("remove_tag_from_task", {"task_id": own_task["id"], "tag_id": tag_id}, missing_tag(tag_id)),
        ("set_reminder", {"task_id": task_id, "remind_at": None}, missing_task(task_id)),
        ("set_reminder", {"task_id": task_id, "remind_before_minutes": 5}, missing_task(task_id)),
        ("add_task", {"title": "x", "category_id": category_id}, missing_category(category_id)),
        ("add_task", {"title": "x", "tag_ids": [tag_id]}, missing_tag(tag_id)),
        ("list_tasks", {"category_id": category_id}, missing_category(category_id)),
        ("list_tasks", {"tag_ids": [tag_id]}, missing_tag(tag_id)),
        ("search_tasks", {"query": "secret", "category_id": category_id}, missing_category(category_id)),
        ("search_tasks", {"query": "secret", "tag_ids": [tag_id]}, missing_tag(tag_id)),
    ]
    for tool, arguments, expected in expectations:
        assert await alice.error(tool, arguments) == expected, (tool, arguments)
        # The same text as for an id nobody has.
    for tool, arguments, _expected in expectations[:2]:
        assert await alice.error(tool, {**arguments, "task_id": 999_999}) == missing_task(999_999)

    assert await row_counts(db) == before
    assert await outbox(db) == events_before


async def test_lists_and_counts_never_leak(alice: Tools, bob: Tools, bobs: dict[str, Any], db: AsyncEngine) -> None:
    await alice.add_category(name="Secret")  # the same name is fine for another user
    await alice.add_tag(name="private")
    await alice.add_task(title="alice's plan", due_date="2020-01-02")

    tasks = await alice.list_tasks()
    assert [t["title"] for t in tasks["tasks"]] == ["alice's plan"] and tasks["total"] == 1
    assert (await alice.search_tasks(query="secret plan"))["total"] == 0
    assert [t["title"] for t in (await alice.search_tasks(query=""))["tasks"]] == ["alice's plan"]
    assert (await alice.search_tasks(query="nobody"))["tasks"] == []
    categories = await alice.list_categories()
    assert [(c["name"], c["task_count"]) for c in categories["categories"]] == [("Secret", 0)]
    tags = await alice.list_tags()
    assert [(t["name"], t["task_count"]) for t in tags["tags"]] == [("private", 0)]
    assert [t["title"] for t in (await alice.get_overdue_tasks())["tasks"]] == ["alice's plan"]
    assert (await alice.get_upcoming_tasks(days=365))["total"] == 0

    await execute(
        db,
        "INSERT INTO notifications (user_id, task_id, remind_at, title, message) "
        "VALUES ('bob', :id, now(), 'bob''s secret plan', 'secret')",
        id=bobs["task"]["id"],
    )
    body = json.loads((await alice.client.read_resource("todo://notifications")).contents[0].text)  # type: ignore[union-attr]
    assert body == {"notifications": [], "total": 0}
    body = json.loads((await bob.client.read_resource("todo://notifications")).contents[0].text)  # type: ignore[union-attr]
    assert body["total"] == 1

    # Bob still sees exactly his own.
    assert [t["title"] for t in (await bob.list_tasks())["tasks"]] == ["bob's secret plan"]
    assert (await bob.list_categories())["categories"][0]["task_count"] == 1


async def test_deleting_a_category_or_tag_touches_only_its_owners_tasks(
    alice: Tools, bob: Tools, bobs: dict[str, Any], db: AsyncEngine
) -> None:
    category = await alice.add_category(name="Mine")
    tag = await alice.add_tag(name="mine")
    await alice.add_task(title="a", category_id=category["id"], tag_ids=[tag["id"]])
    await alice.delete_category(category_id=category["id"])
    await alice.delete_tag(tag_id=tag["id"])
    theirs = (await bob.list_tasks())["tasks"][0]
    assert theirs["category"] == bobs["category"] and theirs["tags"] == [bobs["tag"]]
    assert {e["user_id"] for e in await outbox(db) if e["task_id"] == theirs["id"]} == {"bob"}
