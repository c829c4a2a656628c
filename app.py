"""The Stores API application factory: `create_app()` builds and wires the app.

Importing this module changes nothing: `flask --app app` finds `create_app`
and calls it; uWSGI loads `wsgi.py`, which calls it once per worker. Each
`register_*` step binds one concern; the URL map is `register_resources`.
"""

import os

import orjson
from dotenv import find_dotenv, load_dotenv
from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import BaseConverter

from config import config_class, database_url, from_environment
from core import cli, docs
from core.connections import register_connections
from core.errors import StoresApi, register_error_handlers
from core.passwords import register_passwords
from core.rate_limits import RateLimits
from core.request_log import register_request_logging
from core.tokens import register_tokens
from db import db
from images.resource import ItemImage
from images.storage import make_storage
from resources.health import Health, Ready
from resources.item import Item, ItemList
from resources.store import Store, StoreList
from resources.user import (
    TokenRefresh,
    User,
    UserLogin,
    UserLogout,
    UserPassword,
    UserRegister,
    UserSessions,
)
from webhooks.jodoo import JodooHook
from webhooks.outbox import register_outbox
from webhooks.subscriptions import Webhook, WebhookDeliveryList, WebhookDeliveryRetry, WebhookList


class StoresFlask(Flask):
    def make_default_options_response(self):
        """OPTIONS on any route: 204 with `Allow` and no body (Flask's own
        answer is a 200 with an empty text/html body)."""
        response = super().make_default_options_response()
        response.status_code = 204
        del response.headers["Content-Type"]
        return response


def create_app(config=None):
    config = config or {}
    if config.get("APP_ENV") != "testing":
        # A .env file in the working directory or above (as the `flask` command
        # finds it); real environment variables win. Tests must not depend on one.
        load_dotenv(find_dotenv(usecwd=True))
    settings = config_class(config.get("APP_ENV"))
    app = StoresFlask(__name__, instance_relative_config=True, static_folder=None)
    app.config.from_object(settings)
    app.config.update(from_environment(settings))
    app.config.update(config)
    configure_database_url(app)
    settings.check(app.config)

    if app.config["TRUSTED_PROXY_COUNT"]:
        n = app.config["TRUSTED_PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)
    register_request_logging(app)
    register_database(app)
    register_tokens(app)
    register_passwords(app)
    app.extensions["rate_limits"] = RateLimits(app.config)
    app.extensions["image_storage"] = make_storage(app.config, app.instance_path)
    register_resources(app)
    app.register_blueprint(docs.blueprint)
    register_error_handlers(app)
    cli.register_commands(app)
    return app


def configure_database_url(app):
    app.config["SQLALCHEMY_DATABASE_URI"] = database_url(app.config.get("SQLALCHEMY_DATABASE_URI"))
    if not app.config["SQLALCHEMY_DATABASE_URI"]:
        os.makedirs(app.instance_path, exist_ok=True)
        path = os.path.join(app.instance_path, "stores.db")
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{path}"
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        # No server to lose: the ping would be one more statement per request.
        options = dict(app.config["SQLALCHEMY_ENGINE_OPTIONS"], pool_pre_ping=False)
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        # Fail fast (then 503) rather than hang when PostgreSQL is unreachable.
        options = dict(app.config["SQLALCHEMY_ENGINE_OPTIONS"])
        options.setdefault("connect_args", {"connect_timeout": 3})
        # core/connections.py finds closed connections without the ping's round trip.
        options["pool_pre_ping"] = False
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options


def sqlite_pragmas(dbapi_connection, connection_record):
    """SQLite enforces foreign keys only when asked, per connection; WAL lets
    several uWSGI workers read while one writes. Its `lower()` folds only
    ASCII: the lists' `q` filter folds with Python's (models/listing.py)."""
    import sqlite3

    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.create_function("unicode_lower", 1, str.lower, deterministic=True)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()


def register_database(app):
    """The SQLAlchemy object, SQLite's pragmas, the webhook outbox's commit
    hooks, and (outside uWSGI) the `flask db` migration commands."""
    if not event.contains(Engine, "connect", sqlite_pragmas):
        event.listen(Engine, "connect", sqlite_pragmas)
    register_connections()
    db.init_app(app)
    register_outbox()
    register_migrations(app)


def register_migrations(app):
    """Flask-Migrate (with alembic, ~11 MB per process) only where `flask db`
    can run: never in a uWSGI worker, which only serves requests."""
    try:
        import uwsgi  # noqa: F401  (importable only inside uWSGI)

        return
    except ImportError:
        pass
    from flask_migrate import Migrate

    Migrate(app, db)


class NameConverter(BaseConverter):
    """A store or item name in the URL: any characters, '/' and line breaks
    included (Werkzeug's `path` converter stops at a line break and refuses a
    leading '/')."""

    regex = "(?s:.+)"
    part_isolating = False


class ItemNameConverter(NameConverter):
    """An item name: as above, but never ending in "/image", which addresses
    the item's image (`/item/a/b/image` is the image of item "a/b"). So any
    method on such a path is the image route's: 405 with its own Allow."""

    regex = "(?s:.+(?<!/image))"


def register_resources(app):
    app.url_map.converters["name"] = NameConverter
    app.url_map.converters["item_name"] = ItemNameConverter
    api = StoresApi(app)

    @api.representation("application/json")
    def output_json(data, code, headers=None):
        # orjson: fast, and it never writes NaN (invalid JSON) the way json.dumps can.
        return app.response_class(orjson.dumps(data), status=code, headers=headers, mimetype="application/json")

    api.add_resource(UserRegister, "/register")
    api.add_resource(UserLogin, "/login")
    api.add_resource(UserLogout, "/logout")
    api.add_resource(TokenRefresh, "/refresh")
    api.add_resource(User, "/user/<int:user_id>")
    api.add_resource(UserPassword, "/user/<int:user_id>/password")
    api.add_resource(UserSessions, "/user/<int:user_id>/sessions")
    api.add_resource(Store, "/store/<name:name>")
    # The current course lists at /store and /item; the contract's paths are plural.
    api.add_resource(StoreList, "/stores", "/store")
    api.add_resource(Item, "/item/<item_name:name>")
    api.add_resource(ItemImage, "/item/<name:name>/image")
    api.add_resource(ItemList, "/items", "/item")
    api.add_resource(Health, "/health")
    api.add_resource(Ready, "/health/ready")
    api.add_resource(WebhookList, "/webhooks")
    api.add_resource(Webhook, "/webhooks/<int:webhook_id>")
    api.add_resource(WebhookDeliveryList, "/webhooks/<int:webhook_id>/deliveries")
    api.add_resource(WebhookDeliveryRetry, "/webhooks/<int:webhook_id>/deliveries/<int:delivery_id>/retry")
    api.add_resource(JodooHook, "/hooks/jodoo")
