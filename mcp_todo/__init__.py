"""mcp-todo: a task manager for LLM hosts, as an MCP server on PostgreSQL with Kafka events."""

__version__ = "0.1.0"
