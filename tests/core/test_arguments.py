"""Request parsing (core/arguments.py): generated junk at every endpoint is never
a 5xx, always the JSON envelope, and a rejected request never changes the
database; then the cases a hostile client tried, one by one."""

import string
import unicodedata
import weakref
from urllib.parse import quote

import pytest
import sqlalchemy
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from db import db
from tests.support.apps import TABLES, empty_tables
from tests.support.users import Users

ENDPOINTS = [
    ("POST", "/register"),
    ("POST", "/login"),
    ("POST", "/refresh"),
    ("POST", "/logout"),
    ("GET", "/user/{id}"),
    ("DELETE", "/user/{id}"),
    ("GET", "/stores"),
    ("GET", "/store/{name}"),
    ("POST", "/store/{name}"),
    ("DELETE", "/store/{name}"),
    ("GET", "/items"),
    ("GET", "/item/{name}"),
    ("POST", "/item/{name}"),
    ("PUT", "/item/{name}"),
    ("DELETE", "/item/{name}"),
    ("GET", "/health"),
    ("GET", "/health/ready"),
]
FIELDS = ["username", "password", "price", "store_id", "page", "per_page", "name"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=100),
    st.just("x" * 5000),
    st.sampled_from(["12.99", "nan", "Infinity", "-0", "1e999", "\x00", "\udc80"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)
json_bodies = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), json_values, max_size=5), json_values
)
form_bodies = st.dictionaries(st.sampled_from(FIELDS), st.text(max_size=50), max_size=4)
raw_bodies = st.one_of(st.binary(max_size=200), st.just(b"[" * 5000), st.just(b'{"price": NaN}'))
names = st.one_of(
    st.text(min_size=1, max_size=100).filter(lambda s: s.strip(string.whitespace) != ""),
    st.sampled_from(["chair", "shop", "%00", "a/b", " ", "x" * 90]),
)
queries = st.dictionaries(
    st.sampled_from(["page", "per_page", "x"]),
    st.one_of(st.text(max_size=12), st.integers(-5, 2000).map(str)),
    max_size=3,
)


@st.composite
def requests_(draw):
    method, template = draw(st.sampled_from(ENDPOINTS))
    path = template.replace("{id}", str(draw(st.integers(-3, 5)))).replace(
        "{name}", draw(names).replace("?", "%3F").replace("#", "%23")
    )
    kind = draw(st.sampled_from(["json", "form", "raw", "none"]))
    body = {"json": json_bodies, "form": form_bodies, "raw": raw_bodies, "none": st.none()}[kind]
    return method, path, kind, draw(body), draw(queries), draw(st.sampled_from(["admin", "user", "junk", "none"]))


def snapshot():
    tables = ["users", "stores", "items", "revoked_sessions"]
    return {t: db.session.execute(text(f"SELECT * FROM {t} ORDER BY 1")).all() for t in tables}


def fresh_world(app, client, database_url):
    """A clean world for one example: empty tables and limits, an admin with a
    store and an item, and a regular user. What one example wrote never
    changes what the next one sees.

    The first example of a run builds it through the API; every later one gets
    the very rows (and sequence counters) that build left back, so the same
    tokens are valid again: the world a rebuild would give, without its cost."""
    app.extensions["rate_limits"].storage.reset()
    app.extensions.get("verified_tokens", {}).clear()
    if app in _worlds:
        world, saved = _worlds[app]
        with app.app_context():
            restore(saved)
        return world
    empty_tables(database_url)
    users = Users(app, client)
    admin, user = users.create("admin", admin=True), users.create("someone")
    client.post("/store/shop", headers=admin["headers"])
    client.post("/item/chair", headers=admin["headers"], json={"price": 1.5, "store_id": 1})
    world = {
        "admin": admin["headers"],
        "user": user["headers"],
        "junk": {"Authorization": "Bearer not.a.token"},
        "none": {},
    }
    with app.app_context():
        _worlds[app] = (world, save())
    return world


_worlds = weakref.WeakKeyDictionary()  # app -> (the world's headers, its saved rows)


# Columns the database computes (PostgreSQL's `name_lower`, migration 0006): never inserted.
GENERATED_COLUMNS = ("name_lower",)


def without_generated(row):
    return {column: value for column, value in row.items() if column not in GENERATED_COLUMNS}


