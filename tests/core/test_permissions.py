"""Who may change what: a store belongs to the user who created it; its items
are changed (created, updated, moved, deleted) by that owner or an admin;
stores without an owner only by admins. Reads stay open. Quotas bound what
one account can fill."""

import threading

import pytest
import sqlalchemy

from db import db
from tests.support.users import Users

ITEM = {"price": 1}


@pytest.fixture
def world(client, users):
    """Bob owns `bobs` with `bob-widget`; Mallory owns `mallorys`; an admin."""
    bob, mallory, admin = users.create("bob"), users.create("mallory"), users.create("root", admin=True)
    bobs = client.post("/store/bobs", headers=bob["headers"]).get_json()
    mallorys = client.post("/store/mallorys", headers=mallory["headers"]).get_json()
    created = client.post("/item/bob-widget", headers=bob["headers"], json={**ITEM, "store_id": bobs["id"]})
    assert created.status_code == 201
    return {"bob": bob, "mallory": mallory, "admin": admin, "bobs": bobs["id"], "mallorys": mallorys["id"]}


def status(response, expected, error=None):
    assert response.status_code == expected, response.get_json()
    if error:
        assert response.get_json()["error"] == error
    return response.get_json()


def test_store_json_names_its_owner(client, world):
    assert client.get("/store/bobs").get_json()["owner_id"] == world["bob"]["id"]


def test_others_cannot_change_my_items(client, users, world):
    m = world["mallory"]["headers"]
    forbidden = [
        client.put("/item/bob-widget", headers=m, json={"price": 0, "store_id": world["bobs"]}),
        client.put("/item/bob-widget", headers=m, json={"price": 0, "store_id": world["mallorys"]}),
        client.put("/item/bob-new", headers=m, json={**ITEM, "store_id": world["bobs"]}),
        client.post("/item/bob-new", headers=m, json={**ITEM, "store_id": world["bobs"]}),
        client.delete("/item/bob-widget", headers=m),
        client.delete("/store/bobs", headers=m),
    ]
    for response in forbidden:
        status(response, 403, "forbidden")
    # The same with a non-fresh token (the course's PUT path once skipped the checks).
    stale = users.refreshed_headers(world["mallory"])
    status(client.put("/item/bob-widget", headers=stale, json={"price": 0, "store_id": world["bobs"]}), 403)
    item = client.get("/item/bob-widget", headers=m).get_json()
    assert (item["price"], item["store_id"]) == (1, world["bobs"])
    assert client.get("/item/bob-new", headers=m).status_code == 404


def test_moving_needs_both_stores(client, world):
    b, m = world["bob"]["headers"], world["mallory"]["headers"]
    # Bob may not move his item into Mallory's store; Mallory may not pull it into hers.
    status(client.put("/item/bob-widget", headers=b, json={**ITEM, "store_id": world["mallorys"]}), 403)
    client.post("/item/m-thing", headers=m, json={**ITEM, "store_id": world["mallorys"]})
    status(client.put("/item/m-thing", headers=b, json={**ITEM, "store_id": world["bobs"]}), 403)
    client.post("/store/bobs-2", headers=b)
    second = client.get("/store/bobs-2").get_json()["id"]
    moved = status(client.put("/item/bob-widget", headers=b, json={**ITEM, "store_id": second}), 200)
    assert moved["store_id"] == second


def test_owner_and_admin_may(client, world):
    b, a = world["bob"]["headers"], world["admin"]["headers"]
    status(client.put("/item/bob-widget", headers=b, json={"price": 2, "store_id": world["bobs"]}), 200)
    status(client.put("/item/bob-widget", headers=a, json={"price": 3, "store_id": world["mallorys"]}), 200)
    status(client.post("/item/admin-made", headers=a, json={**ITEM, "store_id": world["bobs"]}), 201)
    status(client.delete("/item/admin-made", headers=a), 200)
    status(client.delete("/item/bob-widget", headers=a), 200)
    status(client.delete("/store/bobs", headers=b), 200)
    status(client.delete("/store/mallorys", headers=a), 200)


def test_reads_stay_open(client, world):
    assert client.get("/store/bobs").status_code == 200
    assert client.get("/stores").status_code == 200
    assert client.get("/item/bob-widget", headers=world["mallory"]["headers"]).status_code == 200


def test_ownerless_store_is_admins_only(app, client, world):
    """Stores from before owners existed (owner_id NULL), or whose owner was deleted."""
    with app.app_context():
        db.session.execute(sqlalchemy.text("UPDATE stores SET owner_id = NULL WHERE name = 'bobs'"))
        db.session.commit()
    assert client.get("/store/bobs").get_json()["owner_id"] is None
    b, a = world["bob"]["headers"], world["admin"]["headers"]
    status(client.put("/item/bob-widget", headers=b, json={"price": 9, "store_id": world["bobs"]}), 403)
    status(client.delete("/item/bob-widget", headers=b), 403)
    status(client.put("/item/bob-widget", headers=a, json={"price": 9, "store_id": world["bobs"]}), 200)


