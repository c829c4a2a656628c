"""Every error is the contract's JSON envelope, including Flask's own and crashes."""

import pytest

from tests.support.errors import envelope


def test_unknown_path_is_json_404(client):
    envelope(client.get("/nowhere"), 404, "not_found")
    envelope(client.get("/store/"), 404, "not_found")
    envelope(client.get("/user/abc"), 404, "not_found")


def test_wrong_method_is_json_405_with_allow(client):
    response = client.patch("/items")
    envelope(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


def test_large_body_is_json_413(make_app):
    client = make_app(MAX_CONTENT_LENGTH=1024).test_client()
    response = client.post("/register", data="{" + " " * 2000 + "}", content_type="application/json")
    envelope(response, 413, "payload_too_large")


def test_other_media_type_is_json_415(client):
    response = client.post("/register", data="username=a", content_type="text/plain")
    envelope(response, 415, "unsupported_media_type")


@pytest.mark.parametrize("body", ["{bad json", "[1, 2]", '"text"', "null"])
def test_bad_json_body_is_bad_request(client, body):
    envelope(client.post("/register", data=body, content_type="application/json"), 400, "bad_request")


def test_query_string_never_causes_415(client):
    assert client.get("/stores?page=1").status_code == 200


def test_unexpected_exception_is_json_500_without_traceback(make_app):
    app = make_app()

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    response = app.test_client().get("/boom")
    body = envelope(response, 500, "internal_error")
    assert "secret internals" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    assert body["message"] == "An unexpected error occurred."


def test_database_outage_is_503_not_500(make_app):
    client = make_app(SQLALCHEMY_DATABASE_URI="postgresql://postgres@127.0.0.1:1/none").test_client()
    response = client.get("/stores")
    envelope(response, 503, "service_unavailable")
    assert response.headers["Retry-After"]


def test_redis_outage_fails_closed(make_app, users):
    client = make_app(REDIS_URL="redis://127.0.0.1:1/0").test_client()
    # Login and register need the rate limits' storage: fail closed, 503.
    envelope(client.post("/register", json={"username": "alice", "password": "password1"}), 503, "service_unavailable")
    envelope(client.post("/login", json={"username": "alice", "password": "password1"}), 503, "service_unavailable")
    # Tokens are checked against the database, never against Redis alone.
    user = users.create()
    assert client.get("/item/x", headers=user["headers"]).status_code == 404
    # Public reads keep working.
    assert client.get("/stores").status_code == 200
    assert client.get("/items").status_code == 200


@pytest.mark.parametrize("path", ["/item/chair", "/stores", "/store/shop", "/health", "/item/chair/image"])
def test_options_is_204_with_allow_and_never_html(client, path):
    response = client.open(path, method="OPTIONS")
    assert response.status_code == 204
    assert "GET" in response.headers["Allow"] and "OPTIONS" in response.headers["Allow"]
    assert response.get_data() == b"" and "Content-Type" not in response.headers


@pytest.mark.parametrize("path", ["/stores", "/items"])
def test_a_query_string_that_is_not_utf8_is_bad_request(client, path):
    """Raw bytes as a client may send them (uWSGI passes them on as they came)."""
    envelope(client.get(path, environ_overrides={"QUERY_STRING": "x\xff=1"}), 400, "bad_request")
