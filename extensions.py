"""Flask extensions other than the database, created once and bound in `create_app`."""

import time

from flask import current_app
from flask_jwt_extended import JWTManager


class StoresJWTManager(JWTManager):
    """A JWTManager that verifies each distinct token string once per process.

    Flask-JWT-Extended decodes a token four times per request (claims
    unverified, the header twice, then verified), and PyJWT checks every
    character of every segment in Python: ~0.16 ms of every authenticated
    request (bench/). A client sends the same access token for its whole
    life, so the claims that verifying a token string gave are reused until
    its `exp`. Only the signature and claims checks are cached: revocation is
    still asked on every request. (Overrides a private method; the version is
    pinned and every token test covers it.)
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
        if len(cache) >= self.MAX_CACHED:
            cache.clear()  # crude bound: a dropped token costs one full decode again
        cache[encoded_token] = dict(claims)
        return claims


jwt = StoresJWTManager()
# Made per app in `create_app` instead (each keeps per-app state):
# - the rate limits (rate_limits.py), whose counters live in their storage;
# - Flask-Migrate: only where the `flask db` commands can run (see app.py).
