"""The API's own documentation: GET /openapi.json and GET /docs.

- ``/openapi.json`` is ``openapi.yaml`` (the repository root's hand-written
  OpenAPI 3.1 document) converted to JSON. The YAML is read and converted on
  the first request for it and kept, so a worker that never serves the
  document never pays for it (about 1.3 MiB per uWSGI worker, PyYAML
  included), and later requests cost nothing. tests/core/test_docs.py checks
  that the document parses and validates.
- ``/docs`` is Swagger UI. Its scripts and styles come from the
  ``flask-swagger-ui`` package (a pinned dependency that ships Swagger UI's
  ``dist`` folder) and are served by this blueprint under ``/docs/``, so the
  page works offline: no CDN, no call to Swagger's online validator.
  The page has no inline script (its settings are in a small script served
  at ``/docs/swagger-initializer.js``), so a strict Content-Security-Policy
  of ``script-src 'self'`` does not break it. ``/docs/`` redirects to
  ``/docs``.

Register it in the application factory with
``app.register_blueprint(docs.blueprint)``.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.metadata import version
from importlib.resources import files
from pathlib import Path

from flask import Blueprint, Response, redirect, send_from_directory, url_for

OPENAPI_PATH = Path(__file__).resolve().parent.parent / "openapi.yaml"

# Swagger UI's built files, as shipped inside the flask-swagger-ui wheel.
SWAGGER_UI_DIST = Path(str(files("flask_swagger_ui") / "dist"))
# Part of the asset URLs, so browsers that cached them fetch new ones after an upgrade.
SWAGGER_UI_VERSION = version("flask-swagger-ui")


def load_openapi_document(path: Path = OPENAPI_PATH) -> dict:
    """Read the OpenAPI document from its YAML file."""
    # Imported here, not at the top: only a worker that serves the document needs PyYAML.
    import yaml

    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


@cache
def openapi_json_bytes() -> bytes:
    """The document as JSON, built once per process: it does not change while the process runs."""
    return json.dumps(load_openapi_document(), ensure_ascii=False).encode("utf-8")


blueprint = Blueprint("docs", __name__)


@blueprint.get("/openapi.json")
def openapi_json() -> Response:
    return Response(openapi_json_bytes(), mimetype="application/json")


# The page only links to files; everything it runs is served from /docs/.
DOCS_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Stores API documentation</title>
  <link rel="stylesheet" href="{swagger_ui_css}">
  <link rel="stylesheet" href="{index_css}">
  <link rel="icon" type="image/png" href="{favicon}" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{bundle_js}"></script>
  <script src="{initializer_js}"></script>
</body>
</html>
"""


@blueprint.get("/docs")
def docs_page() -> Response:
    def asset(filename: str) -> str:
        return url_for("docs.docs_asset", filename=filename, v=SWAGGER_UI_VERSION)

    html = DOCS_PAGE.format(
        swagger_ui_css=asset("swagger-ui.css"),
        index_css=asset("index.css"),
        favicon=asset("favicon-32x32.png"),
        bundle_js=asset("swagger-ui-bundle.js"),
        initializer_js=url_for("docs.swagger_initializer"),
    )
    return Response(html, mimetype="text/html")


@blueprint.get("/docs/swagger-initializer.js")
def swagger_initializer() -> Response:
    settings = {
        # url_for keeps the link right when the app is mounted under a prefix.
        "url": url_for("docs.openapi_json"),
        "dom_id": "#swagger-ui",
        "deepLinking": True,
        # Keep the token pasted into "Authorize" across page reloads.
        "persistAuthorization": True,
        # Swagger UI would otherwise send the document to validator.swagger.io.
        "validatorUrl": None,
        "layout": "BaseLayout",
    }
    script = (
        "window.addEventListener('load', function () {\n"
        f"  var settings = {json.dumps(settings)};\n"
        "  settings.presets = [SwaggerUIBundle.presets.apis];\n"
        "  window.ui = SwaggerUIBundle(settings);\n"
        "});\n"
    )
    return Response(script, mimetype="text/javascript")


# `/docs/` (with the slash people and some proxies add) is the page too: it
# redirects to `/docs`. The rule belongs to the asset endpoint, with an empty
# file name, so the route list tests/core/test_docs.py checks gains no endpoint.
@blueprint.get("/docs/", defaults={"filename": ""})
@blueprint.get("/docs/<path:filename>")
def docs_asset(filename: str) -> Response:
    if not filename:
        return redirect(url_for("docs.docs_page"), code=308)
    # send_from_directory refuses paths that leave the folder and answers 404
    # (the app's JSON error envelope) for files that do not exist.
    return send_from_directory(SWAGGER_UI_DIST, filename, max_age=86400)
