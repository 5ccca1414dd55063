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


def _sam(mode: str) -> dict[str, Any]:
    raw = yaml.load(TEMPLATE.read_text(), Loader=_Loader)
    for resource in raw["Resources"].values():  # what `sam build && sam package` fill in
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function" and props.get("PackageType") == "Image":
            props["ImageUri"] = "123456789012.dkr.ecr.us-east-1.amazonaws.com/faasinfer-infer:latest"
        elif resource["Type"] == "AWS::Serverless::Function":
            props["CodeUri"] = "s3://faasinfer-artifacts/code.zip"
    return transform(raw, {"KafkaMode": mode}, _AwsManagedPolicies())  # type: ignore[arg-type]


def test_cfn_lint_reports_no_errors() -> None:
    matches = [m for m in lint_file(TEMPLATE) if m.rule.id.startswith("E")]
    assert matches == [], "\n".join(str(m) for m in matches)


@pytest.mark.parametrize(("mode", "source_type"), [("MSK", "MSK"), ("SelfManaged", "SelfManagedKafka")])
def test_sam_translation_and_runtime_reader_agree(mode: str, source_type: str) -> None:
    active = "UseMsk" if mode == "MSK" else "UseSelfManaged"
    resources = {name: r for name, r in _sam(mode)["Resources"].items() if r.get("Condition", active) == active}
    lambdas = {name: r for name, r in resources.items() if r["Type"] == "AWS::Lambda::Function"}
    mappings = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    ours = load_template(TEMPLATE, {"KafkaMode": mode})

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
            assert mapping[group_config]["ConsumerGroupId"] == source.group_id
    routes = {(r.method, r.path) for f in ours.functions for r in f.routes}
    api = next(r for r in resources.values() if r["Type"] == "AWS::ApiGatewayV2::Api")
    paths = api["Properties"]["Body"]["paths"]
    assert {(method.upper(), path) for path, methods in paths.items() for method in methods} == routes


def test_infer_is_a_container_image_with_room_for_torch() -> None:
    resources = _sam("MSK")["Resources"]
    infer = resources["InferMskFunction"]["Properties"]
    assert infer["PackageType"] == "Image" and infer["MemorySize"] >= 3008 and infer["Timeout"] >= 300
    assert "Runtime" not in infer and "Handler" not in infer
