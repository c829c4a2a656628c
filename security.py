"""Password hashing and the JWT rules: token issuing, claims, revocation checks, admin checks."""
import ctypes
import uuid
from functools import wraps

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from flask_jwt_extended import (
    create_access_token,
    create_refresh_token,
    get_jwt,
    verify_jwt_in_request,
)
from flask_jwt_extended.exceptions import FreshTokenRequired, UserLookupError

import blacklist
from errors import ApiError
from extensions import jwt


# --- Passwords -------------------------------------------------------------

def _return_big_buffers_to_the_os():
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


_return_big_buffers_to_the_os()


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


def revocation_store():
    return current_app.extensions["blocklist"]


# --- Tokens ----------------------------------------------------------------

def issue_tokens(user):
    """A fresh access token and a refresh token for one new login session."""
    session = {"sid": uuid.uuid4().hex}
    return {
        "access_token": create_access_token(
            identity=str(user.id), fresh=True, additional_claims={**session, "is_admin": user.is_admin}
        ),
        "refresh_token": create_refresh_token(identity=str(user.id), additional_claims=session),
    }


def refreshed_access_token(user, refresh_claims):
    """A non-fresh access token in the same login session as the refresh token."""
    return create_access_token(
        identity=str(user.id),
        fresh=False,
        additional_claims={"sid": refresh_claims["sid"], "is_admin": user.is_admin},
    )


def current_user_id():
    return int(get_jwt()["sub"])


def current_user_is_admin():
    return get_jwt().get("is_admin") is True


@jwt.token_in_blocklist_loader
def check_if_token_revoked(jwt_header, jwt_payload):
    """One round trip to the blocklist answers "revoked?" and "user deleted?"."""
    sid, sub = jwt_payload.get("sid"), jwt_payload.get("sub")
    if not isinstance(sid, str) or not isinstance(sub, str) or not (sub.isascii() and sub.isdigit()):
        # Signed with our key but not issued by this API's login: refuse.
        raise UserLookupError("Token claims are incomplete.", jwt_header, jwt_payload)
    status = revocation_store().status(sid, int(sub))
    if status == blacklist.USER_GONE:
        raise UserLookupError("The token's user no longer exists.", jwt_header, jwt_payload)
    return status == blacklist.REVOKED


def fresh_jwt_required(view):
    """Like `jwt_required(fresh=True)`, but checks revocation before freshness,
    so a logged-out token is always answered `token_revoked`."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        header, claims = verify_jwt_in_request()
        if not claims.get("fresh"):
            raise FreshTokenRequired("Fresh token required.", header, claims)
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
