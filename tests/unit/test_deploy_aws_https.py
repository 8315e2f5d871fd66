"""deploy/aws/'s load balancer, checked offline: the template's Rules evaluated as CloudFormation
does (HTTPS unless plain HTTP is asked for by name), port 80's redirect, the listener the
instance group waits for, the access logs, the log group encrypted with the stack's KMS key, and
the load balancer's egress."""

from __future__ import annotations

import re

from tests.support.cfn import CERTIFICATE, default, props, refused, template


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
