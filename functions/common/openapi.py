"""The OpenAPI document of the public HTTP API; schemas come from the pydantic models, not by hand."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .contracts import (
    MAX_SEQ,
    MAX_TOPK,
    BatchAccepted,
    ErrorBody,
    Health,
    ImageAccepted,
    PresignedUpload,
    RegisterResponse,
    ResultPage,
)

_MODELS: tuple[type[BaseModel], ...] = (
    RegisterResponse, ImageAccepted, BatchAccepted, PresignedUpload, ResultPage, ErrorBody, Health
)  # fmt: skip
_REF = "#/components/schemas/{model}"


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model=model.__name__)}}},
    }


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _json(ErrorBody, "error") for code in codes}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": True, "schema": schema, "description": description}


_UPLOAD_FIELDS = {
    "uuid": {"type": "string", "format": "uuid"},
    "topk": {"type": "integer", "minimum": 1, "maximum": MAX_TOPK},
}


def _form_post(summary: str, fields: dict[str, Any], responses: dict[str, Any]) -> dict[str, Any]:
    schema = {"type": "object", "required": list(fields), "properties": fields}
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}},
            "responses": responses,
        }
    }


def _presigned_paths() -> dict[str, Any]:
    """Images larger than a Lambda request: a presigned S3 upload, then a confirmation."""
    seq = {"type": "integer", "minimum": 0, "maximum": MAX_SEQ}
    return {
        "/upload-url": _form_post(
            "A presigned S3 upload for one image (POST the fields, then the file as `file`, to `url`)",
            {"uuid": _UPLOAD_FIELDS["uuid"], "seq": seq},
            {"200": _json(PresignedUpload, "where and how to upload"), **_errors(400, 401, 404, 503)},
        ),
        "/image/confirm": _form_post(
            "The presigned upload of `key` arrived: check, store and queue it as POST /image does",
            {**_UPLOAD_FIELDS, "seq": seq, "key": {"type": "string", "minLength": 1}},
            {
                "202": _json(ImageAccepted, "queued (or already known, same bytes)"),
                **_errors(400, 401, 404, 409, 413, 415, 503),
            },
        ),
    }


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in _MODELS:
        schema = model.model_json_schema(ref_template=_REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "faasinfer",
            "version": "1.0.0",
            "description": "Image classification: register a session, upload images, query results.",
        },
        "paths": {**_upload_paths(), **_presigned_paths(), **_query_paths(), **_service_paths()},
        "components": {"schemas": schemas},
    }


def _upload_paths() -> dict[str, Any]:
    single = {
        **_UPLOAD_FIELDS,
        "seq": {"type": "integer", "minimum": 0},
        "payload": {"type": "string", "format": "binary"},
    }
    batch = {
        **_UPLOAD_FIELDS,
        "seqStart": {"type": "integer", "minimum": 0},
        "payload": {"type": "array", "items": {"type": "string", "format": "binary"}},
    }
    refusals = _errors(400, 401, 404, 409, 413, 415, 503)
    return {
        "/register": {
            "post": {
                "summary": "Create a session",
                "responses": {"200": _json(RegisterResponse, "the new session's uuid"), **_errors(401, 503)},
            }
        },
        "/image": _form_post(
            "Upload one image",
            single,
            {"202": _json(ImageAccepted, "queued (or already known, same bytes)"), **refusals},
        ),
        "/images": _form_post(
            "Upload several images; the i-th gets seq seqStart+i",
            batch,
            {"202": _json(BatchAccepted, "all queued"), **refusals},
        ),
    }


def _query_paths() -> dict[str, Any]:
    return {
        "/result": {
            "get": {
                "summary": "Results of a seq range (inclusive)",
                "parameters": [
                    _query("uuid", {"type": "string", "format": "uuid"}, "session"),
                    _query("seqStart", {"type": "integer", "minimum": 0}, "first seq"),
                    _query("seqEnd", {"type": "integer", "minimum": 0}, "last seq; at most MAX_RANGE seqs per query"),
                ],
                "responses": {"200": _json(ResultPage, "items in seq order"), **_errors(400, 401, 404, 503)},
            }
        },
        "/": {
            "get": {
                "summary": "Web page for uploading images and watching results",
                "responses": {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}},
            }
        },
    }


def _service_paths() -> dict[str, Any]:
    text = {"description": "text exposition format", "content": {"text/plain": {"schema": {"type": "string"}}}}
    return {
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": text}}},
        "/health": {
            "get": {
                "summary": "Database and broker reachability",
                "responses": {"200": _json(Health, "all reachable"), "503": _json(Health, "degraded")},
            }
        },
    }


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document())
