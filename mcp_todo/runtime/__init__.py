"""Process plumbing shared by the server, the CLI commands and the worker binaries: waiting on events, retry
back-off, SIGTERM/SIGINT, supervising long-lived parts, logging and one-line configuration errors.

Each module holds the one implementation of its concern; nothing here knows about tasks, MCP or Kafka.
"""
