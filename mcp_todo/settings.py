"""All configuration, read once from the environment (and a `.env` file in the working directory)."""

from __future__ import annotations

import difflib
import getpass
import logging
import os
from collections.abc import Iterator, Mapping
from datetime import time
from functools import lru_cache
from pathlib import Path
from typing import Final, Literal
from urllib.parse import urlsplit

import platformdirs
import pydantic
from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from mcp_todo.domain import errors
from mcp_todo.domain.times import resolve_zone

log = logging.getLogger(__name__)


def _default_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "default"


_LOCALTIME = Path("/etc/localtime")
_TIMEZONE_FILE = Path("/etc/timezone")
_ZONEINFO_MARKER = "/zoneinfo/"
# Variants of the zone files some systems install beside the plain ones; the IANA name is what follows.
_ZONEINFO_VARIANTS = ("posix/", "right/")
_MAX_LINKS = 16


def _name_in_zoneinfo(path: str) -> str | None:
    """`Europe/London` for `/usr/share/zoneinfo/Europe/London` (or `…/zoneinfo/posix/Europe/London`)."""
    if _ZONEINFO_MARKER not in path:
        return None
    name = path.split(_ZONEINFO_MARKER, 1)[1]
    for variant in _ZONEINFO_VARIANTS:
        name = name.removeprefix(variant)
    return name


def _zone_of_file(path: Path) -> Iterator[str]:
    """The zone names a zone file's path gives: its own, then each link it points through (`/etc/localtime`)."""
    current = str(path)
    for _ in range(_MAX_LINKS):
        name = _name_in_zoneinfo(current)
        if name is not None:
            yield name
        try:
            target = os.readlink(current)
        except OSError:  # not a link (or gone)
            return
        current = os.path.normpath(os.path.join(os.path.dirname(current), target))


def _host_zone_names(localtime: Path, timezone_file: Path) -> Iterator[str]:
    """Where the host names its zone: TZ (`Area/City`, `:Area/City`, or the path of a zone file such as
    `:/etc/localtime`), then the /etc/localtime link, then /etc/timezone (Debian)."""
    tz = os.environ.get("TZ", "").strip().removeprefix(":")
    if tz.startswith("/"):
        yield from _zone_of_file(Path(tz))
    elif tz:
        yield tz
    yield from _zone_of_file(localtime)
    try:
        named = timezone_file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return
    yield named


def _is_zone(name: str) -> bool:
    try:
        resolve_zone(name)
    except errors.ValidationError:
        return False
    return True


def _default_timezone(localtime: Path = _LOCALTIME, timezone_file: Path = _TIMEZONE_FILE) -> str:
    """The host's zone as an IANA name that `resolve_zone` accepts, else UTC (and one log line saying so)."""
    zone = next((name for name in _host_zone_names(localtime, timezone_file) if _is_zone(name)), None)
    if zone is None:
        log.warning(
            "no IANA time zone found for this host (TZ, /etc/localtime, /etc/timezone); using UTC — "
            "set MCP_TODO_TIMEZONE, e.g. MCP_TODO_TIMEZONE=Europe/London"
        )
        return "UTC"
    return zone


LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_LOG_LEVEL: Final = "INFO"
MAX_LOOP_WATCHDOG_MS: Final = 60_000


