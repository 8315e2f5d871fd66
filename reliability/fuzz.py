"""Property-based fuzzing of the HTTP API from its own OpenAPI schema.

    python -m reliability.fuzz [--examples 200] [--url URL] [--seed N]

Starts a real server (``python -m app`` on ``HOUSING_ARTIFACTS``, default ``artifacts``, with an
API key) unless ``--url`` is given, loads its ``GET /openapi.json`` with schemathesis, and:

1. for every operation, draws ``--examples`` cases of data the schema allows (positive) and as
   many of data it forbids (negative, where there is anything to break), sends each and checks
   the answer with schemathesis' checks: no 5xx; a documented status, content type, headers and
   body; forbidden data refused with a 4xx; allowed data accepted;
2. for each prediction route, ``--examples`` requests made from schema-valid records in the
   route's other formats (CSV rows, Open Inference Protocol tensors, JSON and binary), which
   must be answered with one value per record, plus mutated ones (a broken CSV cell, a tensor
   field replaced by any JSON value), another method, another content type, no API key and an
   oversized body, which must get their 4xx -- all with the same checks.

Prints cases, statuses and failures per operation and the time taken; exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, Verbosity, given
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, BaseSchema, Case, CheckContext, GenerationMode, Response
from schemathesis.checks import CheckFunction
from schemathesis.errors import FailureGroup

from modelspec.features import BEDROOMS_ABOVE_ROOMS
from reliability.derived import (
    INFER,
    INVOCATIONS,
    JSON,
    PREDICT,
    Derived,
    Records,
    Variant,
    answered_as_expected,
    check,
    records_of,
    request_id_echoed,
    variants,
)
from reliability.server import serve

# 10 GET operations x 200 + 3 prediction routes x (200 positive + 200 negative + 200 derived).
DEFAULT_EXAMPLES = 200
# The service's default HOUSING_MAX_BODY_BYTES: the oversized body is one byte more.
DEFAULT_MAX_BODY_BYTES = 6_291_456
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
# schemathesis' checks, by name (its docs list them). Of the answer alone: no 5xx, and it is as
# documented. The stateful and auth checks do not apply to single stateless calls.
ANSWER_CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)
# Of the answer given what schemathesis generated: forbidden data refused, allowed accepted.
DATA_CHECKS = ("negative_data_rejection", "positive_data_acceptance")
# Request schemas that cannot say all the server requires, so that data they allow may still
# be refused: OIP infer needs every input with the same N rows, N values each, each name once.
PARTIAL_SCHEMAS = frozenset({f"POST {INFER}"})
# Rules across a record's fields, which no JSON schema can say (``app.codecs.schemas``).
CROSS_FIELD_RULES = frozenset({BEDROOMS_ABOVE_ROOMS})
EXAMPLES_SHOWN = 3  # per operation and kind of failure


# ---- Running and reporting -------------------------------------------------------------------


@dataclass
class OperationReport:
    label: str
    cases: Counter[str] = field(default_factory=Counter)  # by kind: positive, negative, derived
    statuses: Counter[int] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)  # by title
    examples: dict[str, list[str]] = field(default_factory=dict)  # title -> messages, with curl
    seconds: float = 0.0

    def record_failure(self, title: str, message: str) -> None:
        self.failures[title] += 1
        self.examples.setdefault(title, [])
        if len(self.examples[title]) < EXAMPLES_SHOWN:
            self.examples[title].append(message)


@dataclass
class FuzzReport:
    seed: int
    operations: list[OperationReport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def cases(self) -> int:
        return sum(sum(op.cases.values()) for op in self.operations)

    @property
    def failures(self) -> int:
        return sum(sum(op.failures.values()) for op in self.operations)

    @property
    def passed(self) -> bool:
        return self.failures == 0 and self.cases > 0

    def operation(self, label: str) -> OperationReport:
        return next(op for op in self.operations if op.label == label)

    def lines(self) -> list[str]:
        kinds = ("positive", "negative", "derived")
        out = [f"{'operation':<40}" + "".join(f"{k:>9}" for k in kinds) + "  failed  statuses"]
        for op in self.operations:
            counts = "".join(f"{op.cases[k] or '-':>9}" for k in kinds)
            statuses = "  ".join(f"{s}: {n}" for s, n in sorted(op.statuses.items()))
            out.append(f"{op.label:<40}{counts}  {sum(op.failures.values()):>6}  {statuses}")
        rate = self.cases / self.seconds if self.seconds else 0.0
        out.append(
            f"total {self.cases} cases in {self.seconds:.1f}s ({rate:,.0f} cases/s); "
            f"failures {self.failures}; seed {self.seed}"
        )
        for op in self.operations:
            for title, n in op.failures.items():
                out += [f"FAILURE {op.label}: {title} (x{n})", *op.examples[title]]
        return out


@dataclass
class Target:
    """The server under test: where, and what it was started with."""

    url: str
    api_key: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES


class Fuzzer:
    """Sends generated cases to one server, checks each answer, and records what came back."""

    def __init__(self, schema: BaseSchema, target: Target, seed: int) -> None:
        self.schema = schema
        self.target = target
        self.url = target.url.rstrip("/")
        self.seed = seed
        self.session = requests.Session()
        self.auth = {"X-API-Key": target.api_key} if target.api_key else {}

    def run(self, examples: int) -> FuzzReport:
        report = FuzzReport(self.seed)
        started = time.perf_counter()
        for methods in self.schema.values():
            for operation in methods.values():
                report.operations.append(self.fuzz_operation(operation, examples))
        report.seconds = time.perf_counter() - started
        return report

    def fuzz_operation(self, operation: APIOperation, examples: int) -> OperationReport:
        report = OperationReport(operation.label)
        started = time.perf_counter()
        for mode in MODES:
            strategy = operation.as_strategy(generation_mode=mode)
            # Unsatisfiable: nothing to break in this operation's inputs (a GET's free header).
            with contextlib.suppress(Unsatisfiable):
                self.repeat(examples, strategy, lambda case: self.send_generated(case, report))
        if operation.path in (PREDICT, INVOCATIONS, INFER):
            self.fuzz_derived(operation, examples, report)
        report.seconds = time.perf_counter() - started
        return report

    def fuzz_derived(self, operation: APIOperation, examples: int, report: OperationReport) -> None:
        # /predict's schema-valid bodies are the records every derived request starts from.
        records = self.schema[PREDICT]["POST"].as_strategy().map(records_of)
        kinds = variants(operation.path, self.target.max_body_bytes)
        if not self.auth:  # a server without a key takes any request
            kinds = [v for v in kinds if v.__name__ != "no_key"]
        # Each kind its share: drawn from one strategy, Hypothesis would favour the first.
        for variant in kinds:

            def one(args: tuple[Records, st.DataObject], variant: Variant = variant) -> None:
                self.send_derived(operation, variant(*args), report)

            self.repeat(max(1, examples // len(kinds)), st.tuples(records, st.data()), one)

    def repeat(
        self, examples: int, strategy: st.SearchStrategy[Any], run: Callable[..., None]
    ) -> None:
        """``run`` on ``examples`` values of ``strategy``. Only the generate phase: failures are
        recorded, never raised, so there is nothing to shrink or replay, and no example
        database is written."""

        @hypothesis.seed(self.seed)
        @hypothesis.settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=False,  # Hypothesis' CI profile would otherwise ignore the seed
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
            verbosity=Verbosity.quiet,
        )
        @given(strategy)
        def one(value: Any) -> None:
            run(value)

        one()

    def send_generated(self, case: Case, report: OperationReport) -> None:
        report.cases[case.meta.generation.mode.value if case.meta else "positive"] += 1
        self.send(case, report, self.checks_for(case), self.auth)

    def send_derived(
        self, operation: APIOperation, derived: Derived, report: OperationReport
    ) -> None:
        report.cases["derived"] += 1
        case = operation.Case(
            method=derived.method,
            body=derived.body,
            media_type=derived.media_type,
            headers=derived.headers,
        )
        # Made outside the schema: answered_as_expected says what it must get, not DATA_CHECKS.
        checks = [*map(check, ANSWER_CHECKS), answered_as_expected(derived)]
        self.send(case, report, checks, {} if derived.keyless else self.auth)

    def send(
        self,
        case: Case,
        report: OperationReport,
        checks: list[CheckFunction],
        headers: dict[str, str],
    ) -> None:
        try:
            response = case.call(
                base_url=self.url, session=self.session, headers=headers, timeout=30
            )
        except requests.RequestException as exc:
            report.record_failure("no answer", f"{type(exc).__name__}: {exc}")
            return
        report.statuses[response.status_code] += 1
        try:
            case.validate_response(
                response, checks=checks, additional_checks=[request_id_echoed], headers=headers
            )
        except FailureGroup as group:
            for failure in group.exceptions:
                report.record_failure(failure.title, str(group))

    def checks_for(self, case: Case) -> list[CheckFunction]:
        checks = [check(name) for name in (*ANSWER_CHECKS, "negative_data_rejection")]
        if case.operation.label in PARTIAL_SCHEMAS or case.media_type not in (None, JSON):
            # Only JSON bodies have a schema that says all the rules (CSV: "a string").
            return checks
        return [*checks, accepted_unless_across_fields]


def accepted_unless_across_fields(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """schemathesis' positive_data_acceptance, except for a 422 whose every error breaks a rule
    across a record's fields (``CROSS_FIELD_RULES``): the schema allows such a record, and the
    documented answer to it is that 422."""
    if response.status_code == 422:
        try:
            details = response.json().get("detail")
        except ValueError:
            details = None
        if details and all(d.get("type") in CROSS_FIELD_RULES for d in details):
            return None
    accepted: bool | None = check("positive_data_acceptance")(ctx, response, case)
    return accepted


def load_schema(url: str) -> BaseSchema:
    return schemathesis.openapi.from_url(f"{url.rstrip('/')}/openapi.json")


def fuzz(target: Target, examples: int, seed: int) -> FuzzReport:
    """Fuzz every operation of the server at ``target.url`` from its own schema."""
    return Fuzzer(load_schema(target.url), target, seed).run(examples)


def fuzz_new_server(artifacts: Path, examples: int, seed: int) -> FuzzReport:
    """Start ``python -m app`` on ``artifacts`` (with an API key, so 401 is reachable), fuzz it."""
    key = secrets.token_hex(16)
    with serve(
        artifacts, HOUSING_DEVICE="cpu", HOUSING_API_KEY=key, HOUSING_CONTROL_OPEN="true"
    ) as server:
        server.wait_ready()
        report = fuzz(Target(server.url, key), examples, seed)
        server.terminate()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--examples", type=int, default=DEFAULT_EXAMPLES, help="per operation and kind"
    )
    parser.add_argument("--url", help="a running server (default: start one on the artifacts)")
    parser.add_argument("--api-key", help="the --url server's HOUSING_API_KEY, if it has one")
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument("--seed", type=int, default=random.randrange(2**32))
    args = parser.parse_args(argv)
    print(f"fuzz: {args.examples} examples per operation and kind, seed {args.seed}", flush=True)
    if args.url:
        target = Target(args.url, args.api_key, args.max_body_bytes)
        report = fuzz(target, args.examples, args.seed)
    else:
        artifacts = Path(os.environ.get("HOUSING_ARTIFACTS", "artifacts"))
        report = fuzz_new_server(artifacts, args.examples, args.seed)
    print("\n".join(report.lines()))
    print("PASS" if report.passed else "FAIL")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
