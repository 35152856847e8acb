"""Process plumbing shared by the server, the CLI commands and the worker binaries: waiting on events, retry
back-off, SIGTERM/SIGINT, supervising long-lived parts, logging, the loop watchdog, one-line configuration errors and
a bounded map whose entries expire.

Each module holds the one implementation of its concern; nothing here knows about tasks, MCP or Kafka.
"""
