"""The token blocklist: which tokens are refused although correctly signed.

(The file keeps the course's name, `blacklist.py`; everywhere else this is
"the blocklist".)

A token is accepted only while all of these hold, and one SELECT asks them
all on every authenticated request:
- its account still exists: the `users` row with the token's `sub` id has
  the token's `acct` key (ids are not identities: after a restore or reset
  an old id may name another account, whose key differs) — else the token's
  user is gone (401 `invalid_token`);
- its login session was not logged out: no `revoked_sessions` row for its
  `sid` — else 401 `token_revoked`;
- the user has not ended all sessions (password change, "log out
  everywhere") since it was issued: its `gen` equals the row's
  `session_generation` — else 401 `token_revoked`.

The database is the one record, with or without Redis. Redis (when
`REDIS_URL` is set) holds the rate limiter's counters but no security
decision: a Redis that restarts empty, or that holds keys from an earlier
database, cannot bring a revoked token back or refuse a new account, and a
database restore is answered by the restored rows themselves. Asking Redis
first would save nothing: the account check needs the database anyway.
"""

from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, delete, exists, select

from db import db
from models.revoked_session import RevokedSessionModel
from models.user import UserModel

ACTIVE, REVOKED, USER_GONE = "active", "revoked", "user_gone"

# Runs on every authenticated request, so it is built once.
TOKEN_STATUS = select(
    UserModel.account_key,
    UserModel.session_generation,
    exists().where(RevokedSessionModel.sid == bindparam("sid")).label("logged_out"),
).where(UserModel.id == bindparam("user_id"))


class Blocklist:
    def __init__(self, lifetime):
        # How long a revocation must last: the longest a session's tokens live.
        if not isinstance(lifetime, timedelta):
            lifetime = timedelta(seconds=lifetime)
        self.lifetime = lifetime

    def revoke_session(self, sid):
        now = datetime.now(UTC).replace(tzinfo=None)
        # Rows whose tokens have all expired are useless: drop them as we go,
        # so the table never holds more than one lifetime's logouts.
        db.session.execute(delete(RevokedSessionModel).where(RevokedSessionModel.expires_at < now))
        db.session.merge(RevokedSessionModel(sid=sid, expires_at=now + self.lifetime))
        db.session.commit()

    def status(self, user_id, account_key, generation, sid):
        row = db.session.connection().execute(TOKEN_STATUS, {"user_id": user_id, "sid": sid}).first()
        if row is None or row.account_key != account_key:
            return USER_GONE
        if row.session_generation != generation or row.logged_out:
            return REVOKED
        return ACTIVE
