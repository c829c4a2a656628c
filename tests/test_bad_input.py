"""Generated junk at every endpoint: never a 5xx, always the JSON envelope, and a
rejected request never changes the database."""

import string

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from db import db
from tests.conftest import Users, empty_tables

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
    changes what the next one sees."""
    empty_tables(database_url)
    app.extensions["rate_limits"].storage.reset()
    users = Users(app, client)
    admin, user = users.create("admin", admin=True), users.create("someone")
    client.post("/store/shop", headers=admin["headers"])
    client.post("/item/chair", headers=admin["headers"], json={"price": 1.5, "store_id": 1})
    return {
        "admin": admin["headers"],
        "user": user["headers"],
        "junk": {"Authorization": "Bearer not.a.token"},
        "none": {},
    }


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
