"""template.yaml is deployable: it transforms with the real SAM translator and passes cfn-lint, the local runtime
reads the same functions, handlers and event sources from it that SAM deploys, and its defaults are the ones AWS
would have us choose (runtime, pollers, database connections)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from runtime.template import load_template
from tests.deploy.build import tools_python
from tests.deploy.stack import DEPLOY, TEMPLATE, VPC, Stack, invoked, raw_template

ROOT = Path(__file__).resolve().parent.parent
MAKEFILE = (ROOT / "functions" / "Makefile").read_text()
INFER_PARAMETERS = {
    "INFER_MODEL": "InferModel",
    "INFER_WEIGHTS": "InferWeights",
    "INFER_BACKEND": "InferBackend",
    "INFER_PRECISION": "InferPrecision",
}


@pytest.fixture(autouse=True)
def _region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def _functions(kind: str | None = None) -> dict[str, dict[str, Any]]:
    """The template's functions as written; kind "zip" or "image" picks one package type."""
    functions = {n: r for n, r in raw_template()["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
    if kind is None:
        return functions
    return {n: r for n, r in functions.items() if (r["Properties"].get("PackageType") == "Image") == (kind == "image")}


@pytest.mark.usefixtures("build_tools")  # cfn-lint from the build tools' venv
def test_cfn_lint_reports_nothing() -> None:
    """What ``sam validate --lint`` runs: no errors and no warnings either."""
    lint = tools_python().with_name("cfn-lint")
    done = subprocess.run([str(lint), str(TEMPLATE)], capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr


def test_sections_keep_their_order() -> None:
    sections = [key for key in raw_template() if key not in ("AWSTemplateFormatVersion", "Transform", "Description")]
    assert sections == ["Parameters", "Rules", "Conditions", "Globals", "Resources", "Outputs"]


@pytest.mark.usefixtures("build_tools")
@pytest.mark.parametrize(
    ("parameters", "source_type"),
    [
        ({"KafkaMode": "MSK"}, "MSK"),
        ({"KafkaMode": "SelfManaged"}, "SelfManagedKafka"),
        ({"KafkaMode": "SelfManaged", **VPC}, "SelfManagedKafka"),
        ({"KafkaMode": "SelfManaged", "InferBackend": "torch"}, "SelfManagedKafka"),
    ],
)
def test_sam_translation_and_runtime_reader_agree(parameters: dict[str, str], source_type: str) -> None:
    stack = Stack.deployed({**DEPLOY, **parameters})
    lambdas = stack.of_type("AWS::Lambda::Function")
    mappings = [r["Properties"] for r in stack.of_type("AWS::Lambda::EventSourceMapping").values()]
    ours = load_template(TEMPLATE, {**DEPLOY, **parameters})

    assert set(lambdas) == {f.name for f in ours.functions}
    assert len([f for f in ours.functions if f.kafka]) == 2  # one infer, one collect
    for spec in ours.functions:
        props = lambdas[spec.name]["Properties"]
        assert props.get("Handler", (props.get("ImageConfig") or {}).get("Command", [None])[0]) == spec.handler
        assert props["Timeout"] == spec.timeout_s and props["MemorySize"] == spec.memory_mb
    by_function = {invoked(m["FunctionName"]): m for m in mappings}
    for spec in ours.functions:
        for source in spec.kafka:
            mapping = by_function[spec.name]
            infer = spec.name.startswith("Infer")
            assert source.kind == source_type
            assert mapping["Topics"] == ["inference-request" if infer else "inference-result"] == [source.topic]
            assert mapping["StartingPosition"] == source.starting_position
            group_config = (
                "AmazonManagedKafkaEventSourceConfig" if source_type == "MSK" else ("SelfManagedKafkaEventSourceConfig")
            )
            assert mapping[group_config]["ConsumerGroupId"] == source.group_id
            assert source.group_id == ("faasinfer-infer" if infer else "faasinfer-collect")
    routes = {(r.method, r.path) for f in ours.functions for r in f.routes}
    api = next(iter(stack.of_type("AWS::ApiGatewayV2::Api").values()))
    paths = api["Properties"]["Body"]["paths"]
    assert {(method.upper(), path) for path, methods in paths.items() for method in methods} == routes


def test_every_zip_function_runs_python312_and_is_built_by_the_makefile() -> None:
    """python3.12 runs on Amazon Linux 2023; python3.11 on Amazon Linux 2, past its end of life
    (https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html)."""
    zips = _functions("zip")
    assert {"UploadFunction", "QueryFunction", "InferSelfManagedFunction", "SweeperFunction"} <= set(zips)
    for name, resource in zips.items():
        assert resource["Properties"]["Runtime"] == "python3.12", name
        assert resource["Metadata"]["BuildMethod"] == "makefile", name
        assert re.search(rf"^build-\S.*\bbuild-{name}\b|^build-{name}\b", MAKEFILE, re.M), f"no make target: {name}"
    assert re.search(r"^LAMBDA_PYTHON := 3\.12$", MAKEFILE, re.M)


def test_infer_is_a_zip_whose_build_receives_the_model_parameters() -> None:
    infer = {name: r for name, r in _functions("zip").items() if name.startswith("Infer")}
    assert set(infer) == {"InferMskFunction", "InferSelfManagedFunction", "InferSelfManagedVpcFunction"}
    for name, resource in infer.items():
        declared = {key: value["Ref"] for key, value in resource["Metadata"]["BuildProperties"].items()}
        # what `sam build --parameter-overrides` resolves for the build (an engine kept in S3 is not baked in)
        assert declared == {**INFER_PARAMETERS, "INFER_ENGINE_URL": "InferEngineLocation"}, name
        env = resource["Properties"]["Environment"]["Variables"]
        assert {key: env[key]["Ref"] for key in INFER_PARAMETERS} == INFER_PARAMETERS, name  # and what it runs
        assert env["INFER_ENGINE_URL"] == {"Ref": "InferEngineLocation"}, name
        assert env["INFER_ENGINE_CACHE"] == "/var/task/engines", name  # the engine the build baked in
        assert resource["Properties"]["Handler"] == "functions.infer.app.handler"


@pytest.mark.usefixtures("build_tools")
@pytest.mark.parametrize("mode", ["MSK", "SelfManaged"])
@pytest.mark.parametrize("network", [{}, VPC])
def test_the_torch_image_exists_only_for_the_torch_backend(mode: str, network: dict[str, str]) -> None:
    for backend, package in (("onnxruntime", "Zip"), ("torch", "Image")):
        stack = Stack.deployed({**DEPLOY, "KafkaMode": mode, "InferBackend": backend, **network})
        infer = {n: r for n, r in stack.of_type("AWS::Lambda::Function").items() if n.startswith("Infer")}
        assert len(infer) == 1, infer.keys()
        (props,) = (r["Properties"] for r in infer.values())
        assert props.get("PackageType", "Zip") == package
        if package == "Image":
            assert props["MemorySize"] >= 3008 and props["Timeout"] >= 300 and "Runtime" not in props


def test_sam_build_builds_the_torch_image_only_for_the_torch_backend() -> None:
    """SAM CLI builds an image function only when its Metadata names a DockerContext (else it takes ImageUri as
    built): samcli/lib/providers/sam_function_provider.py, _metadata_has_necessary_entries_for_image_function...
    Conditions it does not evaluate, so without torch the context must resolve empty for `sam build` to need no
    Docker; the image gets the model parameters as DockerBuildArgs."""
    for name, resource in _functions("image").items():
        metadata = resource["Metadata"]
        for backend, context in (("onnxruntime", ""), ("torch", ".")):
            resolved = Stack(raw_template(), {**DEPLOY, "InferBackend": backend}).resolve(metadata["DockerContext"])
            assert resolved == context, (name, backend)
        assert metadata["Dockerfile"] == "local/Dockerfile.infer"
        assert {key: value["Ref"] for key, value in metadata["DockerBuildArgs"].items()} == INFER_PARAMETERS
        uri = Stack(raw_template(), DEPLOY).resolve(resource["Properties"]["ImageUri"])
        assert re.fullmatch(r"\d{12}\.dkr\.ecr\.[\w-]+\.amazonaws\.com/[\w-]+:[\w.-]+", uri), uri


KAFKA_FUNCTIONS = ("UploadFunction", "InferMskFunction", "CollectMskFunction", "SweeperFunction")


@pytest.mark.usefixtures("build_tools")
@pytest.mark.parametrize(
    ("auth", "policy"), [("MSK_IAM", "MskIamClientPolicy"), ("SASL_SCRAM_512", "KafkaSecretPolicy")]
)
def test_every_kafka_client_role_gets_what_its_auth_mode_needs(auth: str, policy: str) -> None:
    resources = Stack.deployed({**DEPLOY, "KafkaMode": "MSK", "KafkaAuth": auth}).resources()
    for function in KAFKA_FUNCTIONS:
        assert f"<{policy}>" in resources[f"{function}Role"]["Properties"]["ManagedPolicyArns"], function
    other = "KafkaSecretPolicy" if policy == "MskIamClientPolicy" else "MskIamClientPolicy"
    assert other not in resources
    assert "<KafkaSecretPolicy>" not in resources["QueryFunctionRole"]["Properties"]["ManagedPolicyArns"]


@pytest.mark.usefixtures("build_tools")
@pytest.mark.parametrize("mode", ["MSK", "SelfManaged"])
def test_functions_join_the_vpc_when_subnets_are_given(mode: str) -> None:
    for network, expected in (({}, None), (VPC, {"SubnetIds": ["subnet-0a1b2c3d", "subnet-4e5f6a7b"]})):
        stack = Stack.deployed({**DEPLOY, "KafkaMode": mode, **network})
        for name, function in stack.of_type("AWS::Lambda::Function").items():
            vpc = function["Properties"].get("VpcConfig")
            if expected is None:
                assert vpc is None, name
            else:
                assert vpc == {**expected, "SecurityGroupIds": ["sg-0c1d2e3f"]}, name


@pytest.mark.usefixtures("build_tools")
@pytest.mark.parametrize("mode", ["MSK", "SelfManaged"])
def test_event_sources_retry_then_write_failed_records_to_the_dlq_topic(mode: str) -> None:
    mappings = Stack.deployed({**DEPLOY, "KafkaMode": mode}).of_type("AWS::Lambda::EventSourceMapping").values()
    assert len(mappings) == 2
    for mapping in (m["Properties"] for m in mappings):
        assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == "kafka://inference-dlq"
        assert mapping["MaximumRetryAttempts"] == "3"
        assert mapping["BisectBatchOnFunctionError"] is True and "ProvisionedPollerConfig" in mapping


@pytest.mark.usefixtures("build_tools")
def test_kafka_pollers_match_the_partitions_and_say_what_they_cost() -> None:
    """A partition is read by one poller at a time, so MaximumPollers above the partition count idle and below it
    leave partitions waiting; MinimumPollers run (and bill) around the clock in provisioned mode
    (https://docs.aws.amazon.com/lambda/latest/dg/kafka-scaling-modes.html)."""
    deploying = (ROOT / "docs" / "deploying.md").read_text() if (ROOT / "docs" / "deploying.md").exists() else ""
    partitions = {int(n) for n in re.findall(r"--partitions (\d+)", deploying + (ROOT / "README.md").read_text())}
    parameters = raw_template()["Parameters"]
    assert partitions == {int(parameters["KafkaMaxPollers"]["Default"])}, partitions
    assert int(parameters["KafkaMinPollers"]["Default"]) == 1
    assert "billed" in parameters["KafkaMinPollers"]["Description"]
    assert "billed" in parameters["KafkaMaxPollers"]["Description"]
    stack = Stack.deployed({**DEPLOY, "KafkaMinPollers": "2", "KafkaMaxPollers": "12"})
    for mapping in stack.of_type("AWS::Lambda::EventSourceMapping").values():
        assert mapping["Properties"]["ProvisionedPollerConfig"] == {"MinimumPollers": "2", "MaximumPollers": "12"}


@pytest.mark.usefixtures("build_tools")
def test_database_connections_are_bounded_per_environment() -> None:
    """Every execution environment opens its own pool and a frozen one keeps it: connections = environments x
    pool. A pool of 1-2 on Lambda, upload's and query's environments reservable, an optional RDS Proxy
    (https://docs.aws.amazon.com/lambda/latest/dg/services-rds.html)."""
    parameters = raw_template()["Parameters"]
    pool = parameters["DatabasePoolSize"]
    assert (pool["MinValue"], pool["MaxValue"]) == (1, 2) and pool["Default"] in (1, 2)
    assert parameters["DatabaseProxyEndpoint"]["Default"] == ""
    unreserved = Stack.deployed(DEPLOY).of_type("AWS::Lambda::Function")
    reserved = Stack.deployed(
        {**DEPLOY, "UploadReservedConcurrency": "20", "QueryReservedConcurrency": "10", "DatabasePoolSize": "1",
         "DatabaseProxyEndpoint": "faasinfer.proxy-abc.us-east-1.rds.amazonaws.com"}
    ).of_type("AWS::Lambda::Function")  # fmt: skip
    for name, count in (("UploadFunction", "20"), ("QueryFunction", "10")):
        assert "ReservedConcurrentExecutions" not in unreserved[name]["Properties"]  # 0: unreserved, not throttled
        assert reserved[name]["Properties"]["ReservedConcurrentExecutions"] == count
    for name in ("UploadFunction", "QueryFunction", "CollectSelfManagedFunction", "SweeperFunction"):
        env = reserved[name]["Properties"]["Environment"]["Variables"]
        assert env["DATABASE_POOL_SIZE"] == "1", name
        assert env["DATABASE_PROXY_ENDPOINT"] == "faasinfer.proxy-abc.us-east-1.rds.amazonaws.com", name
        assert unreserved[name]["Properties"]["Environment"]["Variables"]["DATABASE_POOL_SIZE"] == str(pool["Default"])


def test_deploy_time_rules_name_the_missing_parameter() -> None:
    rules = raw_template()["Rules"]
    described = " ".join(a["AssertDescription"] for rule in rules.values() for a in rule["Assertions"])
    for needed in ("KafkaSecretArn", "KafkaSecretKmsKeyArn", "MskClusterArn", "KafkaMode MSK", "SASL_SCRAM_512"):
        assert needed in described
    assert "Default" not in raw_template()["Parameters"]["KafkaBootstrapServers"]


@pytest.mark.usefixtures("build_tools")
def test_the_cold_path_options_are_off_by_default_and_each_reaches_what_it_configures() -> None:
    """SnapStart (zip functions, python3.12) and provisioned concurrency (upload, infer): both need published
    versions, so every zip function is invoked through its "live" alias; Lambda combines neither with the other
    (https://docs.aws.amazon.com/lambda/latest/dg/snapstart.html)."""
    default = Stack.deployed(DEPLOY)
    versions = default.of_type("AWS::Lambda::Version")
    assert len(versions) == 5  # upload, query, one infer, one collect, sweeper
    assert all(v["Properties"].get("SnapStart", {"ApplyOn": "None"}) == {"ApplyOn": "None"} for v in versions.values())
    assert all(
        "ProvisionedConcurrencyConfig" not in a["Properties"] for a in default.of_type("AWS::Lambda::Alias").values()
    )

    snap = Stack.deployed({**DEPLOY, "SnapStart": "Enabled"})
    for name, function in snap.of_type("AWS::Lambda::Function").items():
        expected = None if function["Properties"].get("PackageType") == "Image" else {"ApplyOn": "PublishedVersions"}
        assert function["Properties"].get("SnapStart") == expected, name
    assert snap.broken_rules() == []

    warm = Stack.deployed({**DEPLOY, "UploadProvisionedConcurrency": "2", "InferProvisionedConcurrency": "1"})
    provisioned = {
        name: alias["Properties"]["ProvisionedConcurrencyConfig"]["ProvisionedConcurrentExecutions"]
        for name, alias in warm.of_type("AWS::Lambda::Alias").items()
        if "ProvisionedConcurrencyConfig" in alias["Properties"]
    }
    assert provisioned == {"UploadFunctionAliaslive": "2", "InferSelfManagedFunctionAliaslive": "1"}
    both = Stack.deployed({**DEPLOY, "SnapStart": "Enabled", "InferProvisionedConcurrency": "1"})
    assert both.broken_rules() == ["SnapStart Enabled takes no provisioned concurrency (Lambda does not combine them)."]
    torch = Stack.deployed({**DEPLOY, "InferBackend": "torch", "SnapStart": "Enabled"})
    assert "SnapStart" not in torch.resources()["InferTorchSelfManagedFunction"]["Properties"]  # not for images
