"""The shapes the API answers that are not records of ``scheduler0.models``:
pages, acknowledgements, health, status, membership, the error envelope.

Declarations only: the route table names them as each route's response, the
OpenAPI document shows their JSON schemas, and the schemathesis test holds the
live answers to them. The handlers build plain dicts of these fields.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from scheduler0.models import (
    CredentialOut,
    ExecutionOut,
    ExecutionTrigger,
    ExecutorOut,
    JobOut,
    ProjectOut,
)


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Open(BaseModel):
    """A status: the fields below are always there; others may be added."""

    model_config = ConfigDict(extra="allow", frozen=True)


class _Page(_Shape):
    total: int = Field(description="Items in the whole list.")
    offset: int
    limit: int


class ProjectPage(_Page):
    projects: list[ProjectOut]


class ExecutorPage(_Page):
    executors: list[ExecutorOut]


class CredentialPage(_Page):
    credentials: list[CredentialOut]


class JobPage(_Page):
    jobs: list[JobOut]


class ExecutionPage(_Page):
    executions: list[ExecutionOut] = Field(description="Newest first.")


class Deleted(_Shape):
    id: int
    deleted: Literal[True]


class Triggered(_Open):
    """A run-now accepted: sent by the bucket's owner as soon as it sees it."""

    job_id: int
    slot: int = Field(description="The second the run was asked for.")
    execution_id: str = Field(
        description="The receiver's de-duplication key: <job>-<second>-m<n> for a manual run."
    )
    trigger: ExecutionTrigger = ExecutionTrigger.MANUAL


class Backfilled(_Open):
    """A backfill accepted: its slots are sent by the bucket's owner at a
    bounded pace, each with the execution id its scheduled run would have had."""

    job_id: int
    requested: int = Field(description="Slots of the job's grid in the range.")
    queued: int = Field(description="Slots queued now (none yet run, or missed or skipped).")
    already_done: int = Field(
        description="Slots that already have a run (sent, in flight, pending or lost)."
    )
    left_to_schedule: int = Field(
        description="Slots after the job's last fired slot: its schedule fires them itself."
    )
    first: str | None = Field(description="The first slot in the range (RFC 3339), if any.")
    last: str | None = Field(description="The last slot in the range (RFC 3339), if any.")


class Health(_Open):
    status: Literal["ok", "degraded", "halted"]
    halted: str | None = Field(
        description="Why the replica stopped applying (fail-stop), or null while it runs."
    )
    low_disk: bool
    node_id: int
    version: str
    role: str | None = Field(description="leader, follower, candidate or unknown.")
    ready: bool
    has_quorum: bool
    uptime_seconds: float


class RaftStatus(_Open):
    state: str | None = None
    leader: str | None = None
    has_quorum: bool | None = None
    term: int | None = None
    commit_index: int | None = None
    applied_index: int | None = None
    ready: bool | None = None


class NodeStatus(_Open):
    node_id: int
    address: str
    raft_address: str
    raft: RaftStatus
    epoch: int
    buckets_owned: int
    jobs_owned: int
    queue_depth: int
    in_flight: int
    fire_lag_p99_seconds: float
    rss_bytes: int
    over_memory: bool
    low_disk: bool
    halted: str | None
    counts: dict[str, int]


class Member(_Open):
    node_id: int
    address: str
    raft_address: str


class Status(_Open):
    node: NodeStatus
    leader: str | None
    term: int | None
    epoch: int
    buckets_per_node: dict[str, int]
    members: list[Member]


class ClusterMember(_Open):
    """One member as seen from this node; an unreachable one has ``error``."""

    node_id: int
    address: str
    raft_address: str
    reachable: bool
    response_ms: int
    role: Literal["leader", "follower"]
    error: str | None = None
    digest_matches_leader: bool | None = None


class ClusterStatus(_Open):
    node_id: int
    leader: str | None
    leader_node_id: int | None
    term: int | None
    has_quorum: bool | None
    commit_index: int | None
    applied_index: int | None
    epoch: int
    buckets_per_node: dict[str, int]
    members: list[ClusterMember]


class MemberIn(_Open):
    """A node to add (also accepted: nodeId/NodeId, Address, raftAddress/RaftAddress)."""

    node_id: int = Field(ge=1)
    address: str = Field(description="The node's HTTP base URL, http(s)://host:port.")
    raft_address: str = Field(description="host:port of the node's raft transport.")


class MemberRemoved(_Shape):
    node_id: int
    removed: Literal[True]


class FieldProblem(_Shape):
    field: str = Field(description="The input named in snake_case, or body, or a path/query name.")
    message: str
    index: int | None = Field(default=None, description="The item's position in a batch.")


class ErrorBody(_Shape):
    code: str = Field(description="bad_request, unauthorized, forbidden, not_found, ...")
    message: str
    details: list[FieldProblem]
    details_omitted: int = Field(
        default=0, description="Further field errors not listed (details are capped); absent if 0."
    )


class ErrorEnvelope(_Shape):
    success: Literal[False]
    data: None
    error: ErrorBody
