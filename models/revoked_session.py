"""A login session ended by logout: the database side of the token blocklist."""

from db import db


class RevokedSessionModel(db.Model):
    __tablename__ = "revoked_sessions"

    # The `sid` claim shared by the access and refresh tokens of one login.
    sid = db.Column(db.String(36), primary_key=True)
    # After this moment no token of the session can be valid any more, so the
    # row can go; the index makes that clean-up cheap.
    expires_at = db.Column(db.DateTime, nullable=False, index=True)
