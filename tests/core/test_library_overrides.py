"""Where the project leans on a library's private detail, a pinned-version
check that says so loudly when an upgrade changes it."""

import inspect
from importlib.metadata import version

import flask_jwt_extended
from flask_jwt_extended import JWTManager

from core.tokens import StoresJWTManager

PINNED_JWT_EXTENDED = "4.7.4"


def test_token_cache_override_still_matches_flask_jwt_extended():
    assert version("Flask-JWT-Extended") == PINNED_JWT_EXTENDED, (
        "Flask-JWT-Extended was upgraded: core.tokens.StoresJWTManager overrides its private "
        "_decode_jwt_from_config. Check the new source, then update PINNED_JWT_EXTENDED."
    )
    private = getattr(JWTManager, "_decode_jwt_from_config", None)
    assert private is not None, "JWTManager._decode_jwt_from_config is gone: the token cache never runs."
    assert list(inspect.signature(private).parameters) == ["self", "encoded_token", "csrf_value", "allow_expired"], (
        "JWTManager._decode_jwt_from_config changed its parameters: update StoresJWTManager."
    )
    # And the view decorators still decode through it.
    source = inspect.getsource(flask_jwt_extended.utils.decode_token)
    assert "_decode_jwt_from_config" in source, "decode_token no longer calls _decode_jwt_from_config."
    assert StoresJWTManager._decode_jwt_from_config is not private


def test_the_token_cache_is_used(app, users, client):
    """Not only present: a verified token really lands in the per-app cache."""
    user = users.create()
    client.get("/items", headers=user["headers"])
    assert user["access_token"] in app.extensions["verified_tokens"]
