"""deploy/aws/, checked offline: cfn-lint (informational checks included) with the project's own
rules (deploy/aws/rules/), proof that each rule fails on a broken copy, the template's Rules
(HTTPS unless plain HTTP is asked for; two keys, two secrets), the timing relations between the
template's numbers and the server's, and the user data's handling of the API keys (its shell
functions run against stub `aws` and `docker` commands). checkov's run is in
test_deploy_checkov.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode_str

from app.compose import create_app
from app.settings import Settings
from tests.support.project import ROOT

AWS = ROOT / "deploy" / "aws"
TEMPLATE = AWS / "housing-inference.yaml"
RULES = AWS / "rules"
# Worst-case start of an instance before it is ready: boot and cloud-init (about 2 minutes), the
# pull of a multi-GB Neuron image (about 5), the artifact copy, model load and the warm-up of
# every batch size (about 1), plus margin.
STARTUP_ALLOWANCE_S = 600
# One server process on one CPU core of the 2-core CI VM, single-record requests at c64 (`make
# bench`). The scaling target's default is this capacity x 60 s x 0.5 headroom.
MEASURED_RPS = 4_800
HEADROOM = 0.5

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


def routes() -> set[str]:
    app = create_app(Settings(artifacts=Path("artifacts"), device="cpu"))
    return set(app.openapi()["paths"])


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


def test_the_template_passes_cfn_lint_and_our_rules() -> None:
    result = cfn_lint(TEMPLATE)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


# Broken copies of the template, each with the rules that must catch it.
def ingress(doc: Doc, rule: Doc) -> None:
    props(doc, "InstanceSecurityGroup")["SecurityGroupIngress"].append(rule)


def app_port_open(doc: Doc, source: Doc) -> None:
    (rule,) = props(doc, "InstanceSecurityGroup")["SecurityGroupIngress"]
    del rule["SourceSecurityGroupId"]
    rule.update(source)


def rdp_resource(doc: Doc) -> None:
    doc["Resources"]["RdpIngress"] = {
        "Type": "AWS::EC2::SecurityGroupIngress",
        "Properties": {
            "GroupId": {"Fn::GetAtt": ["InstanceSecurityGroup", "GroupId"]},
            "IpProtocol": "tcp",
            "FromPort": 3389,
            "ToPort": 3389,
            "CidrIp": "10.0.0.0/8",
        },
    }


def open_client_cidr(doc: Doc) -> None:
    doc["Parameters"]["ClientCidr"]["Default"] = "0.0.0.0/0"


def app_port_from_client_cidr(doc: Doc) -> None:
    open_client_cidr(doc)
    app_port_open(doc, {"CidrIp": {"Ref": "ClientCidr"}})


def policy(doc: Doc, name: str) -> Doc:
    (found,) = [p for p in props(doc, "InstanceRole")["Policies"] if p.get("PolicyName") == name]
    return found


def artifacts_statement(doc: Doc) -> Doc:
    statement = policy(doc, "read-artifacts")["PolicyDocument"]["Statement"][0]
    assert statement["Action"] == "s3:GetObject"
    return statement


def conditional_policy(doc: Doc, condition: str) -> list[Any]:
    """The instance role's [condition, policy, else] for one condition."""
    found: list[list[Any]] = [
        p["Fn::If"]
        for p in props(doc, "InstanceRole")["Policies"]
        if "Fn::If" in p and p["Fn::If"][0] == condition
    ]
    assert len(found) == 1, f"{len(found)} policies under {condition}"
    return found[0]


def ecr_statements(doc: Doc) -> list[Doc]:
    statements: list[Doc] = conditional_policy(doc, "UseEcr")[1]["PolicyDocument"]["Statement"]
    return statements


def key_statement(doc: Doc, condition: str) -> Doc:
    statements: list[Doc] = conditional_policy(doc, condition)[1]["PolicyDocument"]["Statement"]
    assert len(statements) == 1
    return statements[0]


def metadata(doc: Doc) -> Doc:
    options: Doc = props(doc, "LaunchTemplate")["LaunchTemplateData"]["MetadataOptions"]
    return options


def typo(doc: Doc) -> None:
    target_group = props(doc, "TargetGroup")
    target_group["HealthCheckPat"] = target_group.pop("HealthCheckPath")


def http_listener(doc: Doc) -> Doc:
    return props(doc, "HttpListener")


