"""Every token problem is a 401 with the contract's code, and optional JWT on /items."""

from datetime import timedelta

import jwt as pyjwt
import pytest
from flask_jwt_extended import create_access_token

from tests.support.users import bearer


def error_of(response):
    assert response.status_code == 401, response.get_json()
    assert response.headers["Content-Type"] == "application/json"
    return response.get_json()["error"]


def test_missing_token(client):
    assert error_of(client.get("/item/chair")) == "authorization_required"
    assert error_of(client.post("/logout")) == "authorization_required"
    assert error_of(client.post("/refresh")) == "authorization_required"


@pytest.mark.parametrize(
    "header",
    [
        "Bearer not-a-token",
        "Bearer a.b.c",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
    ],
)
def test_malformed_token_or_header(client, header):
    code = error_of(client.get("/item/chair", headers={"Authorization": header}))
    assert code in {"invalid_token", "authorization_required"}


def test_token_signed_with_another_key(client, users):
    user = users.create()
    claims = pyjwt.decode(user["access_token"], options={"verify_signature": False})
    forged = pyjwt.encode(claims, "another-secret-key-that-is-32-bytes-long", algorithm="HS256")
    assert error_of(client.get("/item/chair", headers=bearer(forged))) == "invalid_token"


def test_unsigned_token_is_refused(client, users):
    user = users.create()
    claims = pyjwt.decode(user["access_token"], options={"verify_signature": False})
    unsigned = pyjwt.encode(claims, None, algorithm="none")
    assert error_of(client.get("/item/chair", headers=bearer(unsigned))) == "invalid_token"


def test_tampered_admin_claim_is_refused(client, users):
    user = users.create()
    header, payload, signature = user["access_token"].split(".")
    claims = pyjwt.decode(user["access_token"], options={"verify_signature": False})
    claims["is_admin"] = True
    forged_payload = pyjwt.encode(claims, "k" * 32, algorithm="HS256").split(".")[1]
    tampered = f"{header}.{forged_payload}.{signature}"
    assert error_of(client.delete("/store/anything", headers=bearer(tampered))) == "invalid_token"


def test_refresh_token_where_access_token_belongs(client, users):
    user = users.create()
    assert error_of(client.get("/item/chair", headers=bearer(user["refresh_token"]))) == "invalid_token"
    assert error_of(client.get("/items", headers=bearer(user["refresh_token"]))) == "invalid_token"


def test_access_token_where_refresh_token_belongs(client, users):
    user = users.create()
    assert error_of(client.post("/refresh", headers=user["headers"])) == "invalid_token"


def test_cached_token_still_expires(make_app):
    """Verified tokens are cached per process; the cache must not outlive `exp`.
    No waiting: the token is put in the cache as if verified while it was
    still valid, and its `exp` has passed since."""
    app = make_app(JWT_ACCESS_TOKEN_EXPIRES=timedelta(seconds=-5))
    client = app.test_client()
    client.post("/register", json={"username": "alice", "password": "password1"})
    token = client.post("/login", json={"username": "alice", "password": "password1"}).get_json()["access_token"]
    claims = pyjwt.decode(token, options={"verify_signature": False})
    app.extensions.setdefault("verified_tokens", {})[token] = claims
    assert error_of(client.get("/items", headers=bearer(token))) == "token_expired"


def test_expired_token(make_app):
    app = make_app(JWT_ACCESS_TOKEN_EXPIRES=timedelta(seconds=-1))
    client = app.test_client()
    client.post("/register", json={"username": "alice", "password": "password1"})
    token = client.post("/login", json={"username": "alice", "password": "password1"}).get_json()["access_token"]
    assert error_of(client.get("/item/chair", headers=bearer(token))) == "token_expired"
    assert error_of(client.get("/items", headers=bearer(token))) == "token_expired"


def test_token_without_session_claim_is_refused(app, client, users):
    user = users.create()
    with app.app_context():
        # Signed with our key, but not issued by /login: no session id.
        token = create_access_token(identity=str(user["id"]))
    assert error_of(client.get("/item/chair", headers=bearer(token))) == "invalid_token"


def test_fresh_token_required_for_posting_items(client, users, store):
    user = users.create()
    response = client.post(
        "/item/chair", headers=users.refreshed_headers(user), json={"price": 1, "store_id": store["id"]}
    )
    assert error_of(response) == "fresh_token_required"


