"""Items: create (fresh token), read, create-or-update, delete (admin), list, and price rules."""

import pytest


@pytest.fixture
def headers(owner):
    """The store owner's token: only they (or an admin) may change its items."""
    return owner["headers"]


def post_item(client, headers, name="chair", **body):
    return client.post(f"/item/{name}", headers=headers, json=body)


def test_create_and_get_item(client, headers, store):
    response = post_item(client, headers, price=12.99, store_id=store["id"])
    assert response.status_code == 201
    assert response.get_json() == {"id": 1, "name": "chair", "price": 12.99, "store_id": store["id"], "image_url": None}
    assert client.get("/item/chair", headers=headers).get_json() == response.get_json()


def test_get_item_needs_token_and_existing_item(client, headers):
    assert client.get("/item/chair").status_code == 401
    response = client.get("/item/chair", headers=headers)
    assert response.status_code == 404 and response.get_json()["error"] == "not_found"


def test_duplicate_item_is_409(client, headers, store):
    post_item(client, headers, price=1, store_id=store["id"])
    response = post_item(client, headers, price=2, store_id=store["id"])
    assert response.status_code == 409
    assert response.get_json()["error"] == "conflict"


def test_item_names_are_unique_across_stores(client, headers, store):
    other = client.post("/store/other", headers=headers).get_json()
    post_item(client, headers, price=1, store_id=store["id"])
    assert post_item(client, headers, price=1, store_id=other["id"]).status_code == 409


def test_create_item_from_form_body(client, headers, store):
    response = client.post("/item/lamp", headers=headers, data={"price": "7.50", "store_id": str(store["id"])})
    assert response.status_code == 201
    assert response.get_json()["price"] == 7.5


@pytest.mark.parametrize(
    "price",
    [
        float("nan"),
        float("inf"),
        float("-inf"),
        -0.01,
        12.999,
        10_000_000,
        1e20,
        True,
        "12.99",
        None,
        [1],
        {"a": 1},
    ],
)
def test_bad_prices_are_rejected(client, headers, store, price):
    response = post_item(client, headers, price=price, store_id=store["id"])
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "validation_error" and set(body["errors"]) == {"price"}


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_standard_json_numbers_are_rejected(client, headers, store, raw):
    body = f'{{"price": {raw}, "store_id": {store["id"]}}}'
    response = client.post("/item/chair", headers=headers, data=body, content_type="application/json")
    assert response.status_code == 400
    assert "price" in response.get_json()["errors"]


@pytest.mark.parametrize("form_price", ["nan", "inf", "-1", "1.234", "abc", "", "1e7"])
def test_bad_form_prices_are_rejected(client, headers, store, form_price):
    response = client.post("/item/chair", headers=headers, data={"price": form_price, "store_id": store["id"]})
    assert response.status_code == 400
    assert "price" in response.get_json()["errors"]


@pytest.mark.parametrize(
    "price, stored", [(0, 0), (0.1, 0.1), (12.99, 12.99), (9999999.99, 9999999.99), (12.5, 12.5), (3, 3)]
)
def test_good_prices_round_trip_exactly(client, headers, store, price, stored):
    response = post_item(client, headers, price=price, store_id=store["id"])
    assert response.status_code == 201
    assert response.get_json()["price"] == stored
    assert client.get("/item/chair", headers=headers).get_json()["price"] == stored


def test_float_noise_is_rejected_not_rounded(client, headers, store):
    noisy = post_item(client, headers, price=0.1 + 0.2, store_id=store["id"])  # 0.30000000000000004
    assert noisy.status_code == 400
    response = post_item(client, headers, name="x", price=0.3, store_id=store["id"])
    assert '"price":0.3,' in response.get_data(as_text=True)


def test_store_id_of_no_store_is_validation_error(client, headers):
    response = post_item(client, headers, price=1, store_id=999)
    assert response.status_code == 400
    assert response.get_json()["errors"] == {"store_id": "No store has this id."}


@pytest.mark.parametrize("store_id", [0, -1, "1", 1.5, True, None])
def test_bad_store_ids(client, headers, store, store_id):
    response = post_item(client, headers, price=1, store_id=store_id)
    assert response.status_code == 400
    assert "store_id" in response.get_json()["errors"]


def test_every_bad_field_is_reported(client, headers):
    response = client.post("/item/chair", headers=headers, json={})
    assert set(response.get_json()["errors"]) == {"price", "store_id"}


def test_put_creates_then_updates(client, headers, store):
    created = client.put("/item/desk", headers=headers, json={"price": 5, "store_id": store["id"]})
    assert created.status_code == 201
    other = client.post("/store/other", headers=headers).get_json()
    updated = client.put("/item/desk", headers=headers, json={"price": 6.5, "store_id": other["id"]})
    assert updated.status_code == 200
    assert updated.get_json() == {
        "id": created.get_json()["id"],
        "name": "desk",
        "price": 6.5,
        "store_id": other["id"],
        "image_url": None,
    }


def test_put_needs_a_fresh_token_only_to_create(client, users, owner, store):
    stale = users.refreshed_headers(owner)
    body = {"price": 5, "store_id": store["id"]}
    response = client.put("/item/desk", headers=stale, json=body)
    assert response.status_code == 401 and response.get_json()["error"] == "fresh_token_required"
    assert client.get("/item/desk", headers=owner["headers"]).status_code == 404
    assert client.put("/item/desk", headers=owner["headers"], json=body).status_code == 201
    response = client.put("/item/desk", headers=stale, json={**body, "price": 6})
    assert response.status_code == 200 and response.get_json()["price"] == 6


def test_put_validates(client, headers):
    response = client.put("/item/desk", headers=headers, json={"price": -1, "store_id": 42})
    assert response.status_code == 400
    assert set(response.get_json()["errors"]) == {"price"}
    response = client.put("/item/desk", headers=headers, json={"price": 1, "store_id": 42})
    assert set(response.get_json()["errors"]) == {"store_id"}


def test_delete_item(client, headers, store):
    post_item(client, headers, price=1, store_id=store["id"])
    response = client.delete("/item/chair", headers=headers)
    assert response.status_code == 200 and response.get_json() == {"message": "Item deleted."}
    assert client.delete("/item/chair", headers=headers).status_code == 404


def test_item_list_with_token_and_paging(client, headers, store):
    for n in range(3):
        post_item(client, headers, name=f"i{n}", price=n, store_id=store["id"])
    body = client.get("/items?per_page=2&page=2", headers=headers).get_json()
    assert body == {
        "items": [{"id": 3, "name": "i2", "price": 2, "store_id": store["id"], "image_url": None}],
        "page": 2,
        "per_page": 2,
        "total": 3,
    }


def test_item_list_without_token(client, headers, store):
    post_item(client, headers, name="a", price=1, store_id=store["id"])
    response = client.get("/items?per_page=1")
    assert response.get_json() == {
        "items": ["a"],
        "message": "More data available if you log in.",
        "page": 1,
        "per_page": 1,
        "total": 1,
    }
    assert "Link" not in response.headers
