"""The API docs page (GET /docs): Swagger UI served from the installed `fastapi-offline` package, no CDN.

FastAPI's own /docs loads Swagger UI from a CDN and starts it with an inline script; the CSP forbids both.
This page is a static shell: the Swagger UI files come from the package (an allowlist, never a client
path), and static/docs/init.js starts it with the OpenAPI URL it reads from the page's data attribute.
So the page runs under the app's one strict CSP (middleware.py), unrelaxed: Swagger UI sets styles through
the DOM (allowed by style-src 'self') and its icons are inline SVG or data: images (allowed by img-src)."""

from __future__ import annotations

import html
from importlib.resources import files

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse

ASSETS = files("fastapi_offline") / "static"
MEDIA_TYPES = {"swagger-ui-bundle.js": "text/javascript; charset=utf-8", "swagger-ui.css": "text/css; charset=utf-8"}
PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title} API</title>
  <link rel="icon" href="{root}/static/dashboard/favicon.svg" type="image/svg+xml">
  <link rel="stylesheet" href="{root}/docs/assets/swagger-ui.css">
  <script src="{root}/docs/assets/swagger-ui-bundle.js" defer></script>
  <script src="{root}/static/docs/init.js" defer></script>
</head>
<body>
  <div id="swagger-ui" data-openapi-url="{openapi}"></div>
</body>
</html>
"""
router = APIRouter(include_in_schema=False)


@router.get("/docs")
def docs_page(request: Request) -> HTMLResponse:
    if request.app.openapi_url is None:
        raise HTTPException(404)
    root = html.escape(request.scope.get("root_path", "").rstrip("/"))
    body = PAGE.format(title=html.escape(request.app.title), root=root,
                       openapi=root + html.escape(request.app.openapi_url))
    return HTMLResponse(body, headers={"Cache-Control": "no-cache"})


@router.get("/docs/assets/{name}")
def docs_asset(name: str) -> FileResponse:
    if name not in MEDIA_TYPES:
        raise HTTPException(404)
    return FileResponse(str(ASSETS / name), media_type=MEDIA_TYPES[name], headers={"Cache-Control": "max-age=86400"})

