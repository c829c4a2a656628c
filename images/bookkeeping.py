"""The bookkeeping between item rows and image objects.

The rule: no row ever points to a missing object. So

- an upload writes its objects first, then swaps the row's `image_key` and
  commits (`attach`); the objects the row pointed to before are deleted only
  after that commit (`discard`);
- deleting an image or an item commits first, then deletes the objects;
- if anything fails between the write and the commit, the new objects are
  deleted again; if the process dies there, they are orphans that
  `sweep` removes later (it only touches objects older than a minimum age, so
  never an upload whose commit is still in flight).

Every upload gets its own object names (content hash + random upload id), so
two uploads never share an object, even of the same bytes: the loser of a race
can delete what it replaced without checking who else wrote the same hash.
`discard` still checks that no row references a key before deleting it.

The swap is a compare-and-set (`UPDATE ... WHERE image_key IS NOT DISTINCT FROM
<the key we read>`): of two concurrent uploads for one item, each learns
exactly which key it replaced, so the last to commit deletes the other's
objects and nothing is left behind.
"""

import logging
import secrets
import time

from flask import current_app
from sqlalchemy import select, update

from core.errors import conflict
from db import db
from models.item import ITEM_COLUMNS, ItemModel, item_json
from webhooks import outbox

log = logging.getLogger(__name__)

# Compare-and-set attempts before giving up with 409 (only under a storm of
# uploads to one item).
SWAP_ATTEMPTS = 5
THUMB_SUFFIX = ".thumb"


def storage():
    return current_app.extensions["image_storage"]


def object_keys(image_key):
    """The objects of one stored image: the full image and its thumbnail."""
    return [image_key, thumb_key(image_key)]


def thumb_key(image_key):
    base, extension = image_key.rsplit(".", 1)
    return f"{base}{THUMB_SUFFIX}.{extension}"


def image_key_of(object_key):
    """The row value an object belongs to (a thumbnail's full image key)."""
    return object_key.replace(THUMB_SUFFIX + ".", ".")


def digest_of(image_key):
    """The SHA-256 of the stored full image, from its key."""
    return image_key.split("-", 1)[0]


def new_key(processed):
    return f"{processed.digest}-{secrets.token_hex(8)}.{processed.extension}"


def write_objects(processed):
    """Put the image and its thumbnail in storage; return the new image_key."""
    key = new_key(processed)
    storage().put(thumb_key(key), processed.thumb, processed.content_type)
    # The full image last: sweep's view of a key is then never "thumbnail missing".
    storage().put(key, processed.data, processed.content_type)
    return key


class ItemGone(Exception):
    """The item was deleted while its image was being stored."""


def swap(item_id, image_key, check=None):
    """Set the item's image_key (or None) and commit; return the key it had.

    Compare-and-set, retried: between our read and our update another request
    may have swapped it, and then we read again. With `check` (a conditional
    request's precondition, core/conditional.py), the row is locked first and
    `check` sees the item's JSON as it is before the swap; it raises to refuse.
    """
    for _ in range(SWAP_ATTEMPTS):
        if check is not None:
            ItemModel.lock(ItemModel.id == item_id)
        row = db.session.execute(select(*ITEM_COLUMNS).where(ItemModel.id == item_id)).first()
        if row is None:
            db.session.rollback()
            raise ItemGone()
        if check is not None:
            check(item_json(row))
        old = row.image_key
        changed = db.session.execute(
            update(ItemModel)
            .where(ItemModel.id == item_id, ItemModel.image_key.is_not_distinct_from(old))
            .values(image_key=image_key)
        ).rowcount
        if changed:
            # Webhook subscribers hear of it in the same transaction (webhooks/outbox.py).
            outbox.record("item.updated", lambda: db.session.get(ItemModel, item_id, populate_existing=True).json())
            db.session.commit()
            return old
        db.session.rollback()
    raise conflict("The item's image changed concurrently; try again.")


def attach(item_id, processed, check=None):
    """Store a processed upload as the item's image. Returns the new key;
    raises ItemGone (after cleaning up) when the item vanished meanwhile, and
    whatever `check` raises (see swap)."""
    key = write_objects(processed)
    try:
        old = swap(item_id, key, check)
    except BaseException:
        # Not committed: the new objects must not stay behind.
        delete_objects(key)
        raise
    discard(old)
    return key


def detach(item_id, check=None):
    """Remove the item's image: commit the NULL, then delete the objects.
    Returns the key it had (None when it had none)."""
    old = swap(item_id, None, check)
    discard(old)
    return old


def is_referenced(image_key):
    query = select(ItemModel.id).where(ItemModel.image_key == image_key).limit(1)
    return db.session.execute(query).first() is not None


def discard(image_key):
    """After a commit: delete an image's objects unless a row still uses them."""
    if image_key is None or is_referenced(image_key):
        return
    delete_objects(image_key)


def delete_objects(image_key):
    for key in object_keys(image_key):
        try:
            storage().delete(key)
        except Exception:
            # The row no longer points here, so the object is merely an
            # orphan now; the sweep will remove it. Never fail the request.
            log.warning("Could not delete image object %s; `flask images sweep` will.", key, exc_info=True)


def referenced_keys():
    return set(db.session.execute(select(ItemModel.image_key).where(ItemModel.image_key.is_not(None))).scalars())


def sweep(min_age_seconds, now=None):
    """Delete every object older than min_age_seconds that no row references.
    Returns the keys deleted.

    The candidates are listed *before* the rows are read: an upload that
    committed meanwhile is then seen as referenced, and one still in flight
    wrote its object less than min_age_seconds ago.
    """
    now = time.time() if now is None else now
    candidates = [key for key, modified in storage().keys() if now - modified >= min_age_seconds]
    referenced = referenced_keys()
    deleted = []
    for key in candidates:
        if image_key_of(key) not in referenced:
            storage().delete(key)
            deleted.append(key)
    return deleted
