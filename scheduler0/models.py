"""Wire models: what clients may send, validated at the edge, and what the
node answers, read by the client side (CLI, console) with the same models.

Input accepts snake_case and the original server's camelCase
(``project_id`` / ``projectId``). Output is always snake_case; the server's
views build exactly the fields of the ``...Out`` models (a test holds them
together), and readers validate with them (unknown fields ignored, so a newer
node can add fields).
Validation errors become one ``ValidationFailed`` whose details name each
field and, in a batch, the item's index.
"""

from __future__ import annotations

import enum
import itertools
import re
import time
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from scheduler0.errors import FieldError, ValidationFailed
from scheduler0.terminal import unsafe_character

M = TypeVar("M", bound=BaseModel)


class ExecutionState(enum.StrEnum):
    """The states of an execution row, as stored and as shown."""

    PENDING = "pending"
    """Run-now: waiting for the bucket's owner to send it."""
    DISPATCHED = "dispatched"
    SUCCESS = "success"
    FAILED = "failed"
    MISSED = "missed"
    LOST = "lost"
    SKIPPED = "skipped"
    """Not sent: the job's overlap policy skipped the slot, or the job was
    paused or deleted after the run was decided ahead of its slot (``error``
    says why)."""


EXECUTION_STATES: tuple[str, ...] = tuple(ExecutionState)


class ExecutionTrigger(enum.StrEnum):
    """What made an execution: stored in ``executions.trigger`` (NULL, in rows
    of the schedule and in every row older than the column, is ``schedule``)."""

    SCHEDULE = "schedule"
    """A slot of the job's schedule, fired on time."""
    MANUAL = "manual"
    """Run-now (``POST /jobs/{id}/run``): its own execution id, ``<job>-<second>-m<n>``."""
    BACKFILL = "backfill"
    """A past slot fired on request, with the id the scheduled run would have had."""
    CATCHUP = "catchup"
    """A slot missed while no node could fire it, fired late."""


EXECUTION_TRIGGERS: tuple[str, ...] = tuple(ExecutionTrigger)

_ALIASES = {
    "project_id": "projectId",
    "callback_url": "callbackUrl",
    "execution_type": "executionType",
    "expires_at": "expiresAt",
    "expires_in_seconds": "expiresInSeconds",
    "created_by": "createdBy",
    "modified_by": "modifiedBy",
    "deleted_by": "deletedBy",
    "archived_by": "archivedBy",
    "executor_id": "executorId",
    "webhook_url": "webhookUrl",
    "webhook_method": "webhookMethod",
    "webhook_secret": "webhookSecret",
    "timeout_seconds": "timeoutSeconds",
    "catchup_window_seconds": "catchupWindowSeconds",
    "start_at": "startAt",
    "end_at": "endAt",
    "jitter_seconds": "jitterSeconds",
    "max_runs": "maxRuns",
    "pause_after_failures": "pauseAfterFailures",
    "initial_seconds": "initialSeconds",
    "cap_seconds": "capSeconds",
    "start_date": "startDate",
    "end_date": "endDate",
    "retry_max": "retryMax",
    "timezone_offset": "timezoneOffset",
}


ALIAS_PAIRS: tuple[tuple[str, str], ...] = tuple(_ALIASES.items())
"""(snake_case, camelCase) spellings of the same field; a body may use one."""


def _alias(name: str) -> AliasChoices:
    camel = _ALIASES.get(name)
    return AliasChoices(name, camel) if camel else AliasChoices(name)


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


@lru_cache(maxsize=4096)
def _check_url(value: str) -> str:
    """Cached: a batch of thousands of jobs usually shares one callback URL
    (an invalid URL raises, and exceptions are not cached)."""
    if len(value) > 2048:
        raise ValueError("must be at most 2048 characters")
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ValueError("must not contain spaces or control characters")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http(s) URL")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError("has an invalid port (must be 1-65535)")
    return value


def _not_null(value: Any) -> Any:
    """Patches leave absent fields alone; an explicit null is a mistake, not a no-op."""
    if value is None:
        raise ValueError("must not be null; leave the field out to keep its value")
    return value


_NULLABLE_IN_PATCH = frozenset(
    {"data", "name", "webhook_secret", "start_date", "end_date", "timezone_offset"}
)
"""Patch fields where null is a value (no data, no name, no secret of an
executor's own, no start or end, no offset to check), not a mistake."""


def _patch_schema(schema: dict[str, Any]) -> None:
    """The JSON schema of a patch as validated: at least one field, and a field
    is left out rather than null (``data`` and ``name`` may be null)."""
    schema["minProperties"] = 1
    _policies_last(schema)
    for name, prop in schema.get("properties", {}).items():
        prop.pop("default", None)
        choices = prop.get("anyOf")
        if name not in _NULLABLE_IN_PATCH and name not in POLICY_FIELDS and choices:
            kept = [choice for choice in choices if choice.get("type") != "null"]
            prop.pop("anyOf")
            prop.update(kept[0] if len(kept) == 1 else {"anyOf": kept})


def _policies_last(schema: dict[str, Any]) -> None:
    """A job's own fields first in its JSON schema, then its policies."""
    properties = schema.get("properties", {})
    schema["properties"] = {
        **{k: v for k, v in properties.items() if k not in POLICY_FIELDS},
        **{k: v for k, v in properties.items() if k in POLICY_FIELDS},
    }


class _Patch(_Input):
    """A partial update: at least one field, none of them null (except ``data``
    and a job's policies, where null means "back to the default")."""

    model_config = ConfigDict(json_schema_extra=_patch_schema)

    @model_validator(mode="before")
    @classmethod
    def _not_empty(cls, body: Any) -> Any:
        if isinstance(body, dict) and not body:
            raise ValueError("must set at least one field")
        return body


def _plain_name(value: str | None) -> str | None:
    """A name is shown in tables and terminals: no control or bidi character."""
    return _plain(value, "")


def _plain_text(value: str | None) -> str | None:
    """A description may span lines (newline, tab), nothing else invisible."""
    return _plain(value, "\n\t")


def _plain(value: str | None, allowed: str) -> str | None:
    found = None if value is None else unsafe_character(value, allowed)
    if found is not None:
        raise ValueError(
            f"must not contain control or bidirectional characters (found U+{ord(found):04X})"
        )
    return value


MAX_ACTOR = 255
"""Characters of a ``created_by``, ``modified_by`` or ``deleted_by``."""

