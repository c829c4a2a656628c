"""Database models, one per file. Importing this package registers them all."""

from sqlalchemy.exc import IntegrityError

from db import db
from models.item import ItemModel
from models.jodoo_delivery import JodooDeliveryModel
from models.jodoo_nonce import JodooNonceModel
from models.revoked_session import RevokedSessionModel
from models.store import StoreModel
from models.user import UserModel
from models.webhook import WebhookModel
from models.webhook_delivery import WebhookDeliveryModel

__all__ = [
    "ItemModel",
    "JodooDeliveryModel",
    "JodooNonceModel",
    "RevokedSessionModel",
    "StoreModel",
    "UserModel",
    "WebhookDeliveryModel",
    "WebhookModel",
]


def commit_or_raise(error):
    """Commit; when a database constraint refuses it (a concurrent request won
    the race, or a row it relies on went away), roll back and raise `error`."""
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise error from None
