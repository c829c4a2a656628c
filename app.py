"""The Stores API application factory: `create_app()` builds and wires the app.

Importing this module changes nothing: `flask --app app` finds `create_app`
and calls it; uWSGI loads `wsgi.py`, which calls it once per worker.
"""

import logging
import os
import secrets
import tempfile

import orjson
from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import BaseConverter

import cli
import docs
from blacklist import Blocklist
from config import config_class, database_url
from db import db
from errors import StoresApi, register_error_handlers, register_jwt_loaders
from events import register_outbox
from extensions import jwt
from rate_limits import RateLimits
from request_log import register_request_logging
from resources.health import Health, Ready
from resources.image import ItemImage
from resources.item import Item, ItemList
from resources.jodoo import JodooHook
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
from resources.webhook import Webhook, WebhookDeliveryList, WebhookDeliveryRetry, WebhookList
from security import Passwords, register_token_checks, return_big_buffers_to_the_os
from storage import make_storage

log = logging.getLogger(__name__)


def create_app(config=None):
    app = Flask(__name__, instance_relative_config=True, static_folder=None)
    settings = config_class((config or {}).get("APP_ENV"))
    app.config.from_object(settings)
    app.config.update(config or {})
    os.makedirs(app.instance_path, exist_ok=True)

    configure_database_url(app)
    configure_secret_key(app)
    settings.check(app.config)

    if app.config["TRUSTED_PROXY_COUNT"]:
        n = app.config["TRUSTED_PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)
    register_request_logging(app)
    register_extensions(app)
    register_resources(app)
    app.register_blueprint(docs.blueprint)
    register_error_handlers(app)
    cli.register_commands(app)
    return app


def configure_database_url(app):
    app.config["SQLALCHEMY_DATABASE_URI"] = database_url(app.config.get("SQLALCHEMY_DATABASE_URI"))
    if not app.config["SQLALCHEMY_DATABASE_URI"]:
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
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options


def configure_secret_key(app):
    """Development only: with no JWT_SECRET_KEY, make a random one once and keep
    it in the instance folder, so every worker and restart shares it."""
    if app.config.get("JWT_SECRET_KEY"):
        return
    if app.config["ENV_NAME"] == "production":
        return  # ProductionConfig.check refuses to start
    path = os.path.join(app.instance_path, "jwt-secret.key")
    if not os.path.exists(path):
        # Write aside, then link into place: of racing workers exactly one wins.
        fd, tmp = tempfile.mkstemp(dir=app.instance_path)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
        try:
            os.link(tmp, path)
            log.warning("JWT_SECRET_KEY is not set; generated one in %s. Set it in production.", path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    with open(path) as f:
        app.config["JWT_SECRET_KEY"] = f.read().strip()


def sqlite_pragmas(dbapi_connection, connection_record):
    """SQLite enforces foreign keys only when asked, per connection; WAL lets
    several uWSGI workers read while one writes."""
    import sqlite3

    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()


def register_extensions(app):
    if not event.contains(Engine, "connect", sqlite_pragmas):
        event.listen(Engine, "connect", sqlite_pragmas)
    db.init_app(app)
    register_outbox()
    register_migrations(app)
    jwt.init_app(app)
    register_jwt_loaders(jwt)
    register_token_checks(app, jwt)
    return_big_buffers_to_the_os()
    app.extensions["passwords"] = Passwords(app.config)
    app.extensions["blocklist"] = Blocklist(app.config["JWT_REFRESH_TOKEN_EXPIRES"])
    app.extensions["rate_limits"] = RateLimits(app.config)
    app.extensions["image_storage"] = make_storage(app.config, app.instance_path)


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
