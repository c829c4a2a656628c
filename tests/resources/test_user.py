"""Registration, login, refresh, and one user by id."""

import jwt as pyjwt
import pytest

from tests.support.users import bearer


def claims(token):
    return pyjwt.decode(token, options={"verify_signature": False})


def test_register_creates_user(client):
    response = client.post("/register", json={"username": "alice", "password": "password1"})
    assert response.status_code == 201
    assert response.get_json() == {"message": "User created successfully.", "id": 1}


def test_register_accepts_form_body(client):
    response = client.post("/register", data={"username": "alice", "password": "password1"})
    assert response.status_code == 201


def test_register_taken_username_is_409_case_insensitively(client):
    client.post("/register", json={"username": "alice", "password": "password1"})
    response = client.post("/register", json={"username": "ALICE", "password": "password2"})
    assert response.status_code == 409
    assert response.get_json()["error"] == "conflict"


@pytest.mark.parametrize(
    "body, bad_fields",
    [
        ({}, {"username", "password"}),
        ({"username": "al", "password": "short"}, {"username", "password"}),
        ({"username": "a" * 81, "password": "p" * 129}, {"username", "password"}),
        ({"username": "has space", "password": "password1"}, {"username"}),
        ({"username": 12345, "password": 12345678}, {"username", "password"}),
        ({"username": None, "password": ["password1"]}, {"username", "password"}),
    ],
)
def test_register_validation_lists_every_bad_field(client, body, bad_fields):
    response = client.post("/register", json=body)
    assert response.status_code == 400
    payload = response.get_json()
    assert payload["error"] == "validation_error"
    assert set(payload["errors"]) == bad_fields
    assert isinstance(payload["message"], str)


def test_login_returns_fresh_access_and_refresh_tokens(client, users):
    user = users.create("alice")
    access, refresh = claims(user["access_token"]), claims(user["refresh_token"])
    assert access["sub"] == str(user["id"]) and refresh["sub"] == str(user["id"])
    assert access["type"] == "access" and access["fresh"] is True
    assert access["is_admin"] is False
    assert refresh["type"] == "refresh"
    assert access["exp"] - access["iat"] == 900
    assert refresh["exp"] - refresh["iat"] == 2592000


def test_login_response_is_not_cached(client, users):
    users.create("alice")
    response = client.post("/login", json={"username": "alice", "password": "correct-horse"})
    assert response.headers["Cache-Control"] == "no-store"


def test_login_is_case_insensitive_on_username(client, users):
    users.create("alice")
    assert client.post("/login", json={"username": "ALICE", "password": "correct-horse"}).status_code == 200


def test_login_failures_look_the_same(client, users):
    users.create("alice")
    wrong_password = client.post("/login", json={"username": "alice", "password": "wrong-pass"})
    unknown_user = client.post("/login", json={"username": "nobody", "password": "wrong-pass"})
    assert wrong_password.status_code == unknown_user.status_code == 401
    assert (
        wrong_password.get_json()
        == unknown_user.get_json()
        == {"error": "invalid_credentials", "message": "Invalid username or password."}
    )


def test_login_missing_fields_is_validation_error(client):
    response = client.post("/login", json={})
    assert response.status_code == 400
    assert set(response.get_json()["errors"]) == {"username", "password"}


def test_refresh_gives_non_fresh_access_token(client, users):
    user = users.create("alice")
    response = client.post("/refresh", headers=bearer(user["refresh_token"]))
    assert response.status_code == 200
    token = response.get_json()["access_token"]
    assert set(response.get_json()) == {"access_token"}
    assert claims(token)["fresh"] is False
    assert claims(token)["sub"] == str(user["id"])


def test_refresh_reads_admin_flag_at_issue_time(app, client, users):
    user = users.create("alice")
    runner = app.test_cli_runner()
    assert runner.invoke(args=["make-admin", "alice"]).exit_code == 0
    token = client.post("/refresh", headers=bearer(user["refresh_token"])).get_json()["access_token"]
    assert claims(token)["is_admin"] is True


