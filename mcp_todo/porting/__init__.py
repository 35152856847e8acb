"""Moving tasks in and out: `mcp-todo export|import` and the `todo://export.ics` resource (docs/import-export.md).

Each format's reader turns a file into `Record`s (a task in neutral terms: names, not ids; a uid, not a row), and the
writer turns the user's stored tasks into a file; `store` is the only part that talks to the database.
"""
