# The one image every process runs from: mcp-todo (serve, migrate, relay, topics, token), mcp-todo-notifier and
# mcp-todo-recurrer. Two stages: the builder makes the wheel and installs it with its dependencies into a virtualenv;
# the final image is python:3.11-slim with that virtualenv alone (no pip, no build tools, no caches, no sources).

FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml uv.lock README.md LICENSE ./
COPY mcp_todo ./mcp_todo
COPY workers ./workers
COPY sql ./sql
# The runtime dependencies at their locked versions (uv.lock, hash-checked), then the package alone. uv only exports
# the lock; it stays in the builder. Every runtime dependency has a wheel for CPython 3.11 on Linux: nothing is
# compiled.
RUN pip install uv==0.13.10 \
    && uv export --quiet --frozen --no-emit-project -o /tmp/locked.txt \
    && python -m venv /opt/mcp-todo \
    && /opt/mcp-todo/bin/pip install --require-hashes --no-deps -r /tmp/locked.txt \
    && pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/mcp-todo/bin/pip install --no-deps /wheels/*.whl \
    && /opt/mcp-todo/bin/pip check \
    && /opt/mcp-todo/bin/pip uninstall --yes pip \
    && find /opt/mcp-todo -name __pycache__ -prune -exec rm -rf {} +

FROM python:3.11-slim
LABEL org.opencontainers.image.title="mcp-todo" \
      org.opencontainers.image.description="MCP task server on PostgreSQL with Kafka events, and its workers" \
      org.opencontainers.image.licenses="MIT"
COPY --from=builder /opt/mcp-todo /opt/mcp-todo
# The base image's pip is not needed at run time either.
RUN python -m pip uninstall --yes --no-cache-dir pip setuptools wheel \
    && mkdir -p /data \
    && chown 10001:10001 /data
ENV PATH=/opt/mcp-todo/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MCP_TODO_DATA_DIR=/data
WORKDIR /data
USER 10001:10001
EXPOSE 8000 9464
CMD ["mcp-todo", "serve", "--transport", "streamable-http", "--host", "0.0.0.0", "--port", "8000"]
