"""The migrations upgrade a database that already holds data, on SQLite and
PostgreSQL: rows kept, new columns filled, constraints and indexes intact."""

import secrets

import pytest
import sqlalchemy
from flask_migrate import downgrade, upgrade

from db import db
from tests.support import services
from tests.support.apps import build_app, dispose


@pytest.fixture(params=services.BACKENDS)
def empty_database(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'migrate.db'}"
    return services.scratch_database("stores_migrate")


def test_upgrade_from_0001_with_rows(empty_database):
    app = build_app(empty_database)
    with app.app_context():
        upgrade(revision="0001")
        conn = db.session.connection()
        for statement in (
            "INSERT INTO users (username, password_hash, is_admin) VALUES ('alice', 'h', false)",
            "INSERT INTO users (username, password_hash, is_admin) VALUES ('bob', 'h', false)",
            "INSERT INTO stores (name) VALUES ('shop')",
            "INSERT INTO items (name, price, store_id) VALUES ('chair', 1.5, 1)",
            "DELETE FROM users WHERE username = 'bob'",
        ):
            conn.execute(sqlalchemy.text(statement))
        db.session.commit()
        db.session.remove()
        upgrade()
        conn = db.session.connection()
        users = conn.execute(sqlalchemy.text("SELECT username, account_key, session_generation FROM users")).all()
        assert [(u.username, len(u.account_key), u.session_generation) for u in users] == [("alice", 32, 0)]
        assert conn.execute(sqlalchemy.text("SELECT name, owner_id FROM stores")).all() == [("shop", None)]
        assert conn.execute(sqlalchemy.text("SELECT name, store_id FROM items")).all() == [("chair", 1)]
        # Usernames stay unique ignoring case (an index on an expression).
        with pytest.raises(sqlalchemy.exc.IntegrityError):
            conn.execute(
                sqlalchemy.text("INSERT INTO users (username, password_hash, account_key) VALUES ('ALICE', 'h', 'k')")
            )
        db.session.rollback()
        # And back down to where it started.
        db.session.remove()
        downgrade(revision="0001")
        columns = {c["name"] for c in sqlalchemy.inspect(db.engine).get_columns("stores")}
        assert "owner_id" not in columns
        # And up again: the round trip leaves a database the app can use.
        upgrade()
        with pytest.raises(sqlalchemy.exc.IntegrityError):
            db.session.connection().execute(
                sqlalchemy.text("INSERT INTO users (username, password_hash, account_key) VALUES ('ALICE', 'h', 'k2')")
            )
        db.session.rollback()
    dispose(app)


def test_migration_0003_round_trip_keeps_autoincrement(tmp_path):
    """Upgrade, downgrade to 0001 and upgrade again on SQLite: the items table
    keeps AUTOINCREMENT (batch mode recreates it on the way down)."""
    import sqlite3

    from flask_migrate import downgrade, upgrade

    from app import create_app

    path = tmp_path / "migrations.db"
    app = create_app(
        {
            "APP_ENV": "testing",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}",
            "JWT_SECRET_KEY": secrets.token_hex(32),
            "IMAGE_STORAGE": f"file://{tmp_path / 'images'}",
        }
    )

    def items_sql():
        with sqlite3.connect(path) as conn:
            return conn.execute("SELECT sql FROM sqlite_master WHERE name = 'items'").fetchone()[0]

    with app.app_context():
        upgrade()
        assert "image_key" in items_sql() and "AUTOINCREMENT" in items_sql()
        downgrade(revision="0001")
        assert "image_key" not in items_sql() and "AUTOINCREMENT" in items_sql()
        upgrade()
        assert "image_key" in items_sql() and "AUTOINCREMENT" in items_sql()


def test_migration_0005_keeps_applied_pushes_and_refuses_a_second_claim(empty_database):
    app = build_app(empty_database)
    with app.app_context():
        upgrade(revision="0004")
        conn = db.session.connection()
        conn.execute(
            sqlalchemy.text("INSERT INTO jodoo_deliveries (deliver_id, applied_at) VALUES ('d-1', CURRENT_TIMESTAMP)")
        )
        db.session.commit()
        db.session.remove()
        upgrade()
        conn = db.session.connection()
        rows = conn.execute(sqlalchemy.text("SELECT deliver_id, status, reason FROM jodoo_deliveries")).all()
        assert [tuple(row) for row in rows] == [("d-1", "applied", None)]
        claim = sqlalchemy.text("INSERT INTO jodoo_nonces (key, seen_at) VALUES ('k', CURRENT_TIMESTAMP)")
        conn.execute(claim)
        with pytest.raises(sqlalchemy.exc.IntegrityError):
            conn.execute(claim)
        db.session.rollback()
        indexes = {index["name"] for index in sqlalchemy.inspect(db.engine).get_indexes("jodoo_nonces")}
        assert "ix_jodoo_nonces_seen_at" in indexes
        db.session.remove()
        downgrade(revision="0004")
        inspector = sqlalchemy.inspect(db.engine)
        assert "jodoo_nonces" not in inspector.get_table_names()
        assert {c["name"] for c in inspector.get_columns("jodoo_deliveries")} == {"deliver_id", "applied_at"}
        assert "ix_jodoo_deliveries_applied_at" in {i["name"] for i in inspector.get_indexes("jodoo_deliveries")}
        assert db.session.connection().execute(sqlalchemy.text("SELECT deliver_id FROM jodoo_deliveries")).all() == [
            ("d-1",)
        ]
        db.session.remove()
        upgrade()
    dispose(app)


def test_migration_0006_folds_names_of_rows_already_there_and_of_rows_loaded_later(empty_database):
    app = build_app(empty_database)
    with app.app_context():
        upgrade(revision="0005")
        conn = db.session.connection()
        conn.execute(sqlalchemy.text("INSERT INTO stores (name) VALUES ('Café Central')"))
        db.session.commit()
        db.session.remove()
        upgrade()
        conn = db.session.connection()
        conn.execute(sqlalchemy.text("INSERT INTO items (name, price, store_id) VALUES ('CHAIR', 1.5, 1)"))
        db.session.commit()
        client = app.test_client()
        assert [s["name"] for s in client.get("/stores?q=CAFÉ").get_json()["stores"]] == ["Café Central"]
        assert client.get("/items?q=chair").get_json()["items"] == ["CHAIR"]
        indexes = {index["name"] for index in sqlalchemy.inspect(db.engine).get_indexes("items")}
        assert {"ix_items_price_id", "ix_items_price_desc_id"} <= indexes
        db.session.remove()
        downgrade(revision="0005")
        inspector = sqlalchemy.inspect(db.engine)
        assert "name_lower" not in {c["name"] for c in inspector.get_columns("items")}
        assert "ix_items_price_id" not in {i["name"] for i in inspector.get_indexes("items")}
        upgrade()
    dispose(app)
