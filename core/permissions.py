"""Who may do what: the caller's identity from its access token, and the
checks resources apply (admins, owners, fresh tokens)."""

from functools import wraps

from flask_jwt_extended import get_jwt, verify_jwt_in_request
from flask_jwt_extended.exceptions import FreshTokenRequired

from core.errors import ApiError


def current_user_id():
    return int(get_jwt()["sub"])


def current_user_is_admin():
    return get_jwt().get("is_admin") is True


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
    """403 forbidden unless the caller owns it (`owner_id`) or is an admin."""
    require_owner_as(current_user_id(), current_user_is_admin(), owner_id, what)


def require_owner_as(user_id, is_admin, owner_id, what="store"):
    """403 forbidden unless the acting account (`user_id`, `is_admin`) owns it
    or is an admin: the rule of `require_owner`, for an account that is not
    the token's (an incoming push acts as a configured one). Nobody but an
    admin may change what has no owner (owner_id None)."""
    if is_admin:
        return
    if owner_id is None or owner_id != user_id:
        raise ApiError(403, "forbidden", f"Only the {what}'s owner or an admin may do this.")
