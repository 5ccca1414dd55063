"""Each Kafka mode x authentication x network, deployed as CloudFormation would: the two event sources it creates
reach the cluster the way Lambda needs, their roles may do what that needs, and the translated template lints.

Self-managed Kafka inside a VPC needs VPC_SUBNET and VPC_SECURITY_GROUP entries (URIs ``subnet:<id>``,
``security_group:<id>``) beside the SCRAM secret; an MSK event source reaches its cluster through the cluster's own
network and takes only the authentication entry:
https://docs.aws.amazon.com/lambda/latest/dg/with-kafka-cluster-network.html
https://docs.aws.amazon.com/lambda/latest/api/API_SourceAccessConfiguration.html
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from cfnlint.api import lint  # type: ignore[import-untyped]

from tests.deploy.stack import DEPLOY, VPC, Stack, invoked, role_actions

# Every combination the Rules admit: SelfManaged authenticates with SCRAM; MSK_IAM needs MSK.
AUTH_MODES = [
    ("MSK", "PLAINTEXT"),
    ("MSK", "TLS"),
    ("MSK", "SASL_SCRAM_512"),
    ("MSK", "MSK_IAM"),
    ("SelfManaged", "SASL_SCRAM_512"),
]
NETWORKS = {"public": {}, "vpc": VPC}
SCRAM = {"Type": "SASL_SCRAM_512_AUTH", "URI": DEPLOY["KafkaSecretArn"]}
IN_VPC = [
    {"Type": "VPC_SUBNET", "URI": "subnet:subnet-0a1b2c3d"},
    {"Type": "VPC_SUBNET", "URI": "subnet:subnet-4e5f6a7b"},
    {"Type": "VPC_SECURITY_GROUP", "URI": "security_group:sg-0c1d2e3f"},
]
CASES = [(mode, auth, network) for mode, auth in AUTH_MODES for network in NETWORKS]


@pytest.fixture(autouse=True)
def _region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def _parameters(mode: str, auth: str, network: str) -> dict[str, str]:
    return {**DEPLOY, "KafkaMode": mode, "KafkaAuth": auth, **NETWORKS[network]}


def _mappings(stack: Stack) -> dict[str, dict[str, Any]]:
    """The stack's event source mappings, by the function they invoke."""
    mappings = stack.of_type("AWS::Lambda::EventSourceMapping").values()
    return {invoked(m["Properties"]["FunctionName"]): m["Properties"] for m in mappings}


@pytest.mark.usefixtures("build_tools")
@pytest.mark.parametrize(("mode", "auth", "network"), CASES)
def test_event_sources_reach_the_cluster_as_lambda_needs(mode: str, auth: str, network: str) -> None:
    stack = Stack.deployed(_parameters(mode, auth, network))
    assert stack.broken_rules() == []
    mappings = _mappings(stack)
    variant = "Msk" if mode == "MSK" else "SelfManagedVpc" if network == "vpc" else "SelfManaged"
    assert sorted(mappings) == [f"Collect{variant}Function", f"Infer{variant}Function"]
    expected = [SCRAM] if auth == "SASL_SCRAM_512" else []
    if mode == "SelfManaged" and network == "vpc":
        expected += IN_VPC
    for function, mapping in mappings.items():
        assert mapping.get("SourceAccessConfigurations", []) == expected, function
        if mode == "MSK":
            assert mapping["EventSourceArn"] == DEPLOY["MskClusterArn"] and "SelfManagedEventSource" not in mapping
        else:
            servers = mapping["SelfManagedEventSource"]["Endpoints"]["KafkaBootstrapServers"]
            assert servers == DEPLOY["KafkaBootstrapServers"].split(",")


@pytest.mark.usefixtures("build_tools")
@pytest.mark.parametrize(("mode", "auth", "network"), CASES)
def test_event_source_roles_may_do_what_their_access_needs(mode: str, auth: str, network: str) -> None:
    stack = Stack.deployed(_parameters(mode, auth, network))
    for function in _mappings(stack):
        granted = role_actions(stack, function)
        secrets = [s["Resource"] for s in granted.get("secretsmanager:GetSecretValue", [])]
        decrypt = [s["Resource"] for s in granted.get("kms:Decrypt", [])]
        if auth == "SASL_SCRAM_512":
            assert DEPLOY["KafkaSecretArn"] in secrets and decrypt == [DEPLOY["KafkaSecretKmsKeyArn"]], function
        else:
            assert DEPLOY["KafkaSecretArn"] not in secrets and decrypt == [], function
        assert ("kafka-cluster:Connect" in granted) == (auth == "MSK_IAM"), function
        if mode == "MSK":  # AWS's policy for MSK event sources: describe the cluster, its network interfaces
            managed = stack.resources()[f"{function}Role"]["Properties"]["ManagedPolicyArns"]
            assert "arn:aws:iam::aws:policy/service-role/AWSLambdaMSKExecutionRole" in managed, function
        else:  # the pollers of a self-managed event source in a VPC open network interfaces in its subnets
            assert ("ec2:CreateNetworkInterface" in granted) == (network == "vpc"), function


@pytest.mark.usefixtures("build_tools")
@pytest.mark.parametrize(("mode", "auth", "network"), CASES)
def test_the_translation_for_each_mode_lints_clean(mode: str, auth: str, network: str) -> None:
    parameters = _parameters(mode, auth, network)
    translated = Stack.deployed(parameters).template
    for name, value in parameters.items():  # the linter evaluates conditions and rules on the defaults
        translated["Parameters"][name]["Default"] = value
    matches = lint(json.dumps(translated), regions=["us-east-1"])
    assert matches == [], "\n".join(str(m) for m in matches)


@pytest.mark.usefixtures("build_tools")
@pytest.mark.parametrize(
    ("parameters", "named"),
    [
        ({"KafkaMode": "SelfManaged", "KafkaAuth": "PLAINTEXT"}, "SASL_SCRAM_512"),
        ({"KafkaMode": "SelfManaged", "KafkaAuth": "MSK_IAM"}, "KafkaMode MSK"),
        ({"KafkaMode": "MSK", "KafkaAuth": "SASL_SCRAM_512", "KafkaSecretKmsKeyArn": ""}, "KafkaSecretKmsKeyArn"),
        ({"KafkaMode": "MSK", "KafkaAuth": "TLS", "MskClusterArn": ""}, "MskClusterArn"),
    ],
)
def test_rules_refuse_what_the_event_sources_could_not_use(parameters: dict[str, str], named: str) -> None:
    broken = Stack.deployed({**DEPLOY, **parameters}).broken_rules()
    assert any(named in rule for rule in broken), broken
