"""The interactive API documentation: Swagger UI from the pinned ``swagger-ui-bundle-v2`` package (no CDN), reading
``/openapi.json``. Every URL is relative, so the page works under an API Gateway stage prefix too."""

from __future__ import annotations

from functools import lru_cache

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from swagger_ui_bundle import swagger_ui_path

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>faasinfer API</title>
  <link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({url: "openapi.json", dom_id: "#swagger-ui", deepLinking: true});
  </script>
</body>
</html>
"""
_CACHE = {"Cache-Control": "public, max-age=86400"}  # the assets change only with the pinned package


@lru_cache(maxsize=2)
def _asset(name: str) -> bytes:
    data: bytes = (swagger_ui_path / name).read_bytes()
    return data


async def page(request: Request) -> Response:
    return HTMLResponse(_PAGE)


async def stylesheet(request: Request) -> Response:
    return Response(_asset("swagger-ui.css"), media_type="text/css", headers=_CACHE)


async def script(request: Request) -> Response:
    return Response(_asset("swagger-ui-bundle.js"), media_type="text/javascript", headers=_CACHE)
