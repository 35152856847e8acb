from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from mcp_todo.db.migrate import head_revision, require_current_schema


async def test_migrated_database_is_current(db: AsyncEngine) -> None:
    await require_current_schema(db)
    async with db.connect() as conn:
        rev: str = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
    assert rev == head_revision()
