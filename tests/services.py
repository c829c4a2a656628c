"""Where the test suite finds real PostgreSQL and Redis, and what to do when one is missing.

Off CI a missing server skips the tests that need it, with the reason; under
CI=true it fails them, so CI can never pass with those tests unexecuted.
"""
import os

import pytest
import redis
import sqlalchemy

from config import database_url

POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
ON_CI = os.environ.get("CI", "").lower() == "true"


def unavailable(reason):
    if ON_CI:
        pytest.fail(f"{reason} (CI=true: required)", pytrace=False)
    pytest.skip(reason)


def reset_postgres(url):
    """Drop everything in the public schema, or say why PostgreSQL cannot be used."""
    engine = sqlalchemy.create_engine(database_url(url), connect_args={"connect_timeout": 3})
    try:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text("DROP SCHEMA public CASCADE"))
            conn.execute(sqlalchemy.text("CREATE SCHEMA public"))
    except sqlalchemy.exc.OperationalError as e:
        unavailable(f"PostgreSQL is not reachable at {url}: {e.orig}")
    finally:
        engine.dispose()


def fresh_redis(url=REDIS_URL):
    """An empty Redis database, or say why Redis cannot be used."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.flushdb()
    except redis.exceptions.ConnectionError as e:
        unavailable(f"Redis is not reachable at {url}: {e}")
    return client


def scratch_database(name):
    """A new, empty PostgreSQL database on the test server; its URL."""
    admin_url = POSTGRES_URL.rsplit("/", 1)[0] + "/postgres"
    engine = sqlalchemy.create_engine(database_url(admin_url), isolation_level="AUTOCOMMIT",
                                      connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    except sqlalchemy.exc.OperationalError as e:
        unavailable(f"PostgreSQL is not reachable at {admin_url}: {e.orig}")
    finally:
        engine.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"
