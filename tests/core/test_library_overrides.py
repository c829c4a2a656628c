"""Where the project leans on a library's private detail, a pinned-version
check that says so loudly when an upgrade changes it."""

import inspect
from importlib.metadata import version

import flask_jwt_extended
from flask_jwt_extended import JWTManager

from core.tokens import StoresJWTManager, cached_token_header

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


def test_the_header_cache_is_what_the_view_decorators_call(app, users, client, monkeypatch):
    """flask_jwt_extended.view_decorators reads a verified token's header again
    by the module-level name `get_unverified_jwt_headers`: core.tokens puts the
    cached reader there, and it answers from the cache."""
    source = inspect.getsource(flask_jwt_extended.view_decorators._decode_jwt_from_request)
    assert "get_unverified_jwt_headers(encoded_token)" in source, (
        "The view decorators no longer read the header by that name: update core.tokens.cached_token_header."
    )
    assert flask_jwt_extended.view_decorators.get_unverified_jwt_headers is cached_token_header
    user = users.create()
    client.get("/items", headers=user["headers"])
    library_reads = []
    monkeypatch.setattr("core.tokens._library_token_header", library_reads.append)
    with app.test_request_context():
        assert cached_token_header(user["access_token"]) == {"alg": "HS256", "typ": "JWT"}
    assert library_reads == []
