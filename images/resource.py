"""An item's image: `PUT`, `GET` (and `HEAD`), `DELETE /item/<name>/image`.

- PUT takes a multipart field `image`, or the raw bytes with Content-Type
  image/jpeg, image/png or image/webp. Only this route accepts bodies larger
  than MAX_CONTENT_LENGTH: it raises its own request's limit to IMAGE_MAX_BYTES
  (Flask 3.1's per-request `max_content_length`), and a larger body is refused
  from its Content-Length before any of it is read. decoding.py decides what the
  bytes are; bookkeeping.py stores them and keeps rows and objects in step.
  Each user may make IMAGE_UPLOAD_RATE_LIMIT uploads (core/rate_limits.py).
- GET needs no token (an `<img src>` cannot send one). It answers 304 to a
  matching If-None-Match without touching storage. Otherwise, from the
  filesystem: behind Nginx (IMAGE_ACCEL_REDIRECT set) an empty response with
  X-Accel-Redirect, so Nginx sends the file and the uWSGI worker is free at
  once; without Nginx, `send_file` (uWSGI's file wrapper uses sendfile()).
  From S3 the bytes are streamed through (docs/images.md, "Serving").
- PUT and DELETE answer with the item's new ETag and honour If-Match and
  If-None-Match on the item (core/conditional.py), checked again under the
  row lock at the swap (bookkeeping.swap).
"""

import functools

from flask import current_app, request, send_file
from flask_jwt_extended import jwt_required, verify_jwt_in_request
from flask_restful import Resource
from sqlalchemy import bindparam, select
from werkzeug.exceptions import RequestEntityTooLarge

from config import largest_upload_body
from core import arguments, conditional
from core.errors import ApiError, not_found, validation_error
from core.permissions import current_user_id, require_owner
from core.rate_limits import rate_limits
from db import db
from images import bookkeeping
from images.slots import processing_slot
from images.storage import CONTENT_TYPES, FileStorage
from models.item import ItemModel
from models.store import StoreModel

RAW_TYPES = ("image/jpeg", "image/png", "image/webp")
# Versioned URLs (image_url's ?v=) never change content: cache them for a year.
IMMUTABLE = "public, max-age=31536000, immutable"
# Any other URL of the image may show a new one tomorrow: revalidate (ETag).
REVALIDATE = "public, no-cache"

ITEM_NOT_FOUND = "Item not found."
NO_IMAGE = "The item has no image."


def require_item_change(item):
    """May the caller change this item's image? The owner of the item's store,
    or an admin, as for the item itself; else 403 forbidden."""
    verify_jwt_in_request()
    _, owner_id = StoreModel.owner_of(item.store_id)
    require_owner(owner_id)


def find_item(name):
    item = ItemModel.find_by_name(arguments.path_name(name))
    if item is None:
        conditional.check_write(None)  # If-Match on nothing: 412, not 404
        raise not_found(ITEM_NOT_FOUND)
    return item


def too_large(limit):
    return ApiError(413, "payload_too_large", f"The image is larger than {limit} bytes.")


def multipart_image(limit):
    """The one file of the multipart field `image`, at most `limit` bytes."""
    request.max_content_length = largest_upload_body(current_app.config)
    # max_form_memory_size stays Flask's 500 kB: Werkzeug applies it to its
    # read buffer too (64 kB chunks), so a small value refuses every upload.
    request.max_form_parts = 16  # one file and a few fields, not thousands of parts
    try:
        files = request.files.getlist("image")
    except RequestEntityTooLarge:
        raise too_large(limit) from None
    if len(files) != 1:
        raise validation_error({"image": "Send exactly one file in the multipart field 'image'."})
    data = files[0].stream.read(limit + 1)
    if len(data) > limit:
        raise too_large(limit)
    return data


def raw_image(limit):
    """The body itself, at most `limit` bytes; refused unread when it announces more."""
    request.max_content_length = limit
    try:
        return request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise too_large(limit) from None


def uploaded_bytes():
    limit = current_app.config["IMAGE_MAX_BYTES"]
    if request.mimetype == "multipart/form-data":
        return multipart_image(limit)
    if request.mimetype in RAW_TYPES:
        return raw_image(limit)
    raise ApiError(
        415,
        "unsupported_media_type",
        "Send the image as multipart/form-data (field 'image') or as a raw image/jpeg, image/png or image/webp body.",
    )


# Built once: GET is the hot path, and the ORM query layer cost more than the
# SELECT itself (bench/RESULTS.md, "Item images").
SELECT_IMAGE_KEY = select(ItemModel.image_key).where(ItemModel.name == bindparam("name"))


