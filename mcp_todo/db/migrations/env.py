"""Alembic environment: always handed an open connection by mcp_todo.db.migrate (never connects by itself)."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, transaction_per_migration=True)
with context.begin_transaction():
    context.run_migrations()
