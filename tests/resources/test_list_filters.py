"""Filters and sorting on GET /items and GET /stores, on both databases,
against a naive in-memory reference over random data (Hypothesis): which
rows, in which order, which page, what total; then the 400s, the Link header
and the statement count."""

from decimal import Decimal
from operator import itemgetter

import pytest
import sqlalchemy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event

import blacklist
from db import db
from tests.support.apps import empty_tables
from tests.support.errors import envelope

# Names from a few letters in both cases (ASCII and not), LIKE's wildcards and
# its escape character, so `q` meets every case it must take literally.
NAME_CHARS = "aAbBéÉ%_\\ "
names = st.text(NAME_CHARS, min_size=1, max_size=6).map(str.strip).filter(bool)
prices = st.decimals(min_value=0, max_value=50, places=2)

item_queries = st.fixed_dictionaries(
    {},
    optional={
        "q": st.text(NAME_CHARS, min_size=1, max_size=3),
        "min_price": prices,
        "max_price": prices,
        "store_id": st.integers(1, 4),
        "sort": st.sampled_from(["id", "-id", "name", "-name", "price", "-price"]),
        "page": st.integers(1, 3),
        "per_page": st.integers(1, 5),
    },
)
store_queries = st.fixed_dictionaries(
    {},
    optional={
        "q": st.text(NAME_CHARS, min_size=1, max_size=3),
        "owner_id": st.integers(1, 3),
        "sort": st.sampled_from(["id", "-id", "name", "-name"]),
        "page": st.integers(1, 3),
        "per_page": st.integers(1, 5),
    },
)


@st.composite
def catalogues(draw):
    """Up to 4 stores (owned by user 1, 2 or nobody) holding up to 12 items."""
    store_names = draw(st.lists(names, min_size=1, max_size=4, unique=True))
    stores = [
        {"id": i + 1, "name": n, "owner_id": draw(st.sampled_from([1, 2, None]))} for i, n in enumerate(store_names)
    ]
    item_names = draw(st.lists(names, max_size=12, unique=True))
    items = [
        {"id": i + 1, "name": n, "price": draw(prices), "store_id": draw(st.integers(1, len(stores)))}
        for i, n in enumerate(item_names)
    ]
    return stores, items


def load(app, database_url, stores, items):
    """The catalogue, bulk-loaded by SQL as operators do (ids given, so the
    reference knows them), behind two users."""
    empty_tables(database_url)
    with app.app_context():
        conn = db.session.connection()
        for user_id in (1, 2, 3):
            conn.execute(
                sqlalchemy.text(
                    "INSERT INTO users (id, username, password_hash, account_key) VALUES (:id, :name, 'h', :key)"
                ),
                {"id": user_id, "name": f"u{user_id}", "key": f"k{user_id}"},
            )
        if stores:
            conn.execute(
                sqlalchemy.text("INSERT INTO stores (id, name, owner_id) VALUES (:id, :name, :owner_id)"), stores
            )
        if items:
            conn.execute(
                sqlalchemy.text("INSERT INTO items (id, name, price, store_id) VALUES (:id, :name, :price, :store_id)"),
                [{**item, "price": str(item["price"])} for item in items],  # as SQL text: '12.99'
            )
        db.session.commit()
        db.session.remove()


def contains(name, q):
    return q.lower() in name.lower()


SORT_KEYS = {"id": itemgetter("id"), "name": itemgetter("name"), "price": lambda row: (row["price"], -row["id"])}


def sorted_rows(rows, sort):
    """Sorted as the contract says; ties (equal prices) by id ascending, whichever direction."""
    key = SORT_KEYS[sort.lstrip("-")]
    ordered = sorted(rows, key=key, reverse=sort.startswith("-"))
    if sort.lstrip("-") == "price" and not sort.startswith("-"):
        ordered = sorted(rows, key=lambda row: (row["price"], row["id"]))
    return ordered


def page_of(rows, query):
    page, per_page = query.get("page", 1), query.get("per_page", 100)
    return rows[(page - 1) * per_page : page * per_page], len(rows)


def expected_items(items, query):
    rows = [
        row
        for row in items
        if ("q" not in query or contains(row["name"], query["q"]))
        and ("min_price" not in query or row["price"] >= query["min_price"])
        and ("max_price" not in query or row["price"] <= query["max_price"])
        and ("store_id" not in query or row["store_id"] == query["store_id"])
    ]
    return page_of(sorted_rows(rows, query.get("sort", "id")), query)


def expected_stores(stores, query):
    rows = [
        row
        for row in stores
        if ("q" not in query or contains(row["name"], query["q"]))
        and ("owner_id" not in query or row["owner_id"] == query["owner_id"])
    ]
    return page_of(sorted_rows(rows, query.get("sort", "id")), query)


