"""What an import did (or, dry, would do): the records added, updated, unchanged, skipped and failed, and what the
ones that landed could not keep."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from mcp_todo.porting.records import Outcome


@dataclass
class Report:
    """What an import did (or, dry, would do)."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[Outcome] = field(default_factory=list)
    failed: list[Outcome] = field(default_factory=list)
    partly_kept: list[Outcome] = field(default_factory=list)
    dry_run: bool = False

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.updated)} updated, {len(self.unchanged)} unchanged, "
            f"{len(self.skipped)} skipped, {len(self.failed)} failed"
        )

    def lines(self) -> Iterator[str]:
        yield ("dry run, nothing changed: would be " if self.dry_run else "") + self.summary()
        for label, items in (("failed", self.failed), ("skipped", self.skipped), ("partly kept", self.partly_kept)):
            for item in items:
                yield f"  {label}: {item.where}: {item.detail}"
