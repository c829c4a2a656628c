"""Configuration: settings classes, filled in from the environment when
`create_app` runs.

`create_app` picks a class by `APP_ENV` (development, production, testing),
reads a `.env` file if there is one (development convenience; real
environment variables win; never for the testing class), then takes each
setting from the class, overridden by the environment variable of the same
name (ENVIRONMENT lists them), overridden by the mapping it was given.
Production fails fast on a missing or weak `JWT_SECRET_KEY`; development
generates one in the instance folder when a token is first signed.
"""

import os
from datetime import timedelta


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


# Room for the multipart boundaries and part headers around an uploaded image.
MULTIPART_OVERHEAD = 16 * 1024


def largest_upload_body(config):
    """The largest request body any route reads: an image at IMAGE_MAX_BYTES
    in its multipart framing (the image upload raises its own limit to it)."""
    return config["IMAGE_MAX_BYTES"] + MULTIPART_OVERHEAD


class Config:
    """Defaults shared by every environment."""

    ENV_NAME = "development"

    # None means "SQLite file in the instance folder", resolved in create_app.
    SQLALCHEMY_DATABASE_URI = None
    SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}
    SQLALCHEMY_TRACK_MODIFICATIONS = False

    REDIS_URL = None
    # Heroku Redis serves rediss:// with a self-signed certificate; only there
    # set REDIS_TLS_VERIFY=false.
    REDIS_TLS_VERIFY = True
    # Every key this app writes to Redis starts with this, so several apps (or
    # test runs) can share one Redis without touching each other's keys.
    REDIS_KEY_PREFIX = "stores-api:"

    # How many proxies in front of the app append to X-Forwarded-For (Heroku's
    # router: 1). Behind this project's Nginx it is 0: uwsgi_pass gives the
    # client's address itself. Never more than there really are: the header
    # is the client's to forge. When set, front/relay.py refuses a request
    # with more than one X-Forwarded-For line.
    TRUSTED_PROXY_COUNT = 0

    JWT_SECRET_KEY = None
    JWT_ALGORITHM = "HS256"
    JWT_DECODE_ALGORITHMS = ["HS256"]
    JWT_TOKEN_LOCATION = ["headers"]
    JWT_ACCESS_TOKEN_EXPIRES = timedelta(seconds=900)
    JWT_REFRESH_TOKEN_EXPIRES = timedelta(seconds=2592000)

    MAX_CONTENT_LENGTH = 65536
    # A request body must be in within this many seconds, plus one for every
    # REQUEST_BODY_MIN_RATE bytes it holds; else 408 (front/relay.py).
    REQUEST_BODY_TIMEOUT = 5.0
    REQUEST_BODY_MIN_RATE = 65536
    # The bytes of request bodies front/relay.py holds for all clients at
    # once; a body that would take more is answered 503 (Retry-After).
    REQUEST_BODIES_HELD_LIMIT = 128 * 1024 * 1024

    LOGIN_RATE_LIMIT = "10 per minute"
    # A username's failed logins from all addresses together, for attempts
    # without a device token of that user (core/rate_limits.py).
    LOGIN_USERNAME_FAILURE_LIMIT = "20 per hour"
    # How long a device token (what /login gives a device that logged in) lasts.
    DEVICE_TOKEN_EXPIRES = timedelta(days=365)
    REGISTER_RATE_LIMIT = "20 per hour"

    # Quotas (admins are exempt) and the bound on items embedded in a store.
    MAX_STORES_PER_USER = 100
    MAX_ITEMS_PER_STORE = 10000
    STORE_ITEMS_EMBEDDED = 100

    # Item images (images/). None means
    # file:// + the instance folder's images/.
    IMAGE_STORAGE = None
    IMAGE_MAX_BYTES = 5242880
    IMAGE_MAX_PIXELS = 40000000
    # Image uploads per user: each may cost up to a second of a worker's CPU.
    IMAGE_UPLOAD_RATE_LIMIT = "60 per hour"
    # An image whose processing would hold more than this many bytes (about a
    # 2-megapixel photo) waits for none: it takes one of IMAGE_PROCESSING_SLOTS
    # or is refused 503 (images/slots.py). 0 slots: one fewer than the workers.
    IMAGE_HEAVY_BYTES = 16 * 1024 * 1024
    IMAGE_PROCESSING_SLOTS = 0
    # Behind Nginx: the internal location that serves the images folder
    # (deploy/nginx.conf, "/_images/"); unset, the app sends files itself.
    IMAGE_ACCEL_REDIRECT = None
    S3_ENDPOINT_URL = None
    AWS_ACCESS_KEY_ID = None
    AWS_SECRET_ACCESS_KEY = None
    AWS_DEFAULT_REGION = None

    # OWASP's minimum for argon2id: 19 MiB, 2 iterations, parallelism 1.
    ARGON2_TIME_COST = 2
    ARGON2_MEMORY_COST = 19456  # KiB
    ARGON2_PARALLELISM = 1

    # Seconds a client is told to wait when the database or Redis is down.
    RETRY_AFTER_SECONDS = 5

    # Webhooks (webhooks/; docs/webhooks.md).
    # Where the embedded queue lives when REDIS_URL is unset (None: the
    # instance folder's webhooks-queue.db).
    WEBHOOK_QUEUE_PATH = None
    # Retries: the n-th retry waits BASE * 2**(n-1) seconds (capped at MAX),
    # with +-20 % jitter, until WINDOW seconds after the event: then `failed`.
    WEBHOOK_RETRY_BASE_SECONDS = 10.0
    WEBHOOK_RETRY_MAX_SECONDS = 4 * 3600.0
    WEBHOOK_RETRY_WINDOW_SECONDS = 24 * 3600.0
    # Finished deliveries (and Jodoo push ids) are deleted this many days
    # after their last attempt, so the tables stay bounded.
    WEBHOOK_RETENTION_DAYS = 30
    # How often an idle worker looks for due deliveries, and how long a claim
    # lasts before another worker may take the row (a worker killed mid-send).
    WEBHOOK_POLL_SECONDS = 0.5
    WEBHOOK_CLAIM_SECONDS = 60.0
    WEBHOOK_WORKER_THREADS = 4
    WEBHOOK_TIMEOUT_SECONDS = 10.0
    # Local and private receivers (and plain http) for development and tests
    # only: production refuses them (SSRF: the database, Redis, cloud metadata).
    WEBHOOK_ALLOW_PRIVATE_TARGETS = True

    # The incoming Jodoo push (webhooks/jodoo.py): unset secret = no endpoint.
    JODOO_WEBHOOK_SECRET = None
    JODOO_FIELD_MAP = '{"name": "name", "price": "price", "store": "store"}'
    # The username pushes act as, with that account's rights and quotas (as
    # through the API); unset, or naming no user: no endpoint.
    JODOO_ACTING_USER = None

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
    WEBHOOK_ALLOW_PRIVATE_TARGETS = False

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
    IMAGE_UPLOAD_RATE_LIMIT = "1000 per minute"