def plain_http_always(doc: Doc) -> None:
    (action,) = http_listener(doc)["DefaultActions"]
    http_listener(doc)["DefaultActions"] = [action["Fn::If"][2]]


def plain_http_as_well(doc: Doc) -> None:
    forward = {"Type": "forward", "TargetGroupArn": {"Ref": "TargetGroup"}, "Order": 2}
    http_listener(doc)["DefaultActions"].append(forward)


def log_group_deletable(doc: Doc) -> None:
    del doc["Resources"]["LogGroup"]["DeletionPolicy"]


def bucket_wide(doc: Doc) -> None:
    artifacts_statement(doc)["Resource"] = {
        "Fn::Sub": "arn:${AWS::Partition}:s3:::${ArtifactsBucket}/*"
    }


MUTANTS: dict[str, tuple[Callable[[Doc], None], set[str]]] = {
    "ssh-from-anywhere": (
        lambda d: ingress(
            d, {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "CidrIp": "0.0.0.0/0"}
        ),
        {"E9101"},
    ),
    "all-traffic-from-anywhere": (
        lambda d: ingress(d, {"IpProtocol": "-1", "CidrIp": "0.0.0.0/0"}),
        {"E9101"},
    ),
    "app-port-from-anywhere": (lambda d: app_port_open(d, {"CidrIp": "0.0.0.0/0"}), {"E9101"}),
    "app-port-from-anywhere-ipv6": (lambda d: app_port_open(d, {"CidrIpv6": "::/0"}), {"E9101"}),
    "rdp-from-a-private-range": (rdp_resource, {"E9101"}),
    "artifacts-whole-bucket": (bucket_wide, {"E9103"}),
    "artifacts-any-resource": (
        lambda d: artifacts_statement(d).update(Resource="*"),
        {"E9102", "E9103"},
    ),
    "action-star": (lambda d: artifacts_statement(d).update(Action="*"), {"E9102"}),
    "action-s3-star": (lambda d: artifacts_statement(d).update(Action="s3:*"), {"E9102"}),
    "ecr-pull-from-any-repository": (
        lambda d: ecr_statements(d)[1].update(Resource="*"),
        {"E9102"},
    ),
    "api-key-secret-any-resource": (
        lambda d: key_statement(d, "HasApiKey").update(Resource="*"),
        {"E9102", "E9106"},
    ),
    "admin-key-secrets-by-name-pattern": (
        lambda d: key_statement(d, "HasAdminKey").update(
            Resource={
                "Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:"
                "${AWS::AccountId}:secret:housing-*"
            }
        ),
        {"E9106"},
    ),
    "api-key-secret-every-action": (
        lambda d: key_statement(d, "HasApiKey").update(Action="secretsmanager:*"),
        {"E9102"},
    ),
    "imdsv1-allowed": (lambda d: metadata(d).update(HttpTokens="optional"), {"E9104"}),
    "no-metadata-options": (
        lambda d: props(d, "LaunchTemplate")["LaunchTemplateData"].pop("MetadataOptions"),
        {"E9104"},
    ),
    "property-typo": (typo, {"E3002"}),
    "plain-http-without-a-condition": (plain_http_always, {"E9105"}),
    "plain-http-beside-the-redirect": (plain_http_as_well, {"E9105"}),
    # I3011: no DeletionPolicy; W3011: an UpdateReplacePolicy without its DeletionPolicy.
    "log-group-deleted-with-the-stack": (log_group_deletable, {"I3011", "W3011"}),
    "app-port-from-a-parameter-defaulting-to-anywhere": (app_port_from_client_cidr, {"E9101"}),
    # The control: a load balancer open to the world on 80 and 443 is allowed.
    "public-load-balancer": (open_client_cidr, set()),
}


