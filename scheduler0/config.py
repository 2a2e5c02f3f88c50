"""Node settings: one validated model, loaded with a clear precedence.

Precedence, highest first (clig.dev): CLI flags (``overrides``) > environment
``SCHEDULER0_<UPPER_SNAKE>`` > ``config.yml`` > the defaults below. The three
secrets (``SecretKey``, ``AuthUsername``, ``AuthPassword``) follow the same
order and fall back last to the ``.scheduler0`` JSON file the original wrote.

Every YAML key is the original's PascalCase name (the field alias); Python code
uses the snake_case attribute. Any invalid value raises one ``ConfigError``
whose message names every bad key, so a node never starts with a value that
would crash it later (a 0 timeout, a 0 worker pool...).
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import os
import secrets
import ssl
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from scheduler0.errors import ConfigError

ENV_PREFIX = "SCHEDULER0_"
CONFIG_FILE_NAME = "config.yml"
SECRETS_FILE_NAME = ".scheduler0"
SECRET_FIELDS = ("secret_key", "auth_username", "auth_password")


# --- value types -----------------------------------------------------------


def _reject_bool(value: Any) -> Any:
    # YAML turns `yes` into True and pydantic would then read it as 1.
    if isinstance(value, bool):
        raise ValueError(f"must be a number, got {value!r}")
    return value


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value!r}")
    return value


PositiveInt = Annotated[int, BeforeValidator(_reject_bool), Field(gt=0)]
NonNegativeInt = Annotated[int, BeforeValidator(_reject_bool), Field(ge=0)]
PositiveFloat = Annotated[float, BeforeValidator(_reject_bool), Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, BeforeValidator(_reject_bool), Field(ge=0, allow_inf_nan=False)]


def _split_host_port(value: str) -> tuple[str, int]:
    """``"host:port"`` (IPv6 as ``"[::1]:7071"``) -> ``(host, port)``."""
    host, sep, port_text = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"must be host:port, got {value!r}")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be between 1 and 65535, got {value!r}")
    return host, port


def _check_host_port(value: Any) -> Any:
    if isinstance(value, str):
        _split_host_port(value.strip())
        return value.strip()
    return value


def _check_url(value: Any) -> Any:
    if isinstance(value, str):
        url = value.strip().rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http:// URL such as http://127.0.0.1:9091, got {value!r}")
        return url
    return value


def _networks(value: Any) -> Any:
    """A list of CIDR networks: a YAML list, a JSON list or a comma-separated
    string (``SCHEDULER0_CALLBACK_DENY_NETWORKS=10.0.0.0/8,192.168.0.0/16``),
    each kept in its normal form."""
    if isinstance(value, str):
        text = value.strip()
        value = json.loads(text) if text.startswith("[") else [p for p in text.split(",") if p]
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"must be a list of CIDR networks such as 10.0.0.0/8, got {value!r}")
    networks = []
    for item in value:
        try:
            networks.append(str(ipaddress.ip_network(str(item).strip())))
        except ValueError as exc:
            raise ValueError(f"{item!r} is not a CIDR network ({exc})") from None
    return tuple(networks)


HostPort = Annotated[str, BeforeValidator(_check_host_port)]
HttpUrl = Annotated[str, BeforeValidator(_check_url)]
Networks = Annotated[tuple[str, ...], BeforeValidator(_networks)]


def _setting(default: Any = ..., *, alias: str, description: str, **constraints: Any) -> Any:
    """A field whose YAML key is ``alias``.

    Typed ``Any`` on purpose: mypy then checks constructor calls against the
    snake_case attribute names (``Settings(node_id=2)``), not the aliases.
    """
    return Field(default, alias=alias, description=description, **constraints)


class Replica(BaseModel):
    """One member of the cluster as listed under ``Replicas``."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")

    address: HttpUrl = _setting(
        alias="Address", description="HTTP base URL of the node, e.g. http://127.0.0.1:9092"
    )
    raft_address: HostPort = _setting(alias="RaftAddress", description="Raft host:port of the node")
    node_id: PositiveInt = _setting(alias="NodeId", description="Unique id of the node (>= 1)")