CONFIGS = {
    "development": DevelopmentConfig,
    "production": ProductionConfig,
    "testing": TestingConfig,
}

# The environment variables a deployment may set: each overrides the setting
# of the same name (DATABASE_URL: SQLALCHEMY_DATABASE_URI), read as the type
# of the class's value (int, float, bool, seconds for durations, else text).
# An empty variable counts as unset.
ENVIRONMENT = (
    "DATABASE_URL",
    "REDIS_URL",
    "REDIS_TLS_VERIFY",
    "REDIS_KEY_PREFIX",
    "TRUSTED_PROXY_COUNT",
    "JWT_SECRET_KEY",
    "JWT_ACCESS_TOKEN_EXPIRES",
    "JWT_REFRESH_TOKEN_EXPIRES",
    "MAX_CONTENT_LENGTH",
    "REQUEST_BODY_TIMEOUT",
    "REQUEST_BODY_MIN_RATE",
    "REQUEST_BODIES_HELD_LIMIT",
    "LOGIN_RATE_LIMIT",
    "LOGIN_USERNAME_FAILURE_LIMIT",
    "DEVICE_TOKEN_EXPIRES",
    "REGISTER_RATE_LIMIT",
    "MAX_STORES_PER_USER",
    "MAX_ITEMS_PER_STORE",
    "STORE_ITEMS_EMBEDDED",
    "IMAGE_STORAGE",
    "IMAGE_MAX_BYTES",
    "IMAGE_MAX_PIXELS",
    "IMAGE_UPLOAD_RATE_LIMIT",
    "IMAGE_HEAVY_BYTES",
    "IMAGE_PROCESSING_SLOTS",
    "IMAGE_ACCEL_REDIRECT",
    "S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "ARGON2_TIME_COST",
    "ARGON2_MEMORY_COST",
    "ARGON2_PARALLELISM",
    "WEBHOOK_QUEUE_PATH",
    "WEBHOOK_RETRY_BASE_SECONDS",
    "WEBHOOK_RETRY_MAX_SECONDS",
    "WEBHOOK_RETRY_WINDOW_SECONDS",
    "WEBHOOK_RETENTION_DAYS",
    "WEBHOOK_POLL_SECONDS",
    "WEBHOOK_CLAIM_SECONDS",
    "WEBHOOK_WORKER_THREADS",
    "WEBHOOK_TIMEOUT_SECONDS",
    "WEBHOOK_ALLOW_PRIVATE_TARGETS",
    "JODOO_WEBHOOK_SECRET",
    "JODOO_FIELD_MAP",
    "JODOO_ACTING_USER",
)
SETTING_OF = {"DATABASE_URL": "SQLALCHEMY_DATABASE_URI"}


def config_class(name=None):
    name = name or os.environ.get("APP_ENV", "development")
    try:
        return CONFIGS[name]
    except KeyError:
        raise RuntimeError(f"APP_ENV must be one of {', '.join(CONFIGS)}; got {name!r}.") from None


def from_environment(settings, environ=os.environ):
    """The settings that environment variables override, typed like `settings`'s own."""
    values = {}
    for variable in ENVIRONMENT:
        text = environ.get(variable, "").strip()
        if text:
            name = SETTING_OF.get(variable, variable)
            values[name] = parse(variable, text, getattr(settings, name))
    if "SQLALCHEMY_DATABASE_URI" in values:
        values["SQLALCHEMY_DATABASE_URI"] = database_url(values["SQLALCHEMY_DATABASE_URI"])
    return values


def parse(variable, text, default):
    try:
        if isinstance(default, bool):
            return text.lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, timedelta):
            return timedelta(seconds=int(text))
    except ValueError:
        raise RuntimeError(f"{variable} must be a number; got {text!r}.") from None
    return text
