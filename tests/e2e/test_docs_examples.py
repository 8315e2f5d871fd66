"""Every shell example in README.md and docs/*.md that calls the service runs against a real
server, and the output shown under it is checked.

An example is a fenced ``bash``, ``sh``, ``shell`` or ``console`` block that calls the service:
curl or grpcurl to ``localhost``/``127.0.0.1`` on 8080 (HTTP) or 8081 (gRPC), ``python -m
app.score``, ``python -m app.probe`` or ``python -m app.drift``. Its shown output is the fenced
block right after it (``json``, ``text`` or none; only blank lines between); in a ``console``
block, lines that start with ``$`` are the commands and the others their output. An example
without an output must exit 0.

Markers, HTML comments on the lines just before the example's opening fence:

* ``<!-- not run: needs an inf2 -->``: not run (AWS, an inf2, docker, a Ray cluster); the
  reason is printed in the test summary with the example's place.
* ``<!-- env: HOUSING_API_KEY=secret HOUSING_CAPTURE_PERCENT=100 -->``: run on a server started
  with these variables; the command gets them too (``$HOUSING_API_KEY``). A relative path in a
  ``*_DIR`` or ``*_FILE`` variable is in the example's working folder. Examples with the same
  variables share a server; all others share one plain server.
* ``<!-- new model -->``: run on a server of its own, after another model was copied into its
  artifacts folder (a reload's example).

Each command runs in bash (``-e -o pipefail``) in a working folder that holds the project's
folders (linked), ``artifacts`` (the server's), ``houses.csv`` and ``houses/`` (rows of the
data set), with the project's Python first on PATH and ``localhost:8080``/``8081`` rewritten to
the server's ports. An example that needs a tool this machine lacks (grpcurl) is skipped, saying
so. Commands that would install packages or reach outside (pip install, apt-get, sudo, aws,
docker, kubectl, a Ray cluster) fail until they are marked ``not run``.

The shown outputs come from the default model (``make run``'s). docs/examples.json records its
checkpoint: the first 12 hex digits of model.pt's sha256, the trained weights (the model
version is the compiled file's, which changes with every compile of the same weights). When
this session's default model (``default_artifacts``) has that checkpoint, numbers must be
equal: the server writes prices to the cent. Otherwise (training differs in the last bits
between CPUs) numbers may differ by 2%, and a warning names both checkpoints. Keys, strings,
statuses and structure are always compared exactly, except values that change from run to run:
a 12-hex-digit model version matches any such version, and ``seconds`` any number.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from modelspec.manifest import ARTIFACT_FILE, CHECKPOINT_FILE, MANIFEST_FILE
from reliability.server import free_port
from tests.support.doc_examples import RELATIVE_TOLERANCE, Example, compare, examples_in
from tests.support.project import ROOT, another_model
from tests.support.server import ServerProcess, serve
from training.data import EMBEDDED_DATA


class DocsModelWarning(UserWarning):
    """The default model here is not the one the docs' outputs were made with."""


pytestmark = pytest.mark.filterwarnings(f"default::{__name__}.DocsModelWarning")

PINNED = ROOT / "docs" / "examples.json"
TOOLS = ("grpcurl", "jq")
# Never run, marker or not: they change this machine or reach outside it.
OUTSIDE = re.compile(
    r"\bpip3? install\b|\bapt(?:-get)? install\b|\b(?:sudo|aws|docker|kubectl)\b|RAY_ADDRESS"
)


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


EXAMPLES = [
    example
    for path in doc_files()
    for example in examples_in(path.read_text(), str(path.relative_to(ROOT)))
]


def checkpoint(folder: Path) -> str:
    return hashlib.sha256((folder / CHECKPOINT_FILE).read_bytes()).hexdigest()[:12]


