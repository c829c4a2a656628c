"""Request parsing shared by the resources: where bodies come from, field
types that reject what the contract rejects, and paging.

reqparse's default reads `request.json`, which answers 415 to a form body;
`BodyArgument` reads one body dict instead: JSON or form-urlencoded, chosen by
Content-Type, checked once per request.
"""

import math
import re
import unicodedata
from decimal import Decimal, InvalidOperation
from urllib.parse import urlencode

from flask import g, request
from flask_restful import reqparse

from core.errors import ApiError, validation_error

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
USERNAME = re.compile(r"[A-Za-z0-9._-]{3,80}")
MAX_PRICE = Decimal("10000000")
CENT = Decimal("0.01")
# Ids are 32-bit integer columns on every database: anything larger is no id.
MAX_ID = 2**31 - 1


def is_form_request():
    return request.mimetype in FORM_TYPES


def request_body():
    """The request's fields as a mapping, or an ApiError (400 or 415)."""
    if "body" in g:
        return g.body
    if request.is_json:
        try:
            data = request.get_json(silent=True)
        except RecursionError:
            data = None  # nested deeper than the parser goes: not a body we accept
        if data is None:
            raise ApiError(400, "bad_request", "The body is not valid JSON.")
        if not isinstance(data, dict):
            raise ApiError(400, "bad_request", "The JSON body must be an object.")
    elif is_form_request():
        data = request.form
    elif not request.content_length and "chunked" not in request.headers.get("Transfer-Encoding", ""):
        data = {}
    else:
        raise ApiError(
            415, "unsupported_media_type", "Send the body as application/json or application/x-www-form-urlencoded."
        )
    g.body = data
    return data


class BodyArgument(reqparse.Argument):
    """An argument read from the request body, JSON or form."""

    def __init__(self, name, **kwargs):
        kwargs.setdefault("location", "the request body")  # only named in messages
        kwargs.setdefault("help", "{error_msg}")
        kwargs.setdefault("nullable", False)
        super().__init__(name, **kwargs)

    def source(self, req):
        return request_body()


def body_parser():
    return reqparse.RequestParser(argument_class=BodyArgument, bundle_errors=True)


# --- Field types: each raises ValueError with the message the client sees. ----


