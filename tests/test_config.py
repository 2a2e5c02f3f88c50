"""Settings: defaults, precedence, validation messages and the secrets file."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml

from scheduler0.config import (
    ALIASES,
    SECRET_FIELDS,
    Secrets,
    Settings,
    ensure_secrets,
    env_var_name,
    example_settings,
    load_settings,
    read_secrets_file,
    render_config_yaml,
    secrets_file_path,
    write_secrets_file,
)
from scheduler0.errors import ConfigError
from tests.support.tls import TlsFiles, make_tls_files

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = REPO_ROOT / "config.yml.example"
SEED_KEYS = {
    "LogLevel", "Protocol", "Host", "Port", "SecretKey", "AuthUsername", "AuthPassword",
    "MaxMemory", "Bootstrap", "NodeId", "RaftAddress", "RaftTransportMaxPool",
    "RaftTransportTimeout", "RaftApplyTimeout", "RaftSnapshotInterval",
    "RaftSnapshotThreshold", "PeerConnectRetryMax", "PeerConnectRetryDelay",
    "PeerAuthRequestTimeoutMs", "JobExecutionTimeout", "JobExecutionRetryDelay",
    "JobExecutionRetryMax", "MaxWorkers", "MaxQueue", "ExecutionLogFetchFanIn",
    "ExecutionLogFetchIntervalSeconds", "HTTPExecutorPayloadMaxSizeMb", "Replicas",
}  # fmt: skip
SECRET_KEYS = {ALIASES[name] for name in SECRET_FIELDS}
_NAMES = {alias: name for name, alias in ALIASES.items()}


def load(tmp_path: Path, yml: str | None = None, **kwargs: object) -> Settings:
    """load_settings isolated in tmp_path with an empty environment by default."""
    if yml is not None:
        (tmp_path / "config.yml").write_text(yml)
    kwargs.setdefault("env", {})
    return load_settings(cwd=tmp_path, **kwargs)  # type: ignore[arg-type]


def config_error(tmp_path: Path, yml: str | None = None, **kwargs: object) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, yml, **kwargs)
    return caught.value.message


# --- the example file --------------------------------------------------------


def test_example_file_is_what_render_produces() -> None:
    assert EXAMPLE.read_text() == render_config_yaml(example_settings())


def test_example_file_loads_and_lists_every_seed_key(tmp_path: Path) -> None:
    settings = load_settings(EXAMPLE, env={}, cwd=tmp_path)
    assert [r.node_id for r in settings.replicas] == [1, 2, 3]
    assert settings.replicas[1].address == "http://127.0.0.1:9092"
    keys = set(yaml.safe_load(EXAMPLE.read_text()))
    assert keys == set(ALIASES.values()) - SECRET_KEYS
    assert keys >= SEED_KEYS - SECRET_KEYS


def test_rendered_config_mentions_secrets_only_as_comments() -> None:
    text = render_config_yaml(Settings(secret_key="k" * 64, auth_password="hunter2"))
    assert "hunter2" not in text and "k" * 64 not in text
    for key in SECRET_KEYS:
        assert f"# {key}: kept in .scheduler0" in text


def test_rendered_default_config_round_trips(tmp_path: Path) -> None:
    assert load(tmp_path, render_config_yaml()) == Settings()


# --- defaults and precedence ---------------------------------------------------


def test_empty_file_and_no_file_give_defaults(tmp_path: Path) -> None:
    assert load(tmp_path) == Settings()
    assert load(tmp_path, "") == Settings()
    defaults = Settings()
    assert (defaults.port, defaults.node_id, defaults.log_level) == (9091, 1, "INFO")
    assert defaults.peer_auth_request_timeout_ms == 2000
    assert defaults.raft_host_port == ("127.0.0.1", 7071)
    assert defaults.http_base_url == "http://127.0.0.1:9091"


def test_flags_beat_env_beat_file_beat_defaults(tmp_path: Path) -> None:
    yml = "Port: 1111\nNodeId: 2\nHost: 10.0.0.1\n"
    env = {"SCHEDULER0_PORT": "2222", "SCHEDULER0_NODE_ID": "3"}
    settings = load(tmp_path, yml, env=env, overrides={"port": 3333, "host": None})
    assert settings.port == 3333  # flag
    assert settings.node_id == 3  # env
    assert settings.host == "10.0.0.1"  # file (a None flag is "not given")
    assert settings.max_workers == 32  # default


def test_explicit_config_path_is_used_and_must_exist(tmp_path: Path) -> None:
    other = tmp_path / "other.yml"
    other.write_text("Port: 4444\n")
    (tmp_path / "config.yml").write_text("Port: 5555\n")
    assert load(tmp_path, config_path=other).port == 4444
    assert "missing.yml" in config_error(tmp_path, config_path=tmp_path / "missing.yml")


def test_env_replicas_json_accepts_both_key_styles(tmp_path: Path) -> None:
    replicas = [
        {"Address": "http://10.0.0.1:9091", "RaftAddress": "10.0.0.1:7071", "NodeId": 1},
        {"address": "http://10.0.0.2:9091", "raft_address": "10.0.0.2:7071", "node_id": 2},
    ]
    env = {"SCHEDULER0_REPLICAS": json.dumps(replicas), "SCHEDULER0_NODE_ID": "2"}
    settings = load(tmp_path, env=env)
    assert [r.raft_address for r in settings.replicas] == ["10.0.0.1:7071", "10.0.0.2:7071"]
    assert [r.node_id for r in settings.peer_replicas] == [1]


def test_env_replicas_bad_json_names_the_key(tmp_path: Path) -> None:
    assert "Replicas" in config_error(tmp_path, env={"SCHEDULER0_REPLICAS": "[{"})


def test_env_values_are_parsed(tmp_path: Path) -> None:
    env = {
        "SCHEDULER0_BOOTSTRAP": "false",
        "SCHEDULER0_LOG_LEVEL": "debug",
        "SCHEDULER0_RAFT_ADDRESS": "10.1.1.1:7999",
        "SCHEDULER0_DATA_DIR": "/var/lib/s0",
        "SCHEDULER0_JOB_EXECUTION_TIMEOUT": "2.5",
    }
    settings = load(tmp_path, env=env)
    assert settings.bootstrap is False
    assert settings.log_level == "DEBUG"
    assert settings.raft_host_port == ("10.1.1.1", 7999)
    assert settings.data_dir == Path("/var/lib/s0")
    assert settings.job_execution_timeout == 2.5


def test_snake_case_yaml_keys_are_accepted(tmp_path: Path) -> None:
    assert load(tmp_path, "node_id: 7\n").node_id == 7


# --- validation names the key ----------------------------------------------------


@pytest.mark.parametrize(
    ("yml", "key"),
    [
        ("Port: 0", "Port"),
        ("Port: 70000", "Port"),
        ("NodeId: -1", "NodeId"),
        ("LogLevel: nope", "LogLevel"),
        ("Protocol: https", "Protocol"),
        ("MaxWorkers: abc", "MaxWorkers"),
        ("MaxWorkers: 0", "MaxWorkers"),
        ("MaxQueue: 0", "MaxQueue"),
        ("RaftApplyTimeout: 0", "RaftApplyTimeout"),
        ("JobExecutionTimeout: -3", "JobExecutionTimeout"),
        ("JobExecutionRetryMax: -1", "JobExecutionRetryMax"),
        ("HTTPExecutorPayloadMaxSizeMb: 0", "HTTPExecutorPayloadMaxSizeMb"),
        ("MisfireGraceSeconds: 0", "MisfireGraceSeconds"),
        ("Port: yes", "Port"),
        ("Bootstrap: maybe", "Bootstrap"),
        ("RaftAddress: nohostport", "RaftAddress"),
        ("Replicas: [{Address: ftp://x, RaftAddress: 'a:1', NodeId: 1}]", "Replicas[0].Address"),
        ("Replicas: 5", "Replicas"),
        ("Portt: 9091", "Portt"),
    ],
)
def test_invalid_value_names_the_key(tmp_path: Path, yml: str, key: str) -> None:
    message = config_error(tmp_path, yml + "\n")
    assert message.startswith(f"{key}:"), message


def test_every_bad_key_is_reported_at_once(tmp_path: Path) -> None:
    message = config_error(tmp_path, "Port: 0\nNodeId: -1\nLogLevel: nope\n")
    for key in ("Port:", "NodeId:", "LogLevel:"):
        assert key in message


def test_port_message_shows_range_and_value(tmp_path: Path) -> None:
    assert config_error(tmp_path, "Port: 0\n") == (
        f"Port: must be between 1 and 65535, got 0 (from {tmp_path / 'config.yml'})"
    )


def test_env_error_names_the_variable(tmp_path: Path) -> None:
    message = config_error(tmp_path, env={"SCHEDULER0_NODE_ID": "zero"})
    assert message.startswith("NodeId:") and "SCHEDULER0_NODE_ID" in message


def test_unknown_override_is_rejected(tmp_path: Path) -> None:
    assert "nodeid" in config_error(tmp_path, overrides={"nodeid": 1})


def test_duplicate_replica_ids_are_rejected(tmp_path: Path) -> None:
    yml = (
        "Replicas:\n"
        "  - {Address: 'http://a:1', RaftAddress: 'a:2', NodeId: 1}\n"
        "  - {Address: 'http://b:1', RaftAddress: 'b:2', NodeId: 1}\n"
    )
    assert config_error(tmp_path, yml).startswith("Replicas:")


def test_not_a_mapping_is_rejected(tmp_path: Path) -> None:
    assert "mapping" in config_error(tmp_path, "- a\n- b\n")


def test_secret_values_never_appear_in_errors_or_repr(tmp_path: Path) -> None:
    message = config_error(tmp_path, "AuthPassword: [hunter2]\n")
    assert message.startswith("AuthPassword:") and "hunter2" not in message
    assert "hunter2" not in repr(Settings(auth_password="hunter2"))
    assert "hunter2" not in repr(Secrets(auth_password="hunter2"))


# --- secrets ------------------------------------------------------------------


def test_secrets_file_is_0600_and_round_trips(tmp_path: Path) -> None:
    path = secrets_file_path(tmp_path)
    original = Secrets("k" * 64, "ops", "pw")
    write_secrets_file(path, original)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_secrets_file(path) == original
    assert json.loads(path.read_text()) == {
        "secretKey": "k" * 64,
        "authUsername": "ops",
        "authPassword": "pw",
    }
    assert [p.name for p in tmp_path.iterdir()] == [".scheduler0"]  # no temp file left


def test_overwritten_secrets_file_stays_0600(tmp_path: Path) -> None:
    path = secrets_file_path(tmp_path)
    path.write_text("{}")
    path.chmod(0o644)
    write_secrets_file(path, Secrets("k", "u", "p"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_missing_secrets_file_reads_as_none(tmp_path: Path) -> None:
    assert read_secrets_file(tmp_path / ".scheduler0") is None


def test_corrupt_secrets_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / ".scheduler0").write_text("not json")
    with pytest.raises(ConfigError):
        read_secrets_file(tmp_path / ".scheduler0")


def test_secrets_precedence(tmp_path: Path) -> None:
    write_secrets_file(secrets_file_path(tmp_path), Secrets("file-key", "file-user", "file-pw"))
    settings = load(
        tmp_path,
        "AuthUsername: yml-user\nAuthPassword: yml-pw\n",
        env={"SCHEDULER0_AUTH_PASSWORD": "env-pw"},
        overrides={"secret_key": None},
    )
    assert settings.secret_key == "file-key"
    assert settings.auth_username == "yml-user"
    assert settings.auth_password == "env-pw"
    assert load(tmp_path, overrides={"auth_password": "flag-pw"}).auth_password == "flag-pw"


def test_ensure_secrets_generates_once_then_reuses(tmp_path: Path) -> None:
    first, generated = ensure_secrets(load(tmp_path), tmp_path)
    assert generated
    assert first.secret_key is not None and len(first.secret_key) == 64
    int(first.secret_key, 16)
    assert first.auth_username == "scheduler0" and first.auth_password
    assert stat.S_IMODE(secrets_file_path(tmp_path).stat().st_mode) == 0o600

    again, generated_again = ensure_secrets(load(tmp_path), tmp_path)
    assert not generated_again
    assert again.secrets == first.secrets


def test_ensure_secrets_keeps_given_values_and_does_not_copy_them(tmp_path: Path) -> None:
    settings = load(tmp_path, env={"SCHEDULER0_SECRET_KEY": "from-env"})
    completed, generated = ensure_secrets(settings, tmp_path)
    assert generated and completed.secret_key == "from-env"
    on_disk = read_secrets_file(secrets_file_path(tmp_path))
    assert on_disk is not None and on_disk.secret_key != "from-env"
    assert on_disk.auth_password == completed.auth_password


# --- TLS ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def test_https_with_a_certificate_and_its_key_is_valid(tmp_path: Path, tls_files: TlsFiles) -> None:
    settings = load(tmp_path, env=tls_files.node_env())
    assert settings.protocol == "https"
    assert settings.tls_cert_file == tls_files.server_cert
    assert settings.tls_ca_file == tls_files.ca_cert
    assert settings.http_base_url == "https://127.0.0.1:9091"


def test_https_without_certificate_or_key_names_them(tmp_path: Path, tls_files: TlsFiles) -> None:
    message = config_error(tmp_path, "Protocol: https\n")
    assert message.startswith("Protocol: https needs TLSCertFile and TLSKeyFile"), message
    assert "TLSCertFile and TLSKeyFile are not set" in message
    message = config_error(tmp_path, f"Protocol: https\nTLSCertFile: {tls_files.server_cert}\n")
    assert "; TLSKeyFile is not set (from" in message, message


@pytest.mark.parametrize("key", ["TLSCertFile", "TLSKeyFile", "TLSCAFile"])
def test_a_missing_or_unreadable_tls_file_names_its_key(
    tmp_path: Path, tls_files: TlsFiles, key: str
) -> None:
    env = {**tls_files.node_env(), env_var_name(_NAMES[key]): str(tmp_path / "missing.pem")}
    message = config_error(tmp_path, env=env)
    assert message.startswith(f"{key}: cannot read the file (No such file or directory)"), message
    assert "missing.pem" in message and env_var_name(_NAMES[key]) in message
    env[env_var_name(_NAMES[key])] = str(tmp_path)  # a directory: not a readable file
    message = config_error(tmp_path, env=env)
    assert message.startswith(f"{key}: cannot read the file"), message


def test_tls_files_that_are_not_pem_are_refused(tmp_path: Path, tls_files: TlsFiles) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    env = {**tls_files.node_env(), "SCHEDULER0_TLS_KEY_FILE": str(junk)}
    assert config_error(tmp_path, env=env).startswith("TLSCertFile/TLSKeyFile:")
    env = {**tls_files.node_env(), "SCHEDULER0_TLS_CA_FILE": str(junk)}
    assert config_error(tmp_path, env=env).startswith("TLSCAFile:")


def test_a_certificate_without_protocol_https_is_refused(
    tmp_path: Path, tls_files: TlsFiles
) -> None:
    yml = f"TLSCertFile: {tls_files.server_cert}\nTLSKeyFile: {tls_files.server_key}\n"
    message = config_error(tmp_path, yml)
    assert message.startswith("TLSCertFile: set Protocol: https"), message
    # A CA alone is for clients (CLI, console, peers): fine with http.
    assert load(tmp_path, f"TLSCAFile: {tls_files.ca_cert}\n").tls_ca_file == tls_files.ca_cert