_ACTOR_DOC = (
    f"Who {{did}} it: at most {MAX_ACTOR} characters, no control or bidirectional characters."
    " Left out (or empty): the caller's identity, credential:<id> or operator."
)


def _actor(name: str, did: str) -> Any:
    """A ``created_by``/``modified_by``/``deleted_by`` field: an optional
    string that the API fills with the caller when left out (or empty)."""
    return Field(
        default=None,
        validation_alias=_alias(name),
        max_length=MAX_ACTOR,
        description=_ACTOR_DOC.format(did=did),
    )


class ProjectIn(_Input):
    name: StrictStr = Field(min_length=1, max_length=255)
    description: StrictStr = Field(default="", max_length=4096)
    created_by: StrictStr | None = _actor("created_by", "created")

    _name = field_validator("name")(_plain_name)
    _description = field_validator("description")(_plain_text)
    _by = field_validator("created_by")(_plain_name)


class ProjectPatch(_Patch):
    name: StrictStr | None = Field(default=None, min_length=1, max_length=255)
    description: StrictStr | None = Field(default=None, max_length=4096)
    modified_by: StrictStr | None = _actor("modified_by", "changed")

    _present = field_validator("name", "description", "modified_by", mode="before")(_not_null)
    _name = field_validator("name")(_plain_name)
    _description = field_validator("description")(_plain_text)
    _by = field_validator("modified_by")(_plain_name)


class DeleteIn(_Input):
    """The optional body of a delete (the official clients send one:
    ``ProjectDeleteRequestBody``, ``JobDeleteRequestBody``,
    ``CredentialDeleteRequestBody``, ``ExecutorDeleteRequestBody``)."""

    deleted_by: StrictStr | None = _actor("deleted_by", "deleted")

    _by = field_validator("deleted_by")(_plain_name)


# -- executors ---------------------------------------------------------------------------

EXECUTOR_TYPES: tuple[str, ...] = ("webhook_url",)
"""The executor types this server runs."""
UNSUPPORTED_EXECUTOR_TYPES: tuple[str, ...] = ("cloud_function", "container", "local")
"""Types the official clients know that this server does not run: refused by name."""
WEBHOOK_METHODS: tuple[str, ...] = ("GET", "POST", "PUT", "PATCH", "DELETE")
"""The HTTP methods an executor may call its URL with (the body is the same)."""
MAX_WEBHOOK_SECRET = 1024


def _executor_type(value: Any) -> Any:
    """``webhook_url``; the official clients' other types by name, with why."""
    if isinstance(value, str) and value in UNSUPPORTED_EXECUTOR_TYPES:
        raise ValueError(
            f"{value!r} executors are not supported by this server; the only type is webhook_url"
        )
    if value != "webhook_url":
        raise ValueError("must be webhook_url")
    return value


def _webhook_method(value: Any) -> Any:
    """One of ``WEBHOOK_METHODS``, in any case (stored upper case)."""
    if value is None:
        return value
    if not isinstance(value, str) or value.upper() not in WEBHOOK_METHODS:
        raise ValueError(f"must be one of {', '.join(WEBHOOK_METHODS)}")
    return value.upper()


def _optional_url(value: str | None) -> str | None:
    return None if value is None else _check_url(value)


def _secret_text(value: str | None) -> str | None:
    """A secret is used as its UTF-8 bytes: any printable text, not empty."""
    if value is not None and (not value or not value.isprintable()):
        raise ValueError("must be 1 or more printable characters")
    return value


class ExecutorIn(_Input):
    """A ``webhook_url`` executor, in the official clients' field names
    (``ExecutorRequestBody``; camelCase or snake_case)."""

    name: StrictStr = Field(min_length=1, max_length=255)
    type: StrictStr = Field(
        description="webhook_url (cloud_function, container and local are refused).",
        json_schema_extra={"enum": list(EXECUTOR_TYPES)},
    )
    webhook_url: StrictStr = Field(
        validation_alias=_alias("webhook_url"), description="Where the callbacks go."
    )
    webhook_method: StrictStr = Field(
        default="POST",
        validation_alias=_alias("webhook_method"),
        description=f"The HTTP method of the callbacks: {', '.join(WEBHOOK_METHODS)}.",
        json_schema_extra={"enum": list(WEBHOOK_METHODS)},
    )
    webhook_secret: StrictStr | None = Field(
        default=None,
        validation_alias=_alias("webhook_secret"),
        max_length=MAX_WEBHOOK_SECRET,
        description="Signs the callbacks of its jobs (as a project's signing secret does);"
        " never shown again. Left out: the job's project's signing secret signs them.",
    )
    created_by: StrictStr | None = Field(
        default=None, validation_alias=_alias("created_by"), max_length=255
    )

    _type = field_validator("type", mode="before")(_executor_type)
    _method = field_validator("webhook_method", mode="before")(_webhook_method)
    _url = field_validator("webhook_url")(_check_url)
    _secret = field_validator("webhook_secret")(_secret_text)
    _name = field_validator("name")(_plain_name)


class ExecutorPatch(_Patch):
    """A change of an executor: the fields given (``ExecutorUpdateRequestBody``
    sends ``name``, ``type`` and ``modifiedBy`` every time)."""

    name: StrictStr | None = Field(default=None, min_length=1, max_length=255)
    type: StrictStr | None = Field(
        default=None,
        description="webhook_url: an executor's type does not change.",
        json_schema_extra={"enum": list(EXECUTOR_TYPES)},
    )
    webhook_url: StrictStr | None = Field(default=None, validation_alias=_alias("webhook_url"))
    webhook_method: StrictStr | None = Field(
        default=None,
        validation_alias=_alias("webhook_method"),
        json_schema_extra={"enum": list(WEBHOOK_METHODS)},
    )
    webhook_secret: StrictStr | None = Field(
        default=None,
        validation_alias=_alias("webhook_secret"),
        max_length=MAX_WEBHOOK_SECRET,
        description="A new secret; null: none of its own (the projects' secrets sign).",
    )
    modified_by: StrictStr | None = Field(
        default=None, validation_alias=_alias("modified_by"), max_length=255
    )

    _present = field_validator(
        "name", "type", "webhook_url", "webhook_method", "modified_by", mode="before"
    )(_not_null)
    _type = field_validator("type", mode="before")(_executor_type)
    _method = field_validator("webhook_method", mode="before")(_webhook_method)
    _url = field_validator("webhook_url")(_optional_url)
    _secret = field_validator("webhook_secret")(_secret_text)
    _name = field_validator("name")(_plain_name)


