"""template.yaml is deployable: it transforms with the real SAM translator and passes cfn-lint, and the
local runtime reads the same functions, handlers and event sources from it that SAM deploys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from cfnlint.api import lint_file
from samtranslator.translator.transform import transform

from runtime.template import _Loader, load_template

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"


class _AwsManagedPolicies:
    """Resolves AWS managed policy names to their ARNs, as SAM's loader does with IAM."""

    def load(self) -> dict[str, str]:
        return {
            name: f"arn:aws:iam::aws:policy/service-role/{name}"
            for name in ("AWSLambdaBasicExecutionRole", "AWSLambdaMSKExecutionRole")
        }


@pytest.fixture(autouse=True)
def _region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


DEPLOY = {
    "KafkaBootstrapServers": "b-1.kafka.example:9096,b-2.kafka.example:9096",
    "KafkaSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:AmazonMSK_faasinfer",
    "MskClusterArn": "arn:aws:kafka:us-east-1:123456789012:cluster/faasinfer/0b7f3a52-3d1c-4b8e-9a57-6f2e1c9d4b10-3",
}


def _sam(mode: str, **parameters: str) -> dict[str, Any]:
    raw = yaml.load(TEMPLATE.read_text(), Loader=_Loader)
    for resource in raw["Resources"].values():  # what `sam build && sam package` fill in
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function" and props.get("PackageType") == "Image":
            props["ImageUri"] = "123456789012.dkr.ecr.us-east-1.amazonaws.com/faasinfer-infer:latest"
        elif resource["Type"] == "AWS::Serverless::Function":
            props["CodeUri"] = "s3://faasinfer-artifacts/code.zip"
    values = {**DEPLOY, "KafkaMode": mode, **parameters}
    return transform(raw, values, _AwsManagedPolicies())  # type: ignore[arg-type]


def test_cfn_lint_reports_nothing() -> None:
    """What ``sam validate --lint`` runs: no errors and no warnings either."""
    matches = list(lint_file(TEMPLATE))
    assert matches == [], "\n".join(str(m) for m in matches)


@pytest.mark.parametrize(("mode", "source_type"), [("MSK", "MSK"), ("SelfManaged", "SelfManagedKafka")])
def test_sam_translation_and_runtime_reader_agree(mode: str, source_type: str) -> None:
    active = "UseMsk" if mode == "MSK" else "UseSelfManaged"
    resources = {name: r for name, r in _sam(mode)["Resources"].items() if r.get("Condition", active) == active}
    lambdas = {name: r for name, r in resources.items() if r["Type"] == "AWS::Lambda::Function"}
    mappings = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    ours = load_template(TEMPLATE, {**DEPLOY, "KafkaMode": mode})

    assert set(lambdas) == {f.name for f in ours.functions}
    for spec in ours.functions:
        props = lambdas[spec.name]["Properties"]
        assert props.get("Handler", (props.get("ImageConfig") or {}).get("Command", [None])[0]) == spec.handler
        assert props["Timeout"] == spec.timeout_s and props["MemorySize"] == spec.memory_mb
    by_function = {m["FunctionName"]["Ref"]: m for m in mappings}
    for spec in ours.functions:
        for source in spec.kafka:
            mapping = by_function[spec.name]
            assert source.kind == source_type
            assert mapping["Topics"] == [{"Ref": "RequestTopic"} if "Infer" in spec.name else {"Ref": "ResultTopic"}]
            assert mapping["StartingPosition"] == source.starting_position
            group_config = (
                "AmazonManagedKafkaEventSourceConfig" if mode == "MSK" else "SelfManagedKafkaEventSourceConfig"
            )
            group = "InferConsumerGroup" if "Infer" in spec.name else "CollectConsumerGroup"
            assert mapping[group_config]["ConsumerGroupId"] == {"Ref": group}
            assert source.group_id == ("faasinfer-infer" if "Infer" in spec.name else "faasinfer-collect")
    routes = {(r.method, r.path) for f in ours.functions for r in f.routes}
    api = next(r for r in resources.values() if r["Type"] == "AWS::ApiGatewayV2::Api")
    paths = api["Properties"]["Body"]["paths"]
    assert {(method.upper(), path) for path, methods in paths.items() for method in methods} == routes


def test_infer_is_a_container_image_with_room_for_torch() -> None:
    resources = _sam("MSK")["Resources"]
    infer = resources["InferMskFunction"]["Properties"]
    assert infer["PackageType"] == "Image" and infer["MemorySize"] >= 3008 and infer["Timeout"] >= 300
    assert "Runtime" not in infer and "Handler" not in infer


KAFKA_FUNCTIONS = ("UploadFunction", "InferMskFunction", "CollectMskFunction", "SweeperFunction")


def _role_policies(resources: dict[str, Any], function: str) -> list[Any]:
    return list(resources[f"{function}Role"]["Properties"].get("ManagedPolicyArns", []))


@pytest.mark.parametrize(
    ("auth", "policy"), [("MSK_IAM", "MskIamClientPolicy"), ("SASL_SCRAM_512", "KafkaSecretPolicy")]
)
def test_every_kafka_client_role_gets_what_its_auth_mode_needs(auth: str, policy: str) -> None:
    resources = _sam("MSK", KafkaAuth=auth)["Resources"]
    for function in KAFKA_FUNCTIONS:
        chosen = [p["Fn::If"][1] for p in _role_policies(resources, function) if isinstance(p, dict) and "Fn::If" in p]
        assert {"Ref": policy} in chosen, function
    assert resources[policy]["Condition"] == ("UseMskIam" if auth == "MSK_IAM" else "UseScram")
    assert {"Ref": "KafkaSecretPolicy"} not in _role_policies(resources, "QueryFunction")


def test_functions_join_the_vpc_when_subnets_are_given() -> None:
    resources = _sam("MSK", SubnetIds="subnet-a,subnet-b", SecurityGroupIds="sg-1")["Resources"]
    for function in (*KAFKA_FUNCTIONS, "QueryFunction"):
        vpc = resources[function]["Properties"]["VpcConfig"]["Fn::If"]
        assert vpc[0] == "HasVpc" and vpc[1] == {
            "SubnetIds": {"Ref": "SubnetIds"},
            "SecurityGroupIds": {"Ref": "SecurityGroupIds"},
        }


def test_event_sources_retry_then_write_failed_records_to_the_dlq_topic() -> None:
    for mode in ("MSK", "SelfManaged"):
        mappings = [
            r["Properties"] for r in _sam(mode)["Resources"].values() if r["Type"] == "AWS::Lambda::EventSourceMapping"
        ]
        assert len(mappings) == 4  # both modes' functions exist in the translation; conditions pick two
        for mapping in mappings:
            assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::Sub": "kafka://${DlqTopic}"}
            assert mapping["MaximumRetryAttempts"] == {"Ref": "KafkaMaxRetries"}
            assert mapping["BisectBatchOnFunctionError"] is True and "ProvisionedPollerConfig" in mapping


def test_deploy_time_rules_name_the_missing_parameter() -> None:
    rules = yaml.load(TEMPLATE.read_text(), Loader=_Loader)["Rules"]
    described = " ".join(a["AssertDescription"] for rule in rules.values() for a in rule["Assertions"])
    for needed in ("KafkaSecretArn", "MskClusterArn", "KafkaMode MSK", "SASL_SCRAM_512"):
        assert needed in described
    assert "Default" not in yaml.load(TEMPLATE.read_text(), Loader=_Loader)["Parameters"]["KafkaBootstrapServers"]