# --- the settings model ----------------------------------------------------


class Settings(BaseModel):
    """Everything a node reads at start-up. Frozen: build a new one to change it.

    Each field's ``description`` is the comment ``render_config_yaml`` writes,
    so it states the meaning and the unit.
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")

    # Node identity and network
    log_level: Literal["ERROR", "WARN", "INFO", "DEBUG"] = _setting(
        "INFO", alias="LogLevel", description="Log level: ERROR, WARN, INFO or DEBUG"
    )
    log_format: Literal["text", "json"] = _setting(
        "text",
        alias="LogFormat",
        description="Log lines as text, or as one JSON object per line (json)",
    )
    access_log: bool = _setting(
        False, alias="AccessLog", description="Log one line per HTTP request (true or false)"
    )
    protocol: Literal["http", "https"] = _setting(
        "http",
        alias="Protocol",
        description="Protocol of the HTTP API, http or https (https needs TLSCertFile and"
        " TLSKeyFile)",
    )
    host: str = _setting(
        "127.0.0.1",
        alias="Host",
        min_length=1,
        description="Interface the HTTP API binds to and the host peers reach it on",
    )
    port: int = _setting(9091, alias="Port", description="TCP port of the HTTP API (1-65535)")
    tls_cert_file: Path | None = _setting(
        None,
        alias="TLSCertFile",
        description="PEM certificate (chain) the API serves with Protocol: https; empty = none",
    )
    tls_key_file: Path | None = _setting(
        None,
        alias="TLSKeyFile",
        description="PEM private key of TLSCertFile; empty = none",
    )
    tls_ca_file: Path | None = _setting(
        None,
        alias="TLSCAFile",
        description="PEM CA bundle that verifies https nodes (peers, CLI, console);"
        " empty = the system store",
    )

    # Secrets: normally in .scheduler0, never in the generated config.yml, never in repr().
    secret_key: str | None = _setting(
        None,
        alias="SecretKey",
        repr=False,
        description="Key from which client api keys and secrets are derived",
    )
    auth_username: str | None = _setting(
        None,
        alias="AuthUsername",
        repr=False,
        description="HTTP Basic username for peers and operators",
    )
    auth_password: str | None = _setting(
        None,
        alias="AuthPassword",
        repr=False,
        description="HTTP Basic password for peers and operators",
    )

    # Resources and cluster
    max_memory: PositiveInt = _setting(
        5000,
        alias="MaxMemory",
        description="Memory budget in MB; above 70% the node stops taking new work",
    )
    min_free_disk_mb: NonNegativeInt = _setting(
        100,
        alias="MinFreeDiskMb",
        description="Below this many MB free on the data disk, writes are refused (0: off)",
    )
    bootstrap: bool = _setting(
        True,
        alias="Bootstrap",
        description="true on exactly one node: it starts the cluster (true/false)",
    )
    node_id: PositiveInt = _setting(
        1, alias="NodeId", description="Id of this node, unique in the cluster (integer >= 1)"
    )
    raft_address: HostPort = _setting(
        "127.0.0.1:7071", alias="RaftAddress", description="host:port used for Raft traffic"
    )
    raft_transport_max_pool: PositiveInt = _setting(
        100, alias="RaftTransportMaxPool", description="Max pooled Raft connections (count)"
    )
    raft_transport_timeout: PositiveFloat = _setting(
        1.0, alias="RaftTransportTimeout", description="Raft connection timeout in seconds"
    )
    raft_apply_timeout: PositiveFloat = _setting(
        2.0,
        alias="RaftApplyTimeout",
        description="Seconds to wait for a write to be committed by the cluster",
    )
    raft_election_timeout: PositiveFloat = _setting(
        1.0,
        alias="RaftElectionTimeout",
        description="Seconds a follower waits without hearing from the leader before it calls"
        " an election (a random wait between this and twice this); longer rides out a busy"
        " leader, shorter fails over sooner",
    )
    raft_snapshot_interval: PositiveFloat = _setting(
        60.0,
        alias="RaftSnapshotInterval",
        description="Seconds after which a Raft snapshot is taken even below the threshold"
        " (bounds the journal replayed at restart)",
    )
    flush_before_ack: bool = _setting(
        True,
        alias="FlushBeforeAck",
        description="Flush each Raft journal entry to disk before it is acknowledged, and"
        " fsync snapshots (true/false; false: a power cut can lose acknowledged writes)",
    )
    raft_snapshot_threshold: PositiveInt = _setting(
        5000,
        alias="RaftSnapshotThreshold",
        description="Raft log entries since the last snapshot before taking a new one",
    )
    peer_connect_retry_max: NonNegativeInt = _setting(
        2, alias="PeerConnectRetryMax", description="Retries when connecting to a peer (count)"
    )
    peer_connect_retry_delay: NonNegativeFloat = _setting(
        1.0, alias="PeerConnectRetryDelay", description="Seconds between peer connection retries"
    )
    peer_auth_request_timeout_ms: PositiveInt = _setting(
        2000,
        alias="PeerAuthRequestTimeoutMs",
        description="Peer authentication request timeout in milliseconds (not seconds)",
    )

    # Job execution
    job_execution_timeout: PositiveFloat = _setting(
        30.0,
        alias="JobExecutionTimeout",
        description="Seconds one callback attempt may take before it counts as failed",
    )
    job_execution_timeout_max: PositiveFloat = _setting(
        300.0,
        alias="JobExecutionTimeoutMax",
        description="Seconds a job's own timeout_seconds may at most give one callback attempt"
        " (a larger one is cut to this; never below JobExecutionTimeout)",
    )
    job_execution_retry_delay: NonNegativeFloat = _setting(
        1.0,
        alias="JobExecutionRetryDelay",
        description="Seconds between retries of a failed callback (0 = retry at once)",
    )
    job_execution_retry_max: NonNegativeInt = _setting(
        3,
        alias="JobExecutionRetryMax",
        description="Retries of a failed callback after the first attempt (count, 0 = none)",
    )
    max_workers: PositiveInt = _setting(
        32, alias="MaxWorkers", description="Callback POSTs sent concurrently (count)"
    )
    max_queue: PositiveInt = _setting(
        100000, alias="MaxQueue", description="Fires that may wait in the executor queue (count)"
    )
    callback_destination_share: float = _setting(
        0.25,
        alias="CallbackDestinationShare",
        gt=0,
        le=1,
        description="Share of MaxWorkers one destination (scheme, host, port) may hold at once",
    )
    callback_queue_max_mb: PositiveInt = _setting(
        32,
        alias="CallbackQueueMaxMb",
        description="MB of callback bodies that may wait for one destination; past it,"
        " new fires for it are recorded failed",
    )
    callback_allow_networks: Networks = _setting(
        (),
        alias="CallbackAllowNetworks",
        description="CIDR networks callbacks may reach, e.g. [10.1.2.0/24]; empty = any"
        " address not refused otherwise (see the README's callback destinations)",
    )
    callback_deny_networks: Networks = _setting(
        (),
        alias="CallbackDenyNetworks",
        description="CIDR networks callbacks may never reach, e.g. [127.0.0.0/8, 10.0.0.0/8]",
    )
    max_job_data_kb: PositiveInt = _setting(
        64,
        alias="MaxJobDataKb",
        description="Max size in KB (1024 bytes) of one job's data, as JSON",
    )
    execution_log_fetch_fan_in: PositiveInt = _setting(
        2,
        alias="ExecutionLogFetchFanIn",
        description="Peers asked for execution logs at a time (count)",
    )
    execution_log_fetch_interval_seconds: PositiveFloat = _setting(
        2.0,
        alias="ExecutionLogFetchIntervalSeconds",
        description="Seconds between execution log fetches from peers",
    )
    http_executor_payload_max_size_mb: PositiveFloat = _setting(
        2.0,
        alias="HTTPExecutorPayloadMaxSizeMb",
        description="Max size in MB of one callback POST body; larger batches are chunked",
    )

    replicas: tuple[Replica, ...] = _setting(
        (),
        alias="Replicas",
        description="Every node of the cluster (Address, RaftAddress, NodeId); empty = single node",
    )

    # Keys the original did not have
    data_dir: Path = _setting(
        Path("./scheduler0-data"),
        alias="DataDir",
        description="Directory for the SQLite database and Raft files (relative to the cwd)",
    )
    misfire_grace_seconds: PositiveFloat = _setting(
        60.0,
        alias="MisfireGraceSeconds",
        description="Seconds late a run may still fire; older missed runs are recorded as missed",
    )
    fire_ahead_seconds: NonNegativeFloat = _setting(
        2.0,
        alias="FireAheadSeconds",
        le=60,
        description=(
            "Seconds before its slot a run of a job without policies is decided in the log;"
            " its callback is still sent at the slot (0: decide at the slot)"
        ),
    )
    execution_retention_rows: PositiveInt = _setting(
        500000,
        alias="ExecutionRetentionRows",
        description="Max execution rows kept in total; oldest are pruned (count)",
    )
    execution_retention_per_job: PositiveInt = _setting(
        100,
        alias="ExecutionRetentionPerJob",
        description="Max execution rows kept per job (count)",
    )
    execution_retention_seconds: PositiveFloat = _setting(
        7 * 24 * 3600.0,
        alias="ExecutionRetentionSeconds",
        description="Seconds execution rows are kept (default 7 days)",
    )
    audit_retention_rows: PositiveInt = _setting(
        100000,
        alias="AuditRetentionRows",
        description="Max audit records (deletions) kept; oldest are pruned (count)",
    )
    audit_retention_seconds: PositiveFloat = _setting(
        90 * 24 * 3600.0,
        alias="AuditRetentionSeconds",
        description="Seconds audit records (deletions) are kept (default 90 days)",
    )
    max_jobs_per_request: PositiveInt = _setting(
        10000, alias="MaxJobsPerRequest", description="Max jobs in one POST /jobs array (count)"
    )
    max_request_body_mb: PositiveFloat = _setting(
        16.0, alias="MaxRequestBodyMb", description="Max size in MB of an HTTP request body"
    )
    idempotency_window_hours: float = _setting(
        24.0,
        alias="IdempotencyWindowHours",
        description="Hours an Idempotency-Key is remembered (at least 24)",
        ge=24.0,
        allow_inf_nan=False,
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().upper()
            return "WARN" if value == "WARNING" else value
        return value

    @field_validator("protocol", mode="before")
    @classmethod
    def _lower_protocol(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("port", mode="before")
    @classmethod
    def _port_not_bool(cls, value: Any) -> Any:
        return _reject_bool(value)

    @field_validator("port")
    @classmethod
    def _check_port(cls, value: int) -> int:
        if not 1 <= value <= 65535:
            raise ValueError(f"must be between 1 and 65535, got {value}")
        return value

    @field_validator(*SECRET_FIELDS, mode="before")
    @classmethod
    def _blank_secret_is_missing(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("tls_cert_file", "tls_key_file", "tls_ca_file", mode="before")
    @classmethod
    def _blank_path_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("tls_cert_file", "tls_key_file", "tls_ca_file")
    @classmethod
    def _readable_file(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                with open(value, "rb") as f:
                    f.read(1)
            except OSError as exc:
                raise ValueError(f"cannot read the file ({exc.strerror or exc})") from None
        return value

    @model_validator(mode="after")
    def _tls_consistent(self) -> Settings:
        if self.protocol == "https":
            missing = [
                ALIASES[n] for n in ("tls_cert_file", "tls_key_file") if not getattr(self, n)
            ]
            if missing:
                raise ValueError(
                    f"Protocol: https needs TLSCertFile and TLSKeyFile; {' and '.join(missing)}"
                    f" {'is' if len(missing) == 1 else 'are'} not set"
                )
            try:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.load_cert_chain(str(self.tls_cert_file), str(self.tls_key_file))
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(
                    f"TLSCertFile/TLSKeyFile: {self.tls_cert_file} and {self.tls_key_file} are"
                    f" not a PEM certificate and its private key: {exc}"
                ) from None
        else:
            for name in ("tls_cert_file", "tls_key_file"):
                if getattr(self, name) is not None:
                    raise ValueError(
                        f"{ALIASES[name]}: set Protocol: https to serve TLS (Protocol is"
                        f" {self.protocol})"
                    )
        if self.tls_ca_file is not None:
            try:
                ssl.create_default_context(cafile=str(self.tls_ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(
                    f"TLSCAFile: {self.tls_ca_file} is not a PEM CA bundle: {exc}"
                ) from None
        return self

    @field_validator("replicas")
    @classmethod
    def _unique_replicas(cls, value: tuple[Replica, ...]) -> tuple[Replica, ...]:
        for attr, label in (("node_id", "NodeId"), ("raft_address", "RaftAddress")):
            seen = [getattr(r, attr) for r in value]
            dupes = sorted({str(v) for v in seen if seen.count(v) > 1})
            if dupes:
                raise ValueError(f"{label} must be unique, repeated: {', '.join(dupes)}")
        return value

    @property
    def raft_host_port(self) -> tuple[str, int]:
        """``raft_address`` split into ``(host, port)``."""
        return _split_host_port(self.raft_address)

    @property
    def http_base_url(self) -> str:
        """Where this node's API is reached, e.g. ``http://127.0.0.1:9091``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.protocol}://{host}:{self.port}"

    @property
    def peer_replicas(self) -> tuple[Replica, ...]:
        """``replicas`` without this node."""
        return tuple(r for r in self.replicas if r.node_id != self.node_id)

    @property
    def secrets(self) -> Secrets:
        return Secrets(self.secret_key, self.auth_username, self.auth_password)


