"""Service settings, read from ``HOUSING_*`` environment variables.

Each field's description is its documentation: ``python -m app --help`` prints it, and
docs/configuration.md is generated from it (``make docs``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

Device = Literal["auto", "neuron", "xla", "cpu"]
LogLevel = Literal["critical", "error", "warning", "info", "debug"]
LogFormat = Literal["json", "text"]


MIB = 1 << 20
BIND_PORT = "SAGEMAKER_BIND_TO_PORT"
SAFE_PORTS = "SAGEMAKER_SAFE_PORT_RANGE"
PAYLOAD = "SAGEMAKER_MAX_PAYLOAD_IN_MB"
DEFAULT_GRPC_PORT = 8081
# SageMaker's largest MaxPayloadInMB (a transform job's, in MB).
MAX_PAYLOAD_MB = 100


class SageMakerSource(PydanticBaseSettingsSource):
    """The Amazon SageMaker container contract's variables, for the settings no ``HOUSING_*``
    variable sets (SageMaker sets them; elsewhere they are absent and change nothing):

    * ``SAGEMAKER_BIND_TO_PORT`` is the HTTP port (``HOUSING_PORT``);
    * ``SAGEMAKER_SAFE_PORT_RANGE`` (``20000-20999``) holds the ports a container may use for
      anything else: gRPC takes its first port. Without a range, gRPC keeps its default port
      unless SageMaker binds HTTP to it -- then gRPC is off (SageMaker reaches a container over
      HTTP only), rather than the two doors clashing at startup;
    * ``SAGEMAKER_MAX_PAYLOAD_IN_MB`` (a transform job's ``MaxPayloadInMB``) is the body limit
      (``HOUSING_MAX_BODY_BYTES``), in MiB.
    """

    def __init__(self, settings_cls: type[BaseSettings], environ: dict[str, str] | None = None):
        super().__init__(settings_cls)
        self.environ = dict(os.environ) if environ is None else environ

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ gives every value at once

    def __call__(self) -> dict[str, Any]:
        env = self.environ
        out: dict[str, Any] = {}
        bind = env.get(BIND_PORT)
        if bind is not None:
            out["port"] = _whole(BIND_PORT, bind, bind, 65535)
        ports = env.get(SAFE_PORTS)
        if ports is not None:
            first, _, last = ports.partition("-")
            out["grpc_port"] = _whole(SAFE_PORTS, first, ports, 65535)
            if last and _whole(SAFE_PORTS, last, ports, 65535) < out["grpc_port"]:
                raise ValueError(f"{SAFE_PORTS}={ports!r} is not a range low-high")
        elif bind is not None and "HOUSING_PORT" not in env and out["port"] == DEFAULT_GRPC_PORT:
            out["grpc_port"] = 0
        payload = env.get(PAYLOAD)
        if payload is not None:
            out["max_body_bytes"] = _whole(PAYLOAD, payload, payload, MAX_PAYLOAD_MB) * MIB
        return out


def _whole(name: str, text: str, given: str, most: int) -> int:
    """``text`` (part of ``given``, the variable's value) as a whole number up to ``most``."""
    digits = text.strip()
    if not (digits.isascii() and digits.isdecimal()) or int(digits) > most:
        raise ValueError(f"{name}={given!r} is not a whole number from 0 to {most}")
    return int(digits)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HOUSING_", extra="ignore", frozen=True)

    artifacts: Path = Field(
        Path("artifacts"),
        description="Folder with manifest.json and model_neuron.pt (python -m training and "
        "python -m compile write them there, with model.pt). Unset, the command serve (the "
        "images' and SageMaker's) reads /opt/ml/model when that folder exists",
    )
    device: Device = Field(
        "auto",
        description="auto: neuron if torch-neuronx imports and /dev/neuron* exists, else xla if "
        "torch-xla is installed, else cpu; the choice is logged and shown by /health/ready. An "
        "explicit device that is unavailable stops startup with what to install (no silent "
        "fallback).",
    )
    host: str = Field("0.0.0.0", description="Interface to listen on")
    port: int = Field(
        8080,
        ge=0,
        le=65535,
        description="HTTP port (0: any free port, logged at startup); unset, "
        "SAGEMAKER_BIND_TO_PORT when that is set",
    )
    grpc_port: int = Field(
        DEFAULT_GRPC_PORT,
        ge=0,
        le=65535,
        description="Port of the Open Inference Protocol over gRPC (and grpc.health.v1), "
        "served in the same process, on the same model, as HTTP; 0: no gRPC. Unset, the "
        "first port of SAGEMAKER_SAFE_PORT_RANGE when that is set, and off when "
        "SAGEMAKER_BIND_TO_PORT is 8081",
    )
    max_instances: int = Field(
        1024, ge=1, le=100_000, description="Most records in one {'instances': [...]} request"
    )
    torch_threads: int = Field(
        1,
        ge=1,
        le=256,
        description="torch intra-op threads; 1 keeps a small batch at microseconds under load",
    )
    log_level: LogLevel = Field(
        "info",
        description="Log level of the service and uvicorn: critical, error, warning, info or debug",
    )
    access_log: bool = Field(
        False,
        description="Log one line per request, with its request id, route, status and duration "
        "(costs CPU on every request)",
    )
    max_batch_size: int | None = Field(
        None,
        ge=1,
        description="Most rows in one device call (default: the largest compiled batch size); "
        "1 turns batching off (requests are never combined)",
    )
    max_delay_ms: float = Field(
        2.0,
        ge=0,
        le=1000,
        description="Longest a row waits for others to fill its batch, while more requests are "
        "arriving",
    )
    queue_rows: int = Field(
        4096,
        ge=1,
        description="Rows that may wait for the device; a request that does not fit gets 503 at "
        "once. At least HOUSING_MAX_INSTANCES",
    )
    device_thread: bool | None = Field(
        None,
        description="Run device calls on a dedicated thread (default: yes for neuron and xla, "
        "no for cpu, where the call is this core's own work and a thread hop only adds "
        "scheduling latency)",
    )
    request_timeout_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Deadline of a request's rows; past it, 504 and the rows are dropped unrun",
    )
    interval_coverage: float = Field(
        0.9,
        ge=0,
        lt=1,
        description="Coverage of the price range each answer carries when the request does "
        "not ask (?coverage=, the Open Inference Protocol's parameters.coverage, SageMaker's "
        "custom attribute coverage=); one of the manifest's calibrated coverages, or 0 for no "
        "ranges",
    )
    max_consecutive_failures: int = Field(
        5,
        ge=0,
        description="Readiness turns 503 (status failing) after this many device calls fail "
        "in a row (the requests in a failed call get 500s); the server keeps retrying the "
        "device and is "
        "ready again after one call succeeds. 0: never",
    )
    capture_dir: Path | None = Field(
        None,
        description="Folder for data capture: a sampled share of predictions (input, answer, "
        "model version) as JSON Lines in SageMaker Data Capture's shape; unset: no capture",
    )
    capture_percent: float = Field(
        0,
        ge=0,
        le=100,
        description="Share of answered predictions captured, in percent (0: none)",
    )
    capture_queue_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024 * 1024,
        description="Request and answer bytes that may wait for data capture's writer "
        "(64 MiB); a "
        "captured prediction that does not fit (a slow or full disk, large bodies) is dropped "
        "and counted in housing_capture_dropped_total, never buffered",
    )
    model_poll_s: float = Field(
        0,
        ge=0,
        le=86400,
        description="How often to look for a new model in the artifacts folder (the "
        "manifest names another compiled artifact) and reload it without a restart, as "
        "SIGHUP does; 0: never",
    )
    recheck_interval_s: float = Field(
        2.0,
        gt=0,
        le=600,
        description="While readiness is 503 for device failures, how often the manifest's "
        "reference rows are run on the device to see whether it answers again",
    )

    log_format: LogFormat = Field(
        "json",
        description="json: one JSON object per line (uvicorn's lines too); or text",
    )
    graceful_timeout_s: float = Field(
        25.0,
        gt=0,
        le=3600,
        description="After SIGTERM, the longest the process takes to exit: requests already "
        "accepted finish within it (keep it under the 30 s of SageMaker and Kubernetes); a "
        "watchdog exits 1 if it overruns",
    )
    drain_delay_s: float = Field(
        0.0,
        ge=0,
        description="After SIGTERM, keep accepting for this long with readiness at 503, so a "
        "load balancer sees the 503 and stops routing before connections are refused (on "
        "Kubernetes, use the preStop sleep instead)",
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Longest an HTTP connection may take to send a request's headers, from "
        "when it opens or its previous response ends; past it, the connection is closed "
        "unanswered (slow or idle clients do not keep connections open). It never cuts a "
        "request being answered",
    )
    max_connections: int = Field(
        2048,
        ge=1,
        le=1_000_000,
        description="Most open HTTP connections per server process (each worker has its "
        "own); one more is answered 503 (Connection: close, Retry-After: 1) and closed at once. "
        "Keep it under the open-file limit (ulimit -n): startup warns when it is not",
    )
    max_body_bytes: int = Field(
        6_291_456,
        ge=1024,
        description="Largest request body; beyond, 413 before reading it (a chunked body: as "
        "soon as it passes the limit). 6 MiB: SageMaker's "
        "payload limit and Batch Transform's default MaxPayloadInMB. Unset, "
        "SAGEMAKER_MAX_PAYLOAD_IN_MB (in MiB) when that is set. It alone bounds the rows of a "
        "CSV or JSON Lines body on /invocations",
    )
    max_error_details: int = Field(
        20,
        ge=1,
        le=10_000,
        description="Most errors a refused body's answer lists (the first ones, in the body's "
        "order); error_count says how many there are in all (checked_lines: in the lines read "
        "when reading stopped once the list was full), so the answer's size never grows with "
        "the body's",
    )
    api_key: SecretStr | None = Field(
        None,
        description="If set, prediction routes need 'Authorization: Bearer <key>' or "
        "'X-API-Key: <key>' (401 otherwise; compared in constant time, never logged); probes, "
        "metadata and /metrics stay open",
    )
    api_key_file: Path | None = Field(
        None,
        description="A file holding HOUSING_API_KEY (as a Kubernetes secret mounts it; "
        "surrounding blank space is ignored); not both",
    )
    admin_key: SecretStr | None = Field(
        None,
        description="The control plane's own key: POST /v2/repository/models/housing/load needs "
        "'Authorization: Bearer <key>' or 'X-Admin-Key: <key>' (401 otherwise); it must "
        "differ from HOUSING_API_KEY: prediction keys never reload a model",
    )
    admin_key_file: Path | None = Field(
        None,
        description="A file holding HOUSING_ADMIN_KEY (surrounding blank space is ignored); not "
        "both",
    )
    control_open: bool = Field(
        False,
        description="Open the control routes to anyone when no HOUSING_ADMIN_KEY is set (a "
        "trusted network only). Without either they answer 403; SIGHUP and "
        "HOUSING_MODEL_POLL_S reload a model all the same",
    )
    workers: int | None = Field(
        None,
        ge=1,
        le=64,
        description="Server processes, one per NeuronCore (default: the visible NeuronCores on "
        "neuron, else 1); above 1, a supervisor binds the port and starts one python -m app "
        "per worker, each with its own NEURON_RT_VISIBLE_CORES",
    )
    worker_index: int | None = Field(
        None,
        ge=0,
        description="Set by the supervisor for each of its workers (0, 1, ...); names their "
        "capture files. Not for users to set",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # HOUSING_* first, then the SageMaker contract's variables (SageMakerSource).
        return (
            init_settings,
            env_settings,
            SageMakerSource(settings_cls),
            dotenv_settings,
            file_secret_settings,
        )

    def api_key_bytes(self) -> bytes | None:
        """The prediction routes' key, from HOUSING_API_KEY or HOUSING_API_KEY_FILE."""
        return _secret(self.api_key, self.api_key_file)

    def admin_key_bytes(self) -> bytes | None:
        """The control routes' key, from HOUSING_ADMIN_KEY or HOUSING_ADMIN_KEY_FILE."""
        return _secret(self.admin_key, self.admin_key_file)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        keys = []
        for name, value, file in (
            ("API_KEY", self.api_key, self.api_key_file),
            ("ADMIN_KEY", self.admin_key, self.admin_key_file),
        ):
            if value is not None and file is not None:
                raise ValueError(f"set HOUSING_{name} or HOUSING_{name}_FILE, not both")
            try:
                key = _secret(value, file)
            except OSError as exc:
                raise ValueError(
                    f"HOUSING_{name}_FILE={file} cannot be read ({exc.strerror})"
                ) from None
            if file is not None and not key:
                raise ValueError(f"HOUSING_{name}_FILE={file} is empty")
            keys.append(key)
        api, admin = keys
        if api is not None and api == admin:
            raise ValueError(
                "HOUSING_ADMIN_KEY is HOUSING_API_KEY: the control plane needs a key of its "
                "own, or a client that may predict could reload models"
            )
        if self.artifacts.exists() and not self.artifacts.is_dir():
            raise ValueError(
                f"HOUSING_ARTIFACTS={self.artifacts} is a file; it must be the folder that "
                "holds manifest.json and model_neuron.pt"
            )
        if self.queue_rows < self.max_instances:
            raise ValueError(
                f"HOUSING_QUEUE_ROWS={self.queue_rows} is below HOUSING_MAX_INSTANCES="
                f"{self.max_instances}: the largest allowed request could never be queued"
            )
        if self.grpc_port and self.grpc_port == self.port:
            raise ValueError(
                f"HOUSING_GRPC_PORT={self.grpc_port} is HOUSING_PORT too: give gRPC another "
                "port, or 0 to turn it off"
            )
        if self.drain_delay_s >= self.graceful_timeout_s:
            raise ValueError(
                f"HOUSING_DRAIN_DELAY_S={self.drain_delay_s} must be below "
                f"HOUSING_GRACEFUL_TIMEOUT_S={self.graceful_timeout_s}: requests need time to "
                "finish after the drain"
            )
        return self


def _secret(value: SecretStr | None, file: Path | None) -> bytes | None:
    if file is not None:
        return file.read_bytes().strip()
    return None if value is None else value.get_secret_value().encode()


def load_settings(**given: object) -> Settings | None:
    """The settings from the environment (``given`` first), or None after one line per invalid
    variable on stderr, each naming the variable and how to fix it."""
    try:
        return Settings(**given)  # type: ignore[arg-type]
    except ValidationError as exc:
        for err in exc.errors():
            print(f"error: {error_line(err['loc'], err['msg'])}", file=sys.stderr)
        return None
    except ValueError as exc:  # a SageMaker variable (SageMakerSource) names itself
        print(f"error: {exc}", file=sys.stderr)
        return None


def error_line(loc: tuple[int | str, ...], message: str) -> str:
    """A validation error as one line: ``HOUSING_X: why`` for one variable; a rule across
    variables (no location) names them in its own message."""
    message = message.removeprefix("Value error, ")
    if not loc:
        return message
    prefix = str(Settings.model_config.get("env_prefix", ""))
    return f"{prefix}{'_'.join(str(p) for p in loc).upper()}: {message}"
