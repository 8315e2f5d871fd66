"""The project's own cfn-lint rules: `cfn-lint TEMPLATE --append-rules deploy/aws/rules`.

cfn-lint imports each file here on its own (not as a package), so the rules share this module.
IDs are E91xx: cfn-lint numbers the rules of a --custom-rules file from E9001.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cfnlint.rules import CloudFormationLintRule, RuleMatch
from cfnlint.template import Template

Path = list[str | int]

OPEN_CIDRS = {"0.0.0.0/0", "::/0"}
OPEN_PORTS_ALLOWED = {80, 443}  # a public load balancer's ports
ADMIN_PORTS = {22, 3389}  # SSH, RDP: never reachable; use Session Manager
# Actions AWS defines without a resource: "*" is the only Resource they take.
RESOURCELESS_ACTIONS = {"ecr:getauthorizationtoken"}


def branches(value: Any, path: Path) -> Iterator[tuple[Path, Any]]:
    """Both sides of an Fn::If, recursively; AWS::NoValue yields nothing."""
    if isinstance(value, dict) and len(value) == 1:
        if "Fn::If" in value and isinstance(value["Fn::If"], list) and len(value["Fn::If"]) == 3:
            for i in (1, 2):
                yield from branches(value["Fn::If"][i], [*path, "Fn::If", i])
            return
        if value.get("Ref") == "AWS::NoValue":
            return
    yield path, value


def items(value: Any, path: Path) -> Iterator[tuple[Path, Any]]:
    """The concrete members of a list or single value, through Fn::If on either level."""
    for list_path, listed in branches(value, path):
        members = listed if isinstance(listed, list) else [listed]
        for i, member in enumerate(members):
            member_path = [*list_path, i] if isinstance(listed, list) else list_path
            yield from branches(member, member_path)


def literal(value: Any, cfn: Template) -> Any:
    """A value, or the default of the parameter it Refs (None if it has none)."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        parameter = cfn.template.get("Parameters", {}).get(value["Ref"])
        return parameter.get("Default") if isinstance(parameter, dict) else None
    return value


