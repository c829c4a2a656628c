"""A signed Jodoo push already applied, by its (nonce, timestamp, signature).

The signature covers the body, so these three name one push whatever
X-JDY-DeliverId it arrives under (or none). The row is inserted in the same
transaction as the push's effect; its primary key makes any later copy of the
push fail to insert, so it has no second effect. A copy older than the
five-minute window is refused by its timestamp anyway, so rows older than that
may be deleted (by `seen_at`).
"""

import hashlib
import json
from datetime import timedelta

from core.clock import utcnow
from db import db

# How far a push's timestamp may be from now. A push first seen at the
# earliest this long before its timestamp can come again until this long
# after it: its row is kept twice that, and a minute for clocks.
MAX_CLOCK_SKEW_SECONDS = 300
KEPT_FOR = timedelta(seconds=2 * MAX_CLOCK_SKEW_SECONDS + 60)


def nonce_key(nonce, timestamp, signature):
    """A fixed-length key for the triple (the nonce's length is the sender's
    choice): SHA-256 of an unambiguous encoding of the three."""
    return hashlib.sha256(json.dumps([nonce, timestamp, signature.lower()]).encode()).hexdigest()


class JodooNonceModel(db.Model):
    __tablename__ = "jodoo_nonces"

    key = db.Column(db.String(64), primary_key=True)
    seen_at = db.Column(db.DateTime, nullable=False, default=utcnow, index=True)