@pytest.fixture(scope="module")
def mutant_findings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Every mutant through one cfn-lint run: rule ids found, by mutant."""
    folder = tmp_path_factory.mktemp("mutants")
    paths = {}
    for name, (mutate, _) in MUTANTS.items():
        doc = template()
        mutate(doc)
        assert doc != template(), f"{name} changed nothing"
        paths[name] = folder / f"{name}.json"
        paths[name].write_text(json.dumps(doc, indent=1))
    result = cfn_lint(*paths.values(), fmt="json")
    assert result.stderr == "", result.stderr
    findings: dict[str, set[str]] = {name: set() for name in MUTANTS}
    for match in json.loads(result.stdout):
        findings[Path(match["Filename"]).stem].add(match["Rule"]["Id"])
    return findings


@pytest.mark.parametrize("name", MUTANTS)
def test_the_checks_catch_a_broken_template(
    name: str, mutant_findings: dict[str, set[str]]
) -> None:
    assert mutant_findings[name] == MUTANTS[name][1]


def test_the_drain_timings_fit_together() -> None:
    doc = template()
    drain = int(default(doc, "DrainDelaySeconds"))
    grace = int(default(doc, "GracefulTimeoutSeconds"))
    deregistration = int(default(doc, "DeregistrationDelaySeconds"))
    target_group = props(doc, "TargetGroup")
    interval = target_group["HealthCheckIntervalSeconds"]
    # The server refuses drain >= graceful; these are values it accepts.
    settings = Settings(drain_delay_s=drain, graceful_timeout_s=grace)
    assert settings.drain_delay_s < settings.graceful_timeout_s
    # The load balancer sees readiness fail, and stops routing, while the server still accepts.
    assert target_group["UnhealthyThresholdCount"] * interval < drain
    assert target_group["HealthCheckTimeoutSeconds"] < interval
    # A leaving instance finishes what it accepted before the group terminates it.
    assert deregistration > drain + grace
    attributes = {a["Key"]: a["Value"] for a in target_group["TargetGroupAttributes"]}
    assert attributes["deregistration_delay.timeout_seconds"] == {
        "Ref": "DeregistrationDelaySeconds"
    }


def test_docker_stop_outlasts_the_drain() -> None:
    doc = template()
    script = user_data(doc)
    assert "DRAIN_S=${DrainDelaySeconds}\n" in script
    assert "GRACE_S=${GracefulTimeoutSeconds}\n" in script
    (margin,) = re.findall(
        r"^STOP_TIMEOUT_S=\$\(\( DRAIN_S \+ GRACE_S \+ (\d+) \)\)$", script, re.M
    )
    assert int(margin) > 0
    assert '--stop-timeout "$STOP_TIMEOUT_S"' in script
    assert "ExecStop=/usr/bin/docker stop --time $STOP_TIMEOUT_S housing" in script
    # systemd's own stop timeout is longer still, so docker's SIGKILL is the only one.
    (unit_margin,) = re.findall(
        r"^TimeoutStopSec=\$\(\( STOP_TIMEOUT_S \+ (\d+) \)\)$", script, re.M
    )
    assert int(unit_margin) > 0
    assert 'HOUSING_DRAIN_DELAY_S="$DRAIN_S"' in script
    assert 'HOUSING_GRACEFUL_TIMEOUT_S="$GRACE_S"' in script


def test_the_container_gets_the_devices_artifacts_and_limits() -> None:
    script = user_data(template())
    assert "MODEL_DIR=/opt/housing/model\n" in script
    assert '-v "$MODEL_DIR":/opt/ml/model:ro' in script
    assert (
        "aws s3 sync" in script
        and "ARTIFACTS='s3://${ArtifactsBucket}/${ArtifactsPrefix}'" in script
    )
    # Every /dev/neuron* device, however many the instance type has.
    assert "for dev in /dev/neuron[0-9]*; do" in script
    assert (
        'devices="$devices --device=$dev"' in script
        and "$devices" in script.split("exec docker run")[1]
    )
    assert "--ulimit nofile=65536:65536 --ulimit memlock=-1:-1" in script
    assert "-p 8080:8080 -p 8081:8081" in script
    for env in (
        "HOUSING_DEVICE=neuron",
        "HOUSING_LOG_FORMAT=json",
        "HOUSING_ARTIFACTS=/opt/ml/model",
    ):
        assert f"-e {env}" in script
    assert "--log-driver awslogs" in script and "LOG_GROUP=${LogGroup}" in script
    assert "Restart=always" in script and "--rm" in script  # systemd is the one supervisor
    assert '"$IMAGE" serve' in script


def test_the_health_check_is_the_readiness_route() -> None:
    doc = template()
    target_group = props(doc, "TargetGroup")
    assert target_group["HealthCheckPath"] == "/health/ready"
    assert target_group["HealthCheckPath"] in routes()
    assert target_group["Matcher"] == {"HttpCode": "200"}
    assert target_group["Port"] == Settings().port
    assert "http://127.0.0.1:8080/health/ready" in user_data(doc)  # the readiness signal too


def test_startup_fits_the_grace_period_and_the_rollout() -> None:
    doc = template()
    group = doc["Resources"]["AutoScalingGroup"]
    assert group["Properties"]["HealthCheckType"] == "ELB"
    assert group["Properties"]["HealthCheckGracePeriod"] >= STARTUP_ALLOWANCE_S
    script = user_data(doc)
    ready_timeout = shell_int(script, "READY_TIMEOUT_S")
    assert ready_timeout >= STARTUP_ALLOWANCE_S
    rolling = group["UpdatePolicy"]["AutoScalingRollingUpdate"]
    pause = re.fullmatch(r"PT(\d+)M", rolling["PauseTime"])
    assert pause and ready_timeout < int(pause[1]) * 60 <= 3600  # CloudFormation's limit: 1 h
    assert group["CreationPolicy"]["ResourceSignal"]["Timeout"] == rolling["PauseTime"]
    # The signal waits until the load balancer has had its healthy checks too.
    target_group = props(doc, "TargetGroup")
    healthy_s = target_group["HealthyThresholdCount"] * target_group["HealthCheckIntervalSeconds"]
    assert shell_int(script, "LB_HEALTHY_S") >= healthy_s
    assert "signal SUCCESS" in script and "trap 'signal FAILURE' ERR" in script


def test_a_new_launch_template_version_rolls_the_group() -> None:
    doc = template()
    group = doc["Resources"]["AutoScalingGroup"]
    rolling = group["UpdatePolicy"]["AutoScalingRollingUpdate"]
    assert rolling["WaitOnResourceSignals"] is True
    assert rolling["MaxBatchSize"] == 1
    assert rolling["MinInstancesInService"] == {"Ref": "MinSize"}
    # Only a changed version number starts a rolling update ($Latest never changes).
    assert group["Properties"]["LaunchTemplate"]["Version"] == {
        "Fn::GetAtt": ["LaunchTemplate", "LatestVersionNumber"]
    }
    # MinInstancesInService must stay below MaxSize.
    assert doc["Parameters"]["MaxSize"]["MinValue"] > doc["Parameters"]["MinSize"]["MinValue"]
    assert default(doc, "MaxSize") > default(doc, "MinSize")


def test_scaling_tracks_requests_per_target() -> None:
    doc = template()
    config = props(doc, "RequestCountScaling")["TargetTrackingConfiguration"]
    metric = config["PredefinedMetricSpecification"]
    assert metric["PredefinedMetricType"] == "ALBRequestCountPerTarget"
    # app/<alb-name>/<alb-id>/targetgroup/<tg-name>/<tg-id>
    assert metric["ResourceLabel"] == {
        "Fn::Join": [
            "/",
            [
                {"Fn::GetAtt": ["LoadBalancer", "LoadBalancerFullName"]},
                {"Fn::GetAtt": ["TargetGroup", "TargetGroupFullName"]},
            ],
        ]
    }
    assert config["TargetValue"] == {"Ref": "RequestsPerTargetPerMinute"}
    assert default(doc, "RequestsPerTargetPerMinute") == MEASURED_RPS * 60 * HEADROOM == 144_000
    assert props(doc, "AutoScalingGroup")["TargetGroupARNs"] == [{"Ref": "TargetGroup"}]


def test_instances_take_no_ssh_and_use_the_neuron_ami() -> None:
    doc = template()
    data = props(doc, "LaunchTemplate")["LaunchTemplateData"]
    assert "KeyName" not in data
    assert metadata(doc)["HttpTokens"] == "required"
    (volume,) = data["BlockDeviceMappings"]
    assert volume["Ebs"]["Encrypted"] is True
    ami = doc["Parameters"]["AmiId"]
    assert ami["Type"] == "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"
    assert re.fullmatch(
        r"/aws/service/neuron/dlami/[a-z0-9.-]+/ubuntu-24\.04/latest/image_id", ami["Default"]
    )
    assert set(doc["Parameters"]["InstanceType"]["AllowedValues"]) == {
        f"inf2.{size}" for size in ("xlarge", "8xlarge", "24xlarge", "48xlarge")
    }


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


def test_plain_http_is_refused_unless_asked_for_by_name() -> None:
    doc = template()
    assert default(doc, "AllowPlainHttp") == "false"
    assert default(doc, "CertificateArn") == ""
    (why,) = refused({})  # the defaults: no certificate, no plain HTTP
    assert "CertificateArn" in why and "AllowPlainHttp=true" in why
    assert refused({"CertificateArn": CERTIFICATE}) == []
    assert refused({"AllowPlainHttp": "true"}) == []
    assert refused({"CertificateArn": CERTIFICATE, "AllowPlainHttp": "true"}) == []
    assert re.fullmatch(doc["Parameters"]["CertificateArn"]["AllowedPattern"], CERTIFICATE)


def test_port_80_redirects_with_a_certificate_and_forwards_only_without() -> None:
    doc = template()
    assert doc["Conditions"]["HasCertificate"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "CertificateArn"}, ""]}]
    }
    listener = props(doc, "HttpListener")
    assert (listener["Port"], listener["Protocol"]) == (80, "HTTP")
    ((condition, with_certificate, without),) = [
        action["Fn::If"] for action in listener["DefaultActions"]
    ]
    assert condition == "HasCertificate"
    assert with_certificate == {
        "Type": "redirect",
        "RedirectConfig": {"Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"},
    }
    assert without == {"Type": "forward", "TargetGroupArn": {"Ref": "TargetGroup"}}
    https = doc["Resources"]["HttpsListener"]
    assert https["Condition"] == "HasCertificate"
    assert (https["Properties"]["Port"], https["Properties"]["Protocol"]) == (443, "HTTPS")
    assert https["Properties"]["SslPolicy"].startswith("ELBSecurityPolicy-TLS13-1-2")
    assert https["Properties"]["DefaultActions"] == [without]


def test_the_group_starts_after_the_listener_that_forwards_to_it() -> None:
    group = template()["Resources"]["AutoScalingGroup"]
    assert group["Metadata"]["ForwardingListener"] == {
        "Fn::If": ["HasCertificate", {"Ref": "HttpsListener"}, {"Ref": "HttpListener"}]
    }


def test_access_logs_go_to_the_bucket_when_one_is_given() -> None:
    doc = template()
    assert default(doc, "AccessLogBucket") == ""
    assert doc["Conditions"]["HasAccessLogs"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AccessLogBucket"}, ""]}]
    }
    attributes = props(doc, "LoadBalancer")["LoadBalancerAttributes"]
    assert {
        "Key": "access_logs.s3.enabled",
        "Value": {"Fn::If": ["HasAccessLogs", "true", "false"]},
    } in attributes
    conditional = {a["Fn::If"][1]["Key"]: a["Fn::If"] for a in attributes if "Fn::If" in a}
    assert conditional == {
        "access_logs.s3.bucket": [
            "HasAccessLogs",
            {"Key": "access_logs.s3.bucket", "Value": {"Ref": "AccessLogBucket"}},
            {"Ref": "AWS::NoValue"},
        ],
        "access_logs.s3.prefix": [
            "HasAccessLogs",
            {"Key": "access_logs.s3.prefix", "Value": {"Ref": "AccessLogPrefix"}},
            {"Ref": "AWS::NoValue"},
        ],
    }
    prefix = doc["Parameters"]["AccessLogPrefix"]
    assert re.fullmatch(prefix["AllowedPattern"], prefix["Default"])
    assert not re.fullmatch(prefix["AllowedPattern"], "/logs/")


def test_the_logs_are_encrypted_with_the_stacks_key_and_outlive_the_stack() -> None:
    doc = template()
    group, key = doc["Resources"]["LogGroup"], doc["Resources"]["LogKey"]
    for resource in (group, key):
        assert resource["DeletionPolicy"] == resource["UpdateReplacePolicy"] == "Retain"
    assert group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": ["LogKey", "Arn"]}
    assert key["Properties"]["EnableKeyRotation"] is True
    # The group's name: this stack's folder, ending in the stack id (a kept group never blocks
    # a new stack of the same name).
    name, variables = group["Properties"]["LogGroupName"]["Fn::Sub"]
    assert name == "/housing-inference/${AWS::StackName}/${StackUuid}"
    assert variables == {
        "StackUuid": {"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "AWS::StackId"}]}]}
    }
    # CloudWatch Logs may use the key for this stack's groups only.
    statements = {s["Sid"]: s for s in key["Properties"]["KeyPolicy"]["Statement"]}
    logs = statements["LogsEncryptThisStacksGroups"]
    assert logs["Principal"] == {"Service": {"Fn::Sub": "logs.${AWS::Region}.${AWS::URLSuffix}"}}
    (arn,) = logs["Condition"]["ArnLike"].values()
    assert arn["Fn::Sub"].endswith(":log-group:/housing-inference/${AWS::StackName}/*")
    assert "kms:*" not in logs["Action"]
    # The account keeps control of the key (without this statement nobody could manage it).
    admin = statements["AccountAdministersThroughIam"]
    assert admin["Principal"] == {
        "AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
    }


def test_the_load_balancer_reaches_the_instances_http_port_and_nothing_else() -> None:
    """A security group without SecurityGroupEgress keeps EC2's allow-all egress rule, which a
    separate SecurityGroupEgress resource does not remove: the group names a rule that lets
    nothing out (replacing the default), and LoadBalancerEgress adds the instances' port."""
    doc = template()
    (nothing,) = props(doc, "LoadBalancerSecurityGroup")["SecurityGroupEgress"]
    assert (nothing["IpProtocol"], nothing["CidrIp"]) == ("-1", "127.0.0.1/32")
    egress = props(doc, "LoadBalancerEgress")
    assert (egress["FromPort"], egress["ToPort"]) == (8080, 8080)
    assert egress["DestinationSecurityGroupId"] == {
        "Fn::GetAtt": ["InstanceSecurityGroup", "GroupId"]
    }


