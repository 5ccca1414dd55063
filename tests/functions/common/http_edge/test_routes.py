"""One declaration of every route (``functions/common/http_edge/routes.py``): the apps, the OpenAPI document and
the template all say the same thing."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.routing import Route

from functions.common.contracts import MAX_SEQ, MAX_TOPK
from functions.common.http_edge.guards import FORM_OVERHEAD, body_limit, file_limit
from functions.common.http_edge.openapi import openapi_document
from functions.common.http_edge.routes import ENDPOINTS, endpoints, routes
from functions.common.settings import reset_settings
from functions.query.app import app as query_app
from functions.upload.app import app as upload_app
from runtime.template import load_template
from tests.helpers import apply_env

TEMPLATE = Path(__file__).resolve().parents[4] / "template.yaml"
FUNCTIONS = {"upload": "UploadFunction", "query": "QueryFunction"}
MIB = 1024 * 1024


def test_the_template_routes_exactly_the_declared_endpoints_to_their_functions() -> None:
    template = load_template(TEMPLATE)
    in_template = {(r.method, r.path): f.name for f in template.functions for r in f.routes}
    declared = {(e.method, e.path): FUNCTIONS[e.function] for e in ENDPOINTS}
    assert in_template == declared


@pytest.mark.parametrize(("name", "app"), [("upload", upload_app), ("query", query_app)])
def test_each_app_serves_exactly_its_declared_endpoints(name: str, app: object) -> None:
    served = {(m, r.path) for r in app.routes if isinstance(r, Route) for m in (r.methods or ()) if m != "HEAD"}  # type: ignore[attr-defined]
    assert served == {(e.method, e.path) for e in endpoints(name)}  # type: ignore[arg-type]


def test_an_app_without_a_handler_for_a_declared_route_does_not_start() -> None:
    with pytest.raises(RuntimeError, match="endpoints declared"):
        routes("query", {"result": lambda request: None})


def test_each_endpoint_declares_what_its_body_may_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    apply_env(monkeypatch, max_upload_bytes=str(10 * MIB), max_batch_bytes=str(5 * MIB), max_batch_files="7")
    try:
        limits = {e.name: (body_limit(e.body), file_limit(e)) for e in ENDPOINTS if e.method == "POST"}
    finally:
        reset_settings()
    one_image = (10 * MIB + FORM_OVERHEAD, 1)
    assert limits == {
        "register": (FORM_OVERHEAD, 0), "image": one_image, "classify": one_image, "images": (5 * MIB, 7),
        "upload_url": (FORM_OVERHEAD, 0), "confirm": (FORM_OVERHEAD, 0),
    }  # fmt: skip


def test_the_document_has_every_endpoint_and_the_bounds_the_models_enforce() -> None:
    document = openapi_document()
    operations = {(m.upper(), p) for p, item in document["paths"].items() for m in item}
    assert operations == {(e.method, e.path) for e in ENDPOINTS if e.documented}
    assert "/docs/swagger-ui.css" not in document["paths"]  # the docs page's own files are not operations
    result = {p["name"]: p for p in document["paths"]["/result"]["get"]["parameters"]}
    assert result["seqStart"]["schema"] == {"type": "integer", "minimum": 0, "maximum": MAX_SEQ}
    assert result["seqEnd"]["required"] and result["uuid"]["schema"] == {"type": "string", "format": "uuid"}
    form = document["paths"]["/image"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["uuid", "seq", "topk", "payload"]
    assert form["properties"]["seq"]["maximum"] == MAX_SEQ and form["properties"]["topk"]["maximum"] == MAX_TOPK
    batch = document["paths"]["/images"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert batch["properties"]["payload"]["type"] == "array"


def test_the_document_declares_the_key_only_where_one_is_configured() -> None:
    keyless, keyed = openapi_document(keyed=False), openapi_document(keyed=True)
    assert "securitySchemes" not in keyless["components"]  # no lock, no Authorize button in the docs page
    assert all("security" not in op for item in keyless["paths"].values() for op in item.values())
    assert keyed["paths"]["/health"]["get"]["security"] == []  # open
    assert keyed["paths"]["/result"]["get"]["security"] == [{"apiKey": []}]
    assert keyed["components"]["securitySchemes"]["apiKey"]["name"] == "x-api-key"
