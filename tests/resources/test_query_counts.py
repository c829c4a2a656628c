"""Every endpoint runs a fixed number of SQL statements, whatever the data size.

Counted with a SQLAlchemy event listener on the app's engine: a counted fact,
so it is asserted (speed itself is measured in bench/, never asserted here).
A read's token check rides on its first statement (blacklist.py): on
PostgreSQL in the same statement string, which counts once; on SQLite asked
on the raw connection just before it, which the counter counts apart.
"""

import re

import pytest
from sqlalchemy import event

import blacklist
from db import db
from tests.support.users import Users

SMALL, LARGE = (2, 3), (12, 25)  # (stores, items per store)


class StatementCounter:
    def __init__(self, app, monkeypatch):
        with app.app_context():
            self.engine = db.engine
        self.statements = []
        event.listen(self.engine, "before_cursor_execute", self.record)
        # The raw check (SQLite, or a statement that cannot carry it) is a
        # statement too: every one of them is read by blacklist._status_of.
        status_of = blacklist._status_of

        def counted_status_of(row, check):
            self.statements.append(blacklist.RAW_CHECK)
            return status_of(row, check)

        monkeypatch.setattr(blacklist, "_status_of", counted_status_of)

    def record(self, conn, cursor, statement, parameters, context, executemany):
        self.statements.append(statement)

    def count(self, send):
        self.statements.clear()
        response = send()
        assert response.status_code < 400, response.get_json()
        return len(self.statements)


def seed(client, headers, prefix, stores, items_per_store):
    for s in range(stores):
        store_id = client.post(f"/store/{prefix}store{s}", headers=headers).get_json()["id"]
        for i in range(items_per_store):
            response = client.post(
                f"/item/{prefix}item-{s}-{i}", headers=headers, json={"price": 1.5, "store_id": store_id}
            )
            assert response.status_code == 201


def endpoint_counts(app, client, users, size, prefix, monkeypatch):
    """Statements per request for one call of each endpoint, after seeding `size`."""
    admin = users.create(f"{prefix}admin", admin=True)
    headers = admin["headers"]
    seed(client, headers, prefix, *size)
    counter = StatementCounter(app, monkeypatch)
    refresh = {"Authorization": f"Bearer {admin['refresh_token']}"}
    counts = {
        "GET /items (token)": counter.count(lambda: client.get("/items?per_page=1000", headers=headers)),
        "GET /items (anonymous)": counter.count(lambda: client.get("/items?per_page=1000")),
        "GET /stores": counter.count(lambda: client.get("/stores?per_page=1000")),
        "GET /store/<name>": counter.count(lambda: client.get(f"/store/{prefix}store1")),
        "GET /item/<name>": counter.count(lambda: client.get(f"/item/{prefix}item-1-1", headers=headers)),
        "POST /item/<name>": counter.count(
            lambda: client.post(f"/item/{prefix}new", headers=headers, json={"price": 1, "store_id": 1})
        ),
        "PUT /item/<name> (update)": counter.count(
            lambda: client.put(f"/item/{prefix}new", headers=headers, json={"price": 2, "store_id": 1})
        ),
        "PUT /item/<name> (create)": counter.count(
            lambda: client.put(f"/item/{prefix}newer", headers=headers, json={"price": 2, "store_id": 1})
        ),
        "DELETE /item/<name>": counter.count(lambda: client.delete(f"/item/{prefix}newer", headers=headers)),
        "POST /store/<name>": counter.count(lambda: client.post(f"/store/{prefix}fresh", headers=headers)),
        "DELETE /store/<name>": counter.count(lambda: client.delete(f"/store/{prefix}fresh", headers=headers)),
        "GET /user/<id>": counter.count(lambda: client.get(f"/user/{admin['id']}", headers=headers)),
        "POST /login": counter.count(
            lambda: client.post("/login", json={"username": admin["username"], "password": admin["password"]})
        ),
        "POST /refresh": counter.count(lambda: client.post("/refresh", headers=refresh)),
        "POST /logout": counter.count(lambda: client.post("/logout", headers=headers)),
    }
    return counts, counter


