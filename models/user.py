"""A registered user: credentials, the admin flag, and the queries on users."""
from sqlalchemy import func

from db import db


class UserModel(db.Model):
    __tablename__ = "users"
    __table_args__ = (
        # Usernames are unique case-insensitively; the index also serves lookups.
        db.Index("uq_users_username_lower", func.lower(db.text("username")), unique=True),
        # Never reuse the id of a deleted user: old tokens name users by id.
        {"sqlite_autoincrement": True},
    )

    id = db.Column(db.Integer, primary_key=True)
    username = db.Column(db.String(80), nullable=False)
    password_hash = db.Column(db.String(255), nullable=False)
    is_admin = db.Column(db.Boolean, nullable=False, default=False, server_default=db.false())

    def json(self):
        return {"id": self.id, "username": self.username, "is_admin": self.is_admin}

    @classmethod
    def find_by_id(cls, user_id):
        return db.session.get(cls, user_id)

    @classmethod
    def find_by_username(cls, username):
        return cls.query.filter(func.lower(cls.username) == username.lower()).one_or_none()