# The keys: optional Secrets Manager secrets, read at each instance's boot into files that the
# container reads through HOUSING_API_KEY_FILE and HOUSING_ADMIN_KEY_FILE.
API_KEY_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:housing/api-key-a1B2c3"
ADMIN_KEY_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:housing/admin-key-D4e5F6"
# (parameter, condition, policy, file in KEY_DIR, variable in the container)
KEYS = (
    ("ApiKeySecretArn", "HasApiKey", "read-api-key", "api-key", "HOUSING_API_KEY_FILE"),
    ("AdminKeySecretArn", "HasAdminKey", "read-admin-key", "admin-key", "HOUSING_ADMIN_KEY_FILE"),
)
KEY_DIR = "/etc/housing/keys"
MOUNTED_KEYS = "/var/run/secrets/housing"  # where deploy/k8s mounts them too


def test_the_key_secrets_are_optional_full_arns() -> None:
    doc = template()
    for parameter, condition, *_ in KEYS:
        spec = doc["Parameters"][parameter]
        assert spec["Default"] == ""
        assert doc["Conditions"][condition] == {
            "Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, ""]}]
        }
        pattern = spec["AllowedPattern"]
        china = "arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:k-AbC123"
        for good in ("", API_KEY_ARN, ADMIN_KEY_ARN, china):
            assert re.fullmatch(pattern, good), good
        for bad in (
            "*",
            # The name without Secrets Manager's suffix: the role's policy would never match.
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:housing/api-key",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:housing-*",
            "arn:aws:ssm:us-east-1:123456789012:parameter/housing-api-key-a1B2c3",
            "housing/api-key-a1B2c3",
        ):
            assert not re.fullmatch(pattern, bad), bad


