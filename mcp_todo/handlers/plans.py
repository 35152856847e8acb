"""Custom plans for the handlers' batch transactions.

The engine's connections prepare every statement once (asyncpg's statement cache), and after five executions
PostgreSQL may settle on a generic plan, which it keeps until the table is analyzed again. A generic plan cannot see
how many ids an array parameter holds, and one made while the tables were small stays after they have grown: the
workers benchmark caught `load_tasks` (`user_id = $1 AND id = ANY($2)`) filtering every task of the user through
`ix_tasks_user_category` for a batch of 40 (12 000 rows read, 64 ms), and the old reminder claim in a nested loop
over all pending reminders. A batch transaction runs a handful of statements for hundreds of events, so planning
each of them for its actual arguments costs nothing that shows, and `SET LOCAL` ends with the transaction (it is safe
behind a transaction-pooling proxy too).
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import text

CUSTOM_PLANS: Final = text("SET LOCAL plan_cache_mode = force_custom_plan")
