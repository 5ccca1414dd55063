"""The template reader: one source of truth for what runs locally."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from runtime.template import Unresolved, _Loader, _Resolver, load_template

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


def test_self_managed_mode_is_the_local_default() -> None:
    template = load_template(TEMPLATE)
    names = {f.name for f in template.functions}
    assert names == {
        "UploadFunction",
        "QueryFunction",
        "InferSelfManagedFunction",
        "CollectSelfManagedFunction",
        "SweeperFunction",
    }
    [schedule] = template.function("SweeperFunction").schedules
    assert schedule.interval_s == 60.0
    infer = template.function("InferSelfManagedFunction")
    [source] = infer.kafka
    assert (source.kind, source.topic, source.batch_size, source.window_s) == (
        "SelfManagedKafka",
        "inference-request",
        16,
        0.0,
    )
    assert source.starting_position == "TRIM_HORIZON" and source.group_id == "faasinfer-infer"
    assert infer.handler == "functions.infer.app.handler" and infer.local_workers == "auto"
    assert infer.env["INFER_MODEL"] == "efficientnet_lite0" and infer.timeout_s == 300


def test_msk_mode_and_parameter_overrides_flow_into_events_and_env() -> None:
    template = load_template(
        TEMPLATE,
        {
            "KafkaMode": "MSK",
            "InferBatchSize": "3",
            "RequestTopic": "req-x",
            "KafkaBootstrapServers": "k1:9092,k2:9092",
            "MskClusterArn": "arn:aws:kafka:eu-west-1:123456789012:cluster/c/u-1",
        },
    )
    infer = template.function("InferMskFunction")
    [source] = infer.kafka
    assert source.kind == "MSK" and source.batch_size == 3 and source.topic == "req-x"
    assert source.stream_arn == "arn:aws:kafka:eu-west-1:123456789012:cluster/c/u-1"
    assert infer.env["REQUEST_TOPIC"] == "req-x" and infer.env["KAFKA_BOOTSTRAP_SERVERS"] == "k1:9092,k2:9092"
    assert "BLOB_URL" not in infer.env  # refers to a cloud resource: unset locally, the default applies


def test_http_routes_come_from_the_events() -> None:
    template = load_template(TEMPLATE)
    routes = {(r.method, r.path): f.name for f in template.functions for r in f.routes}
    assert routes[("POST", "/image")] == "UploadFunction"
    assert routes[("GET", "/result")] == "QueryFunction"


def test_unknown_parameter_override_is_refused() -> None:
    with pytest.raises(KeyError, match="NoSuchParameter"):
        load_template(TEMPLATE, {"NoSuchParameter": "1"})


def test_intrinsics_resolve_or_stay_unresolved() -> None:
    doc = yaml.load(
        """
a: !Sub "${P}-${AWS::Region}"
b: !Sub "${SomeBucket}/x"
c: !If [IsOn, yes-value, no-value]
d: !Join [",", [!Ref P, lit]]
e: !GetAtt Thing.Arn
f: !Select [0, [x]]
""",
        Loader=_Loader,
    )
    r = _Resolver({"P": "p", "Flag": "on"}, {"IsOn": {"Fn::Equals": [{"Ref": "Flag"}, "on"]}})
    assert r.value(doc["a"]) == "p-local"
    assert isinstance(r.value(doc["b"]), Unresolved)
    assert r.value(doc["c"]) == "yes-value"
    assert r.value(doc["d"]) == "p,lit"
    assert isinstance(r.value(doc["e"]), Unresolved) and isinstance(r.value(doc["f"]), Unresolved)