def as_query_string(query):
    return {key: str(value) for key, value in query.items()}


@pytest.fixture
def token_headers(app, client, users):
    return users.create("reader")["headers"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(catalogue=catalogues(), queries=st.lists(item_queries, min_size=1, max_size=4))
def test_item_lists_match_the_reference(app, client, database_url, catalogue, queries):
    stores, items = catalogue
    load(app, database_url, stores, items)
    with app.app_context():
        from core.tokens import issue_tokens
        from models.user import UserModel

        headers = {"Authorization": f"Bearer {issue_tokens(db.session.get(UserModel, 1))['access_token']}"}
    for query in queries:
        if {"min_price", "max_price"} <= query.keys() and query["min_price"] > query["max_price"]:
            continue  # a 400, tested below
        rows, total = expected_items(items, query)
        response = client.get("/items", query_string=as_query_string(query), headers=headers)
        assert response.status_code == 200, (query, response.get_json())
        body = response.get_json()
        got = [(row["id"], row["name"], Decimal(str(row["price"])), row["store_id"]) for row in body["items"]]
        assert got == [(r["id"], r["name"], r["price"], r["store_id"]) for r in rows], query
        assert body["total"] == total
        anonymous = client.get("/items", query_string=as_query_string(query)).get_json()
        assert anonymous["items"] == [r["name"] for r in rows] and anonymous["total"] == total


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(catalogue=catalogues(), queries=st.lists(store_queries, min_size=1, max_size=4))
def test_store_lists_match_the_reference(app, client, database_url, catalogue, queries):
    stores, items = catalogue
    load(app, database_url, stores, items)
    for query in queries:
        rows, total = expected_stores(stores, query)
        response = client.get("/stores", query_string=as_query_string(query))
        assert response.status_code == 200, (query, response.get_json())
        body = response.get_json()
        assert [(s["id"], s["name"], s["owner_id"]) for s in body["stores"]] == [
            (r["id"], r["name"], r["owner_id"]) for r in rows
        ], query
        assert body["total"] == total
        for store in body["stores"]:  # embedded items stay the store's first, by id
            own = [i["id"] for i in items if i["store_id"] == store["id"]]
            assert [i["id"] for i in store["items"]] == own and store["items_total"] == len(own)


def test_names_sort_by_code_point(app, client, database_url):
    stores = [{"id": i + 1, "name": n, "owner_id": None} for i, n in enumerate(["apple", "Chair", "Éclair", "banana"])]
    load(app, database_url, stores, [])
    body = client.get("/stores", query_string={"sort": "name"}).get_json()
    assert [s["name"] for s in body["stores"]] == ["Chair", "apple", "banana", "Éclair"]


def test_q_folds_case_beyond_ascii_and_takes_wildcards_literally(app, client, database_url, owner):
    stores = [{"id": 1, "name": "CAFÉ 100%", "owner_id": None}, {"id": 2, "name": "café 1000", "owner_id": None}]
    load(app, database_url, stores, [])
    found = {
        q: [s["name"] for s in client.get("/stores", query_string={"q": q}).get_json()["stores"]]
        for q in ("é", "0%", "_")
    }
    assert found == {"é": ["CAFÉ 100%", "café 1000"], "0%": ["CAFÉ 100%"], "_": []}


def test_equal_prices_are_ordered_by_id_ascending_either_way(app, client, database_url, token_headers):
    # Inserted in descending id order, so the table's own order is not the answer.
    items = [{"id": i, "name": f"same{i}", "price": Decimal("5"), "store_id": 1} for i in range(6, 0, -1)]
    items.append({"id": 7, "name": "cheap", "price": Decimal("1"), "store_id": 1})
    load(app, database_url, [{"id": 1, "name": "shop", "owner_id": None}], items)
    for sort, cheap_first in (("price", True), ("-price", False)):
        names = client.get("/items", query_string={"sort": sort}).get_json()["items"]
        same = [f"same{i}" for i in range(1, 7)]
        assert names == (["cheap", *same] if cheap_first else [*same, "cheap"]), sort


@pytest.mark.parametrize(
    "path, params, field",
    [
        ("/items", {"q": ""}, "q"),
        ("/items", {"q": "x" * 81}, "q"),
        ("/items", {"min_price": "abc"}, "min_price"),
        ("/items", {"min_price": "-1"}, "min_price"),
        ("/items", {"max_price": "1.234"}, "max_price"),
        ("/items", {"max_price": "nan"}, "max_price"),
        ("/items", {"min_price": "5", "max_price": "4.99"}, "min_price"),
        ("/items", {"sort": "cost"}, "sort"),
        ("/items", {"store_id": "0"}, "store_id"),
        ("/stores", {"q": "y" * 81}, "q"),
        ("/stores", {"owner_id": "me"}, "owner_id"),
        ("/stores", {"sort": "price"}, "sort"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(client, path, params, field):
    body = envelope(client.get(path, query_string=params), 400, "validation_error")
    assert field in body["errors"]


def test_link_keeps_every_filter_and_unknown_parameters_are_ignored(client, owner, store):
    for name in ("chair a", "chair b", "table"):
        client.post(f"/item/{name}", headers=owner["headers"], json={"price": 3, "store_id": store["id"]})
    query = {"q": "CHAIR", "min_price": "1", "max_price": "5", "sort": "-name", "per_page": "1", "colour": "red"}
    response = client.get("/items", query_string=query, headers=owner["headers"])
    assert response.status_code == 200
    body = response.get_json()
    assert [i["name"] for i in body["items"]] == ["chair b"] and body["total"] == 2
    next_url = response.headers["Link"].split(">")[0].lstrip("<")
    assert "q=CHAIR" in next_url and "min_price=1" in next_url and "sort=-name" in next_url
    assert client.get(next_url, headers=owner["headers"]).get_json()["items"][0]["name"] == "chair a"


def test_filtered_lists_run_a_fixed_number_of_statements(app, client, owner, store):
    with app.app_context():
        engine = db.engine
    statements = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    def counts():
        sent = []
        for path, headers in (
            ("/items?q=ch&min_price=1&sort=-price", owner["headers"]),
            ("/items?q=ch&max_price=9&sort=name", {}),
            (f"/stores?q=sh&owner_id={owner['id']}&sort=-name", {}),
        ):
            statements.clear()
            assert client.get(path, headers=headers).status_code == 200
            sent.append(len(statements))
        return sent

    client.post("/item/chair", headers=owner["headers"], json={"price": 3, "store_id": store["id"]})
    event.listen(engine, "before_cursor_execute", record)
    try:
        few = counts()
        for i in range(20):
            client.post(f"/item/chair{i}", headers=owner["headers"], json={"price": 3, "store_id": store["id"]})
        assert counts() == few
    finally:
        event.remove(engine, "before_cursor_execute", record)


PLANS = [
    # (query, the index its page statement must use, an index it must not use)
    ({"min_price": "1", "max_price": "2", "sort": "price"}, "ix_items_price", None),
    ({"min_price": "1", "sort": "-price"}, "ix_items_price_desc_id", None),
    ({"sort": "name"}, "ix_items_name_c", None),
    ({"sort": "-name"}, "ix_items_name_c", None),
    ({"q": "chair 123", "sort": "-name"}, "ix_items_name_trgm", "ix_items_name_c"),
    # With q: the matches first, then the sort; never a walk of the name index,
    # which would pass every "table" to reach the "chair"s.
    ({"q": "chair", "sort": "name"}, None, "ix_items_name_c"),
    ({"q": "chair", "sort": "-name"}, None, "ix_items_name_c"),
    ({"q": "chair", "sort": "price"}, None, "ix_items_price_id"),
]


@pytest.mark.postgresql_only  # SQLite has no trigram or collation indexes
@pytest.mark.parametrize("query, uses, avoids", PLANS)
def test_postgresql_plans_use_the_indexes(app, client, owner, store, query, uses, avoids):
    """The plan PostgreSQL makes for each list's page statement over 20,000
    items loaded by SQL and analysed ("chair 1".."chair 2000" bunched at one
    end of the name order), names the index that serves its sort, range or `q`."""
    with app.app_context():
        engine = db.engine
    with engine.begin() as conn:
        conn.execute(
            sqlalchemy.text(
                "INSERT INTO items (name, price, store_id) "
                "SELECT CASE WHEN i <= 2000 THEN 'chair ' ELSE 'table ' END || i, (i % 1000) / 10.0, :store "
                "FROM generate_series(1, 20000) i"
            ),
            {"store": store["id"]},
        )
        conn.exec_driver_sql("ANALYZE items")
    seen = []
    listener = lambda conn, cursor, statement, parameters, *args: seen.append((statement, parameters))  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        assert client.get("/items", query_string=query, headers=owner["headers"]).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    statement, parameters = next((s, p) for s, p in seen if "LIMIT" in s and "FROM items" in s)
    # The page's own statement, without the token check riding ahead of it (blacklist.py).
    statement = statement.removeprefix(blacklist.PG_CHECK)
    with engine.connect() as conn:
        plan = "\n".join(row[0] for row in conn.exec_driver_sql("EXPLAIN " + statement, parameters))
    assert uses is None or uses in plan, plan
    assert avoids is None or avoids not in plan, plan
