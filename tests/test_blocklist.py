"""Logout ends the whole login session, on the database store and on Redis,
across app instances (processes) and restarts."""
from datetime import datetime, timedelta, timezone

import pytest
import redis as redis_lib

from blacklist import DatabaseBlocklist, RedisBlocklist
from db import db
from models.revoked_session import RevokedSessionModel
from tests.conftest import bearer


@pytest.fixture(params=["database", "redis"])
def blocklist_settings(request):
    if request.param == "redis":
        return {"REDIS_URL": request.getfixturevalue("redis_url")}
    return {}


@pytest.fixture
def app(make_app, blocklist_settings):
    return make_app(**blocklist_settings)


def test_store_kind_follows_configuration(app, blocklist_settings):
    expected = RedisBlocklist if blocklist_settings else DatabaseBlocklist
    assert isinstance(app.extensions["blocklist"], expected)


def test_logout_revokes_access_refresh_and_refreshed_tokens(client, users):
    user = users.create()
    refreshed = users.refreshed_headers(user)
    response = client.post("/logout", headers=user["headers"])
    assert response.status_code == 200
    assert response.get_json() == {"message": "Successfully logged out."}
    for headers, method, path in [
        (user["headers"], "get", "/items"),
        (refreshed, "get", "/items"),
        (bearer(user["refresh_token"]), "post", "/refresh"),
        (user["headers"], "post", "/logout"),
    ]:
        answer = client.open(path, method=method, headers=headers)
        assert answer.status_code == 401
        assert answer.get_json()["error"] == "token_revoked"


def test_revoked_post_item_says_revoked_not_fresh(client, users, store):
    user = users.create()
    refreshed = users.refreshed_headers(user)
    client.post("/logout", headers=user["headers"])
    answer = client.post("/item/chair", headers=refreshed, json={"price": 1, "store_id": store["id"]})
    assert answer.get_json()["error"] == "token_revoked"


def test_logout_leaves_other_sessions_alone(client, users):
    user = users.create()
    second = users.login(user["username"])
    client.post("/logout", headers=user["headers"])
    assert client.get("/items", headers=bearer(second["access_token"])).status_code == 200


def test_revocation_survives_restart_and_other_processes(make_app, blocklist_settings, users, client):
    user = users.create()
    client.post("/logout", headers=user["headers"])
    # A new app object is what another worker process, or a restart, builds.
    other = make_app(**blocklist_settings).test_client()
    assert other.get("/items", headers=user["headers"]).get_json()["error"] == "token_revoked"


def test_deleted_user_tokens_refused(client, users):
    user = users.create()
    other_session = users.login(user["username"])
    client.delete(f"/user/{user['id']}", headers=user["headers"])
    answer = client.get("/items", headers=bearer(other_session["access_token"]))
    assert answer.status_code == 401 and answer.get_json()["error"] == "invalid_token"


def log_in_and_out(client):
    client.post("/register", json={"username": "alice", "password": "password1"})
    token = client.post("/login", json={"username": "alice", "password": "password1"}).get_json()["access_token"]
    assert client.post("/logout", headers=bearer(token)).status_code == 200


# The two tests below pick their own store, so they build their own apps.

def test_database_store_drops_expired_entries(make_app):
    app = make_app()
    with app.app_context():
        stale = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(days=1)
        db.session.add(RevokedSessionModel(sid="old-session", expires_at=stale))
        db.session.commit()
    log_in_and_out(app.test_client())
    with app.app_context():
        assert db.session.get(RevokedSessionModel, "old-session") is None
        assert RevokedSessionModel.query.count() == 1


def test_redis_entries_expire_with_the_tokens(make_app, redis_url):
    app = make_app(REDIS_URL=redis_url, JWT_REFRESH_TOKEN_EXPIRES=timedelta(hours=2))
    log_in_and_out(app.test_client())
    r = redis_lib.Redis.from_url(redis_url)
    keys = r.keys(f"{app.config['REDIS_KEY_PREFIX']}revoked:session:*")
    assert len(keys) == 1
    assert 7000 < r.ttl(keys[0]) <= 7200
