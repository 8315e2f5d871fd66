"""deploy/aws/'s API and admin keys, checked offline: the optional Secrets Manager ARNs, the
instance role's policy for each, the Rule that one secret cannot be both keys, the user data's
fetch of each key (its shell functions run against stub `aws` commands: the file's mode, the
failed boot) and the container's *_FILE variables (housing-run run against a stub `docker`)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.cfn import CERTIFICATE, conditional_policy, props, refused, template, user_data

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
