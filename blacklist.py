"""The token revocation store (the blocklist), and nothing else.

Tokens are revoked per login session: the access and refresh tokens of one
login, and every access token refreshed from it, share a `sid` claim, and
logout revokes that `sid`. Tokens of a deleted user are refused too.

Two stores keep the same promise across worker processes, instances and
restarts:
- `DatabaseBlocklist` (default): a `revoked_sessions` table; a deleted user is
  simply a missing `users` row. One SELECT answers both questions.
- `RedisBlocklist` (when `REDIS_URL` is set): one key per revoked session or
  deleted user, with a TTL so nothing outlives the tokens it blocks. One MGET
  answers both questions.
An in-process set would not do: uWSGI runs several processes.
"""
from datetime import datetime, timedelta, timezone

from sqlalchemy import bindparam, delete, exists, select

from db import db
from models.revoked_session import RevokedSessionModel
from models.user import UserModel

ACTIVE, REVOKED, USER_GONE = "active", "revoked", "user_gone"

# Runs on every authenticated request, so it is built once.
SESSION_STATUS = select(
    exists().where(UserModel.id == bindparam("user_id")),
    exists().where(RevokedSessionModel.sid == bindparam("sid")),
)


class DatabaseBlocklist:
    def __init__(self, lifetime):
        # How long a revocation must last: the longest a session's tokens live.
        self.lifetime = lifetime

    def revoke_session(self, sid):
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        # Rows whose tokens have all expired are useless: drop them as we go,
        # so the table never holds more than one lifetime's logouts.
        db.session.execute(delete(RevokedSessionModel).where(RevokedSessionModel.expires_at < now))
        db.session.merge(RevokedSessionModel(sid=sid, expires_at=now + self.lifetime))
        db.session.commit()

    def revoke_user(self, user_id):
        """Nothing to store: the deleted `users` row is the record."""

    def status(self, sid, user_id):
        user_exists, revoked = db.session.connection().execute(
            SESSION_STATUS, {"user_id": user_id, "sid": sid}).one()
        if not user_exists:
            return USER_GONE
        return REVOKED if revoked else ACTIVE


class RedisBlocklist:
    def __init__(self, url, lifetime, prefix="", **options):
        import redis  # only when configured: the client costs ~7 MB per process

        self.lifetime = lifetime
        self.prefix = prefix
        # Short timeouts: when Redis is down, answer 503 quickly, never hang.
        self.redis = redis.Redis.from_url(
            url, socket_timeout=2, socket_connect_timeout=2, health_check_interval=30, **options
        )

    def revoke_session(self, sid):
        self.redis.set(f"{self.prefix}revoked:session:{sid}", 1, ex=self.lifetime)

    def revoke_user(self, user_id):
        self.redis.set(f"{self.prefix}revoked:user:{user_id}", 1, ex=self.lifetime)

    def status(self, sid, user_id):
        session, user = self.redis.mget(f"{self.prefix}revoked:session:{sid}", f"{self.prefix}revoked:user:{user_id}")
        if user is not None:
            return USER_GONE
        return REVOKED if session is not None else ACTIVE

    def ping(self):
        self.redis.ping()


def redis_options(config):
    """Connection options for REDIS_URL, shared with the login rate limiter."""
    if config["REDIS_URL"].startswith("rediss://") and not config.get("REDIS_TLS_VERIFY", True):
        return {"ssl_cert_reqs": None}
    return {}


def make_blocklist(config):
    """The store the configuration asks for."""
    lifetime = config["JWT_REFRESH_TOKEN_EXPIRES"]
    if not isinstance(lifetime, timedelta):
        lifetime = timedelta(seconds=lifetime)
    if config.get("REDIS_URL"):
        return RedisBlocklist(config["REDIS_URL"], lifetime, config["REDIS_KEY_PREFIX"], **redis_options(config))
    return DatabaseBlocklist(lifetime)
