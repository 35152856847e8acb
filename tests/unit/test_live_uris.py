"""Which live resources an event touches (mcp_todo.pipeline.live): its task always, today's agenda only when the
change can show there, and the inbox announcements' users and tasks."""

from __future__ import annotations

from mcp_todo.events import TASK_COMPLETED, TASK_UPDATED, Envelope
from mcp_todo.pipeline.live import NOTIFICATIONS_URI, TODAY_URI, inbox_uris, uris_of


def event(event_type: str, data: dict[str, object]) -> Envelope:
    return Envelope(event_type, "alice", 42, data)


def test_a_task_event_touches_its_task_and_today_only_when_the_agenda_can_change() -> None:
    assert uris_of(event(TASK_UPDATED, {"description": "more words"})) == {"todo://tasks/42"}
    assert uris_of(event(TASK_UPDATED, {"due_date": "2027-03-10T09:00:00+01:00"})) == {"todo://tasks/42", TODAY_URI}
    assert uris_of(event(TASK_UPDATED, {"title": "renamed"})) == {"todo://tasks/42", TODAY_URI}
    assert uris_of(event(TASK_COMPLETED, {"time_zone": "UTC"})) == {"todo://tasks/42", TODAY_URI}


def test_an_inbox_announcement_names_the_user_and_the_tasks() -> None:
    assert inbox_uris('{"user":"bob","tasks":[7]}') == (
        "bob",
        frozenset({NOTIFICATIONS_URI, TODAY_URI, "todo://tasks/7"}),
    )
    assert inbox_uris('{"user":"bob","tasks":[]}') == ("bob", frozenset({NOTIFICATIONS_URI, TODAY_URI}))
    for unreadable in ("", "not json", '{"tasks":[1]}', '{"user":7}', '{"user":"bob","tasks":["x"]}'):
        assert inbox_uris(unreadable) is None
