"""A stand-in ``torch_neuronx`` package for whole processes: a test seam, not the Neuron SDK.

Put ``tests/fakes/neuron_site`` first on ``PYTHONPATH`` and every process that imports
torch_neuronx -- ``python -m neuron_check``, ``python -m compile``, the server and its workers
-- gets ``FakeTorchNeuronx`` (``tests/fakes/torch_neuronx.py``), which compiles CPU TorchScript.
Nothing that uses it runs on a NeuronCore; ``TEST_SEAM`` says so to anything that reports.

Configured by the environment, to drive the failure paths:

* ``FAKE_NEURONX_REFUSE=aten::sin,...``: the fake compiler refuses these operators, as
  neuronx-cc does (its log names the operator, trace raises ``neuronx-cc failed with 70``);
* ``FAKE_NEURONX_OUTPUT_SHIFT=5``: every compiled graph answers $5 off;
* ``FAKE_NEURON_BUSY_CORES=0-1``: those NeuronCores are held by another process, so a process
  whose ``NEURON_RT_VISIBLE_CORES`` asks for one cannot use torch_neuronx (like the runtime's
  "Logical Neuron Core(s) not available - Requested:1 Available:0").

Device files come from another seam: ``FAKE_NEURON_DEV_DIR`` (``modelspec/neuron.py``).
"""

import os

from tests.fakes.torch_neuronx import FakeTorchNeuronx

TEST_SEAM = "tests/fakes/neuron_site (FakeTorchNeuronx: CPU TorchScript, no NeuronCore)"
__version__ = "0.0.0+fake"


def _cores(text: str) -> set[int]:
    out: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        low, _, high = part.partition("-")
        out.update(range(int(low), int(high or low) + 1))
    return out


_busy = _cores(os.environ.get("FAKE_NEURON_BUSY_CORES", ""))
_wanted = _cores(os.environ.get("NEURON_RT_VISIBLE_CORES", ""))
if _busy & _wanted:
    raise ImportError(
        "nrt_allocate_neuron_cores: Logical Neuron Core(s) not available - Requested:"
        f"{len(_wanted)} Available:{len(_wanted - _busy)} (simulated: FAKE_NEURON_BUSY_CORES)"
    )

_fake = FakeTorchNeuronx(
    output_shift=float(os.environ.get("FAKE_NEURONX_OUTPUT_SHIFT", "0")),
    refuse=frozenset(filter(None, os.environ.get("FAKE_NEURONX_REFUSE", "").split(","))),
)
trace = _fake.trace