ALIASES: dict[str, str] = {
    name: (info.alias or name) for name, info in Settings.model_fields.items()
}
"""snake_case attribute -> PascalCase YAML key."""

_NAMES_BY_ALIAS = {alias: name for name, alias in ALIASES.items()}


def env_var_name(attribute: str) -> str:
    """``node_id`` -> ``SCHEDULER0_NODE_ID``."""
    return ENV_PREFIX + attribute.upper()


# --- secrets ---------------------------------------------------------------


@dataclass(frozen=True)
class Secrets:
    """The three secrets of a node; ``None`` means not set."""

    # repr=False: a logged Secrets must not leak them.
    secret_key: str | None = field(default=None, repr=False)
    auth_username: str | None = field(default=None, repr=False)
    auth_password: str | None = field(default=None, repr=False)

    @property
    def complete(self) -> bool:
        return all((self.secret_key, self.auth_username, self.auth_password))

    def merged_over(self, other: Secrets) -> Secrets:
        """These values, with gaps filled from ``other``."""
        return Secrets(
            self.secret_key or other.secret_key,
            self.auth_username or other.auth_username,
            self.auth_password or other.auth_password,
        )


_SECRETS_JSON_KEYS = {
    "secret_key": "secretKey",
    "auth_username": "authUsername",
    "auth_password": "authPassword",
}


