"""Access and refresh tokens: the JWT manager, issuing a login session's
tokens, reading the Authorization header, and the check every token passes
(blacklist.py says what makes a token revoked).

- `jwt`: Flask-JWT-Extended's manager, created once, bound in `create_app`.
- `issue_tokens`, `refreshed_access_token`: what `/login` and `/refresh` hand out.
- `issue_device_token`, `trusted_device`: the device token `/login` also hands
  out, and the check a later login makes of it (core/rate_limits.py says what
  it buys).
- `check_token_status`: the blocklist loader, one SELECT per authenticated
  request; on a read, folded into the read's first statement (blacklist.py).
- `secret_key`: the signing key; in development, with no JWT_SECRET_KEY, one
  is generated into the instance folder the first time a token is signed or
  read, so commands that never touch a token leave nothing behind.
"""

import logging
import os
import re
import secrets
import tempfile
import time
import uuid

import flask_jwt_extended.view_decorators
import jwt as pyjwt
from flask import current_app, request
from flask_jwt_extended import JWTManager, create_access_token, create_refresh_token
from flask_jwt_extended.exceptions import UserLookupError
from sqlalchemy import event
from sqlalchemy.engine import Engine

import blacklist
from blacklist import REVOKED, USER_GONE, Blocklist
from core.errors import ApiError, register_jwt_loaders

log = logging.getLogger(__name__)


class StoresJWTManager(JWTManager):
    """A JWTManager that verifies each distinct token string once per process.

    Flask-JWT-Extended decodes a token four times per request (claims
    unverified, the header twice, then verified), and PyJWT checks every
    character of every segment in Python: ~0.16 ms of every authenticated
    request (bench/). A client sends the same access token for its whole
    life, so the claims that verifying a token string gave are reused until
    its `exp`. Only the signature and claims checks are cached: revocation is
    still asked on every request. The header is kept beside the claims: the
    view decorators read it once more (`cached_token_header`). (Overrides a
    private method; the version is pinned and
    tests/core/test_library_overrides.py fails if it changes.)
    """

    MAX_CACHED = 2048

    def _decode_jwt_from_config(self, encoded_token, csrf_value=None, allow_expired=False):
        if csrf_value is not None or allow_expired:
            return super()._decode_jwt_from_config(encoded_token, csrf_value, allow_expired)
        # Per app: the tests build several apps with different secrets.
        cache = current_app.extensions.setdefault("verified_tokens", {})
        leeway = current_app.config["JWT_DECODE_LEEWAY"]
        leeway = leeway.total_seconds() if hasattr(leeway, "total_seconds") else leeway
        claims = cache.get(encoded_token)
        if claims is not None and claims.get("exp", float("inf")) > time.time() - leeway:
            return dict(claims)  # a copy: callers may add keys
        claims = super()._decode_jwt_from_config(encoded_token, csrf_value, allow_expired)
        headers = current_app.extensions.setdefault("verified_token_headers", {})
        if len(cache) >= self.MAX_CACHED:
            # Crude bound: a dropped token costs one full decode again.
            cache.clear()
            headers.clear()
        cache[encoded_token] = dict(claims)
        headers[encoded_token] = pyjwt.get_unverified_header(encoded_token)
        return claims


_library_token_header = flask_jwt_extended.view_decorators.get_unverified_jwt_headers


def cached_token_header(encoded_token):
    """The header of a token string, as Flask-JWT-Extended's view decorators
    read it right after verifying the token: from the cache when this process
    verified that very string (PyJWT would check every character of the
    token again in Python, ~0.06 ms), else as the library reads it."""
    header = current_app.extensions.get("verified_token_headers", {}).get(encoded_token)
    return dict(header) if header is not None else _library_token_header(encoded_token)


# The view decorators call it by this module-level name (pinned version; see
# tests/core/test_library_overrides.py).
flask_jwt_extended.view_decorators.get_unverified_jwt_headers = cached_token_header


jwt = StoresJWTManager()


