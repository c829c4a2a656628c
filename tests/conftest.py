"""Fixtures: the app built by `create_app` on each database backend, its test
client, and users (tests/support/users.py) and a store of one of them.

Every test that uses `app` runs twice: on SQLite and on PostgreSQL. The schema
is built once per backend by the project's own migrations, and emptied before
each test.
"""

import gc

import pytest
from flask_migrate import upgrade

from app import create_app
from db import db
from tests.support import services
from tests.support.apps import build_app, dispose, dispose_engines, empty_tables
from tests.support.users import Users

# Fixtures shared by several test modules, kept in their own files.
pytest_plugins = ["tests.support.s3"]


@pytest.fixture(scope="session", params=services.BACKENDS)
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


def pytest_collection_finish(session):
    """Less time in the garbage collector (about a seventh of the run with
    Python's defaults): what was imported and collected lives as long as the
    run, so it is moved out of the collector's sight, and young objects are
    collected in larger batches. Nothing a test checks depends on when
    garbage is collected."""
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def pytest_collection_modifyitems(config, items):
    """A test marked `postgresql_only` is about PostgreSQL itself (its plans,
    its round trips): its SQLite variant is deselected, not skipped, since
    there is nothing to run."""
    sqlite_variants = [
        item
        for item in items
        if item.get_closest_marker("postgresql_only")
        and getattr(item, "callspec", None) is not None
        and item.callspec.params.get("database_url") == "sqlite"
    ]
    if sqlite_variants:
        config.hook.pytest_deselected(items=sqlite_variants)
        items[:] = [item for item in items if item not in sqlite_variants]


def pytest_sessionfinish(session, exitstatus):
    dispose_engines()
    services.drop_scratch_databases()


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
