"""What tests and benchmarks share, all of it real: PostgreSQL databases (`database`), the tansu broker (`broker`),
an HTTP endpoint for Apprise (`http_receiver`), the worker binaries as processes (`processes`), background runs of
the in-process loops (`background`) and waiting on a condition (`polling`).

tests/conftest.py wraps these in fixtures; bench/ imports them directly. Nothing here imports a test module."""