def test_the_instance_role_reads_each_key_secret_only_when_given() -> None:
    doc = template()
    for parameter, condition, policy_name, *_ in KEYS:
        assert conditional_policy(doc, condition) == [
            condition,
            {
                "PolicyName": policy_name,
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": "secretsmanager:GetSecretValue",
                            "Resource": {"Ref": parameter},
                        }
                    ],
                },
            },
            {"Ref": "AWS::NoValue"},
        ]
    # No other statement of the role reaches Secrets Manager.
    others = [
        p
        for p in props(doc, "InstanceRole")["Policies"]
        if not ("Fn::If" in p and p["Fn::If"][0] in {"HasApiKey", "HasAdminKey"})
    ]
    assert "secretsmanager" not in json.dumps(others).lower()


def test_one_secret_cannot_be_both_keys() -> None:
    given = {"CertificateArn": CERTIFICATE}
    assert refused(given | {"ApiKeySecretArn": API_KEY_ARN}) == []
    assert refused(given | {"AdminKeySecretArn": ADMIN_KEY_ARN}) == []
    assert (
        refused(given | {"ApiKeySecretArn": API_KEY_ARN, "AdminKeySecretArn": ADMIN_KEY_ARN}) == []
    )
    (why,) = refused(given | {"ApiKeySecretArn": API_KEY_ARN, "AdminKeySecretArn": API_KEY_ARN})
    assert "AdminKeySecretArn is ApiKeySecretArn" in why


