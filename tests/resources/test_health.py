"""GET /health (the process answers) and GET /health/ready (its database does)."""

from tests.support.errors import envelope


def test_health(client):
    assert client.get("/health").get_json() == {"status": "ok"}


def test_ready_when_database_answers(client):
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.get_json()["database"] == "ok"


def test_not_ready_when_database_is_gone(make_app, tmp_path):
    app = make_app(SQLALCHEMY_DATABASE_URI="postgresql://postgres@127.0.0.1:1/none")
    response = app.test_client().get("/health/ready")
    assert envelope(response, 503, "service_unavailable")["database"] == "unavailable"
    assert response.headers["Retry-After"]