def test_get_own_user(client, users):
    user = users.create("alice")
    response = client.get(f"/user/{user['id']}", headers=user["headers"])
    assert response.status_code == 200
    assert response.get_json() == {"id": user["id"], "username": "alice", "is_admin": False}


def test_get_other_user_is_forbidden_unless_admin(client, users):
    alice, bob = users.create("alice"), users.create("bob")
    admin = users.create("root", admin=True)
    assert client.get(f"/user/{bob['id']}", headers=alice["headers"]).get_json()["error"] == "forbidden"
    assert client.get(f"/user/{bob['id']}", headers=admin["headers"]).status_code == 200


def test_get_missing_user_is_404_for_admin(client, users):
    admin = users.create("root", admin=True)
    response = client.get("/user/999", headers=admin["headers"])
    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"


def test_get_user_needs_token(client):
    response = client.get("/user/1")
    assert response.status_code == 401
    assert response.get_json()["error"] == "authorization_required"


def test_delete_own_user_with_fresh_token(client, users):
    user = users.create("alice")
    response = client.delete(f"/user/{user['id']}", headers=user["headers"])
    assert response.status_code == 200
    assert response.get_json() == {"message": "User deleted."}
    # The deleted user's tokens are refused from now on.
    again = client.get("/items", headers=user["headers"])
    assert again.status_code == 401 and again.get_json()["error"] == "invalid_token"
    refresh = client.post("/refresh", headers=bearer(user["refresh_token"]))
    assert refresh.status_code == 401 and refresh.get_json()["error"] == "invalid_token"


def test_delete_user_needs_fresh_token(client, users):
    user = users.create("alice")
    response = client.delete(f"/user/{user['id']}", headers=users.refreshed_headers(user))
    assert response.status_code == 401
    assert response.get_json()["error"] == "fresh_token_required"


def test_delete_other_user_forbidden_but_admin_may(client, users):
    alice, bob = users.create("alice"), users.create("bob")
    admin = users.create("root", admin=True)
    assert client.delete(f"/user/{bob['id']}", headers=alice["headers"]).status_code == 403
    assert client.delete(f"/user/{bob['id']}", headers=admin["headers"]).status_code == 200
    assert client.delete(f"/user/{bob['id']}", headers=admin["headers"]).status_code == 404


def test_deleted_user_id_is_never_reused(client, users):
    alice = users.create("alice")
    client.delete(f"/user/{alice['id']}", headers=alice["headers"])
    newcomer = users.create("bob")
    assert newcomer["id"] != alice["id"]
    assert client.get("/items", headers=alice["headers"]).status_code == 401


def test_make_admin_command(app, client, users):
    user = users.create("alice")
    result = app.test_cli_runner().invoke(args=["make-admin", "alice"])
    assert result.exit_code == 0 and "alice" in result.output
    # The claim takes effect at the next login.
    assert claims(user["access_token"])["is_admin"] is False
    assert claims(users.login("alice")["access_token"])["is_admin"] is True


def test_make_admin_unknown_user_fails(app):
    result = app.test_cli_runner().invoke(args=["make-admin", "ghost"])
    assert result.exit_code != 0
    assert "ghost" in result.output


@pytest.mark.parametrize(
    "body",
    [
        '{"username": "a\\u0000bc", "password": "password1"}',
        '{"username": "\\udc80abc", "password": "password1"}',
        '{"username": "surrogate", "password": "\\udc80xxxxxxxxx"}',
    ],
)
def test_unstorable_text_is_validation_error(client, body):
    for path in ("/register", "/login"):
        response = client.post(path, data=body, content_type="application/json")
        assert response.status_code == 400, (path, response.get_json())
        assert response.get_json()["error"] == "validation_error"


def test_deeply_nested_json_is_bad_request(client):
    body = "[" * 20000 + "]" * 20000
    response = client.post("/register", data=body, content_type="application/json")
    assert response.status_code == 400 and response.get_json()["error"] == "bad_request"