def one_line(script: str) -> str:
    """The script with continued lines joined and each run of blanks made one space."""
    return re.sub(r"[ \t]+", " ", script.replace("\\\n", " "))


def heredoc(script: str, opening: str) -> str:
    (body,) = re.findall(rf"^{re.escape(opening)}\n(.*?)^EOF\n", script, re.M | re.S)
    return str(body)


def shell_function(script: str, name: str) -> str:
    (body,) = re.findall(rf"^{name}\(\) \{{\n.*?^\}}\n", script, re.M | re.S)
    return str(body)


def test_the_user_data_fetches_each_given_key_first() -> None:
    script = user_data(template())
    assert "REGION='${AWS::Region}'\n" in script and f"KEY_DIR={KEY_DIR}\n" in script
    assert "API_KEY_SECRET='${ApiKeySecretArn}'\n" in script
    assert "ADMIN_KEY_SECRET='${AdminKeySecretArn}'\n" in script
    assert (
        'aws secretsmanager get-secret-value --secret-id "$1" --query SecretString '
        '--output text --region "$REGION" > "$2"'
    ) in one_line(script)
    # Only root and the image's group (gid 10001) may enter the folder.
    assert 'install -d -m 0750 -o root -g 10001 "$KEY_DIR"' in script
    for variable, file in (("API_KEY_SECRET", "api-key"), ("ADMIN_KEY_SECRET", "admin-key")):
        fetch = f'if [ -n "${variable}" ]; then fetch_key "${variable}" {file}; fi\n'
        # Before the image pull (an unreadable key fails fast) and the service's start.
        assert (
            script.index(fetch)
            < script.index("retry docker pull")
            < script.index("systemctl enable --now housing.service")
        )
        assert f"{variable}=${variable}\n" in heredoc(script, "cat > /etc/housing/env <<EOF")
    # The log (tee'd to /var/log/housing-bootstrap.log) never traces commands.
    commands = re.sub(r"^\s*#.*$", "", script, flags=re.M)
    assert not re.search(r"set -[A-Za-z]*x|xtrace|bash -x", commands)
    # The keys reach the server as files only.
    assert not re.search(r"HOUSING_(API|ADMIN)_KEY=", script)


