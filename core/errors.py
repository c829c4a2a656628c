"""Every error the API answers, in one place, written as the contract's envelope:

    {"error": "<stable_code>", "message": "<human sentence>"}   (+ "errors" on 400 validation)

- `ApiError`: what resources raise for an expected failure (404, 409, ...).
- `StoresApi`: Flask-RESTful's `Api`, told to let Flask's handlers answer errors
  (otherwise it turns JWT errors into 500s before Flask-JWT-Extended sees them).
- `register_error_handlers`: Flask handlers for HTTP errors, outages and crashes.
- `register_jwt_loaders`: Flask-JWT-Extended's answers for every token problem.
"""

import logging

import orjson
from flask import Response, current_app, g, request
from flask_restful import Api
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException

log = logging.getLogger("stores_api.errors")

# The stable code for each status the contract names.
CODES = {
    400: "bad_request",
    401: "authorization_required",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


class ApiError(Exception):
    """An expected failure with its status, stable code and message."""

    def __init__(self, status, error, message, errors=None, headers=None):
        super().__init__(message)
        self.status, self.error, self.message = status, error, message
        self.errors, self.headers = errors, headers or {}


VALIDATION_MESSAGE = "The request has invalid fields."


def not_found(message):
    return ApiError(404, "not_found", message)


def conflict(message):
    return ApiError(409, "conflict", message)


def validation_error(errors):
    """400 validation_error naming each bad field: {"field": "what is wrong"}."""
    return ApiError(400, "validation_error", VALIDATION_MESSAGE, errors=errors)


# Clearer than Werkzeug's descriptions for these statuses.
MESSAGES = {
    404: "The requested URL was not found.",
    405: "The method is not allowed for this URL.",
}


def json_response(body, status=200, headers=None):
    return Response(orjson.dumps(body), status=status, headers=headers, mimetype="application/json")


def error_response(status, error, message, errors=None, headers=None, **extra):
    body = {"error": error, "message": message, **extra}
    if errors is not None:
        body["errors"] = errors
    return json_response(body, status, headers)


class StoresApi(Api):
    def error_router(self, original_handler, e):
        # Let Flask (and so Flask-JWT-Extended) handle every error.
        return original_handler(e)


def _code_for(status, name):
    return CODES.get(status) or name.lower().replace(" ", "_").replace("-", "_")


def handle_http_exception(e):
    status = e.code or 500
    # Keep headers such as Allow (405) and Retry-After (429); drop the HTML type.
    headers = {k: v for k, v in e.get_headers() if k.lower() != "content-type"}
    data = getattr(e, "data", None) or {}
    if status == 400 and isinstance(data.get("message"), dict):
        # reqparse's bundled field errors.
        return error_response(400, "validation_error", VALIDATION_MESSAGE, errors=data["message"], headers=headers)
    message = data.get("message") if isinstance(data.get("message"), str) else e.description
    if status == 429:
        message = f"Too many requests: limit is {e.description}. Try again later."
    message = MESSAGES.get(status, message)
    return error_response(status, _code_for(status, e.name), message, headers=headers)


def handle_api_error(e):
    return error_response(e.status, e.error, e.message, e.errors, e.headers)


def handle_unavailable(e):
    """The database or Redis did not answer: tell the client to come back."""
    log.warning("Dependency unavailable: %s", e.__class__.__name__, exc_info=True)
    retry = str(current_app.config["RETRY_AFTER_SECONDS"])
    return error_response(
        503,
        "service_unavailable",
        "A backing service is unavailable. Try again shortly.",
        headers={"Retry-After": retry},
    )


def handle_unexpected(e):
    log.exception("Unhandled error (request_id=%s)", g.get("request_id"))
    # The id lets a user's report be matched to the traceback in the log.
    return error_response(500, "internal_error", "An unexpected error occurred.", request_id=g.get("request_id"))


def handle_decode_error(e):
    """Werkzeug decodes the query string as UTF-8 when it is first read: a
    client's raw bytes that are not are the client's fault, anything else a bug."""
    try:
        request.query_string.decode()
    except UnicodeDecodeError:
        return error_response(400, "bad_request", "The query string is not valid UTF-8.")
    return handle_unexpected(e)


def handle_db_error(e):
    # Lost connections are outages (503); anything else is a bug (500).
    if isinstance(e, OperationalError) or getattr(e, "connection_invalidated", False):
        return handle_unavailable(e)
    return handle_unexpected(e)


def register_error_handlers(app):
    app.register_error_handler(ApiError, handle_api_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(DBAPIError, handle_db_error)
    app.register_error_handler(UnicodeDecodeError, handle_decode_error)
    if app.config.get("REDIS_URL"):
        import redis  # only when configured: the client costs ~7 MB per process

        app.register_error_handler(redis.exceptions.ConnectionError, handle_unavailable)
        app.register_error_handler(redis.exceptions.TimeoutError, handle_unavailable)
    app.register_error_handler(Exception, handle_unexpected)


def invalid_token_message(reason):
    """What is wrong with a token, in the API's words (the library's reason
    names its own internals)."""
    reason = reason.lower()
    if "only non-refresh" in reason:
        return "This is a refresh token; send an access token."
    if "only refresh" in reason:
        return "This is an access token; send the refresh token."
    if "signature" in reason:
        return "The token's signature is not valid."
    if "alg" in reason:
        return "The token is signed with an algorithm this API does not accept."
    if "authorization" in reason:
        return "The Authorization header must be 'Bearer <token>'."
    return "The token is malformed."


def register_jwt_loaders(jwt):
    def unauthorized(status, code, message):
        return error_response(status, code, message, headers={"WWW-Authenticate": "Bearer"})

    jwt.unauthorized_loader(
        lambda reason: unauthorized(401, "authorization_required", "Request does not contain an access token.")
    )
    jwt.invalid_token_loader(lambda reason: unauthorized(401, "invalid_token", invalid_token_message(reason)))
    jwt.expired_token_loader(lambda header, payload: unauthorized(401, "token_expired", "The token has expired."))
    jwt.revoked_token_loader(lambda header, payload: unauthorized(401, "token_revoked", "The token has been revoked."))
    jwt.needs_fresh_token_loader(
        lambda header, payload: unauthorized(401, "fresh_token_required", "The token is not fresh; log in again.")
    )
    jwt.user_lookup_error_loader(
        lambda header, payload: unauthorized(401, "invalid_token", "The token does not belong to an existing account.")
    )
    jwt.token_verification_failed_loader(
        lambda header, payload: unauthorized(401, "invalid_token", "The token's claims are not valid.")
    )
