"""Service settings, read from ``HOUSING_*`` environment variables (see the README's table)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Device = Literal["auto", "neuron", "xla", "cpu"]
LogLevel = Literal["critical", "error", "warning", "info", "debug"]
LogFormat = Literal["json", "text"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HOUSING_", extra="ignore", frozen=True)

    artifacts: Path = Field(
        Path("artifacts"), description="Folder with manifest.json and model_neuron.pt"
    )
    device: Device = Field(
        "auto",
        description="auto: neuron if torch-neuronx imports and /dev/neuron* exists, else xla if "
        "torch-xla is installed, else cpu. An explicit device that is unavailable is an error.",
    )
    host: str = Field("0.0.0.0", description="Interface to listen on")
    port: int = Field(8080, ge=0, le=65535, description="TCP port (0: any free port)")
    grpc_port: int = Field(
        8081,
        ge=0,
        le=65535,
        description="Port of the Open Inference Protocol over gRPC (and grpc.health.v1), "
        "served in the same process, on the same model, as HTTP; 0: no gRPC",
    )
    max_instances: int = Field(
        1024, ge=1, le=100_000, description="Most records in one {'instances': [...]} request"
    )
    torch_threads: int = Field(
        1,
        ge=1,
        le=256,
        description="torch intra-op threads; 1 keeps a batch-1 call at microseconds under load",
    )
    log_level: LogLevel = Field("info", description="Log level of the service and uvicorn")
    access_log: bool = Field(False, description="Log one line per request (costs CPU per request)")
    max_batch_size: int | None = Field(
        None,
        ge=1,
        description="Most rows in one device call (default: the largest compiled batch size); "
        "1 turns batching off",
    )
    max_delay_ms: float = Field(
        2.0, ge=0, le=1000, description="Longest a row waits for others to fill its batch"
    )
    queue_rows: int = Field(
        4096, ge=1, description="Rows that may wait for the device; beyond, 503 at once"
    )
    device_thread: bool | None = Field(
        None,
        description="Run device calls on a dedicated thread (default: yes for neuron and xla, "
        "no for cpu, where the call is this core's own work and a thread hop only adds "
        "scheduling latency)",
    )
    request_timeout_s: float = Field(
        10.0, gt=0, le=3600, description="Deadline of a request's rows; past it, 504"
    )
    interval_coverage: float = Field(
        0.9,
        ge=0,
        lt=1,
        description="Coverage of the price range each answer carries when the request does "
        "not ask (?coverage=); one of the manifest's calibrated coverages, or 0 for no ranges",
    )
    max_consecutive_failures: int = Field(
        5,
        ge=0,
        description="Readiness turns 503 after this many device calls fail in a row (the "
        "requests in a failed call get 500s); the server keeps retrying the device and is "
        "ready again after one call succeeds. 0: never",
    )
    capture_dir: Path | None = Field(
        None,
        description="Folder for data capture: a sampled share of predictions (input, answer, "
        "model version) as JSON Lines in SageMaker Data Capture's shape; unset: no capture",
    )
    capture_percent: float = Field(
        0, ge=0, le=100, description="Share of predictions captured, in percent (0: none)"
    )
    model_poll_s: float = Field(
        0,
        ge=0,
        le=86400,
        description="How often to look for a new model in the artifacts folder (the "
        "manifest's compiled artifact changed) and reload it without a restart; 0: never",
    )
    recheck_interval_s: float = Field(
        2.0,
        gt=0,
        le=600,
        description="While readiness is 503 for device failures, how often the manifest's "
        "reference rows are run to see whether the device answers again",
    )

    log_format: LogFormat = Field("json", description="json: one JSON object per line; text")
    graceful_timeout_s: float = Field(
        25.0,
        gt=0,
        le=3600,
        description="After SIGTERM, the longest the process takes to exit: requests already "
        "accepted finish within it (keep it under the orchestrator's 30 s)",
    )
    drain_delay_s: float = Field(
        0.0,
        ge=0,
        description="After SIGTERM, keep accepting for this long with readiness at 503, so a "
        "load balancer sees the 503 and stops routing before connections are refused",
    )
    max_body_bytes: int = Field(
        6_291_456,
        ge=1024,
        description="Largest request body; beyond, 413 before reading it. 6 MiB: SageMaker's "
        "payload limit and Batch Transform's default MaxPayloadInMB (`serve` takes "
        "SAGEMAKER_MAX_PAYLOAD_IN_MB when this is unset); it alone bounds the rows of a CSV or "
        "JSON Lines body on /invocations",
    )
    api_key: SecretStr | None = Field(
        None,
        description="If set, prediction routes need 'Authorization: Bearer <key>' or "
        "'X-API-Key: <key>' (401 otherwise); probes, metadata and /metrics stay open",
    )
    workers: int | None = Field(
        None,
        ge=1,
        le=64,
        description="Server processes, one per NeuronCore (default: the visible NeuronCores on "
        "neuron, else 1); each gets its own NEURON_RT_VISIBLE_CORES",
    )

    @model_validator(mode="after")
    def _check(self) -> Settings:
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
