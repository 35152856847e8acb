"""Search queries in web-search syntax, made safe for PostgreSQL's `websearch_to_tsquery`.

PostgreSQL parses the query with an operator stack of 32 entries. Every operator but NOT first pops the operators of
equal or higher priority, so only a run of negations with no word between them ("- - - x", "-(-(-(", "-!-!") can
fill the stack, and 29 or more of them fail the whole statement ("tsquery stack too small"). A negation of a negation
is the word itself, so a run of three or more signs becomes one sign or two, keeping its parity: the parser reads the
same tokens in the same states after it (what it skips inside a run changes nothing), the query means what PostgreSQL
would have read with a deeper stack (inside quotes PostgreSQL skips the signs anyway), and a query with no such run
is left as it was.
"""

from __future__ import annotations

import re
from typing import Final

# Between the signs of one run PostgreSQL sees only white space and the operator characters it skips in web-search
# syntax. A sign is a negation where a word could start: at the start, after white space, after one of those
# characters or after a quote. Python's \s holds a few more characters than PostgreSQL's white space (no-break
# spaces, U+001C-U+001F): that can only join two runs into one, never leave one too long.
_SKIPPED: Final = r"\s!&|()<"
_NEGATION_RUN: Final = re.compile(rf"(?:^|(?<=[{_SKIPPED}\"]))-(?:[{_SKIPPED}]*-){{2,}}")


def _keep_parity(run: re.Match[str]) -> str:
    return "-" if run.group().count("-") % 2 else "--"


def websearch_query(words: str) -> str:
    """``words`` with each run of three or more negations reduced to one or two, keeping what it means."""
    return _NEGATION_RUN.sub(_keep_parity, words)