def text(value: Any) -> str | None:
    """A string as written: Fn::Sub's template, Fn::Join's parts (intrinsics as ${?})."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        function, argument = next(iter(value.items()))
        if function == "Fn::Sub":
            return text(argument[0] if isinstance(argument, list) else argument)
        if function == "Fn::Join" and isinstance(argument, list) and len(argument) == 2:
            parts = argument[1] if isinstance(argument[1], list) else []
            return str(argument[0]).join(text(p) or "${?}" for p in parts)
    return None


def resources(cfn: Template, *types: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, resource in cfn.get_resources(list(types)).items():
        properties = resource.get("Properties")
        if isinstance(properties, dict):
            yield name, properties


class NoOpenIngress(CloudFormationLintRule):
    """Ingress from anywhere only to 80/443; admin ports from nowhere."""

    id = "E9101"
    shortdesc = "Security group ingress open to the world or on an admin port"
    description = (
        "Ingress from 0.0.0.0/0 or ::/0 may only reach ports 80 and 443; ports 22 and 3389 "
        "may not be opened at all (administration goes through SSM Session Manager)."
    )
    source_url = "https://docs.aws.amazon.com/systems-manager/latest/userguide/session-manager.html"
    tags = ["security", "ec2", "housing-inference"]

    def match(self, cfn: Template) -> list[RuleMatch]:
        found = []
        for name, props in resources(cfn, "AWS::EC2::SecurityGroup"):
            base: Path = ["Resources", name, "Properties", "SecurityGroupIngress"]
            for path, rule in items(props.get("SecurityGroupIngress", []), base):
                found += self._check(rule, path, cfn)
        for name, props in resources(cfn, "AWS::EC2::SecurityGroupIngress"):
            found += self._check(props, ["Resources", name, "Properties"], cfn)
        return found

    def _check(self, rule: Any, path: Path, cfn: Template) -> list[RuleMatch]:
        if not isinstance(rule, dict):
            return []
        low, high = self._ports(rule, cfn)
        admin = sorted(p for p in ADMIN_PORTS if low <= p <= high)
        if admin:
            return [RuleMatch(path, f"ingress opens admin port {admin[0]}: use Session Manager")]
        sources = [literal(rule.get(key), cfn) for key in ("CidrIp", "CidrIpv6")]
        world = any(isinstance(source, str) and source in OPEN_CIDRS for source in sources)
        if world and not (low == high and low in OPEN_PORTS_ALLOWED):
            ports = f"port {low}" if low == high else f"ports {low}-{high}"
            return [
                RuleMatch(
                    path,
                    f"ingress from anywhere to {ports}: only 80 and 443 may be open to the "
                    "world; allow the load balancer's security group instead",
                )
            ]
        return []

    @staticmethod
    def _ports(rule: dict[str, Any], cfn: Template) -> tuple[int, int]:
        """The port range a rule opens; all ports when it cannot be read."""
        protocol = str(literal(rule.get("IpProtocol"), cfn)).lower()
        if protocol not in {"tcp", "udp", "6", "17"}:
            return 0, 65535  # -1 (all traffic) or a protocol without ports
        try:
            return int(literal(rule["FromPort"], cfn)), int(literal(rule["ToPort"], cfn))
        except (KeyError, TypeError, ValueError):
            return 0, 65535


def statements(cfn: Template) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every Allow statement of the template's IAM identity policies."""
    documents: list[tuple[Path, Any]] = []
    for name, props in resources(cfn, "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        base: Path = ["Resources", name, "Properties", "PolicyDocument"]
        documents += list(branches(props.get("PolicyDocument"), base))
    for name, props in resources(cfn, "AWS::IAM::Role", "AWS::IAM::User", "AWS::IAM::Group"):
        base = ["Resources", name, "Properties", "Policies"]
        for path, policy in items(props.get("Policies", []), base):
            if isinstance(policy, dict):
                doc_path: Path = [*path, "PolicyDocument"]
                documents += list(branches(policy.get("PolicyDocument"), doc_path))
    for path, document in documents:
        if isinstance(document, dict):
            for s_path, statement in items(document.get("Statement", []), [*path, "Statement"]):
                if isinstance(statement, dict) and statement.get("Effect") == "Allow":
                    yield s_path, statement


def strings(value: Any) -> list[Any]:
    return [v for _, v in items(value, [])]


class NoWildcardPermissions(CloudFormationLintRule):
    """No "*" or "service:*" actions; no "*" resource except for resource-less actions."""

    id = "E9102"
    shortdesc = "IAM statement with a wildcard action or resource"
    description = (
        'Allow statements may not grant Action "*", "service:*" or NotAction, nor Resource "*" '
        "unless every action is one AWS defines without resources (ecr:GetAuthorizationToken)."
    )
    source_url = "https://docs.aws.amazon.com/IAM/latest/UserGuide/best-practices.html"
    tags = ["security", "iam", "housing-inference"]

    def match(self, cfn: Template) -> list[RuleMatch]:
        found = []
        for path, statement in statements(cfn):
            if "NotAction" in statement:
                found.append(RuleMatch([*path, "NotAction"], "Allow + NotAction grants all else"))
            actions = [a for a in strings(statement.get("Action", [])) if isinstance(a, str)]
            for action in actions:
                if action == "*" or action.endswith(":*"):
                    found.append(RuleMatch([*path, "Action"], f'wildcard action "{action}"'))
            if "*" in strings(statement.get("Resource", [])) and not (
                actions and all(a.lower() in RESOURCELESS_ACTIONS for a in actions)
            ):
                found.append(
                    RuleMatch(
                        [*path, "Resource"],
                        f'Resource "*" for {", ".join(actions)}: name the resources',
                    )
                )
        return found


def object_key(arn: str | None) -> str | None:
    """The key part of an S3 object ARN, "arn:<partition>:s3:::<bucket>/<key>"."""
    if arn is None or not arn.startswith("arn:"):
        return None
    _, s3, rest = arn.partition(":s3:::")
    bucket, slash, key = rest.partition("/")
    return key if s3 and bucket and slash else None


def object_action(action: str) -> bool:
    service, _, name = action.lower().partition(":")
    if action == "*":
        return True
    return service == "s3" and ("object" in name or "*" in name or "multipart" in name)


class ScopedObjectAccess(CloudFormationLintRule):
    """S3 object actions reach a key prefix, not a whole bucket."""

    id = "E9103"
    shortdesc = "S3 object access not limited to a key prefix"
    description = (
        "Statements with S3 object actions must name object ARNs whose key part is more than "
        '"*": arn:<partition>:s3:::<bucket>/<prefix>*.'
    )
    source_url = (
        "https://docs.aws.amazon.com/AmazonS3/latest/userguide/security-best-practices.html"
    )
    tags = ["security", "iam", "s3", "housing-inference"]

    def match(self, cfn: Template) -> list[RuleMatch]:
        found = []
        for path, statement in statements(cfn):
            actions = [a for a in strings(statement.get("Action", [])) if isinstance(a, str)]
            if not any(object_action(a) for a in actions):
                continue
            for resource in strings(statement.get("Resource", [])):
                arn = text(resource)
                key = object_key(arn)
                if key is None or key.strip("*/") == "":
                    shown = arn if arn is not None else "a value that cannot be read"
                    found.append(
                        RuleMatch(
                            [*path, "Resource"],
                            f"S3 object access to {shown}: limit it to a key prefix "
                            "(arn:...:s3:::<bucket>/<prefix>*)",
                        )
                    )
        return found


class LaunchTemplateRequiresImdsV2(CloudFormationLintRule):
    """Launch templates require IMDSv2 session tokens."""

    id = "E9104"
    shortdesc = "Launch template without IMDSv2"
    description = "LaunchTemplateData.MetadataOptions.HttpTokens must be 'required' (IMDSv2)."
    source_url = (
        "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/configuring-IMDS-new-instances.html"
    )
    tags = ["security", "ec2", "housing-inference"]

    def match(self, cfn: Template) -> list[RuleMatch]:
        found = []
        for name, props in resources(cfn, "AWS::EC2::LaunchTemplate"):
            data = props.get("LaunchTemplateData")
            options = data.get("MetadataOptions") if isinstance(data, dict) else None
            path: Path = ["Resources", name, "Properties", "LaunchTemplateData"]
            if not isinstance(options, dict):
                found.append(RuleMatch(path, "no MetadataOptions: set HttpTokens: required"))
            elif options.get("HttpEndpoint") != "disabled" and options.get("HttpTokens") != (
                "required"
            ):
                found.append(
                    RuleMatch([*path, "MetadataOptions"], "HttpTokens must be 'required' (IMDSv2)")
                )
        return found


def redirects_to_https(action: Any) -> bool:
    config = action.get("RedirectConfig") if isinstance(action, dict) else None
    return (
        isinstance(action, dict)
        and str(action.get("Type", "")).lower() == "redirect"
        and isinstance(config, dict)
        and config.get("Protocol") == "HTTPS"
    )


class PlainHttpOnlyByCondition(CloudFormationLintRule):
    """An HTTP listener redirects to HTTPS, except in a branch of an Fn::If."""

    id = "E9105"
    shortdesc = "HTTP listener that serves plain HTTP unconditionally"
    description = (
        "A load balancer listener with Protocol HTTP must redirect to HTTPS; an action that "
        "serves plain HTTP is allowed only inside an Fn::If, so that plain HTTP is a choice the "
        "stack's parameters (and Rules) make, never the only way the template works."
    )
    source_url = (
        "https://docs.aws.amazon.com/elasticloadbalancing/latest/application/"
        "load-balancer-listeners.html"
    )
    tags = ["security", "elbv2", "housing-inference"]

    def match(self, cfn: Template) -> list[RuleMatch]:
        found = []
        for name, props in resources(cfn, "AWS::ElasticLoadBalancingV2::Listener"):
            if literal(props.get("Protocol"), cfn) != "HTTP":
                continue
            base: Path = ["Resources", name, "Properties", "DefaultActions"]
            for path, action in items(props.get("DefaultActions", []), base):
                if not redirects_to_https(action) and "Fn::If" not in path:
                    found.append(
                        RuleMatch(
                            path,
                            "an HTTP listener serves plain HTTP unconditionally: redirect to "
                            "HTTPS, or put the action under an Fn::If on a parameter",
                        )
                    )
        return found


def secret_action(action: str) -> bool:
    return action.lower().startswith("secretsmanager:")


class NamedSecretsOnly(CloudFormationLintRule):
    """Secrets Manager actions reach named secrets, never a pattern of them."""

    id = "E9106"
    shortdesc = "Secrets Manager access to a wildcard of secrets"
    description = (
        'Statements with Secrets Manager actions may not name a resource with "*" or "?" (a '
        "Ref to a parameter is read as its default): each secret by its full ARN, as the "
        "stack's parameters give it."
    )
    source_url = (
        "https://docs.aws.amazon.com/secretsmanager/latest/userguide/"
        "auth-and-access_iam-policies.html"
    )
    tags = ["security", "iam", "secretsmanager", "housing-inference"]

    def match(self, cfn: Template) -> list[RuleMatch]:
        found = []
        for path, statement in statements(cfn):
            actions = [a for a in strings(statement.get("Action", [])) if isinstance(a, str)]
            if not any(secret_action(a) for a in actions):
                continue
            for resource in strings(statement.get("Resource", [])):
                arn = text(literal(resource, cfn))
                if arn is not None and ("*" in arn or "?" in arn):
                    found.append(
                        RuleMatch(
                            [*path, "Resource"],
                            f"Secrets Manager access to {arn}: name each secret by its full "
                            "ARN (a parameter with an AllowedPattern)",
                        )
                    )
        return found
