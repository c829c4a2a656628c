"""What a hostile client tried, and the answer each now gets (in process;
the server and Nginx side is in tests/e2e and tests/test_reliability.py)."""

import unicodedata
from urllib.parse import quote

import pytest

from tests.conftest import Users, bearer


@pytest.fixture
def headers(owner):
    return owner["headers"]


def test_store_answers_embed_a_bounded_number_of_items(make_app):
    app = make_app(STORE_ITEMS_EMBEDDED=3)
    client = app.test_client()
    user = Users(app, client).create()
    store = client.post("/store/big", headers=user["headers"]).get_json()
    client.post("/store/small", headers=user["headers"])
    for n in range(5):
        client.post(f"/item/i{n}", headers=user["headers"], json={"price": 1, "store_id": store["id"]})
    one = client.get("/store/big").get_json()
    assert [i["name"] for i in one["items"]] == ["i0", "i1", "i2"] and one["items_total"] == 5
    listed = client.get("/stores").get_json()["stores"]
    assert [(s["name"], len(s["items"]), s["items_total"]) for s in listed] == [("big", 3, 5), ("small", 0, 0)]
    # The rest, paged, by store.
    rest = client.get(f"/items?store_id={store['id']}&page=2&per_page=3", headers=user["headers"])
    assert [i["name"] for i in rest.get_json()["items"]] == ["i3", "i4"]
    assert rest.get_json()["total"] == 5
    assert "store_id=" in rest.headers["Link"] and 'rel="prev"' in rest.headers["Link"]
    anonymous = client.get(f"/items?store_id={store['id']}").get_json()
    assert anonymous["items"] == [f"i{n}" for n in range(5)]


def test_page_past_the_end_is_empty(client, headers, store):
    client.post("/item/a", headers=headers, json={"price": 1, "store_id": store["id"]})
    for path in ("/items?page=1000000000&per_page=1000", "/stores?page=1000000000&per_page=1000"):
        body = client.get(path, headers=headers).get_json()
        key = "items" if path.startswith("/items") else "stores"
        assert body[key] == [] and body["total"] == 1


@pytest.mark.parametrize("store_id", [9223372036854775808, 2**31, 1e300, -(2**63)])
def test_integers_beyond_the_column_are_400(client, headers, store_id):
    response = client.put("/item/x", headers=headers, json={"price": 1, "store_id": store_id})
    assert response.status_code == 400 and set(response.get_json()["errors"]) == {"store_id"}
    huge = client.get(f"/items?store_id={2**63}", headers=headers)
    assert huge.status_code == 400


def test_names_are_normalised_to_nfc(client, headers):
    nfd = unicodedata.normalize("NFD", "café")
    assert nfd != "café"
    created = client.post("/store/" + quote(nfd), headers=headers)
    assert created.status_code == 201 and created.get_json()["name"] == "café"
    again = client.post("/store/" + quote("café"), headers=headers)
    assert again.status_code == 409


@pytest.mark.parametrize(
    "name", ["chair\u200b", "\ufeffchair", "ch\u202eriah", "a\u2066b", "soft\u00adhyphen", "bell\x07"]
)
def test_invisible_and_direction_characters_are_refused(client, headers, name):
    response = client.post("/store/" + quote(name), headers=headers)
    assert response.status_code == 400 and set(response.get_json()["errors"]) == {"name"}


def test_item_names_may_not_end_in_image(client, headers, store):
    body = {"price": 1, "store_id": store["id"]}
    # The path also names the image of item "chair": no item is created.
    assert client.post("/item/" + quote("chair/image", safe=""), headers=headers, json=body).status_code == 400
    # A name that ends so only after trimming reaches the item route: refused.
    response = client.post("/item/" + quote("chair/image ", safe=""), headers=headers, json=body)
    assert response.status_code == 400 and set(response.get_json()["errors"]) == {"name"}


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


def test_registration_is_limited_per_address_and_taken_names_count(make_app):
    client = make_app(REGISTER_RATE_LIMIT="3 per minute").test_client()
    here = {"REMOTE_ADDR": "10.1.1.1"}

    def register(name):
        return client.post("/register", json={"username": name, "password": "password1"}, environ_base=here).status_code

    assert [register("taken"), register("taken"), register("fresh")] == [201, 409, 201]
    # Probing names costs the same budget as creating accounts.
    refused = client.post("/register", json={"username": "taken", "password": "password1"}, environ_base=here)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    other = client.post(
        "/register", json={"username": "other", "password": "password1"}, environ_base={"REMOTE_ADDR": "10.1.1.2"}
    )
    assert other.status_code == 201


def test_login_limit_has_no_burst_at_the_window_edge(make_app, monkeypatch):
    """A moving window: 3 per minute means 3 in any 60 s, not 3 at 0:59 and 3 more at 1:00."""
    import time as real_time

    now = [1_000_000.0 + 59.0]
    monkeypatch.setattr(real_time, "time", lambda: now[0])
    client = make_app(LOGIN_RATE_LIMIT="3 per minute").test_client()

    def attempt():
        return client.post("/login", json={"username": "x", "password": "p"}).status_code

    assert [attempt() for _ in range(3)] == [401, 401, 401]
    now[0] += 2  # across a fixed window's boundary
    assert [attempt() for _ in range(3)] == [429, 429, 429]
    now[0] += 60
    assert attempt() == 401