def test_the_user_data_is_valid_bash() -> None:
    script = re.sub(r"\$\{[A-Za-z0-9:.]+\}", "x", user_data(template()))  # as Fn::Sub renders
    for code in (script, heredoc(script, "cat > /usr/local/bin/housing-run <<'EOF'")):
        result = subprocess.run(
            ["bash", "-n"], input=code, capture_output=True, text=True, check=False
        )
        assert (result.returncode, result.stderr) == (0, "")


def stub(folder: Path, name: str, body: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(f"#!/bin/bash\n{body}\n")
    (folder / name).chmod(0o755)


KEY = "k3y-that-must-stay-secret"


def run_fetch_key(tmp_path: Path, aws_answer: str | None) -> subprocess.CompletedProcess[str]:
    """The user data's fetch_key, run as the user data runs it (set -Eeuo pipefail, the ERR
    trap), with a stub `aws` that answers ``aws_answer`` (None: access denied)."""
    script = user_data(template())
    assert "set -Eeuo pipefail\n" in script and "trap 'signal FAILURE' ERR\n" in script
    bin_dir, keys = tmp_path / "bin", tmp_path / "keys"
    keys.mkdir(mode=0o750)
    (tmp_path / "answer").write_text(aws_answer or "")
    # The stub records its arguments and the mode of the file it writes the key into.
    stub(
        bin_dir,
        "aws",
        'printf "%s\\n" "$@" > "$CALLS/aws"; stat -L -c %a /proc/$$/fd/1 > "$CALLS/mode"\n'
        'if [ -n "${DENIED:-}" ]; then echo "AccessDeniedException" >&2; exit 254; fi\n'
        'cat "$CALLS/answer"',
    )
    stub(bin_dir, "chgrp", 'printf "%s\\n" "$@" > "$CALLS/chgrp"')  # root only, for real
    stub(bin_dir, "sleep", "")  # retry's pauses
    code = "\n".join(
        [
            "set -Eeuo pipefail",
            'signal() { echo "signal $1"; }',
            "trap 'signal FAILURE' ERR",
            "REGION=us-east-1",
            f"KEY_DIR={keys}",
            shell_function(script, "retry"),
            shell_function(script, "secret_string"),
            shell_function(script, "fetch_key"),
            'fetch_key "$1" api-key',
            "echo started",  # what follows in the user data: the image, the service
        ]
    )
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(tmp_path)}
    if aws_answer is None:
        env["DENIED"] = "1"
    return subprocess.run(
        ["bash", "-c", code, "bash", API_KEY_ARN],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )


