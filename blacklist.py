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

On a read (GET, HEAD) the check does not run on its own: it travels with
the request's first statement (`PendingCheck`, `fold_pending_check`). On
PostgreSQL both go to the server as one message, the check first, so a
refused token stops the read there and then; on SQLite the check runs on
the same DBAPI connection just before the read. Either way a token the
check refuses is answered 401 exactly as before, and the read's rows are
never seen; a read that runs no statement has the check run on its own
before the response leaves (`settle_pending_check`). Writes ask first, as
always: nothing they do may happen for a refused token.

The database is the one record, with or without Redis. Redis (when
`REDIS_URL` is set) holds the rate limiter's counters but no security
decision: a Redis that restarts empty, or that holds keys from an earlier
database, cannot bring a revoked token back or refuse a new account, and a
database restore is answered by the restored rows themselves. Asking Redis
first would save nothing: the account check needs the database anyway.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flask import current_app, g, has_request_context, request
from flask_jwt_extended.exceptions import RevokedTokenError, UserLookupError
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


# --- The check folded into a read's first statement ---------------------------

# Methods whose view may run before the check has answered: they change
# nothing, so a refused token's read only costs the rows it never returns.
READ_METHODS = frozenset({"GET", "HEAD"})

# On PostgreSQL the check is a statement sent ahead of the read in the same
# message (psycopg2 sends a query string with its parameters inlined, and the
# server runs `check; read` as one implicit transaction). Only the last
# statement's rows come back, so the check speaks by failing: a refused token
# makes it cast a marker text to integer, the error names the marker, and the
# read never runs. An accepted token casts '1' and the read runs as if alone.
MARKER = "stores-api-token:"
PG_CHECK = (
    "SELECT CAST(COALESCE((SELECT CASE"
    " WHEN u.account_key <> %(token_check_acct)s THEN '" + MARKER + USER_GONE + "'"
    " WHEN u.session_generation <> %(token_check_gen)s"
    " OR EXISTS (SELECT 1 FROM revoked_sessions WHERE sid = %(token_check_sid)s)"
    " THEN '" + MARKER + REVOKED + "'"
    " ELSE '1' END FROM users u WHERE u.id = %(token_check_user_id)s), '" + MARKER + USER_GONE + "') AS integer);\n"
)
# On SQLite (no server, so no round trip to save), and for a statement that
# cannot carry it, the same question as TOKEN_STATUS asked on the statement's
# own DBAPI connection just before it: none of SQLAlchemy's per-statement work.
RAW_CHECK = (
    "SELECT account_key, session_generation,"
    " EXISTS (SELECT 1 FROM revoked_sessions WHERE sid = {sid})"
    " FROM users WHERE id = {user_id}"
)
# By dialect: the parameter style its DBAPI driver takes (sqlite3 takes named ones too).
RAW_CHECKS = {
    "sqlite": RAW_CHECK.format(sid=":token_check_sid", user_id=":token_check_user_id"),
    "postgresql": RAW_CHECK.format(sid="%(token_check_sid)s", user_id="%(token_check_user_id)s"),
}


@dataclass
class PendingCheck:
    """A read's token check, waiting for the read's first statement."""

    user_id: int
    account_key: str
    generation: int
    sid: str
    jwt_header: dict
    jwt_payload: dict
    status: str | None = None  # None until the database has answered
    in_flight: bool = False  # folded into the statement being executed

    def params(self):
        return {
            "token_check_user_id": self.user_id,
            "token_check_acct": self.account_key,
            "token_check_gen": self.generation,
            "token_check_sid": self.sid,
        }

    def refusal(self):
        """The exception that answers a refused token (Flask-JWT-Extended's handlers turn it into the 401)."""
        if self.status == USER_GONE:
            return UserLookupError("The token's account does not exist.", self.jwt_header, self.jwt_payload)
        return RevokedTokenError(self.jwt_header, self.jwt_payload)


def defer_check(user_id, account_key, generation, sid, jwt_header, jwt_payload):
    """On a read, leave the check to the request's first statement; False
    when the request must ask now (a write, or no request at all)."""
    if not has_request_context() or request.method not in READ_METHODS:
        return False
    g.pending_token_check = PendingCheck(user_id, account_key, generation, sid, jwt_header, jwt_payload)
    return True


def _pending():
    if not has_request_context():
        return None
    check = g.get("pending_token_check")
    return check if check is not None and check.status is None else None


def fold_pending_check(conn, cursor, statement, parameters, context, executemany):
    """before_cursor_execute: the first statement of a read carries its token check."""
    check = _pending()
    if check is None:
        return statement, parameters
    # Only a statement SQLAlchemy compiled has its '%' signs escaped for the
    # parameters psycopg2 inlines: a raw driver string is asked about apart.
    compiled = context is not None and context.compiled is not None
    if conn.dialect.name == "postgresql" and compiled and isinstance(parameters, dict) and not executemany:
        check.in_flight = True
        return PG_CHECK + statement, {**parameters, **check.params()}
    raw = cursor.connection.cursor()
    try:
        raw.execute(RAW_CHECKS[conn.dialect.name], check.params())
        check.status = _status_of(raw.fetchone(), check)
    finally:
        raw.close()
    if check.status != ACTIVE:
        raise check.refusal()
    return statement, parameters


def _status_of(row, check):
    if row is None or row[0] != check.account_key:
        return USER_GONE
    return REVOKED if row[1] != check.generation or row[2] else ACTIVE


def confirm_folded_check(conn, cursor, statement, parameters, context, executemany):
    """after_cursor_execute: the folded check did not fail, so the token stands."""
    check = _pending()
    if check is not None and check.in_flight:
        check.status, check.in_flight = ACTIVE, False


def refuse_on_marker(context):
    """handle_error: the folded check's marker becomes the token's 401; any
    other error leaves the check unanswered (settle_pending_check asks again)."""
    check = _pending()
    if check is None or not check.in_flight:
        return None
    check.in_flight = False
    message = str(context.original_exception)
    if MARKER not in message:
        return None
    check.status = REVOKED if MARKER + REVOKED in message else USER_GONE
    raise check.refusal()


def settle_pending_check(response):
    """after_request: a read whose check is still unanswered (it ran no
    statement, or its statement failed for another reason) asks now; a
    refused token's answer replaces whatever the view produced."""
    check = g.get("pending_token_check")
    if check is None:
        return response
    if check.status is None:
        try:
            check.status = current_app.extensions["blocklist"].status(
                check.user_id, check.account_key, check.generation, check.sid
            )
        except Exception as e:
            if response.status_code >= 500:
                return response  # the read failed too: its error carries no data
            # Nothing may go out as if the token were good.
            return current_app.make_response(current_app.handle_user_exception(e))
    if check.status == ACTIVE:
        return response
    return current_app.make_response(current_app.handle_user_exception(check.refusal()))