def test_items_list_without_token_gives_names(client, owner, store):
    client.post("/item/chair", headers=owner["headers"], json={"price": 1, "store_id": store["id"]})
    body = client.get("/items").get_json()
    assert body["items"] == ["chair"]
    assert body["message"] == "More data available if you log in."


def test_items_list_with_bad_token_is_401_not_anonymous(client):
    assert error_of(client.get("/items", headers=bearer("junk"))) == "invalid_token"


def test_401_carries_www_authenticate(client):
    assert client.get("/item/chair").headers["WWW-Authenticate"] == "Bearer"


# An RS256 token (a throw-away 2048-bit RSA key; claims of user 1, admin, valid
# until 2100), made once with PyJWT so the suite needs no RSA library.
RS256_TOKEN = (
    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIiwic2lkIjoiMDAwMDAwMDAwMDAwMDAwMDAwMDA"
    "wMDAwMDAwMDAwMDAiLCJ0eXBlIjoiYWNjZXNzIiwiZnJlc2giOnRydWUsImlzX2FkbWluIjp0cnVlLCJpYXQiOjE"
    "3OTU0MDAwMDAsIm5iZiI6MTc5NTQwMDAwMCwiZXhwIjo0MTAyNDQ0ODAwLCJqdGkiOiJyczI1Ni1hdHRhY2sifQ."
    "m2d4kwaGlZwlCQbzTTqiT01eQneC4zL9j6L2QV1_vhTZ4lT7IOEyiUyfmpHuvtUoZGESpKmcRf5zWFLqGcVpBgh8"
    "lsLGRA3lVD2kCn6lvpTRgUhibC8JC4KfnDLjPS6LV71T41dGnjE24GymVfGo5wXciXscmnSrZLX0SmgowyuEpyM3"
    "Tv2NWOSLEZ9hRowNVWgm6JeORNanue6VRDIbhRLzE1wd8x7ljCIRnzP_VxeS_IYgbE3ame1j30uckWAamIqpqlvC"
    "crtKuPYiFlhzvhI4ocCeOCtslbcCbgQzESVgjL3tmKuuxJpgdZ6yQVgVB3AFi76Rim71Ousli9urRA"
)


def test_rs256_token_is_refused(client, users):
    """Only the configured algorithm (HS256) is accepted: no HS/RS confusion."""
    users.create()
    assert error_of(client.get("/item/chair", headers=bearer(RS256_TOKEN))) == "invalid_token"


def test_hs512_token_with_our_key_is_refused(app, client, users):
    user = users.create()
    claims = pyjwt.decode(user["access_token"], options={"verify_signature": False})
    token = pyjwt.encode(claims, app.config["JWT_SECRET_KEY"], algorithm="HS512")
    assert error_of(client.get("/item/chair", headers=bearer(token))) == "invalid_token"


def test_forged_subject_is_refused(client, users):
    """A token naming another user, signed with a guessed key, is refused."""
    alice, bob = users.create(), users.create()
    claims = pyjwt.decode(alice["access_token"], options={"verify_signature": False})
    claims["sub"] = str(bob["id"])
    token = pyjwt.encode(claims, "guessed-key-guessed-key-guessed-key!", algorithm="HS256")
    assert error_of(client.get(f"/user/{bob['id']}", headers=bearer(token))) == "invalid_token"


# --- The Authorization header, and our messages for a bad token ----------------


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
def test_bearer_scheme_in_any_case(client, owner, scheme):
    response = client.get("/items", headers={"Authorization": f"{scheme} {owner['access_token']}"})
    assert response.status_code == 200 and "message" not in response.get_json()


@pytest.mark.parametrize("header", ["JWT anything", "Basic dXNlcjpwYXNz", "Token abc", "Bearer", "Bearer a b"])
def test_any_other_authorization_is_401_even_where_optional(client, header):
    response = client.get("/items", headers={"Authorization": header})
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_token"


def test_invalid_token_messages_are_ours(client, owner):
    cases = [
        (owner["refresh_token"], "This is a refresh token; send an access token."),
        (owner["access_token"][:-4] + "AAAA", "The token's signature is not valid."),
        ("a.b.c", "The token is malformed."),
    ]
    for token, message in cases:
        body = client.get("/items", headers=bearer(token)).get_json()
        assert body == {"error": "invalid_token", "message": message}
    body = client.post("/refresh", headers=owner["headers"]).get_json()
    assert body["message"] == "This is an access token; send the refresh token."
