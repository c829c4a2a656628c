"""Configuration: settings classes read from the environment.

`create_app` picks a class by `APP_ENV` (development, production, testing), then
applies the mapping it was given. Production fails fast on a missing or weak
`JWT_SECRET_KEY`; development generates one and keeps it in the instance folder.
"""

import os
from datetime import timedelta

from dotenv import load_dotenv

# Development convenience: a `.env` file in the working directory fills in the
# environment (real environment variables win).
load_dotenv()


def database_url(url):
    """Heroku gives `postgres://`, which SQLAlchemy does not know; and a bare
    `postgresql://` means psycopg 3 since SQLAlchemy 2.1. Both mean psycopg2 here."""
    for scheme in ("postgres://", "postgresql://"):
        if url and url.startswith(scheme):
            return "postgresql+psycopg2://" + url[len(scheme) :]
    return url


def redis_options(config):
    """Connection options for REDIS_URL: Heroku Redis serves rediss:// with a
    self-signed certificate, accepted only when REDIS_TLS_VERIFY=false."""
    if config["REDIS_URL"].startswith("rediss://") and not config.get("REDIS_TLS_VERIFY", True):
        return {"ssl_cert_reqs": None}
    return {}


def _int(name, default):
    return int(os.environ.get(name, default))


def _float(name, default):
    return float(os.environ.get(name, default))


def _bool(name, default):
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in ("1", "true", "yes", "on")


class Config:
    """Defaults shared by every environment, read from the environment."""

    ENV_NAME = "development"

    # None means "SQLite file in the instance folder", resolved in create_app.
    SQLALCHEMY_DATABASE_URI = database_url(os.environ.get("DATABASE_URL"))
    SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}
    SQLALCHEMY_TRACK_MODIFICATIONS = False

    REDIS_URL = os.environ.get("REDIS_URL") or None
    # Heroku Redis serves rediss:// with a self-signed certificate; only there
    # set REDIS_TLS_VERIFY=false.
    REDIS_TLS_VERIFY = os.environ.get("REDIS_TLS_VERIFY", "true").lower() != "false"
    # Every key this app writes to Redis starts with this, so several apps (or
    # test runs) can share one Redis without touching each other's keys.
    REDIS_KEY_PREFIX = os.environ.get("REDIS_KEY_PREFIX", "stores-api:")

    # How many proxies in front of the app append to X-Forwarded-For (Heroku's
    # router: 1). Behind this project's Nginx it is 0: uwsgi_pass gives the
    # client's address itself. Never more than there really are: the header
    # is the client's to forge.
    TRUSTED_PROXY_COUNT = _int("TRUSTED_PROXY_COUNT", 0)

    JWT_SECRET_KEY = os.environ.get("JWT_SECRET_KEY") or None
    JWT_ALGORITHM = "HS256"
    JWT_DECODE_ALGORITHMS = ["HS256"]
    JWT_TOKEN_LOCATION = ["headers"]
    JWT_ACCESS_TOKEN_EXPIRES = timedelta(seconds=_int("JWT_ACCESS_TOKEN_EXPIRES", 900))
    JWT_REFRESH_TOKEN_EXPIRES = timedelta(seconds=_int("JWT_REFRESH_TOKEN_EXPIRES", 2592000))

    MAX_CONTENT_LENGTH = _int("MAX_CONTENT_LENGTH", 65536)

    LOGIN_RATE_LIMIT = os.environ.get("LOGIN_RATE_LIMIT", "10 per minute")
    # A username's failed logins from all addresses together: looser, and it
    # only refuses addresses that have failed themselves (rate_limits.py).
    LOGIN_USERNAME_FAILURE_LIMIT = os.environ.get("LOGIN_USERNAME_FAILURE_LIMIT", "100 per hour")
    REGISTER_RATE_LIMIT = os.environ.get("REGISTER_RATE_LIMIT", "20 per hour")

    # Quotas (admins are exempt) and the bound on items embedded in a store.
    MAX_STORES_PER_USER = _int("MAX_STORES_PER_USER", 100)
    MAX_ITEMS_PER_STORE = _int("MAX_ITEMS_PER_STORE", 10000)
    STORE_ITEMS_EMBEDDED = _int("STORE_ITEMS_EMBEDDED", 100)

    # Item images (storage.py, images.py, resources/image.py). None means
    # file:// + the instance folder's images/.
    IMAGE_STORAGE = os.environ.get("IMAGE_STORAGE") or None
    IMAGE_MAX_BYTES = _int("IMAGE_MAX_BYTES", 5242880)
    IMAGE_MAX_PIXELS = _int("IMAGE_MAX_PIXELS", 40000000)
    # Behind Nginx: the internal location that serves the images folder
    # (deploy/nginx.conf, "/_images/"); unset, the app sends files itself.
    IMAGE_ACCEL_REDIRECT = os.environ.get("IMAGE_ACCEL_REDIRECT") or None
    S3_ENDPOINT_URL = os.environ.get("S3_ENDPOINT_URL") or None
    AWS_ACCESS_KEY_ID = os.environ.get("AWS_ACCESS_KEY_ID") or None
    AWS_SECRET_ACCESS_KEY = os.environ.get("AWS_SECRET_ACCESS_KEY") or None
    AWS_DEFAULT_REGION = os.environ.get("AWS_DEFAULT_REGION") or None
    RATELIMIT_HEADERS_ENABLED = True

    # OWASP's minimum for argon2id: 19 MiB, 2 iterations, parallelism 1.
    ARGON2_TIME_COST = _int("ARGON2_TIME_COST", 2)
    ARGON2_MEMORY_COST = _int("ARGON2_MEMORY_COST", 19456)  # KiB
    ARGON2_PARALLELISM = _int("ARGON2_PARALLELISM", 1)

    # Seconds a client is told to wait when the database or Redis is down.
    RETRY_AFTER_SECONDS = 5

    # Webhooks (webhooks.py, webhooks_worker.py; README "Webhooks").
    # Where the embedded queue lives when REDIS_URL is unset (None: the
    # instance folder's webhooks-queue.db).
    WEBHOOK_QUEUE_PATH = os.environ.get("WEBHOOK_QUEUE_PATH") or None
    # Retries: the n-th retry waits BASE * 2**(n-1) seconds (capped at MAX),
    # with +-20 % jitter, until WINDOW seconds after the event: then `failed`.
    WEBHOOK_RETRY_BASE_SECONDS = _float("WEBHOOK_RETRY_BASE_SECONDS", 10)
    WEBHOOK_RETRY_MAX_SECONDS = _float("WEBHOOK_RETRY_MAX_SECONDS", 4 * 3600)
    WEBHOOK_RETRY_WINDOW_SECONDS = _float("WEBHOOK_RETRY_WINDOW_SECONDS", 24 * 3600)
    # How often an idle worker looks for due deliveries, and how long a claim
    # lasts before another worker may take the row (a worker killed mid-send).
    WEBHOOK_POLL_SECONDS = _float("WEBHOOK_POLL_SECONDS", 0.5)
    WEBHOOK_CLAIM_SECONDS = _float("WEBHOOK_CLAIM_SECONDS", 60)
    WEBHOOK_WORKER_THREADS = _int("WEBHOOK_WORKER_THREADS", 4)
    WEBHOOK_TIMEOUT_SECONDS = _float("WEBHOOK_TIMEOUT_SECONDS", 10)
    # Local and private receivers (and plain http) for development and tests
    # only: production refuses them (SSRF: the database, Redis, cloud metadata).
    WEBHOOK_ALLOW_PRIVATE_TARGETS = _bool("WEBHOOK_ALLOW_PRIVATE_TARGETS", True)

    # The incoming Jodoo push (resources/jodoo.py): unset secret = no endpoint.
    JODOO_WEBHOOK_SECRET = os.environ.get("JODOO_WEBHOOK_SECRET") or None
    JODOO_FIELD_MAP = os.environ.get("JODOO_FIELD_MAP") or '{"name": "name", "price": "price", "store": "store"}'

    # A JSON body that is a list or has unknown top-level keys is still parsed
    # field by field; reqparse collects every field's error, not just the first.
    BUNDLE_ERRORS = True

    @classmethod
    def check(cls, settings):
        """Refuse to start with settings this environment must not run with.
        Development and testing accept the defaults."""