class CredentialScope(enum.StrEnum):
    """What a client credential may do; a credential holds a non-empty set."""

    READ = "read"
    """Reads only."""
    WRITE = "write"
    """Create, change and delete jobs and projects."""
    EXECUTE = "execute"
    """Run now, pause, resume."""
    ADMIN = "admin"
    """Everything, plus the projects' signing secrets and rotating them."""


SCOPES: tuple[str, ...] = tuple(CredentialScope)

MAX_CREDENTIAL_PROJECTS = 1000
"""Project ids one credential may be limited to."""

MAX_LIFETIME_SECONDS = 100 * 366 * 86400
"""The furthest ``expires_at`` may lie ahead (a bound, not a policy)."""


def _scopes(value: Any) -> Any:
    """A non-empty subset of ``SCOPES``, kept in their order, each once: one
    error naming ``scopes`` for an empty list or an unknown value."""
    if value is None:
        raise ValueError("must not be null; leave the field out for all four")
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"must be a list of scopes: {', '.join(SCOPES)}")
    if not value:
        raise ValueError(f"must hold at least one of {', '.join(SCOPES)}")
    unknown = sorted(set(value) - set(SCOPES))
    if unknown:
        shown = ", ".join(repr(name[:32]) for name in unknown[:5])
        raise ValueError(f"unknown scope {shown}; scopes are {', '.join(SCOPES)}")
    return [name for name in SCOPES if name in value]


def _expiry(value: Any) -> Any:
    """Unix seconds or an ISO 8601 time (UTC without an offset), as unix seconds."""
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("must be unix seconds or an ISO 8601 time") from None
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    raise ValueError("must be unix seconds or an ISO 8601 time")


class CredentialIn(_Input):
    """A client credential. The field names are those the official clients send
    (``CredentialCreateRequestBody``); camelCase spellings are accepted too."""

    description: StrictStr = Field(default="", max_length=1024)
    scopes: list[CredentialScope] | None = Field(
        default=None,
        min_length=1,
        description="A non-empty subset of read, write, execute, admin. Left out: all four.",
    )
    projects: list[Annotated[StrictInt, Field(ge=1, le=2**63 - 1)]] | None = Field(
        default=None,
        max_length=MAX_CREDENTIAL_PROJECTS,
        description="The project ids the credential may see and act on. Left out or empty:"
        " every project (only such a credential may create projects).",
    )
    expires_at: float | None = Field(
        default=None,
        validation_alias=_alias("expires_at"),
        description="When the credential stops working: unix seconds or ISO 8601.",
        json_schema_extra={"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "null"}]},
    )
    expires_in_seconds: StrictInt | None = Field(
        default=None,
        validation_alias=_alias("expires_in_seconds"),
        ge=1,
        le=MAX_LIFETIME_SECONDS,
        description="The same as expires_at, counted from now (not with expires_at).",
    )
    created_by: StrictStr | None = _actor("created_by", "created")
    archived: StrictBool = False

    _scope_names = field_validator("scopes", mode="before")(_scopes)
    _expires = field_validator("expires_at", mode="before")(_expiry)
    _by = field_validator("created_by")(_plain_name)

    @field_validator("projects")
    @classmethod
    def _once_each(cls, value: list[int] | None) -> list[int] | None:
        return None if not value else sorted(set(value))


class CredentialPatch(_Input):
    archived: StrictBool
    modified_by: StrictStr | None = _actor("modified_by", "changed")

    _by = field_validator("modified_by")(_plain_name)


class ArchiveIn(_Input):
    """The optional body of ``POST /credentials/{id}/archive``."""

    archived_by: StrictStr | None = _actor("archived_by", "archived")

    _by = field_validator("archived_by")(_plain_name)


MAX_JOB_NAME = 200
"""Characters of a job's name."""
MAX_LABELS = 32
"""Labels one job may carry."""
MAX_LABEL_VALUE = 200
"""Characters of a label's value."""
LABEL_KEY = re.compile(r"[a-z0-9][a-z0-9._/-]{0,62}")
"""A label's key: lowercase letters, digits and ``. _ / -``, at most 63, not
starting with a punctuation mark (``team``, ``app.kubernetes.io/name``)."""


def check_label(key: str, value: str) -> str | None:
    """Why ``key=value`` is not a label (None: it is one). Shared by the job
    fields and the ``label`` filter of ``GET /jobs``."""
    if not LABEL_KEY.fullmatch(key):
        return f"key {key[:70]!r} must be 1-63 of a-z 0-9 . _ / - starting with a letter or digit"
    if len(value) > MAX_LABEL_VALUE:
        return f"value of {key!r} must be at most {MAX_LABEL_VALUE} characters"
    found = unsafe_character(value, "")
    if found is not None:
        return (
            f"value of {key!r} must not contain control or bidirectional characters"
            f" (found U+{ord(found):04X})"
        )
    return None


def _labels(value: Any) -> Any:
    """A map of at most ``MAX_LABELS`` string keys to string values, each a
    label (``check_label``); one message naming the first bad one."""
    if value is None:
        return value
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError('must be an object of string keys to string values ({"team": "ops"})')
    if len(value) > MAX_LABELS:
        raise ValueError(f"must hold at most {MAX_LABELS} labels (got {len(value)})")
    for key, label in value.items():
        problem = check_label(key, label)
        if problem is not None:
            raise ValueError(problem)
    return value


_NAME_DOC = (
    f"Unique within the job's project; 1-{MAX_JOB_NAME} characters, no control or"
    " bidirectional characters."
)
_LABELS_DOC = (
    f"key=value labels, at most {MAX_LABELS}: keys 1-63 of a-z 0-9 . _ / - (starting with a"
    f" letter or digit), values at most {MAX_LABEL_VALUE} printable characters."
)


# -- job policies ------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})"
)
LATEST_INSTANT = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()
"""The latest instant a job's times may name (and an ``@at`` spec)."""


def parse_rfc3339(text: str) -> float:
    """Unix seconds of an RFC 3339 time, which must carry its offset (``Z`` or
    ``+02:00``): a time without one would be read in some zone nobody chose."""
    if not _RFC3339.fullmatch(text):
        raise ValueError(
            "must be an RFC 3339 time with its offset, e.g. '2026-03-01T09:00:00Z'"
            " or '2026-03-01T10:00:00+01:00'"
        )
    try:
        moment = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"is not a valid time ({exc})") from None
    value = moment.timestamp()
    if not 0 <= value <= LATEST_INSTANT:
        raise ValueError("must lie between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59Z")
    return value


