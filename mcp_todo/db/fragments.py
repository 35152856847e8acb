"""SQL fragments that several statements share, written once so they cannot drift apart.

A fragment is text from this package only (table and alias names chosen by the statement that uses it), never from
input; every value stays a bound parameter of the statement.
"""

from __future__ import annotations


def tags_of(task_id: str, user_id: str, *, links: str = "task_tags", alias: str = "g") -> str:
    """LEFT JOIN LATERAL of the tags of the task `task_id` (an SQL expression, e.g. "t.id") owned by `user_id`: the
    columns `tag_ids`, `tag_names`, `tag_colors` of `alias`, each in the order a task's tags are shown (by name,
    ignoring case, then id), NULL for a task without tags. `links` is the relation of (task_id, tag_id, user_id) rows
    to read the links from (a data-modifying CTE's RETURNING, when the statement writes them itself: the rest of the
    statement cannot see rows it wrote)."""
    return (
        "LEFT JOIN LATERAL (SELECT array_agg(tg.id ORDER BY lower(tg.name), tg.id) AS tag_ids, "
        "array_agg(tg.name ORDER BY lower(tg.name), tg.id) AS tag_names, "
        "array_agg(tg.color ORDER BY lower(tg.name), tg.id) AS tag_colors "
        f"FROM {links} tt JOIN tags tg ON tg.user_id = tt.user_id AND tg.id = tt.tag_id "
        f"WHERE tt.task_id = {task_id} AND tt.user_id = {user_id}) {alias} ON true"
    )
