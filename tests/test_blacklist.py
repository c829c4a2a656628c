"""The token rules of the contract, with and without Redis configured.

Logout ends one login session; a password change or "end all sessions" ends
every session of the user; a deleted user's tokens are refused; and a token
acts only for the account it was issued to, even after a restore or a reset
hands its id to another account. The database holds these records; a Redis
that is emptied, or holds keys of an earlier database, changes no answer.
"""

import shutil
import subprocess
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy
from flask_jwt_extended import create_access_token, create_refresh_token

from blacklist import Blocklist
from config import database_url as sqlalchemy_url
from db import db
from models.revoked_session import RevokedSessionModel
from tests.support import services
from tests.support.apps import build_app, dispose
from tests.support.users import Users, bearer


@pytest.fixture(params=["database", "redis"])
def blocklist_settings(request):
    if request.param == "redis":
        return {"REDIS_URL": request.getfixturevalue("redis_url")}
    return {}


@pytest.fixture
def app(make_app, blocklist_settings):
    return make_app(**blocklist_settings)


def error_of(response):
    assert response.status_code == 401, (response.status_code, response.get_json())
    return response.get_json()["error"]


def test_the_database_is_the_record_in_both_configurations(app):
    assert isinstance(app.extensions["blocklist"], Blocklist)


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
        assert error_of(client.open(path, method=method, headers=headers)) == "token_revoked"


def test_revoked_post_item_says_revoked_not_fresh(client, users, owner, store):
    refreshed = users.refreshed_headers(owner)
    client.post("/logout", headers=owner["headers"])
    answer = client.post("/item/chair", headers=refreshed, json={"price": 1, "store_id": store["id"]})
    assert error_of(answer) == "token_revoked"


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
    assert error_of(other.get("/items", headers=user["headers"])) == "token_revoked"


def test_deleted_user_tokens_refused(client, users):
    user = users.create()
    other_session = users.login(user["username"])
    client.delete(f"/user/{user['id']}", headers=user["headers"])
    assert error_of(client.get("/items", headers=bearer(other_session["access_token"]))) == "invalid_token"
    assert error_of(client.post("/refresh", headers=bearer(other_session["refresh_token"]))) == "invalid_token"


def forged_tokens(app, user_id, **claims):
    """Tokens signed with the app's own key for `user_id`, as a leaked key or
    an old database's login would have made them."""
    session = {"sid": uuid.uuid4().hex, "acct": uuid.uuid4().hex, "gen": 0, **claims}
    with app.app_context():
        return (
            create_access_token(str(user_id), fresh=True, additional_claims={**session, "is_admin": False}),
            create_refresh_token(str(user_id), additional_claims=session),
        )


def test_token_of_a_user_that_never_existed_is_refused(app, client):
    access, refresh = forged_tokens(app, 4242)
    assert error_of(client.post("/store/mine", headers=bearer(access))) == "invalid_token"
    assert error_of(client.post("/refresh", headers=bearer(refresh))) == "invalid_token"


def test_token_for_the_right_id_but_another_account_is_refused(app, client, users):
    user = users.create()
    access, refresh = forged_tokens(app, user["id"])  # same id, another account key
    assert error_of(client.get(f"/user/{user['id']}", headers=bearer(access))) == "invalid_token"
    assert error_of(client.post("/refresh", headers=bearer(refresh))) == "invalid_token"


def reset_users_to(app, keep_ids):
    """What a restore or a reset does to users: rows gone, and the id counter
    rewound so the next account gets a freed id again."""
    with app.app_context():
        conn = db.session.connection()
        conn.execute(
            sqlalchemy.text("DELETE FROM users WHERE id NOT IN :ids").bindparams(
                sqlalchemy.bindparam("ids", expanding=True)
            ),
            {"ids": keep_ids},
        )
        next_id = max(keep_ids) + 1
        if db.engine.dialect.name == "postgresql":
            conn.execute(sqlalchemy.text(f"ALTER SEQUENCE users_id_seq RESTART WITH {next_id}"))
        else:
            conn.execute(
                sqlalchemy.text("UPDATE sqlite_sequence SET seq = :seq WHERE name = 'users'"), {"seq": next_id - 1}
            )
        db.session.commit()


def test_reused_id_does_not_inherit_old_tokens(app, client, users):
    first = users.create("first")
    old = users.create("old")
    reset_users_to(app, [first["id"]])
    new = users.create("new")
    assert new["id"] == old["id"]  # the id really is reused
    assert error_of(client.get(f"/user/{new['id']}", headers=old["headers"])) == "invalid_token"
    assert error_of(client.post("/refresh", headers=bearer(old["refresh_token"]))) == "invalid_token"
    assert client.get(f"/user/{new['id']}", headers=new["headers"]).get_json()["username"] == "new"


def test_database_store_drops_expired_entries(app, client, users):
    with app.app_context():
        stale = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=1)
        db.session.add(RevokedSessionModel(sid="old-session", expires_at=stale))
        db.session.commit()
    user = users.create()
    client.post("/logout", headers=user["headers"])
    with app.app_context():
        assert db.session.get(RevokedSessionModel, "old-session") is None
        assert RevokedSessionModel.query.count() == 1


# --- Redis emptied, or holding an earlier database's keys ---------------------------


def test_redis_emptied_changes_no_answer(make_app, redis_url):
    app = make_app(REDIS_URL=redis_url)
    client = app.test_client()
    users = Users(app, client)
    logged_out, deleted, active = users.create(), users.create(), users.create()
    client.post("/logout", headers=logged_out["headers"])
    spare = users.login(deleted["username"])
    client.delete(f"/user/{deleted['id']}", headers=deleted["headers"])
    # What a restart without persistence does to the app's keys (all carry its
    # prefix; a real FLUSHDB would also empty other test runs' keys).
    services.fresh_redis(redis_url)
    assert error_of(client.get("/items", headers=logged_out["headers"])) == "token_revoked"
    assert error_of(client.post("/store/x", headers=bearer(spare["access_token"]))) == "invalid_token"
    assert client.get("/items", headers=active["headers"]).status_code == 200