def secrets_file_path(cwd: Path | None = None) -> Path:
    """Where the ``.scheduler0`` secrets file lives: the working directory."""
    return (cwd or Path.cwd()) / SECRETS_FILE_NAME


def read_secrets_file(path: Path) -> Secrets | None:
    """Read a ``.scheduler0`` JSON file; ``None`` if it does not exist."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read secrets file: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: secrets file must hold a JSON object")
    values: dict[str, str | None] = {}
    for attr, key in _SECRETS_JSON_KEYS.items():
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{path}: {key} must be a string")
        values[attr] = value or None
    return Secrets(**values)


def write_secrets_file(path: Path, secrets_: Secrets) -> None:
    """Write ``.scheduler0`` atomically, readable by the owner only (0600).

    The temporary file is created with mode 0600, so the secrets are never
    readable by others, not even for an instant (defect 7 of the original).
    """
    body = {key: getattr(secrets_, attr) for attr, key in _SECRETS_JSON_KEYS.items()}
    data = (json.dumps(body, indent=2) + "\n").encode()
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def generate_secrets() -> Secrets:
    """Fresh random secrets: 64 hex chars of key, user ``scheduler0``, random password."""
    return Secrets(
        secret_key=secrets.token_hex(32),
        auth_username="scheduler0",
        auth_password=secrets.token_urlsafe(24),
    )


def ensure_secrets(settings: Settings, cwd: Path | None = None) -> tuple[Settings, bool]:
    """Fill missing secrets by generating them and saving them in ``cwd/.scheduler0``.

    Returns the completed settings and whether anything was generated. Only
    values already in the file plus the generated ones are written, so a
    secret given by env or flag is never copied to disk. The next
    ``load_settings`` in the same directory reads the same values back.
    """
    if settings.secrets.complete:
        return settings, False
    path = secrets_file_path(cwd)
    on_disk = read_secrets_file(path) or Secrets()
    generated = on_disk.merged_over(generate_secrets())
    write_secrets_file(path, generated)
    final = settings.secrets.merged_over(generated)
    updated = settings.model_copy(
        update={
            "secret_key": final.secret_key,
            "auth_username": final.auth_username,
            "auth_password": final.auth_password,
        }
    )
    return updated, True


# --- loading ---------------------------------------------------------------


def _find_config_file(config_path: Path | None, cwd: Path) -> Path | None:
    if config_path is not None:
        if not config_path.is_file():
            raise ConfigError(f"config file {config_path} does not exist")
        return config_path
    candidates = [cwd / CONFIG_FILE_NAME]
    if sys.argv and sys.argv[0]:
        candidates.append(Path(sys.argv[0]).resolve().parent / CONFIG_FILE_NAME)
    candidates.append(Path(sys.executable).resolve().parent / CONFIG_FILE_NAME)
    return next((c for c in candidates if c.is_file()), None)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: config must be a mapping of Key: value")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = _NAMES_BY_ALIAS.get(str(key), str(key) if str(key) in ALIASES else None)
        if name is None:
            raise ConfigError(f"{key}: unknown key in {path}{_suggest(str(key))}")
        if name in values:
            raise ConfigError(f"{ALIASES[name]}: given twice in {path}")
        values[name] = value
    return values


def _suggest(key: str) -> str:
    close = difflib.get_close_matches(key, list(_NAMES_BY_ALIAS), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _read_env(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in ALIASES:
        raw = env.get(env_var_name(name))
        if raw is None or raw.strip() == "":
            continue
        if name == "replicas":
            try:
                values[name] = json.loads(raw)
            except ValueError as exc:
                raise ConfigError(
                    f"Replicas: {env_var_name(name)} must be a JSON list: {exc}"
                ) from exc
        else:
            values[name] = raw.strip()
    return values


def _read_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    unknown = [key for key in overrides if key not in ALIASES]
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown setting")
    return {key: value for key, value in overrides.items() if value is not None}


def _describe_error(error: Mapping[str, Any], origins: Mapping[str, str]) -> str:
    loc = list(error["loc"])
    if not loc:  # a check across keys: its message starts with the key(s) it is about
        message = str(error["msg"]).removeprefix("Value error, ")
        first = message.partition(":")[0].partition("/")[0]
        origin = origins.get(_NAMES_BY_ALIAS.get(first, ""))
        return message + (f" (from {origin})" if origin else "")
    name = str(loc[0]) if loc else ""
    name = _NAMES_BY_ALIAS.get(name, name)
    key = ALIASES.get(name, name)
    path = key + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:])
    message = str(error["msg"]).removeprefix("Value error, ")
    message = message.replace("Input should be", "must be")
    shows_input = "got " in message or error["type"] == "missing" or name in SECRET_FIELDS
    if not shows_input:
        message += f", got {error['input']!r}"
    origin = origins.get(name)
    return f"{path}: {message}" + (f" (from {origin})" if origin else "")


def load_settings(
    config_path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    secrets_path: Path | None = None,
) -> Settings:
    """Build the settings: overrides > env > config.yml > defaults.

    ``overrides`` are CLI flags keyed by attribute name (``None`` = not given).
    The config file is ``config_path`` (must exist), else ``cwd/config.yml``,
    else ``config.yml`` next to the program. Secrets still missing after that
    come from ``secrets_path`` (default ``cwd/.scheduler0``).
    Raises ``ConfigError`` naming every invalid key.
    """
    cwd = cwd or Path.cwd()
    env = os.environ if env is None else env
    merged: dict[str, Any] = {}
    origins: dict[str, str] = {}
    config_file = _find_config_file(config_path, cwd)
    layers: list[tuple[dict[str, Any], str]] = [
        (_read_yaml(config_file) if config_file else {}, str(config_file)),
        (_read_env(env), "env"),
        (_read_overrides(overrides or {}), "command-line flag"),
    ]
    for values, origin in layers:
        merged.update(values)
        for name in values:
            origins[name] = env_var_name(name) if origin == "env" else origin
    file_secrets = read_secrets_file(secrets_path or secrets_file_path(cwd))
    for name in SECRET_FIELDS:
        from_file = getattr(file_secrets, name, None)
        if merged.get(name) in (None, "") and from_file:
            merged[name] = from_file
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        problems = [_describe_error(e, origins) for e in exc.errors()]
        raise ConfigError("; ".join(problems)) from None


# --- config.yml rendering --------------------------------------------------

SEED_EXAMPLE_REPLICAS: tuple[Replica, ...] = tuple(
    Replica(
        address=f"http://127.0.0.1:{9091 + i}", raft_address=f"127.0.0.1:{7071 + i}", node_id=i + 1
    )
    for i in range(3)
)
"""The three-node cluster of the original README, used in config.yml.example."""


def example_settings() -> Settings:
    """Defaults plus the README's three replicas: the content of config.yml.example."""
    return Settings(replicas=SEED_EXAMPLE_REPLICAS)


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    dumped = yaml.safe_dump(value, default_flow_style=True).strip()
    return dumped.removesuffix("\n...").strip()