def register_tokens(app):
    """Called by create_app: the JWT manager, its error answers, the header
    check on every request and the blocklist check on every token."""
    jwt.init_app(app)
    register_jwt_loaders(jwt)
    jwt.encode_key_loader(lambda identity: secret_key())
    jwt.decode_key_loader(lambda header, payload: secret_key())
    jwt.token_in_blocklist_loader(check_token_status)
    app.before_request(read_authorization_header)
    app.extensions["blocklist"] = Blocklist(app.config["JWT_REFRESH_TOKEN_EXPIRES"])
    # A read's check rides on its first statement; whatever is left unasked
    # is asked before the response leaves.
    app.after_request(blacklist.settle_pending_check)
    for name, listener, options in (
        ("before_cursor_execute", blacklist.fold_pending_check, {"retval": True}),
        ("after_cursor_execute", blacklist.confirm_folded_check, {}),
        ("handle_error", blacklist.refuse_on_marker, {}),
    ):
        if not event.contains(Engine, name, listener):
            event.listen(Engine, name, listener, **options)


def blocklist():
    return current_app.extensions["blocklist"]


# --- The signing key ---------------------------------------------------------


def secret_key():
    """JWT_SECRET_KEY; in development, when unset, the instance folder's key."""
    key = current_app.config.get("JWT_SECRET_KEY")
    if not key:
        # Production never gets here: ProductionConfig.check refuses to start.
        key = current_app.config["JWT_SECRET_KEY"] = development_secret_key(current_app.instance_path)
    return key


def development_secret_key(instance_path):
    """A random key made once and kept in the instance folder, so every worker
    and restart shares it."""
    path = os.path.join(instance_path, "jwt-secret.key")
    if not os.path.exists(path):
        os.makedirs(instance_path, exist_ok=True)
        # Write aside, then link into place: of racing workers exactly one wins.
        fd, tmp = tempfile.mkstemp(dir=instance_path)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
        try:
            os.link(tmp, path)
            log.warning("JWT_SECRET_KEY is not set; generated one in %s. Set it in production.", path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    with open(path) as f:
        return f.read().strip()


# --- Issuing -------------------------------------------------------------------


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


# --- Device tokens -------------------------------------------------------------

# A device token is signed with the JWT key but is no access token: its
# audience makes Flask-JWT-Extended (which expects none) refuse it as a Bearer.
DEVICE_AUDIENCE = "stores-api:device"
DEVICE_COOKIE = "device_token"
# Longer than any token this API issues: anything longer is not one of ours.
DEVICE_TOKEN_MAX_LENGTH = 1024


def issue_device_token(user):
    """A token that marks the device a login succeeded on, bound to the
    account like the session tokens: a password change or "end all
    sessions" (a new generation) ends it."""
    now = int(time.time())
    lifetime = int(current_app.config["DEVICE_TOKEN_EXPIRES"].total_seconds())
    claims = {
        "sub": str(user.id),
        "acct": user.account_key,
        "gen": user.session_generation,
        "did": uuid.uuid4().hex,
        "aud": DEVICE_AUDIENCE,
        "iat": now,
        "exp": now + lifetime,
    }
    return pyjwt.encode(claims, secret_key(), algorithm=current_app.config["JWT_ALGORITHM"])


def presented_device_token():
    """The device token this request carries: the X-Device-Token header, else the cookie."""
    return request.headers.get("X-Device-Token") or request.cookies.get(DEVICE_COOKIE)


def trusted_device(user, token):
    """The device id in `token` when it is a valid device token of `user`; else None."""
    if user is None or not token or len(token) > DEVICE_TOKEN_MAX_LENGTH:
        return None
    try:
        claims = pyjwt.decode(
            token, secret_key(), algorithms=current_app.config["JWT_DECODE_ALGORITHMS"], audience=DEVICE_AUDIENCE
        )
    except pyjwt.PyJWTError:
        return None
    if (claims.get("sub"), claims.get("acct"), claims.get("gen")) != (
        str(user.id),
        user.account_key,
        user.session_generation,
    ):
        return None
    device = claims.get("did")
    return device if isinstance(device, str) else None


# --- Checking ------------------------------------------------------------------


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
    if blacklist.defer_check(int(sub), acct, gen, sid, jwt_header, jwt_payload):
        return False  # for now: the read's first statement answers (blacklist.py)
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
