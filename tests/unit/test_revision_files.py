"""The server checks the database's revision against the newest one without importing Alembic (a tenth of a second
of its start): its reading of the revision files must be Alembic's."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError

from mcp_todo.db import migrate
from mcp_todo.db.migrate import _config, _revisions, head_revision


def test_the_revision_files_are_read_as_alembic_reads_them() -> None:
    alembic = ScriptDirectory.from_config(_config())
    assert _revisions() == {rev.revision: rev.down_revision for rev in alembic.walk_revisions()}
    assert head_revision() == alembic.get_current_head()


def test_files_without_one_head_are_left_to_alembic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    versions = tmp_path / "versions"
    versions.mkdir()
    (tmp_path / "env.py").write_text("")
    (tmp_path / "script.py.mako").write_text("")
    for name, down in (("a1", None), ("b1", "a1"), ("b2", "a1")):
        (versions / f"{name}.py").write_text(
            f'revision = "{name}"\ndown_revision = {down and repr(down)}\nbranch_labels = None\ndepends_on = None\n'
        )
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", tmp_path)
    _revisions.cache_clear()
    try:
        assert _revisions() == {"a1": None, "b1": "a1", "b2": "a1"}
        with pytest.raises(CommandError, match="multiple heads"):
            head_revision()
    finally:
        _revisions.cache_clear()