def test_leftover_redis_keys_do_not_refuse_a_new_account(make_app, redis_url):
    app = make_app(REDIS_URL=redis_url)
    prefix = app.config["REDIS_KEY_PREFIX"]
    r = services.redis_client(redis_url)
    # What the earlier design (and an earlier database) left behind.
    for key in ("revoked:user:1", f"{prefix}revoked:user:1", f"{prefix}revoked:session:1"):
        r.set(key, 1, ex=60)
    client = app.test_client()
    user = Users(app, client).create()
    assert user["id"] == 1
    assert client.post("/store/mine", headers=user["headers"]).status_code == 201


# --- Ending every session ---------------------------------------------------------


def assert_all_revoked(client, user, refreshed):
    for headers, method, path in [
        (user["headers"], "get", "/items"),
        (refreshed, "get", "/items"),
        (bearer(user["refresh_token"]), "post", "/refresh"),
    ]:
        assert error_of(client.open(path, method=method, headers=headers)) == "token_revoked"


def test_password_change_ends_every_session(client, users):
    user = users.create(password="old-password")
    other = users.login(user["username"], "old-password")
    refreshed = users.refreshed_headers(user)
    response = client.put(
        f"/user/{user['id']}/password",
        headers=user["headers"],
        json={"current_password": "old-password", "new_password": "new-password"},
    )
    assert response.status_code == 200 and response.get_json() == {"message": "Password changed."}
    assert_all_revoked(client, user, refreshed)
    assert error_of(client.get("/items", headers=bearer(other["access_token"]))) == "token_revoked"
    assert client.post("/login", json={"username": user["username"], "password": "old-password"}).status_code == 401
    fresh = users.login(user["username"], "new-password")
    assert client.get("/items", headers=bearer(fresh["access_token"])).status_code == 200


def test_password_change_rules(client, users):
    user = users.create(password="old-password")
    other = users.create(admin=True)
    path = f"/user/{user['id']}/password"
    wrong = client.put(
        path, headers=user["headers"], json={"current_password": "not-it-at-all", "new_password": "new-password"}
    )
    assert wrong.status_code == 401 and wrong.get_json()["error"] == "invalid_credentials"
    short = client.put(
        path, headers=user["headers"], json={"current_password": "old-password", "new_password": "short"}
    )
    assert short.status_code == 400 and set(short.get_json()["errors"]) == {"new_password"}
    body = {"current_password": "old-password", "new_password": "new-password"}
    # Only that user: not even an admin sets another user's password.
    assert client.put(path, headers=other["headers"], json=body).status_code == 403
    assert error_of(client.put(path, headers=users.refreshed_headers(user), json=body)) == "fresh_token_required"


def test_end_all_sessions(client, users):
    user = users.create()
    refreshed = users.refreshed_headers(user)
    response = client.delete(f"/user/{user['id']}/sessions", headers=user["headers"])
    assert response.status_code == 200 and response.get_json() == {"message": "All sessions ended."}
    assert_all_revoked(client, user, refreshed)
    again = users.login(user["username"])
    assert client.get("/items", headers=bearer(again["access_token"])).status_code == 200


def test_end_all_sessions_permissions(client, users):
    user, stranger, admin = users.create(), users.create(), users.create(admin=True)
    path = f"/user/{user['id']}/sessions"
    assert client.delete(path, headers=stranger["headers"]).status_code == 403
    assert error_of(client.delete(path, headers=users.refreshed_headers(user))) == "fresh_token_required"
    assert client.delete("/user/9999/sessions", headers=admin["headers"]).status_code == 404
    assert client.delete(path, headers=admin["headers"]).status_code == 200
    assert error_of(client.get("/items", headers=user["headers"])) == "token_revoked"
    assert client.get("/items", headers=admin["headers"]).status_code == 200


# --- A real restore ------------------------------------------------------------------


@pytest.mark.postgres
def test_pg_dump_restore_reuses_an_id_and_old_tokens_die(blocklist_settings):
    """pg_dump; register C and log in; restore the dump; register D, who gets
    C's id. C's access and refresh tokens are refused."""
    for tool in ("pg_dump", "psql"):
        if shutil.which(tool) is None:
            services.unavailable(f"{tool} is not installed")
    url = services.scratch_database("stores_restore")
    app = build_app(url, **blocklist_settings)
    with app.app_context():
        from flask_migrate import upgrade

        upgrade()
    client = app.test_client()
    users = Users(app, client)
    users.create("alice")
    plain_url = str(sqlalchemy.engine.make_url(sqlalchemy_url(url)).set(drivername="postgresql"))
    dump = subprocess.run(
        ["pg_dump", "--clean", "--if-exists", plain_url], check=True, capture_output=True, text=True
    ).stdout
    carol = users.create("carol")
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    subprocess.run(
        ["psql", "-q", "-v", "ON_ERROR_STOP=1", plain_url], input=dump, check=True, capture_output=True, text=True
    )
    dave = users.create("dave")
    assert dave["id"] == carol["id"]
    assert error_of(client.get(f"/user/{dave['id']}", headers=carol["headers"])) == "invalid_token"
    assert error_of(client.post("/refresh", headers=bearer(carol["refresh_token"]))) == "invalid_token"
    assert client.get(f"/user/{dave['id']}", headers=dave["headers"]).get_json()["username"] == "dave"
    dispose(app)
