"""Stores: create (the caller owns it), read, delete (owner or admin, never
while holding items), and the paged list."""

from urllib.parse import quote

import pytest

from tests.support.users import Users


def test_create_and_get_store(client, users):
    user = users.create()
    response = client.post("/store/My Wonderful Store", headers=user["headers"])
    assert response.status_code == 201
    assert response.get_json() == {
        "id": 1,
        "name": "My Wonderful Store",
        "owner_id": user["id"],
        "items": [],
        "items_total": 0,
    }
    assert client.get("/store/My Wonderful Store").get_json() == response.get_json()


def test_create_store_needs_token(client):
    assert client.post("/store/shop").status_code == 401


def test_duplicate_store_is_409(client, users, store):
    response = client.post("/store/shop", headers=users.create()["headers"])
    assert response.status_code == 409
    assert response.get_json()["error"] == "conflict"


def test_missing_store_is_404(client):
    response = client.get("/store/nowhere")
    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"


@pytest.mark.parametrize("name", ["Café Ünïcode", "商店", "a/b slash", "x" * 80, "emoji 🛒"])
def test_unicode_and_url_encoded_names(client, users, name):
    headers = users.create()["headers"]
    created = client.post("/store/" + quote(name, safe=""), headers=headers)
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["name"] == name
    assert client.get("/store/" + quote(name, safe="")).get_json()["name"] == name


def test_names_are_trimmed(client, users):
    created = client.post("/store/%20%20shop%20", headers=users.create()["headers"])
    assert created.get_json()["name"] == "shop"
    assert client.get("/store/shop").status_code == 200


@pytest.mark.parametrize("name", ["%20%20%20", "x" * 81])
def test_bad_names_are_validation_errors(client, users, name):
    response = client.post("/store/" + name, headers=users.create()["headers"])
    assert response.status_code == 400
    assert response.get_json()["error"] == "validation_error"
    assert "name" in response.get_json()["errors"]


def test_store_lists_its_items(client, owner, store):
    headers = owner["headers"]
    client.post("/item/chair", headers=headers, json={"price": 12.99, "store_id": store["id"]})
    body = client.get("/store/shop").get_json()
    assert body["items"] == [{"id": 1, "name": "chair", "price": 12.99, "store_id": store["id"], "image_url": None}]


def test_delete_store_is_owner_or_admin_only(client, users, owner, store):
    response = client.delete("/store/shop", headers=users.create()["headers"])
    assert response.status_code == 403
    assert response.get_json()["error"] == "forbidden"
    client.post("/store/own", headers=owner["headers"])
    assert client.delete("/store/own", headers=owner["headers"]).status_code == 200
    admin = users.create(admin=True)
    response = client.delete("/store/shop", headers=admin["headers"])
    assert response.status_code == 200
    assert response.get_json() == {"message": "Store deleted."}
    assert client.delete("/store/shop", headers=admin["headers"]).status_code == 404


def test_delete_store_holding_items_is_409(client, users, store):
    admin = users.create(admin=True)
    client.post("/item/chair", headers=admin["headers"], json={"price": 1, "store_id": store["id"]})
    response = client.delete("/store/shop", headers=admin["headers"])
    assert response.status_code == 409
    assert response.get_json()["error"] == "conflict"
    assert client.get("/store/shop").status_code == 200


def test_store_list_pages_by_id(client, users):
    headers = users.create()["headers"]
    for n in range(5):
        client.post(f"/store/s{n}", headers=headers)
    first = client.get("/stores?per_page=2")
    body = first.get_json()
    assert [s["name"] for s in body["stores"]] == ["s0", "s1"]
    assert (body["page"], body["per_page"], body["total"]) == (1, 2, 5)
    assert first.headers["Link"] == '</stores?page=2&per_page=2>; rel="next"'
    middle = client.get("/stores?page=2&per_page=2")
    assert middle.headers["Link"] == (
        '</stores?page=3&per_page=2>; rel="next", </stores?page=1&per_page=2>; rel="prev"'
    )
    last = client.get("/stores?page=3&per_page=2")
    assert [s["name"] for s in last.get_json()["stores"]] == ["s4"]
    assert last.headers["Link"] == '</stores?page=2&per_page=2>; rel="prev"'


def test_store_list_defaults(client):
    body = client.get("/stores").get_json()
    assert body == {"stores": [], "page": 1, "per_page": 100, "total": 0}


@pytest.mark.parametrize(
    "query, field",
    [
        ("page=0", "page"),
        ("page=-1", "page"),
        ("page=abc", "page"),
        ("per_page=0", "per_page"),
        ("per_page=1001", "per_page"),
        ("per_page=1.5", "per_page"),
        ("page=%C2%B2", "page"),
    ],
)
def test_bad_paging_is_400(client, query, field):
    response = client.get(f"/stores?{query}")
    assert response.status_code == 400
    assert response.get_json()["error"] == "validation_error"
    assert field in response.get_json()["errors"]


@pytest.mark.parametrize("raw, name", [("a%0Ab", "a\nb"), ("%2Fab", "/ab")])
def test_line_breaks_and_leading_slash_in_names(client, users, raw, name):
    created = client.post(f"/store/{raw}", headers=users.create()["headers"])
    assert created.status_code == 201 and created.get_json()["name"] == name


def test_nul_in_name_is_validation_error(client, users):
    response = client.post("/store/a%00b", headers=users.create()["headers"])
    assert response.status_code == 400 and "name" in response.get_json()["errors"]


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
