"""Password hashing and the JWT rules: token issuing, claims, the blocklist
check, and who may do what (admins, owners, fresh tokens)."""

import ctypes
import re
import uuid
from functools import wraps

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app, request
from flask_jwt_extended import (
    create_access_token,
    create_refresh_token,
    get_jwt,
    verify_jwt_in_request,
)
from flask_jwt_extended.exceptions import FreshTokenRequired, UserLookupError

from blacklist import REVOKED, USER_GONE
from errors import ApiError

# --- Passwords -------------------------------------------------------------


def return_big_buffers_to_the_os():
    """argon2 allocates ARGON2_MEMORY_COST KiB per hash. glibc serves the first
    such block with mmap, then raises its mmap threshold when it is freed, so
    later ones come from the heap and stay in the worker's RSS (+19 MiB per
    worker for good). A fixed threshold keeps big blocks mmapped: returned to
    the OS as soon as they are freed."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return  # not glibc (musl, macOS): nothing to do
    m_mmap_threshold = -3
    libc.mallopt(m_mmap_threshold, 1024 * 1024)


class Passwords:
    """argon2id hashing with the app's configured cost."""

    def __init__(self, config):
        self.hasher = PasswordHasher(
            time_cost=config["ARGON2_TIME_COST"],
            memory_cost=config["ARGON2_MEMORY_COST"],
            parallelism=config["ARGON2_PARALLELISM"],
        )
        self._dummy_hash = None

    def hash(self, password):
        return self.hasher.hash(password)

    def needs_rehash(self, password_hash):
        """True when the hash was made with other parameters than today's."""
        try:
            return self.hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

    def verify(self, password_hash, password):
        """True when `password` matches. With no hash (unknown user) it still
        spends one verification, so both failures take the same time."""
        if password_hash is None:
            if self._dummy_hash is None:
                self._dummy_hash = self.hasher.hash(uuid.uuid4().hex)
            password_hash = self._dummy_hash
            password = ""
        try:
            return self.hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False


def passwords():
    return current_app.extensions["passwords"]


def blocklist():
    return current_app.extensions["blocklist"]


# --- Tokens ----------------------------------------------------------------


def issue_tokens(user):
    """A fresh access token and a refresh token for one new login session.

    Both carry the session id (`sid`, what logout revokes), the account's
    key (`acct`: ids are not identities) and the session generation (`gen`,
    what "end all sessions" bumps)."""
    session = {"sid": uuid.uuid4().hex, "acct": user.account_key, "gen": user.session_generation}
    return {
        "access_token": create_access_token(
            identity=str(user.id), fresh=True, additional_claims={**session, "is_admin": user.is_admin}
        ),
        "refresh_token": create_refresh_token(identity=str(user.id), additional_claims=session),
    }


def refreshed_access_token(user, refresh_claims):
    """A non-fresh access token in the same login session as the refresh token."""
    session = {key: refresh_claims[key] for key in ("sid", "acct", "gen")}
    return create_access_token(
        identity=str(user.id), fresh=False, additional_claims={**session, "is_admin": user.is_admin}
    )


def current_user_id():
    return int(get_jwt()["sub"])


def current_user_is_admin():
    return get_jwt().get("is_admin") is True


def _is_digits(value):
    return isinstance(value, str) and value.isascii() and value.isdigit()


def check_token_status(jwt_header, jwt_payload):
    """Flask-JWT-Extended's blocklist loader: one round trip answers "is the
    account the token's?", "logged out?" and "all sessions ended?"."""
    sid, sub, acct, gen = (jwt_payload.get(key) for key in ("sid", "sub", "acct", "gen"))
    if not (
        isinstance(sid, str)
        and _is_digits(sub)
        and isinstance(acct, str)
        and isinstance(gen, int)
        and not isinstance(gen, bool)
    ):
        # Signed with our key but not issued by this API's login: refuse.
        raise UserLookupError("Token claims are incomplete.", jwt_header, jwt_payload)
    status = blocklist().status(int(sub), acct, gen, sid)
    if status == USER_GONE:
        raise UserLookupError("The token's account does not exist.", jwt_header, jwt_payload)
    return status == REVOKED


BEARER = re.compile(r"\s*bearer\s+(\S+)\s*", re.IGNORECASE)


def read_authorization_header():
    """Before every request: an Authorization header is `Bearer <token>`, the
    scheme in any case (RFC 7235), or the request is refused with 401
    invalid_token — even where a token is optional, a credential we cannot
    read is never taken for "no credential"."""
    header = request.headers.get("Authorization")
    if header is None or not header.strip():
        return
    match = BEARER.fullmatch(header)
    if match is None:
        raise ApiError(
            401,
            "invalid_token",
            "The Authorization header must be 'Bearer <token>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    request.environ["HTTP_AUTHORIZATION"] = "Bearer " + match.group(1)


def register_token_checks(app, jwt_manager):
    """Called by create_app: the header's form is checked on every request,
    and every token against the blocklist."""
    app.before_request(read_authorization_header)
    jwt_manager.token_in_blocklist_loader(check_token_status)


def require_fresh_token():
    """Inside a view: 401 fresh_token_required unless the access token is fresh."""
    claims = get_jwt()
    if not claims.get("fresh"):
        raise FreshTokenRequired("Fresh token required.", None, claims)


def fresh_jwt_required(view):
    """Like `jwt_required(fresh=True)`, but checks revocation before freshness,
    so a logged-out token is always answered `token_revoked`."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        verify_jwt_in_request()
        require_fresh_token()
        return view(*args, **kwargs)

    return wrapper


def admin_required(view):
    """An access token whose `is_admin` claim is true; else 403 admin_required."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        verify_jwt_in_request()
        if not current_user_is_admin():
            raise ApiError(403, "admin_required", "Admin privilege required.")
        return view(*args, **kwargs)

    return wrapper


def require_owner(owner_id, what="store"):
    """403 forbidden unless the caller owns it (`owner_id`) or is an admin.
    Nobody but an admin may change what has no owner (owner_id None)."""
    if current_user_is_admin():
        return
    if owner_id is None or owner_id != current_user_id():
        raise ApiError(403, "forbidden", f"Only the {what}'s owner or an admin may do this.")
