"""A task in the trash shows when it was deleted to the second, like every other time of a result (the stored time
keeps its fraction)."""

from __future__ import annotations

import re

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.tool_client import execute, server_for, task_row, tools_of

TO_THE_SECOND = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")


async def test_deleted_at_is_to_the_second_in_results(db: AsyncEngine, database_dsn: str) -> None:
    async with tools_of(server_for(db, database_dsn, "alice")) as tools:
        task = await tools.add_task(title="old plan")
        await tools.delete_task(task_id=task["id"])
        # A fraction PostgreSQL keeps (now() has microseconds; one that happens to be whole would prove nothing).
        shifted = "UPDATE tasks SET deleted_at = deleted_at + interval '0.654321 s' WHERE id = :id"
        await execute(db, shifted, id=task["id"])
        assert (await task_row(db, task["id"]))["deleted_at"].microsecond != 0
        result = await tools.raw("list_tasks", {"status": "deleted"})
    assert result.structured_content is not None
    (trashed,) = result.structured_content["tasks"]
    assert TO_THE_SECOND.match(trashed["deleted_at"]), trashed["deleted_at"]
    assert TO_THE_SECOND.match(trashed["created_at"]), trashed["created_at"]
