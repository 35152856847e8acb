"""search_tasks against the stored weighted vector: web-search syntax, stemming, ranking (title before description),
stop words, filters, totals and paging."""

from __future__ import annotations

import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.tool_client import Tools, first_text


async def titles(tools: Tools, query: str, **filters: object) -> list[str]:
    result = await tools.search_tasks(query=query, **filters)
    assert result["query"] == query
    return [task["title"] for task in result["tasks"]]


async def test_title_matches_rank_before_description_matches(tools: Tools) -> None:
    await tools.add_task(title="Buy groceries", description="the invoice for the garden is in the drawer")
    await tools.add_task(title="Pay invoice", description="electricity")
    await tools.add_task(title="Unrelated", description="nothing to see")
    await tools.add_task(title="Call plumber", description="about the invoice, and the second invoice too")
    result = await tools.search_tasks(query="invoice")
    assert result["tasks"][0]["title"] == "Pay invoice"
    assert set(t["title"] for t in result["tasks"][1:]) == {"Buy groceries", "Call plumber"}
    assert result["total"] == 3
    scores = [t["relevance_score"] for t in result["tasks"]]
    assert all(score > 0 for score in scores)
    # Among description-only matches, the better ranked comes first.
    assert result["tasks"][1]["title"] == "Call plumber" and scores[1] >= scores[2]


async def test_stemming_phrases_exclusions_and_or(tools: Tools) -> None:
    await tools.add_task(title="Running shoes", description="for the marathon")
    await tools.add_task(title="Run errands", description="post office then bank")
    await tools.add_task(title="Shoe repair", description="heel is broken")
    assert set(await titles(tools, "runs")) == {"Running shoes", "Run errands"}
    assert await titles(tools, '"post office"') == ["Run errands"]
    assert await titles(tools, '"office post"') == []
    assert await titles(tools, "run -marathon") == ["Run errands"]
    assert set(await titles(tools, "marathon or heel")) == {"Running shoes", "Shoe repair"}
    assert set(await titles(tools, "SHOES")) == {"Running shoes", "Shoe repair"}


async def test_empty_query_lists_all_newest_first(tools: Tools) -> None:
    for name in ("first", "second", "third"):
        await tools.add_task(title=name)
    result = await tools.search_tasks(query="")
    assert [t["title"] for t in result["tasks"]] == ["third", "second", "first"]
    assert result["total"] == 3 and all(t["relevance_score"] == 0 for t in result["tasks"])
    assert await titles(tools, "   ") == ["third", "second", "first"]


async def test_a_query_of_stop_words_still_finds_its_words(tools: Tools) -> None:
    await tools.add_task(title="To be or not to be", description="Hamlet's question")
    await tools.add_task(title="The Who concert")
    await tools.add_task(title="Groceries", description="apples")
    assert await titles(tools, "to be or not to be") == ["To be or not to be"]
    assert await titles(tools, "the who") == ["The Who concert"]
    assert await titles(tools, "the") == ["The Who concert"]
    assert await titles(tools, "!!! ???") == []


async def test_filters_total_and_paging(tools: Tools) -> None:
    home = await tools.add_category(name="Home")
    red = await tools.add_tag(name="red")
    ids = []
    for i in range(7):
        task = await tools.add_task(
            title=f"clean room {i}",
            priority="high" if i % 2 else "low",
            category_id=home["id"] if i < 3 else None,
            tag_ids=[red["id"]] if i in (1, 5) else None,
        )
        ids.append(task["id"])
    await tools.complete_task(task_id=ids[0])

    page = await tools.search_tasks(query="clean", limit=3, offset=3)
    assert page["total"] == 7 and len(page["tasks"]) == 3
    past_the_end = await tools.search_tasks(query="clean", limit=3, offset=50)
    assert past_the_end["total"] == 7 and past_the_end["tasks"] == []
    assert (await tools.search_tasks(query="nothingmatchesthis"))["total"] == 0
    first = await tools.search_tasks(query="clean", limit=3)
    assert not {t["id"] for t in first["tasks"]} & {t["id"] for t in page["tasks"]}
    assert (await tools.search_tasks(query="clean", status="completed"))["total"] == 1
    assert (await tools.search_tasks(query="clean", status="pending"))["total"] == 6
    assert (await tools.search_tasks(query="clean", priority="high"))["total"] == 3
    assert (await tools.search_tasks(query="clean", category_id=home["id"]))["total"] == 3
    tagged = await tools.search_tasks(query="room", tag_ids=[red["id"]])
    assert sorted(t["id"] for t in tagged["tasks"]) == [ids[1], ids[5]]


