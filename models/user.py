"""A registered user: credentials, the admin flag, the keys its tokens are
bound to, and the queries on users."""

import secrets

from sqlalchemy import func, select, update

from db import db


def new_account_key():
    return secrets.token_hex(16)


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
    # Ids are not identities: a restored or reset database hands an old id to a
    # new account. This random key is made once per account and carried by its
    # tokens, so a token acts only for the account it was issued to.
    account_key = db.Column(db.String(32), nullable=False, unique=True, default=new_account_key)
    # Tokens carry the generation they were issued in; bumping it ends every
    # session of the user at once (password change, "log out everywhere").
    session_generation = db.Column(db.Integer, nullable=False, default=0, server_default="0")

    def json(self):
        return {"id": self.id, "username": self.username, "is_admin": self.is_admin}

    @classmethod
    def find_by_id(cls, user_id):
        return db.session.get(cls, user_id)

    @classmethod
    def find_by_username(cls, username):
        return cls.query.filter(func.lower(cls.username) == username.lower()).one_or_none()

    @classmethod
    def username_taken(cls, username):
        query = select(cls.id).where(func.lower(cls.username) == username.lower())
        return db.session.connection().execute(query).first() is not None

    @classmethod
    def end_all_sessions(cls, user_id):
        """Bump the session generation (atomically, in SQL): every token issued
        before is refused from now on. False when there is no such user."""
        result = db.session.execute(
            update(cls).where(cls.id == user_id).values(session_generation=cls.session_generation + 1)
        )
        return result.rowcount == 1

    @classmethod
    def lock(cls, user_id):
        """Take the user's row lock until the transaction ends (a no-op UPDATE:
        a row lock on PostgreSQL, the write lock on SQLite), so that counting
        what the user owns and adding to it cannot interleave with a
        concurrent request doing the same."""
        db.session.execute(update(cls).where(cls.id == user_id).values(id=cls.id))