def _instant(value: Any) -> Any:
    """An RFC 3339 string in, unix seconds out (None passes: a patch's reset)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 time string with its offset")
    return parse_rfc3339(value)


_INSTANT_SCHEMA: dict[str, Any] = {"type": "string", "format": "date-time"}

OVERLAPS: tuple[str, ...] = ("allow", "skip", "buffer_one")
CATCHUPS: tuple[str, ...] = ("latest", "all", "none")
Overlap = Literal["allow", "skip", "buffer_one"]
Catchup = Literal["latest", "all", "none"]

MAX_RETRY_ATTEMPTS = 100
MAX_BACKOFF_SECONDS = 86400.0
MAX_TIMEOUT_SECONDS = 3600.0
MAX_CATCHUP_WINDOW_SECONDS = 7 * 86400.0
MAX_JITTER_SECONDS = 3600
MAX_RUNS = 2**31 - 1
MAX_FAILURES_BEFORE_PAUSE = 10_000
MAX_NOTE_LENGTH = 1024

POLICY_FIELDS: frozenset[str] = frozenset(
    {
        "overlap",
        "retry",
        "timeout_seconds",
        "catchup",
        "catchup_window_seconds",
        "start_at",
        "end_at",
        "jitter_seconds",
        "max_runs",
        "pause_after_failures",
    }
)
"""A job's optional policies: flat fields of ``JobIn``/``JobPatch``/``JobOut``,
stored together as the job's ``policy`` (only the fields set)."""


class RetryPolicy(_Input):
    """How a failed callback is retried; a field left out keeps the node's
    setting (``JobExecutionRetryMax``, ``JobExecutionRetryDelay``, doubling
    (multiplier 2), capped at ``max(30, delay)`` seconds, no jitter)."""

    attempts: StrictInt | None = Field(
        default=None,
        ge=0,
        le=MAX_RETRY_ATTEMPTS,
        description="Retries after the first attempt (0 = none).",
    )
    initial_seconds: StrictFloat | None = Field(
        default=None,
        validation_alias=_alias("initial_seconds"),
        ge=0,
        le=MAX_BACKOFF_SECONDS,
        description="The delay before the first retry.",
    )
    multiplier: StrictFloat | None = Field(
        default=None, ge=1, le=10, description="Each delay is the previous one times this."
    )
    cap_seconds: StrictFloat | None = Field(
        default=None,
        validation_alias=_alias("cap_seconds"),
        ge=0,
        le=MAX_BACKOFF_SECONDS,
        description="No delay longer than this.",
    )
    jitter: StrictFloat | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Each delay is shortened by a random fraction of itself up to this.",
    )

    @field_validator("cap_seconds")
    @classmethod
    def _cap_not_below_initial(cls, value: float | None, info: ValidationInfo) -> float | None:
        initial = info.data.get("initial_seconds")
        if value is not None and initial is not None and value < initial:
            raise ValueError(f"must not be less than initial_seconds ({initial:g})")
        return value


def _end_after_start(value: float | None, info: ValidationInfo) -> float | None:
    start = info.data.get("start_at")
    if value is not None and start is not None and value <= start:
        raise ValueError("must be later than start_at")
    return value


# -- the official clients' job fields ---------------------------------------------------

CLIENT_FIELD_ERROR = "client_field"
"""The pydantic error type of a problem with one of the official clients' job
fields, found before the fields are validated: ``field_errors`` names the
field its context names."""

CLIENT_JOB_KEYS: frozenset[str] = frozenset(
    {
        "start_date",
        "startDate",
        "end_date",
        "endDate",
        "timezone_offset",
        "timezoneOffset",
        "retry_max",
        "retryMax",
    }
)
"""The official clients' job fields that are read into ours (or checked
against them) before validation: ``startDate``/``endDate`` become
``start_at``/``end_at``, ``timezoneOffset`` is checked against ``timezone``,
``retryMax`` against ``retry.attempts``."""

MAX_TIMEZONE_OFFSET = 18 * 3600
"""The largest ``timezone_offset`` accepted, in seconds (no zone is further from UTC)."""

_LOCAL_TIME = re.compile(r"\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)?")
"""A date-time or a date without an offset: read in the job's timezone."""

