"""Where the test suite finds real PostgreSQL and Redis, and what to do when one is missing.

Off CI a missing server skips the tests that need it, with the reason; under
CI=true it fails them, so CI can never pass with those tests unexecuted.
"""

import os
import uuid

import pytest
import redis
import sqlalchemy

from config import database_url

POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
ON_CI = os.environ.get("CI", "").lower() == "true"
# The database backends the in-process tests run on; `make test-fast` sets
# TEST_BACKENDS=sqlite: SQLite only, no PostgreSQL.
BACKENDS = os.environ.get("TEST_BACKENDS", "sqlite,postgresql").split(",")

# Two checkouts testing at once on one machine must never share state: every
# scratch database and every Redis key of this run carries this id.
RUN_ID = uuid.uuid4().hex[:10]
REDIS_KEY_PREFIX = f"test-{RUN_ID}:"
_scratch_databases = []


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


def redis_client(url=REDIS_URL):
    return redis.Redis.from_url(url, socket_connect_timeout=2)


def fresh_redis(url=REDIS_URL, prefix=REDIS_KEY_PREFIX):
    """No keys of this run left in Redis (other runs' keys untouched), or say
    why Redis cannot be used."""
    client = redis_client(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    except redis.exceptions.ConnectionError as e:
        unavailable(f"Redis is not reachable at {url}: {e}")
    return client


def _admin_engine():
    admin_url = POSTGRES_URL.rsplit("/", 1)[0] + "/postgres"
    return admin_url, sqlalchemy.create_engine(
        database_url(admin_url), isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
    )


def scratch_database(name):
    """A new, empty PostgreSQL database of this run on the test server; its URL.
    The run id in its name keeps concurrent runs apart; it is dropped at the end."""
    name = f"{name}_{RUN_ID}"
    admin_url, engine = _admin_engine()
    _scratch_databases.append(name)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            # A linguistic collation, as Heroku's databases have (en_US.UTF-8),
            # not this server's C.UTF-8: code point order must be asked for.
            locale = "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
            conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}" {locale}'))
    except sqlalchemy.exc.OperationalError as e:
        unavailable(f"PostgreSQL is not reachable at {admin_url}: {e.orig}")
    finally:
        engine.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def drop_scratch_databases():
    """Drop every scratch database this run made (called at the end of the session)."""
    if not _scratch_databases:
        return
    _, engine = _admin_engine()
    try:
        with engine.connect() as conn:
            for name in _scratch_databases:
                conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    except sqlalchemy.exc.OperationalError:
        pass  # the server went away; nothing left to clean
    finally:
        engine.dispose()
