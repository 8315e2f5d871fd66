"""Why a compile stopped, each with the fix."""

from __future__ import annotations

from compile.operators import refused_operator


class CompileError(Exception):
    """Compilation cannot proceed; the message says how to fix it."""


class ParityError(CompileError):
    """The compiled graph answers differently from the eager model (beyond the tolerance)."""


class CompilerRefused(CompileError):
    """The device compiler failed on a graph. ``operator`` is the one it named, if any;
    ``detail`` is what it said (the exception, then the end of its log)."""

    def __init__(self, message: str, operator: str | None, detail: str) -> None:
        super().__init__(message)
        self.operator = operator
        self.detail = detail

    @classmethod
    def from_error(
        cls, detail: str, features_on: str, undocumented: list[str], batch_size: int
    ) -> CompilerRefused:
        operator = refused_operator(detail)
        what = f"refused operator {operator}" if operator else "failed (it named no operator)"
        if undocumented:
            outside = f"; of its operators, AWS's list does not name {', '.join(undocumented)}"
        else:
            outside = "; every operator of the graph is on AWS's list"
        if features_on == "device":
            hint = (
                "compile with `--features host` (the default), which runs the derived features "
                "on the host and hands the NeuronCore only Linear and ReLU."
            )
        else:
            hint = (
                "run `neuronx-cc list-operators --framework XLA` on this instance to see what "
                "this SDK accepts, and read log-neuron-cc.txt in the compiler work directory "
                "(--workdir, default <artifacts>/neuron-work)."
            )
        lines = [line for line in detail.splitlines() if line.strip()] or ["(no output)"]
        shown = "\n    ".join(lines[:4] + (["..."] if len(lines) > 4 else []))
        return cls(
            f"the Neuron compiler {what} (--features {features_on}, batch size "
            f"{batch_size}){outside}.\nThe compiler said:\n    {shown}\nHint: {hint}",
            operator,
            detail,
        )
