"""The checker tests/e2e/test_routing.py runs over pg_stat_statements: it must fail on a statement that touches a
per-user table without naming its user, and pass the ones that do or that the cross-shard list names."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.routing import CROSS_SHARD, check, names_one_user, tables_of, tokenize


def violations(*queries: str) -> list[str]:
    return [v.query for v in check(list(queries))[0]]


@pytest.mark.parametrize(
    "bad",
    [
        "SELECT * FROM tasks WHERE id = $1",
        "UPDATE tasks SET title = $1 WHERE id = $2",
        "DELETE FROM task_tags WHERE task_id = $1",
        "SELECT t.id FROM categories c JOIN tasks t ON t.category_id = c.id AND t.user_id = c.user_id WHERE c.id = $1",
        'SELECT count(*) FROM "tasks"',
        "SELECT a.id FROM api_tokens a, tasks t WHERE t.id = a.id",
        "INSERT INTO tasks (user_id, title) SELECT user_id, title FROM tasks WHERE id = $1",
        "select * from only public.notifications where task_id = $1 -- user_id = $2 in a comment",
        "SELECT 'user_id = $1' FROM outbox",
        # Names its user, but joins a second per-user table on its id alone: not a co-located join.
        "SELECT * FROM tasks t JOIN task_tags tt ON tt.task_id = t.id WHERE t.user_id = $1",
        "SELECT * FROM tasks t WHERE t.user_id = $1 AND EXISTS (SELECT 1 FROM tasks s WHERE s.parent_id = t.id)",
    ],
)
def test_a_statement_on_a_per_user_table_without_user_id_is_a_violation(bad: str) -> None:
    assert violations(bad) == [bad]


@pytest.mark.parametrize(
    "good",
    [
        "SELECT * FROM tasks WHERE user_id = $1 AND id = $2",
        "SELECT * FROM tasks t WHERE $1 = t.user_id",
        "SELECT * FROM tasks t JOIN task_tags tt ON tt.user_id = t.user_id AND tt.task_id = t.id WHERE t.user_id = $1",
        "UPDATE tasks t SET title = $1 WHERE t.user_id = ANY($2) AND t.id = $3",
        "DELETE FROM tags WHERE user_id IN ($1, $2)",
        "INSERT INTO task_tags (user_id, task_id, tag_id) VALUES ($1::VARCHAR, $2::BIGINT, $3::BIGINT)",
        "WITH new AS (INSERT INTO tasks (id, user_id, title) SELECT n.id, $1, $2 FROM (SELECT $3 AS id) n RETURNING *)"
        " SELECT * FROM new",
        "SELECT id FROM api_tokens WHERE secret_sha256 = $1",
        "SELECT 1",
        "SELECT t.user_id, t.id FROM tasks t WHERE t.status = $1 AND NOT t.reminder_sent AND t.remind_at <= now()",
    ],
)
def test_a_statement_naming_its_user_or_listed_or_on_no_per_user_table_passes(good: str) -> None:
    assert violations(good) == []


def test_the_tables_are_found_in_from_lists_joins_and_writes_not_in_column_names() -> None:
    sql = (
        "SELECT t.id, g.tags FROM tasks t, LATERAL (SELECT array_agg(x) AS tags FROM task_tags x) g "
        "JOIN categories c ON true; UPDATE outbox SET x = 1; INSERT INTO notifications (a) VALUES (1)"
    )
    assert tables_of(tokenize(sql)) >= {"tasks", "task_tags", "categories", "outbox", "notifications"}
    assert "tags" not in tables_of(tokenize(sql))
    # user_id only as a column compared with another column names no user.
    assert not names_one_user(tokenize("SELECT * FROM tasks t JOIN tags g ON g.user_id = t.user_id"))


def test_every_listed_statement_says_how_it_behaves_distributed() -> None:
    assert len({entry.name for entry in CROSS_SHARD}) == len(CROSS_SHARD)
    assert all(len(entry.behaviour) > 40 for entry in CROSS_SHARD)


def test_the_scaling_guide_lists_every_cross_shard_statement() -> None:
    guide = (Path(__file__).resolve().parents[2] / "docs" / "scaling.md").read_text()
    missing = [entry.name for entry in CROSS_SHARD if f"| {entry.name} |" not in guide]
    assert missing == []