@dataclass
class Servers:
    """The servers the examples run on, started when first needed: one per set of variables,
    and one per ``new model`` example."""

    artifacts: Path
    root: Path
    stack: ExitStack
    started: dict[object, tuple[ServerProcess, Path]] = field(default_factory=dict)
    another: Path | None = None

    def get(self, example: Example) -> tuple[ServerProcess, Path]:
        key: object = example if example.new_model else example.env
        if key not in self.started:
            self.started[key] = self._start(example, self.root / f"work-{len(self.started)}")
        return self.started[key]

    def _start(self, example: Example, work: Path) -> tuple[ServerProcess, Path]:
        work.mkdir()
        artifacts = self.artifacts
        if example.new_model:
            artifacts = work / "artifacts-served"
            shutil.copytree(self.artifacts, artifacts)
        env = {"HOUSING_DEVICE": "cpu", "HOUSING_GRPC_PORT": str(free_port())}
        for name, value in example.env:
            relative = name.endswith(("_DIR", "_FILE")) and not Path(value).is_absolute()
            env[name] = str(work / value) if relative else value
        server = self.stack.enter_context(serve(artifacts, **env))
        server.wait_ready()
        prepare(work, artifacts)
        if example.new_model:
            other = self._another_model()
            for name in (ARTIFACT_FILE, CHECKPOINT_FILE, MANIFEST_FILE):  # the manifest last
                shutil.copy2(other / name, artifacts / name)
        return server, work

    def _another_model(self) -> Path:
        """The default model with every bias moved by 0.05, compiled: another version."""
        if self.another is None:
            folder = self.root / "another-model"
            another_model(self.artifacts, folder)
            self.another = folder
        return self.another


def prepare(work: Path, artifacts: Path) -> None:
    """A working folder like a checkout: the project's folders, artifacts, sample files."""
    for entry in ROOT.iterdir():
        if not entry.name.startswith(".") and entry.name != "artifacts":
            (work / entry.name).symlink_to(entry)
    (work / "artifacts").symlink_to(artifacts)
    rows = pd.read_csv(EMBEDDED_DATA, nrows=40)
    rows.to_csv(work / "houses.csv", index=False)
    (work / "houses").mkdir()
    rows[:20].to_csv(work / "houses" / "part-1.csv", index=False)
    rows[20:].to_csv(work / "houses" / "part-2.csv", index=False)


def command_for(example: Example, server: ServerProcess) -> str:
    http, grpc = server.url.removeprefix("http://"), server.grpc_target
    command = re.sub(r"\b(?:localhost|127\.0\.0\.1):8080\b", http, example.command)
    return re.sub(r"\b(?:localhost|127\.0\.0\.1):8081\b", grpc, command)


@pytest.fixture(scope="module")
def exact(default_artifacts: Path) -> bool:
    """Whether the shown numbers must be met to the cent (see the module's docstring)."""
    pinned = json.loads(PINNED.read_text())["checkpoint"]
    here = checkpoint(default_artifacts)
    if here != pinned:
        warnings.warn(
            f"the docs' outputs were made with checkpoint {pinned} ({PINNED.name}), this "
            f"default model is {here}: numbers are compared within "
            f"{RELATIVE_TOLERANCE:.0%}",
            DocsModelWarning,
            stacklevel=1,
        )
    return here == pinned