def _render_replicas(replicas: tuple[Replica, ...]) -> list[str]:
    if not replicas:
        lines = ["Replicas: []", "# A three-node cluster lists every node, itself included:"]
        lines.append("# Replicas:")
        lines += ["#" + line for line in _render_replicas(SEED_EXAMPLE_REPLICAS)[1:]]
        return lines
    lines = ["Replicas:"]
    for replica in replicas:
        lines.append(f"  - Address: {_yaml_scalar(replica.address)}")
        lines.append(f"    RaftAddress: {_yaml_scalar(replica.raft_address)}")
        lines.append(f"    NodeId: {replica.node_id}")
    return lines


def render_config_yaml(settings: Settings | None = None) -> str:
    """A commented ``config.yml`` listing every key with its value, meaning and unit.

    Secrets are left out (commented), as they belong in ``.scheduler0``.
    """
    settings = settings or Settings()
    lines = [
        "# scheduler0 node configuration.",
        "# Precedence: command-line flags > SCHEDULER0_<KEY> environment variables",
        "# (e.g. SCHEDULER0_NODE_ID, SCHEDULER0_REPLICAS as JSON) > this file > defaults.",
    ]
    for name, info in Settings.model_fields.items():
        alias = ALIASES[name]
        lines += ["", f"# {info.description}", f"# env: {env_var_name(name)}"]
        if name in SECRET_FIELDS:
            lines.append(f"# {alias}: kept in .scheduler0 (see `scheduler0 credential init`)")
        elif name == "replicas":
            lines += _render_replicas(settings.replicas)
        else:
            lines.append(f"{alias}: {_yaml_scalar(getattr(settings, name))}")
    return "\n".join(lines) + "\n"