class LogSettings(BaseSettings):
    """How much a process logs: read on its own before the rest, so that logging is set up before the settings whose
    errors and warnings it reports are read. Nothing in it can fail."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    log_level: str = Field(
        default=DEFAULT_LOG_LEVEL,
        validation_alias="MCP_TODO_LOG_LEVEL",
        description="DEBUG, INFO, WARNING, ERROR or CRITICAL (any case; anything else means INFO).",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _known_level(cls, value: object) -> str:
        # A diagnostic setting never stops a process: a level logging does not know is the default.
        chosen = value.strip().upper() if isinstance(value, str) else ""
        return chosen if chosen in LOG_LEVELS else DEFAULT_LOG_LEVEL


class Settings(LogSettings):
    database_url: SecretStr | None = Field(default=None, validation_alias="DATABASE_URL")
    # A session-capable URL (Neon's direct endpoint) when DATABASE_URL is a transaction-mode pooler.
    direct_database_url: SecretStr | None = Field(default=None, validation_alias="MCP_TODO_DIRECT_DATABASE_URL")
    data_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("mcp-todo")), validation_alias="MCP_TODO_DATA_DIR"
    )
    kafka_bootstrap_servers: str | None = Field(default=None, validation_alias="KAFKA_BOOTSTRAP_SERVERS")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", validation_alias="KAFKA_SECURITY_PROTOCOL"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="SCRAM-SHA-256", validation_alias="KAFKA_SASL_MECHANISM"
    )
    kafka_sasl_username: str | None = Field(default=None, validation_alias="KAFKA_SASL_USERNAME")
    kafka_sasl_password: SecretStr | None = Field(default=None, validation_alias="KAFKA_SASL_PASSWORD")
    kafka_topic_prefix: str = Field(default="", validation_alias="KAFKA_TOPIC_PREFIX")
    kafka_enable_idempotence: bool = Field(default=True, validation_alias="KAFKA_ENABLE_IDEMPOTENCE")
    kafka_consumer_session_timeout_ms: int = Field(
        default=10_000,
        ge=1_000,
        le=3_600_000,
        validation_alias="KAFKA_CONSUMER_SESSION_TIMEOUT_MS",
        description=(
            "How long the broker waits for a worker's heartbeat before it gives the worker's partitions to another "
            "group member (aiokafka's default, 10 000 ms). Shorter: a crashed worker's partitions move sooner, and a "
            "broker that waits for a dead member's session before completing a join (the test broker) lets a "
            "restarted worker in sooner; too short for the network and a slow worker is evicted. The heartbeat "
            "interval follows it (a third of it, at most 3 000 ms). Must stay within the broker's "
            "group.min/max.session.timeout.ms."
        ),
    )
    user: str = Field(default_factory=_default_user, validation_alias="MCP_TODO_USER")
    timezone: str = Field(default_factory=_default_timezone, validation_alias="MCP_TODO_TIMEZONE")
    notify_urls: SecretStr | None = Field(default=None, validation_alias="MCP_TODO_NOTIFY_URLS")
    reminder_lead_minutes: int = Field(default=60, ge=0, le=525_600, validation_alias="MCP_TODO_REMINDER_LEAD_MINUTES")
    all_day_reminder_time: time = Field(
        default=time(9, 0),
        validation_alias="MCP_TODO_ALL_DAY_REMINDER_TIME",
        description=(
            "When a task due on a date without a time (due at the end of that day) is reminded of: this wall-clock "
            "time in the task's zone, on the due day for a lead under a day, and a whole day earlier per full day "
            "of lead (HH:MM)."
        ),
    )
    trash_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        validation_alias="MCP_TODO_TRASH_DAYS",
        description="How many days delete_task's trash keeps a task before the daily purge deletes it for good.",
    )
    dav_tombstone_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        validation_alias="MCP_TODO_DAV_TOMBSTONE_DAYS",
        description=(
            "How many days CalDAV keeps the record of a to-do that left a collection, for clients that sync by token; "
            "a client that last synced before that syncs afresh."
        ),
    )
    startup_timeout_s: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        validation_alias="MCP_TODO_STARTUP_TIMEOUT_S",
        description=(
            "How long a starting server waits, with backoff, for a database it cannot reach yet (0: fail at once). "
            "A refused password or a missing database fails at once whatever this says."
        ),
    )
    allowed_hosts: str = Field(
        default="",
        validation_alias="MCP_TODO_ALLOWED_HOSTS",
        description="Host headers HTTP accepts besides the loopback names (a hostname behind a proxy); space or comma "
        "separated, `name` (any port), `name:port` or `name:*`.",
    )
    allowed_origins: str = Field(
        default="",
        validation_alias="MCP_TODO_ALLOWED_ORIGINS",
        description="Origin headers HTTP accepts besides those of the allowed hosts; space or comma separated, "
        "e.g. `https://todo.example.com` or `https://app.example.com:*`.",
    )
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        validation_alias="MCP_TODO_METRICS_PORT",
        description="The workers' Prometheus port (`/metrics` on every address); 0 or unset: none. The HTTP server "
        "serves `/metrics` on its own port.",
    )

    public_url: str | None = Field(
        default=None,
        validation_alias="MCP_TODO_PUBLIC_URL",
        description="The URL clients reach the HTTP server at (e.g. https://todo.example.com, behind an Ingress); the "
        "OAuth resource is its /mcp. Unset: derived from --host/--port (a wildcard bind uses the host name).",
    )
    oauth_issuer: str | None = Field(
        default=None,
        validation_alias="MCP_TODO_OAUTH_ISSUER",
        description="The OIDC issuer whose JWT access tokens HTTP accepts beside `mtd_` tokens (unset: `mtd_` only).",
    )
    oauth_audience: str | None = Field(
        default=None,
        validation_alias="MCP_TODO_OAUTH_AUDIENCE",
        description="The `aud` a token must carry (default: the public URL's /mcp resource).",
    )
    oauth_scopes: str = Field(
        default="",
        validation_alias="MCP_TODO_OAUTH_SCOPES",
        description="Scopes every token must carry, space-separated (empty: none).",
    )
    loop_watchdog_ms: int | None = Field(
        default=None,
        validation_alias="MCP_TODO_LOOP_WATCHDOG_MS",
        description="Log a callback that holds the event loop longer than this many milliseconds (1-60000; unset, "
        "empty or 0: off). A diagnostic: any other value is logged once and leaves the watchdog off.",
    )
    oauth_user_claim: str = Field(
        default="sub",
        min_length=1,
        validation_alias="MCP_TODO_OAUTH_USER_CLAIM",
        description="The claim of a verified token that names the user (e.g. sub, email, preferred_username).",
    )

    @field_validator(
        "kafka_bootstrap_servers", "kafka_sasl_username", "public_url", "oauth_issuer", "oauth_audience", mode="before"
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_url", "direct_database_url", "kafka_sasl_password", "notify_urls", mode="before")
    @classmethod
    def _blank_secret_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("timezone", mode="before")
    @classmethod
    def _blank_zone_is_unset(cls, value: object) -> object:
        # `MCP_TODO_TIMEZONE=` is how many .env templates leave a setting for later.
        return _default_timezone() if isinstance(value, str) and not value.strip() else value

    @field_validator("loop_watchdog_ms", mode="before")
    @classmethod
    def _watchdog_ms(cls, value: object) -> int | None:
        raw = str(value).strip() if value is not None else ""
        if not raw:
            return None
        try:
            ms = int(raw)
        except ValueError:
            ms = -1
        if not 0 <= ms <= MAX_LOOP_WATCHDOG_MS:
            # Logged, not raised: a diagnostic never stops a process.
            log.warning(
                f"MCP_TODO_LOOP_WATCHDOG_MS must be a whole number of milliseconds from 0 (off) to "
                f"{MAX_LOOP_WATCHDOG_MS}: the loop watchdog is off",
                extra={"value": raw[:40]},
            )
            return None
        return ms or None

    @field_validator("all_day_reminder_time", mode="before")
    @classmethod
    def _wall_time(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                parsed = time.fromisoformat(value.strip())
            except ValueError:
                parsed = None
            if parsed is None or parsed.tzinfo is not None:
                raise ValueError("MCP_TODO_ALL_DAY_REMINDER_TIME must be a wall-clock time HH:MM, e.g. 09:00")
            return parsed
        return value

    @field_validator("user")
    @classmethod
    def _user_not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value or len(value) > 200:
            raise ValueError("MCP_TODO_USER must be 1-200 characters")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if not _is_zone(value):
            raise ValueError(
                f"MCP_TODO_TIMEZONE {value!r} is not an IANA time zone "
                "(e.g. Europe/London, or leave it unset for the host's zone)"
            )
        return value

    @field_validator("public_url", "oauth_issuer")
    @classmethod
    def _http_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        value = value.strip()
        parts = urlsplit(value)
        name = "MCP_TODO_PUBLIC_URL" if info.field_name == "public_url" else "MCP_TODO_OAUTH_ISSUER"
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(f"{name} must be an http(s) URL without query or fragment, e.g. https://todo.example.com")
        return value.rstrip("/") if info.field_name == "public_url" else value

    @property
    def oauth_scope_list(self) -> list[str]:
        return self.oauth_scopes.split()

    @property
    def local_mode(self) -> bool:
        """No Kafka: the notifier and recurrer handlers run inside the server, fed from the outbox."""
        return self.kafka_bootstrap_servers is None

    @property
    def notify_url_list(self) -> list[str]:
        if self.notify_urls is None:
            return []
        raw = self.notify_urls.get_secret_value().replace(",", " ")
        return [url for url in raw.split() if url]

    @property
    def allowed_host_list(self) -> list[str]:
        return _words(self.allowed_hosts)

    @property
    def allowed_origin_list(self) -> list[str]:
        return _words(self.allowed_origins)

    def topic(self, name: str) -> str:
        return f"{self.kafka_topic_prefix}{name}"


def _words(raw: str) -> list[str]:
    return [word for word in raw.replace(",", " ").split() if word]


_OWN_PREFIX: Final = "MCP_TODO_"


def known_variables() -> frozenset[str]:
    """Every MCP_TODO_* (and other) variable name the project reads: every one is a setting."""
    return frozenset(str(field.validation_alias) for field in Settings.model_fields.values())


def misspelt_variables(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """Each MCP_TODO_* variable in `environ` that no setting reads, with the nearest known name (None: none near)."""
    known = known_variables()
    return [
        (name, next(iter(difflib.get_close_matches(name, known, n=1, cutoff=0.75)), None))
        for name in sorted(environ)
        if name.upper().startswith(_OWN_PREFIX) and name not in known
    ]


def warn_misspelt_variables(environ: Mapping[str, str]) -> None:
    """One warning per unknown MCP_TODO_* variable: a misspelt name is otherwise silently ignored."""
    for name, nearest in misspelt_variables(environ):
        hint = {"did_you_mean": nearest} if nearest else {}
        log.warning("unknown setting ignored", extra={"variable": name, **hint})


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    warn_misspelt_variables(os.environ)
    return Settings()


def log_level() -> str:
    """MCP_TODO_LOG_LEVEL (from the environment or `.env`), read before the other settings: the level to set up
    logging with, so that what reading the other settings reports is logged at it."""
    try:
        return LogSettings().log_level
    except (OSError, ValueError, SettingsError):  # a `.env` it cannot read: the full settings report it, logged
        return DEFAULT_LOG_LEVEL


def describe_validation_error(exc: pydantic.ValidationError) -> str:
    """`invalid configuration — field: problem; …`, without the values (they may be secrets)."""
    problems = "; ".join(
        f"{'.'.join(str(part) for part in err['loc']) or 'settings'}: {err['msg'].removeprefix('Value error, ')}"
        for err in exc.errors()
    )
    return f"invalid configuration — {problems}"


def load_settings() -> Settings:
    """The settings, or a ConfigurationError saying in one line what is wrong with them."""
    try:
        return get_settings()
    except pydantic.ValidationError as exc:
        raise errors.ConfigurationError(describe_validation_error(exc)) from None