def save():
    """Every row of every table, and the id counters, as they are now."""
    conn = db.session.connection()
    rows = {t: [without_generated(r) for r in conn.execute(text(f"SELECT * FROM {t}")).mappings()] for t in TABLES}
    if conn.dialect.name == "postgresql":
        counters = conn.execute(text("SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = 'public'"))
    else:
        counters = conn.execute(text("SELECT name, seq FROM sqlite_sequence"))
    db.session.remove()
    return rows, counters.all()


def restore(saved):
    """The tables and id counters exactly as `save` found them."""
    rows, counters = saved
    conn = db.session.connection()
    postgresql = conn.dialect.name == "postgresql"
    if postgresql:
        conn.execute(text(f"TRUNCATE {', '.join(TABLES)} CASCADE"))
    else:
        for table in TABLES:
            conn.execute(text(f"DELETE FROM {table}"))
        conn.execute(text("DELETE FROM sqlite_sequence"))
    for table in reversed(TABLES):  # parents first
        if rows[table]:
            columns = [sqlalchemy.column(name) for name in rows[table][0]]
            conn.execute(sqlalchemy.table(table, *columns).insert(), rows[table])
    for name, value in counters:
        if postgresql:
            conn.execute(
                text("SELECT setval(:name, :value, :called)"),
                {"name": name, "value": value or 1, "called": value is not None},
            )
        else:
            conn.execute(
                text("INSERT INTO sqlite_sequence (name, seq) VALUES (:name, :value)"), {"name": name, "value": value}
            )
    db.session.commit()
    db.session.remove()


@settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(request=requests_())
def test_junk_never_breaks_the_api(app, client, database_url, request):
    method, path, kind, body, query, who = request
    world = fresh_world(app, client, database_url)
    options = {"headers": dict(world[who]), "query_string": query}
    if kind == "json":
        options["json"] = body
    elif kind == "form":
        options["data"] = body
    elif kind == "raw":
        options["data"], options["content_type"] = body, "application/json"
    with app.app_context():
        before = snapshot()
    response = client.open(path, method=method, **options)
    event(f"status {response.status_code}")  # shown by --hypothesis-show-statistics
    assert response.status_code < 500, (response.status_code, response.get_data(as_text=True))
    assert response.mimetype == "application/json"
    payload = response.get_json()
    if response.status_code >= 400:
        assert isinstance(payload["error"], str) and isinstance(payload["message"], str)
        with app.app_context():
            assert snapshot() == before, f"{method} {path} was rejected but changed the database"


# --- Fields and paging, one case each (what a hostile client tried) ------------


@pytest.fixture
def headers(owner):
    return owner["headers"]


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
    "name",
    [
        "chair\u200b",
        "left\u200eto",  # LEFT-TO-RIGHT MARK
        "right\u200fto",  # RIGHT-TO-LEFT MARK
        "\ufeffchair",
        "ch\u202eriah",
        "a\u2066b",
        "soft\u00adhyphen",
        "bell\x07",
    ],
)
def test_invisible_and_direction_characters_are_refused(client, headers, name):
    response = client.post("/store/" + quote(name), headers=headers)
    assert response.status_code == 400 and set(response.get_json()["errors"]) == {"name"}


@pytest.mark.parametrize("dots", [".", "..", " .. "])
def test_dot_names_are_refused(client, headers, store, dots):
    """A URL the API hands out for "." or ".." could never lead back to it."""
    encoded = quote(dots, safe="").replace(".", "%2E")
    store_answer = client.post(f"/store/{encoded}", headers=headers)
    assert store_answer.status_code == 400 and set(store_answer.get_json()["errors"]) == {"name"}
    item_answer = client.post(f"/item/{encoded}", headers=headers, json={"price": 1, "store_id": store["id"]})
    assert item_answer.status_code == 400 and set(item_answer.get_json()["errors"]) == {"name"}
    # Dots within a name are fine: "/" is encoded in every URL, so they are no segment.
    assert client.post("/store/" + quote("v1.0/..", safe=""), headers=headers).status_code == 201


def test_item_names_may_not_end_in_image(client, headers, store):
    body = {"price": 1, "store_id": store["id"]}
    # The path also names the image of item "chair": no item is created.
    assert client.post("/item/" + quote("chair/image", safe=""), headers=headers, json=body).status_code == 400
    # A name that ends so only after trimming reaches the item route: refused.
    response = client.post("/item/" + quote("chair/image ", safe=""), headers=headers, json=body)
    assert response.status_code == 400 and set(response.get_json()["errors"]) == {"name"}
