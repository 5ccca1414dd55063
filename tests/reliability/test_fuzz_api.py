"""Property-based fuzzing of the HTTP API from its own OpenAPI document, on the running local stack."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings


def test_no_generated_input_makes_the_server_fail(local_simulation: str) -> None:
    schema = schemathesis.openapi.from_url(f"{local_simulation}/openapi.json")
    tried: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: schemathesis.Case) -> None:
            response = case.call(timeout=30)
            tried[case.operation.label] = tried.get(case.operation.label, 0) + 1
            assert response.status_code < 500, (case.as_curl_command(), response.text)
            if response.status_code >= 400:
                assert "error" in response.json(), response.text  # every refusal says why, as JSON

        check()
    assert len(tried) == 9 and sum(tried.values()) >= 180, tried  # every documented operation was exercised