def test_statement_counts_do_not_grow_with_data(app, client, users, make_app, monkeypatch):
    small, _ = endpoint_counts(app, client, users, SMALL, "small-", monkeypatch)
    # A second app on the same database adds a larger data set on top.
    big_app = make_app()
    big_client = big_app.test_client()
    big, _ = endpoint_counts(big_app, big_client, Users(big_app, big_client), LARGE, "large-", monkeypatch)
    assert small == big, (small, big)
    # Nothing near one statement per row: reads are token check + count +
    # page (+ the page's items); writes add a check and the write itself.
    print("statements per request:", small)
    assert max(small.values()) <= 5, small


def test_owner_writes_and_past_the_end_pages(app, client, users, owner, store, monkeypatch):
    """An owner (no admin exemption from quotas) pays the store's lock and
    count on a create or a move, and every write its outbox INSERT: 6
    statements for a POST, 7 for a PUT that creates (it looks for the item
    first) or moves; a page
    past the end is the token check and the count, never an OFFSET scan."""
    headers, other = owner["headers"], client.post("/store/other", headers=owner["headers"]).get_json()
    counter = StatementCounter(app, monkeypatch)
    item = {"price": 1, "store_id": store["id"]}
    counts = {
        "POST": counter.count(lambda: client.post("/item/a", headers=headers, json=item)),
        "PUT create": counter.count(lambda: client.put("/item/b", headers=headers, json=item)),
        "PUT update": counter.count(lambda: client.put("/item/b", headers=headers, json={**item, "price": 2})),
        "PUT move": counter.count(
            lambda: client.put("/item/b", headers=headers, json={**item, "store_id": other["id"]})
        ),
        "DELETE": counter.count(lambda: client.delete("/item/b", headers=headers)),
    }
    # Each write also adds its webhook events to the outbox: one INSERT ... SELECT
    # (no rows when nobody subscribed).
    assert counts == {"POST": 6, "PUT create": 7, "PUT update": 5, "PUT move": 7, "DELETE": 4}, counts
    # The token check and the count: one statement on PostgreSQL, where the check rides on the count.
    token_check_apart = 0 if db_dialect(app) == "postgresql" else 1
    assert counter.count(lambda: client.get("/items?page=1000000000", headers=headers)) == 1 + token_check_apart
    assert not any("OFFSET" in s.upper() for s in counter.statements)
    assert counter.count(lambda: client.get("/stores?page=1000000000")) == 1


def test_a_first_page_with_room_to_spare_runs_no_count(app, client, owner, store, monkeypatch):
    """Its rows are the whole list: their number is the total. A first page
    that is full still counts, and says the right total."""
    for name in ("a", "b", "c"):
        client.post(f"/item/{name}", headers=owner["headers"], json={"price": 1, "store_id": store["id"]})
    counter = StatementCounter(app, monkeypatch)

    def counts(path):
        counter.count(lambda: client.get(path))
        # A count of its own, not a store's items_total subquery "(SELECT count(*) ...)".
        return sum(bool(re.search(r"(?<!\()SELECT count\(\*\)", sql)) for sql in counter.statements)

    assert counts("/items?per_page=3") == 0
    assert counts("/stores") == 0
    assert counts("/items?per_page=2") == 1
    assert client.get("/items?per_page=2").get_json()["total"] == 3
    assert counts("/items?per_page=3&page=2") == 1  # a later page counts first


def test_a_full_first_page_never_reports_fewer_than_it_shows(app, client, owner, store):
    """The count runs after the page's rows, in a snapshot of its own: items
    deleted in between (deterministically, just before the count) must not
    make the total smaller than the page."""
    for name in ("a", "b", "c"):
        client.post(f"/item/{name}", headers=owner["headers"], json={"price": 1, "store_id": store["id"]})
    with app.app_context():
        engine = db.engine

    deleted = []

    def delete_before_the_count(conn, cursor, statement, *args):
        if not deleted and re.search(r"(?<!\()SELECT count\(\*\)", statement):
            deleted.append(True)
            with engine.begin() as other:
                other.exec_driver_sql("DELETE FROM items WHERE name IN ('b', 'c')")

    event.listen(engine, "before_cursor_execute", delete_before_the_count)
    try:
        body = client.get("/items?per_page=2").get_json()
    finally:
        event.remove(engine, "before_cursor_execute", delete_before_the_count)
    assert deleted
    assert body["items"] == ["a", "b"]  # anonymous: names
    assert body["total"] >= 2, body


