"""Which Host and Origin headers the HTTP transports accept for a bind address and the allowed-hosts settings (the
requests themselves: tests/e2e/test_http.py)."""

from __future__ import annotations

from typing import Any

import pytest

from mcp_todo.domain.errors import ConfigurationError
from mcp_todo.server.http_server import transport_security
from mcp_todo.settings import Settings


def settings(**env: Any) -> Settings:
    return Settings(_env_file=None, **env)  # type: ignore[call-arg]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_every_loopback_bind_is_protected(host: str) -> None:
    security = transport_security(host, settings())
    assert security.enable_dns_rebinding_protection
    bound = f"[{host}]" if ":" in host else host
    assert {"127.0.0.1:*", "localhost:*", "[::1]:*", f"{bound}:*"} <= set(security.allowed_hosts)
    assert f"http://{bound}:*" in security.allowed_origins
    assert not any("evil" in allowed for allowed in security.allowed_hosts + security.allowed_origins)


def test_a_public_bind_is_open_unless_hosts_are_named() -> None:
    assert not transport_security("0.0.0.0", settings()).enable_dns_rebinding_protection
    named = transport_security(
        "0.0.0.0",
        settings(MCP_TODO_ALLOWED_HOSTS="todo.example.com,  api.example:8443", MCP_TODO_ALLOWED_ORIGINS="https://a.b"),
    )
    assert named.enable_dns_rebinding_protection
    assert named.allowed_hosts == ["todo.example.com", "todo.example.com:*", "api.example:8443"]
    assert "https://todo.example.com" in named.allowed_origins and "https://a.b" in named.allowed_origins
    assert "127.0.0.1:*" not in named.allowed_hosts


def test_origins_without_hosts_on_a_public_bind_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="MCP_TODO_ALLOWED_HOSTS"):
        transport_security("0.0.0.0", settings(MCP_TODO_ALLOWED_ORIGINS="https://app.example.com"))
