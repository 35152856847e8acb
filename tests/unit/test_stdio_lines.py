"""What the stdio transport answers for each kind of line (the subprocess test in tests/e2e/test_stdio.py shows the
answers reach the host)."""

from __future__ import annotations

import pytest

from mcp_todo.server.stdio import line_error


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"not json", -32700),
        (b'{"a": ' + b"[" * 250 + b"]" * 250 + b"}", -32700),
        ('{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"\u00e9"}}'.encode("latin-1"), -32700),
        (b'{"jsonrpc":"2.0","id":1,"method":"ping"', -32700),
        (b'{"jsonrpc":"1.0","id":1,"method":"ping"}', -32600),
        (b"[]", -32600),
        (b"42", -32600),
    ],
)
def test_unreadable_lines_are_parse_errors_or_invalid_requests(line: bytes, code: int) -> None:
    error = line_error(line)
    assert error is not None and error.code == code


@pytest.mark.parametrize(
    "line",
    [
        b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n',
        b'{"jsonrpc":"2.0","method":"notifications/initialized"}',
        '{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"add_task","arguments":{"title":"é"}}}'.encode(),
        b'{"jsonrpc":"2.0","id":1,"result":{"deep":' + b"[" * 150 + b"]" * 150 + b"}}",
    ],
)
def test_json_rpc_messages_pass(line: bytes) -> None:
    assert line_error(line) is None