def test_only_a_page_of_every_store_reads_every_item(app, client, owner, store, monkeypatch):
    """GET /stores reads the items of the stores on its page: all items only
    when the page holds every store there is; a filtered page, or one of
    several, names its stores."""
    client.post("/store/other", headers=owner["headers"])
    counter = StatementCounter(app, monkeypatch)

    def items_statement(path):
        counter.count(lambda: client.get(path))
        return next(s for s in counter.statements if s.lstrip().startswith("SELECT items.id"))

    assert "WHERE" not in items_statement("/stores")
    assert "WHERE" in items_statement("/stores?q=shop")
    assert "WHERE" in items_statement("/stores?per_page=1")
    assert "WHERE" in items_statement("/stores?per_page=1&page=2")


def test_a_store_made_while_the_stores_are_read_is_left_out(app, client, owner, store):
    """Every store fits on the page, so every item is read: a store (and its
    item) made between the stores' statement and the items' (deterministically,
    just before the items') is on no page yet, and neither is its item."""
    client.post("/item/chair", headers=owner["headers"], json={"price": 1, "store_id": store["id"]})
    with app.app_context():
        engine = db.engine
    made = []

    def make_a_store_before_the_items(conn, cursor, statement, *args):
        if not made and statement.lstrip().startswith("SELECT items.id"):
            made.append(True)
            with engine.begin() as other:
                other.exec_driver_sql(f"INSERT INTO stores (name, owner_id) VALUES ('late', {store['owner_id']})")
                other.exec_driver_sql(
                    "INSERT INTO items (name, price, store_id) SELECT 'late-item', 1, id FROM stores"
                    " WHERE name = 'late'"
                )

    event.listen(engine, "before_cursor_execute", make_a_store_before_the_items)
    try:
        response = client.get("/stores")
    finally:
        event.remove(engine, "before_cursor_execute", make_a_store_before_the_items)
    assert made
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert [s["name"] for s in body["stores"]] == ["shop"]
    assert [i["name"] for i in body["stores"][0]["items"]] == ["chair"]


def db_dialect(app):
    with app.app_context():
        return db.engine.dialect.name


def test_authenticated_path_is_one_statement(app, client, owner, store, monkeypatch):
    """Token -> the account's key, generation, revoked? is one statement; on
    PostgreSQL it is the item's SELECT too."""
    user = owner
    client.post("/item/chair", headers=user["headers"], json={"price": 1, "store_id": store["id"]})
    counter = StatementCounter(app, monkeypatch)
    expected = 1 if db_dialect(app) == "postgresql" else 2
    assert counter.count(lambda: client.get("/item/chair", headers=user["headers"])) == expected
    token_checks = [s for s in counter.statements if "revoked_sessions" in s]
    assert len(token_checks) == 1 and "users" in token_checks[0]
    if expected == 1:
        assert "FROM items" in token_checks[0]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_writes_ask_before_they_act(app, client, owner, store, monkeypatch, method):
    """A write's token check is its own first statement, never folded into what the write does."""
    client.post("/item/chair", headers=owner["headers"], json={"price": 1, "store_id": store["id"]})
    counter = StatementCounter(app, monkeypatch)
    body = {"price": 2, "store_id": store["id"]}
    path = "/item/table" if method == "POST" else "/item/chair"
    counter.count(lambda: client.open(path, method=method, headers=owner["headers"], json=body))
    assert "revoked_sessions" in counter.statements[0]
    assert not any("revoked_sessions" in s for s in counter.statements[1:])
