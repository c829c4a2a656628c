"""Database models, one per file. Importing this package registers them all."""
from models.item import ItemModel
from models.revoked_session import RevokedSessionModel
from models.store import StoreModel
from models.user import UserModel

__all__ = ["ItemModel", "RevokedSessionModel", "StoreModel", "UserModel"]
