"""Property-based testing of the HTTP API from its own OpenAPI document, on the running local stack, with every
check schemathesis has: no server error, only documented status codes, content types and headers, bodies that
match the response schemas, invalid input refused, valid input accepted."""

from __future__ import annotations

import io

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from schemathesis import GenerationMode

from functions.common.http_edge.routes import ENDPOINTS

EXAMPLES = 100


def _image(fmt: str, size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 120, 40)).save(buffer, format=fmt)
    return buffer.getvalue()


# A schema can say "a file", not "a decodable image": schema-valid files are real images, so that "valid input is
# accepted" is a claim about the API, not about random bytes (those are in the negative cases and refused).
schemathesis.openapi.format(
    "binary", st.sampled_from([_image("JPEG", (64, 48)), _image("PNG", (32, 32)), _image("WEBP", (40, 40))])
)


def _ordered_range(case: schemathesis.Case) -> bool:
    query = case.query or {}
    return not isinstance(query.get("seqStart"), int) or query["seqStart"] <= query.get("seqEnd", query["seqStart"])


def _sendable(case: schemathesis.Case) -> bool:
    """Multipart cannot carry a null, an empty list or an empty object: such a field is sent as no field at all, which
    for an optional field (POST /classify's topk, wait) is valid input, not the violation the case meant."""
    body = case.body if isinstance(case.body, dict) else {}
    return not any(value is None or value == [] or value == {} for value in body.values())


def _checked(case: schemathesis.Case, tried: dict[tuple[str, str], int], mode: GenerationMode) -> None:
    response = case.call_and_validate(timeout=30)  # every check schemathesis has
    tried[case.operation.label, mode.value] = tried.get((case.operation.label, mode.value), 0) + 1
    if response.status_code >= 400:
        assert "error" in response.json(), response.text  # every refusal says why, as JSON


def test_the_api_behaves_as_its_document_says_for_generated_input(local_simulation: str) -> None:
    schema = schemathesis.openapi.from_url(f"{local_simulation}/openapi.json")
    tried: dict[tuple[str, str], int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        if not (operation.query or operation.body):  # one possible request: sent once, nothing to make invalid
            _checked(operation.Case(), tried, GenerationMode.POSITIVE)
            continue
        for mode in GenerationMode:
            strategy = operation.as_strategy(generation_mode=mode)
            if mode is GenerationMode.POSITIVE and operation.path == "/result":
                strategy = strategy.filter(_ordered_range)  # a rule across two parameters: OpenAPI cannot state it
            if mode is GenerationMode.NEGATIVE:
                strategy = strategy.filter(_sendable)

            @given(case=strategy)
            @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def check(case: schemathesis.Case) -> None:
                _checked(case, tried, mode)  # noqa: B023 - called within this iteration

            check()
    operations = {label for label, _ in tried}
    # Every documented operation was exercised; schemathesis leaves out the document it was loaded from.
    assert operations == {f"{e.method} {e.path}" for e in ENDPOINTS if e.documented} - {"GET /openapi.json"}, tried
    assert sum(tried.values()) >= 250, tried
