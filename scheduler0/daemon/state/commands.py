"""Commands: the only way durable state changes.

Every command is a frozen record named in the past tense. The proposer stamps
everything apply would otherwise have to invent (``now``, generated keys,
random values), so that applying the same log gives the same database on
every node.

On the wire a command is ``{"v": VERSION, "t": <type name>, "a": <fields>}``,
encoded with orjson and, above a small size, zlib-compressed (first byte
``z``; otherwise ``j``). The single replicated raft method receives these
bytes; see ``machine.StateMachine.apply``.

Adding a command type is safe; renaming one, or changing the meaning of a
field of an existing one, is not: old journals replay through ``decode``, and
an old entry must apply exactly as the code that wrote it applied it (nodes
rebuild from snapshots taken at different log indexes). Bump ``VERSION`` and
keep reading the old forms instead.

Versions: 1, the first; 2 adds ``ResultsRecorded.groups``; 3 keeps each
job's next run in state (``next_run`` of a created job and of
``JobUpdated.changes``, ``JobPaused.next_run``, ``SlotsFired.following``) and
carries a client's idempotency key (``JobsCreated`` and ``ProjectCreated``)
and scopes credentials (``CredentialCreated.scopes``, ``projects``,
``expires_at``, ``created_by``, ``archived``; ``ProjectUpdated.signing_secret``);
4 adds a job's policies (``policy`` of a created job,
``JobUpdated.changes["policy"]``), the note of a pause or resume
(``JobPaused.note``) and the slots an overlap policy skipped
(``SlotsFired.skipped``). Optional fields whose absence keeps the older meaning
were also added: ``JobTriggered.manual`` (a run-now keyed apart from the
schedule), a job's ``name`` and ``labels`` (``JobsCreated`` items,
``JobUpdated.changes``), a created job's ``paused`` (``JobsCreated`` items),
``SlotsFired.caught_up`` (fires of a
``catchup=all`` backlog, recorded with trigger ``catchup``),
``MemberJoined.automatic`` and ``MemberLeft.remember``; and one command type,
``JobBackfilled`` (older journals never hold it). Who did it (optional, added
the same way; absent: unknown, NULL, as every older entry): ``created_by`` of
``ProjectCreated``, of ``JobsCreated`` (the batch's default) and of its items,
``modified_by`` of ``ProjectUpdated``, ``JobUpdated.changes``, ``JobPaused``
and ``CredentialArchived``, and ``deleted_by`` of ``ProjectDeleted``,
``JobDeleted`` and ``CredentialDeleted``: a delete that carries it leaves a
record in ``audit_log`` (one without it, as every older entry, leaves none);
and ``ExecutionsPruned.audit_keep_rows``/``audit_before``, the audit log's
retention (absent: the audit log is not pruned); ``deleted_as`` of the four
deletes (the authenticated caller, beside ``deleted_by``, which the client
names). A node refuses commands of a
version it does not know (loudly) instead of dropping their fields: upgrade a
cluster by stopping every node, then starting them all on the new code.

Version 5 adds executors: three command types (``ExecutorCreated``,
``ExecutorUpdated``, ``ExecutorDeleted``; older journals never hold them) and
a job's optional ``executor_id`` (a ``JobsCreated`` item, and
``JobUpdated.changes``): such a job's callbacks go to its executor's URL, with
its method, signed with its secret (the project's signing secret when it has
none), read at each delivery. Absent, a job calls its own ``callback_url`` as
before.

Version 6 lets a ``ResultsRecorded`` group be ``skipped``: a run decided
ahead of its slot whose job was paused or deleted before the slot, so it was
never sent. It counts neither as a success nor as a failure (a job's
consecutive failures stay as they are); version 5 nodes, which would count
it failed, refuse version 6 entries instead. It also adds one command type,
``NodeRunsLost`` (a restarted node's runs without a sender, decided in apply).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, NamedTuple

import orjson

VERSION = 6
READABLE_VERSIONS = frozenset({1, 2, 3, 4, 5, 6})
_COMPRESS_ABOVE = 4096


COMMAND_TYPES: dict[str, type[Command]] = {}
"""Every command type by its name on the wire; filled by the classes themselves."""


@dataclass(frozen=True)
class Command:
    """Base of every command. A subclass registers itself under its class name,
    which is its name on the wire: never rename one."""

    type_name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__name__ in COMMAND_TYPES:
            raise TypeError(f"two command types named {cls.__name__}")
        cls.type_name = cls.__name__
        COMMAND_TYPES[cls.__name__] = cls


@dataclass(frozen=True)
class Noop(Command):
    """A barrier: once applied here, everything committed before it is too."""

    now: float = 0.0


@dataclass(frozen=True)
class ProjectCreated(Command):
    now: float
    name: str
    description: str
    signing_secret: str
    idempotency: list[Any] | None = None
    """An ``IdempotencyKey`` (version 3): see ``state/idempotency.py``."""
    created_by: str | None = None
    """Who created it (optional; absent: unknown)."""


@dataclass(frozen=True)
class ProjectUpdated(Command):
    now: float
    project_id: int
    name: str | None = None
    description: str | None = None
    signing_secret: str | None = None
    """Version 3: a new secret (a rotation), stamped by the proposer."""
    modified_by: str | None = None
    """Who changed it (optional; absent: the project's ``modified_by`` is kept)."""


@dataclass(frozen=True)
class ProjectDeleted(Command):
    now: float
    project_id: int
    deleted_by: str | None = None
    """Who deleted it (optional): given, the delete is recorded in ``audit_log``."""
    deleted_as: str | None = None
    """The authenticated caller who asked (``operator``, ``credential:<id>``),
    which a body cannot set (optional; absent, as in every older entry: NULL)."""


@dataclass(frozen=True)
class CredentialCreated(Command):
    """Version 3 adds what the credential may do; the defaults are what every
    credential could do before: all scopes, every project, no expiry."""

    now: float
    api_key: str
    secret_hash: str
    description: str = ""
    scopes: list[str] | None = None
    """None: every scope."""
    projects: list[int] | None = None
    """None: every project."""
    expires_at: float | None = None
    created_by: str | None = None
    archived: bool = False


@dataclass(frozen=True)
class CredentialArchived(Command):
    now: float
    credential_id: int
    archived: bool = True
    modified_by: str | None = None
    """Who archived or restored it (optional; absent: ``modified_by`` is kept)."""


@dataclass(frozen=True)
class CredentialDeleted(Command):
    now: float
    credential_id: int
    deleted_by: str | None = None
    """Who deleted it (optional): given, the delete is recorded in ``audit_log``."""
    deleted_as: str | None = None
    """The authenticated caller who asked (``operator``, ``credential:<id>``),
    which a body cannot set (optional; absent, as in every older entry: NULL)."""


@dataclass(frozen=True)
class JobsCreated(Command):
    """Jobs already validated by the proposer; apply re-checks only what state
    decides (the project exists). Each job is a dict with project_id, spec,
    timezone, data, callback_url, execution_type, anchor, (version 3)
    next_run, its first slot, computed by the proposer, and (version 4)
    policy, the job's policies set (a dict; absent or None: every default).
    Optional ``name`` (unique in its project: apply refuses a taken one) and
    ``labels`` (a ``{key: value}`` map); absent: no name, no labels, as every
    older entry. Optional ``executor_id`` (version 5; apply refuses an unknown
    one): the job calls back through that executor, and its ``callback_url``
    is ``""``. Optional ``created_by``: who created that job, when it is not
    the batch's ``created_by``. Optional ``paused`` (true: the job is created
    paused, as an official client's ``status: inactive`` asks); absent:
    active, as every older entry."""

    now: float
    jobs: list[dict[str, Any]]
    idempotency: list[Any] | None = None
    """An ``IdempotencyKey`` (version 3): see ``state/idempotency.py``."""
    created_by: str | None = None
    """Who created the jobs that do not name their own ``created_by`` (optional;
    absent: unknown). One value for the batch keeps a batch of 10,000 small."""


@dataclass(frozen=True)
class JobUpdated(Command):
    """``changes`` holds only the fields being set. A new spec or timezone
    takes effect from the next slot: ``anchor`` is re-stamped by the proposer
    for ``@every`` specs, and (version 3) ``next_run`` is the new first slot.
    A change of the schedule without ``next_run`` clears the kept next run.
    Optional (absent in older entries): ``name`` (a string, or None to clear
    it; unique in the job's project) and ``labels`` (the whole new map; empty
    clears it). ``changes["policy"]`` (version 4) sets the policies it names, and returns
    those it gives as None to their defaults; the others are kept. A change of
    the policies that bound the grid (``start_at``, ``end_at``, ``max_runs``)
    comes with its ``next_run`` and ``not_before``. ``changes["executor_id"]``
    (version 5) points the job at an executor (with ``callback_url`` ``""``),
    or, None, back at its own ``callback_url`` (given with it). Optional
    ``changes["modified_by"]``: who changed it (absent: kept)."""

    now: float
    job_id: int
    changes: dict[str, Any]


@dataclass(frozen=True)
class JobDeleted(Command):
    now: float
    job_id: int
    deleted_by: str | None = None
    """Who deleted it (optional): given, the delete is recorded in ``audit_log``."""
    deleted_as: str | None = None
    """The authenticated caller who asked (``operator``, ``credential:<id>``),
    which a body cannot set (optional; absent, as in every older entry: NULL)."""


@dataclass(frozen=True)
class JobPaused(Command):
    """Pause, or resume. A resume skips the slots due while paused; its
    ``next_run`` (version 3) is the first slot after ``now``. ``note``
    (version 4): why, shown on the job until its next pause or resume."""

    now: float
    job_id: int
    paused: bool
    next_run: int | None = None
    note: str | None = None
    modified_by: str | None = None
    """Who paused or resumed it (optional; absent: ``modified_by`` is kept)."""


@dataclass(frozen=True)
class JobTriggered(Command):
    """Run a job once now, outside its schedule: a ``pending`` execution that
    the bucket's owner picks up and sends.

    ``manual`` (added within version 3; absent in older entries, which apply
    as before): the run is keyed apart from the schedule's runs, at the next
    free ``schema.manual_slot`` of the second ``slot``, with trigger
    ``manual``, so it never collides with a scheduled run of that second.
    Without it the run takes ``slot`` itself and a run already there refuses
    it (``Conflict``), as older nodes applied it."""

    now: float
    job_id: int
    slot: int
    manual: bool = False


@dataclass(frozen=True)
class JobBackfilled(Command):
    """Fire past slots of a job's grid once (added within version 4): each of
    ``slots`` (the proposer computed them from the job's grid, ascending) not
    held by an execution yet becomes a ``pending`` execution with trigger
    ``backfill``, and one recorded ``missed`` or ``skipped`` is made
    ``pending`` again; either is keyed by the slot itself, so it carries the
    execution id the scheduled run would have had. A slot the schedule may
    still fire (later than the job's last fired slot and its start) is left
    to the schedule. The bucket's owner sends the pending ones at its own
    pace (``scheduling/adoption.py``)."""

    now: float
    job_id: int
    slots: list[int]


@dataclass(frozen=True)
class ExecutorCreated(Command):
    """Version 5: a ``webhook_url`` executor, validated by the proposer
    (``webhook_method`` one of ``models.WEBHOOK_METHODS``; ``webhook_secret``
    None: its jobs are signed with their project's signing secret)."""

    now: float
    name: str
    webhook_url: str
    webhook_method: str = "POST"
    webhook_secret: str | None = None
    created_by: str | None = None
    type: str = "webhook_url"


@dataclass(frozen=True)
class ExecutorUpdated(Command):
    """Version 5. ``changes`` holds only the fields being set, of ``name``,
    ``webhook_url``, ``webhook_method``, ``webhook_secret`` (None: no secret of
    its own any more) and ``modified_by``. The owners of its jobs re-read them,
    so later deliveries use the new values."""

    now: float
    executor_id: int
    changes: dict[str, Any]


@dataclass(frozen=True)
class ExecutorDeleted(Command):
    """Version 5: refused (``Conflict``) while a job still uses the executor.
    ``deleted_by``: who asked, as the client said."""

    now: float
    executor_id: int
    deleted_by: str | None = None
    deleted_as: str | None = None
    """The authenticated caller who asked (``operator``, ``credential:<id>``),
    which a body cannot set (optional; absent, as in every older entry: NULL)."""


class IdempotencyKey(NamedTuple):
    """A client's ``Idempotency-Key`` as a command carries it."""

    key: str
    """SHA-256 (hex) of the caller, the route and the client's key."""
    fingerprint: str
    """SHA-256 (hex) of the request body, canonically encoded."""
    expires_at: float
    """Unix seconds after which the key is forgotten (stamped by the proposer)."""


class Missed(NamedTuple):
    """One entry of ``SlotsFired.missed``."""

    job_id: int
    slots: list[int]
    uncounted: int


class Skipped(NamedTuple):
    """One entry of ``SlotsFired.skipped`` (version 4)."""

    job_id: int
    slots: list[int]
    reason: str


class ResultGroup(NamedTuple):
    """One entry of ``ResultsRecorded.groups``: the outcome shared by ``job_ids``."""

    slot: int
    state: str
    status_code: int | None
    attempts: int
    latency_ms: int | None
    error: str | None
    job_ids: list[int]


class LegacyResult(NamedTuple):
    """One entry of a version-1 ``ResultsRecorded.results``."""

    job_id: int
    slot: int
    state: str
    status_code: int | None
    attempts: int
    latency_ms: int | None
    error: str | None


@dataclass(frozen=True)
class SlotsFired(Command):
    """One scheduler tick of one node. ``fires`` are ``[job_id, slot]`` to
    dispatch; ``missed`` are ``[job_id, [slots...], uncounted]`` recorded as
    missed (``uncounted`` = further missed slots not listed one by one);
    ``following`` (version 3) are ``[next_slot, [job_ids...]]``: each job's
    slot after this tick, kept as its next run if the tick advances it and the
    job's schedule is still the one the proposer computed it from:
    ``revisions`` are ``[job_id, revision]`` for the jobs whose revision (bumped
    by every change of schedule) was not 0 when the proposer loaded them.
    ``skipped`` (version 4) are ``[job_id, [slots...], reason]``: slots the
    proposer's ``overlap`` policy skipped (the job's previous execution was
    still in flight there), recorded ``skipped`` with the reason.
    ``caught_up`` (optional within version 4; absent: none) are the
    ``[job_id, slot]`` of ``fires`` that a ``catchup=all`` backlog fired
    while a later slot of the job was already due: their executions are
    recorded with trigger ``catchup`` (every other fire is ``schedule``)."""

    now: float
    node_id: int
    epoch: int
    fires: list[list[int]]
    missed: list[list[Any]] = field(default_factory=list)
    following: list[list[Any]] = field(default_factory=list)
    revisions: list[list[int]] = field(default_factory=list)
    skipped: list[list[Any]] = field(default_factory=list)
    caught_up: list[list[int]] = field(default_factory=list)

    def missed_entries(self) -> list[Missed]:
        return [Missed(*entry) for entry in self.missed]

    def skipped_entries(self) -> list[Skipped]:
        return [Skipped(*entry) for entry in self.skipped]

    def revision_of(self) -> dict[int, int]:
        """Job id -> the revision its next run was computed from (absent: 0)."""
        return {job_id: revision for job_id, revision in self.revisions}


@dataclass(frozen=True)
class ResultsRecorded(Command):
    """Callback outcomes of one tick. ``groups`` (what nodes propose): one
    ``[slot, state, status_code, attempts, latency_ms, error, [job_ids]]`` per
    distinct outcome, since every fire of one POST shares its outcome.
    ``results`` (version-1 journals): one ``[job_id, slot, state, status_code,
    attempts, latency_ms, error]`` per fire, applied row by row as version 1
    did. Within a group a job id counts once."""

    now: float
    node_id: int
    results: list[list[Any]] = field(default_factory=list)
    groups: list[list[Any]] = field(default_factory=list)

    def result_groups(self) -> list[ResultGroup]:
        return [ResultGroup(*group) for group in self.groups]

    def legacy_results(self) -> list[LegacyResult]:
        return [LegacyResult(*row) for row in self.results]


@dataclass(frozen=True)
class AssignmentChanged(Command):
    """Bucket ``i`` is owned by ``owners[i]`` from ``epoch`` on."""

    now: float
    epoch: int
    owners: list[int]


@dataclass(frozen=True)
class MemberJoined(Command):
    """``automatic``: proposed by the leader for a configured replica raft knows
    (not by an operator); ignored for a node that has departed, so a removal is
    never undone by the leader seeing the leaving node before raft dropped it."""

    now: float
    node_id: int
    address: str
    raft_address: str
    automatic: bool = False


@dataclass(frozen=True)
class MemberLeft(Command):
    """``remember``: record the departure (older entries did not), so that the
    leader does not re-register the node and a node removed while it was down
    can learn it from the others."""

    now: float
    node_id: int
    remember: bool = False


@dataclass(frozen=True)
class ExecutionsLost(Command):
    """Dispatched executions whose lease ran out: ``[job_id, slot]``."""

    now: float
    executions: list[list[int]]


@dataclass(frozen=True)
class NodeRunsLost(Command):
    """(Version 6.) A node's scheduler restarted, or reloaded after a fire it
    could not see decided: every execution ``dispatched`` by ``node_id``,
    except ``keep`` (``[job_id, slot]``: fires it still holds or sends), has
    no sender and is recorded ``lost``. Decided in apply: a fire of the node
    proposed before a crash and committed after its restart is in the log
    before this entry, so it is included (a list read at the restart missed
    it)."""

    now: float
    node_id: int
    keep: list[list[int]] = field(default_factory=list)


@dataclass(frozen=True)
class ExecutionsRedispatched(Command):
    """A node takes over ``lost`` executions of buckets it owns, to send them
    again with the same execution id: ``[job_id, slot]``."""

    now: float
    node_id: int
    executions: list[list[int]]


@dataclass(frozen=True)
class ExecutionsPruned(Command):
    """Retention: drop rows past the global cap and older than ``before``.
    ``audit_keep_rows`` and ``audit_before`` (optional; absent, as in every
    older entry: the audit log is left alone): ``audit_log`` keeps at most its
    newest ``audit_keep_rows`` records, none recorded before ``audit_before``.
    ``fair`` (optional; absent, as in every older entry: the oldest rows of
    all projects go first): over either cap, the projects holding the most
    rows are trimmed first, so one project cannot push another's out."""

    now: float
    keep_rows: int
    before: float
    per_job: int
    job_id_from: int
    job_id_to: int
    audit_keep_rows: int | None = None
    audit_before: float | None = None
    fair: bool | None = None


class UndecodableCommand(ValueError):
    """The entry's bytes are not a command (bad framing, compressed data or
    JSON): every replica reads the same bytes the same way, so each skips it."""


class CommandNotReadableHere(Exception):
    """A well-formed entry this node's code cannot apply as written: a version
    or command type it does not know, or a field its command lacks (written by
    newer code). Skipping it would leave this replica behind the others, so
    the replica halts instead (``StateMachine``): run the code that wrote it."""


def encode(command: Command) -> bytes:
    # A shallow field map: orjson walks the nested lists itself (asdict would
    # deep-copy every job of a batch first).
    fields_ = {f.name: getattr(command, f.name) for f in fields(command)}
    body = orjson.dumps({"v": VERSION, "t": command.type_name, "a": fields_})
    if len(body) > _COMPRESS_ABOVE:
        return b"z" + zlib.compress(body, 1)
    return b"j" + body


def decode(payload: bytes) -> Command:
    try:
        kind, body = payload[:1], payload[1:]
        if kind == b"z":
            body = zlib.decompress(body)
        elif kind != b"j":
            raise UndecodableCommand(f"unknown command framing {kind!r}")
        record = orjson.loads(body)
        version, type_name, arguments = record["v"], record["t"], record["a"]
    except MemoryError:
        raise  # this node's memory, not the entry: the replica halts
    except Exception as exc:  # any malformed payload is one kind of error to apply
        raise UndecodableCommand(str(exc)) from exc
    if not isinstance(version, int):  # no code writes that: not a command
        raise UndecodableCommand(f"command version {version!r} is not a number")
    if version not in READABLE_VERSIONS:
        raise CommandNotReadableHere(
            f"command version {version!r} is not one this code reads"
            f" (it reads {sorted(READABLE_VERSIONS)})"
        )
    cls = COMMAND_TYPES.get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        raise CommandNotReadableHere(f"unknown command type {type_name!r}")
    if not isinstance(arguments, dict):
        raise UndecodableCommand(f"{type_name} arguments are not an object")
    unknown = arguments.keys() - {f.name for f in fields(cls)}
    if unknown:
        raise CommandNotReadableHere(f"{type_name} has fields this code lacks: {sorted(unknown)}")
    try:
        return cls(**arguments)
    except TypeError as exc:  # a required field missing
        raise UndecodableCommand(f"{type_name}: {exc}") from exc