def storable(value):
    """Text the database and the hasher can take: no NUL (PostgreSQL refuses
    it) and encodable as UTF-8 (JSON's "\\udc80" escape decodes to a lone
    surrogate, which is not)."""
    if "\x00" in value:
        raise ValueError("Must not contain NUL characters.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("Must be valid Unicode text.") from None
    return value


def text(min_length, max_length):
    def parse(value):
        if not isinstance(value, str):
            raise ValueError("Must be a string.")
        storable(value)
        if not min_length <= len(value) <= max_length:
            raise ValueError(f"Must be {min_length} to {max_length} characters long.")
        return value

    return parse


def username(value):
    value = text(3, 80)(value)
    if not USERNAME.fullmatch(value):
        raise ValueError("Must be 3 to 80 letters, digits, '.', '_' or '-'.")
    return value


password = text(8, 128)


def price(value):
    """A finite number >= 0 with at most 2 decimals, below 10,000,000."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("Must be a number.")
    if isinstance(value, str) and not is_form_request():
        raise ValueError("Must be a JSON number, not a string.")
    return price_text(str(value))


def price_text(value):
    """A price written as text (a form field, a query parameter), by the rules above."""
    try:
        amount = Decimal(value.strip())
    except InvalidOperation:
        raise ValueError("Must be a number.") from None
    if not amount.is_finite():
        raise ValueError("Must be a finite number.")
    if amount < 0:
        raise ValueError("Must not be negative.")
    if amount >= MAX_PRICE:
        raise ValueError("Must be below 10000000.")
    cents = amount.quantize(CENT)  # safe: amount is below MAX_PRICE here
    if amount != cents:
        raise ValueError("Must have at most 2 decimal places.")
    return cents


def positive_int(value):
    if isinstance(value, bool):
        raise ValueError("Must be an integer.")
    if isinstance(value, float) and value.is_integer() and math.isfinite(value):
        value = int(value)
    if isinstance(value, str) and is_form_request() and value.isascii() and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise ValueError(f"Must be an integer from 1 to {MAX_ID}.")
    return value


# Characters a reader cannot see or that reorder what they see: zero-width
# spaces and joiners, the byte-order mark, soft hyphen, and the bidirectional
# embeddings, overrides and isolates. A name holding one could pose as another.
INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")


# A name is one path segment of the URLs the API hands out (`/item/<name>`,
# an item's `image_url`), "/" encoded. "." and ".." would be taken by every
# client as "this folder" and "the folder above", encoded or not (%2E is "."
# to a URL parser), so such a URL could never lead back to its item.
DOT_SEGMENTS = (".", "..")


def name(value):
    """A store or item name: trimmed, in Unicode NFC (so "café" typed either
    way is one name), 1-80 characters, nothing invisible or reordering, and
    not "." or ".."."""
    if not isinstance(value, str):
        raise ValueError("Must be a string.")
    value = unicodedata.normalize("NFC", storable(value).strip())
    if INVISIBLE.search(value) or any(unicodedata.category(c) == "Cc" and c not in "\t\n\r" for c in value):
        raise ValueError("Must not contain invisible, control or text-direction characters.")
    if not 1 <= len(value) <= 80:
        raise ValueError("Must be 1 to 80 characters long (after trimming).")
    if value in DOT_SEGMENTS:
        raise ValueError("Must not be '.' or '..'.")
    return value


def path_name(value):
    """A store or item name from the URL, or 400 validation_error on `name`."""
    try:
        return name(value)
    except ValueError as e:
        raise validation_error({"name": str(e)}) from None


IMAGE_SUFFIX = "/image"


def item_name_value(value):
    """An item name: a name that does not end in "/image", since that suffix
    addresses the item's image."""
    value = name(value)
    if value.endswith(IMAGE_SUFFIX):
        raise ValueError(f"An item name may not end in '{IMAGE_SUFFIX}'.")
    return value


def item_name(value):
    """An item name from the URL, or 400 validation_error on `name`."""
    try:
        return item_name_value(value)
    except ValueError as e:
        raise validation_error({"name": str(e)}) from None


# --- Paging ------------------------------------------------------------------


def query_int(low, high):
    def parse(value):
        if not (value.isascii() and value.isdigit()) or not low <= int(value) <= high:
            raise ValueError(f"Must be an integer from {low} to {high}.")
        return int(value)

    return parse


def one_of(choices):
    def parse(value):
        if value not in choices:
            raise ValueError(f"Must be one of: {', '.join(choices)}.")
        return value

    return parse


paging_parser = reqparse.RequestParser(bundle_errors=True)
paging_parser.add_argument("page", type=query_int(1, 10**9), default=1, location="args", help="{error_msg}")
paging_parser.add_argument("per_page", type=query_int(1, 1000), default=100, location="args", help="{error_msg}")


def paging():
    args = paging_parser.parse_args()
    return args["page"], args["per_page"]


def list_parser(sorts):
    """Paging, plus the filters and sorting every list has: `q` (a name
    substring) and `sort` (one of `sorts`, the first the default)."""
    parser = paging_parser.copy()
    parser.add_argument("q", type=text(1, 80), location="args", help="{error_msg}")
    parser.add_argument("sort", type=one_of(sorts), default=sorts[0], location="args", help="{error_msg}")
    return parser


def page_link(page, per_page, rel):
    """A Link header entry to another page of this list, keeping its other filters."""
    args = {"page": str(page), "per_page": str(per_page)}
    args.update((key, value) for key, value in request.args.items() if key not in args)
    return f'<{request.path}?{urlencode(args)}>; rel="{rel}"'


def paged(key, rows, page, per_page, total, **extra):
    """The list body and its Link header (rel="next"/"prev" where they exist)."""
    links = []
    if page * per_page < total:
        links.append(page_link(page + 1, per_page, "next"))
    if page > 1:
        links.append(page_link(page - 1, per_page, "prev"))
    body = {key: rows, **extra, "page": page, "per_page": per_page, "total": total}
    return body, 200, ({"Link": ", ".join(links)} if links else {})
