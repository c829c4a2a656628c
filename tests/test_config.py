"""Configuration: database URLs, secrets, and production's refusals."""

from datetime import timedelta

import pytest

from app import create_app
from config import database_url
from core.tokens import secret_key


@pytest.fixture(autouse=True)
def instance_folder(monkeypatch, tmp_path):
    """Apps built here without a database URL (or a JWT secret) make and write
    their instance folder: a temporary one, never the checkout's `instance/`."""
    monkeypatch.setattr("flask.Flask.auto_find_instance_path", lambda self: str(tmp_path / "instance"))


def test_heroku_postgres_scheme_is_accepted():
    assert database_url("postgres://u:p@h:5432/d") == "postgresql+psycopg2://u:p@h:5432/d"
    assert database_url("postgresql://u@h/d") == "postgresql+psycopg2://u@h/d"
    assert database_url("sqlite:///x.db") == "sqlite:///x.db"


def test_default_database_is_sqlite_in_instance_folder(monkeypatch, tmp_path):
    app = create_app({"APP_ENV": "testing", "SQLALCHEMY_DATABASE_URI": None, "JWT_SECRET_KEY": "k" * 32})
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{app.instance_path}/stores.db"


def test_production_refuses_missing_or_short_secret():
    with pytest.raises(RuntimeError, match="JWT_SECRET_KEY must be set"):
        create_app({"APP_ENV": "production", "JWT_SECRET_KEY": None})
    with pytest.raises(RuntimeError, match="at least 32 bytes"):
        create_app({"APP_ENV": "production", "JWT_SECRET_KEY": "short"})
    assert create_app({"APP_ENV": "production", "JWT_SECRET_KEY": "s" * 32})


def test_production_refuses_weak_password_hashing():
    with pytest.raises(RuntimeError, match="OWASP"):
        create_app({"APP_ENV": "production", "JWT_SECRET_KEY": "s" * 32, "ARGON2_MEMORY_COST": 1024})


def test_development_generates_and_keeps_a_secret(monkeypatch, tmp_path):
    monkeypatch.setattr("flask.Flask.auto_find_instance_path", lambda self: str(tmp_path / "instance"))
    first = create_app({"APP_ENV": "development", "JWT_SECRET_KEY": None})
    second = create_app({"APP_ENV": "development", "JWT_SECRET_KEY": None})
    # Building an app writes nothing: a CLI command that signs no token leaves no key behind.
    assert not (tmp_path / "instance" / "jwt-secret.key").exists()
    with first.app_context():
        secret = secret_key()
    with second.app_context():
        assert secret_key() == secret
    assert len(secret) >= 32
    assert (tmp_path / "instance" / "jwt-secret.key").read_text().strip() == secret


def test_settings_are_read_from_the_environment_when_the_app_is_built(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("MAX_ITEMS_PER_STORE=7\nLOGIN_RATE_LIMIT=3 per minute\n")
    monkeypatch.setenv("LOGIN_RATE_LIMIT", "5 per minute")  # a real variable wins over .env
    monkeypatch.setenv("JWT_ACCESS_TOKEN_EXPIRES", "60")
    monkeypatch.setenv("WEBHOOK_ALLOW_PRIVATE_TARGETS", "false")
    app = create_app({"APP_ENV": "development", "SQLALCHEMY_DATABASE_URI": "sqlite://", "MAX_STORES_PER_USER": 2})
    assert app.config["MAX_ITEMS_PER_STORE"] == 7
    assert app.config["LOGIN_RATE_LIMIT"] == "5 per minute"
    assert app.config["JWT_ACCESS_TOKEN_EXPIRES"] == timedelta(seconds=60)
    assert app.config["WEBHOOK_ALLOW_PRIVATE_TARGETS"] is False
    assert app.config["MAX_STORES_PER_USER"] == 2  # the mapping given to create_app wins over both
    monkeypatch.delenv("MAX_ITEMS_PER_STORE")  # load_dotenv put it there; tests must not share it


def test_testing_settings_ignore_a_dotenv_file(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MAX_ITEMS_PER_STORE", raising=False)
    (tmp_path / ".env").write_text("MAX_ITEMS_PER_STORE=7\n")
    app = create_app({"APP_ENV": "testing", "SQLALCHEMY_DATABASE_URI": "sqlite://"})
    assert app.config["MAX_ITEMS_PER_STORE"] == 10000


def test_a_malformed_number_in_the_environment_fails_fast(monkeypatch):
    monkeypatch.setenv("MAX_CONTENT_LENGTH", "64k")
    with pytest.raises(RuntimeError, match="MAX_CONTENT_LENGTH must be a number"):
        create_app({"APP_ENV": "testing", "SQLALCHEMY_DATABASE_URI": "sqlite://"})


def test_unknown_app_env_fails_fast():
    with pytest.raises(RuntimeError, match="APP_ENV"):
        create_app({"APP_ENV": "staging"})


def test_trusted_proxy_gives_the_client_address(make_app):
    app = make_app(TRUSTED_PROXY_COUNT=1)

    @app.get("/whoami")
    def whoami():
        from flask import request

        return {"addr": request.remote_addr}

    response = app.test_client().get("/whoami", headers={"X-Forwarded-For": "203.0.113.7"})
    assert response.get_json() == {"addr": "203.0.113.7"}


def test_forwarded_for_ignored_without_trusted_proxy(make_app):
    app = make_app()

    @app.get("/whoami")
    def whoami():
        from flask import request

        return {"addr": request.remote_addr}

    response = app.test_client().get("/whoami", headers={"X-Forwarded-For": "203.0.113.7"})
    assert response.get_json() == {"addr": "127.0.0.1"}


def test_heroku_redis_tls_option():
    from config import redis_options

    assert redis_options({"REDIS_URL": "rediss://h:6380", "REDIS_TLS_VERIFY": False}) == {"ssl_cert_reqs": None}
    assert redis_options({"REDIS_URL": "rediss://h:6380", "REDIS_TLS_VERIFY": True}) == {}
    assert redis_options({"REDIS_URL": "redis://h:6379", "REDIS_TLS_VERIFY": False}) == {}