@pytest.fixture(scope="module")
def servers(default_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    with ExitStack() as stack:
        yield Servers(default_artifacts, tmp_path_factory.mktemp("doc-examples"), stack)


def test_the_docs_have_examples_of_the_main_routes() -> None:
    """The scanner finds what it should: a broken one would pass by running nothing."""
    commands = "\n".join(e.command for e in EXAMPLES)
    for route in ("/predict", "/invocations", "/health/ready"):
        assert f"localhost:8080{route}" in commands, route
    assert all(e.output is not None for e in EXAMPLES if "/predict" in e.command)


@pytest.mark.slow  # the default training run
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"{e.file}:{e.line}")
def test_the_example_runs_and_answers_as_shown(
    example: Example, servers: Servers, exact: bool
) -> None:
    if example.skip:
        pytest.skip(f"{example.place}: {example.skip}")
    if match := OUTSIDE.search(example.command):
        pytest.fail(
            f"{example.place} cannot run here ({match.group()}): mark it "
            "<!-- not run: needs ... --> (see this test's docstring)",
            pytrace=False,
        )
    for tool in TOOLS:
        if re.search(rf"\b{tool}\b", example.command) and not shutil.which(tool):
            pytest.skip(f"{example.place}: needs {tool}, which is not installed")
    server, work = servers.get(example)
    http_port, grpc_port = server.port, server.env["HOUSING_GRPC_PORT"]
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        **{k: v for k, v in server.env.items() if k.startswith("HOUSING_")},
        "HOUSING_PORT": str(http_port),  # python -m app.probe finds the server by them
        "HOUSING_GRPC_PORT": grpc_port,
    }
    proc = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", command_for(example, server)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"{example.place} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    if example.output is None:
        return
    problems = compare(example.output, proc.stdout, example.output_lang, exact)
    assert not problems, (
        f"{example.place}: the output differs from the one shown "
        f"({'to the cent' if exact else f'within {RELATIVE_TOLERANCE:.0%}'}; "
        f"model checkpoint {checkpoint(servers.artifacts)}):\n  "
        + "\n  ".join(problems)
        + f"\nanswered:\n{proc.stdout}"
    )


SAMPLE = """\
# Title
## Predict

<!-- env: HOUSING_API_KEY=k HOUSING_CAPTURE_DIR=capture -->
<!-- new model -->
```bash
curl -s localhost:8080/predict
```

```json
{"house_value": 1.5}
```

```bash
make run
```

<!-- not run: needs an inf2 -->
```sh
python -m app.probe
```
```python
print("not an output")
```

Text between.
```console
$ curl -s 127.0.0.1:8080/health/live
{"status":"alive"}
```
"""


def test_the_scanner_reads_examples_outputs_and_markers() -> None:
    found = examples_in(SAMPLE, "x.md")
    assert [(e.line, e.heading, e.output, e.output_lang) for e in found] == [
        (6, "Predict", '{"house_value": 1.5}', "json"),
        (19, "Predict", None, ""),
        (27, "Predict", '{"status":"alive"}', "text"),
    ]
    first, probe, console = found
    assert first.env == (("HOUSING_API_KEY", "k"), ("HOUSING_CAPTURE_DIR", "capture"))
    assert first.new_model and first.skip is None
    assert probe.skip == "not run: needs an inf2" and not probe.env and not probe.new_model
    assert console.command == "curl -s 127.0.0.1:8080/health/live" and console.skip is None


@pytest.mark.parametrize(
    ("shown", "actual", "exact", "ok"),
    [
        ('{"house_value": 429055.59}', '{"house_value": 429055.62}', True, False),
        ('{"house_value": 429055.59}', '{"house_value": 429055.62}', False, True),
        ('{"house_value": 429055.59}', '{"house_value": 450000.0}', False, False),
        ('{"status": "ready"}', '{"status": "failing"}', False, False),
        ('{"a": 1}', '{"a": 1, "b": 2}', False, False),
        ('{"model_version": "1d620b252281"}', '{"model_version": "3385faddef49"}', True, True),
        ('{"seconds": 0.025, "changed": true}', '{"seconds": 0.1, "changed": true}', True, True),
        ("348600.5\n414339.06\n", "348600.5\n414339.06", True, True),
        ("348600.5,1\n", "348600.51,1\n", True, False),
        ("rows: 3 scored\n", "rows: 3 refused\n", False, False),
    ],
)
def test_the_comparison_rules(shown: str, actual: str, exact: bool, ok: bool) -> None:
    lang = "json" if shown.startswith("{") else "text"
    assert (compare(shown, actual, lang, exact) == []) is ok
