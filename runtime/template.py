"""Read ``template.yaml`` (intrinsics resolved against Parameters) into the specs the local runtime runs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

PSEUDO = {
    "AWS::Region": "local",
    "AWS::AccountId": "000000000000",
    "AWS::StackName": "faasinfer-local",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::NoValue": None,
}


class Unresolved:
    """A value only the cloud knows (a resource's Ref or attribute); locally it is left unset."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __repr__(self) -> str:
        return f"Unresolved({self.what})"


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps CloudFormation short-form tags as their long form (``!Ref x`` → ``{"Ref": x}``)."""


def _construct_tag(loader: _Loader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    if suffix == "Condition":
        return {"Condition": value}
    return {f"Fn::{suffix}": value}


_Loader.add_multi_constructor("!", _construct_tag)


@dataclass(frozen=True)
class HttpRoute:
    method: str
    path: str


@dataclass(frozen=True)
class KafkaSource:
    event_name: str
    kind: Literal["MSK", "SelfManagedKafka"]
    topic: str
    batch_size: int
    window_s: float
    starting_position: str
    group_id: str
    bootstrap_servers: tuple[str, ...] = ()
    stream_arn: str | None = None
    max_retries: int | None = None  # MaximumRetryAttempts; -1: until the batch succeeds
    bisect_on_error: bool = False
    max_record_age_s: int | None = None  # MaximumRecordAgeInSeconds; -1 or None: records never expire
    on_failure: str | None = None  # DestinationConfig.OnFailure.Destination: kafka://topic, or an SQS/SNS ARN


@dataclass(frozen=True)
class ScheduleSource:
    event_name: str
    expression: str  # "rate(1 minute)" or "cron(...)"

    @property
    def interval_s(self) -> float | None:
        """Seconds between invocations of a ``rate()`` expression; ``None`` for cron (not emulated)."""
        match = re.fullmatch(r"rate\((\d+) (second|minute|hour|day)s?\)", self.expression.strip())
        if match is None:
            return None
        unit = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}[match.group(2)]
        return float(match.group(1)) * unit


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    handler: str  # "package.module.attr"
    env: dict[str, str] = field(default_factory=dict)
    timeout_s: int = 3
    memory_mb: int = 128
    routes: tuple[HttpRoute, ...] = ()
    kafka: tuple[KafkaSource, ...] = ()
    schedules: tuple[ScheduleSource, ...] = ()
    local_workers: str | None = None  # Metadata.LocalWorkers: "auto" or a count
    runtime: str = "python3.11"  # Runtime, or "image" for PackageType: Image
    env_parameters: dict[str, str] = field(default_factory=dict)  # env var -> the Parameter it is a !Ref of

    @property
    def module(self) -> str:
        return self.handler.rsplit(".", 1)[0].replace("/", ".")

    @property
    def attribute(self) -> str:
        return self.handler.rsplit(".", 1)[1]


@dataclass(frozen=True)
class Template:
    parameters: dict[str, str]
    functions: tuple[FunctionSpec, ...]

    def only(self, names: list[str]) -> Template:
        """The same template restricted to some functions (unknown names are an error)."""
        return Template(self.parameters, tuple(self.function(name) for name in names))

    def function(self, name: str) -> FunctionSpec:
        for spec in self.functions:
            if spec.name == name:
                return spec
        raise KeyError(f"no function {name!r} in the template (have: {', '.join(f.name for f in self.functions)})")


class _Resolver:
    def __init__(self, parameters: dict[str, str], conditions: dict[str, Any]) -> None:
        self.parameters = parameters
        self._conditions = conditions
        self._evaluated: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._evaluated:
            self._evaluated[name] = bool(self.value(self._conditions[name]))
        return self._evaluated[name]

    def ref(self, name: str) -> Any:
        if name in self.parameters:
            return self.parameters[name]
        if name in PSEUDO:
            return PSEUDO[name]
        return Unresolved(f"Ref {name}")

    def sub(self, text: str) -> Any:
        missing: list[str] = []

        def replace(match: re.Match[str]) -> str:
            value = self.ref(match.group(1))
            if isinstance(value, Unresolved) or value is None:
                missing.append(match.group(1))
                return ""
            return str(value)

        out = re.sub(r"\$\{([^}!]+)\}", replace, text)
        return Unresolved(f"Sub {text}") if missing else out

    def value(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.value(v) for v in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::Sub":
                return self.sub(arg) if isinstance(arg, str) else Unresolved("Sub with variables")
            if key == "Fn::Equals":
                a, b = self.value(arg)
                return str(a) == str(b)
            if key == "Fn::Not":
                return not self.value(arg[0])
            if key == "Fn::And":
                return all(self.value(v) for v in arg)
            if key == "Fn::Or":
                return any(self.value(v) for v in arg)
            if key == "Fn::If":
                name, yes, no = arg
                return self.value(yes if self.condition(name) else no)
            if key == "Fn::Split":
                sep, text = arg[0], self.value(arg[1])
                return text.split(sep) if isinstance(text, str) else Unresolved("Split")
            if key == "Fn::Join":
                sep, parts = arg[0], self.value(arg[1])
                if any(isinstance(p, Unresolved) for p in parts):
                    return Unresolved("Join")
                return sep.join(str(p) for p in parts)
            if key.startswith("Fn::"):
                return Unresolved(key)
        return {k: self.value(v) for k, v in node.items()}


def load_template(path: str | Path, overrides: dict[str, str] | None = None) -> Template:
    raw = yaml.load(Path(path).read_text(), Loader=_Loader)
    parameters = {name: str(p.get("Default", "")) for name, p in (raw.get("Parameters") or {}).items()}
    unknown = set(overrides or {}) - set(parameters)
    if unknown:
        raise KeyError(f"unknown template parameters: {', '.join(sorted(unknown))}")
    parameters.update(overrides or {})
    resolver = _Resolver(parameters, raw.get("Conditions") or {})
    globals_ = (raw.get("Globals") or {}).get("Function") or {}
    functions = []
    for name, resource in (raw.get("Resources") or {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        if "Condition" in resource and not resolver.condition(resource["Condition"]):
            continue
        functions.append(_function(name, resource, globals_, resolver))
    return Template(parameters=parameters, functions=tuple(functions))


def _function(name: str, resource: dict[str, Any], globals_: dict[str, Any], r: _Resolver) -> FunctionSpec:
    props = resource.get("Properties") or {}
    global_env = ((globals_.get("Environment") or {}).get("Variables")) or {}
    own_env = ((props.get("Environment") or {}).get("Variables")) or {}
    env = {}
    env_parameters = {
        key: raw["Ref"]
        for key, raw in {**global_env, **own_env}.items()
        if isinstance(raw, dict) and set(raw) == {"Ref"} and raw["Ref"] in r.parameters
    }
    for key, raw_value in {**global_env, **own_env}.items():
        value = r.value(raw_value)
        if value is not None and not isinstance(value, Unresolved):  # "" stays "", as AWS passes it
            env[key] = str(value)
    handler = props.get("Handler") or ((props.get("ImageConfig") or {}).get("Command") or [None])[0]
    if not handler:
        raise ValueError(f"function {name} has neither Handler nor ImageConfig.Command")
    routes: list[HttpRoute] = []
    kafka: list[KafkaSource] = []
    schedules: list[ScheduleSource] = []
    for event_name, event in (props.get("Events") or {}).items():
        kind = event.get("Type")
        ep = r.value(event.get("Properties") or {})
        if kind in ("HttpApi", "Api"):
            routes.append(HttpRoute(str(ep.get("Method", "ANY")).upper(), str(ep.get("Path", "/"))))
        elif kind in ("MSK", "SelfManagedKafka"):
            kafka.append(_kafka_source(event_name, kind, ep))
        elif kind in ("Schedule", "ScheduleV2"):
            schedules.append(ScheduleSource(event_name, str(ep.get("Schedule") or ep.get("ScheduleExpression"))))
    metadata = resource.get("Metadata") or {}
    return FunctionSpec(
        name=name,
        handler=str(handler),
        env=env,
        timeout_s=int(r.value(props.get("Timeout", globals_.get("Timeout", 3)))),
        memory_mb=int(r.value(props.get("MemorySize", globals_.get("MemorySize", 128)))),
        routes=tuple(routes),
        kafka=tuple(kafka),
        schedules=tuple(schedules),
        local_workers=None if metadata.get("LocalWorkers") is None else str(metadata["LocalWorkers"]),
        runtime="image" if props.get("PackageType") == "Image" else str(props.get("Runtime", globals_.get("Runtime"))),
        env_parameters=env_parameters,
    )


def _kafka_source(event_name: str, kind: Literal["MSK", "SelfManagedKafka"], ep: dict[str, Any]) -> KafkaSource:
    topics = ep.get("Topics") or []
    if len(topics) != 1:
        raise ValueError(f"event {event_name}: a Kafka event source has exactly one topic, got {topics}")
    group = ep.get("ConsumerGroupId") or (ep.get("AmazonManagedKafkaEventSourceConfig") or {}).get("ConsumerGroupId")
    servers = ep.get("KafkaBootstrapServers") or []
    retries = ep.get("MaximumRetryAttempts")
    age = ep.get("MaximumRecordAgeInSeconds")
    destination = ((ep.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
    return KafkaSource(
        event_name=event_name,
        kind=kind,
        topic=str(topics[0]),
        batch_size=int(ep.get("BatchSize", 100)),
        window_s=float(ep.get("MaximumBatchingWindowInSeconds", 0 if kind == "MSK" else 0.5)),
        starting_position=str(ep.get("StartingPosition", "LATEST")),
        group_id=str(group or event_name),
        bootstrap_servers=tuple(str(s) for s in servers) if isinstance(servers, list) else (),
        stream_arn=None if kind != "MSK" or isinstance(ep.get("Stream"), Unresolved) else str(ep.get("Stream")) or None,
        max_retries=None if retries is None else int(retries),
        bisect_on_error=bool(ep.get("BisectBatchOnFunctionError", False)),
        max_record_age_s=None if age is None else int(age),
        on_failure=None if destination is None or isinstance(destination, Unresolved) else str(destination),
    )
