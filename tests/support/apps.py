"""Apps for the in-process tests: built by `create_app` in the testing
configuration on a given database, emptied between tests, and disposed of."""

import secrets

import sqlalchemy

from app import create_app
from config import database_url as sqlalchemy_url
from db import db
from tests.support import services

# One signing key per test run, shared by every app (and server) it builds:
# apps on one database must read each other's tokens.
JWT_SECRET = secrets.token_hex(32)

TABLES = (
    "webhook_deliveries",
    "webhooks",
    "jodoo_deliveries",
    "jodoo_nonces",
    "items",
    "stores",
    "revoked_sessions",
    "users",
)

# One engine per database URL for the whole session: a new one per test costs
# more than the DELETEs themselves.
_engines = {}


def empty_tables(url):
    engine = _engines.get(url)
    if engine is None:
        engine = _engines[url] = sqlalchemy.create_engine(sqlalchemy_url(url))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sqlalchemy.text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        else:
            for table in TABLES:
                conn.execute(sqlalchemy.text(f"DELETE FROM {table}"))
            conn.execute(sqlalchemy.text("DELETE FROM sqlite_sequence"))


def dispose_engines():
    """Close what `empty_tables` kept open (before the scratch databases are dropped)."""
    while _engines:
        _engines.popitem()[1].dispose()


def build_app(database_url, **settings):
    """An app in the testing configuration on `database_url`."""
    return create_app(
        {
            "APP_ENV": "testing",
            "SQLALCHEMY_DATABASE_URI": database_url,
            "JWT_SECRET_KEY": JWT_SECRET,
            "REDIS_URL": None,
            "REDIS_KEY_PREFIX": services.REDIS_KEY_PREFIX,
            **settings,
        }
    )


def dispose(app):
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
