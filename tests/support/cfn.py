"""The CloudFormation stack of deploy/aws/ as the tests read it: the template's and the
project's cfn-lint rules' paths, the template decoded to plain dicts (``template``) and its parts
(``props``, ``default``, ``user_data``, ``shell_int``, ``conditional_policy``), cfn-lint run
with those rules (``cfn_lint``), and the template's Rules section evaluated as CloudFormation
does before it creates anything (``evaluate``, ``refused``), with a certificate ARN that
satisfies them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from cfnlint.decode import decode_str

from tests.support.project import ROOT

AWS = ROOT / "deploy" / "aws"
TEMPLATE = AWS / "housing-inference.yaml"
RULES = AWS / "rules"

Doc = dict[str, Any]


def cfn_lint(*templates: Path, fmt: str = "parseable") -> subprocess.CompletedProcess[str]:
    exe = shutil.which("cfn-lint", path=Path(sys.executable).parent) or shutil.which("cfn-lint")
    assert exe, "cfn-lint is a dev dependency: run `make install`"
    return subprocess.run(
        # --include-checks I: the informational checks too (I3011: a log group without
        # DeletionPolicy and UpdateReplacePolicy is deleted with the stack).
        [exe, "--format", fmt, "--include-checks", "I", "--append-rules", str(RULES), "--"]
        + [str(t) for t in templates],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},  # no __pycache__ in deploy/
    )


def template() -> Doc:
    doc, problems = decode_str(TEMPLATE.read_text())
    assert not problems, problems
    # Plain dicts and strings (the decoder's nodes carry line marks).
    return json.loads(json.dumps(doc))


def props(doc: Doc, name: str) -> Doc:
    return doc["Resources"][name]["Properties"]


def default(doc: Doc, parameter: str) -> Any:
    return doc["Parameters"][parameter]["Default"]


def user_data(doc: Doc) -> str:
    script = props(doc, "LaunchTemplate")["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Sub"]
    assert isinstance(script, str)
    return script


def shell_int(script: str, name: str) -> int:
    (value,) = re.findall(rf"^{name}=(\d+)$", script, re.MULTILINE)
    return int(value)


def conditional_policy(doc: Doc, condition: str) -> list[Any]:
    """The instance role's [condition, policy, else] for one condition."""
    found: list[list[Any]] = [
        p["Fn::If"]
        for p in props(doc, "InstanceRole")["Policies"]
        if "Fn::If" in p and p["Fn::If"][0] == condition
    ]
    assert len(found) == 1, f"{len(found)} policies under {condition}"
    return found[0]


# The Rules section, evaluated as CloudFormation does before it creates anything: every
# assertion must hold for the parameters given (defaults for the rest).
def evaluate(value: Any, parameters: dict[str, str]) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        function, argument = next(iter(value.items()))
        if function == "Ref":
            return parameters[argument]
        if function == "Fn::Equals":
            left, right = (evaluate(a, parameters) for a in argument)
            return left == right
        if function == "Fn::Not":
            return not evaluate(argument[0], parameters)
        if function == "Fn::Or":
            return any(evaluate(a, parameters) for a in argument)
        if function == "Fn::And":
            return all(evaluate(a, parameters) for a in argument)
        raise AssertionError(f"the test cannot evaluate {function}: extend evaluate()")
    return value


def refused(given: dict[str, str]) -> list[str]:
    """The AssertDescription of every failing rule assertion (the subnet rule, which needs AWS's
    view of the subnets, is left out)."""
    doc = template()
    parameters = {
        name: str(spec.get("Default", "")) for name, spec in doc["Parameters"].items()
    } | given
    failed = []
    for name, rule in doc["Rules"].items():
        if name == "SubnetsInVpc":
            continue
        for assertion in rule["Assertions"]:
            if not evaluate(assertion["Assert"], parameters):
                failed.append(assertion["AssertDescription"])
    return failed


CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-4e5f-6789-abcd-ef0123456789"