def test_a_key_lands_in_a_file_only_root_and_the_service_read(tmp_path: Path) -> None:
    result = run_fetch_key(tmp_path, f"{KEY}\n")
    assert (result.returncode, result.stdout, result.stderr) == (0, "started\n", "")
    assert (tmp_path / "aws").read_text().split() == [
        "secretsmanager",
        "get-secret-value",
        "--secret-id",
        API_KEY_ARN,
        "--query",
        "SecretString",
        "--output",
        "text",
        "--region",
        "us-east-1",
    ]
    # 0600 while the key was written, 0440 group 10001 under its name; nothing else left.
    assert (tmp_path / "mode").read_text() == "600\n"
    key = tmp_path / "keys" / "api-key"
    assert [p.name for p in (tmp_path / "keys").iterdir()] == ["api-key"]
    assert key.read_text() == f"{KEY}\n" and key.stat().st_mode & 0o777 == 0o440
    assert (tmp_path / "chgrp").read_text().split()[0] == "10001"


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (None, "cannot read"),  # access denied, no route, another Region, ...
        ("None\n", "holds no key"),  # a binary secret: --output text prints None
        (" \n", "holds no key"),
    ],
)
def test_an_unreadable_key_fails_the_boot_before_the_service_starts(
    tmp_path: Path, answer: str | None, why: str
) -> None:
    result = run_fetch_key(tmp_path, answer)
    assert result.returncode != 0
    assert result.stdout == "signal FAILURE\n"  # and never "started"
    assert why in result.stderr and API_KEY_ARN in result.stderr
    assert list((tmp_path / "keys").iterdir()) == []


def docker_run_arguments(tmp_path: Path, api_key_arn: str, admin_key_arn: str) -> list[str]:
    """What /usr/local/bin/housing-run passes to `docker run` (a stub), given the stack's key
    parameters, with the env file the user data writes."""
    script = user_data(template())
    run = heredoc(script, "cat > /usr/local/bin/housing-run <<'EOF'")
    names = re.findall(r"^(\w+)=", heredoc(script, "cat > /etc/housing/env <<EOF"), re.M)
    values = dict.fromkeys(names, "1") | {
        "API_KEY_SECRET": api_key_arn,
        "ADMIN_KEY_SECRET": admin_key_arn,
        "KEY_DIR": KEY_DIR,
    }
    env_file, devices = tmp_path / "env", tmp_path / "dev"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in values.items()))
    devices.mkdir()
    (devices / "neuron0").touch()
    assert "source /etc/housing/env\n" in run and "/dev/neuron[0-9]*" in run
    run = run.replace("/etc/housing/env", str(env_file)).replace("/dev/neuron", f"{devices}/neuron")
    stub(tmp_path / "bin", "docker", 'printf "%s\\n" "$@"')
    result = subprocess.run(
        ["bash", "-c", run],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"},
    )
    assert (result.returncode, result.stderr) == (0, "")
    return result.stdout.splitlines()


@pytest.mark.parametrize(
    "given",
    [(), ("ApiKeySecretArn",), ("AdminKeySecretArn",), ("ApiKeySecretArn", "AdminKeySecretArn")],
)
def test_the_container_gets_a_file_variable_for_each_given_key(
    tmp_path: Path, given: tuple[str, ...]
) -> None:
    args = docker_run_arguments(
        tmp_path,
        API_KEY_ARN if "ApiKeySecretArn" in given else "",
        ADMIN_KEY_ARN if "AdminKeySecretArn" in given else "",
    )
    assert args[:2] == ["run", "--rm"]
    mount = args.index(f"{KEY_DIR}:{MOUNTED_KEYS}:ro")
    assert args[mount - 1] == "-v"
    variables = {a.partition("=")[0]: a.partition("=")[2] for a in args if a.startswith("HOUSING_")}
    for parameter, _, _, file, variable in KEYS:
        if parameter in given:
            assert variables[variable] == f"{MOUNTED_KEYS}/{file}"
            assert args[args.index(f"{variable}={MOUNTED_KEYS}/{file}") - 1] == "-e"
        else:
            assert variable not in variables
    # Never a key's value in the environment (docker inspect, /proc/<pid>/environ).
    assert "HOUSING_API_KEY" not in variables and "HOUSING_ADMIN_KEY" not in variables
