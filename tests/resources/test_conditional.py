"""Conditional requests on one item or store (core/conditional.py), on both
databases: the ETag and 304 for readers, If-Match / If-None-Match and 412 for
writers, a tag that follows every kind of change, and the check and write
that are one step even when another transaction changes the row between them."""

import hashlib
import json
import secrets
import sqlite3
import threading
import time
import uuid

import pytest
import sqlalchemy
from sqlalchemy import event

from db import db
from tests.support import image_samples
from tests.support.errors import envelope

JODOO_SECRET = secrets.token_hex(16)


@pytest.fixture
def app(make_app):
    return make_app(JODOO_WEBHOOK_SECRET=JODOO_SECRET, JODOO_ACTING_USER="jodoo", STORE_ITEMS_EMBEDDED=2)


@pytest.fixture
def item(client, owner, store):
    response = client.post("/item/chair", headers=owner["headers"], json={"price": 10, "store_id": store["id"]})
    assert response.status_code == 201
    return response


def etag(client, path, headers=None):
    response = client.get(path, headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.headers["ETag"]


def sql(app, statement, **params):
    with app.app_context():
        db.session.execute(sqlalchemy.text(statement), params)
        db.session.commit()
        db.session.remove()


# --- Reading -------------------------------------------------------------------


def test_get_sends_a_strong_etag_and_304_when_the_client_has_it(client, owner, item):
    tag = item.headers["ETag"]
    assert tag.startswith('"') and not tag.startswith("W/")
    assert etag(client, "/item/chair", owner["headers"]) == tag
    for held in (tag, "*", f"W/{tag}", f'"other", {tag}'):
        response = client.get("/item/chair", headers={**owner["headers"], "If-None-Match": held})
        assert response.status_code == 304, held
        assert response.data == b"" and response.headers["ETag"] == tag
    response = client.get("/item/chair", headers={**owner["headers"], "If-None-Match": '"other"'})
    assert response.status_code == 200 and response.get_json()["name"] == "chair"


def test_head_answers_like_get_without_a_body(client, owner, store, item):
    for path, headers in (("/item/chair", owner["headers"]), ("/store/shop", {})):
        response = client.head(path, headers=headers)
        assert response.status_code == 200 and response.data == b""
        assert response.headers["ETag"] == etag(client, path, headers)
        conditional = client.head(path, headers={**headers, "If-None-Match": response.headers["ETag"]})
        assert conditional.status_code == 304


def test_a_store_tag_follows_its_embedded_items_and_their_total(client, owner, store):
    tags = [etag(client, "/store/shop")]

    def changed(send):
        assert send().status_code in (200, 201)
        tags.append(etag(client, "/store/shop"))
        assert tags[-1] != tags[-2]

    body = {"price": 1, "store_id": store["id"]}
    changed(lambda: client.post("/item/a", headers=owner["headers"], json=body))
    changed(lambda: client.post("/item/b", headers=owner["headers"], json=body))
    # Past STORE_ITEMS_EMBEDDED (2): only items_total changes.
    changed(lambda: client.post("/item/c", headers=owner["headers"], json=body))
    changed(lambda: client.put("/item/a", headers=owner["headers"], json={"price": 2, "store_id": store["id"]}))
    changed(lambda: client.delete("/item/c", headers=owner["headers"]))


def test_the_tag_changes_whatever_path_changes_the_item(app, client, users, owner, store, item):
    users.create("jodoo", admin=True)  # the account pushes act as may change any store
    admin = users.create("admin", admin=True)
    other = client.post("/store/other", headers=owner["headers"]).get_json()
    tags = [item.headers["ETag"]]

    def changed(send=None, answers_the_item=True):
        if send is not None:
            response = send()
            assert response.status_code == 200, response.get_json()
            if answers_the_item:  # the write's answer carries the tag a GET now sends
                assert response.headers["ETag"] == etag(client, "/item/chair", owner["headers"])
        tags.append(etag(client, "/item/chair", owner["headers"]))
        assert tags[-1] != tags[-2]

    headers = owner["headers"]
    changed(lambda: client.put("/item/chair", headers=headers, json={"price": 11, "store_id": store["id"]}))
    changed(lambda: client.put("/item/chair", headers=headers, json={"price": 11, "store_id": other["id"]}))
    image = image_samples.jpeg()
    changed(lambda: client.put("/item/chair/image", headers=headers, data=image, content_type="image/jpeg"))
    changed(lambda: client.delete("/item/chair/image", headers=headers))
    changed(lambda: client.put("/item/chair", headers=admin["headers"], json={"price": 12, "store_id": store["id"]}))
    changed(lambda: jodoo_push(client, {"name": "chair", "price": 13, "store": "shop"}), answers_the_item=False)
    sql(app, "UPDATE items SET price = 14 WHERE name = 'chair'")
    changed()


def jodoo_push(client, data):
    body = json.dumps({"op": "data_update", "data": data})
    nonce, timestamp = uuid.uuid4().hex, str(int(time.time()))
    signature = hashlib.sha1(f"{nonce}:{body}:{JODOO_SECRET}:{timestamp}".encode()).hexdigest()
    return client.post(
        f"/hooks/jodoo?nonce={nonce}&timestamp={timestamp}",
        data=body,
        content_type="application/json",
        headers={"X-JDY-Signature": signature, "X-JDY-DeliverId": nonce},
    )


def test_rows_loaded_by_sql_are_tagged(app, client, owner, store):
    sql(app, "INSERT INTO items (name, price, store_id) VALUES ('loaded', 12.99, :s)", s=store["id"])
    tag = etag(client, "/item/loaded", owner["headers"])
    assert client.get("/item/loaded", headers={**owner["headers"], "If-None-Match": tag}).status_code == 304


# --- Writing -------------------------------------------------------------------


def price_of(client, owner):
    return client.get("/item/chair", headers=owner["headers"]).get_json()["price"]


def test_if_match_lets_a_write_through_only_on_the_current_tag(client, owner, store, item):
    tag = item.headers["ETag"]
    body = {"price": 20, "store_id": store["id"]}
    for stale in ('"not-the-tag"', f"W/{tag}", ""):
        response = client.put("/item/chair", headers={**owner["headers"], "If-Match": stale}, json=body)
        envelope(response, 412, "precondition_failed")
        assert price_of(client, owner) == 10.0
    response = client.put("/item/chair", headers={**owner["headers"], "If-Match": f'"x", {tag}'}, json=body)
    assert response.status_code == 200 and price_of(client, owner) == 20.0
    new_tag = response.headers["ETag"]
    assert new_tag != tag
    # The tag the first writer used is stale now: a second writer holding it loses.
    response = client.put("/item/chair", headers={**owner["headers"], "If-Match": tag}, json={**body, "price": 30})
    envelope(response, 412, "precondition_failed")
    assert client.put("/item/chair", headers={**owner["headers"], "If-Match": "*"}, json=body).status_code == 200


def test_if_match_on_a_missing_resource_is_412_and_creates_nothing(client, owner, store):
    headers = {**owner["headers"], "If-Match": "*"}
    body = {"price": 1, "store_id": store["id"]}
    envelope(client.put("/item/ghost", headers=headers, json=body), 412, "precondition_failed")
    envelope(client.post("/item/ghost", headers=headers, json=body), 412, "precondition_failed")
    envelope(client.delete("/item/ghost", headers=headers), 412, "precondition_failed")
    envelope(client.post("/store/ghost", headers=headers), 412, "precondition_failed")
    envelope(client.delete("/store/ghost", headers=headers), 412, "precondition_failed")
    image = image_samples.jpeg()
    response = client.put("/item/ghost/image", headers=headers, data=image, content_type="image/jpeg")
    envelope(response, 412, "precondition_failed")
    assert client.get("/item/ghost", headers=owner["headers"]).status_code == 404
    assert client.get("/store/ghost").status_code == 404


def test_if_none_match_star_creates_only(client, owner, store):
    headers = {**owner["headers"], "If-None-Match": "*"}
    created = client.put("/item/desk", headers=headers, json={"price": 5, "store_id": store["id"]})
    assert created.status_code == 201 and created.headers["ETag"] == etag(client, "/item/desk", owner["headers"])
    again = client.put("/item/desk", headers=headers, json={"price": 6, "store_id": store["id"]})
    envelope(again, 412, "precondition_failed")
    assert client.get("/item/desk", headers=owner["headers"]).get_json()["price"] == 5.0


def test_deletes_honour_if_match_and_answer_without_a_tag(client, owner, store, item):
    stale = {**owner["headers"], "If-Match": '"stale"'}
    envelope(client.delete("/item/chair", headers=stale), 412, "precondition_failed")
    assert client.get("/item/chair", headers=owner["headers"]).status_code == 200
    current = {**owner["headers"], "If-Match": item.headers["ETag"]}
    response = client.delete("/item/chair", headers=current)
    assert response.status_code == 200 and "ETag" not in response.headers
    store_tag = etag(client, "/store/shop")
    envelope(client.delete("/store/shop", headers=stale), 412, "precondition_failed")
    response = client.delete("/store/shop", headers={**owner["headers"], "If-Match": store_tag})
    assert response.status_code == 200 and "ETag" not in response.headers


def test_image_writes_answer_with_the_items_new_tag_and_honour_if_match(client, owner, item):
    image = image_samples.jpeg()
    stale = {**owner["headers"], "If-Match": '"stale"'}
    response = client.put("/item/chair/image", headers=stale, data=image, content_type="image/jpeg")
    envelope(response, 412, "precondition_failed")
    assert client.get("/item/chair", headers=owner["headers"]).get_json()["image_url"] is None
    current = {**owner["headers"], "If-Match": item.headers["ETag"]}
    response = client.put("/item/chair/image", headers=current, data=image, content_type="image/jpeg")
    assert response.status_code == 200
    assert response.headers["ETag"] == etag(client, "/item/chair", owner["headers"])
    envelope(client.delete("/item/chair/image", headers=current), 412, "precondition_failed")
    current = {**owner["headers"], "If-Match": response.headers["ETag"]}
    response = client.delete("/item/chair/image", headers=current)
    assert response.status_code == 200 and response.get_json()["image_url"] is None
    assert response.headers["ETag"] == etag(client, "/item/chair", owner["headers"])


def test_who_may_write_is_asked_before_the_precondition(client, users, owner, store, item):
    stranger = users.create("stranger")
    headers = {**stranger["headers"], "If-Match": item.headers["ETag"]}
    envelope(client.put("/item/chair", headers=headers, json={"price": 0, "store_id": 1}), 403, "forbidden")
    envelope(client.delete("/item/chair", headers=headers), 403, "forbidden")
    # A PUT that would create needs a fresh token before anything else.
    stale = {**users.refreshed_headers(owner), "If-Match": '"any"'}
    response = client.put("/item/new", headers=stale, json={"price": 1, "store_id": store["id"]})
    envelope(response, 401, "fresh_token_required")


# --- Atomic: the check and the write are one step -------------------------------


class ChangeHeldOpen:
    """Another transaction that has changed the item's price and not yet
    committed, holding the row (PostgreSQL) or the write lock (SQLite)."""

    def __init__(self, app, url):
        self.sqlite = url.startswith("sqlite")
        if self.sqlite:
            self.conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute("UPDATE items SET price = 99 WHERE name = 'chair'")
        else:
            with app.app_context():
                self.conn = db.engine.connect()
            self.conn.execute(sqlalchemy.text("UPDATE items SET price = 99 WHERE name = 'chair'"))

    def commit(self):
        self.conn.commit()
        self.conn.close()


def test_a_change_committed_between_the_check_and_the_write_is_seen(app, client, owner, store, item, database_url):
    """The writer's first look at the item would still see the old tag (the
    other change is not committed yet); locking the row before looking makes
    it wait for that change, see it, and refuse with 412. Without the lock it
    would read the old row, pass the check, wait at its UPDATE, and then
    overwrite the other change: a lost update answered 200."""
    held = ChangeHeldOpen(app, database_url)
    writing = threading.Event()

    def before_write(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("UPDATE items"):
            writing.set()  # the request is about to block on the held row

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", before_write)
    answers = []
    headers = {**owner["headers"], "If-Match": item.headers["ETag"]}
    writer = threading.Thread(
        target=lambda: answers.append(
            client.put("/item/chair", headers=headers, json={"price": 1, "store_id": store["id"]})
        )
    )
    try:
        writer.start()
        assert writing.wait(10), "the conditional PUT never reached its UPDATE"
        held.commit()
        writer.join(20)
    finally:
        event.remove(engine, "before_cursor_execute", before_write)
    envelope(answers[0], 412, "precondition_failed")
    assert price_of(client, owner) == 99.0
