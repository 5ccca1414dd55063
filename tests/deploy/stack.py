"""template.yaml as a stack would hold it: translated by the real SAM translator with given parameter values, then
what CloudFormation does next, as far as the deploy tests look - conditions evaluated, resources whose condition is
false left out, ``Fn::If`` / ``Ref`` / ``Fn::Sub`` / ``Fn::Select`` / ``Fn::Join`` / ``Fn::Split`` resolved
(another resource's ``Ref`` or attribute stands as ``<Name>`` / ``<Name.Attr>``), and the Rules checked.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from runtime.template import _Loader
from tests.deploy.build import tools_python

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
PSEUDO = {
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::StackName": "faasinfer",
    "AWS::URLSuffix": "amazonaws.com",
}
# What a deployment passes whatever the mode (the Rules demand them), as `sam deploy --parameter-overrides` would.
DEPLOY = {
    "KafkaBootstrapServers": "b-1.kafka.example:9096,b-2.kafka.example:9096",
    "KafkaSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:AmazonMSK_faasinfer",
    "KafkaSecretKmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/4b1f3c2a-9d8e-4f7a-b6c5-1e2d3f4a5b6c",
    "MskClusterArn": "arn:aws:kafka:us-east-1:123456789012:cluster/faasinfer/0b7f3a52-3d1c-4b8e-9a57-6f2e1c9d4b10-3",
}
VPC = {"SubnetIds": "subnet-0a1b2c3d,subnet-4e5f6a7b", "SecurityGroupIds": "sg-0c1d2e3f"}


class _NoValue:
    """``AWS::NoValue``: the property or list item it stands for is left out."""


NO_VALUE = _NoValue()


def raw_template() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(TEMPLATE.read_text(), Loader=_Loader)
    return loaded


def translate(parameters: dict[str, str]) -> dict[str, Any]:
    """The SAM translation for these parameter values, with the code locations `sam build && sam package` fill in.
    Needs AWS_DEFAULT_REGION (the translator's own ARNs)."""
    raw = raw_template()
    for resource in raw["Resources"].values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function" and props.get("PackageType") == "Image":
            props["ImageUri"] = "123456789012.dkr.ecr.us-east-1.amazonaws.com/faasinfer-infer-torch:latest"
        elif resource["Type"] == "AWS::Serverless::Function":
            props["CodeUri"] = "s3://faasinfer-artifacts/code.zip"
    return copy.deepcopy(_translated(json.dumps({"template": raw, "parameters": parameters}, sort_keys=True)))


@lru_cache(maxsize=64)
def _translated(given: str) -> dict[str, Any]:
    """The real SAM translator, run in the build tools' venv (tests/tools/sam_transform.py)."""
    done = subprocess.run(
        [str(tools_python()), "-m", "tests.tools.sam_transform"], input=given, capture_output=True, text=True,
        cwd=ROOT, env={**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")},
        check=False, timeout=120,
    )  # fmt: skip
    if done.returncode != 0:
        raise AssertionError(f"the SAM translator refused the template: {done.stderr.strip()[-2000:]}")
    translated: dict[str, Any] = json.loads(done.stdout)
    return translated


@dataclass
class Stack:
    """A (translated) template with parameter values, evaluated as CloudFormation would."""

    template: dict[str, Any]
    given: dict[str, str]
    parameters: dict[str, Any] = field(init=False)
    _conditions: dict[str, bool] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.parameters = {}
        for name, spec in self.template.get("Parameters", {}).items():
            value = str(self.given.get(name, spec.get("Default", "")))
            self.parameters[name] = value.split(",") if spec["Type"] == "CommaDelimitedList" else value

    @classmethod
    def deployed(cls, parameters: dict[str, str]) -> Stack:
        return cls(translate(parameters), parameters)

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = bool(self.resolve(self.template["Conditions"][name]))
        return self._conditions[name]

    def resources(self) -> dict[str, dict[str, Any]]:
        """The resources this stack creates, resolved."""
        return {
            name: self.resolve(copy.deepcopy(resource))
            for name, resource in self.template["Resources"].items()
            if "Condition" not in resource or self.condition(resource["Condition"])
        }

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {name: r for name, r in self.resources().items() if r["Type"] == kind}

    def broken_rules(self) -> list[str]:
        """The AssertDescription of every Rule assertion these parameter values fail."""
        broken = []
        for rule in self.template.get("Rules", {}).values():
            if "RuleCondition" in rule and not self.resolve(rule["RuleCondition"]):
                continue
            broken += [a["AssertDescription"] for a in rule["Assertions"] if not self.resolve(a["Assert"])]
        return broken

    def ref(self, name: str) -> Any:
        if name in self.parameters:
            return self.parameters[name]
        if name == "AWS::NoValue":
            return NO_VALUE
        return PSEUDO.get(name, f"<{name}>")

    def sub(self, text: str, variables: dict[str, Any]) -> str:
        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            return str(self.ref(name)) if "." not in name else f"<{name}>"

        return re.sub(r"\$\{([^}!]+)\}", value, text)

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self.resolve(item) for item in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Condition" and isinstance(arg, str):
                return self.condition(arg)
            if key == "Fn::If":
                name, yes, no = arg
                return self.resolve(yes if self.condition(name) else no)
            if key == "Fn::Equals":
                a, b = (self.resolve(v) for v in arg)
                return str(a) == str(b)
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(v) for v in arg)
            if key == "Fn::Or":
                return any(self.resolve(v) for v in arg)
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))
                return self.sub(text, variables)
            if key == "Fn::Select":
                index, items = self.resolve(arg[0]), self.resolve(arg[1])
                return items[int(index)]
            if key == "Fn::Join":
                return str(arg[0]).join(str(v) for v in self.resolve(arg[1]))
            if key == "Fn::Split":
                return str(self.resolve(arg[1])).split(arg[0])
            if key == "Fn::GetAtt":
                return f"<{'.'.join(arg) if isinstance(arg, list) else arg}>"
        return {k: v for k, v in ((k, self.resolve(v)) for k, v in node.items()) if v is not NO_VALUE}


def role_actions(stack: Stack, function: str) -> dict[str, list[dict[str, Any]]]:
    """Every statement the function's role grants (inline and our managed policies), by action."""
    resources = stack.resources()
    role = resources[f"{function}Role"]["Properties"]
    documents = [p["PolicyDocument"] for p in role.get("Policies", [])]
    for arn in role.get("ManagedPolicyArns", []):
        name = arn[1:-1] if arn.startswith("<") else None
        if name in resources:
            documents.append(resources[name]["Properties"]["PolicyDocument"])
    granted: dict[str, list[dict[str, Any]]] = {}
    for document in documents:
        for statement in document["Statement"]:
            listed = statement["Action"]
            for action in [listed] if isinstance(listed, str) else listed:
                granted.setdefault(action, []).append(statement)
    return granted


def invoked(function_name: str) -> str:
    """The function an event source mapping's FunctionName names: its "live" alias (AutoPublishAlias) or itself."""
    return function_name.strip("<>").removesuffix("Aliaslive")
