"""An authenticated read is one round trip to PostgreSQL, and the token check
that rides on it stays exact (blacklist.py, core/connections.py).

Round trips are counted at the driver, exactly as psycopg2 makes them: each
`cursor.execute` is one, plus the BEGIN psycopg2 sends on its own before a
connection's first statement outside autocommit, plus each commit or rollback
of an open transaction. Counted facts, so they are asserted.
"""

import time

import psycopg2
import psycopg2.extensions
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

import core.connections
from db import db

IDLE = psycopg2.extensions.TRANSACTION_STATUS_IDLE


class RoundTrips:
    count = 0


class CountingCursor(psycopg2.extensions.cursor):
    def execute(self, query, vars=None):
        if not self.connection.autocommit and self.connection.info.transaction_status == IDLE:
            RoundTrips.count += 1  # psycopg2's own BEGIN
        RoundTrips.count += 1
        return super().execute(query, vars)


class CountingConnection(psycopg2.extensions.connection):
    def cursor(self, *args, **kwargs):
        kwargs.setdefault("cursor_factory", CountingCursor)
        return super().cursor(*args, **kwargs)

    def commit(self):
        if self.info.transaction_status != IDLE:
            RoundTrips.count += 1
        return super().commit()

    def rollback(self):
        if self.info.transaction_status != IDLE:
            RoundTrips.count += 1
        return super().rollback()


# Round trips are PostgreSQL's: on SQLite there is no server to travel to.
pytestmark = pytest.mark.postgresql_only


@pytest.fixture
def counted_app(make_app):
    return make_app(SQLALCHEMY_ENGINE_OPTIONS={"connect_args": {"connection_factory": CountingConnection}})


def round_trips(send):
    RoundTrips.count = 0
    response = send()
    return RoundTrips.count, response


@pytest.fixture
def chair(counted_app):
    client = counted_app.test_client()
    client.post("/register", json={"username": "alice", "password": "correct-horse"})
    tokens = client.post("/login", json={"username": "alice", "password": "correct-horse"}).get_json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    store_id = client.post("/store/shop", headers=headers).get_json()["id"]
    assert client.post("/item/chair", headers=headers, json={"price": 1, "store_id": store_id}).status_code == 201
    client.get("/item/chair", headers=headers)  # the pool holds a connection now
    return client, headers


def test_an_authenticated_read_is_one_round_trip(chair):
    client, headers = chair
    trips, response = round_trips(lambda: client.get("/item/chair", headers=headers))
    assert response.status_code == 200
    assert trips == 1


def test_a_revoked_token_is_refused_in_that_one_round_trip(chair):
    client, headers = chair
    assert client.post("/logout", headers=headers).status_code == 200
    trips, response = round_trips(lambda: client.get("/item/chair", headers=headers))
    assert response.status_code == 401 and response.get_json()["error"] == "token_revoked"
    assert "price" not in response.get_data(as_text=True)
    assert trips == 1


def test_a_long_idle_connection_is_pinged_first(chair, monkeypatch):
    client, headers = chair
    monkeypatch.setattr(core.connections, "PING_AFTER_IDLE", -1.0)
    trips, response = round_trips(lambda: client.get("/item/chair", headers=headers))
    assert response.status_code == 200
    assert trips == 2  # the ping, then the read


def test_a_connection_the_server_closed_is_replaced_unseen(chair, counted_app):
    """No ping per request, yet a pooled connection the server has ended
    (restart, idle timeout, pg_terminate_backend) never fails a request."""
    client, headers = chair
    with counted_app.app_context():
        url = db.engine.url
    # Apart from the app's pool, which must keep the connection it holds.
    outsider = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with outsider.connect() as admin:
        admin.execute(text("SET application_name = 'outsider'"))
        ended = admin.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = ''"
            )
        ).all()
        assert ended
        # The ended backends' goodbye must have reached their sockets: wait until they are gone.
        for _ in range(500):
            left = admin.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = ''"
                )
            ).scalar()
            if left == 0:
                break
            time.sleep(0.01)
    outsider.dispose()
    response = client.get("/item/chair", headers=headers)
    assert response.status_code == 200, response.get_json()


def test_a_read_that_locks_or_writes_runs_in_a_transaction(counted_app):
    """GET's plain SELECTs run in autocommit; anything else in a GET request
    gets the transaction it would have had."""
    with counted_app.test_request_context("/items", method="GET"):
        raw = db.session.connection().connection.dbapi_connection
        db.session.execute(text("SELECT 1"))
        assert raw.autocommit and raw.info.transaction_status == IDLE
        db.session.execute(text("SELECT id FROM users FOR UPDATE"))
        assert not raw.autocommit and raw.info.transaction_status != IDLE
        db.session.rollback()
    with counted_app.test_request_context("/items", method="POST"):
        raw = db.session.connection().connection.dbapi_connection
        db.session.execute(text("SELECT 1"))
        assert not raw.autocommit and raw.info.transaction_status != IDLE
        db.session.rollback()


def test_a_write_after_a_read_on_the_same_connection_has_its_transaction(chair, counted_app):
    """The connection a read left in autocommit goes back to the pool with
    transactions on again: a write that takes it next holds its row locks
    until it commits (the If-Match race depends on it)."""
    client, headers = chair
    assert client.get("/item/chair", headers=headers).status_code == 200
    with counted_app.test_request_context("/item/chair", method="PUT"):
        raw = db.session.connection().connection.dbapi_connection
        assert not raw.autocommit
        db.session.execute(text("UPDATE items SET id = id WHERE name = 'chair'"))
        assert raw.info.transaction_status != IDLE  # the row lock is held until the end
        db.session.rollback()


def test_a_read_that_runs_no_statement_is_still_checked(client, users):
    """A read whose view answers without a statement (here 403: another
    user's record, decided from the token's claims) still has its token
    checked before the answer leaves: a logged-out token gets 401."""
    alice, bob = users.create("alice"), users.create("bob")
    assert client.get(f"/user/{bob['id']}", headers=alice["headers"]).status_code == 403
    assert client.post("/logout", headers=alice["headers"]).status_code == 200
    response = client.get(f"/user/{bob['id']}", headers=alice["headers"])
    assert response.status_code == 401 and response.get_json()["error"] == "token_revoked"
