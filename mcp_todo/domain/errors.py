"""The errors a user can act on. Each carries a stable code; the server turns it into a tool error once, at the edge."""

from __future__ import annotations


class TodoError(Exception):
    """Base of every error shown to a user. ``str(err)`` is the message after the code."""

    code = "INTERNAL_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def render(self) -> str:
        return f"{self.code}: {self.message}"


class ValidationError(TodoError):
    code = "VALIDATION_ERROR"


class NotFoundError(TodoError):
    code = "NOT_FOUND"


class ConflictError(TodoError):
    code = "CONFLICT"


class LimitExceededError(TodoError):
    code = "LIMIT_EXCEEDED"


class InvalidRecurrenceRuleError(TodoError):
    code = "INVALID_RECURRENCE_RULE"


class UnavailableError(TodoError):
    code = "UNAVAILABLE"


class InternalError(TodoError):
    code = "INTERNAL_ERROR"


class ConfigurationError(Exception):
    """A process cannot start as configured; the message is one line, safe to print (no secrets)."""
