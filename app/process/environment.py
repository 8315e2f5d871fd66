"""The environment variables that are not ``Settings`` fields, declared once, by who reads them.

``app.settings.Settings`` is the registry of the ``HOUSING_*`` settings of the server. The few
other variables the project reads are listed here: training's data, compile's batch sizes,
what Amazon SageMaker and the device runtimes set, and OpenTelemetry's. docs/configuration.md
is generated from both (``python -m app.process.settings_page``, ``make docs``), and
tests/unit/test_process_settings_page.py checks that each ``reader`` really reads its variables.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.process.workers import VISIBLE_CORES_ENV
from app.settings import BIND_PORT, PAYLOAD, SAFE_PORTS
from modelspec.buckets import DEFAULT_BUCKETS


@dataclass(frozen=True)
class Variable:
    names: tuple[str, ...]  # one row of the page; several names when they work together
    default: str
    meaning: str
    reader: str  # the file that reads them, from the project's root


@dataclass(frozen=True)
class Group:
    title: str
    intro: str
    variables: tuple[Variable, ...]


SAGEMAKER = Group(
    "Set by Amazon SageMaker",
    "SageMaker's container contract passes these; each applies to any run, unless the "
    "`HOUSING_*` variable it stands for is set.",
    (
        Variable(
            (BIND_PORT,),
            "unset",
            "The HTTP port (`HOUSING_PORT`).",
            "app/settings.py",
        ),
        Variable(
            (SAFE_PORTS,),
            "unset",
            "The ports the container may use besides HTTP (such as `20000-20999`): gRPC takes "
            "the first (`HOUSING_GRPC_PORT`). Without a range, gRPC is off when SageMaker binds "
            "HTTP to gRPC's 8081 (SageMaker reaches a container over HTTP only).",
            "app/settings.py",
        ),
        Variable(
            (PAYLOAD,),
            "unset",
            "A transform job's `MaxPayloadInMB` (0 to 100): the body limit "
            "(`HOUSING_MAX_BODY_BYTES`), in MiB.",
            "app/settings.py",
        ),
    ),
)

TRACING = Group(
    "Tracing (OpenTelemetry)",
    "Off unless these standard variables turn it on. `OTEL_EXPORTER_OTLP_HEADERS`, "
    "`OTEL_EXPORTER_OTLP_TIMEOUT` and `OTEL_BSP_*` (the batch span processor) work as the "
    "OpenTelemetry SDK documents them. An exporter or protocol the server cannot run stops "
    "startup with the fix.",
    (
        Variable(
            ("OTEL_TRACES_EXPORTER",),
            "unset",
            "`otlp`, `console` (or both, comma-separated); `none` keeps tracing off. Unset: on "
            "when an OTLP endpoint is set.",
            "app/observe/tracing.py",
        ),
        Variable(
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            "unset",
            "The collector (such as `http://otel-collector:4318`).",
            "app/observe/tracing.py",
        ),
        Variable(
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
            "`http/protobuf`",
            "`http/protobuf` or `grpc` (port 4317).",
            "app/observe/tracing.py",
        ),
        Variable(
            ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"),
            "unset",
            "The resource: service name `housing-inference` unless they give one.",
            "app/observe/tracing.py",
        ),
        Variable(
            ("OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"),
            "`parentbased_always_on`",
            "The sampler, such as `parentbased_traceidratio` with `0.01`; a request the "
            "sampler skips gets no span at all.",
            "app/observe/tracing.py",
        ),
        Variable(
            ("OTEL_SDK_DISABLED",),
            "unset",
            "`true`: tracing off, whatever else is set.",
            "app/observe/tracing.py",
        ),
    ),
)

TRAINING = Group(
    "Training: `python -m training`",
    "Training writes `model.pt` and `manifest.json` into `HOUSING_ARTIFACTS` (above; "
    "`--artifacts`), and writes its lines as `HOUSING_LOG_FORMAT` says (`--log-format`: `text` "
    "or `json`; unset, text and a progress bar on a terminal, JSON lines anywhere else). Its "
    "other options are arguments: `python -m training --help`.",
    (
        Variable(
            ("HOUSING_DATA",),
            "the embedded copy",
            "The data set (`--data`): a local CSV or Parquet file (a compressed CSV such as "
            "`.csv.gz` too), or a Hugging Face dataset id such as "
            "`leostelon/california-housing`. Unset: the copy that ships with the project, "
            "`training/dataset/housing.csv.gz`, so no network is needed. The tests read it too.",
            "training/data.py",
        ),
    ),
)

COMPILE = Group(
    "Compile: `python -m compile`",
    "Compile reads and writes `HOUSING_ARTIFACTS` (above; `--artifacts`). Its other options "
    "are arguments: `python -m compile --help`.",
    (
        Variable(
            ("HOUSING_BATCH_BUCKETS",),
            f"`{','.join(map(str, DEFAULT_BUCKETS))}`",
            "The batch sizes to compile (`--batch-sizes`), comma-separated: on Neuron one "
            "graph each. The server pads each device call to one of them and runs every one "
            "at startup.",
            "modelspec/buckets.py",
        ),
    ),
)

DEVICES = Group(
    "Device runtimes",
    "The Neuron runtime's and torch-xla's own variables: the server reads them to plan its "
    "workers, and sets them for its workers and device where they are unset.",
    (
        Variable(
            (VISIBLE_CORES_ENV,),
            "all cores of `/dev/neuron*`",
            "The NeuronCores this service may use (Kubernetes' Neuron device plugin sets it); "
            "with `HOUSING_WORKERS` above 1, split between the workers in order.",
            "app/process/workers.py",
        ),
        Variable(
            ("PJRT_DEVICE",),
            "`CPU` on the xla device",
            "torch-xla's device client; the server sets `CPU` when it is unset, and logs it.",
            "app/backends/xla.py",
        ),
    ),
)

# Under the server's settings: the variables that change the server too.
SERVE_GROUPS = (SAGEMAKER, TRACING)
# Sections of their own, after the server's.
OTHER_GROUPS = (TRAINING, COMPILE, DEVICES)
