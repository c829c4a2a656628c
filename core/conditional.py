"""Conditional requests (RFC 9110 §13) on one item or one store: its ETag,
304 for a reader that already has it, 412 for a writer whose precondition
fails.

A tag is a hash of the resource's JSON body (keys sorted), so it changes
exactly when the body would, whoever changed the rows behind it: the API, a
Jodoo push, an image swap, an admin, or an operator's SQL. A version column
would miss that last one and could not cover a store, whose body holds its
items too. Writers lock the row before reading it (`ItemModel.lock`,
`StoreModel.lock`), so the comparison and the write are one atomic step.
"""

import hashlib

import orjson
from flask import current_app, request

from blacklist import READ_METHODS
from core.errors import ApiError


def etag_of(body):
    """The strong tag of a JSON-ready body, quoted as it goes in the header."""
    digest = hashlib.blake2b(orjson.dumps(body, option=orjson.OPT_SORT_KEYS), digest_size=16)
    return f'"{digest.hexdigest()}"'


def has_write_preconditions():
    """Does this request carry If-Match or If-None-Match? Only then do writers
    lock the row first; unconditional writes run as before."""
    return "If-Match" in request.headers or "If-None-Match" in request.headers


def precondition_failed():
    return ApiError(412, "precondition_failed", "The resource is not in the state the request's precondition names.")


def check_write(current):
    """412 precondition_failed unless the request's If-Match and If-None-Match
    hold for the resource's body as it is now (`current`, None when it does
    not exist). If-Match compares strongly (a W/ tag never matches);
    If-None-Match weakly, `*` meaning "exists"."""
    if not has_write_preconditions():
        return
    tag = None if current is None else etag_of(current).strip('"')
    if "If-Match" in request.headers and (tag is None or not request.if_match.contains(tag)):
        raise precondition_failed()
    if "If-None-Match" in request.headers and tag is not None and request.if_none_match.contains_weak(tag):
        raise precondition_failed()


def tagged(body, status=200):
    """The answer for one item or store, with its ETag: 304 and no body to a
    GET or HEAD whose If-None-Match holds the tag (or `*`)."""
    tag = etag_of(body)
    if request.method in READ_METHODS and request.if_none_match.contains_weak(tag.strip('"')):
        return current_app.response_class(status=304, headers={"ETag": tag})
    return body, status, {"ETag": tag}
