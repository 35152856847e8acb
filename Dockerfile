# The one image all processes run from: mcp-todo (server, migrate, relay, topics), mcp-todo-notifier, mcp-todo-recurrer.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY mcp_todo ./mcp_todo
COPY workers ./workers
COPY sql ./sql
RUN pip install --no-cache-dir . && useradd --create-home --uid 10001 todo
USER 10001
ENTRYPOINT []
CMD ["mcp-todo", "serve", "--transport", "streamable-http", "--host", "0.0.0.0", "--port", "8000"]