def image_key_by_name(name):
    """The item's image_key, or 404 (no item, or no image): one SELECT."""
    row = db.session.connection().execute(SELECT_IMAGE_KEY, {"name": name}).first()
    if row is None:
        raise not_found(ITEM_NOT_FOUND)
    if row.image_key is None:
        raise not_found(NO_IMAGE)
    return row.image_key


def requested_object(image_key):
    """The object `?size=` asks for, and its ETag."""
    size = request.args.get("size")
    digest = bookkeeping.digest_of(image_key)
    if size is None:
        return image_key, f'"{digest}"'
    if size == "thumb":
        return bookkeeping.thumb_key(image_key), f'"{digest}-thumb"'
    raise validation_error({"size": "Must be 'thumb', or left out for the full image."})


def cache_control(image_key):
    versioned = request.args.get("v") == image_key
    return IMMUTABLE if versioned else REVALIDATE


def serve_object(key, content_type):
    """A response that sends the object's bytes (or has Nginx send them)."""
    store = bookkeeping.storage()
    if isinstance(store, FileStorage):
        accel = current_app.config.get("IMAGE_ACCEL_REDIRECT")
        if accel:
            response = current_app.response_class(status=200, mimetype=content_type)
            response.headers["X-Accel-Redirect"] = accel.rstrip("/") + "/" + store.relative_path(key)
            return response
        try:
            return send_file(store.path(key), mimetype=content_type, conditional=False, etag=False, max_age=None)
        except FileNotFoundError:
            raise missing_object(key) from None
    try:
        chunks, length = store.stream(key)
    except FileNotFoundError:
        raise missing_object(key) from None
    response = current_app.response_class(chunks, status=200, mimetype=content_type, direct_passthrough=True)
    response.content_length = length
    return response


def missing_object(key):
    # A row pointing to a missing object breaks bookkeeping.py's rule: log it loudly.
    current_app.logger.error("Image object %s is referenced but missing from storage.", key)
    return not_found(NO_IMAGE)


class ItemImage(Resource):
    def post(self, name):
        """`POST /item/a/image` reads as creating an item named "a/image",
        which no item may be named: the contract's 400, not a 405."""
        raise validation_error(
            {"name": f"An item name may not end in '{arguments.IMAGE_SUFFIX}': that path is its image."}
        )

    def get(self, name):
        image_key = image_key_by_name(arguments.path_name(name))
        key, etag = requested_object(image_key)
        headers = {"ETag": etag, "Cache-Control": cache_control(image_key)}
        # If-None-Match uses the weak comparison (RFC 9110): W/"x" matches "x".
        if request.if_none_match.contains_weak(etag.strip('"')):
            return current_app.response_class(status=304, headers=headers)
        response = serve_object(key, CONTENT_TYPES[key.rsplit(".", 1)[1]])
        response.headers.update(headers)
        return response

    @jwt_required()
    def put(self, name):
        # Counted first: a refused upload costs its reading, and decoding.py's checks.
        rate_limits().hit_image_upload(current_user_id())
        item = find_item(name)
        require_item_change(item)
        conditional.check_write(item.json())  # early, to spare the decoding; again at the swap
        item_id = item.id
        data = uploaded_bytes()
        db_done_reading()
        config = current_app.config
        slot = functools.partial(processing_slot, config, current_app.instance_path)
        # Pillow is loaded by a worker's first upload, not at its start: 2.2 MiB
        # that a worker serving no uploads never needs (docs/benchmarks.md).
        from images.decoding import process

        processed = process(data, config["IMAGE_MAX_PIXELS"], config["IMAGE_HEAVY_BYTES"], slot)
        del data  # the upload's bytes are not needed past this point
        try:
            bookkeeping.attach(item_id, processed, precondition())
        except bookkeeping.ItemGone:
            raise not_found(ITEM_NOT_FOUND) from None
        return conditional.tagged(reloaded_item_json(item_id))

    @jwt_required()
    def delete(self, name):
        item = find_item(name)
        require_item_change(item)
        current = item.json()
        conditional.check_write(current)
        if item.image_key is None:
            return conditional.tagged(current)  # nothing to remove: the state asked for holds
        try:
            bookkeeping.detach(item.id, precondition())
        except bookkeeping.ItemGone:
            raise not_found(ITEM_NOT_FOUND) from None
        return conditional.tagged(reloaded_item_json(item.id))


def precondition():
    """The check bookkeeping.swap makes under the row lock, for a conditional request."""
    return conditional.check_write if conditional.has_write_preconditions() else None


def db_done_reading():
    """End the read transaction before the CPU-heavy decode: no lock or
    snapshot is held while Pillow works."""
    db.session.rollback()


def reloaded_item_json(item_id):
    """The item as it is after our commit (re-read: the swap ran as an UPDATE)."""
    item = db.session.get(ItemModel, item_id, populate_existing=True)
    if item is None:
        raise not_found(ITEM_NOT_FOUND)
    return item.json()