class DevelopmentConfig(Config):
    ENV_NAME = "development"


class ProductionConfig(Config):
    ENV_NAME = "production"
    WEBHOOK_ALLOW_PRIVATE_TARGETS = _bool("WEBHOOK_ALLOW_PRIVATE_TARGETS", False)

    # The weakest hashing production may use is OWASP's minimum.
    MIN_ARGON2 = (2, 19456, 1)

    @classmethod
    def check(cls, settings):
        """Refuse to start with a missing or short secret, or weakened hashing."""
        secret = settings.get("JWT_SECRET_KEY")
        if not secret:
            raise RuntimeError("JWT_SECRET_KEY must be set when APP_ENV=production.")
        if len(secret.encode()) < 32:
            raise RuntimeError("JWT_SECRET_KEY must be at least 32 bytes long.")
        cost = (settings["ARGON2_TIME_COST"], settings["ARGON2_MEMORY_COST"], settings["ARGON2_PARALLELISM"])
        if any(have < need for have, need in zip(cost, cls.MIN_ARGON2, strict=True)):
            raise RuntimeError("Argon2 cost is below OWASP's minimum (t=2, m=19456 KiB, p=1).")


class TestingConfig(Config):
    ENV_NAME = "testing"
    TESTING = True
    # Hashing at full cost would make the suite slow; tests check behaviour, not cost.
    ARGON2_TIME_COST = 1
    ARGON2_MEMORY_COST = 64
    ARGON2_PARALLELISM = 1
    LOGIN_RATE_LIMIT = "1000 per minute"
    LOGIN_USERNAME_FAILURE_LIMIT = "10000 per minute"
    REGISTER_RATE_LIMIT = "1000 per minute"


CONFIGS = {
    "development": DevelopmentConfig,
    "production": ProductionConfig,
    "testing": TestingConfig,
}


def config_class(name=None):
    name = name or os.environ.get("APP_ENV", "development")
    try:
        return CONFIGS[name]
    except KeyError:
        raise RuntimeError(f"APP_ENV must be one of {', '.join(CONFIGS)}; got {name!r}.") from None
