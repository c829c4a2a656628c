"""Checks on the OpenAPI document (openapi.yaml) and the pages that serve it.

- The document is valid OpenAPI 3.1 and its YAML has no duplicate keys
  (PyYAML would silently keep the last of two "400:" entries).
- It names exactly the routes the app serves: a route missing from the
  document, or a documented operation the app does not route, fails a test.
- GET /openapi.json serves that document; GET /docs is an HTML page whose
  scripts and styles all come from the app itself (it works offline).

Whether the live API answers as documented is checked by the schemathesis
run in tests/fuzz/.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from werkzeug.routing import IntegerConverter

OPENAPI_PATH = Path(__file__).resolve().parents[2] / "openapi.yaml"

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}

# Routes that are deliberately not operations of the API: the files that make
# up the Swagger UI page (and Flask's static folder, if the app has one).
UNDOCUMENTED_ENDPOINTS = {"static", "docs.docs_asset", "docs.swagger_initializer"}


class UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """A YAML loader that refuses a mapping with the same key twice (libyaml's
    parser when PyYAML has it: the same document, about eight times faster)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


@pytest.fixture(scope="module")
def document() -> dict:
    with OPENAPI_PATH.open(encoding="utf-8") as f:
        return yaml.load(f, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def documented_operations(document: dict) -> set[tuple[str, str]]:
    return {
        (path, method.upper()) for path, item in document["paths"].items() for method in item if method in HTTP_METHODS
    }


# A variable in a Werkzeug rule: "<name>", "<int:user_id>", "<any(a, b):x>".
RULE_VARIABLE = re.compile(r"<(?:(?P<converter>[^<>:(]+)(?:\([^)]*\))?:)?(?P<name>[^<>]+)>")


def openapi_path(rule: str) -> str:
    """Turn a Werkzeug rule ('/store/<name:name>') into an OpenAPI path ('/store/{name}')."""
    return RULE_VARIABLE.sub(lambda m: "{" + m["name"] + "}", rule)


def rule_converters(rule: str) -> dict[str, str]:
    """The converter name of each variable of a rule ("default" when none is given)."""
    return {m["name"]: m["converter"] or "default" for m in RULE_VARIABLE.finditer(rule)}


def routed_operations(app) -> set[tuple[str, str]]:
    return {
        (openapi_path(rule.rule), method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint not in UNDOCUMENTED_ENDPOINTS
        # Werkzeug answers HEAD and OPTIONS for every GET route by itself.
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }


def resolve(document: dict, node):
    """Follow local "$ref"s ("#/components/...") until a node that is not a reference."""
    while isinstance(node, dict) and "$ref" in node:
        target = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def resolve_all(document: dict, nodes: list) -> list:
    return [resolve(document, node) for node in nodes]


def is_error_envelope(document: dict, schema) -> bool:
    """Whether every value the schema allows is the {"error", "message"} envelope."""
    if schema == {"$ref": "#/components/schemas/Error"}:
        return True
    schema = resolve(document, schema)
    if any(is_error_envelope(document, part) for part in schema.get("allOf", [])):
        return True
    branches = schema.get("oneOf", []) + schema.get("anyOf", [])
    return bool(branches) and all(is_error_envelope(document, part) for part in branches)


def test_document_is_valid_openapi_3_1(document):
    assert document["openapi"].startswith("3.1.")
    validate(document, cls=OpenAPIV31SpecValidator)


def test_every_route_is_documented(app, document):
    missing = routed_operations(app) - documented_operations(document)
    assert not missing, f"routes the app serves but openapi.yaml does not document: {sorted(missing)}"


def test_every_documented_operation_is_routed(app, document):
    extra = documented_operations(document) - routed_operations(app)
    assert not extra, f"operations openapi.yaml documents but the app does not route: {sorted(extra)}"


def test_a_route_added_without_documenting_it_is_caught(app, document):
    # The two tests above compare these sets; this shows the comparison sees a new route.
    app.add_url_rule("/store/<name:name>/audit", "audit", lambda name: "", methods=["GET"])
    assert routed_operations(app) - documented_operations(document) == {("/store/{name}/audit", "GET")}


def test_path_parameter_types_match_the_url_converters(app, document):
    for rule in app.url_map.iter_rules():
        if rule.endpoint in UNDOCUMENTED_ENDPOINTS:
            continue
        path_item = document["paths"][openapi_path(rule.rule)]
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            operation = path_item[method.lower()]
            params = {
                p["name"]: p
                for p in resolve_all(document, path_item.get("parameters", []) + operation.get("parameters", []))
                if p["in"] == "path"
            }
            converters = rule_converters(rule.rule)
            assert set(params) == set(converters), (rule.rule, method)
            for name, converter in converters.items():
                schema = resolve(document, params[name]["schema"])
                is_int = issubclass(app.url_map.converters[converter], IntegerConverter)
                assert schema["type"] == ("integer" if is_int else "string"), (rule.rule, name)


def test_protected_operations_document_their_token_errors(document):
    for path, method in documented_operations(document):
        operation = document["paths"][path][method.lower()]
        if {"bearerAuth": []} in operation.get("security", []):
            assert "401" in operation["responses"], (method, path)
        if "requestBody" in operation:
            for status in ("400", "413", "415"):
                assert status in operation["responses"], (method, path, status)
        assert "500" in operation["responses"], (method, path)


def test_fresh_owner_and_admin_requirements_are_written_down(document):
    paths = document["paths"]

    def description(path, method):
        return " ".join(paths[path][method]["description"].split())

    fresh = [
        ("/item/{name}", "post"),
        ("/item/{name}", "put"),
        ("/user/{user_id}", "delete"),
        ("/user/{user_id}/password", "put"),
        ("/user/{user_id}/sessions", "delete"),
    ]
    for path, method in fresh:
        assert "fresh access token" in description(path, method), (method, path)
        assert "fresh_token_required" in str(resolve(document, paths[path][method]["responses"]["401"]))
    # Stores and their items are changed by the store's owner or an admin; anyone else gets 403 forbidden.
    owned = [("/store/{name}", "delete"), ("/item/{name}", "post"), ("/item/{name}", "put"), ("/item/{name}", "delete")]
    for path, method in owned:
        assert "owner" in description(path, method) and "admin" in description(path, method), (method, path)
        assert "forbidden" in str(resolve(document, paths[path][method]["responses"]["403"])), (method, path)


def test_every_error_response_is_the_json_envelope(document):
    for path, method in documented_operations(document):
        for status, response in document["paths"][path][method.lower()]["responses"].items():
            if int(status) >= 400:
                schema = resolve(document, response)["content"]["application/json"]["schema"]
                assert is_error_envelope(document, schema), (method, path, status)


def test_openapi_json_serves_the_document(client, document):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == document


class _AssetCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and attrs.get("src"):
            self.urls.append(attrs["src"])
        if tag == "link" and attrs.get("href"):
            self.urls.append(attrs["href"])


def test_docs_page_loads_every_asset_from_the_app(client):
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "<script>" not in page, "no inline script, so a strict CSP does not break the page"

    collector = _AssetCollector()
    collector.feed(page)
    assert len(collector.urls) >= 4
    for url in collector.urls:
        # Same origin: a path on this app, never another host ("//cdn...", "https://...").
        assert url.startswith("/") and not url.startswith("//"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.data, url
    paths = {urlsplit(url).path for url in collector.urls}
    assert {"/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css", "/docs/swagger-initializer.js"} <= paths


def test_docs_initializer_points_at_the_document_and_keeps_the_bearer_token(client):
    script = client.get("/docs/swagger-initializer.js")
    assert script.status_code == 200
    assert script.mimetype == "text/javascript"
    text = script.get_data(as_text=True)
    assert '"url": "/openapi.json"' in text
    assert '"persistAuthorization": true' in text
    # No call out to validator.swagger.io: the page must work offline.
    assert '"validatorUrl": null' in text


def test_unknown_docs_asset_is_a_json_404(client):
    response = client.get("/docs/no-such-file.js")
    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"


def test_the_document_declares_the_bearer_scheme(document):
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
