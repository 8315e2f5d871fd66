"""The aten operators a graph hands to the Neuron compiler, against the ones AWS documents.

``DOCUMENTED`` is AWS's published list of the aten operators torch-neuronx supports, copied
name for name from ``frameworks/torch/torch-neuronx/pytorch-neuron-supported-operators.rst``
in github.com/aws-neuron/aws-neuron-sdk (read at commit 7060a1c6d177, November 2026). The list
is known to be incomplete -- on an inf2, ``neuronx-cc list-operators --framework XLA`` is the
authority -- but it is what can be checked without one, and torch_neuronx.trace has no CPU
fallback: one operator the compiler refuses fails the whole trace.

``graph_operators`` lists a module's operators as the dispatcher sees them, which is what
torch-xla (and so torch-neuronx) lowers: composite operators are already decomposed
(``linear`` becomes ``t`` and ``addmm``), as on AWS's list.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor, nn
from torch.fx.experimental.proxy_tensor import make_fx

DOCUMENTED: frozenset[str] = frozenset(
    {
        "aten::_s_where",
        "aten::_softmax",
        "aten::_softmax_backward_data",
        "aten::_unsafe_view",
        "aten::add",
        "aten::addcdiv_",
        "aten::addcmul",
        "aten::addmm",
        "aten::bernoulli_",
        "aten::bmm",
        "aten::constant_pad_nd",
        "aten::div",
        "aten::embedding",
        "aten::embedding_dense_backward",
        "aten::empty",
        "aten::expand",
        "aten::fill_",
        "aten::index_select",
        "aten::_log_softmax",
        "aten::_log_softmax_backward_data",
        "aten::lt",
        "aten::mm",
        "aten::mul",
        "aten::native_batch_norm",
        "aten::native_batch_norm_backward",
        "aten::neg",
        "aten::permute",
        "aten::relu",
        "aten::rsub",
        "aten::select",
        "aten::slice",
        "aten::sqrt",
        "aten::sum",
        "aten::t",
        "aten::tanh",
        "aten::tanh_backward",
        "aten::threshold_backward",
        "aten::transpose",
        "aten::unsqueeze",
        "aten::view",
        "aten::zero_",
    }
)


def graph_operators(module: nn.Module, example: Tensor) -> list[str]:
    """The aten operators (``aten::name``) that running ``module`` on ``example`` dispatches,
    sorted. Overloads are merged (``add.Tensor`` and ``add.Scalar`` are both ``aten::add``)."""
    with torch.no_grad():
        graph = make_fx(module)(example)
    names = set()
    for node in graph.graph.nodes:
        if node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload):
            names.add(node.target._schema.name)
    # make_fx records reading a parameter as a detach; it computes nothing.
    names.discard("aten::detach")
    return sorted(names)


def undocumented(operators: list[str]) -> list[str]:
    """The operators that AWS's list does not name."""
    return [op for op in operators if op not in DOCUMENTED]


# How neuronx-cc names an operator it refuses, in its log (``log-neuron-cc.txt`` in the compiler
# work directory) or in the exception:
#   [NCC_EVRF001] Operator topk is not supported. ...   (error code EVRF001 in AWS's compiler docs)
#   Unsupported CustomCall target: ResizeBilinear       (aws-neuron-sdk issue 995)
#   unsupported HLO opcode "set-dimension-size"         (aws-neuron-sdk issue 1144)
# torch_neuronx.trace itself raises only "RuntimeError: neuronx-cc failed with <exit code>".
_REFUSALS = (
    re.compile(r"Operator\s+[`'\"]?([\w.:-]+)[`'\"]?\s+is not supported", re.IGNORECASE),
    re.compile(r"Unsupported CustomCall target:\s*([\w.:-]+)", re.IGNORECASE),
    re.compile(r"unsupported HLO opcode\s+\"([^\"]+)\"", re.IGNORECASE),
)
# The XLA (HLO) names of the aten operators this model's graphs use, so that a refusal in the
# compiler's terms is also named in torch's.
HLO_NAMES: dict[str, str] = {
    "add": "aten::add",
    "clamp": "aten::clamp",
    "concatenate": "aten::cat",
    "divide": "aten::div",
    "dot": "aten::mm",
    "floor": "aten::floor",
    "log-plus-one": "aten::log1p",
    "maximum": "aten::relu",
    "multiply": "aten::mul",
    "sine": "aten::sin",
    "subtract": "aten::sub",
}


def refused_operator(text: str) -> str | None:
    """The operator a compiler error names (``sine (aten::sin)``, ``aten::sin``, or the
    compiler's own name), or None when it names none."""
    for pattern in _REFUSALS:
        match = pattern.search(text)
        if match:
            name = match.group(1)
            aten = HLO_NAMES.get(name.lower())
            return f"{name} ({aten})" if aten and aten != name else name
    match = re.search(r"aten::\w+", text)
    return match.group(0) if match else None
