"""Fixtures: the app built by `create_app` on each database backend, its test
client, and helpers for users and tokens.

Every test that uses `app` runs twice: on SQLite and on PostgreSQL. The schema
is built once per backend by the project's own migrations, and emptied before
each test.
"""

import os

import pytest
import sqlalchemy
from flask_migrate import upgrade

from app import create_app
from config import database_url as sqlalchemy_url
from db import db
from models.user import UserModel
from tests import services

TABLES = ("webhook_deliveries", "webhooks", "jodoo_deliveries", "items", "stores", "revoked_sessions", "users")


# Fixtures shared by several test modules, kept in their own files.
pytest_plugins = ["tests.s3"]

# `make test-fast` sets TEST_BACKENDS=sqlite: in-process tests on SQLite only.
BACKENDS = os.environ.get("TEST_BACKENDS", "sqlite,postgresql").split(",")


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request, tmp_path_factory):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'test.db'}"
    else:
        url = services.scratch_database("stores_test")
    app = create_app({"APP_ENV": "testing", "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade()
        db.engine.dispose()
    return url


def pytest_sessionfinish(session, exitstatus):
    services.drop_scratch_databases()


def empty_tables(url):
    engine = sqlalchemy.create_engine(sqlalchemy_url(url))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sqlalchemy.text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        else:
            for table in TABLES:
                conn.execute(sqlalchemy.text(f"DELETE FROM {table}"))
            conn.execute(sqlalchemy.text("DELETE FROM sqlite_sequence"))
    engine.dispose()


@pytest.fixture
def make_app(database_url, tmp_path):
    """Build apps on the current backend with extra settings; all share one database."""
    empty_tables(database_url)
    apps = []

    def make(**settings):
        app = build_app(database_url, **settings)
        apps.append(app)
        return app

    yield make
    for app in apps:
        dispose(app)


def build_app(database_url, **settings):
    """An app in the testing configuration on `database_url`."""
    return create_app(
        {
            "APP_ENV": "testing",
            "SQLALCHEMY_DATABASE_URI": database_url,
            "JWT_SECRET_KEY": "test-secret-key-" + "x" * 48,
            "REDIS_URL": None,
            "REDIS_KEY_PREFIX": services.REDIS_KEY_PREFIX,
            **settings,
        }
    )


def dispose(app):
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def redis_url():
    services.fresh_redis()
    return services.REDIS_URL


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


class Users:
    """Registers users and logs them in through the API itself."""

    def __init__(self, app, client):
        self.app, self.client = app, client
        self.count = 0

    def create(self, username=None, password="correct-horse", admin=False):
        self.count += 1
        username = username or f"user{self.count}"
        response = self.client.post("/register", json={"username": username, "password": password})
        assert response.status_code == 201, response.get_json()
        user_id = response.get_json()["id"]
        if admin:
            with self.app.app_context():
                db.session.get(UserModel, user_id).is_admin = True
                db.session.commit()
        tokens = self.login(username, password)
        return {
            "id": user_id,
            "username": username,
            "password": password,
            **tokens,
            "headers": bearer(tokens["access_token"]),
        }

    def login(self, username, password="correct-horse"):
        response = self.client.post("/login", json={"username": username, "password": password})
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def refreshed_headers(self, user):
        response = self.client.post("/refresh", headers=bearer(user["refresh_token"]))
        assert response.status_code == 200, response.get_json()
        return bearer(response.get_json()["access_token"])


@pytest.fixture
def users(app, client):
    return Users(app, client)


@pytest.fixture
def owner(users):
    """A regular user who owns the `store` fixture."""
    return users.create("owner")


@pytest.fixture
def store(client, owner):
    """A store named "shop" (id in the body), created by `owner`."""
    response = client.post("/store/shop", headers=owner["headers"])
    assert response.status_code == 201
    return response.get_json()