def test_deleting_the_owner_leaves_the_store_ownerless(client, world):
    bob = world["bob"]
    status(client.delete(f"/user/{bob['id']}", headers=bob["headers"]), 200)
    assert client.get("/store/bobs").get_json()["owner_id"] is None


# --- Quotas -----------------------------------------------------------------------------


def test_store_quota(make_app):
    app = make_app(MAX_STORES_PER_USER=2)
    client = app.test_client()
    users = Users(app, client)
    user, admin = users.create(), users.create(admin=True)
    for name in ("a", "b"):
        status(client.post(f"/store/{name}", headers=user["headers"]), 201)
    status(client.post("/store/c", headers=user["headers"]), 403, "quota_exceeded")
    for name in ("d", "e", "f"):
        status(client.post(f"/store/{name}", headers=admin["headers"]), 201)  # admins are exempt


def test_item_quota_on_create_and_move(make_app):
    app = make_app(MAX_ITEMS_PER_STORE=2)
    client = app.test_client()
    users = Users(app, client)
    user, admin = users.create(), users.create(admin=True)
    full = client.post("/store/full", headers=user["headers"]).get_json()["id"]
    other = client.post("/store/other", headers=user["headers"]).get_json()["id"]
    for name in ("i1", "i2"):
        status(client.post(f"/item/{name}", headers=user["headers"], json={**ITEM, "store_id": full}), 201)
    status(client.post("/item/i3", headers=user["headers"], json={**ITEM, "store_id": full}), 403, "quota_exceeded")
    status(client.put("/item/i3", headers=user["headers"], json={**ITEM, "store_id": full}), 403, "quota_exceeded")
    client.post("/item/o1", headers=user["headers"], json={**ITEM, "store_id": other})
    status(client.put("/item/o1", headers=user["headers"], json={**ITEM, "store_id": full}), 403, "quota_exceeded")
    # Updating in place is no new item; admins are exempt.
    status(client.put("/item/i1", headers=user["headers"], json={"price": 5, "store_id": full}), 200)
    status(client.post("/item/i3", headers=admin["headers"], json={**ITEM, "store_id": full}), 201)


def test_item_quota_counts_what_a_concurrent_create_committed(make_app, database_url):
    """Make the pre-check miss: while the request waits for the store's row
    lock, another transaction fills the store's last place and commits. The
    request must count after the lock, see the store full, and refuse."""
    app = make_app(MAX_ITEMS_PER_STORE=1)
    client = app.test_client()
    user = Users(app, client).create()
    store_id = client.post("/store/race", headers=user["headers"]).get_json()["id"]
    with app.app_context():
        engine = db.engine
    other = engine.connect()
    transaction = other.begin()
    other.execute(sqlalchemy.text("UPDATE stores SET id = id WHERE id = :id"), {"id": store_id})
    answer = {}
    request = threading.Thread(
        target=lambda: answer.setdefault(
            "response", client.post("/item/late", headers=user["headers"], json={**ITEM, "store_id": store_id})
        )
    )
    request.start()
    request.join(1.0)
    assert request.is_alive(), "the request did not wait for the store's lock"
    other.execute(
        sqlalchemy.text("INSERT INTO items (name, price, store_id) VALUES ('early', 1, :id)"), {"id": store_id}
    )
    transaction.commit()
    other.close()
    request.join(10)
    status(answer["response"], 403, "quota_exceeded")


def test_existing_name_is_409_even_when_the_store_is_full(make_app):
    app = make_app(MAX_ITEMS_PER_STORE=1)
    client = app.test_client()
    user = Users(app, client).create()
    store_id = client.post("/store/s", headers=user["headers"]).get_json()["id"]
    status(client.post("/item/only", headers=user["headers"], json={**ITEM, "store_id": store_id}), 201)
    status(client.post("/item/only", headers=user["headers"], json={**ITEM, "store_id": store_id}), 409, "conflict")


def test_concurrent_deletes_answer_once(app, client, world, monkeypatch):
    """Make the look-before miss: the item (or store) is deleted by another
    request between our lookup and our DELETE. We answer 404 and record no
    second event, instead of a second 200."""
    from models.store import StoreModel

    def deleted_meanwhile(original, delete_sql):
        def lookup(*args, **kwargs):
            found = original(*args, **kwargs)
            with app.app_context():
                db.session.execute(sqlalchemy.text(delete_sql))
                db.session.commit()
            return found

        return lookup

    b = world["bob"]["headers"]
    monkeypatch.setattr(
        StoreModel,
        "item_with_owner",
        deleted_meanwhile(StoreModel.item_with_owner, "DELETE FROM items WHERE name = 'bob-widget'"),
    )
    status(client.delete("/item/bob-widget", headers=b), 404, "not_found")
    monkeypatch.setattr(
        StoreModel, "find_by_name", deleted_meanwhile(StoreModel.find_by_name, "DELETE FROM stores WHERE name = 'bobs'")
    )
    status(client.delete("/store/bobs", headers=b), 404, "not_found")