_CLIENT_TIME_DOC = (
    "RFC 3339 with an offset ('2026-03-01T09:00:00Z'), or a date-time or a date without"
    " one ('2026-03-01T09:00:00', '2026-03-01': midnight), read in the job's timezone."
)


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo | None:
    """The IANA zone ``name`` (None: no such zone; the schedule's check names ``timezone``)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError, TypeError):
        return None


def client_instant(text: Any, zone_name: str) -> float:
    """Unix seconds of an official client's ``startDate``/``endDate``: an RFC
    3339 time with its offset is that instant; a date-time or date without one
    is a wall-clock time in the job's timezone (the first of a repeated hour;
    a time skipped by a clock change is read with the offset before it)."""
    if not isinstance(text, str):
        raise ValueError(f"must be a time string: {_CLIENT_TIME_DOC}")
    if _RFC3339.fullmatch(text):
        return parse_rfc3339(text)
    if not _LOCAL_TIME.fullmatch(text):
        raise ValueError(f"must be {_CLIENT_TIME_DOC}")
    zone = _zone(zone_name)
    if zone is None:
        raise ValueError(
            f"has no offset, and the job's timezone {zone_name[:64]!r} is not a known zone"
            " to read it in"
        )
    try:
        local = datetime.fromisoformat(text.upper())
    except ValueError as exc:
        raise ValueError(f"is not a valid time ({exc})") from None
    value = local.replace(tzinfo=zone).timestamp()
    if not 0 <= value <= LATEST_INSTANT:
        raise ValueError("must lie between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59Z")
    return value


def offset_readings(value: int) -> tuple[int, ...]:
    """The UTC offsets, in seconds east of UTC, an integer ``timezoneOffset``
    may mean: seconds east of UTC (Go's ``time.Zone``), minutes east of UTC, or
    minutes west of UTC (JavaScript's ``getTimezoneOffset``)."""
    return (value, value * 60, -value * 60)


def _zone_offset(zone: ZoneInfo, at: float) -> int:
    shift = datetime.fromtimestamp(at, zone).utcoffset()
    return 0 if shift is None else int(shift.total_seconds())


def _hours(seconds: int) -> str:
    sign = "-" if seconds < 0 else "+"
    minutes = abs(seconds) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def timezone_offset_problem(
    value: Any, zone_name: str, now: float, start: float | None
) -> str | None:
    """Why ``timezone_offset`` cannot be accepted with ``timezone`` (None: it
    can, and is ignored: the timezone decides). It must be an integer that is,
    in one of its readings (``offset_readings``), the zone's UTC offset now or
    at the job's start. An unknown zone is not checked here: the schedule's
    check names ``timezone``."""
    if isinstance(value, bool) or not isinstance(value, int):
        return "must be an integer: the timezone's UTC offset (seconds east of UTC)"
    if abs(value) > MAX_TIMEZONE_OFFSET:
        return f"must be between -{MAX_TIMEZONE_OFFSET} and {MAX_TIMEZONE_OFFSET} seconds"
    zone = _zone(zone_name)
    if zone is None:
        return None
    offsets = {_zone_offset(zone, now)}
    if start is not None:
        offsets.add(_zone_offset(zone, start))
    if offsets & set(offset_readings(value)):
        return None
    shown = " or ".join(_hours(offset) for offset in sorted(offsets))
    return (
        f"{value} contradicts timezone {zone_name!r}, whose UTC offset is {shown}"
        f" ({' or '.join(str(offset) for offset in sorted(offsets))} seconds east of UTC);"
        " the timezone decides when the job runs: send its offset or leave timezone_offset out"
    )


def _client_error(field: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(
        CLIENT_FIELD_ERROR, "{field}: {message}", {"field": field, "message": message}
    )


def _given(body: dict[str, Any], snake: str) -> str | None:
    """The key under which ``body`` holds the field ``snake`` (either spelling), if any."""
    if snake in body:
        return snake
    camel = _ALIASES.get(snake)
    return camel if camel is not None and camel in body else None


def _same_instant(ours: Any, value: float | None) -> bool:
    """Whether our field's raw value names the instant ``value`` (a value
    that does not parse is let through: its own check names it)."""
    if ours is None or value is None:
        return ours is None and value is None
    try:
        return abs(parse_rfc3339(ours) - value) < 1e-6 if isinstance(ours, str) else True
    except ValueError:
        return True


def _rfc3339(value: float) -> str:
    return datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")


def fold_client_fields(body: dict[str, Any], zone_name: str, now: float) -> dict[str, Any]:
    """A job body with the official clients' ``startDate``/``endDate`` read
    into ``start_at``/``end_at`` (as RFC 3339 in UTC), and ``timezoneOffset``
    and ``retryMax`` checked against ``timezone`` and ``retry.attempts``.
    Raises a ``CLIENT_FIELD_ERROR`` naming the client's field when one cannot
    be read or disagrees with ours. ``body`` itself is left as it is."""
    out = dict(body)
    read: dict[str, float | None] = {}
    for snake, ours in (("start_date", "start_at"), ("end_date", "end_at")):
        key = _given(out, snake)
        if key is None:
            continue
        raw = out.pop(key)
        out.pop(_ALIASES[snake], None)  # both spellings: parse_one has named it already
        try:
            value = None if raw is None else client_instant(raw, zone_name)
        except ValueError as exc:
            raise _client_error(snake, str(exc)) from None
        mine = _given(out, ours)
        if mine is not None:
            if not _same_instant(out[mine], value):
                raise _client_error(snake, f"disagrees with {ours}; send one of them")
            continue
        out[ours] = None if value is None else _rfc3339(value)
        read[snake] = value
    start, end = read.get("start_date"), read.get("end_date")
    if start is not None and end is not None and end <= start:
        raise _client_error("end_date", "must be later than start_date")
    offset_key = _given(out, "timezone_offset")
    if offset_key is not None:
        raw = out.pop(offset_key)
        out.pop("timezoneOffset", None)
        problem = None
        if raw is not None:
            problem = timezone_offset_problem(raw, zone_name, now, _start_of(out))
        if problem is not None:
            raise _client_error("timezone_offset", problem)
    retry_key, retry = _given(out, "retry_max"), out.get("retry")
    if retry_key is not None and isinstance(retry, dict):
        attempts = retry.get("attempts")
        if attempts is not None and attempts != out[retry_key]:
            raise _client_error(
                "retry_max", f"disagrees with retry.attempts ({attempts!r}); send one of them"
            )
    return out


def _start_of(body: dict[str, Any]) -> float | None:
    key = _given(body, "start_at")
    raw = None if key is None else body[key]
    try:
        return parse_rfc3339(raw) if isinstance(raw, str) else None
    except ValueError:
        return None


class _JobPolicies(_Input):
    """The policy fields shared by ``JobIn`` and ``JobPatch``. Every one is
    optional; left out (or, in a patch, null) it is the default, which is what
    a job did before policies existed."""

    overlap: Overlap | None = Field(
        default=None,
        description="A slot due while the job's previous execution is still in flight or"
        " retrying: allow (fire anyway; the default), skip (recorded skipped), buffer_one"
        " (fire it when the previous one ends; at most one waits).",
    )
    retry: RetryPolicy | None = Field(
        default=None, description="Retries of a failed callback; left out: the node's settings."
    )
    timeout_seconds: StrictFloat | None = Field(
        default=None,
        validation_alias=_alias("timeout_seconds"),
        gt=0,
        le=MAX_TIMEOUT_SECONDS,
        description="Seconds one callback attempt may take (the node's JobExecutionTimeout"
        " when left out).",
    )
    catchup: Catchup | None = Field(
        default=None,
        description="Slots missed while no node could fire them: latest (fire the latest one"
        " within the window; the default), all (every one within the window, in order), none"
        " (record them missed; the next slot fires).",
    )
    catchup_window_seconds: StrictFloat | None = Field(
        default=None,
        validation_alias=_alias("catchup_window_seconds"),
        ge=1,
        le=MAX_CATCHUP_WINDOW_SECONDS,
        description="How late a slot may still fire (the node's MisfireGraceSeconds when"
        " left out).",
    )
    start_at: float | None = Field(
        default=None,
        validation_alias=_alias("start_at"),
        description="RFC 3339 with offset: no slot before this instant.",
        json_schema_extra={"anyOf": [_INSTANT_SCHEMA, {"type": "null"}]},
    )
    end_at: float | None = Field(
        default=None,
        validation_alias=_alias("end_at"),
        description="RFC 3339 with offset: no slot after this instant; then the job is completed.",
        json_schema_extra={"anyOf": [_INSTANT_SCHEMA, {"type": "null"}]},
    )
    jitter_seconds: StrictInt | None = Field(
        default=None,
        validation_alias=_alias("jitter_seconds"),
        ge=0,
        le=MAX_JITTER_SECONDS,
        description="The callback of each slot is sent up to this many seconds after it, by an"
        " offset fixed per job and slot (the same on every node).",
    )
    max_runs: StrictInt | None = Field(
        default=None,
        validation_alias=_alias("max_runs"),
        ge=1,
        le=MAX_RUNS,
        description="After this many scheduled runs the job is completed.",
    )
    pause_after_failures: StrictInt | None = Field(
        default=None,
        validation_alias=_alias("pause_after_failures"),
        ge=1,
        le=MAX_FAILURES_BEFORE_PAUSE,
        description="Pause the job after this many consecutive failed executions.",
    )

    start_date: StrictStr | None = Field(
        default=None,
        validation_alias=_alias("start_date"),
        description=f"The official clients' start_at: {_CLIENT_TIME_DOC} Not with a different"
        " start_at.",
    )
    end_date: StrictStr | None = Field(
        default=None,
        validation_alias=_alias("end_date"),
        description=f"The official clients' end_at: {_CLIENT_TIME_DOC} Not with a different"
        " end_at.",
    )
    retry_max: StrictInt | None = Field(
        default=None,
        validation_alias=_alias("retry_max"),
        ge=0,
        le=MAX_RETRY_ATTEMPTS,
        description="The official clients' retry.attempts: retries after the first attempt."
        " Not with a different retry.attempts.",
    )
    timezone_offset: StrictInt | None = Field(
        default=None,
        validation_alias=_alias("timezone_offset"),
        ge=-MAX_TIMEZONE_OFFSET,
        le=MAX_TIMEZONE_OFFSET,
        description="Accepted and ignored (timezone decides) when it is timezone's UTC offset"
        " now or at the job's start, in seconds east of UTC (or minutes east, or minutes west"
        " as JavaScript's getTimezoneOffset); a different offset is refused.",
    )

    _instants = field_validator("start_at", "end_at", mode="before")(_instant)
    _end = field_validator("end_at")(_end_after_start)

    @model_validator(mode="before")
    @classmethod
    def _client_fields(cls, body: Any, info: ValidationInfo) -> Any:
        """The official clients' fields read into ours (``fold_client_fields``),
        a date without offset in the body's timezone, else (a patch) the job's
        (the validation context's ``timezone``), else UTC."""
        if not isinstance(body, dict) or CLIENT_JOB_KEYS.isdisjoint(body):
            return body
        zone = body.get("timezone")
        if not isinstance(zone, str):
            context = info.context if isinstance(info.context, dict) else {}
            zone = str(context.get("timezone", "UTC"))
        return fold_client_fields(body, zone, time.time())

    def policy_changes(self, kept_retry: dict[str, Any] | None = None) -> dict[str, Any]:
        """The policy fields given (a patch's nulls included), as stored:
        ``retry`` as a dict of the fields it sets. ``retry_max`` sets
        ``retry.attempts``: of the ``retry`` given, else of ``kept_retry``
        (a patch's: the job's stored retry, whose other fields it keeps)."""
        out: dict[str, Any] = {}
        for name in sorted(POLICY_FIELDS & self.model_fields_set):
            value = getattr(self, name)
            if isinstance(value, RetryPolicy):
                value = value.model_dump(exclude_none=True)
            out[name] = value
        if self.retry_max is not None:
            base = out["retry"] if out.get("retry") is not None else (kept_retry or {})
            out["retry"] = {**base, "attempts": self.retry_max}
        return out


_STATUS_DOC = (
    "The official clients' status: active, or inactive (paused). Reads show paused for inactive."
)


class JobIn(_JobPolicies):
    model_config = ConfigDict(json_schema_extra=_policies_last)

    project_id: StrictInt = Field(validation_alias=_alias("project_id"), ge=1)
    spec: StrictStr = Field(min_length=1, max_length=256)
    timezone: StrictStr = Field(default="UTC", max_length=64)
    data: Any = None
    callback_url: StrictStr | None = Field(
        default=None,
        validation_alias=_alias("callback_url"),
        description="Where the job's callbacks go; or give executor_id (exactly one of the two).",
    )
    executor_id: StrictInt | None = Field(
        default=None,
        validation_alias=_alias("executor_id"),
        ge=1,
        le=2**63 - 1,
        description="The executor the job's callbacks go through (its URL, method and secret,"
        " read at each delivery); or give callback_url (exactly one of the two).",
    )
    execution_type: Literal["http"] = Field(
        default="http", validation_alias=_alias("execution_type")
    )
    name: StrictStr | None = Field(
        default=None, min_length=1, max_length=MAX_JOB_NAME, description=_NAME_DOC
    )
    labels: dict[str, str] | None = Field(default=None, description=_LABELS_DOC)
    created_by: StrictStr | None = _actor("created_by", "created")
    status: Literal["active", "inactive"] | None = Field(
        default=None, description=_STATUS_DOC + " Left out: active."
    )

    _name = field_validator("name")(_plain_name)
    _label_map = field_validator("labels", mode="before")(_labels)
    _by = field_validator("created_by")(_plain_name)

    @property
    def paused(self) -> bool:
        """Created paused: ``status`` ``inactive``."""
        return self.status == "inactive"

    @field_validator("callback_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value)

    def destination_problems(self, index: int | None = None) -> list[FieldError]:
        """A job names exactly one destination: ``callback_url`` or ``executor_id``."""
        if self.callback_url is not None and self.executor_id is not None:
            return [FieldError("executor_id", "give callback_url or executor_id, not both", index)]
        if self.callback_url is None and self.executor_id is None:
            return [FieldError("callback_url", "Field required (or give executor_id)", index)]
        return []

    def policy(self) -> dict[str, Any] | None:
        """The policies as stored: the fields set to a value, None if none is."""
        if self.retry_max is None and POLICY_FIELDS.isdisjoint(self.model_fields_set):
            return None  # the common job: no policy given
        given = {k: v for k, v in self.policy_changes().items() if v is not None}
        return given or None


class JobPatch(_Patch, _JobPolicies):
    spec: StrictStr | None = Field(default=None, min_length=1, max_length=256)
    timezone: StrictStr | None = Field(default=None, max_length=64)
    data: Any = None
    callback_url: StrictStr | None = Field(
        default=None,
        validation_alias=_alias("callback_url"),
        description="The job's own callback URL (it then uses no executor).",
    )
    executor_id: StrictInt | None = Field(
        default=None,
        validation_alias=_alias("executor_id"),
        ge=1,
        le=2**63 - 1,
        description="Call back through this executor from now on (not with callback_url).",
    )
    execution_type: Literal["http"] | None = Field(
        default=None, validation_alias=_alias("execution_type")
    )
    name: StrictStr | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_JOB_NAME,
        description=f"{_NAME_DOC} null removes the name.",
    )
    labels: dict[str, str] | None = Field(
        default=None, description=f"{_LABELS_DOC} Replaces every label; {{}} removes them."
    )
    modified_by: StrictStr | None = _actor("modified_by", "changed")
    status: Literal["active", "inactive"] | None = Field(
        default=None,
        description=_STATUS_DOC + " A change pauses or resumes the job, as /pause and /resume.",
    )

    _present = field_validator(
        "spec",
        "timezone",
        "callback_url",
        "executor_id",
        "execution_type",
        "labels",
        "modified_by",
        "status",
        "retry_max",
        mode="before",
    )(_not_null)
    _name = field_validator("name")(_plain_name)
    _by = field_validator("modified_by")(_plain_name)
    _label_map = field_validator("labels", mode="before")(_labels)

    @field_validator("callback_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value)


class PauseIn(_Input):
    """The optional body of pause and resume."""

    note: StrictStr | None = Field(
        default=None,
        max_length=MAX_NOTE_LENGTH,
        description="Why: shown on the job as its status_note.",
    )
    modified_by: StrictStr | None = _actor("modified_by", "paused or resumed")

    _note = field_validator("note")(_plain_name)
    _by = field_validator("modified_by")(_plain_name)


MAX_BACKFILL_SLOTS = 10_000
"""The most slots one backfill request may cover (ask again for more)."""

MAX_UNSENT_BACKFILL = 100_000
"""Backfilled runs of one project that may wait to be sent at once: a backfill
that would queue more is refused (409) until some have gone out. The owners
send every project's in turn (``Queries.backfill_due``), so this bounds how
long another project's backfill waits behind it, and what it holds on disk."""


class BackfillIn(_Input):
    """The body of ``POST /jobs/{id}/backfill``: the range of the job's grid
    to fire, both ends included. ``to`` later than now is taken as now."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)
    """``from`` only: the attribute's own name (``from_``) is no field of the body."""

    from_: float = Field(
        validation_alias="from",
        description="RFC 3339 with offset: the first instant of the range.",
        json_schema_extra=_INSTANT_SCHEMA,
    )
    to: float = Field(
        description="RFC 3339 with offset: the last instant of the range (now, if later).",
        json_schema_extra=_INSTANT_SCHEMA,
    )

    _instants = field_validator("from_", "to", mode="before")(_instant)


class ScheduleIn(_Input):
    """A schedule alone (``GET /schedules/preview``), checked exactly as a job's
    ``spec`` and ``timezone`` are (a test holds the two models together)."""

    spec: StrictStr = Field(min_length=1, max_length=256)
    timezone: StrictStr = Field(default="UTC", max_length=64)


def field_errors(exc: ValidationError, index: int | None = None) -> list[FieldError]:
    out = []
    for err in exc.errors(include_url=False):
        loc = [str(part) for part in err["loc"]]
        name = ".".join(_canonical(part) for part in loc) if loc else "body"
        message = err["msg"]
        if err["type"] == CLIENT_FIELD_ERROR:
            context = err.get("ctx", {})
            name = ".".join([*loc, str(context["field"])]) if loc else str(context["field"])
            message = str(context["message"])
        elif err["type"] == "extra_forbidden":
            message = "unknown field"
        elif err["type"] == "value_error":
            message = str(err.get("ctx", {}).get("error", message))
        out.append(FieldError(name, message, index))
    return out


def _canonical(name: str) -> str:
    for snake, camel in _ALIASES.items():
        if name == camel:
            return snake
    return name


def parse_one(
    model: type[M], body: Any, index: int | None = None, context: dict[str, Any] | None = None
) -> M:
    """Validate one object; raise ``ValidationFailed`` naming every bad field.
    ``context`` reaches the model's validators (a job patch's ``timezone``)."""
    if not isinstance(body, dict):
        raise ValidationFailed(
            "expected a JSON object", [FieldError("body", "must be a JSON object", index)]
        )
    twice = [(snake, camel) for snake, camel in _ALIASES.items() if snake in body and camel in body]
    details = [
        FieldError(snake, f"given twice, as {snake} and {camel}", index) for snake, camel in twice
    ]
    if twice:
        body = {k: v for k, v in body.items() if k not in {camel for _, camel in twice}}
    if model.model_config.get("extra") == "forbid":
        body, unknown = _unknown_keys(model, body, index)
        details += unknown
    try:
        parsed = model.model_validate(body, context=context)
    except ValidationError as exc:
        details += field_errors(exc, index)
    if details:
        raise invalid(details)
    return parsed


MAX_FIELD_ERRORS = 100
"""A 422 lists at most this many field errors; ``details_omitted`` counts the rest."""

UNKNOWN_KEYS_LISTED = 5
"""Unknown keys of one object named in its error; the rest are only counted."""


def _summary(details: list[FieldError], total: int) -> str:
    first = details[0]
    where = f"item {first.index}: " if first.index is not None else ""
    more = f" (and {total - 1} more)" if total > 1 else ""
    return f"{where}{first.field}: {first.message}{more}"


def invalid(details: list[FieldError], omitted: int = 0) -> ValidationFailed:
    """One ValidationFailed for ``details``, listing at most ``MAX_FIELD_ERRORS``."""
    total = len(details) + omitted
    listed = details[:MAX_FIELD_ERRORS]
    return ValidationFailed(_summary(listed, total), listed, total - len(listed))


@lru_cache(maxsize=64)
def known_keys(model: type[BaseModel]) -> frozenset[str]:
    keys: set[str] = set()
    for name, info in model.model_fields.items():
        keys.add(name)
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            keys.update(choice for choice in alias.choices if isinstance(choice, str))
        elif isinstance(alias, str):
            keys.add(alias)
    return frozenset(keys)


def _unknown_keys(
    model: type[BaseModel], body: dict[str, Any], index: int | None
) -> tuple[dict[str, Any], list[FieldError]]:
    """Drop keys the model does not know, with one error per object (naming the
    first few): thousands of unknown keys cost a set difference, not an error each."""
    known = known_keys(model)
    unknown = body.keys() - known
    if not unknown:
        return body, []
    named = list(itertools.islice((k for k in body if k not in known), UNKNOWN_KEYS_LISTED))
    if len(unknown) <= UNKNOWN_KEYS_LISTED:
        errors = [FieldError(key, "unknown field", index) for key in named]
    else:
        errors = [
            FieldError(
                named[0],
                f"unknown field (and {len(unknown) - 1} more unknown fields:"
                f" {', '.join(named[1:])}, ...)",
                index,
            )
        ]
    return {key: body[key] for key in known if key in body}, errors


# -- output ------------------------------------------------------------------------------


class _Output(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ProjectOut(_Output):
    id: int
    name: str
    description: str = ""
    created_at: str | None = None
    updated_at: str | None = None
    created_by: str | None = Field(default=None, description="None: not known (older rows).")
    modified_by: str | None = Field(
        default=None, description="Who changed it last; None: never changed, or not known."
    )
    signing_secret: str | None = None
    """Shown to callers who may sign for the project."""


class CredentialOut(_Output):
    id: int
    api_key: str
    description: str = ""
    archived: bool = False
    scopes: list[str] = Field(default_factory=lambda: list(SCOPES))
    projects: list[int] = Field(default_factory=list)
    """Empty: every project."""
    expires_at: str | None = None
    created_by: str | None = None
    modified_by: str | None = Field(
        default=None, description="Who archived or restored it last; None: not known."
    )
    created_at: str | None = None
    updated_at: str | None = None
    api_secret: str | None = None
    """Only in the answer that created the credential."""


class ExecutorOut(_Output):
    """An executor as shown: never its secret, only whether it has one."""

    id: int
    name: str
    type: str = "webhook_url"
    webhook_url: str
    webhook_method: str = "POST"
    has_webhook_secret: bool = False
    jobs: int = Field(default=0, description="The jobs calling back through it.")
    created_by: str | None = None
    modified_by: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class RetryOut(_Output):
    """A job's retry policy as stored: a field not set follows the node's setting."""

    attempts: int | None = None
    initial_seconds: float | None = None
    multiplier: float | None = None
    cap_seconds: float | None = None
    jitter: float | None = None


class JobOut(_Output):
    id: int
    project_id: int
    spec: str
    timezone: str = "UTC"
    data: Any = None
    callback_url: str = Field(default="", description='"" for a job of an executor.')
    executor_id: int | None = Field(
        default=None, description="The executor its callbacks go through; None: callback_url."
    )
    execution_type: str = "http"
    paused: bool = False
    status: Literal["active", "paused", "completed"] = Field(
        default="active",
        description="completed: no run left (past end_at or max_runs, an @at that ran),"
        " also when paused; a completed job that is changed to have runs again is active"
        " again.",
    )
    status_note: str | None = Field(
        default=None, description="The note of the last pause or resume."
    )
    last_execution_date: str | None = None
    next_run_at: str | None = None
    last_state: str | None = None
    last_status_code: int | None = None
    fired_count: int = 0
    success_count: int = 0
    failed_count: int = 0
    missed_count: int = 0
    created_at: str | None = None
    updated_at: str | None = None
    name: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    created_by: str | None = Field(default=None, description="None: not known (older rows).")
    modified_by: str | None = Field(
        default=None,
        description="Who changed, paused or resumed it last; None: never, or not known.",
    )
    overlap: Overlap = "allow"
    retry: RetryOut | None = Field(default=None, description="None: the node's settings.")
    timeout_seconds: float | None = None
    catchup: Catchup = "latest"
    catchup_window_seconds: float | None = None
    start_at: str | None = None
    end_at: str | None = None
    jitter_seconds: int = 0
    max_runs: int | None = None
    pause_after_failures: int | None = None
    start_date: str | None = Field(
        default=None, description="start_at, under the official clients' name."
    )
    end_date: str | None = Field(
        default=None, description="end_at, under the official clients' name."
    )
    retry_max: int | None = Field(
        default=None,
        description="retry.attempts, under the official clients' name (None: the node's setting).",
    )


class ScheduleRun(_Output):
    at: str = Field(description="The run's instant, RFC 3339 in UTC.")
    local: str = Field(description="The same instant in the schedule's timezone, with its offset.")
    unix: int


class SchedulePreview(_Output):
    spec: str
    timezone: str
    after: str = Field(description="The runs are the first ones after this instant (UTC).")
    runs: list[ScheduleRun] = Field(description="Oldest first; fewer than asked if none follow.")


class ExecutionOut(_Output):
    id: int
    execution_id: str
    job_id: int
    project_id: int | None = None
    scheduled_at: str
    slot: int
    """The second the run is for (a manual run's: when it was asked for)."""
    state: ExecutionState
    trigger: ExecutionTrigger = ExecutionTrigger.SCHEDULE
    node_id: int | None = None
    epoch: int | None = None
    attempts: int | None = None
    status_code: int | None = None
    latency_ms: int | None = None
    error: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class AuditKind(enum.StrEnum):
    """What an audit record is about (``GET /audit?kind=``)."""

    PROJECT = "project"
    JOB = "job"
    CREDENTIAL = "credential"
    """Shown to operators only (a credential belongs to no project)."""
    EXECUTOR = "executor"


AUDIT_KINDS: tuple[str, ...] = tuple(AuditKind)


class AuditRecordOut(_Output):
    """One record of the audit log: who deleted what, and when."""

    id: int
    action: Literal["deleted"] = "deleted"
    kind: AuditKind
    object_id: int = Field(description="The id the deleted object had.")
    name: str | None = Field(
        default=None, description="Its name (a credential's description), if it had one."
    )
    project_id: int | None = Field(
        default=None, description="The project it belonged to (a project's own id)."
    )
    by: str | None = Field(
        description="deleted_by as the request gave it, else the caller: credential:<id> or"
        " operator."
    )
    principal: str | None = Field(
        default=None,
        description="The authenticated caller who asked (credential:<id> or operator), which"
        " no body can set; null for records older than it.",
    )
    at: str = Field(description="When (RFC 3339, UTC): the time the delete was proposed.")
    detail: dict[str, Any] = Field(
        default_factory=dict,
        description="What else named it: a job's spec and callback_url, a credential's api_key.",
    )
