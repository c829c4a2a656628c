"""One structured line per request, request ids, and no secrets in the log."""

import json
import logging

import pytest


@pytest.fixture
def log_lines(caplog):
    caplog.set_level(logging.INFO, logger="stores_api")
    return caplog


def request_lines(caplog):
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "stores_api.requests"]


def test_one_line_per_request_with_its_fields(client, log_lines):
    response = client.get("/stores?page=1")
    lines = request_lines(log_lines)
    assert len(lines) == 1
    line = lines[0]
    assert line["method"] == "GET" and line["path"] == "/stores" and line["status"] == 200
    assert line["duration_ms"] >= 0
    assert line["request_id"] == response.headers["X-Request-ID"]


def test_client_request_id_is_echoed(client):
    response = client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"


def test_unsafe_request_id_is_replaced(client):
    response = client.get("/health", headers={"X-Request-ID": "evil <script>"})
    assert response.headers["X-Request-ID"] != "evil <script>"
    assert len(response.headers["X-Request-ID"]) == 32


def test_500_body_carries_the_logged_request_id(make_app, log_lines):
    app = make_app()

    @app.get("/boom")
    def boom():
        raise RuntimeError("kaput")

    response = app.test_client().get("/boom")
    request_id = response.get_json()["request_id"]
    assert response.headers["X-Request-ID"] == request_id
    crash = [r for r in log_lines.records if r.name == "stores_api.errors"]
    assert request_id in crash[0].getMessage() and crash[0].exc_info is not None


def test_passwords_and_tokens_never_logged(client, users, log_lines):
    user = users.create("alice", password="Sup3r-Secret-Pass")
    client.post("/logout", headers=user["headers"])
    client.post("/login", json={"username": "alice", "password": "Wrong-Secret-Pass"})
    text = log_lines.text + "".join(str(r.__dict__) for r in log_lines.records)
    for secret in ("Sup3r-Secret-Pass", "Wrong-Secret-Pass", user["access_token"], user["refresh_token"]):
        assert secret not in text


def test_security_headers(client, users):
    assert client.get("/health").headers["X-Content-Type-Options"] == "nosniff"
    users.create("alice")
    login = client.post("/login", json={"username": "alice", "password": "correct-horse"})
    assert login.headers["Cache-Control"] == "no-store"


def test_lines_go_straight_to_the_stderr_handler_only_while_it_is_alone(monkeypatch, request):
    """In production the request line is written to the stderr handler's
    stream without a LogRecord; once anything else listens (another handler,
    caplog), lines go through logging again and reach every listener."""
    import io

    from core import request_log

    stream, other = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger("stores_api")
    monkeypatch.setattr(request_log, "_stderr_handler", handler)
    monkeypatch.setattr(root, "handlers", [handler])
    monkeypatch.setattr(root, "propagate", False)
    level = root.level
    root.setLevel(logging.INFO)  # setLevel, not setattr: it clears logging's cache of levels
    request.addfinalizer(lambda: root.setLevel(level))
    records = []
    monkeypatch.setattr(request_log.log, "handle", records.append)
    request_log.write_line('{"a":1}')
    assert stream.getvalue() == '{"a":1}\n' and records == []

    monkeypatch.setattr(root, "handlers", [handler, logging.StreamHandler(other)])
    request_log.write_line('{"b":2}')
    assert [r.getMessage() for r in records] == ['{"b":2}']
