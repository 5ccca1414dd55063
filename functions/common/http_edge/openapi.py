"""The OpenAPI document of the public HTTP API, generated from the route declarations (``api.ENDPOINTS``) and the
pydantic models they name: the parameters' bounds are the ones the models enforce."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from functions.common.http_edge.params import BATCH_FILES, Inputs
from functions.common.http_edge.routes import ENDPOINTS, Endpoint, Reply
from functions.common.settings import get_settings

_REF = "#/components/schemas/{model}"
_SECURITY = {"apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}}


class _Schemas:
    """The components/schemas section, filled as the operations name models."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def ref(self, model: type[BaseModel]) -> dict[str, str]:
        if model.__name__ not in self.schemas:
            schema = model.model_json_schema(ref_template=_REF)
            self.schemas.update(schema.pop("$defs", {}))
            self.schemas[model.__name__] = schema
        return {"$ref": _REF.format(model=model.__name__)}

    def inline(self, model: type[Inputs]) -> dict[str, Any]:
        """The inputs' own schema, inlined (parameters and form bodies are described field by field)."""
        schema = model.model_json_schema()
        schema.pop("title", None)
        schema.pop("description", None)
        for prop in schema["properties"].values():
            prop.pop("title", None)
        return schema


def _reply(schemas: _Schemas, reply: Reply) -> dict[str, Any]:
    schema = schemas.ref(reply.model) if reply.model is not None else {"type": "string"}
    return {"description": reply.description, "content": {reply.media_type: {"schema": schema}}}


def _parameters(schemas: _Schemas, model: type[Inputs]) -> list[dict[str, Any]]:
    schema = schemas.inline(model)
    required = set(schema.get("required", []))
    parameters = []
    for name, prop in schema["properties"].items():
        description = prop.pop("description", "")
        parameters.append(
            {"name": name, "in": "query", "required": name in required, "schema": prop, "description": description}
        )
    return parameters


def _form(schemas: _Schemas, endpoint: Endpoint) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
    if endpoint.form is not None:
        schema = schemas.inline(endpoint.form)
    binary = {"type": "string", "format": "binary"}
    for name, repeated in endpoint.files.items():
        schema["properties"][name] = (
            {"type": "array", "items": binary, "minItems": 1, "maxItems": BATCH_FILES} if repeated else binary
        )
        schema["required"] = [*schema.get("required", []), name]
    return {"required": True, "content": {"multipart/form-data": {"schema": schema}}}


def _operation(schemas: _Schemas, endpoint: Endpoint, keyed: bool) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": endpoint.summary, "tags": [endpoint.function]}
    if endpoint.query is not None:
        operation["parameters"] = _parameters(schemas, endpoint.query)
    if endpoint.form is not None or endpoint.files:
        operation["requestBody"] = _form(schemas, endpoint)
    operation["responses"] = {str(code): _reply(schemas, r) for code, r in sorted(endpoint.replies.items())}
    if keyed:
        operation["security"] = [{"apiKey": []}] if endpoint.guarded else []
    return operation


@lru_cache(maxsize=2)
def openapi_document(keyed: bool = False) -> dict[str, Any]:
    """The document as this deployment answers: with an API key configured (``keyed``), the guarded operations
    need ``x-api-key``; without one, no operation does and the document declares no security at all."""
    schemas = _Schemas()
    paths: dict[str, Any] = {}
    for endpoint in (e for e in ENDPOINTS if e.documented):
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(schemas, endpoint, keyed)
    description = "Image classification: register a session, upload images, query results."
    if keyed:
        description += " Every guarded operation needs the `x-api-key` header (Authorize, in the docs page)."
    components: dict[str, Any] = {"schemas": dict(sorted(schemas.schemas.items()))}
    if keyed:
        components["securitySchemes"] = _SECURITY
    return {
        "openapi": "3.1.0",
        "info": {"title": "faasinfer", "version": "1.0.0", "description": description},
        "paths": paths,
        "components": components,
    }


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document(bool(get_settings().api_key)))
