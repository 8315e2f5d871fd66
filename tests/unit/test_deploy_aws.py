"""deploy/aws/, checked offline: cfn-lint (informational checks included) with the project's own
rules (deploy/aws/rules/), proof that each rule fails on a broken copy, the timing relations
between the template's numbers and the server's, and the instances and their container. The
template's Rules and the load balancer's HTTPS, logs and egress are in test_deploy_aws_https.py;
the API keys (the user data's handling run against stub `aws` and `docker` commands) in
test_deploy_aws_keys.py; checkov's run in test_deploy_checkov.py."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from app.compose import create_app
from app.settings import Settings
from tests.support.cfn import (
    TEMPLATE,
    Doc,
    cfn_lint,
    conditional_policy,
    default,
    props,
    shell_int,
    template,
    user_data,
)

# Worst-case start of an instance before it is ready: boot and cloud-init (about 2 minutes), the
# pull of a multi-GB Neuron image (about 5), the artifact copy, model load and the warm-up of
# every batch size (about 1), plus margin.
STARTUP_ALLOWANCE_S = 600
# One server process on one CPU core of the 2-core CI VM, single-record requests at c64 (`make
# bench`). The scaling target's default is this capacity x 60 s x 0.5 headroom.
MEASURED_RPS = 4_800
HEADROOM = 0.5


def routes() -> set[str]:
    app = create_app(Settings(artifacts=Path("artifacts"), device="cpu"))
    return set(app.openapi()["paths"])


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
