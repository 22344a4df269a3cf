"""The serving wrapper's `/docs` page, offline: Swagger UI 5 (it reads OpenAPI 3.1, which the service
publishes) served from the files the `fastapi-offline` package ships (no CDN), so the page renders on
a machine without network access. Only its static files are read; the package is not imported.
(`swagger-ui-bundle` on PyPI ships Swagger UI 4, which refuses OpenAPI 3.1.)

`docs_html` is the page; `asset(name)` answers `/docs/assets/NAME` for the two files the page loads.
"""

from __future__ import annotations

from functools import cache
from html import escape
from pathlib import Path

from ..errors import SetupError

__all__ = ["docs_html", "asset", "ASSETS_PATH", "ASSET_TYPES"]

ASSETS_PATH = "/docs/assets"
ASSET_TYPES = {"swagger-ui.css": "text/css", "swagger-ui-bundle.js": "application/javascript"}

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({{url: "{spec_url}", dom_id: "#swagger-ui"}});</script>
<noscript>The API description is at <a href="{spec_url}">{spec_url}</a>.</noscript>
</body></html>
"""


def _folder() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        raise SetupError(
            "fastapi-offline is not installed; /docs takes Swagger UI from it. Install it: pip install 'fastapi-offline>=1.7'."
        )
    return Path(list(spec.submodule_search_locations)[0]) / "static"


def docs_html(title: str, spec_url: str = "/openapi.json", assets: str = ASSETS_PATH) -> str:
    """The Swagger UI page for the OpenAPI document at `spec_url`, its assets under `assets`."""
    return PAGE.format(title=escape(title), spec_url=escape(spec_url), assets=escape(assets))


@cache
def asset(name: str) -> tuple[bytes, str] | None:
    """(content, media type) of one of the page's assets, or None for any other name."""
    media_type = ASSET_TYPES.get(name)
    if media_type is None:
        return None
    return (_folder() / name).read_bytes(), media_type