async def test_search_uses_the_stored_vector_and_its_index(tools: Tools, db: AsyncEngine) -> None:
    await tools.add_task(title="Quarterly report", description="numbers")
    async with db.connect() as conn:
        vector = await conn.scalar(text("SELECT search_vector::text FROM tasks"))
        assert "'quarter':1A" in vector and "'number':3B" in vector
    async with db.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO tasks (user_id, title, time_zone) "
                "SELECT 'alice', 'filler ' || g, 'UTC' FROM generate_series(1, 3000) g"
            )
        )
        await conn.execute(text("ANALYZE tasks"))
    async with db.connect() as conn:
        # A few thousand rows fit a page or two, where a sequential scan is as good; ask for the index path.
        await conn.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(
            (
                await conn.execute(
                    text(
                        "EXPLAIN SELECT id FROM tasks t WHERE t.user_id = 'alice' "
                        "AND t.search_vector @@ websearch_to_tsquery('english', 'report')"
                    )
                )
            ).scalars()
        )
    assert "ix_tasks_search" in plan


async def test_hostile_queries_are_just_words(tools: Tools) -> None:
    await tools.add_task(title="drop table tasks", description="'; DROP TABLE tasks; --")
    for query in ("'; DROP TABLE tasks; --", "a & b | !c", "<->", "\\", "(((", "*:*", "ü∂ƒ 🙂", "x" * 500):
        result = await tools.search_tasks(query=query)
        assert result["total"] >= 0
    assert (await tools.list_tasks())["total"] == 1


ISSUE_QUERIES = ["-" * 33, "- " * 40, "-(" * 40, "a" + " -" * 32]
# Negation signs with what PostgreSQL skips between them (spaces, its operator characters, quotes), and words.
_SIGNS = st.sampled_from(["-", "- ", "-(", "-)", "-!", "-&", "-|", "-<", "->", "-\t", "-\u3000", '-"', "-:", "--"])
_WORDS = st.sampled_from([" run", " marathon", "x", " or ", " the ", '"', "'", "*", "\\", "\xa0", ".", "!"])
NASTY_QUERIES = st.one_of(
    st.sampled_from(ISSUE_QUERIES),
    st.lists(_SIGNS, min_size=28, max_size=160).map("".join),
    st.lists(st.one_of(_SIGNS, _SIGNS, _SIGNS, _WORDS), max_size=200).map("".join),
    st.text(alphabet="-()!&|<>\"' :*\t", max_size=500),
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(query=NASTY_QUERIES)
async def test_any_query_gives_results_or_says_what_to_change(
    tools: Tools, caplog: pytest.LogCaptureFixture, query: str
) -> None:
    with caplog.at_level(logging.WARNING):
        result = await tools.raw("search_tasks", {"query": query})
    if result.is_error:
        assert first_text(result).startswith("VALIDATION_ERROR: query must be at most"), (query, first_text(result))
    else:
        assert result.structured_content is not None and result.structured_content["query"] == query
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR], query


async def test_long_runs_of_negations_mean_what_their_parity_says(tools: Tools) -> None:
    await tools.add_task(title="Running shoes", description="for the marathon")
    await tools.add_task(title="Run errands", description="post office then bank")
    for query in ISSUE_QUERIES:
        assert (await tools.search_tasks(query=query))["total"] == 0
    # 33 signs are one negation, 40 are none (so "run and marathon"), as PostgreSQL reads them with a deeper stack.
    assert await titles(tools, "run " + "-" * 33 + "marathon") == ["Run errands"]
    assert await titles(tools, "run " + "- " * 20 + "-(" * 20 + "marathon") == ["Running shoes"]
    assert await titles(tools, "run -(-(-!marathon") == ["Run errands"]
    assert await titles(tools, "run --marathon") == ["Running shoes"]
